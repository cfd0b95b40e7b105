// Checkpoint segments: bit-identical gradients, activation memory, nesting,
// retain_graph, gradient-ready hooks, recomputation mismatches, policies.
#include "ciuic/ciuic.h"
#include "ciuic/models/cnn.h"
#include "ciuic/models/transformer.h"
#include "test_util.h"

using namespace ciuic;

namespace {

std::vector<std::vector<float>> grads_of(nn::Module& m) {
  std::vector<std::vector<float>> out;
  for (const Tensor& p : m.parameters()) out.push_back(p.grad().defined() ? p.grad().to_vector<float>() : std::vector<float>{});
  return out;
}

models::GPTConfig tiny_gpt(std::int64_t layers = 4, double dropout = 0.1) {
  models::GPTConfig c;
  c.vocab = 61;
  c.max_seq = 16;
  c.layers = layers;
  c.dim = 32;
  c.heads = 4;
  c.dropout = dropout;
  return c;
}

struct Batch {
  Tensor idx, tgt;
};
Batch tokens(std::int64_t B, std::int64_t T, std::int64_t V, std::uint64_t seed) {
  Generator g{seed, 0};
  Tensor u = rand({B, T + 1}, DType::f64, &g);
  Tensor ids = clamp(mul(u, static_cast<double>(V)), 0.0, static_cast<double>(V - 1)).to(DType::i64);
  return {ids.slice(1, 0, T).contiguous(), ids.slice(1, 1, T + 1).contiguous()};
}

// Gradients of the tiny GPT under a policy, from the same init, data and RNG state.
std::vector<std::vector<float>> gpt_grads(CheckpointPolicy policy, DType dtype = DType::f32) {
  Generator init{11, 0};
  models::GPT gpt(tiny_gpt(), policy, &init);
  gpt.to(dtype);
  Batch b = tokens(2, 16, 61, 3);
  manual_seed(99);
  Tensor loss = gpt.loss(b.idx, b.tgt);
  loss.backward();
  return grads_of(gpt);
}

// A residual MLP block: x + W2 gelu(W1 ln(x)).
struct MlpBlock : nn::Module {
  std::shared_ptr<nn::LayerNorm> ln;
  std::shared_ptr<nn::Linear> w1, w2;
  MlpBlock(std::int64_t d, Generator* g) : Module("MlpBlock") {
    ln = register_module("ln", std::make_shared<nn::LayerNorm>(d));
    w1 = register_module("w1", std::make_shared<nn::Linear>(d, 4 * d, true, g));
    w2 = register_module("w2", std::make_shared<nn::Linear>(4 * d, d, true, g));
  }
  Tensor forward(const Tensor& x) override { return add(x, w2->forward(gelu(w1->forward(ln->forward(x))))); }
};

struct Stack {
  std::vector<std::shared_ptr<nn::Module>> blocks;
  std::vector<Tensor> params() const {
    std::vector<Tensor> ps;
    for (auto& b : blocks)
      for (auto& p : b->parameters()) ps.push_back(p);
    return ps;
  }
};
Stack mlp_stack(int n, std::int64_t d, DType dtype = DType::f32) {
  Generator g{21, 0};
  Stack s;
  for (int i = 0; i < n; ++i) {
    auto b = std::make_shared<MlpBlock>(d, &g);
    b->to(dtype);
    s.blocks.push_back(b);
  }
  return s;
}

std::vector<std::vector<float>> stack_grads(const Stack& s, CheckpointPolicy policy, const Tensor& x) {
  for (auto& p : s.params()) p.zero_grad();
  CheckpointedSequence seq(s.blocks, policy);
  Tensor loss = sum(mul(seq.forward(x), seq.forward(x)));  // two uses of the stack in one graph
  loss.backward();
  std::vector<std::vector<float>> g;
  for (auto& p : s.params()) g.push_back(p.grad().to_vector<float>());
  return g;
}

// Peak activation bytes of forward + backward: the allocator's peak above what was
// allocated before, less the parameter gradients that backward creates.
std::size_t activation_peak(const std::function<void()>& step, std::size_t param_grad_bytes) {
  Allocator& a = cpu_allocator();
  std::size_t base = a.stats().allocated_bytes;
  a.reset_peak();
  step();
  std::size_t peak = a.stats().peak_allocated_bytes;
  return peak > base + param_grad_bytes ? peak - base - param_grad_bytes : 0;
}

}  // namespace

TEST_CASE("checkpointed MLP stacks give bit-identical gradients", "[checkpoint]") {
  for (DType dt : {DType::f32, DType::f16}) {
    INFO(dtype_name(dt));
    Stack s = mlp_stack(6, 16, dt);
    Tensor x = randn({5, 16}, dt).requires_grad_();
    auto ref = stack_grads(s, CheckpointPolicy::none(), x);
    for (CheckpointPolicy p : {CheckpointPolicy::every_block(), CheckpointPolicy::every_kth(2),
                               CheckpointPolicy::every_kth(4), CheckpointPolicy::selective()}) {
      INFO(p.str());
      CHECK(stack_grads(s, p, x) == ref);
    }
  }
}

