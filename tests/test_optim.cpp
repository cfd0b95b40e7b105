// optim: SGD and AdamW against hand-computed steps, parameter groups, the
// cosine schedule, gradient clipping, and optimizer state dicts.
#include <cmath>
#include <limits>
#include <numbers>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {

Tensor param(const std::vector<double>& v) {
  return from_vector(v, {static_cast<std::int64_t>(v.size())}).requires_grad_();
}
void set_grad(const Tensor& p, const std::vector<double>& g) {
  p.set_grad(from_vector(g, {static_cast<std::int64_t>(g.size())}, TensorOptions(p.dtype())));
}
std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol = 1e-12) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= tol * (1.0 + std::abs(want[i])));
  }
}

// Runs SGD on p0 with the given gradients, one step each; returns the parameter after every step.
std::vector<std::vector<double>> run_sgd(const std::vector<std::vector<double>>& grads, double lr, double momentum,
                                         double dampening, double wd, bool nesterov) {
  Tensor p = param({1.0, -2.0});
  optim::SGD opt({p}, lr, momentum, dampening, wd, nesterov);
  std::vector<std::vector<double>> out;
  for (const auto& g : grads) {
    set_grad(p, g);
    opt.step();
    out.push_back(values(p));
  }
  return out;
}

// AdamW on one scalar, written out from the formula (the reference for the tensor version).
struct ScalarAdamW {
  double p, m = 0, v = 0, vmax = 0;
  int t = 0;
  double step(double g, double lr, double b1, double b2, double eps, double wd, bool amsgrad) {
    ++t;
    p *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    vmax = std::max(vmax, v);
    double second = amsgrad ? vmax : v;
    double denom = std::sqrt(second) / std::sqrt(1 - std::pow(b2, t)) + eps;
    p -= lr / (1 - std::pow(b1, t)) * m / denom;
    return p;
  }
};

optim::OptimizerStateDict clone_state(optim::OptimizerStateDict sd) {
  for (auto& g : sd.groups)
    for (auto& s : g.params)
      for (auto& [name, t] : s.buffers) t = t.clone();
  return sd;
}

}  // namespace

TEST_CASE("SGD steps match hand-computed values", "[optim]") {
  const std::vector<std::vector<double>> g = {{0.5, 1.0}, {-1.0, 2.0}, {0.0, -1.0}};
  // plain: p -= 0.1 g
  auto plain = run_sgd(g, 0.1, 0, 0, 0, false);
  check_close(plain[0], {0.95, -2.1});
  check_close(plain[1], {1.05, -2.3});
  check_close(plain[2], {1.05, -2.2});
  // momentum 0.9: buf1 = g1; buf2 = 0.9 buf1 + g2 = [-0.55, 2.9]; buf3 = [-0.495, 1.61]
  auto mom = run_sgd(g, 0.1, 0.9, 0, 0, false);
  check_close(mom[0], {0.95, -2.1});
  check_close(mom[1], {1.005, -2.39});
  check_close(mom[2], {1.0545, -2.551});
  // dampening 0.5 (not applied to the first buffer): buf2 = 0.9 g1 + 0.5 g2 = [-0.05, 1.9]
  auto damp = run_sgd(g, 0.1, 0.9, 0.5, 0, false);
  check_close(damp[0], {0.95, -2.1});
  check_close(damp[1], {0.955, -2.29});
  // nesterov: d = g + 0.9 buf: d1 = 1.9 g1 = [0.95, 1.9]; d2 = g2 + 0.9 [-0.55, 2.9] = [-1.495, 4.61]
  auto nest = run_sgd(g, 0.1, 0.9, 0, 0, true);
  check_close(nest[0], {0.905, -2.19});
  check_close(nest[1], {1.0545, -2.651});
  // weight decay 0.1: d1 = g1 + 0.1 p0 = [0.6, 0.8]; d2 = g2 + 0.1 p1 = [-0.906, 1.792]
  auto wd = run_sgd(g, 0.1, 0, 0, 0.1, false);
  check_close(wd[0], {0.94, -2.08});
  check_close(wd[1], {1.0306, -2.2592});
}

