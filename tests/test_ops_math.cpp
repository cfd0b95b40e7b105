// Unary math and activations, remainder / fmod, and the reductions std, amax, amin,
// logsumexp, prod, norm: values against closed forms and hand-computed references
// (edge cases PyTorch users rely on), f64 gradcheck of every differentiable op,
// f32/f16/bf16 against f64, non-contiguous and broadcast inputs, empty tensors, errors.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }
Tensor f64(const std::vector<double>& v) { return from_vector<double>(v, {static_cast<std::int64_t>(v.size())}); }

// got equals want elementwise within tol (relative to max(1, |want|)); nan matches nan,
// infinities match exactly.
void check_values(const Tensor& got, const std::vector<double>& want, double tol = 1e-12) {
  const std::vector<double> g = vals(got);
  REQUIRE(g.size() == want.size());
  for (std::size_t i = 0; i < g.size(); ++i) {
    INFO("element " << i << ": got " << g[i] << ", want " << want[i]);
    if (std::isnan(want[i])) {
      CHECK(std::isnan(g[i]));
    } else if (std::isinf(want[i])) {
      CHECK(g[i] == want[i]);
    } else {
      CHECK(std::fabs(g[i] - want[i]) <= tol * std::max(1.0, std::fabs(want[i])));
    }
  }
}

void expect_gradcheck(const GradcheckFn& f, const std::vector<Tensor>& in) {
  GradcheckResult r = gradcheck(f, in);
  INFO(r.report);
  CHECK(r.ok);
}

Tensor leaf(Tensor t) { return t.requires_grad_(true); }
// A non-contiguous (transposed) f64 leaf of logical shape {r, c}.
Tensor leaf_t(std::int64_t r, std::int64_t c, double lo = -2, double hi = 2) {
  return leaf(uniform({c, r}, lo, hi, DType::f64).t());
}

using UnaryFn = std::function<Tensor(const Tensor&)>;
struct Named {
  const char* name;
  UnaryFn f;
  std::function<double(double)> ref;  // closed form in f64
  double lo, hi;                      // input domain for random tests
};

double softplus_ref(double x, double beta = 1, double threshold = 20) {
  return x * beta > threshold ? x : std::log1p(std::exp(x * beta)) / beta;
}

std::vector<Named> unary_table() {
  return {
      {"sin", [](const Tensor& x) { return sin(x); }, [](double x) { return std::sin(x); }, -4, 4},
      {"cos", [](const Tensor& x) { return cos(x); }, [](double x) { return std::cos(x); }, -4, 4},
      {"log1p", [](const Tensor& x) { return log1p(x); }, [](double x) { return std::log1p(x); }, -0.9, 3},
      {"expm1", [](const Tensor& x) { return expm1(x); }, [](double x) { return std::expm1(x); }, -3, 3},
      {"erf", [](const Tensor& x) { return erf(x); }, [](double x) { return std::erf(x); }, -3, 3},
      {"log2", [](const Tensor& x) { return log2(x); }, [](double x) { return std::log(x) / std::log(2.0); }, 0.1, 5},
      {"log10", [](const Tensor& x) { return log10(x); }, [](double x) { return std::log(x) / std::log(10.0); }, 0.1, 5},
      {"reciprocal", [](const Tensor& x) { return reciprocal(x); }, [](double x) { return 1 / x; }, 0.2, 3},
      {"square", [](const Tensor& x) { return square(x); }, [](double x) { return x * x; }, -3, 3},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x); }, [](double x) { return x > 0 ? x : 0.01 * x; }, -3, 3},
      {"leaky_relu 0.2", [](const Tensor& x) { return leaky_relu(x, 0.2); }, [](double x) { return x > 0 ? x : 0.2 * x; }, -3, 3},
      {"elu", [](const Tensor& x) { return elu(x); }, [](double x) { return x > 0 ? x : std::exp(x) - 1; }, -3, 3},
      {"elu 0.5", [](const Tensor& x) { return elu(x, 0.5); }, [](double x) { return x > 0 ? x : 0.5 * (std::exp(x) - 1); }, -3, 3},
      {"softplus", [](const Tensor& x) { return softplus(x); }, [](double x) { return softplus_ref(x); }, -5, 5},
      {"softplus beta 2 thr 3", [](const Tensor& x) { return softplus(x, 2, 3); },
       [](double x) { return softplus_ref(x, 2, 3); }, -3, 3},
      {"logsigmoid", [](const Tensor& x) { return logsigmoid(x); }, [](double x) { return -std::log1p(std::exp(-x)); }, -6, 6},
      {"hardtanh", [](const Tensor& x) { return hardtanh(x); }, [](double x) { return std::clamp(x, -1.0, 1.0); }, -3, 3},
      {"hardtanh -0.5 2", [](const Tensor& x) { return hardtanh(x, -0.5, 2); }, [](double x) { return std::clamp(x, -0.5, 2.0); }, -3, 3},
      {"mish", [](const Tensor& x) { return mish(x); }, [](double x) { return x * std::tanh(std::log1p(std::exp(x))); }, -4, 4},
  };
}

}  // namespace

