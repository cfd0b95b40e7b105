// [comm][dist] tests: run as 2, 3 or 4 ranks under ciuic-launch (tests/meson.build).
// Every test compares with a single process computing on the concatenated batch,
// which each rank computes itself from the same seed, on the CPU. The distributed
// models and data live on dist::dev(): the device under test where Gloo moves its
// memory (the emulated GPU), so the reducer's stream-ordered path runs there.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <unistd.h>

#include "dist_util.h"

using namespace ciuic;
using namespace ciuic::comm;

namespace {

// The seed's model: Linear(10, 10), ReLU, Linear(10, 5).
struct ToyModel : nn::Module {
  std::shared_ptr<nn::Linear> net1, net2;
  ToyModel() : Module("ToyModel") {
    net1 = register_module("net1", std::make_shared<nn::Linear>(10, 10));
    net2 = register_module("net2", std::make_shared<nn::Linear>(10, 5));
  }
  Tensor forward(const Tensor& x) override { return net2->forward(relu(net1->forward(x))); }
};

// Four layers; `order` lets forward use them out of registration order; optional
// checkpoint segments around each pair; an optional branch used only when asked.
struct Deep : nn::Module {
  std::vector<std::shared_ptr<nn::Linear>> fc;
  std::shared_ptr<nn::Linear> extra;
  bool reversed = false, checkpointed = false, use_extra = false;
  explicit Deep(std::int64_t w = 24) : Module("Deep") {
    for (int i = 0; i < 4; ++i) fc.push_back(register_module("fc" + std::to_string(i), std::make_shared<nn::Linear>(w, w)));
    extra = register_module("extra", std::make_shared<nn::Linear>(w, w));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = x;
    for (int k = 0; k < 4; k += 2) {
      int a = reversed ? 3 - k : k, b = reversed ? 2 - k : k + 1;
      // Copies only: a checkpoint segment re-runs this after forward() has returned.
      auto la = fc[static_cast<std::size_t>(a)], lb = fc[static_cast<std::size_t>(b)];
      auto pair = [la, lb](const Tensor& in) { return tanh(lb->forward(tanh(la->forward(in)))); };
      h = checkpointed ? checkpoint(pair, h) : pair(h);
    }
    if (use_extra) h = h + extra->forward(h);
    return h;
  }
};

// Gradients by name after one backward of loss_fn on the model.
std::map<std::string, Tensor> grads_of(nn::Module& m) {
  std::map<std::string, Tensor> g;
  auto params = m.named_parameters();
  for (const auto& [name, p] : params.items())
    if (p.grad().defined()) g[name] = p.grad().clone();
  return g;
}

template <typename M>
std::shared_ptr<M> copy_of(M& src) {
  auto m = std::make_shared<M>();
  m->load_state_dict(src.state_dict());
  return m;
}

void check_grads_match(nn::Module& dist_model, const std::map<std::string, Tensor>& ref, double rtol, double atol) {
  auto params = dist_model.named_parameters();
  for (const auto& [name, p] : params.items()) {
    auto it = ref.find(name);
    if (it == ref.end()) {
      INFO(name);
      CHECK_FALSE(p.grad().defined());
      continue;
    }
    REQUIRE(p.grad().defined());
    double worst = 0;
    bool ok = dist::close(p.grad(), it->second, rtol, atol, &worst);
    INFO(name << ": worst |diff| / tolerance " << worst);
    CHECK(ok);
  }
}

}  // namespace