TEST_CASE("AdamW steps match the formula, with decoupled weight decay and amsgrad", "[optim]") {
  const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
  Tensor p = param({1.0, -2.0, 0.5});
  optim::AdamW opt({p}, optim::AdamWOptions(lr).betas(b1, b2).eps(eps).weight_decay(wd));
  // Step 1 by hand: p *= 1 - lr wd; m_hat = g, v_hat = g^2, so p -= lr g / (|g| + eps).
  set_grad(p, {0.5, 1.0, -0.25});
  opt.step();
  check_close(values(p), {0.999 - 0.1 * 0.5 / (0.5 + 1e-8), -1.998 - 0.1 / (1 + 1e-8),
                          0.4995 + 0.1 * 0.25 / (0.25 + 1e-8)});
  CHECK(opt.state(0, 0).step == 1);
  check_close(values(opt.state(0, 0).buffers.at("exp_avg")), {0.05, 0.1, -0.025});
  check_close(values(opt.state(0, 0).buffers.at("exp_avg_sq")), {0.00025, 0.001, 0.0000625});
  // Steps 2 and 3 against the scalar formula.
  std::vector<ScalarAdamW> ref{{1.0}, {-2.0}, {0.5}};
  const std::vector<std::vector<double>> grads = {{0.5, 1.0, -0.25}, {-1.0, 0.3, 0.0}, {0.2, -0.7, 2.0}};
  for (std::size_t s = 0; s < 3; ++s)
    for (std::size_t i = 0; i < 3; ++i) ref[i].step(grads[s][i], lr, b1, b2, eps, wd, false);
  for (std::size_t s = 1; s < 3; ++s) {
    set_grad(p, grads[s]);
    opt.step();
  }
  check_close(values(p), {ref[0].p, ref[1].p, ref[2].p});
  CHECK(opt.state(0, 0).step == 3);

  // amsgrad keeps the running max of v: a large gradient then small ones.
  Tensor q = param({0.3});
  optim::AdamW ams({q}, 0.05, {0.8, 0.9}, 1e-6, 0.1, true);
  ScalarAdamW r{0.3};
  for (double g : {2.0, 0.1, -0.05}) {
    set_grad(q, {g});
    ams.step();
    r.step(g, 0.05, 0.8, 0.9, 1e-6, 0.1, true);
  }
  check_close(values(q), {r.p});
  CHECK(values(ams.state(0, 0).buffers.at("max_exp_avg_sq"))[0] == Approx(r.vmax));
  CHECK(r.vmax > r.v);

  // f32 parameters follow the f64 formula to f32 precision, state in f32.
  Tensor f = from_vector<float>({1.0f, -2.0f}, {2}).requires_grad_();
  optim::AdamW opt32({f}, optim::AdamWOptions(lr).weight_decay(wd));
  std::vector<ScalarAdamW> ref32{{1.0}, {-2.0}};
  for (std::size_t s = 0; s < 3; ++s) {
    set_grad(f, {grads[s][0], grads[s][1]});
    opt32.step();
    for (std::size_t i = 0; i < 2; ++i) ref32[i].step(grads[s][i], lr, 0.9, 0.999, 1e-8, wd, false);
  }
  check_close(values(f), {ref32[0].p, ref32[1].p}, 1e-6);
  CHECK(opt32.state(0, 0).buffers.at("exp_avg").dtype() == DType::f32);
}

TEST_CASE("steps write parameters in place and skip parameters without gradients", "[optim]") {
  manual_seed(20);
  nn::Linear fc(3, 2);
  Tensor w = fc.weight;
  std::uint64_t v0 = w.version();
  std::vector<double> bias_before = values(fc.bias);
  optim::AdamW opt(fc.parameters(), 0.01);
  sum(fc.forward(randn({4, 3}))).backward();
  fc.bias.zero_grad();  // no gradient: skipped
  opt.step();
  CHECK(w.same(fc.weight));
  CHECK(w.same(opt.param_groups()[0].params[0]));
  CHECK(w.version() > v0);
  CHECK(w.requires_grad());
  CHECK(w.is_leaf());
  CHECK(values(fc.bias) == bias_before);
  CHECK(opt.state(0, 0).step == 1);
  CHECK(opt.state(0, 1).step == 0);
  CHECK(opt.state(0, 1).buffers.empty());
  Tensor g = w.grad();
  opt.zero_grad(false);
  CHECK(w.grad().same(g));
  CHECK(values(g) == std::vector<double>(6, 0.0));
  opt.zero_grad();
  CHECK_FALSE(w.grad().defined());
  // A step with grad mode on does not record anything on the parameters.
  CHECK(fc.weight.is_leaf());
}

