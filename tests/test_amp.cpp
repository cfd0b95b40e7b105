// amp: FP32 master weights for f16/bf16 parameters, dynamic loss scaling
// (skipped steps, growth, backoff, hysteresis, clamps, state dicts, misuse),
// FP16 / BF16 training against FP32, autocast, and autocast under checkpointing.
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "ciuic/amp.h"
#include "ciuic/ciuic.h"
#include "ciuic/kernels/optim_math.h"
#include "ciuic/models/mlp.h"
#include "ciuic/models/transformer.h"
#include "test_util.h"

using namespace ciuic;

namespace {

using Bytes = std::vector<unsigned char>;
Bytes bytes_of(const Tensor& t) { return detail::host_bytes(t, t.dtype()); }

// Every parameter's bytes plus every optimizer state entry (step counts and buffers).
struct Snapshot {
  std::vector<Bytes> params;
  std::vector<std::int64_t> steps;
  std::vector<std::pair<std::string, Bytes>> buffers;
  bool operator==(const Snapshot&) const = default;
};
Snapshot snapshot(const optim::Optimizer& opt) {
  Snapshot s;
  const auto& groups = opt.param_groups();
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (std::size_t i = 0; i < groups[g].params.size(); ++i) {
      s.params.push_back(bytes_of(groups[g].params[i]));
      const optim::ParamState& st = opt.state(g, i);
      s.steps.push_back(st.step);
      for (const auto& [name, t] : st.buffers) s.buffers.emplace_back(name, bytes_of(t));
    }
  return s;
}

// y = x W^T + b with W f16 (2 x 3), b f32 (2): one half and one f32 parameter.
struct TinyModel {
  Tensor w, b;
  TinyModel() {
    Generator gen{11, 0};
    w = randn({2, 3}, DType::f32, &gen).to(DType::f16).requires_grad_();
    b = randn({2}, DType::f32, &gen).requires_grad_();
  }
  Tensor loss(std::uint64_t seed) const {
    Generator gen{seed, 0};
    Tensor x = randn({4, 3}, DType::f32, &gen);
    Tensor y = add(linear(x.to(DType::f16), w).to(DType::f32), b);
    return mul(mean(mul(y, y)), 1e-3);  // small enough that 2^16 times its gradients fits in f16
  }
};

// Sets one element of p's gradient to v.
void poison_grad(const Tensor& p, double v) {
  NoGradGuard ng;
  Tensor g = p.grad();
  g.flatten().narrow(0, 1, 1).fill_(v);
}

// One iteration of the scaled loop on the tiny model; inf_in_w injects an inf into w's gradient.
void iterate(TinyModel& m, optim::Optimizer& opt, amp::LossScaler& scaler, bool inf_in_w, std::uint64_t seed = 5) {
  opt.zero_grad();
  scaler.scale(m.loss(seed)).backward();
  if (inf_in_w) poison_grad(m.w, std::numeric_limits<double>::infinity());
  scaler.step(opt);
  scaler.update();
}

double rel_diff(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

}  // namespace

TEST_CASE("an inf or nan gradient skips the step and leaves everything bit-identical", "[amp]") {
  for (int which : {0, 1}) {
    for (double bad : {std::numeric_limits<double>::infinity(), std::nan("")}) {
      INFO((which == 0 ? "AdamW" : "SGD with momentum") << ", bad value " << bad);
      TinyModel m;
      std::unique_ptr<optim::Optimizer> opt;
      if (which == 0) opt = std::make_unique<optim::AdamW>(std::vector<Tensor>{m.w, m.b}, 0.01);
      else opt = std::make_unique<optim::SGD>(std::vector<Tensor>{m.w, m.b}, 0.1, 0.9);
      amp::LossScaler scaler;
      iterate(m, *opt, scaler, false);
      CHECK_FALSE(scaler.step_skipped());
      CHECK(scaler.get_scale() == 65536.0);
      CHECK(opt->state(0, 0).buffers.contains("master"));
      CHECK(opt->state(0, 0).buffers.at("master").dtype() == DType::f32);
      CHECK_FALSE(opt->state(0, 0).buffers.contains("master_grad"));  // consumed by the step
      const Snapshot before = snapshot(*opt);
      const std::uint64_t version = m.w.version();

      opt->zero_grad();
      scaler.scale(m.loss(6)).backward();
      poison_grad(m.w, bad);
      scaler.step(*opt);
      CHECK(scaler.step_skipped());
      scaler.update();
      CHECK(scaler.step_skipped());
      CHECK(scaler.get_scale() == 32768.0);
      CHECK(snapshot(*opt) == before);
      CHECK(m.w.version() == version);
      CHECK(opt->state(0, 0).step == 1);
      CHECK(opt->state(0, 1).step == 1);

      iterate(m, *opt, scaler, false);  // training goes on
      CHECK_FALSE(scaler.step_skipped());
      CHECK(opt->state(0, 0).step == 2);
      CHECK_FALSE(snapshot(*opt) == before);
    }
  }
}

TEST_CASE("the CPU master-weight step is the per-element math of the fused kernels", "[amp]") {
  // Bit-for-bit: f16 parameter = round(master), master/state from kernels::adamw_update.
  Generator gen{3, 0};
  Tensor w = randn({5, 7}, DType::f32, &gen).to(DType::f16).requires_grad_();
  optim::AdamW opt({w}, optim::AdamWOptions(0.01).weight_decay(0.1));
  std::vector<float> master = w.to_vector<float>(), m(35, 0.0f), v(35, 0.0f);
  for (int t = 1; t <= 3; ++t) {
    Tensor g = randn({5, 7}, DType::f32, &gen).to(DType::f16);
    w.set_grad(g);
    opt.step();
    kernels::AdamWHyper h;
    h.lr = 0.01;
    h.weight_decay = 0.1;
    const kernels::AdamWConsts c = kernels::adamw_consts(h, t);
    const std::vector<float> gv = g.to_vector<float>();
    for (std::size_t i = 0; i < 35; ++i) kernels::adamw_update(master[i], m[i], v[i], gv[i], c);
  }
  std::vector<Half> want;
  for (float x : master) want.push_back(Half(x));
  const std::vector<Half> got = w.to_vector<Half>();
  for (std::size_t i = 0; i < want.size(); ++i) CHECK(got[i].bits == want[i].bits);
  CHECK(opt.state(0, 0).buffers.at("master").to_vector<float>() == master);
  CHECK(opt.state(0, 0).buffers.at("exp_avg").to_vector<float>() == m);
  CHECK(opt.state(0, 0).buffers.at("exp_avg_sq").to_vector<float>() == v);

  // SGD with momentum and weight decay, bf16, likewise.
  Tensor q = randn({9}, DType::f32, &gen).to(DType::bf16).requires_grad_();
  optim::SGD sgd({q}, 0.1, 0.9, 0.0, 0.01, true);
  std::vector<float> qm = q.to_vector<float>(), buf(9, 0.0f);
  kernels::SgdHyper sh;
  sh.lr = 0.1;
  sh.momentum = 0.9;
  sh.weight_decay = 0.01;
  sh.nesterov = true;
  for (int t = 0; t < 3; ++t) {
    Tensor g = randn({9}, DType::f32, &gen).to(DType::bf16);
    q.set_grad(g);
    sgd.step();
    const std::vector<float> gv = g.to_vector<float>();
    for (std::size_t i = 0; i < 9; ++i) kernels::sgd_update(qm[i], buf[i], gv[i], kernels::sgd_consts(sh), t == 0);
  }
  CHECK(sgd.state(0, 0).buffers.at("master").to_vector<float>() == qm);
  CHECK(sgd.state(0, 0).buffers.at("momentum_buffer").to_vector<float>() == buf);
  const std::vector<BFloat16> qgot = q.to_vector<BFloat16>();
  for (std::size_t i = 0; i < 9; ++i) CHECK(qgot[i].bits == BFloat16(qm[i]).bits);
}

TEST_CASE("f32 and f16 AdamW with amsgrad follow the f64 formula", "[amp]") {
  Generator gen{12, 0};
  Tensor p0 = randn({6}, DType::f64, &gen);
  Tensor p64 = p0.clone().requires_grad_(), p32 = p0.to(DType::f32).requires_grad_();
  Tensor p16 = p0.to(DType::f16).requires_grad_();
  optim::AdamWOptions o = optim::AdamWOptions(0.05).betas(0.8, 0.9).eps(1e-6).weight_decay(0.1).amsgrad(true);
  optim::AdamW a64({p64}, o), a32({p32}, o), a16({p16}, o);
  for (int t = 0; t < 4; ++t) {
    Tensor g = mul(randn({6}, DType::f64, &gen), t == 0 ? 3.0 : 0.1);  // a large gradient, then small ones
    p64.set_grad(g);
    p32.set_grad(g.to(DType::f32));
    p16.set_grad(g.to(DType::f16));
    a64.step();
    a32.step();
    a16.step();
  }
  const std::vector<double> want = p64.to_vector<double>(), got32 = p32.to_vector<double>();
  const std::vector<double> master = a16.state(0, 0).buffers.at("master").to_vector<double>();
  for (std::size_t i = 0; i < 6; ++i) {
    CHECK(got32[i] == Approx(want[i]).epsilon(1e-5));
    CHECK(master[i] == Approx(want[i]).epsilon(1e-2));  // f16 gradients, f16 start
  }
  CHECK(a32.state(0, 0).buffers.at("max_exp_avg_sq").to_vector<double>()[0] ==
        Approx(a64.state(0, 0).buffers.at("max_exp_avg_sq").to_vector<double>()[0]).epsilon(1e-5));
}

TEST_CASE("the scale grows after growth_interval clean iterations and is clamped", "[amp]") {
  TinyModel m;
  optim::SGD opt({m.w, m.b}, 1e-3);
  amp::LossScaler scaler(amp::LossScalerOptions().init_scale(4).growth_interval(3).min_scale(1).max_scale(16));
  std::vector<double> scales;
  for (int i = 0; i < 9; ++i) {
    iterate(m, opt, scaler, false);
    scales.push_back(scaler.get_scale());
  }
  CHECK(scales == std::vector<double>{4, 4, 8, 8, 8, 16, 16, 16, 16});  // max_scale 16
  scales.clear();
  for (int i = 0; i < 6; ++i) {
    iterate(m, opt, scaler, true);
    scales.push_back(scaler.get_scale());
  }
  CHECK(scales == std::vector<double>{8, 4, 2, 1, 1, 1});  // min_scale 1
  // An overflow restarts the growth count.
  scales.clear();
  for (bool inf : {false, false, true, false, false, false}) {
    iterate(m, opt, scaler, inf);
    scales.push_back(scaler.get_scale());
  }
  CHECK(scales == std::vector<double>{1, 1, 1, 1, 1, 2});
}

TEST_CASE("hysteresis tolerates overflows until the hysteresis-th in a row", "[amp]") {
  TinyModel m;
  optim::SGD opt({m.w, m.b}, 1e-3);
  amp::LossScaler scaler(amp::LossScalerOptions().init_scale(1024).hysteresis(3).growth_interval(100));
  std::vector<double> scales;
  std::vector<std::int64_t> steps;
  for (bool inf : {true, true, true, true, false, true, true, false, true}) {
    iterate(m, opt, scaler, inf);
    scales.push_back(scaler.get_scale());
    steps.push_back(opt.state(0, 0).step);
  }
  // Overflows 1, 2 tolerated (but skipped), 3 and 4 back off; a clean step ends the streak.
  CHECK(scales == std::vector<double>{1024, 1024, 512, 256, 256, 256, 256, 256, 256});
  CHECK(steps == std::vector<std::int64_t>{0, 0, 0, 0, 1, 1, 1, 2, 2});
}

TEST_CASE("several optimizers share one scaler; each skips on its own flag", "[amp]") {
  TinyModel m;
  optim::AdamW opt_w({m.w}, 0.01);
  optim::AdamW opt_b({m.b}, 0.01);
  amp::LossScaler scaler;
  opt_w.zero_grad();
  opt_b.zero_grad();
  scaler.scale(m.loss(1)).backward();
  poison_grad(m.w, std::numeric_limits<double>::infinity());
  const Bytes w_before = bytes_of(m.w), b_before = bytes_of(m.b);
  scaler.step(opt_w);
  scaler.step(opt_b);
  scaler.update();
  CHECK(bytes_of(m.w) == w_before);
  CHECK(bytes_of(m.b) != b_before);
  CHECK(opt_w.state(0, 0).step == 0);
  CHECK(opt_b.state(0, 0).step == 1);
  CHECK(scaler.get_scale() == 32768.0);  // one backoff for the iteration
  CHECK(scaler.step_skipped());
}

TEST_CASE("gradient accumulation unscales once; clipping sees the unscaled gradients", "[amp]") {
  // f32 parameters: scaling by a power of two is exact, so the unscaled
  // accumulated gradients equal the unscaled run's bit for bit.
  Generator gen{4, 0};
  Tensor w0 = randn({3, 5}, DType::f32, &gen);
  Tensor xs[2] = {randn({6, 5}, DType::f32, &gen), randn({6, 5}, DType::f32, &gen)};
  auto micro_loss = [&](const Tensor& w, int k) { return mean(mul(linear(xs[k], w), linear(xs[k], w))); };

  Tensor ref = w0.clone().requires_grad_();
  for (int k = 0; k < 2; ++k) micro_loss(ref, k).backward();
  Tensor w = w0.clone().requires_grad_();
  optim::SGD opt({w}, 0.1);
  amp::LossScaler scaler;
  for (int k = 0; k < 2; ++k) scaler.scale(micro_loss(w, k)).backward();
  scaler.unscale_(opt);
  CHECK(bytes_of(w.grad()) == bytes_of(ref.grad()));
  const double norm_ref = optim::clip_grad_norm_({ref}, 0.01);
  CHECK(optim::clip_grad_norm_(opt, 0.01) == norm_ref);
  CHECK(bytes_of(w.grad()) == bytes_of(ref.grad()));
  scaler.step(opt);
  scaler.update();

  // f16 parameters: clip_grad_norm_(optimizer) clips the f32 master gradients.
  TinyModel m;
  optim::SGD opt16({m.w, m.b}, 0.1);
  scaler.scale(m.loss(2)).backward();
  scaler.scale(m.loss(3)).backward();
  const Tensor scaled_w_grad = m.w.grad().clone();
  scaler.unscale_(opt16);
  const Tensor mg = opt16.state(0, 0).buffers.at("master_grad");
  CHECK(mg.dtype() == DType::f32);
  CHECK(opt16.step_gradient(0, 0).same(mg));
  CHECK(bytes_of(m.w.grad()) == bytes_of(scaled_w_grad));  // the f16 gradient is left alone
  const std::vector<float> sw = scaled_w_grad.to_vector<float>(), mv = mg.to_vector<float>();
  for (std::size_t i = 0; i < sw.size(); ++i) CHECK(mv[i] == sw[i] / 65536.0f);
  double sq = 0;
  for (float x : mv) sq += double(x) * x;
  for (float x : m.b.grad().to_vector<float>()) sq += double(x) * x;
  const double total = optim::clip_grad_norm_(opt16, 1e-3);
  CHECK(total == Approx(std::sqrt(sq)).epsilon(1e-12));
  const double want = 1e-3 * total / (total + 1e-6);  // clip_grad_norm_'s coefficient
  double clipped = 0;
  for (float x : opt16.state(0, 0).buffers.at("master_grad").to_vector<float>()) clipped += double(x) * x;
  for (float x : m.b.grad().to_vector<float>()) clipped += double(x) * x;
  CHECK(std::sqrt(clipped) == Approx(want).epsilon(1e-5));
  scaler.step(opt16);
  scaler.update();
}

TEST_CASE("loss scaler and optimizer state dicts round-trip, masters included", "[amp]") {
  TinyModel m;
  optim::AdamW opt({m.w, m.b}, 0.01);
  amp::LossScaler scaler(amp::LossScalerOptions().growth_interval(4).hysteresis(2));
  for (bool inf : {false, true, false, true, true, false}) iterate(m, opt, scaler, inf);
  const amp::LossScalerState sd = scaler.state_dict();
  CHECK(sd.scale == 32768.0);
  CHECK(sd.growth_tracker == 1);
  CHECK(sd.overflow_streak == 0);
  CHECK(sd.options.hysteresis_ == 2);

  const optim::OptimizerStateDict osd = opt.state_dict();
  CHECK(osd.groups[0].params[0].buffers.contains("master"));
  CHECK_FALSE(osd.groups[0].params[1].buffers.contains("master"));  // f32 parameter: none
  CHECK(osd.groups[0].params[0].buffers.at("exp_avg").dtype() == DType::f32);

  // A fresh model, optimizer and scaler resume bit-identically.
  TinyModel m2;
  {
    NoGradGuard ng;
    m2.w.copy_(m.w);
    m2.b.copy_(m.b);
  }
  optim::AdamW opt2({m2.w, m2.b}, 0.5);
  opt2.load_state_dict(osd);
  amp::LossScaler scaler2;
  scaler2.load_state_dict(sd);
  CHECK(scaler2.get_scale() == 32768.0);
  CHECK(scaler2.options().growth_interval_ == 4);
  for (bool inf : {false, false, true, false, false, false}) {
    iterate(m, opt, scaler, inf, 9);
    iterate(m2, opt2, scaler2, inf, 9);
    CHECK(scaler2.get_scale() == scaler.get_scale());
  }
  CHECK(bytes_of(m2.w) == bytes_of(m.w));
  CHECK(bytes_of(m2.b) == bytes_of(m.b));
  CHECK(snapshot(opt2).buffers == snapshot(opt).buffers);

  amp::LossScalerState bad = sd;
  bad.scale = 1e30;
  CHECK_THROWS_WITH_ALL(scaler2.load_state_dict(bad), ValueError, "LossScaler::load_state_dict", "max_scale");
  bad = sd;
  bad.growth_tracker = 4;
  CHECK_THROWS_WITH_ALL(scaler2.load_state_dict(bad), ValueError, "growth_tracker 4");
  // A master for an f32 parameter is rejected.
  optim::OptimizerStateDict wrong = osd;
  wrong.groups[0].params[1].buffers.insert("master", zeros({2}));
  CHECK_THROWS_WITH_ALL(opt2.load_state_dict(wrong), ValueError, "\"master\"", "f16/bf16");
}

TEST_CASE("a master re-syncs when its parameter is written elsewhere", "[amp]") {
  Tensor w = ones({4}, DType::f16).requires_grad_();
  optim::SGD opt({w}, 0.0);  // lr 0: the master is just the parameter
  w.set_grad(ones({4}, DType::f16));
  opt.step();
  {
    NoGradGuard ng;
    w.copy_(full({4}, 3.0, DType::f16));  // e.g. weights loaded into the model
  }
  opt.step();
  CHECK(opt.state(0, 0).buffers.at("master").to_vector<float>() == std::vector<float>(4, 3.0f));
  CHECK(w.to_vector<float>() == std::vector<float>(4, 3.0f));
}

TEST_CASE("loss scaler misuse is a clear error", "[amp]") {
  TinyModel m;
  optim::SGD opt({m.w, m.b}, 0.1);
  amp::LossScaler scaler;
  CHECK_THROWS_WITH_ALL(scaler.update(), ValueError, "LossScaler::update", "no step(optimizer)");
  scaler.scale(m.loss(1)).backward();
  scaler.unscale_(opt);
  CHECK_THROWS_WITH_ALL(scaler.unscale_(opt), ValueError, "LossScaler::unscale_", "already called", "SGD");
  scaler.step(opt);
  CHECK_THROWS_WITH_ALL(scaler.step(opt), ValueError, "LossScaler::step", "already called");
  CHECK_THROWS_WITH_ALL(scaler.unscale_(opt), ValueError, "LossScaler::unscale_", "already stepped");
  CHECK_THROWS_WITH_ALL(scaler.load_state_dict(scaler.state_dict()), ValueError, "LossScaler::load_state_dict",
                        "between iterations");
  scaler.update();
  CHECK_THROWS_WITH_ALL(scaler.update(), ValueError, "LossScaler::update");
  CHECK_THROWS_WITH_ALL(scaler.scale(arange(3)), DTypeError, "LossScaler::scale", "i64");
  CHECK_THROWS_WITH_ALL(scaler.scale(Tensor()), ValueError, "LossScaler::scale", "undefined");
  CHECK_THROWS_WITH_ALL(amp::LossScaler(amp::LossScalerOptions().growth_factor(1.0)), ValueError, "growth_factor");
  CHECK_THROWS_WITH_ALL(amp::LossScaler(amp::LossScalerOptions().backoff_factor(1.5)), ValueError, "backoff_factor");
  CHECK_THROWS_WITH_ALL(amp::LossScaler(amp::LossScalerOptions().hysteresis(0)), ValueError, "hysteresis");
  CHECK_THROWS_WITH_ALL(amp::LossScaler(amp::LossScalerOptions().init_scale(1e9)), ValueError, "scale 1e+09",
                        "max_scale");
  CHECK_THROWS_WITH_ALL(amp::LossScaler(amp::LossScalerOptions().min_scale(8).max_scale(4)), ValueError,
                        "min_scale 8");
  CHECK_THROWS_WITH_ALL(amp::AutocastGuard(DType::f32), DTypeError, "AutocastGuard", "f16 or bf16");
  CHECK_THROWS_WITH_ALL(opt.step(Tensor()), ValueError, "SGD", "found_inf");
  CHECK_THROWS_WITH_ALL(opt.step(zeros({2})), ShapeError, "SGD", "found_inf");
  // Master weights need eps > 0 in AdamW.
  optim::AdamW ad({m.w}, optim::AdamWOptions(0.1).eps(0.0));
  m.w.set_grad(ones({2, 3}, DType::f16));
  CHECK_THROWS_WITH_ALL(ad.step(), ValueError, "AdamW", "eps 0", "f16");
}

TEST_CASE("a disabled scaler is the plain loop", "[amp]") {
  TinyModel m;
  optim::SGD opt({m.w, m.b}, 0.1);
  amp::LossScaler scaler(amp::LossScalerOptions().enabled(false));
  CHECK(scaler.get_scale() == 1.0);
  Tensor loss = m.loss(1);
  CHECK(scaler.scale(loss).same(loss));
  loss.backward();
  scaler.unscale_(opt);
  CHECK_FALSE(opt.state(0, 0).buffers.contains("master_grad"));
  const Bytes before = bytes_of(m.w);
  scaler.step(opt);
  scaler.update();
  CHECK(bytes_of(m.w) != before);
  CHECK(opt.state(0, 0).step == 1);
  CHECK(scaler.get_scale() == 1.0);
}

TEST_CASE("f16 gradients that underflow without loss scaling train with it", "[amp]") {
  // loss = 1e-8 * mse: d loss / d out <~ 2e-9, below f16's smallest subnormal (6e-8).
  Generator gen{21, 0};
  Tensor x = randn({32, 8}, DType::f32, &gen).to(DType::f16);
  Tensor teacher = randn({4, 8}, DType::f32, &gen);
  Tensor y = linear(x.to(DType::f32), teacher);
  Tensor w0 = mul(randn({4, 8}, DType::f32, &gen), 0.1).to(DType::f16);
  auto loss_of = [&](const Tensor& w) { return mul(mse_loss(linear(x, w).to(DType::f32), y), 1e-8); };
  auto train = [&](bool scaled) {
    Tensor w = w0.clone().requires_grad_();
    optim::AdamW opt({w}, optim::AdamWOptions(0.05).weight_decay(0).eps(1e-20));
    amp::LossScaler scaler(amp::LossScalerOptions().enabled(scaled));
    bool all_zero = true;
    for (int s = 0; s < 100; ++s) {
      opt.zero_grad();
      scaler.scale(loss_of(w)).backward();
      for (float g : w.grad().to_vector<float>()) all_zero = all_zero && g == 0.0f;
      scaler.step(opt);
      scaler.update();
    }
    NoGradGuard ng;
    return std::make_pair(loss_of(w).item() / 1e-8, all_zero);
  };
  const double initial = loss_of(w0).item() / 1e-8;
  auto [plain, plain_zero] = train(false);
  auto [scaled, scaled_zero] = train(true);
  CHECK(plain_zero);                // every f16 gradient flushed to zero ...
  CHECK(plain == initial);          // ... so nothing trained
  CHECK_FALSE(scaled_zero);
  CHECK(scaled < 0.05 * initial);   // with scaling it trains
}

namespace {
// Trains the 100-100-100 MLP on 32 teacher examples for 100 full-batch AdamW
// steps; returns the f32 loss every 10 steps. dtype f16/bf16: weights in that
// dtype, f32 masters, f32 loss; `scaled`: the loss scaler on.
std::vector<double> mlp_curve(DType dtype, bool scaled) {
  models::MLPConfig cfg;
  auto data = models::make_teacher_data(cfg, 32, 7);
  Generator init{3, 0};
  auto model = std::make_shared<models::MLP>(cfg, &init);
  if (dtype != DType::f32) model->to(dtype);
  optim::AdamW opt(model->parameters(), optim::AdamWOptions(2e-3).weight_decay(0.01));
  amp::LossScaler scaler(amp::LossScalerOptions().enabled(scaled));
  const Tensor x = data.x.to(dtype);
  std::vector<double> logged;
  for (int s = 0; s < 100; ++s) {
    opt.zero_grad();
    Tensor loss = mse_loss(model->forward(x).to(DType::f32), data.y);
    if (s % 10 == 0) logged.push_back(loss.item());
    scaler.scale(loss).backward();
    scaler.step(opt);
    scaler.update();
  }
  return logged;
}

const std::vector<double>& f32_curve() {
  static const std::vector<double> curve = mlp_curve(DType::f32, false);
  return curve;
}
}  // namespace

TEST_CASE("the MLP in f16 with masters and loss scaling follows the f32 loss curve within 1%", "[amp]") {
  const std::vector<double>& f32 = f32_curve();
  const std::vector<double> f16 = mlp_curve(DType::f16, true);
  REQUIRE(f32.size() == 10);
  CHECK(f32.back() < 0.5 * f32.front());  // it learns
  for (std::size_t i = 0; i < f32.size(); ++i) {
    INFO("step " << 10 * i << ": f32 " << f32[i] << ", f16 " << f16[i]);
    CHECK(rel_diff(f16[i], f32[i]) < 0.01);
  }
}

TEST_CASE("the MLP in bf16 with masters and no loss scaling follows the f32 loss curve within 5%", "[amp]") {
  const std::vector<double>& f32 = f32_curve();
  const std::vector<double> bf16 = mlp_curve(DType::bf16, false);
  for (std::size_t i = 0; i < f32.size(); ++i) {
    INFO("step " << 10 * i << ": f32 " << f32[i] << ", bf16 " << bf16[i]);
    CHECK(rel_diff(bf16[i], f32[i]) < 0.05);
  }
}

TEST_CASE("autocast runs matmul, linear, conv2d and attention in f16 with gradients to f32 parameters", "[amp]") {
  Generator gen{8, 0};
  Tensor x = randn({3, 4}, DType::f32, &gen);
  Tensor w = randn({5, 4}, DType::f32, &gen).requires_grad_();
  Tensor b = randn({5}, DType::f32, &gen).requires_grad_();
  Tensor y;
  {
    amp::AutocastGuard autocast(DType::f16);
    CHECK(amp::autocast_enabled());
    y = linear(x, w, b);
    CHECK(y.dtype() == DType::f16);
    CHECK(matmul(x, w.t()).dtype() == DType::f16);
    Tensor img = randn({1, 2, 5, 5}, DType::f32, &gen), k = randn({3, 2, 3, 3}, DType::f32, &gen);
    CHECK(conv2d(img, k).dtype() == DType::f16);
    Tensor q = randn({2, 3, 4}, DType::f32, &gen);
    CHECK(scaled_dot_product_attention(q, q, q, true).dtype() == DType::f16);
    CHECK(linear(x.to(DType::f64), w.to(DType::f64)).dtype() == DType::f64);  // f64 is never cast
    {
      amp::AutocastGuard bf(DType::bf16);
      CHECK(linear(x, w).dtype() == DType::bf16);
      amp::AutocastGuard off(DType::f16, false);
      CHECK(linear(x, w).dtype() == DType::f32);
    }
    CHECK(amp::autocast_state().dtype == DType::f16);
  }
  CHECK_FALSE(amp::autocast_enabled());
  CHECK(linear(x, w, b).dtype() == DType::f32);
  // The same as casting by hand.
  CHECK(bytes_of(y) == bytes_of(linear(x.to(DType::f16), w.detach().to(DType::f16), b.detach().to(DType::f16))));
  sum(y.to(DType::f32)).backward();
  REQUIRE(w.grad().defined());
  CHECK(w.grad().dtype() == DType::f32);
  CHECK(b.grad().dtype() == DType::f32);
  // d sum(x W^T + b) / dW = column sums of x per output row, via f16 rounding of x.
  const std::vector<float> xs = x.to(DType::f16).to_vector<float>();
  const std::vector<float> gw = w.grad().to_vector<float>();
  for (int o = 0; o < 5; ++o)
    for (int i = 0; i < 4; ++i)
      CHECK(gw[o * 4 + i] == Approx(xs[i] + xs[4 + i] + xs[8 + i]).epsilon(1e-3));
  CHECK(b.grad().to_vector<float>() == std::vector<float>(5, 3.0f));
}

TEST_CASE("checkpoint recomputation sees the forward's autocast state", "[amp]") {
  Generator gen{9, 0};
  Tensor x = randn({6, 8}, DType::f32, &gen).requires_grad_();
  Tensor w1 = randn({16, 8}, DType::f32, &gen).requires_grad_();
  Tensor w2 = randn({8, 16}, DType::f32, &gen).requires_grad_();
  auto block = [&](const Tensor& h) { return linear(gelu(linear(h, w1)), w2); };
  auto grads = [&](int mode) {
    for (Tensor* t : {&x, &w1, &w2}) t->zero_grad();
    Tensor out;
    {
      amp::AutocastGuard autocast(DType::f16);
      if (mode == 0) out = block(x);
      else if (mode == 1) out = checkpoint(block, x);
      else out = checkpoint(block, x, CheckpointOptions::selective());
      CHECK(out.dtype() == DType::f16);
    }
    sum(mul(out.to(DType::f32), out.to(DType::f32))).backward();  // backward outside the guard
    CHECK_FALSE(amp::autocast_enabled());
    return std::vector<Bytes>{bytes_of(x.grad()), bytes_of(w1.grad()), bytes_of(w2.grad())};
  };
  const auto plain = grads(0);
  CHECK(grads(1) == plain);
  CHECK(grads(2) == plain);
  CHECK(w1.grad().dtype() == DType::f32);
}

TEST_CASE("autocast promotes mixed floating dtypes in binary ops and runs a GPT stack", "[amp]") {
  Tensor x32 = randn({3, 4}), x16 = randn({3, 4}).to(DType::f16);
  CHECK_THROWS_AS(add(x32, x16), DTypeError);  // outside autocast mixing stays an error
  {
    amp::AutocastGuard autocast(DType::f16);
    CHECK(add(x32, x16).dtype() == DType::f32);
    CHECK(mul(x16, x32.to(DType::f64)).dtype() == DType::f64);
    CHECK(sub(x16, x32.to(DType::bf16)).dtype() == DType::f32);
  }
  models::GPTConfig cfg;
  cfg.vocab = 61;
  cfg.max_seq = 16;
  cfg.layers = 2;
  cfg.dim = 32;
  cfg.heads = 4;
  Generator g{3, 0};
  models::GPT gpt(cfg, CheckpointPolicy::none(), &g);
  Tensor idx = arange(32).view({2, 16}), tgt = arange(1.0, 33.0).view({2, 16});
  double ref = gpt.loss(idx, tgt).item();
  Tensor loss;
  {
    amp::AutocastGuard autocast(DType::f16);
    loss = gpt.loss(idx, tgt);  // linears and attention in f16, residual stream and loss in f32
  }
  CHECK(loss.dtype() == DType::f32);
  CHECK(std::abs(loss.item() - ref) < 2e-2 * std::abs(ref));
  loss.backward();
  for (const Tensor& p : gpt.parameters()) {
    REQUIRE(p.grad().defined());
    CHECK(p.grad().dtype() == DType::f32);
    for (float v : p.grad().to_vector<float>()) REQUIRE(std::isfinite(v));
  }
}