TEST_CASE("unary math and activations match closed forms in f64, on strided inputs", "[ops][math]") {
  manual_seed(11);
  for (const Named& u : unary_table()) {
    INFO(u.name);
    Tensor x = uniform({5, 7}, u.lo, u.hi, DType::f64).t();  // non-contiguous
    Tensor y = u.f(x);
    CHECK(y.shape() == Shape{7, 5});
    CHECK(y.dtype() == DType::f64);
    std::vector<double> xs = vals(x), want;
    for (double v : xs) want.push_back(u.ref(v));
    check_values(y, want, 1e-13);
  }
}

TEST_CASE("unary math and activations in f32, f16, bf16 agree with f64", "[ops][math]") {
  manual_seed(12);
  for (const Named& u : unary_table()) {
    Tensor x64 = uniform({301}, u.lo, u.hi, DType::f64);
    for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
      INFO(u.name << " " << dtype_name(dt));
      Tensor x = x64.to(dt);
      Tensor y = u.f(x);
      CHECK(y.dtype() == dt);
      // Reference: the same (rounded) inputs in f64, rounded once to dt.
      std::vector<double> ref = vals(u.f(x.to(DType::f64)).to(dt));
      const double tol = dt == DType::f32 ? 1e-6 : dt == DType::f16 ? 1e-3 : 8e-3;
      check_values(y, ref, tol);
    }
  }
}