// The seed: 4 ranks, DDP-wrapped ToyModel, MSE, SGD lr 0.001, one step.
TEST_CASE("Seed loop: every rank ends with the parameters of one process on the whole batch", "[comm][seed]") {
  auto& w = dist::world();
  const int rank = w.rank(), world = w.size();
  manual_seed(100 + rank);  // different initial weights: the reducer must broadcast rank 0's
  auto model = std::make_shared<ToyModel>();
  model->to(dist::dev());
  BucketedReducer ddp(model, dist::new_comm("seed"));
  auto ref = copy_of(*model);  // rank 0's weights, after the broadcast, on the CPU

  Generator gen(42);
  const std::int64_t per = 20;
  Tensor x = randn({per * world, 10}, {}, &gen), y = randn({per * world, 5}, {}, &gen);

  optim::SGD opt(model->parameters(), optim::SGDOptions(0.001));
  opt.zero_grad();
  Tensor loss = mse_loss(ddp.forward(dist::shard(x, rank, per)), dist::shard(y, rank, per));
  loss.backward();
  opt.step();

  optim::SGD ref_opt(ref->parameters(), optim::SGDOptions(0.001));
  ref_opt.zero_grad();
  mse_loss(ref->forward(x), y).backward();
  ref_opt.step();

  auto params = model->named_parameters();
  for (const auto& [name, p] : params.items()) {
    INFO(name);
    CHECK(dist::same_on_every_rank(w, p));
    double worst = 0;
    CHECK(dist::close(p, ref->named_parameters().at(name), 1e-6, 1e-7, &worst));
  }
}

TEST_CASE("Collectives: allreduce (sum, avg, max, min) across dtypes, broadcast, allgather, reduce_scatter, barrier", "[comm][dist]") {
  auto& c = dist::world();
  const int r = c.rank(), n = c.size();
  const Device dev = dist::dev();
  const auto on = [&](DType dt) { return TensorOptions(dt).device(dev); };
  Tensor f = from_vector<float>({1.0f * r, 2.0f, -1.0f * r}, {3}).to(dev);
  c.allreduce(f)->wait();
  double s = n * (n - 1) / 2.0;
  CHECK(f.to_vector<double>() == std::vector<double>{s, 2.0 * n, -s});
  Tensor d = full({5}, r + 1.0, on(DType::f64));
  c.allreduce(d, ReduceOp::avg)->wait();
  CHECK(d.to_vector<double>()[4] == Approx((n + 1) / 2.0));
  Tensor h = full({7}, 0.5 * (r + 1), on(DType::f16));
  c.allreduce(h, ReduceOp::max)->wait();
  CHECK(h.to_vector<float>()[6] == 0.5f * n);
  Tensor bf = full({2}, r + 1.0, on(DType::bf16));
  c.allreduce(bf, ReduceOp::min)->wait();
  CHECK(bf.to_vector<float>()[0] == 1.0f);
  Tensor i = full({3}, r, on(DType::i64));
  c.allreduce(i)->wait();
  CHECK(i.to_vector<std::int64_t>()[0] == static_cast<std::int64_t>(s));

  Tensor b = full({4}, r == 0 ? 7.0 : -1.0, on(DType::i32));
  auto wb = c.broadcast(b, 0);
  wb->wait(std::chrono::seconds(30));  // a host wait: complete afterwards on every device (wait() alone orders
  CHECK(wb->is_completed());           // the current stream on CUDA tensors, as NCCL's does, without blocking)
  CHECK(b.to_vector<std::int32_t>() == std::vector<std::int32_t>(4, 7));

  Tensor in = full({2}, r, on(DType::f32)), out = zeros({2 * n}, on(DType::f32));
  c.allgather(in, out)->wait();
  auto g = out.to_vector<float>();
  for (int k = 0; k < n; ++k) CHECK((g[2 * k] == k && g[2 * k + 1] == k));

  Tensor rs_in = arange(0, 3.0 * n, 1.0, DType::f32).to(dev), rs_out = zeros({3}, on(DType::f32));
  c.reduce_scatter(rs_in, rs_out, ReduceOp::avg)->wait();
  CHECK(rs_out.to_vector<float>() == std::vector<float>{3.0f * r, 3.0f * r + 1, 3.0f * r + 2});
  // Several in flight at once, completed in order.
  std::vector<Tensor> ts;
  std::vector<WorkPtr> ws;
  for (int k = 0; k < 8; ++k) {
    ts.push_back(full({1000}, k + r, on(DType::f32)));
    ws.push_back(c.allreduce(ts.back()));
  }
  for (int k = 0; k < 8; ++k) {
    ws[static_cast<std::size_t>(k)]->wait(std::chrono::seconds(30));
    CHECK(ts[static_cast<std::size_t>(k)].to_vector<float>()[999] == static_cast<float>(n * k + s));
  }
  c.barrier()->wait();
}

