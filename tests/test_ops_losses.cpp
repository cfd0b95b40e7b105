// nll_loss, binary_cross_entropy(_with_logits), l1_loss, smooth_l1_loss, huber_loss,
// kl_div: values against hand-computed references for every reduction, consistency
// with cross_entropy, stable tails, out-of-range targets, f64 gradcheck, low precision.
#include <cmath>
#include <limits>
#include <vector>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }
Tensor f64(const std::vector<double>& v) { return from_vector<double>(v, {static_cast<std::int64_t>(v.size())}); }

void check_values(const Tensor& got, const std::vector<double>& want, double tol = 1e-12) {
  const std::vector<double> g = vals(got);
  REQUIRE(g.size() == want.size());
  for (std::size_t i = 0; i < g.size(); ++i) {
    INFO("element " << i << ": got " << g[i] << ", want " << want[i]);
    if (std::isnan(want[i])) CHECK(std::isnan(g[i]));
    else if (std::isinf(want[i])) CHECK(g[i] == want[i]);
    else CHECK(std::fabs(g[i] - want[i]) <= tol * std::max(1.0, std::fabs(want[i])));
  }
}

void expect_gradcheck(const GradcheckFn& f, const std::vector<Tensor>& in) {
  GradcheckResult r = gradcheck(f, in);
  INFO(r.report);
  CHECK(r.ok);
}

Tensor leaf(Tensor t) { return t.requires_grad_(true); }
using V = std::vector<Tensor>;

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

}  // namespace

TEST_CASE("nll_loss picks -log_probs[target], ignores ignore_index, matches cross_entropy", "[ops][losses]") {
  // log_probs (3, 4)
  Tensor lp = from_vector<double>({-1, -2, -3, -4, -0.5, -1.5, -2.5, -3.5, -0.1, -0.2, -0.3, -0.4}, {3, 4});
  Tensor t = from_vector<std::int64_t>({2, -100, 0}, {3});
  check_values(nll_loss(lp, t), {(3 + 0.1) / 2});
  check_values(nll_loss(lp, t, -100, Reduction::sum), {3.1});
  check_values(nll_loss(lp, t, -100, Reduction::none), {3, 0, 0.1});
  check_values(nll_loss(lp, from_vector<std::int32_t>({1, 1, 3}, {3}), 1), {0.4});
  CHECK(std::isnan(nll_loss(lp, full({3}, -100, DType::i64)).item()));  // all ignored: 0 / 0
  SECTION("consistent with cross_entropy on (B, T, C) logits") {
    Tensor logits = uniform({2, 3, 5}, -3, 3, DType::f64);
    Tensor tg = from_vector<std::int64_t>({0, 4, -100, 2, 2, 1}, {2, 3});
    check_values(nll_loss(log_softmax(logits, -1), tg), {cross_entropy(logits, tg).item()}, 1e-12);
  }
  SECTION("out-of-range targets are IndexErrors naming the target and C") {
    CHECK_THROWS_WITH_ALL(nll_loss(lp, from_vector<std::int64_t>({0, 4, 1}, {3})), IndexError, "nll_loss",
                          "target 4", "C = 4");
    CHECK_THROWS_WITH_ALL(nll_loss(lp, from_vector<std::int64_t>({0, -1, 1}, {3})), IndexError, "target -1");
    CHECK_THROWS_WITH_ALL(nll_loss(lp, from_vector<std::int64_t>({0, 1}, {2})), ShapeError, "nll_loss",
                          "f64[3, 4]");
    CHECK_THROWS_WITH_ALL(nll_loss(lp, f64({0, 1, 2})), DTypeError, "nll_loss");
  }
  SECTION("gradcheck") {
    Tensor x = leaf(uniform({4, 3}, -2, 0, DType::f64));
    Tensor tg = from_vector<std::int64_t>({0, 2, -100, 1}, {4});
    for (Reduction r : {Reduction::mean, Reduction::sum, Reduction::none})
      expect_gradcheck([tg, r](const V& in) { return nll_loss(in[0], tg, -100, r); }, {x});
  }
}