TEST_CASE("unary edge cases: rounding, sign, softplus threshold, logsigmoid tails, nan", "[ops][math]") {
  SECTION("round is half to even, floor/ceil/trunc as C, -0 kept") {
    Tensor x = f64({0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.5001, -0.0, 1e300, kInf, -kInf, NAN});
    check_values(round(x), {0, 2, 2, -0.0, -2, -2, 2, 3, -0.0, 1e300, kInf, -kInf, NAN});
    CHECK(std::signbit(vals(round(x))[3]));  // round(-0.5) = -0
    check_values(floor(x), {0, 1, 2, -1, -2, -3, 2, 2, -0.0, 1e300, kInf, -kInf, NAN});
    check_values(ceil(x), {1, 2, 3, -0.0, -1, -2, 3, 3, -0.0, 1e300, kInf, -kInf, NAN});
    check_values(trunc(x), {0, 1, 2, -0.0, -1, -2, 2, 2, -0.0, 1e300, kInf, -kInf, NAN});
    for (DType dt : {DType::f32, DType::f16, DType::bf16})
      check_values(round(f64({0.5, 1.5, 2.5, -2.5, 3.5}).to(dt)), {0, 2, 2, -2, 4});
  }
  SECTION("integer inputs: rounding ops are copies, sign is -1/0/1 in the same dtype") {
    for (DType dt : {DType::i32, DType::i64}) {
      Tensor x = from_vector<std::int64_t>({-7, 0, 5, -1}, {4}).to(dt);
      for (auto f : std::vector<Tensor (*)(const Tensor&)>{floor, ceil, round, trunc}) {
        Tensor y = f(x);
        CHECK(y.dtype() == dt);
        CHECK(equal(y, x));
        CHECK(!y.same(x));
      }
      Tensor s = sign(x);
      CHECK(s.dtype() == dt);
      check_values(s, {-1, 0, 1, -1});
      Tensor sq = square(x);
      CHECK(sq.dtype() == dt);
      check_values(sq, {49, 0, 25, 1});
    }
    check_values(sign(from_vector<std::uint8_t>({0, 3}, {2})), {0, 1});
    // The math functions promote integers to f32, as PyTorch.
    Tensor s = sin(arange(3));
    CHECK(s.dtype() == DType::f32);
    check_values(s, {0, std::sin(1.0), std::sin(2.0)}, 1e-6);
  }
  SECTION("sign keeps signed zeros and nan") {
    Tensor y = sign(f64({-3, -0.0, 0.0, 2, kInf, -kInf, NAN}));
    check_values(y, {-1, -0.0, 0, 1, 1, -1, NAN});
    CHECK(std::signbit(vals(y)[1]));
  }
  SECTION("softplus switches to x above the threshold, and never overflows") {
    // beta x > threshold: exactly x; at and below it the log1p form.
    Tensor x = f64({20.0, 20.5, 100, 1000, -1000, 0});
    check_values(softplus(x), {std::log1p(std::exp(20.0)), 20.5, 100, 1000, 0, std::log(2.0)}, 1e-15);
    // beta 2, threshold 1: x = 0.6 -> 1.2 > 1 gives 0.6.
    check_values(softplus(f64({0.6, 0.4}), 2, 1), {0.6, std::log1p(std::exp(0.8)) / 2}, 1e-15);
    check_values(softplus(f64({100.0}).to(DType::f32)), {100});
  }
  SECTION("logsigmoid is finite in both tails; elu and leaky_relu keep nan") {
    Tensor x = f64({-1000, 1000, -40, 40});
    check_values(logsigmoid(x), {-1000, -0.0, -40 - std::log1p(std::exp(-40.0)), -std::exp(-40.0)}, 1e-14);
    check_values(logsigmoid(x.to(DType::f32)), {-1000, 0, -40, -4.248354e-18}, 1e-6);
    for (auto f : std::vector<UnaryFn>{[](const Tensor& t) { return leaky_relu(t); }, [](const Tensor& t) { return elu(t); },
                                       [](const Tensor& t) { return softplus(t); }, [](const Tensor& t) { return logsigmoid(t); },
                                       [](const Tensor& t) { return hardtanh(t); }, [](const Tensor& t) { return mish(t); },
                                       [](const Tensor& t) { return sin(t); }, [](const Tensor& t) { return erf(t); }})
      CHECK(std::isnan(f(f64({NAN})).item()));
  }
  SECTION("log1p and expm1 keep tiny arguments exact; erf and reciprocal special values") {
    check_values(log1p(f64({1e-12, -1, -2})), {1e-12 - 5e-25, -kInf, NAN}, 1e-15);
    check_values(expm1(f64({1e-12, -kInf, kInf})), {1e-12 + 5e-25, -1, kInf}, 1e-15);
    // Relative accuracy at 1e-12 (log(1 + x) would be off by ~1e-4 relative there).
    CHECK(std::fabs(log1p(f64({1e-12})).item() / (1e-12 - 5e-25) - 1) < 1e-14);
    CHECK(std::fabs(expm1(f64({1e-12})).item() / (1e-12 + 5e-25) - 1) < 1e-14);
    CHECK(std::fabs(log1p(f64({1e-6}).to(DType::f32)).item() / 9.999995e-7 - 1) < 1e-6);
    check_values(erf(f64({0, kInf, -kInf})), {0, 1, -1});
    check_values(reciprocal(f64({0.0, -0.0, 4})), {kInf, -kInf, 0.25});
    check_values(log2(f64({8, 0, -1})), {3, -kInf, NAN});
    check_values(log10(f64({1000, 0})), {3, -kInf});
  }
  SECTION("empty tensors") {
    for (const Named& u : unary_table()) {
      Tensor y = u.f(zeros({0, 3}, DType::f32));
      CHECK(y.shape() == Shape{0, 3});
    }
    CHECK(round(zeros({0}, DType::f64)).numel() == 0);
  }
}