TEST_CASE("Reducer: gradients equal one process on the concatenated batch; buckets and their rebuild", "[comm][dist]") {
  auto& w = dist::world();
  const int rank = w.rank(), world = w.size();
  manual_seed(7 + rank);
  auto model = std::make_shared<Deep>();
  model->reversed = true;  // forward uses fc3, fc2, fc1, fc0: gradients become ready fc0 first
  model->use_extra = true;
  model->to(dist::dev());
  // 24x24 f32 weights are 2304 B, biases 96 B: first bucket cap 2 KiB, then 5 KiB.
  BucketedReducer ddp(model, dist::new_comm("grads"),
                      ReducerOptions().first_bucket_cap_bytes(2048).bucket_cap_bytes(5000));
  auto ref = copy_of(*model);
  ref->reversed = true;
  ref->use_extra = true;

  // Initial buckets: reverse registration order (extra.bias first), capped.
  auto names = ddp.bucket_names();
  REQUIRE(names.size() >= 3);
  CHECK(names[0] == std::vector<std::string>{"extra.bias", "extra.weight"});
  CHECK(names[1] == std::vector<std::string>{"fc3.bias", "fc3.weight", "fc2.bias", "fc2.weight", "fc1.bias", "fc1.weight"});
  CHECK(names[2] == std::vector<std::string>{"fc0.bias", "fc0.weight"});
  CHECK(ddp.bucket_bytes()[0] == (24 + 24 * 24) * 4);
  CHECK_FALSE(ddp.buckets_rebuilt());

  Generator gen(3);
  const std::int64_t per = 6;
  for (int step = 0; step < 3; ++step) {
    Tensor x = randn({per * world, 24}, {}, &gen), y = randn({per * world, 24}, {}, &gen);
    model->zero_grad();
    mse_loss(ddp.forward(dist::shard(x, rank, per)), dist::shard(y, rank, per)).backward();
    ref->zero_grad();
    mse_loss(ref->forward(x), y).backward();
    check_grads_match(*model, grads_of(*ref), 1e-5, 1e-7);
    auto params = model->named_parameters();
    for (const auto& [name, p] : params.items()) CHECK(dist::same_on_every_rank(w, p.grad()));
    if (step == 0) {
      // Rebuilt from the order gradients became ready on rank 0: fc0 is used last in forward.
      CHECK(ddp.buckets_rebuilt());
      auto re = ddp.bucket_names();
      REQUIRE(!re.empty());
      CHECK(re[0][0].rfind("extra", 0) == 0);
      bool fc0_before_fc3 = false;
      std::size_t pos0 = 99, pos3 = 99;
      for (std::size_t b = 0; b < re.size(); ++b)
        for (const auto& nme : re[b]) {
          if (nme == "fc0.weight") pos0 = b;
          if (nme == "fc3.weight") pos3 = b;
        }
      fc0_before_fc3 = pos0 < pos3;  // the reversed forward uses fc0 last, so backward reaches it first
      INFO("rebuilt buckets: " << [&] {
        std::string t;
        for (auto& b : re) {
          t += "[";
          for (auto& nme : b) t += nme + " ";
          t += "] ";
        }
        return t;
      }());
      CHECK(fc0_before_fc3);
      CHECK(re != names);
      // Same buckets everywhere.
      std::string flat;
      for (auto& b : re)
        for (auto& nme : b) flat += nme + ",";
      Tensor bytes = from_vector<std::uint8_t>(std::vector<std::uint8_t>(flat.begin(), flat.end()),
                                               {static_cast<std::int64_t>(flat.size())}, DType::u8).to(dist::dev());
      CHECK(dist::same_on_every_rank(w, bytes));
    }
    // The gradient is a view into its bucket: the optimizer sees the averaged values.
    CHECK(model->fc[0]->weight.grad().storage() == model->fc[0]->bias.grad().storage());
  }
  CHECK(ddp.iterations() == 3);
  // zero_grad(set_to_none=false) keeps the bucket views as .grad: backward accumulates into them in
  // place (the mechanism is checked in test_autograd.cpp), the reducer finds its own view there and
  // copies nothing, and the values still match the single process.
  const void* before = model->fc[0]->weight.grad().data_ptr();
  Tensor x = randn({per * world, 24}, {}, &gen), y = randn({per * world, 24}, {}, &gen);
  model->zero_grad(/*set_to_none=*/false);
  mse_loss(ddp.forward(dist::shard(x, rank, per)), dist::shard(y, rank, per)).backward();
  ref->zero_grad();
  mse_loss(ref->forward(x), y).backward();
  CHECK(model->fc[0]->weight.grad().data_ptr() == before);
  check_grads_match(*model, grads_of(*ref), 1e-5, 1e-7);
}