TEST_CASE("parameter groups carry their own hyperparameters", "[optim]") {
  Tensor a = param({1.0}), b = param({1.0}), c = param({1.0});
  optim::SGD opt({a}, optim::SGDOptions(0.1).momentum(0.5));
  optim::ParamGroup& g1 = opt.add_param_group({b});
  g1.lr = 0.01;
  CHECK(opt.param_groups()[1].momentum == 0.5);  // the defaults were copied
  optim::ParamGroup explicit_group;
  explicit_group.params = {c};
  explicit_group.lr = 1.0;
  opt.add_param_group(explicit_group);
  CHECK(opt.param_groups().size() == 3);
  for (int s = 0; s < 2; ++s) {
    for (const Tensor& p : {a, b, c}) set_grad(p, {1.0});
    opt.step();
  }
  // a, b: momentum 0.5: total direction 1 + 1.5; c: no momentum, lr 1.
  check_close(values(a), {1.0 - 0.1 * 2.5});
  check_close(values(b), {1.0 - 0.01 * 2.5});
  check_close(values(c), {1.0 - 2.0});
}

TEST_CASE("optimizer arguments are checked", "[optim]") {
  Tensor p = param({1.0});
  CHECK_THROWS_WITH_ALL(optim::SGD({p}, -0.1), ValueError, "SGD", "lr -0.1");
  CHECK_THROWS_WITH_ALL(optim::SGD({p}, 0.1, 0.0, 0.0, 0.0, true), ValueError, "SGD", "nesterov", "momentum > 0");
  CHECK_THROWS_WITH_ALL(optim::SGD({p}, 0.1, 0.9, 0.1, 0.0, true), ValueError, "nesterov", "dampening == 0");
  CHECK_THROWS_WITH_ALL(optim::AdamW({p}, 0.1, {0.9, 1.0}), ValueError, "AdamW", "betas (0.9, 1)");
  CHECK_THROWS_WITH_ALL(optim::AdamW({p}, optim::AdamWOptions().eps(-1)), ValueError, "AdamW", "eps -1");
  CHECK_THROWS_WITH_ALL(optim::SGD({p, p}, 0.1), ValueError, "SGD", "parameter 1 of group 0", "also parameter 0");
  optim::SGD opt({p}, 0.1);
  CHECK_THROWS_WITH_ALL(opt.add_param_group({p}), ValueError, "already parameter 0 of group 0");
  Tensor derived = p * 2.0;
  CHECK_THROWS_WITH_ALL(optim::SGD({derived}, 0.1), ValueError, "not a leaf");
  CHECK_THROWS_WITH_ALL(optim::SGD({zeros({2}, DType::i64)}, 0.1), DTypeError, "i64[2]", "floating");
  CHECK_THROWS_WITH_ALL(optim::SGD({Tensor()}, 0.1), ValueError, "undefined");
  CHECK_THROWS_WITH_ALL(opt.state(0, 1), IndexError, "Optimizer::state", "parameter 1");
}