TEST_CASE("unary math and activations pass gradcheck; piecewise constant ones give 0", "[gradcheck][ops][math]") {
  manual_seed(13);
  for (const Named& u : unary_table()) {
    INFO(u.name);
    Tensor x = leaf_t(3, 4, u.lo, u.hi);
    expect_gradcheck([&u](const std::vector<Tensor>& in) { return u.f(in[0]); }, {x});
  }
  // Kinks: the gradient sides PyTorch picks (hardtanh 0 at the bounds, leaky_relu slope at 0, elu at 0).
  Tensor k = leaf(f64({-1, 1, 0, 0.5}));
  sum(hardtanh(k)).backward();
  check_values(k.grad(), {0, 0, 1, 1});
  Tensor z = leaf(f64({0, 0}));
  sum(leaky_relu(z, 0.3)).backward();
  check_values(z.grad(), {0.3, 0.3});
  Tensor s = leaf(f64({1000, -1000, 25}));
  sum(softplus(s)).backward();
  check_values(s.grad(), {1, 0, 1});  // above the threshold: 1
  Tensor ls = leaf(f64({1000, -1000}));
  sum(logsigmoid(ls)).backward();
  check_values(ls.grad(), {0, 1});
  for (auto f : std::vector<Tensor (*)(const Tensor&)>{sign, floor, ceil, round, trunc}) {
    Tensor x = leaf(f64({-1.5, 0.2, 2.5}));
    Tensor y = f(x);
    CHECK(y.requires_grad());
    sum(mul(y, 3.0)).backward();
    check_values(x.grad(), {0, 0, 0});
  }
}

TEST_CASE("activation modules call their functions with PyTorch's defaults", "[ops][math][nn]") {
  Tensor x = f64({-2, -0.5, 0.5, 2});
  CHECK(equal(nn::LeakyReLU()(x), leaky_relu(x, 0.01)));
  CHECK(equal(nn::LeakyReLU(0.2)(x), leaky_relu(x, 0.2)));
  CHECK(equal(nn::ELU()(x), elu(x, 1.0)));
  CHECK(equal(nn::Softplus(2, 3)(x), softplus(x, 2, 3)));
  CHECK(equal(nn::Hardtanh()(x), hardtanh(x)));
  CHECK(equal(nn::Hardtanh(-0.5, 0.5)(x), clamp(x, -0.5, 0.5)));
  CHECK(equal(nn::LogSigmoid()(x), logsigmoid(x)));
  CHECK(equal(nn::Mish()(x), mish(x)));
  CHECK(nn::LeakyReLU(0.2).extra_repr() == "negative_slope=0.2");
  CHECK(nn::Hardtanh(-2, 3).extra_repr() == "min_val=-2, max_val=3");
}

TEST_CASE("activation errors name the op and the input", "[ops][math][errors]") {
  CHECK_THROWS_WITH_ALL(hardtanh(f64({1}), 2, 1), ValueError, "hardtanh", "min_val", "f64[1]");
  CHECK_THROWS_WITH_ALL(softplus(f64({1}), 0), ValueError, "softplus", "beta");
  CHECK_THROWS_WITH_ALL(leaky_relu(arange(3)), DTypeError, "leaky_relu", "i64");
  CHECK_THROWS_WITH_ALL(sin(Tensor()), ValueError, "undefined");
}