TEST_CASE("Reducer: no_sync accumulation equals one big batch", "[comm][dist]") {
  auto& w = dist::world();
  const int rank = w.rank(), world = w.size();
  manual_seed(11);
  auto model = std::make_shared<Deep>(16);
  model->use_extra = true;
  model->to(dist::dev());  // before the reducer: its buckets live where the parameters do
  BucketedReducer ddp(model, dist::new_comm("nosync"), ReducerOptions().first_bucket_cap_bytes(512));
  auto ref = std::make_shared<Deep>(16);
  ref->load_state_dict(model->state_dict());
  Generator gen(5);
  const std::int64_t per = 4, micro = 3;
  std::vector<Tensor> xs, ys;
  for (int m = 0; m < micro; ++m) {
    xs.push_back(randn({per * world, 16}, {}, &gen));
    ys.push_back(randn({per * world, 16}, {}, &gen));
  }
  model->zero_grad();
  {
    auto guard = ddp.no_sync();
    for (int m = 0; m < micro - 1; ++m)
      mse_loss(ddp.forward(dist::shard(xs[m], rank, per)), dist::shard(ys[m], rank, per)).backward();
  }
  mse_loss(ddp.forward(dist::shard(xs[micro - 1], rank, per)), dist::shard(ys[micro - 1], rank, per)).backward();
  ref->zero_grad();
  ref->use_extra = true;
  for (int m = 0; m < micro; ++m) mse_loss(ref->forward(xs[m]), ys[m]).backward();
  check_grads_match(*model, grads_of(*ref), 1e-5, 1e-7);
}

