// GPT-2 with the fused ops (GPT2Config::fused, the default: linear_gelu in the MLP,
// add_layer_norm for every residual add) against the same model with fused off:
// on the CPU the fused ops run the compositions' own code, so loss, logits and
// gradients must be bit-identical, in f64 and f32, with and without checkpointing,
// dropout and autocast; parameter names, the KV-cache path and training unchanged.
#include <cmath>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"
#include "ciuic/models/gpt2.h"
#include "test_util.h"

using namespace ciuic;
using models::GPT2;
using models::GPT2Config;

namespace {

GPT2Config small(DType dt, double dropout, CheckpointPolicy p) {
  GPT2Config c;
  c.vocab_size = 300;  // padded to 384
  c.max_seq_len = 32;
  c.num_layers = 3;
  c.num_heads = 4;
  c.channels = 32;
  c.dropout = dropout;
  c.checkpoint = p;
  c.dtype = dt;
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

struct Result {
  std::vector<double> loss;
  std::vector<std::vector<double>> grads;
  std::vector<std::string> names;
};

// Loss and gradients of one forward + backward (dropout masks from seed 99).
Result run(GPT2Config c, bool fused, std::optional<DType> autocast = std::nullopt) {
  c.fused = fused;
  Generator init{11, 0};
  GPT2 m(c, &init);
  // Non-trivial LayerNorm gains and biases, so that their gradients differ per element.
  {
    NoGradGuard ng;
    Generator g{4, 0};
    for (auto entries = m.named_parameters(); auto& [name, p] : entries.items())
      if (p.dim() == 1) Tensor(p).copy_(add(p, normal(p.shape(), 0.0, 0.1, p.dtype(), &g)));
  }
  Batch b = tokens(2, 16, 300, 3);
  manual_seed(99);
  Tensor loss;
  {
    amp::AutocastGuard guard(autocast.value_or(DType::f16), autocast.has_value());
    loss = m.loss(b.idx, b.tgt);
  }
  loss.backward();
  Result r;
  r.loss = loss.to(DType::f64).to_vector<double>();
  for (const auto& [name, p] : m.named_parameters().items()) {
    r.names.push_back(name);
    r.grads.push_back(p.grad().to(DType::f64).to_vector<double>());
  }
  return r;
}

void check_identical(const Result& a, const Result& b) {
  CHECK(a.loss == b.loss);
  REQUIRE(a.names == b.names);
  for (std::size_t i = 0; i < a.grads.size(); ++i) {
    INFO(a.names[i]);
    CHECK(a.grads[i] == b.grads[i]);
  }
}

}  // namespace

TEST_CASE("fused GPT-2 gives the unfused model's loss and gradients bit for bit on the CPU", "[gpt2][fused]") {
  for (DType dt : {DType::f64, DType::f32}) {
    for (auto p : {CheckpointPolicy::none(), CheckpointPolicy::every_block(), CheckpointPolicy::selective()}) {
      INFO(dtype_name(dt) << ", checkpoint " << p.str());
      GPT2Config c = small(dt, 0.1, p);
      check_identical(run(c, true), run(c, false));
    }
  }
}

TEST_CASE("fused GPT-2 under autocast matches the unfused model", "[gpt2][fused][amp]") {
  for (DType half : {DType::bf16, DType::f16}) {
    INFO("autocast " << dtype_name(half));
    GPT2Config c = small(DType::f32, 0.0, CheckpointPolicy::none());
    check_identical(run(c, true, half), run(c, false, half));
  }
}

TEST_CASE("fused GPT-2 keeps the parameter names, and set_fused switches the ops", "[gpt2][fused]") {
  GPT2Config c = small(DType::f32, 0.0, CheckpointPolicy::none());
  Generator g1{5, 0}, g2{5, 0};
  c.fused = true;
  GPT2 a(c, &g1);
  c.fused = false;
  GPT2 b(c, &g2);
  auto na = a.named_parameters(), nb = b.named_parameters();
  REQUIRE(na.size() == nb.size());
  for (std::size_t i = 0; i < na.items().size(); ++i) CHECK(na.items()[i].first == nb.items()[i].first);
  CHECK(na.contains("transformer.h.0.ln_1.weight"));
  CHECK(na.contains("transformer.h.2.mlp.c_fc.weight"));
  CHECK(na.contains("transformer.ln_f.bias"));
  Batch bt = tokens(2, 8, 300, 7);
  NoGradGuard ng;
  const std::vector<float> la = a.forward(bt.idx).to_vector<float>(), lb = b.forward(bt.idx).to_vector<float>();
  CHECK(la == lb);
  CHECK(a.config().fused);
  a.set_fused(false);
  CHECK_FALSE(a.config().fused);
  CHECK_FALSE(a.transformer->blocks[1]->fused);
  CHECK_FALSE(a.transformer->blocks[1]->mlp->fused);
  CHECK(a.forward(bt.idx).to_vector<float>() == la);
}

TEST_CASE("fused GPT-2: KV-cache decoding matches the full forward and the unfused model", "[gpt2][fused]") {
  GPT2Config c = small(DType::f32, 0.0, CheckpointPolicy::none());
  Generator g1{21, 0}, g2{21, 0};
  GPT2 fused(c, &g1);
  c.fused = false;
  GPT2 plain(c, &g2);
  const std::vector<std::int64_t> prompt{3, 14, 15, 92, 65};
  CHECK(fused.generate(prompt, 12, 0.8, 20, 1234) == plain.generate(prompt, 12, 0.8, 20, 1234));
  // The cached logits of the prompt equal the full forward's.
  NoGradGuard ng;
  Tensor idx = from_vector(prompt, {1, 5});
  models::KVCache cache = fused.make_cache(1);
  Tensor cached = fused.forward_cached(idx, cache);
  CHECK(cached.to_vector<float>() == fused.forward(idx).to_vector<float>());
}

TEST_CASE("the tiny fused GPT trains exactly as the unfused one", "[gpt2][fused][train]") {
  auto losses = [](bool fused) {
    GPT2Config c = GPT2Config::tiny();
    c.num_layers = 2;
    c.channels = 64;
    c.max_seq_len = 32;
    c.fused = fused;
    Generator init{7, 0};
    GPT2 m(c, &init);
    optim::AdamW opt(m.parameters(), optim::AdamWOptions(3e-3).betas(0.9, 0.95).weight_decay(0.0));
    std::vector<double> out;
    for (int step = 0; step < 25; ++step) {
      Batch b = tokens(4, 32, 256, 100 + step % 3);  // three batches, revisited: the loss must fall
      opt.zero_grad();
      Tensor loss = m.loss(b.idx, b.tgt);
      loss.backward();
      opt.step();
      out.push_back(loss.item());
    }
    return out;
  };
  const std::vector<double> f = losses(true), u = losses(false);
  CHECK(f == u);
  INFO("loss " << f.front() << " -> " << f.back());
  CHECK(f.front() > 5.0);             // ~ln 256 at initialisation
  CHECK(f.back() < f.front() - 0.5);  // memorising three batches
}