// ---- remainder / fmod ----
TEST_CASE("remainder follows Python's sign rule and fmod C's, floats and integers", "[ops][math]") {
  SECTION("floats") {
    Tensor a = f64({5, -5, 5, -5, 5.5, -0.0, 3, 1, -1, kInf, 2});
    Tensor b = f64({3, 3, -3, -3, 2, 2, 0, kInf, kInf, 2, NAN});
    check_values(remainder(a, b), {2, 1, -1, -2, 1.5, 0, NAN, 1, kInf, NAN, NAN});
    check_values(fmod(a, b), {2, -2, 2, -2, 1.5, -0.0, NAN, 1, -1, NAN, NAN});
    check_values(remainder(f64({-7.5, 7.5}), 2.0), {0.5, 1.5});
    check_values(fmod(f64({-7.5, 7.5}), 2.0), {-1.5, 1.5});
    for (DType dt : {DType::f32, DType::f16, DType::bf16})
      check_values(remainder(f64({5, -5, 5, -5}).to(dt), f64({3, 3, -3, -3}).to(dt)), {2, 1, -1, -2});
  }
  SECTION("integers, with promotion, INT_MIN and zero divisors") {
    for (DType dt : {DType::i32, DType::i64}) {
      Tensor a = from_vector<std::int64_t>({5, -5, 5, -5, 0, 7}, {6}).to(dt);
      Tensor b = from_vector<std::int64_t>({3, 3, -3, -3, 4, -1}, {6}).to(dt);
      Tensor r = remainder(a, b), f = fmod(a, b);
      CHECK(r.dtype() == dt);
      check_values(r, {2, 1, -1, -2, 0, 0});
      check_values(f, {2, -2, 2, -2, 0, 0});
      CHECK_THROWS_WITH_ALL(remainder(a, zeros({6}, dt)), ValueError, "remainder", "division by zero");
      CHECK_THROWS_WITH_ALL(fmod(a, 0), ValueError, "fmod", "division by zero");
    }
    Tensor mn = from_vector<std::int32_t>({std::numeric_limits<std::int32_t>::min()}, {1});
    check_values(remainder(mn, -1), {0});
    check_values(remainder(from_vector<std::uint8_t>({200, 7}, {2}), 7), {4, 0});
    // Integral tensor with a floating scalar gives f32 (the promotion rules).
    Tensor p = remainder(arange(5), 2.5);
    CHECK(p.dtype() == DType::f32);
    check_values(p, {0, 1, 2, 0.5, 1.5});
    CHECK(remainder(arange(5), 3).dtype() == DType::i64);
  }
  SECTION("broadcasting, strides and empty") {
    Tensor a = uniform({4, 3}, -10, 10, DType::f64).t();  // (3, 4), strided
    Tensor b = f64({1.5, -2, 3, -0.7}).view({1, 4});
    Tensor r = remainder(a, b);
    std::vector<double> av = vals(a), want;
    for (std::size_t i = 0; i < av.size(); ++i) {
      double bv = vals(b)[i % 4];
      double m = std::fmod(av[i], bv);
      if (m != 0 && ((m < 0) != (bv < 0))) m += bv;
      want.push_back(m);
    }
    check_values(r, want);
    CHECK(remainder(zeros({0, 2}, DType::f32), ones({2}, DType::f32)).shape() == Shape{0, 2});
  }
  SECTION("errors") {
    CHECK_THROWS_WITH_ALL(remainder(f64({1, 2}), f64({1, 2, 3})), ShapeError, "remainder");
    CHECK_THROWS_WITH_ALL(remainder(ones({2}, DType::boolean), ones({2}, DType::boolean)), DTypeError, "remainder",
                          "bool");
  }
}