TEST_CASE("Reducer: unused parameters are an error naming them, or found and reduced with find_unused_parameters", "[comm][dist]") {
  auto& w = dist::world();
  const int rank = w.rank(), world = w.size();
  manual_seed(12);
  Generator gen(9);
  Tensor x = randn({2 * world, 24}, {}, &gen), y = randn({2 * world, 24}, {}, &gen);
  const Tensor xd = dist::on_dev(x);
  {
    auto model = std::make_shared<Deep>();
    model->to(dist::dev());
    BucketedReducer ddp(model, dist::new_comm("unused1"));
    CHECK_THROWS_WITH_ALL(ddp.forward(xd), ValueError, "extra.weight", "extra.bias", "find_unused_parameters");
  }
  {
    // Rank 0 uses the extra branch, the others do not; fc3 is unused on every rank.
    struct Partial : Deep {
      Tensor forward(const Tensor& in) override {
        Tensor h = in;
        for (int i = 0; i < 3; ++i) h = tanh(fc[static_cast<std::size_t>(i)]->forward(h));
        if (use_extra) h = h + extra->forward(h);
        return h;
      }
    };
    auto model = std::make_shared<Partial>();
    model->use_extra = rank == 0;
    auto ref = std::make_shared<Partial>();
    ref->load_state_dict(model->state_dict());
    model->to(dist::dev());
    BucketedReducer ddp(model, dist::new_comm("unused2"), ReducerOptions().find_unused_parameters().first_bucket_cap_bytes(256));
    for (int step = 0; step < 2; ++step) {
      model->zero_grad();
      mse_loss(ddp.forward(dist::shard(x, rank, 2)), dist::shard(y, rank, 2)).backward();
      // Reference: the mean over ranks of each rank's loss.
      ref->zero_grad();
      Tensor total = zeros({});
      for (int r = 0; r < world; ++r) {
        ref->use_extra = r == 0;
        total = total + mse_loss(ref->forward(x.narrow(0, 2 * r, 2)), y.narrow(0, 2 * r, 2));  // on the CPU
      }
      (total / static_cast<double>(world)).backward();
      check_grads_match(*model, grads_of(*ref), 1e-5, 1e-7);
      CHECK_FALSE(model->fc[3]->weight.grad().defined());  // unused everywhere: the optimizer skips it
      CHECK(model->extra->weight.grad().defined());
    }
  }
  {
    // One forward, two backward passes: the second marks fc0 ready again.
    auto model = std::make_shared<Deep>();
    model->to(dist::dev());
    BucketedReducer ddp(model, dist::new_comm("twice"), ReducerOptions().find_unused_parameters());
    model->use_extra = true;
    Tensor out = model->forward(xd);
    ddp.prepare_for_backward({out});
    Tensor part = mean(model->fc[0]->forward(xd));  // uses fc0 only
    part.backward({}, true);
    CHECK_THROWS_WITH_ALL(part.backward(), AutogradError, "'fc0.weight'", "marked ready twice");
  }
}

TEST_CASE("Reducer: mismatched models are refused on every rank with the first difference", "[comm][dist]") {
  auto& w = dist::world();
  const int rank = w.rank();
  struct Two : nn::Module {
    Two(std::int64_t hidden, const std::string& second) : Module("Two") {
      register_module("fc1", std::make_shared<nn::Linear>(8, hidden));
      register_module(second, std::make_shared<nn::Linear>(hidden, 4));
    }
  };
  auto shape_diff = std::make_shared<Two>(rank == 1 ? 9 : 8, "fc2");
  CHECK_THROWS_WITH_ALL(BucketedReducer(shape_diff, dist::new_comm("mismatch1")), ValueError, "rank 1",
                        "parameter 'fc1.weight' f32[8, 8]", "f32[9, 8]");
  auto name_diff = std::make_shared<Two>(8, rank == 1 ? "head" : "fc2");
  CHECK_THROWS_WITH_ALL(BucketedReducer(name_diff, dist::new_comm("mismatch2")), ValueError, "rank 1", "'fc2.weight'",
                        "'head.weight'");
}

TEST_CASE("Reducer: checkpoint segments give the same reduced gradients", "[comm][dist]") {
  auto& w = dist::world();
  const int rank = w.rank(), world = w.size();
  manual_seed(21);
  auto model = std::make_shared<Deep>();
  model->checkpointed = true;
  model->use_extra = true;
  model->to(dist::dev());
  BucketedReducer ddp(model, dist::new_comm("ckpt"), ReducerOptions().first_bucket_cap_bytes(1024).bucket_cap_bytes(3000));
  auto ref = copy_of(*model);  // no checkpointing, on the CPU
  ref->use_extra = true;
  Generator gen(4);
  for (int step = 0; step < 2; ++step) {
    Tensor x = randn({3 * world, 24}, {}, &gen), y = randn({3 * world, 24}, {}, &gen);
    model->zero_grad();
    mse_loss(ddp.forward(dist::shard(x, rank, 3)), dist::shard(y, rank, 3)).backward();
    ref->zero_grad();
    mse_loss(ref->forward(x), y).backward();
    check_grads_match(*model, grads_of(*ref), 1e-5, 1e-7);
  }
}

