// Deferred device errors and the host-wait counters (ciuic/host_sync.h), on the
// CPU, and on a GPU where there is one (the same test bodies with the GPU as the
// device under test).
#include <cmath>
#include <vector>

#include "ciuic/ciuic.h"
#include "ciuic/kernels/embedding_sort.h"
#include "ciuic/kernels/optim_math.h"
#include "test_util.h"

using namespace ciuic;

namespace {

// The devices the bodies run on: always the CPU, and cuda:0 where usable.
std::vector<Device> devices_under_test() {
  std::vector<Device> d{Device::cpu()};
  if (cuda_available()) d.push_back(Device::cuda(0));
  return d;
}

Tensor rnd(const Shape& s, Device d, DType dt = DType::f32) { return randn(s, TensorOptions(dt)).to(d); }

// Restores deferred mode even when a check fails.
struct ImmediateChecks {
  ImmediateChecks() { set_error_checks(ErrorChecks::immediate); }
  ~ImmediateChecks() { set_error_checks(ErrorChecks::deferred); }
};

}  // namespace

TEST_CASE("bad embedding indices raise a deferred IndexError at the next sync, naming the index", "[errors][host_sync]") {
  manual_seed(5);
  for (Device dev : devices_under_test()) {
    INFO("device " << dev.str());
    Tensor w = rnd({5, 4}, dev).requires_grad_(true);
    Tensor idx = from_vector<std::int64_t>({1, 5, 2}, {3}).to(dev);
    Tensor out;
    CHECK_NOTHROW(out = embedding(w, idx));  // no read-back inside the op
    CHECK_THROWS_WITH_ALL(synchronize(dev), IndexError, "embedding", "index 5", "V = 5", "C = 4", "[0, 5)");
    CHECK_NOTHROW(synchronize(dev));  // raised once, then cleared
    // the bad row is nan, the others are the weight's rows
    std::vector<double> o = (out.to(Device::cpu())).to_vector<double>();
    std::vector<double> wv = (w.detach().to(Device::cpu())).to_vector<double>();
    for (int j = 0; j < 4; ++j) {
      CHECK(o[static_cast<std::size_t>(j)] == wv[static_cast<std::size_t>(4 + j)]);
      CHECK(std::isnan(o[static_cast<std::size_t>(4 + j)]));
      CHECK(o[static_cast<std::size_t>(8 + j)] == wv[static_cast<std::size_t>(8 + j)]);
    }
    // backward skips the bad index: rows 1 and 2 get the upstream gradient, the others 0
    sum(out).backward();
    std::vector<double> g = (w.grad().to(Device::cpu())).to_vector<double>();
    for (int r = 0; r < 5; ++r)
      for (int j = 0; j < 4; ++j) CHECK(g[static_cast<std::size_t>(r * 4 + j)] == (r == 1 || r == 2 ? 1.0 : 0.0));
    CHECK_NOTHROW(synchronize(dev));
    // a negative index, raised by item() (a sync point) of any later read
    Tensor o2 = embedding(w.detach(), from_vector<std::int64_t>({-1}, {1}).to(dev));
    CHECK_THROWS_WITH_ALL(sum(o2).item(), IndexError, "embedding", "index -1");
    CHECK_NOTHROW(sum(o2).item());
  }
}

TEST_CASE("bad cross-entropy targets raise a deferred IndexError at the next sync", "[errors][host_sync]") {
  manual_seed(6);
  for (Device dev : devices_under_test()) {
    INFO("device " << dev.str());
    Tensor logits = rnd({4, 3}, dev);
    Tensor loss;
    CHECK_NOTHROW(loss = cross_entropy(logits, from_vector<std::int64_t>({0, 1, 3, 2}, {4}).to(dev)));
    CHECK_THROWS_WITH_ALL(loss.item(), IndexError, "cross_entropy", "target 3", "C = 3", "ignore_index -100");
    CHECK(std::isnan(loss.item()));  // the loss of a batch with a bad target is nan; the error was raised once
    // ignore_index rows are fine; another bad value is named
    Tensor ok = cross_entropy(logits, from_vector<std::int64_t>({0, -100, 2, 1}, {4}).to(dev));
    CHECK(std::isfinite(ok.item()));
    Tensor bad = cross_entropy(logits, from_vector<std::int64_t>({0, -1, 0, 2}, {4}).to(dev));
    CHECK_THROWS_WITH_ALL(synchronize(dev), IndexError, "cross_entropy", "target -1");
    CHECK_NOTHROW(synchronize(dev));
  }
}