TEST_CASE("remainder and fmod pass gradcheck in both operands with broadcasting", "[gradcheck][ops][math]") {
  manual_seed(14);
  Tensor a = leaf_t(3, 4, -5, 5);
  // b away from values where a / b is near an integer (the kinks): |b| in [1.3, 1.7], a fixed sign per column.
  Tensor b = leaf(f64({1.37, -1.61, 1.53, -1.44}));
  expect_gradcheck([](const std::vector<Tensor>& in) { return remainder(in[0], in[1]); }, {a, b});
  expect_gradcheck([](const std::vector<Tensor>& in) { return fmod(in[0], in[1]); }, {a, b});
}

// ---- reductions ----
TEST_CASE("std, amax, amin, logsumexp, prod and norm: values over dims with keepdim", "[ops][math][reduce]") {
  // x (2, 3): [[1, -2, 3], [0, 5, -5]]
  Tensor x = from_vector<double>({1, -2, 3, 0, 5, -5}, {2, 3});
  check_values(amax(x), {5});
  check_values(amin(x), {-5});
  check_values(amax(x, {1}), {3, 5});
  check_values(amin(x, {0}), {0, -2, -5});
  CHECK(amax(x, {1}, true).shape() == Shape{2, 1});
  CHECK(amin(x, {-1, 0}).shape() == Shape{});
  check_values(prod(x, {1}), {-6, 0});
  check_values(prod(x), {0});
  check_values(prod(from_vector<double>({2, 3, 4}, {3})), {24});
  check_values(ciuic::std(x, {1}), {std::sqrt(19.0 / 3), 5});  // row 0: mean 2/3, squares 114/9
  check_values(ciuic::std(x, {1}, 0), {std::sqrt(38.0 / 9), std::sqrt(50.0 / 3)});
  check_values(logsumexp(x, {1}), {std::log(std::exp(1) + std::exp(-2) + std::exp(3)),
                                   std::log(1 + std::exp(5) + std::exp(-5))});
  check_values(norm(x), {std::sqrt(64.0)});
  check_values(norm(x, 2, {1}), {std::sqrt(14.0), std::sqrt(50.0)});
  check_values(norm(x, 1, {0}), {1, 7, 8});
  check_values(norm(x, kInf, {1}), {3, 5});
  check_values(norm(x, -kInf, {1}), {1, 0});
  check_values(norm(x, 0, {1}), {3, 2});
  check_values(norm(x, 3, {1}), {std::cbrt(36.0), std::cbrt(250.0)});
  // Non-adjacent dims of a 3-D tensor, against a loop.
  Tensor y = uniform({3, 4, 5}, -2, 2, DType::f64);
  std::vector<double> yv = vals(y), mx(4, -kInf), lse(4, 0), pr(4, 1);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 5; ++k) {
        double v = yv[(i * 4 + j) * 5 + k];
        mx[j] = std::max(mx[j], v);
        lse[j] += std::exp(v);
        pr[j] *= v;
      }
  for (double& v : lse) v = std::log(v);
  check_values(amax(y, {0, 2}), mx);
  check_values(logsumexp(y, {2, 0}), lse, 1e-13);
  check_values(prod(y, {0, -1}), pr, 1e-12);
  check_values(amax(y, {0, 2}, true).reshape({4}), mx);
}