TEST_CASE("Reducer: FP16 compression and the loss scaler skip steps together", "[comm][dist][amp]") {
  auto& w = dist::world();
  const int rank = w.rank(), world = w.size();
  manual_seed(31);
  auto model = std::make_shared<ToyModel>();
  model->to(dist::dev());
  BucketedReducer ddp(model, dist::new_comm("fp16"), ReducerOptions().fp16_compression());
  auto ref = copy_of(*model);
  Generator gen(8);
  Tensor x = randn({4 * world, 10}, {}, &gen), y = randn({4 * world, 5}, {}, &gen);
  model->zero_grad();
  mse_loss(ddp.forward(dist::shard(x, rank, 4)), dist::shard(y, rank, 4)).backward();
  ref->zero_grad();
  mse_loss(ref->forward(x), y).backward();
  check_grads_match(*model, grads_of(*ref), 2e-3, 1e-4);  // f16 on the wire: ~3 significant digits
  auto params = model->named_parameters();
  for (const auto& [name, p] : params.items()) CHECK(dist::same_on_every_rank(w, p.grad()));

  // Loss scaling: rank 1 alone overflows; every rank must skip the step.
  optim::SGD opt(model->parameters(), optim::SGDOptions(0.01));
  amp::LossScaler scaler(amp::LossScalerOptions().init_scale(1024));
  auto before = model->net1->weight.clone();
  opt.zero_grad();
  Tensor xin = dist::shard(x, rank, 4);
  if (rank == 1) xin = xin * 1e30;  // inf in f32 after scaling
  scaler.scale(mse_loss(ddp.forward(xin), dist::shard(y, rank, 4))).backward();
  scaler.step(opt);
  CHECK(scaler.step_skipped());
  scaler.update();
  CHECK(scaler.get_scale() == 512);
  CHECK(dist::equal(model->net1->weight, before));
  // A clean step: taken everywhere, same parameters everywhere.
  opt.zero_grad();
  scaler.scale(mse_loss(ddp.forward(dist::shard(x, rank, 4)), dist::shard(y, rank, 4))).backward();
  scaler.step(opt);
  CHECK_FALSE(scaler.step_skipped());
  scaler.update();
  CHECK_FALSE(dist::equal(model->net1->weight, before));
  CHECK(dist::same_on_every_rank(w, model->net1->weight));
}

TEST_CASE("Reducer: an f16 model with master weights and the loss scaler stays identical on every rank", "[comm][dist][amp]") {
  auto& w = dist::world();
  const int rank = w.rank(), world = w.size();
  manual_seed(41 + rank);
  auto model = std::make_shared<ToyModel>();
  model->to(dist::dev(), DType::f16);
  BucketedReducer ddp(model, dist::new_comm("f16model"));
  CHECK(ddp.bucket_bytes().front() % 2 == 0);
  optim::SGD opt(model->parameters(), optim::SGDOptions(0.05));
  amp::LossScaler scaler(amp::LossScalerOptions().init_scale(256));
  Generator gen(12);
  for (int step = 0; step < 3; ++step) {
    Tensor x = randn({4 * world, 10}, {}, &gen), y = randn({4 * world, 5}, {}, &gen);
    Tensor xin = dist::shard(x, rank, 4).to(DType::f16);
    if (step == 1 && rank == world - 1) xin = xin * 60000.0;  // overflows f16 on this rank only
    opt.zero_grad();
    Tensor loss = mse_loss(ddp.forward(xin).to(DType::f32), dist::shard(y, rank, 4));
    scaler.scale(loss).backward();
    scaler.step(opt);
    bool skipped = scaler.step_skipped();
    scaler.update();
    INFO("step " << step);
    CHECK(skipped == (step == 1));
    auto params = model->named_parameters();
    for (const auto& [name, p] : params.items()) {
      INFO(name);
      CHECK(p.dtype() == DType::f16);
      CHECK(dist::same_on_every_rank(w, p));
    }
  }
}