TEST_CASE("immediate error checks raise in the op itself", "[errors][host_sync]") {
  manual_seed(7);
  for (Device dev : devices_under_test()) {
    INFO("device " << dev.str());
    Tensor w = rnd({5, 4}, dev);
    {
      ImmediateChecks immediate;
      CHECK(error_checks() == ErrorChecks::immediate);
      CHECK_THROWS_WITH_ALL(embedding(w, from_vector<std::int64_t>({7}, {1}).to(dev)), IndexError, "embedding",
                            "index 7");
      CHECK_THROWS_WITH_ALL(cross_entropy(w, from_vector<std::int64_t>({0, 1, 2, 9, 3}, {5}).to(dev)), IndexError,
                            "cross_entropy", "target 9");
      CHECK_NOTHROW(embedding(w, from_vector<std::int64_t>({4, 0}, {2}).to(dev)));
    }
    CHECK(error_checks() == ErrorChecks::deferred);
    CHECK_NOTHROW(synchronize(dev));  // nothing left pending
  }
}

TEST_CASE("clip_grad_norm_ with error_if_nonfinite raises a deferred ValueError", "[errors][host_sync][optim]") {
  for (Device dev : devices_under_test()) {
    INFO("device " << dev.str());
    Tensor p = zeros({3}, TensorOptions(DType::f32).device(dev)).requires_grad_(true);
    p.set_grad(from_vector<float>({1.0f, INFINITY, 2.0f}, {3}).to(dev));
    Tensor total;
    CHECK_NOTHROW(total = optim::clip_grad_norm_tensor_({p}, 1.0, 2.0, true));
    CHECK_THROWS_WITH_ALL(synchronize(dev), ValueError, "clip_grad_norm_", "2-norm", "1 parameters", "inf",
                          "error_if_nonfinite");
    CHECK(std::isinf(total.item()));
    // the gradients were left as they were
    std::vector<float> g = (p.grad().to(Device::cpu())).to_vector<float>();
    CHECK(g[0] == 1.0f);
    CHECK(g[2] == 2.0f);
    // the double version raises at once (its item() is a sync point)
    CHECK_THROWS_WITH_ALL(optim::clip_grad_norm_({p}, 1.0, 2.0, true), ValueError, "clip_grad_norm_");
    CHECK(std::isinf(optim::clip_grad_norm_({p}, 1.0, 2.0, false)));
  }
}

TEST_CASE("clip_grad_norm_tensor_ clips like clip_grad_norm_ without a host read", "[host_sync][optim]") {
  manual_seed(8);
  for (Device dev : devices_under_test()) {
    for (double norm_type : {2.0, 1.0, 3.0, optim::kInfNorm}) {
      INFO("device " << dev.str() << " norm_type " << norm_type);
      std::vector<Tensor> a, b;
      for (const Shape& s : {Shape{7, 3}, Shape{100003}, Shape{1}}) {
        Tensor g = mul(randn(s), 4.0);
        Tensor pa = zeros(s).to(dev).requires_grad_(true), pb = zeros(s).to(dev).requires_grad_(true);
        pa.set_grad(g.to(dev).clone());
        pb.set_grad(g.to(dev).clone());
        a.push_back(pa);
        b.push_back(pb);
      }
      reset_sync_counts();
      Tensor total = optim::clip_grad_norm_tensor_(a, 1.0, norm_type);
      const SyncCounts c = sync_counts();
      CHECK(c.d2h_copies == 0);
      CHECK(c.syncs == 0);
      CHECK(c.item_reads == 0);
      const double ref = optim::clip_grad_norm_(b, 1.0, norm_type);
      const double tol = dev.is_cpu() ? 1e-12 : 1e-5;
      CHECK(total.item() == Approx(ref).epsilon(tol));
      for (std::size_t i = 0; i < a.size(); ++i) {
        std::vector<double> ga = (a[i].grad().to(Device::cpu())).to_vector<double>();
        std::vector<double> gb = (b[i].grad().to(Device::cpu())).to_vector<double>();
        for (std::size_t j = 0; j < ga.size(); ++j) CHECK(ga[j] == Approx(gb[j]).epsilon(tol).margin(1e-7));
      }
      CHECK(optim::clip_grad_norm_(a, 1.0, norm_type) == Approx(1.0).epsilon(1e-4));  // now at max_norm
    }
  }
}