TEST_CASE("reduction edge cases: -inf rows, zeros in prod, ties, nan, integers, empty", "[ops][math][reduce]") {
  SECTION("logsumexp of -inf rows is -inf, +inf rows inf, large values do not overflow") {
    Tensor x = from_vector<double>({-kInf, -kInf, 1, -kInf, kInf, 0, 1000, 1000}, {4, 2});
    check_values(logsumexp(x, {1}), {-kInf, 1, kInf, 1000 + std::log(2.0)});
    check_values(logsumexp(from_vector<float>({88, 89}, {2})), {89 + std::log1p(std::exp(-1.0))}, 1e-6);
    check_values(logsumexp(zeros({2, 0}, DType::f64), {1}), {-kInf, -kInf});
    CHECK(logsumexp(arange(3)).dtype() == DType::f32);
    CHECK(std::isnan(logsumexp(f64({1, NAN})).item()));
  }
  SECTION("amax/amin propagate nan; integer and bool dtypes; INT_MIN") {
    check_values(amax(f64({1, NAN, 3})), {NAN});
    check_values(amin(f64({1, NAN, -3})), {NAN});
    Tensor i = from_vector<std::int32_t>({std::numeric_limits<std::int32_t>::min(), 7, -3}, {3});
    CHECK(amin(i).dtype() == DType::i32);
    check_values(amin(i), {static_cast<double>(std::numeric_limits<std::int32_t>::min())});
    check_values(amax(i), {7});
    check_values(amin(from_vector<std::uint8_t>({200, 3, 255}, {3})), {3});
    check_values(amin(from_vector<std::int64_t>({std::numeric_limits<std::int64_t>::max(), 2}, {2})), {2});
    Tensor bl = from_vector<std::uint8_t>({1, 0, 1}, {3}, DType::boolean);
    CHECK(amin(bl).dtype() == DType::boolean);
    CHECK(amin(bl).item() == 0);
    CHECK(amax(bl).item() == 1);
  }
  SECTION("prod of integers gives i64 and wraps; empty products are 1") {
    Tensor i = from_vector<std::int32_t>({100000, 100000, 3}, {3});
    CHECK(prod(i).dtype() == DType::i64);
    check_values(prod(i), {3e10});
    check_values(prod(zeros({2, 0}, DType::f32), {1}), {1, 1});
    check_values(prod(zeros({0}, DType::f64)), {1});
  }
  SECTION("empty reductions of amax/amin are errors; norm / std of empty") {
    CHECK_THROWS_WITH_ALL(amax(zeros({2, 0}), {1}), ShapeError, "amax", "f32[2, 0]");
    CHECK_THROWS_WITH_ALL(amin(zeros({0})), ShapeError, "amin");
    CHECK(amax(zeros({0, 3}), {1}).shape() == Shape{0});
    check_values(norm(zeros({0}, DType::f64)), {0});
    CHECK(std::isnan(ciuic::std(f64({1})).item()));  // one element, correction 1: nan
  }
  SECTION("low precision against f64") {
    Tensor x64 = uniform({7, 301}, -3, 3, DType::f64);
    for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
      INFO(dtype_name(dt));
      Tensor x = x64.to(dt), xr = x.to(DType::f64);
      const double tol = dt == DType::f32 ? 1e-5 : 1e-2;
      check_values(amax(x, {1}), vals(amax(xr, {1})), 0);
      check_values(amin(x, {0}), vals(amin(xr, {0})), 0);
      check_values(logsumexp(x, {1}), vals(logsumexp(xr, {1})), tol);
      check_values(ciuic::std(x, {1}), vals(ciuic::std(xr, {1})), tol);
      check_values(norm(x, 2, {1}), vals(norm(xr, 2, {1})), tol);
      check_values(norm(x, 1, {1}), vals(norm(xr, 1, {1})), tol);
      CHECK(norm(x).dtype() == dt);
    }
    // f16's x^2 overflows from 256: the norm accumulates in f32.
    check_values(norm(full({4}, 300, DType::f16)), {600});
  }
  SECTION("errors") {
    CHECK_THROWS_WITH_ALL(norm(f64({1}), -1), ValueError, "norm", "p = -1");
    CHECK_THROWS_WITH_ALL(norm(arange(3)), DTypeError, "norm");
    CHECK_THROWS_WITH_ALL(ciuic::std(arange(3)), DTypeError, "std");
    CHECK_THROWS_WITH_ALL(amax(f64({1}), {2}), IndexError, "amax");
  }
}