TEST_CASE("binary_cross_entropy_with_logits is stable and honours pos_weight", "[ops][losses]") {
  Tensor x = f64({-2, 0, 3, 100, -100});
  Tensor y = f64({0, 1, 0.25, 0, 1});
  std::vector<double> want;
  for (int i = 0; i < 5; ++i) {
    double xi = vals(x)[i], yi = vals(y)[i];
    // max(x, 0) - x y + log1p(e^-|x|)
    want.push_back(std::max(xi, 0.0) - xi * yi + std::log1p(std::exp(-std::fabs(xi))));
  }
  check_values(binary_cross_entropy_with_logits(x, y, Reduction::none), want, 1e-14);
  double s = 0;
  for (double v : want) s += v;
  check_values(binary_cross_entropy_with_logits(x, y), {s / 5}, 1e-14);
  check_values(binary_cross_entropy_with_logits(x, y, Reduction::sum), {s}, 1e-14);
  // pos_weight p: -(p y log s(x) + (1 - y) log(1 - s(x))), broadcast along the last dim.
  Tensor x2 = from_vector<double>({0.5, -1, 2, -0.3}, {2, 2}), y2 = from_vector<double>({1, 0, 0.5, 1}, {2, 2});
  Tensor pw = f64({3, 0.5});
  std::vector<double> want2;
  for (int i = 0; i < 4; ++i) {
    double xi = vals(x2)[i], yi = vals(y2)[i], p = vals(pw)[i % 2];
    want2.push_back(-(p * yi * std::log(sigmoid(xi)) + (1 - yi) * std::log(1 - sigmoid(xi))));
  }
  check_values(binary_cross_entropy_with_logits(x2, y2, Reduction::none, pw), want2, 1e-13);
  // Gradient at x = 0 is sigmoid(0) - y (no kink from |x|).
  Tensor z = leaf(f64({0, 0}));
  binary_cross_entropy_with_logits(z, f64({1, 0.2}), Reduction::sum).backward();
  check_values(z.grad(), {-0.5, 0.3});
  // f32 far tails are finite.
  Tensor big = binary_cross_entropy_with_logits(f64({-200, 200}).to(DType::f32), f64({1, 0}).to(DType::f32),
                                                Reduction::none);
  check_values(big, {200, 200}, 1e-6);
  SECTION("gradcheck in logits, targets and pos_weight") {
    manual_seed(21);
    Tensor a = leaf(uniform({3, 4}, -3, 3, DType::f64)), b = leaf(uniform({3, 4}, 0, 1, DType::f64));
    Tensor w = leaf(uniform({4}, 0.5, 2, DType::f64));
    expect_gradcheck([](const V& in) { return binary_cross_entropy_with_logits(in[0], in[1]); }, {a, b});
    expect_gradcheck([](const V& in) {
      return binary_cross_entropy_with_logits(in[0], in[1], Reduction::none, in[2]);
    }, {a, b, w});
  }
  CHECK_THROWS_WITH_ALL(binary_cross_entropy_with_logits(f64({1, 2}), f64({1})), ShapeError,
                        "binary_cross_entropy_with_logits");
}

TEST_CASE("binary_cross_entropy clamps its logs at -100 and keeps a finite gradient", "[ops][losses]") {
  Tensor p = f64({0.2, 0.9, 0, 1, 0.5});
  Tensor y = f64({0, 1, 1, 0, 0.3});
  check_values(binary_cross_entropy(p, y, Reduction::none),
               {-std::log(0.8), -std::log(0.9), 100, 100, -(0.3 * std::log(0.5) + 0.7 * std::log(0.5))}, 1e-14);
  check_values(binary_cross_entropy(f64({0.0}), f64({0.0})), {0});
  Tensor q = leaf(f64({0, 1, 0.25}));
  binary_cross_entropy(q, f64({1, 0, 1}), Reduction::sum).backward();
  // (p - y) / max(p (1 - p), 1e-12)
  check_values(q.grad(), {-1e12, 1e12, (0.25 - 1) / (0.25 * 0.75)}, 1e-12);
  CHECK_THROWS_WITH_ALL(binary_cross_entropy(f64({1.5}), f64({1})), ValueError, "binary_cross_entropy", "1.5");
  CHECK_THROWS_WITH_ALL(binary_cross_entropy(f64({-0.1}), f64({1})), ValueError, "[0, 1]");
  manual_seed(22);
  Tensor a = leaf(uniform({3, 4}, 0.05, 0.95, DType::f64)), b = leaf(uniform({3, 4}, 0, 1, DType::f64));
  expect_gradcheck([](const V& in) { return binary_cross_entropy(in[0], in[1]); }, {a, b});
  expect_gradcheck([](const V& in) { return binary_cross_entropy(in[0], in[1], Reduction::none); }, {a, b});
  // bce(sigmoid(x)) equals bce_with_logits(x) away from the clamps.
  Tensor x = uniform({10}, -4, 4, DType::f64), t = uniform({10}, 0, 1, DType::f64);
  check_values(binary_cross_entropy(sigmoid(x), t), {binary_cross_entropy_with_logits(x, t).item()}, 1e-12);
}