TEST_CASE("CosineWithWarmup sets each group's lr", "[optim]") {
  Tensor a = param({1.0}), b = param({1.0});
  optim::SGD opt({a}, 1.0);
  opt.add_param_group({b}).lr = 0.5;
  optim::CosineWithWarmup sched(opt, 10, 110, 0.1);
  CHECK(opt.param_groups()[0].lr == 0.0);  // step 0 of the warm-up
  CHECK(sched.factor(5) == Approx(0.5));
  CHECK(sched.factor(10) == Approx(1.0));
  CHECK(sched.factor(35) == Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 0.25))));
  CHECK(sched.factor(60) == Approx(0.55));
  CHECK(sched.factor(109) == Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 0.99))));
  CHECK(sched.factor(110) == Approx(0.1));
  CHECK(sched.factor(500) == Approx(0.1));
  for (int s = 0; s < 5; ++s) sched.step();
  CHECK(sched.last_step() == 5);
  CHECK(opt.param_groups()[0].lr == Approx(0.5));
  CHECK(opt.param_groups()[1].lr == Approx(0.25));
  CHECK(sched.get_lr() == std::vector<double>{opt.param_groups()[0].lr, opt.param_groups()[1].lr});
  sched.set_step(60);
  CHECK(sched.get_lr(1) == Approx(0.5 * 0.55));
  CHECK(opt.param_groups()[1].lr == Approx(0.275));
  CHECK(sched.base_lrs() == std::vector<double>{1.0, 0.5});
  // The schedule drives the steps: with warm-up, the first update has lr 0.
  set_grad(a, {1.0});
  sched.set_step(0);
  opt.step();
  CHECK(values(a)[0] == 1.0);
  // Without warm-up the schedule starts at the base lr.
  optim::SGD opt2({param({1.0})}, 2.0);
  optim::CosineWithWarmup no_warm(opt2, 0, 10);
  CHECK(no_warm.get_lr(0) == Approx(2.0));
  CHECK(opt2.param_groups()[0].lr == Approx(2.0));
  CHECK(no_warm.factor(10) == 0.0);
  CHECK_THROWS_WITH_ALL(optim::CosineWithWarmup(opt, 20, 10), ValueError, "CosineWithWarmup", "warmup_steps 20");
  CHECK_THROWS_WITH_ALL(optim::CosineWithWarmup(opt, 0, 10, 1.5), ValueError, "min_lr_ratio 1.5");
}

TEST_CASE("clip_grad_norm_ scales gradients to max_norm and reports the total norm", "[optim]") {
  Tensor a = param({0.0, 0.0}), b = param({0.0}), none = param({0.0});
  set_grad(a, {3.0, 4.0});
  set_grad(b, {12.0});
  // 2-norm of (3, 4, 12) = 13; above max_norm: scaled by 6.5 / (13 + 1e-6).
  double total = optim::clip_grad_norm_({a, b, none}, 6.5);
  CHECK(total == Approx(13.0).epsilon(1e-15));
  const double coef = 6.5 / (13.0 + 1e-6);
  check_close(values(a.grad()), {3.0 * coef, 4.0 * coef});
  check_close(values(b.grad()), {12.0 * coef});
  // Below max_norm: unchanged.
  CHECK(optim::clip_grad_norm_({a, b}, 100.0) == Approx(6.5).epsilon(1e-6));
  check_close(values(b.grad()), {12.0 * coef});
  // inf-norm: the largest |g|.
  set_grad(a, {3.0, -4.0});
  set_grad(b, {-1.0});
  CHECK(optim::clip_grad_norm_({a, b}, 2.0, optim::kInfNorm) == 4.0);
  check_close(values(a.grad()), {3.0 * 2.0 / (4.0 + 1e-6), -4.0 * 2.0 / (4.0 + 1e-6)});
  // 1-norm.
  set_grad(a, {3.0, -4.0});
  CHECK(optim::clip_grad_norm_({a}, 100.0, 1.0) == 7.0);
  // f32 gradients, accumulated in f64.
  Tensor f = from_vector<float>({1e20f, 1e20f}, {2}).requires_grad_();
  f.set_grad(from_vector<float>({3e20f, 4e20f}, {2}));
  CHECK(optim::clip_grad_norm_({f}, 1.0) == Approx(5e20).epsilon(1e-6));
  CHECK(values(f.grad())[0] == Approx(0.6).epsilon(1e-5));
  // No gradients at all: 0.
  CHECK(optim::clip_grad_norm_({none}, 1.0) == 0.0);
}