TEST_CASE("reduction gradients: ties, zeros, the zero vector, -inf", "[ops][math][reduce]") {
  SECTION("amax / amin share the gradient evenly among ties, or among nans") {
    Tensor x = leaf(from_vector<double>({3, 1, 3, 2, 2, 2}, {2, 3}));
    sum(mul(amax(x, {1}), f64({1, 10}))).backward();
    check_values(x.grad(), {0.5, 0, 0.5, 10.0 / 3, 10.0 / 3, 10.0 / 3});
    Tensor y = leaf(f64({-1, 4, -1}));
    amin(y).backward();
    check_values(y.grad(), {0.5, 0, 0.5});
    Tensor n = leaf(f64({1, NAN, 5}));
    amax(n).backward();
    check_values(n.grad(), {0, 1, 0});
  }
  SECTION("prod's gradient is exact with one and with two zeros") {
    Tensor x = leaf(f64({2, 0, 3, 4}));
    prod(x).backward();
    check_values(x.grad(), {0, 24, 0, 0});
    Tensor z = leaf(f64({0, 5, 0}));
    prod(z).backward();
    check_values(z.grad(), {0, 0, 0});
  }
  SECTION("norm's gradient is 0 at the zero vector for every p; x / |x| elsewhere") {
    for (double p : {2.0, 1.0, kInf, 3.0, 0.5}) {
      INFO("p = " << p);
      Tensor x = leaf(zeros({3}, DType::f64));
      norm(x, p).backward();
      check_values(x.grad(), {0, 0, 0});
    }
    Tensor x = leaf(f64({3, 0, -4}));
    norm(x).backward();
    check_values(x.grad(), {0.6, 0, -0.8});
    Tensor r = leaf(f64({0, 0, 1, 2}).view({2, 2}));
    norm(r, 2, {1}).backward(f64({1, 1}));
    check_values(r.grad(), {0, 0, 1 / std::sqrt(5.0), 2 / std::sqrt(5.0)});
  }
  SECTION("logsumexp: softmax, 0 at -inf elements and for all -inf rows") {
    Tensor x = leaf(from_vector<double>({0, std::log(3.0), -kInf, -kInf}, {2, 2}));
    sum(logsumexp(x, {1})).backward();
    check_values(x.grad(), {0.25, 0.75, 0, 0});
  }
}

TEST_CASE("the new reductions pass gradcheck over dims, keepdim and strided inputs", "[gradcheck][ops][math][reduce]") {
  manual_seed(15);
  Tensor a = leaf_t(3, 4);
  Tensor c = leaf(uniform({2, 3, 4}, 0.5, 2, DType::f64));
  using V = std::vector<Tensor>;
  expect_gradcheck([](const V& in) { return ciuic::std(in[0], {1}); }, {a});
  expect_gradcheck([](const V& in) { return ciuic::std(in[0], {0, 2}, 0, true); }, {c});
  expect_gradcheck([](const V& in) { return amax(in[0], {1}); }, {a});
  expect_gradcheck([](const V& in) { return amin(in[0], {0, 2}, true); }, {c});
  expect_gradcheck([](const V& in) { return logsumexp(in[0], {1}); }, {a});
  expect_gradcheck([](const V& in) { return logsumexp(in[0], {0, 2}); }, {c});
  expect_gradcheck([](const V& in) { return logsumexp(in[0]); }, {a});
  expect_gradcheck([](const V& in) { return prod(in[0], {1}); }, {a});
  expect_gradcheck([](const V& in) { return prod(in[0], {0, 2}, true); }, {c});
  expect_gradcheck([](const V& in) { return prod(in[0]); }, {a});
  for (double p : {2.0, 1.0, kInf, -kInf, 3.0, 1.5}) {
    INFO("p = " << p);
    expect_gradcheck([p](const V& in) { return norm(in[0], p, {1}); }, {a});
    expect_gradcheck([p](const V& in) { return norm(in[0], p, {0, 2}, true); }, {c});
  }
  // prod with a zero: gradcheck of the exact (prefix/suffix) gradient.
  Tensor z = leaf(f64({1.5, 0, -2, 0.7}));
  expect_gradcheck([](const V& in) { return prod(in[0]); }, {z});
}