TEST_CASE("l1, smooth_l1 and huber losses: both branches, the boundary, reductions", "[ops][losses]") {
  Tensor x = f64({0, 0.5, -2, 3}), y = f64({0, 0, 0, 1});  // d = 0, 0.5, -2, 2
  check_values(l1_loss(x, y, Reduction::none), {0, 0.5, 2, 2});
  check_values(l1_loss(x, y), {4.5 / 4});
  check_values(l1_loss(x, y, Reduction::sum), {4.5});
  // beta 1: 0.5 d^2 for |d| < 1, |d| - 0.5 else
  check_values(smooth_l1_loss(x, y, Reduction::none), {0, 0.125, 1.5, 1.5});
  // beta 2: 0.25 d^2 for |d| < 2, |d| - 1 else (|d| = 2: 1 both ways)
  check_values(smooth_l1_loss(x, y, Reduction::none, 2.0), {0, 0.0625, 1, 1});
  check_values(smooth_l1_loss(x, y, Reduction::mean, 0.0), {4.5 / 4});  // beta 0: l1
  // huber delta 1.5: 0.5 d^2 for |d| < 1.5, 1.5 (|d| - 0.75) else
  check_values(huber_loss(x, y, Reduction::none, 1.5), {0, 0.125, 1.875, 1.875});
  check_values(huber_loss(x, y, Reduction::sum), {0 + 0.125 + 1.5 + 1.5});
  CHECK_THROWS_WITH_ALL(smooth_l1_loss(x, y, Reduction::mean, -1), ValueError, "smooth_l1_loss", "beta");
  CHECK_THROWS_WITH_ALL(huber_loss(x, y, Reduction::mean, 0), ValueError, "huber_loss", "delta");
  CHECK_THROWS_WITH_ALL(l1_loss(x, f64({1})), ShapeError, "l1_loss", "f64[4]", "f64[1]");
  CHECK_THROWS_WITH_ALL(l1_loss(x, y, Reduction::batchmean), ValueError, "l1_loss", "batchmean");
  manual_seed(23);
  Tensor a = leaf(uniform({4, 5}, -3, 3, DType::f64)), b = leaf(uniform({4, 5}, -3, 3, DType::f64));
  expect_gradcheck([](const V& in) { return l1_loss(in[0], in[1]); }, {a, b});
  expect_gradcheck([](const V& in) { return smooth_l1_loss(in[0], in[1], Reduction::sum, 0.7); }, {a, b});
  expect_gradcheck([](const V& in) { return huber_loss(in[0], in[1], Reduction::none, 1.3); }, {a, b});
  // Low precision against f64.
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    Tensor xa = a.detach().to(dt), xb = b.detach().to(dt);
    const double tol = dt == DType::f32 ? 1e-6 : 1e-2;
    check_values(smooth_l1_loss(xa, xb), {smooth_l1_loss(xa.to(DType::f64), xb.to(DType::f64)).item()}, tol);
    check_values(huber_loss(xa, xb), {huber_loss(xa.to(DType::f64), xb.to(DType::f64)).item()}, tol);
  }
}

TEST_CASE("kl_div: t (log t - x), 0 where t == 0, log_target, batchmean", "[ops][losses]") {
  Tensor x = from_vector<double>({std::log(0.25), std::log(0.75), std::log(0.5), std::log(0.5)}, {2, 2});
  Tensor t = from_vector<double>({0.5, 0.5, 1, 0}, {2, 2});
  std::vector<double> pw = {0.5 * (std::log(0.5) - std::log(0.25)), 0.5 * (std::log(0.5) - std::log(0.75)),
                            1 * (0 - std::log(0.5)), 0};
  check_values(kl_div(x, t, Reduction::none), pw, 1e-14);
  const double total = pw[0] + pw[1] + pw[2] + pw[3];
  check_values(kl_div(x, t, Reduction::sum), {total}, 1e-14);
  check_values(kl_div(x, t), {total / 4}, 1e-14);
  check_values(kl_div(x, t, Reduction::batchmean), {total / 2}, 1e-14);
  check_values(kl_div(x, log(t), Reduction::none, true), pw, 1e-14);
  CHECK(reduction_from_string("batchmean", "kl_div") == Reduction::batchmean);
  CHECK_THROWS_WITH_ALL(reduction_from_string("avg", "kl_div"), ValueError, "kl_div", "avg");
  // The gradient w.r.t. the input is -t / n, finite where t == 0; w.r.t. t finite too.
  Tensor xi = leaf(x.detach().clone()), ti = leaf(t.detach().clone());
  kl_div(xi, ti, Reduction::sum).backward();
  check_values(xi.grad(), {-0.5, -0.5, -1, 0});
  for (double g : vals(ti.grad())) CHECK(std::isfinite(g));
  manual_seed(24);
  Tensor a = leaf(log_softmax(uniform({3, 4}, -2, 2, DType::f64), -1).detach());
  Tensor b = leaf(softmax(uniform({3, 4}, -2, 2, DType::f64), -1).detach());
  expect_gradcheck([](const V& in) { return kl_div(in[0], in[1], Reduction::batchmean); }, {a, b});
  Tensor lb = leaf(log(b.detach()));
  expect_gradcheck([](const V& in) { return kl_div(in[0], in[1], Reduction::mean, true); }, {a, lb});
}