TEST_CASE("clip_grad_norm_ leaves gradients alone when the norm is not finite", "[optim]") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  Tensor a = param({0.0, 0.0}), b = param({0.0});
  set_grad(a, {3.0, nan});
  set_grad(b, {100.0});
  CHECK(std::isnan(optim::clip_grad_norm_({a, b}, 1.0)));
  CHECK(values(b.grad())[0] == 100.0);
  CHECK(std::isnan(optim::clip_grad_norm_({a, b}, 1.0, optim::kInfNorm)));
  set_grad(b, {nan});
  set_grad(a, {500.0, 1.0});
  CHECK(std::isnan(optim::clip_grad_norm_({b, a}, 1.0, optim::kInfNorm)));  // nan first, then larger values
  set_grad(b, {inf});
  CHECK(std::isinf(optim::clip_grad_norm_({a, b}, 1.0)));
  CHECK(values(a.grad()) == std::vector<double>{500.0, 1.0});
  CHECK(std::isinf(optim::clip_grad_norm_({a, b}, 1.0, optim::kInfNorm)));
  CHECK_THROWS_WITH_ALL(optim::clip_grad_norm_({a, b}, 1.0, 2.0, true), ValueError, "clip_grad_norm_", "inf",
                        "finite");
  CHECK(values(a.grad()) == std::vector<double>{500.0, 1.0});
  CHECK_THROWS_WITH_ALL(optim::clip_grad_norm_({a}, 1.0, 0.0), ValueError, "norm_type 0");
  CHECK_THROWS_WITH_ALL(optim::clip_grad_norm_({a}, -1.0), ValueError, "max_norm -1");
}

namespace {
// Trains model with opt (and sched) for `steps` steps of mse on fixed data.
void train(nn::Module& model, optim::Optimizer& opt, optim::CosineWithWarmup* sched, int steps, const Tensor& x,
           const Tensor& y) {
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    mse_loss(model.forward(x), y).backward();
    optim::clip_grad_norm_(model.parameters(), 0.5);
    opt.step();
    if (sched) sched->step();
  }
}

std::shared_ptr<nn::Sequential> small_model() {
  auto m = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(3, 4), std::make_shared<nn::Tanh>(),
                                            std::make_shared<nn::Linear>(4, 2));
  m->to(DType::f64);
  return m;
}
}  // namespace