TEST_CASE("File-store rendezvous: a Gloo communicator over a shared directory", "[comm][dist]") {
  auto& w = dist::world();
  const int rank = w.rank(), n = w.size();
  // Rank 0 names a fresh directory and tells the others through the job store.
  auto store = dist::job_store();
  if (rank == 0) {
    auto dir = std::filesystem::temp_directory_path() /
               ("ciuic_fs_job_" + std::to_string(::getpid()) + "_" +
                std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    store->set("fs_dir", dir.string());
  }
  std::string dir = store->get_string("fs_dir");
  auto fs = std::make_shared<FileStore>(dir, std::chrono::seconds(30));
  auto c = make_communicator(Backend::gloo, fs, rank, n);
  Tensor t = full({4}, rank + 1.0, TensorOptions().device(dist::dev()));
  c->allreduce(t)->wait();
  CHECK(t.to_vector<double>()[3] == n * (n + 1) / 2.0);
  w.barrier()->wait();
  if (rank == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("init_process_group twice in one job: the second group shares the store under its own prefix", "[comm][dist]") {
  auto a = init_process_group(Backend::gloo, InitOptions());
  auto b = init_process_group(Backend::gloo, InitOptions());
  const TensorOptions on = TensorOptions().device(dist::dev());
  Tensor x = full({3}, a->rank() + 1.0, on), y = full({3}, 2.0 * (b->rank() + 1), on);
  auto wa = a->allreduce(x);
  auto wb = b->allreduce(y);
  wa->wait();
  wb->wait();
  const int n = a->size();
  CHECK(x.to_vector<double>()[0] == n * (n + 1) / 2.0);
  CHECK(y.to_vector<double>()[0] == n * (n + 1.0));
}

TEST_CASE("Reducer: a no-grad forward prepares nothing; a second forward before backward starts over", "[comm][dist]") {
  auto& w = dist::world();
  const int rank = w.rank(), world = w.size();
  manual_seed(51);
  auto model = std::make_shared<Deep>();  // extra unused
  model->to(dist::dev());
  BucketedReducer ddp(model, dist::new_comm("evalfwd"), ReducerOptions().find_unused_parameters().first_bucket_cap_bytes(256));
  auto ref = copy_of(*model);
  Generator gen(13);
  Tensor x = randn({2 * world, 24}, {}, &gen), y = randn({2 * world, 24}, {}, &gen);
  model->zero_grad();
  mse_loss(ddp.forward(dist::shard(x, rank, 2)), dist::shard(y, rank, 2)).backward();
  ref->zero_grad();
  mse_loss(ref->forward(x), y).backward();
  auto before = grads_of(*model);
  {
    NoGradGuard ng;  // evaluation: no collectives, gradients untouched
    ddp.forward(dist::on_dev(x));
  }
  check_grads_match(*model, before, 0, 0);
  check_grads_match(*model, grads_of(*ref), 1e-5, 1e-7);
  // Forward twice (the first output discarded), then one backward.
  model->zero_grad();
  ddp.forward(dist::shard(x, rank, 2));
  mse_loss(ddp.forward(dist::shard(x, rank, 2)), dist::shard(y, rank, 2)).backward();
  check_grads_match(*model, grads_of(*ref), 1e-5, 1e-7);
  CHECK(ddp.iterations() == 2);
}