TEST_CASE("sync counters count item() reads, device-to-host copies and explicit syncs", "[host_sync]") {
  reset_sync_counts();
  Tensor x = ones({3});
  (void)sum(x).item();
  (void)sum(x).item();
  synchronize(Device::cpu());  // a no-op wait on the CPU
  SyncCounts c = sync_counts();
  CHECK(c.item_reads == 2);
  CHECK(c.d2h_copies == 0);
  CHECK(c.syncs == 0);
  if (cuda_available()) {
    Tensor g = x.to(Device::cuda(0));
    reset_sync_counts();
    (void)sum(g).item();                    // one copy
    (void)(g).to_vector<float>();              // another
    synchronize(Device::cuda(0));           // an explicit sync
    c = sync_counts();
    CHECK(c.d2h_copies == 2);
    CHECK(c.syncs == 1);
    CHECK(c.item_reads == 1);
  }
  reset_sync_counts();
  CHECK(sync_counts().item_reads == 0);
}

TEST_CASE("set_allow_tf32 and the embedding backward mode are process-wide settings", "[host_sync][ops]") {
  CHECK_FALSE(allow_tf32());  // off by default, as PyTorch
  set_allow_tf32(true);
  CHECK(allow_tf32());
  set_allow_tf32(false);
  CHECK(deterministic_embedding_backward());
  // both backward modes give the CPU reference's gradient (exactly for the deterministic one)
  manual_seed(9);
  for (Device dev : devices_under_test()) {
    for (bool det : {true, false}) {
      INFO("device " << dev.str() << " deterministic " << det);
      set_deterministic_embedding_backward(det);
      Tensor w = randn({11, 6}).to(dev).requires_grad_(true);
      Tensor idx = from_vector<std::int64_t>({3, 0, 3, 10, 3, 7, 0}, {7}).to(dev);
      Tensor g = randn({7, 6});
      sum(mul(embedding(w, idx), g.to(dev))).backward();
      Tensor wc = w.detach().to(Device::cpu()).requires_grad_(true);
      sum(mul(embedding(wc, idx.to(Device::cpu())), g)).backward();
      std::vector<double> a = (w.grad().to(Device::cpu())).to_vector<double>(), b = (wc.grad()).to_vector<double>();
      for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).epsilon(1e-6).margin(1e-6));
    }
    set_deterministic_embedding_backward(true);
  }
}

namespace {

// embedding -> LayerNorm -> Linear -> ReLU -> Linear: token logits.
struct TokenMlp : nn::Module {
  std::shared_ptr<nn::Embedding> emb;
  std::shared_ptr<nn::LayerNorm> ln;
  std::shared_ptr<nn::Linear> fc1, fc2;
  TokenMlp(std::int64_t V, std::int64_t C, std::int64_t H) : Module("TokenMlp") {
    emb = register_module("emb", std::make_shared<nn::Embedding>(V, C));
    ln = register_module("ln", std::make_shared<nn::LayerNorm>(C));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(C, H));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(H, V));
  }
  Tensor forward(const Tensor& idx) override { return fc2->forward(relu(fc1->forward(ln->forward(emb->forward(idx))))); }
};

}  // namespace