TEST_CASE("optimizer state_dict round trip resumes training exactly", "[optim]") {
  manual_seed(21);
  Tensor x = randn({8, 3}, DType::f64), y = randn({8, 2}, DType::f64);
  for (bool use_adamw : {true, false}) {
    INFO("adamw " << use_adamw);
    auto make_opt = [&](nn::Module& m) -> std::unique_ptr<optim::Optimizer> {
      std::vector<Tensor> ps = m.parameters();
      std::vector<Tensor> head(ps.begin() + 2, ps.end());
      ps.resize(2);
      std::unique_ptr<optim::Optimizer> o;
      if (use_adamw)
        o = std::make_unique<optim::AdamW>(ps, optim::AdamWOptions(0.05).weight_decay(0.1).amsgrad(true));
      else
        o = std::make_unique<optim::SGD>(ps, optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
      o->add_param_group(head).lr = 0.02;
      return o;
    };
    manual_seed(22);
    auto a = small_model();
    auto opt_a = make_opt(*a);
    optim::CosineWithWarmup sched_a(*opt_a, 2, 8, 0.1);
    train(*a, *opt_a, &sched_a, 3, x, y);
    // Checkpoint: module values (cloned, the dict shares storage), optimizer state, schedule step.
    nn::StateDict model_sd;
    for (const auto& [k, t] : a->state_dict()) model_sd.insert(k, t.clone());
    optim::OptimizerStateDict opt_sd = clone_state(opt_a->state_dict());
    std::int64_t sched_step = sched_a.last_step();
    CHECK(opt_sd.optimizer == (use_adamw ? "AdamW" : "SGD"));
    REQUIRE(opt_sd.groups.size() == 2);
    CHECK(opt_sd.groups[1].hyperparameters.at("lr") == Approx(0.02 * sched_a.factor(3)));
    CHECK(opt_sd.groups[0].params[0].step == 3);
    train(*a, *opt_a, &sched_a, 4, x, y);

    // Resume: build everything as at the start (the schedule takes its base lrs from
    // the fresh groups), then load the states and move the schedule to the saved step.
    manual_seed(99);
    auto b = small_model();
    auto opt_b = make_opt(*b);
    optim::CosineWithWarmup sched_b(*opt_b, 2, 8, 0.1);
    b->load_state_dict(model_sd);
    opt_b->load_state_dict(opt_sd);
    sched_b.set_step(sched_step);
    CHECK(opt_b->param_groups()[1].lr == opt_sd.groups[1].hyperparameters.at("lr"));
    train(*b, *opt_b, &sched_b, 4, x, y);
    auto pa = a->named_parameters(), pb = b->named_parameters();
    for (const auto& [k, t] : pa) {
      INFO(k);
      CHECK(values(t) == values(pb.at(k)));
    }
  }
}

TEST_CASE("optimizer load_state_dict rejects mismatched dicts", "[optim]") {
  Tensor a = param({1.0, 2.0}), b = param({3.0});
  optim::AdamW opt({a, b}, 0.1);
  set_grad(a, {1.0, 1.0});
  set_grad(b, {1.0});
  opt.step();
  optim::OptimizerStateDict sd = opt.state_dict();
  REQUIRE(sd.groups[0].params[1].buffers.keys() == std::vector<std::string>{"exp_avg", "exp_avg_sq"});
  CHECK(sd.groups[0].hyperparameters.keys() ==
        std::vector<std::string>{"lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad"});

  optim::SGD sgd({param({0.0})}, 0.1);
  CHECK_THROWS_WITH_ALL(opt.load_state_dict(sgd.state_dict()), ValueError, "load_state_dict", "SGD", "AdamW");

  optim::AdamW two({param({1.0, 2.0}), param({3.0})}, 0.1);
  two.add_param_group({param({0.0})});
  CHECK_THROWS_WITH_ALL(two.load_state_dict(sd), ValueError, "1 parameter groups", "has 2");

  optim::AdamW fewer({param({1.0, 2.0})}, 0.1);
  CHECK_THROWS_WITH_ALL(fewer.load_state_dict(sd), ValueError, "group 0", "2 parameters", "has 1");

  optim::AdamW other({param({1.0, 2.0}), param({3.0})}, 0.1);
  optim::OptimizerStateDict bad = sd;
  bad.groups[0].params[1].buffers.at("exp_avg") = zeros({2}, DType::f64);
  CHECK_THROWS_WITH_ALL(other.load_state_dict(bad), ShapeError, "group 0, parameter 1", "\"exp_avg\"", "[2]",
                        "[1]");
  bad = sd;
  bad.groups[0].params[0].buffers.insert("momentum_buffer", zeros({2}));
  CHECK_THROWS_WITH_ALL(other.load_state_dict(bad), ValueError, "unknown buffer \"momentum_buffer\"", "exp_avg");
  bad = sd;
  bad.groups[0].hyperparameters.erase("eps");
  bad.groups[0].hyperparameters.insert("momentum", 0.9);
  CHECK_THROWS_WITH_ALL(other.load_state_dict(bad), ValueError, "missing [\"eps\"]", "unexpected [\"momentum\"]");
  bad = sd;
  bad.groups[0].hyperparameters.at("lr") = -1.0;
  CHECK_THROWS_WITH_ALL(other.load_state_dict(bad), ValueError, "AdamW", "lr -1");
  // A failed load changed nothing; a good one restores state and hyperparameters, converting dtypes.
  CHECK(other.state(0, 0).step == 0);
  Tensor fa = from_vector<float>({1.0f, 2.0f}, {2}).requires_grad_();
  optim::AdamW f32({fa, from_vector<float>({3.0f}, {1}).requires_grad_()}, 0.5);
  sd.groups[0].hyperparameters.at("lr") = 0.25;
  f32.load_state_dict(sd);
  CHECK(f32.param_groups()[0].lr == 0.25);
  CHECK(f32.state(0, 0).step == 1);
  CHECK(f32.state(0, 0).buffers.at("exp_avg").dtype() == DType::f32);
  CHECK(f32.param_groups()[0].params[0].same(fa));
}

TEST_CASE("SGD fits a small regression", "[optim]") {
  manual_seed(23);
  Tensor x = randn({32, 3}), w = from_vector<float>({1.0f, -2.0f, 0.5f}, {3, 1});
  Tensor y = matmul(x, w) + 0.3;
  nn::Linear fc(3, 1);
  optim::SGD opt(fc.parameters(), optim::SGDOptions(0.1).momentum(0.9));
  double first = 0, last = 0;
  for (int s = 0; s < 200; ++s) {
    opt.zero_grad();
    Tensor loss = mse_loss(fc.forward(x), y);
    (s == 0 ? first : last) = loss.item();
    loss.backward();
    opt.step();
  }
  CHECK(last < first * 1e-6);
  check_close(values(fc.weight), {1.0, -2.0, 0.5}, 1e-3);
  check_close(values(fc.bias), {0.3}, 1e-3);
}