TEST_CASE("checkpointed transformer blocks with dropout give bit-identical gradients", "[checkpoint]") {
  auto ref = gpt_grads(CheckpointPolicy::none());
  CHECK(gpt_grads(CheckpointPolicy::every_block()) == ref);
  CHECK(gpt_grads(CheckpointPolicy::every_kth(2)) == ref);
  CHECK(gpt_grads(CheckpointPolicy::selective()) == ref);
}

TEST_CASE("a checkpointed CNN gives bit-identical gradients and updates batch-norm statistics once",
          "[checkpoint]") {
  models::CNNConfig cfg;
  auto data = models::make_square_images(cfg, 8, 5);
  auto run = [&](bool ckpt, std::vector<float>* running_mean) {
    Generator g{7, 0};
    models::SmallCNN net(cfg, &g);
    net.train();
    Tensor f = ckpt ? checkpoint([&](const Tensor& x) { return net.features->forward(x); }, data.images)
                    : net.features->forward(data.images);
    Tensor logits = net.head->forward(adaptive_avg_pool2d(f, 1, 1).flatten(1));
    cross_entropy(logits, data.labels).backward();
    auto* bn = dynamic_cast<nn::BatchNorm2d*>(net.features->named_children().values()[1].get());
    REQUIRE(bn != nullptr);
    *running_mean = bn->running_mean.to_vector<float>();
    return grads_of(net);
  };
  std::vector<float> rm_plain, rm_ckpt;
  auto ref = run(false, &rm_plain);
  CHECK(run(true, &rm_ckpt) == ref);
  CHECK(rm_ckpt == rm_plain);  // the recomputation did not update the running statistics again
}

TEST_CASE("every block checkpointed keeps at most 25% of the activation memory", "[checkpoint]") {
  auto cfg = tiny_gpt(12, 0.0);
  Batch b = tokens(4, 16, 61, 8);
  auto peak_for = [&](CheckpointPolicy p) {
    Generator g{1, 0};
    models::GPT gpt(cfg, p, &g);
    std::size_t grad_bytes = 0;
    for (auto& t : gpt.parameters()) grad_bytes += static_cast<std::size_t>(t.numel()) * t.element_size();
    return activation_peak([&] { gpt.loss(b.idx, b.tgt).backward(); }, grad_bytes);
  };
  std::size_t none = peak_for(CheckpointPolicy::none());
  std::size_t every = peak_for(CheckpointPolicy::every_block());
  std::size_t sel = peak_for(CheckpointPolicy::selective());
  INFO("activation peak: none " << none << " B, every block " << every << " B, selective " << sel << " B");
  CHECK(none > 0);
  CHECK(every * 4 <= none);
  CHECK(sel < none);
  CHECK(sel > every);
}

TEST_CASE("the budget planner picks a plan under its budget and says when none fits", "[checkpoint]") {
  auto cfg = tiny_gpt(8, 0.0);
  Batch b = tokens(4, 16, 61, 8);
  Generator g{1, 0};
  models::GPT probe(cfg, CheckpointPolicy::budget(std::size_t(1) << 40), &g);
  Tensor x = add(probe.wte->forward(b.idx), probe.wpe->forward(arange(16)));
  std::vector<std::shared_ptr<nn::Module>> blocks(probe.blocks.begin(), probe.blocks.end());
  CheckpointedSequence seq(blocks, CheckpointPolicy::none());
  CheckpointPlan all_kept = seq.make_plan(x, std::size_t(1) << 40);
  std::size_t everything = 0, minimum = 0, max_saved = 0;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    everything += all_kept.output_bytes[i] + all_kept.saved_bytes[i];
    minimum += all_kept.output_bytes[i];
    max_saved = std::max(max_saved, all_kept.saved_bytes[i]);
  }
  minimum += max_saved;
  CHECK(std::count(all_kept.checkpointed.begin(), all_kept.checkpointed.end(), true) == 0);  // a huge budget: no recompute
  std::size_t budget = (everything + minimum) / 2;
  CheckpointPlan mid = seq.make_plan(x, budget);
  INFO(mid.str());
  CHECK(mid.predicted_bytes <= budget);
  auto n_ckpt = std::count(mid.checkpointed.begin(), mid.checkpointed.end(), true);
  CHECK(n_ckpt > 0);
  CHECK(n_ckpt < static_cast<long>(blocks.size()));
  // measured: the activation peak of a real step under that plan stays within the budget
  Generator g2{1, 0};
  models::GPT gpt(cfg, CheckpointPolicy::budget(budget), &g2);
  std::size_t grad_bytes = 0;
  for (auto& t : gpt.parameters()) grad_bytes += static_cast<std::size_t>(t.numel()) * t.element_size();
  gpt.loss(b.idx, b.tgt);  // plans on the first call
  std::size_t measured = activation_peak([&] { gpt.loss(b.idx, b.tgt).backward(); }, grad_bytes);
  INFO("measured " << measured << " B for budget " << budget << " B");
  CHECK(measured <= budget);
  CHECK_THROWS_WITH_ALL(seq.make_plan(x, minimum / 2), ValueError, "no plan fits", "smallest budget");
}