TEST_CASE("a full FP16 training step reads nothing back but the loss the caller asks for", "[host_sync][amp][cuda]") {
  // The step: embedding, LayerNorm, cross-entropy, clip_grad_norm_tensor_, the loss
  // scaler and AdamW with f32 masters, in f16. On a GPU: exactly one device-to-host
  // copy (the test's loss.item()) and no explicit sync. On the CPU the same code runs
  // (the scaler's rule on CPU tensors, the flags read in place): one item() read.
  for (Device dev : devices_under_test()) {
    INFO("device " << dev.str());
    manual_seed(11);
    const std::int64_t V = 37, C = 16, H = 24, N = 29;
    TokenMlp net(V, C, H);
    net.to(dev);
    net.to(DType::f16);
    optim::AdamW opt(net.parameters(), optim::AdamWOptions(1e-2));
    amp::LossScaler scaler(amp::LossScalerOptions().init_scale(256.0).growth_interval(3));  // f16 grads stay finite
    Tensor idx = uniform({N}, 0, static_cast<double>(V), DType::f64).to(DType::i64).to(dev);
    Tensor tgt = uniform({N}, 0, static_cast<double>(V), DType::f64).to(DType::i64).to(dev);
    auto step = [&] {
      opt.zero_grad();
      Tensor loss = cross_entropy(net.forward(idx), tgt);
      scaler.scale(loss).backward();
      scaler.unscale_(opt);
      optim::clip_grad_norm_tensor_(opt, 1.0);
      scaler.step(opt);
      scaler.update();
      return loss;
    };
    const double first = step().item();  // creates the optimizer state
    double last = first;
    for (int k = 0; k < 5; ++k) {
      reset_sync_counts();
      Tensor loss = step();
      const SyncCounts inside = sync_counts();
      CHECK(inside.d2h_copies == 0);
      CHECK(inside.syncs == 0);
      CHECK(inside.item_reads == 0);
      last = loss.item();
      const SyncCounts after = sync_counts();
      CHECK(after.d2h_copies == (dev.is_cuda() ? 1 : 0));
      CHECK(after.syncs == 0);
      CHECK(after.item_reads == 1);
    }
    CHECK(std::isfinite(last));
    CHECK(last < first);  // it trains
    // growth_interval 3: the scale doubled twice in 6 clean steps, and every step counted
    CHECK(scaler.get_scale() == 256.0 * 4);
    CHECK_FALSE(scaler.step_skipped());
    CHECK(opt.state(0, 0).step == 6);
    // a bad token id in a step: no exception inside the step, IndexError at the loss read
    Tensor bad_idx = idx.clone();
    bad_idx.select(0, 3).fill_(static_cast<double>(V + 2));
    opt.zero_grad();
    Tensor loss = cross_entropy(net.forward(bad_idx), tgt);
    CHECK_NOTHROW(scaler.scale(loss).backward());
    CHECK_THROWS_WITH_ALL(loss.item(), IndexError, "embedding", "index 39", "V = 37");
  }
}

TEST_CASE("an overflowing FP16 step is skipped on the device: scale, counts and weights", "[host_sync][amp][cuda]") {
  for (Device dev : devices_under_test()) {
    INFO("device " << dev.str());
    manual_seed(12);
    TokenMlp net(11, 8, 8);
    net.to(dev);
    net.to(DType::f16);
    optim::AdamW opt(net.parameters(), optim::AdamWOptions(1e-2));
    amp::LossScaler scaler(amp::LossScalerOptions().init_scale(16777216.0).hysteresis(1));
    Tensor idx = from_vector<std::int64_t>({1, 2, 3, 4, 5, 6}, {6}).to(dev);
    Tensor tgt = from_vector<std::int64_t>({0, 9, 3, 3, 7, 1}, {6}).to(dev);
    auto step = [&] {
      opt.zero_grad();
      Tensor loss = cross_entropy(net.forward(idx), tgt);
      mul(scaler.scale(loss), 1e30).backward();  // certainly inf in f16
      scaler.step(opt);
      scaler.update();
    };
    const Tensor w_before = net.fc1->weight.detach().clone();
    step();
    step();
    CHECK(scaler.step_skipped());
    CHECK(scaler.get_scale() == 16777216.0 / 4);  // backed off twice
    CHECK(opt.state(0, 0).step == 0);             // settled: both steps were skipped
    std::vector<double> a = net.fc1->weight.detach().to(Device::cpu()).to_vector<double>();
    std::vector<double> b = w_before.to(Device::cpu()).to_vector<double>();
    CHECK(a == b);
    // a clean step afterwards (a small scale) counts as the first
    amp::LossScaler clean(amp::LossScalerOptions().init_scale(1.0));
    opt.zero_grad();
    clean.scale(cross_entropy(net.forward(idx), tgt)).backward();
    clean.step(opt);
    clean.update();
    CHECK_FALSE(clean.step_skipped());
    CHECK(opt.state(0, 0).step == 1);
    CHECK(net.fc1->weight.detach().to(Device::cpu()).to_vector<double>() != b);
  }
}