TEST_CASE("nested checkpoints and retain_graph recompute correctly", "[checkpoint]") {
  Tensor w = randn({4, 4}, DType::f64).requires_grad_();
  Tensor x = randn({3, 4}, DType::f64).requires_grad_();
  int inner_runs = 0;
  auto inner = [&](const Tensor& h) {
    ++inner_runs;
    return tanh(matmul(h, w));
  };
  auto outer = [&](const Tensor& h) { return checkpoint(inner, sigmoid(h)) * 2.0; };
  Tensor y_ref = sum(tanh(matmul(sigmoid(x), w)) * 2.0);
  auto g_ref = grad({y_ref}, {x, w});
  Tensor y = sum(checkpoint(outer, x));
  CHECK(inner_runs == 1);  // forward: the inner segment ran once, inside the outer one's forward
  y.backward(Tensor(), /*retain_graph=*/true);
  CHECK(x.grad().to_vector<double>() == g_ref[0].to_vector<double>());
  CHECK(w.grad().to_vector<double>() == g_ref[1].to_vector<double>());
  int after_first = inner_runs;
  y.backward();  // the segment recomputes again
  CHECK(inner_runs > after_first);
  auto gx = x.grad().to_vector<double>(), gx_ref = g_ref[0].to_vector<double>();
  for (std::size_t i = 0; i < gx.size(); ++i) CHECK(gx[i] == Approx(2 * gx_ref[i]));
  CHECK_THROWS_WITH_ALL(y.backward(), AutogradError, "second time", "retain_graph");
}

TEST_CASE("parameters inside segments fire their gradient-ready hook once, after the final gradient",
          "[checkpoint]") {
  Stack s = mlp_stack(3, 8);
  // the same block used twice (a tied weight across two segments)
  std::vector<std::shared_ptr<nn::Module>> blocks = {s.blocks[0], s.blocks[1], s.blocks[0], s.blocks[2]};
  std::map<const TensorImpl*, int> fired;
  std::map<const TensorImpl*, std::vector<float>> seen;
  for (auto& p : s.params())
    register_grad_ready_hook(p, [&](const Tensor& t) {
      ++fired[t.impl()];
      seen[t.impl()] = t.grad().to_vector<float>();
    });
  CheckpointedSequence seq(blocks, CheckpointPolicy::every_block());
  sum(seq.forward(randn({2, 8}))).backward();
  for (auto& p : s.params()) {
    CHECK(fired[p.impl()] == 1);
    CHECK(seen[p.impl()] == p.grad().to_vector<float>());
  }
}

TEST_CASE("a recomputation that differs from the forward is a clear error", "[checkpoint]") {
  Tensor x = randn({4, 3}).requires_grad_();
  int calls = 0;
  CheckpointOptions opts;
  opts.name = "block7";
  Tensor y = checkpoint([&](const Tensor& h) { return ++calls == 1 ? h * 2.0 : h.slice(0, 0, 2) * 2.0; }, x, opts);
  CHECK_THROWS_WITH_ALL(sum(y).backward(), AutogradError, "block7", "f32[2, 3] on cpu", "f32[4, 3] on cpu");
  Tensor z = checkpoint([](const Tensor& h) { return h * 3.0; }, x);
  Tensor w = randn({3});
  Tensor v = checkpoint([w](const Tensor& h) { return h * w; }, x);
  (void)z;
  {
    NoGradGuard ng;
    w.fill_(1.0);  // changed after the forward used it... but w needs no grad: only inputs are checked
  }
  CHECK_NOTHROW(sum(v).backward());
}

TEST_CASE("a checkpointed function sees the forward's RNG state; the caller's stream moves on", "[checkpoint]") {
  Tensor x = ones({1000}, DType::f64).requires_grad_();
  manual_seed(5);
  Tensor y = checkpoint([](const Tensor& h) { return dropout(h, 0.5); }, x);
  std::uint64_t offset_after_forward = default_generator().offset;
  Tensor probe = rand({3});  // the caller draws more numbers before backward
  sum(y).backward();
  CHECK(x.grad().to_vector<double>() == mul(y.detach(), 1.0).to_vector<double>());  // grad = mask / (1-p) = y
  CHECK(default_generator().offset == offset_after_forward + 3);  // backward did not disturb the stream
}