TEST_CASE("the sort-based embedding backward sums each row in index order, as the CPU", "[kernels][ops]") {
  namespace es = kernels::emb_sort;
  CHECK(es::key_bits(1) == 1);
  CHECK(es::key_bits(2) == 2);
  CHECK(es::key_bits(50257) == 16);
  CHECK(es::key_bits(65535) == 16);
  CHECK(es::key_bits(65536) == 17);
  CHECK(es::sort_key(-1, 10) == 10);
  CHECK(es::sort_key(10, 10) == 10);
  CHECK(es::sort_key(9, 10) == 9);
  const std::uint32_t keys[] = {0, 0, 3, 3, 3, 7};
  CHECK(es::segment_start(keys, 0));
  CHECK_FALSE(es::segment_start(keys, 1));
  CHECK(es::segment_start(keys, 2));
  CHECK(es::segment_end(keys, 6, 2) == 5);
  CHECK(es::segment_end(keys, 6, 5) == 6);
  manual_seed(13);
  const std::int64_t V = 23, C = 5, n = 400;
  std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
  Tensor u = uniform({n}, -2, static_cast<double>(V + 2), DType::f64).to(DType::i64);
  const std::vector<std::int64_t> uv = u.to_vector<std::int64_t>();
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i % 3 == 0 ? 4 : uv[i];  // a hot row and some bad ones
  for (DType dt : {DType::f32, DType::f16, DType::f64}) {
    INFO(dtype_name(dt));
    Tensor g = randn({n, C}, TensorOptions(DType::f32)).to(dt);
    // the CPU op's backward (bad indices reported and skipped)
    Tensor w = zeros({V, C}, TensorOptions(dt)).requires_grad_(true);
    embedding(w, from_vector<std::int64_t>(idx, {n})).backward(g);
    CHECK_THROWS_AS(synchronize(Device::cpu()), IndexError);
    dispatch_floating(dt, "test", [&](auto tag) {
      using T = decltype(tag);
      std::vector<T> gw(static_cast<std::size_t>(V * C));
      es::backward_reference<T>(gw.data(), static_cast<const T*>(g.contiguous().data_ptr()), idx, V, C);
      const std::vector<double> ref = w.grad().to_vector<double>();
      for (std::size_t i = 0; i < gw.size(); ++i) CHECK(static_cast<double>(acc_t<T>(gw[i])) == ref[i]);
    });
  }
}

TEST_CASE("AdamW constants from the device-side step count match the host's and std::pow", "[kernels][optim]") {
  kernels::AdamWHyper h;
  h.lr = 3e-4;
  h.beta1 = 0.9;
  h.beta2 = 0.95;
  h.weight_decay = 0.1;
  for (std::int64_t t : {1LL, 2LL, 3LL, 10LL, 1000LL, 123457LL}) {
    INFO("step " << t);
    CHECK(kernels::pow_steps(h.beta1, t) == Approx(std::pow(h.beta1, static_cast<double>(t))).epsilon(1e-13));
    const kernels::AdamWConsts a = kernels::adamw_consts_at(h, t), b = kernels::adamw_consts(h, t);
    CHECK(a.step_size == b.step_size);
    CHECK(a.inv_sqrt_bc2 == b.inv_sqrt_bc2);
    CHECK(a.decay == b.decay);
    CHECK(a.step_size == Approx(h.lr / (1.0 - std::pow(h.beta1, static_cast<double>(t)))).epsilon(1e-6));
  }
  CHECK(kernels::pow_steps(0.5, 0) == 1.0);
  CHECK(kernels::pow_steps(0.5, 10) == std::ldexp(1.0, -10));
}
