// var, max (along a dim and over everything), argmax, softmax, log_softmax:
// values against naive f64 loops written here, gradcheck in f64 (random shapes,
// non-contiguous inputs), special values (ties, nan, -inf rows), f16/bf16 against
// f64, and the bad-input catalogue.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

Tensor leaf(Tensor t) { return t.requires_grad_(true); }

// A non-contiguous f64 tensor of logical shape s (drawn reversed, permuted back;
// 1-D: every other element of a longer vector).
Tensor noncontig(const Shape& s, double lo = -2, double hi = 2) {
  if (s.size() == 1) return uniform({s[0] * 2}, lo, hi, DType::f64).slice(0, 0, s[0] * 2, 2);
  Shape rev(s.rbegin(), s.rend()), perm;
  for (std::int64_t d = static_cast<std::int64_t>(s.size()) - 1; d >= 0; --d) perm.push_back(d);
  return uniform(rev, lo, hi, DType::f64).permute(perm);
}
Tensor nc_leaf(const Shape& s) { return leaf(noncontig(s)); }
Tensor rnd(const Shape& s, double lo = -2, double hi = 2) { return uniform(s, lo, hi, DType::f64); }

void expect_ok(const GradcheckFn& f, const std::vector<Tensor>& in) {
  GradcheckResult r = gradcheck(f, in);
  INFO(r.report);
  CHECK(r.ok);
}

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    if (std::isnan(want[i])) CHECK(std::isnan(got[i]));
    else CHECK(std::abs(got[i] - want[i]) <= tol * (1 + std::abs(want[i])));
  }
}

// A random shape with 1..max_dims dims of sizes 1..max_size.
Shape random_shape(std::mt19937& rng, int max_dims, int max_size) {
  std::uniform_int_distribution<int> nd(1, max_dims), sz(1, max_size);
  Shape s(static_cast<std::size_t>(nd(rng)));
  for (auto& v : s) v = sz(rng);
  return s;
}

// Row-major index of the keepdim output element that input element `i` reduces into.
std::int64_t reduced_index(std::int64_t i, const Shape& shape, const std::vector<std::int64_t>& dims) {
  std::int64_t out = 0, mult = 1;
  for (std::int64_t d = static_cast<std::int64_t>(shape.size()) - 1; d >= 0; --d) {
    std::int64_t c = i % shape[d];
    i /= shape[d];
    bool reduced = dims.empty() || std::find(dims.begin(), dims.end(), d) != dims.end();
    if (!reduced) {
      out += c * mult;
      mult *= shape[d];
    }
  }
  return out;
}

std::vector<double> naive_var(const std::vector<double>& x, const Shape& shape, const std::vector<std::int64_t>& dims,
                              int correction) {
  std::int64_t nout = 1, count = 1;
  for (std::int64_t d = 0; d < static_cast<std::int64_t>(shape.size()); ++d) {
    bool reduced = dims.empty() || std::find(dims.begin(), dims.end(), d) != dims.end();
    (reduced ? count : nout) *= shape[d];
  }
  std::vector<double> mean(nout, 0.0), m2(nout, 0.0);
  for (std::size_t i = 0; i < x.size(); ++i) mean[reduced_index(i, shape, dims)] += x[i] / count;
  for (std::size_t i = 0; i < x.size(); ++i) {
    double dv = x[i] - mean[reduced_index(i, shape, dims)];
    m2[reduced_index(i, shape, dims)] += dv * dv;
  }
  for (auto& v : m2) v /= std::max<std::int64_t>(count - correction, 0);
  return m2;
}

// (outer, n, inner) split of a shape at dim d.
void split3(const Shape& s, std::int64_t d, std::int64_t& outer, std::int64_t& n, std::int64_t& inner) {
  outer = inner = 1;
  for (std::int64_t i = 0; i < d; ++i) outer *= s[i];
  for (std::size_t i = d + 1; i < s.size(); ++i) inner *= s[i];
  n = s[d];
}

// Max along d: values and first index (nan counts as the largest).
void naive_max(const std::vector<double>& x, const Shape& s, std::int64_t d, std::vector<double>& v,
               std::vector<std::int64_t>& idx) {
  std::int64_t outer, n, inner;
  split3(s, d, outer, n, inner);
  v.assign(outer * inner, 0);
  idx.assign(outer * inner, 0);
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t i = 0; i < inner; ++i) {
      std::int64_t best = 0;
      for (std::int64_t j = 1; j < n; ++j) {
        double c = x[(o * n + j) * inner + i], b = x[(o * n + best) * inner + i];
        if (std::isnan(b)) break;
        if (std::isnan(c) || c > b) best = j;
      }
      idx[o * inner + i] = best;
      v[o * inner + i] = x[(o * n + best) * inner + i];
    }
}

std::vector<double> naive_softmax(const std::vector<double>& x, const Shape& s, std::int64_t d, bool log) {
  std::int64_t outer, n, inner;
  split3(s, d, outer, n, inner);
  std::vector<double> y(x.size());
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t i = 0; i < inner; ++i) {
      double m = -kInf, z = 0;
      for (std::int64_t j = 0; j < n; ++j) m = std::max(m, x[(o * n + j) * inner + i]);
      for (std::int64_t j = 0; j < n; ++j) z += std::exp(x[(o * n + j) * inner + i] - m);
      for (std::int64_t j = 0; j < n; ++j) {
        double v = x[(o * n + j) * inner + i] - m;
        y[(o * n + j) * inner + i] = log ? v - std::log(z) : std::exp(v) / z;
      }
    }
  return y;
}

}  // namespace

// ------------------------------------------------------------------------ var
TEST_CASE("var matches a naive two-pass loop", "[ops]") {
  manual_seed(101);
  Tensor x = noncontig({3, 4, 5});
  std::vector<double> xv = vals(x);
  for (int corr : {0, 1, 2}) {
    for (auto dims : std::vector<std::vector<std::int64_t>>{{}, {0}, {1}, {-1}, {0, 2}, {2, 0, 1}}) {
      INFO("correction " << corr << ", dims " << dims.size());
      std::vector<std::int64_t> wrapped;
      for (auto d : dims) wrapped.push_back(d < 0 ? d + 3 : d);
      Tensor v = var(x, dims, corr);
      check_close(vals(v), naive_var(xv, x.shape(), wrapped, corr), 1e-12);
      Tensor vk = var(x, dims, corr, true);
      CHECK(vk.dim() == 3);
      CHECK(vk.numel() == v.numel());
    }
  }
  CHECK(var(x, {1}).shape() == Shape{3, 5});
  CHECK(var(x, {1}, 1, true).shape() == Shape{3, 1, 5});
  CHECK(var(x).shape() == Shape{});
  // f32 and f16 against f64 (f16 accumulates in f64 and rounds once).
  check_close(vals(var(x.to(DType::f32), {1})), vals(var(x, {1})), 1e-6);
  check_close(vals(var(x.to(DType::f16), {1})), vals(var(x.to(DType::f16).to(DType::f64), {1})), 2e-3);
  check_close(vals(var(x.to(DType::bf16), {1})), vals(var(x.to(DType::bf16).to(DType::f64), {1})), 1e-2);
}

TEST_CASE("var edge cases: one element, N <= correction, constants", "[ops]") {
  // One element with correction 1: 0 / 0 = nan, as PyTorch.
  CHECK(std::isnan(var(full({1}, 3.0, DType::f64)).item()));
  CHECK(var(full({1}, 3.0, DType::f64), {}, 0).item() == 0.0);
  // N - correction < 0 clamps to 0: a non-zero sum of squares over 0 is inf.
  CHECK(std::isinf(var(from_vector<double>({1, 2}, {2}), {}, 3).item()));
  CHECK(var(full({4, 3}, 2.5, DType::f64), {0}).to_vector<double>() == std::vector<double>{0, 0, 0});
  // Population variance of 1..4 is 1.25, sample variance 5/3.
  Tensor v = from_vector<double>({1, 2, 3, 4}, {4});
  CHECK(var(v, {}, 0).item() == Approx(1.25));
  CHECK(var(v).item() == Approx(5.0 / 3.0));
  // An empty reduction gives nan, an empty output is empty.
  CHECK(std::isnan(var(zeros({0}, DType::f64)).item()));
  CHECK(var(zeros({0, 3}, DType::f64), {1}).numel() == 0);
}

TEST_CASE("var passes gradcheck", "[gradcheck][ops]") {
  manual_seed(102);
  std::mt19937 rng(5);
  Tensor a = nc_leaf({3, 4});
  expect_ok([](auto& x) { return var(x[0]); }, {a});
  expect_ok([](auto& x) { return var(x[0], {0}, 0); }, {a});
  expect_ok([](auto& x) { return var(x[0], {-1}, 1, true); }, {a});
  expect_ok([](auto& x) { return var(x[0], {1}, 2); }, {a});
  for (int trial = 0; trial < 4; ++trial) {
    Shape s = random_shape(rng, 3, 4);
    std::uniform_int_distribution<std::int64_t> pick(0, static_cast<std::int64_t>(s.size()) - 1);
    std::int64_t d = pick(rng);
    INFO("shape " << shape_str(s) << ", dim " << d);
    Tensor b = nc_leaf(s);
    if (s[d] > 1) expect_ok([d](auto& x) { return var(x[0], {d}); }, {b});
    expect_ok([d](auto& x) { return var(x[0], {d}, 0, true); }, {b});
  }
}

// ------------------------------------------------------------------------ max
TEST_CASE("max along a dim matches a naive loop, with first-index ties and nan", "[ops]") {
  manual_seed(103);
  Tensor x = noncontig({3, 4, 5});
  std::vector<double> xv = vals(x);
  for (std::int64_t d = 0; d < 3; ++d) {
    auto [v, i] = max(x, d);
    std::vector<double> wv;
    std::vector<std::int64_t> wi;
    naive_max(xv, x.shape(), d, wv, wi);
    CHECK(vals(v) == wv);
    CHECK(i.to_vector<std::int64_t>() == wi);
    CHECK(i.dtype() == DType::i64);
    CHECK(argmax(x, d).to_vector<std::int64_t>() == wi);
    auto [vk, ik] = max(x, d - 3, true);
    CHECK(vk.shape()[d] == 1);
    CHECK(ik.shape() == vk.shape());
    CHECK(argmax(x, d, true).shape() == vk.shape());
  }
  // Ties: the first index wins.
  Tensor t = from_vector<double>({1, 5, 5, 2, 7, 7, 7, 0}, {2, 4});
  CHECK(max(t, 1).second.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 0});
  // nan is the max, and its first index is returned.
  Tensor n = from_vector<double>({1, kNaN, 3, 0, 2, 1, kNaN, 5, kNaN}, {3, 3});
  auto [nv, ni] = max(n, 1);
  CHECK(std::isnan(nv.to_vector<double>()[0]));
  CHECK(nv.to_vector<double>()[1] == 2.0);
  CHECK(ni.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 1, 0});
  CHECK(std::isnan(nv.to_vector<double>()[2]));
  CHECK(std::isnan(max(n).item()));
  // Integer and half dtypes.
  Tensor ints = from_vector<std::int32_t>({3, -1, 9, 9, 2, 4}, {3, 2});
  CHECK(max(ints, 0).first.to_vector<std::int32_t>() == std::vector<std::int32_t>{9, 9});
  CHECK(max(ints, 0).second.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 1});
  CHECK(max(ints).item() == 9);
  CHECK(vals(max(x.to(DType::f16), 1).first) == vals(max(x.to(DType::f16).to(DType::f64), 1).first));
  CHECK(max(x.to(DType::bf16), 2).second.to_vector<std::int64_t>() ==
        max(x.to(DType::bf16).to(DType::f64), 2).second.to_vector<std::int64_t>());
  // Zero-dim input: dim 0 or -1, the value itself at index 0.
  Tensor s = full({}, 4.0, DType::f64);
  CHECK(max(s, 0).first.item() == 4.0);
  CHECK(max(s, -1).second.item() == 0);
  CHECK(max(s, 0, true).first.dim() == 0);
  // Empty outer dims are fine.
  CHECK(max(zeros({0, 3}, DType::f64), 1).first.shape() == Shape{0});
}

TEST_CASE("max over all elements", "[ops]") {
  manual_seed(104);
  Tensor x = noncontig({4, 6});
  std::vector<double> xv = vals(x);
  CHECK(max(x).item() == *std::max_element(xv.begin(), xv.end()));
  CHECK(max(x).dim() == 0);
  CHECK(max(full({}, -2.0, DType::f64)).item() == -2.0);
  CHECK(max(from_vector<double>({-kInf, -kInf}, {2})).item() == -kInf);
}

TEST_CASE("max routes the gradient: first index along a dim, shared among ties over all", "[gradcheck][ops]") {
  // Along a dim: all of g to the first max.
  Tensor t = leaf(from_vector<double>({1, 5, 5, 2, 7, 7, 7, 0}, {2, 4}));
  auto [v, i] = max(t, 1);
  sum(mul(v, from_vector<double>({2, 3}, {2}))).backward();
  CHECK(t.grad().to_vector<double>() == std::vector<double>{0, 2, 0, 0, 3, 0, 0, 0});
  // Over all elements: evenly split among ties (as PyTorch's full max).
  Tensor u = leaf(from_vector<double>({1, 7, 3, 7, 7, 0}, {2, 3}));
  mul(max(u), 6.0).backward();
  CHECK(u.grad().to_vector<double>() == std::vector<double>{0, 2, 0, 2, 2, 0});
  // A nan max: the nans share the gradient.
  Tensor w = leaf(from_vector<double>({1, kNaN, 3, kNaN}, {4}));
  max(w).backward();
  CHECK(w.grad().to_vector<double>() == std::vector<double>{0, 0.5, 0, 0.5});
  // argmax and the indices carry no gradient.
  CHECK_FALSE(argmax(t, 1).requires_grad());
  CHECK_FALSE(i.requires_grad());
  CHECK(v.requires_grad());
}

TEST_CASE("max passes gradcheck", "[gradcheck][ops]") {
  manual_seed(105);
  std::mt19937 rng(6);
  // Random values are distinct almost surely, so finite differences see one max.
  Tensor a = nc_leaf({3, 5});
  expect_ok([](auto& x) { return max(x[0], 0).first; }, {a});
  expect_ok([](auto& x) { return max(x[0], -1, true).first; }, {a});
  expect_ok([](auto& x) { return max(x[0]); }, {a});
  for (int trial = 0; trial < 4; ++trial) {
    Shape s = random_shape(rng, 4, 4);
    std::uniform_int_distribution<std::int64_t> pick(0, static_cast<std::int64_t>(s.size()) - 1);
    std::int64_t d = pick(rng);
    INFO("shape " << shape_str(s) << ", dim " << d);
    Tensor b = nc_leaf(s);
    expect_ok([d](auto& x) { return max(x[0], d).first; }, {b});
  }
  Tensor s = leaf(full({}, 1.5, DType::f64));
  expect_ok([](auto& x) { return max(x[0], 0).first; }, {s});
}

// -------------------------------------------------------------------- softmax
TEST_CASE("softmax and log_softmax match naive loops along every dim", "[ops]") {
  manual_seed(106);
  Tensor x = noncontig({3, 4, 5}, -4, 4);
  std::vector<double> xv = vals(x);
  for (std::int64_t d = 0; d < 3; ++d) {
    INFO("dim " << d);
    check_close(vals(softmax(x, d)), naive_softmax(xv, x.shape(), d, false), 1e-13);
    check_close(vals(log_softmax(x, d - 3)), naive_softmax(xv, x.shape(), d, true), 1e-13);
    Tensor xf = x.to(DType::f32);
    check_close(vals(softmax(xf, d)), naive_softmax(xv, x.shape(), d, false), 1e-6);
    check_close(vals(log_softmax(xf, d)), naive_softmax(xv, x.shape(), d, true), 1e-6);
    // f16/bf16 compute in f32 and round once.
    std::vector<double> xh = vals(x.to(DType::f16));
    check_close(vals(softmax(x.to(DType::f16), d)), naive_softmax(xh, x.shape(), d, false), 1e-3);
    check_close(vals(log_softmax(x.to(DType::f16), d)), naive_softmax(xh, x.shape(), d, true), 1e-3);
    std::vector<double> xb = vals(x.to(DType::bf16));
    check_close(vals(softmax(x.to(DType::bf16), d)), naive_softmax(xb, x.shape(), d, false), 8e-3);
  }
  CHECK(softmax(x).shape() == x.shape());
  CHECK(softmax(x).dtype() == DType::f64);
  CHECK(softmax(full({}, 3.0, DType::f64)).item() == 1.0);
  CHECK(log_softmax(full({}, 3.0, DType::f64)).item() == 0.0);
  CHECK(softmax(zeros({2, 0}, DType::f64)).shape() == Shape{2, 0});
}

TEST_CASE("softmax is stable for large inputs and gives nan for all -inf rows", "[ops]") {
  Tensor big = from_vector<float>({1000, 1001, 1002, -1000, -1001, -1002}, {2, 3});
  std::vector<double> s = vals(softmax(big));
  for (double v : s) CHECK(std::isfinite(v));
  CHECK(s[2] == Approx(0.665241).epsilon(1e-5));
  std::vector<double> ls = vals(log_softmax(big));
  CHECK(ls[0] == Approx(-2.407606).epsilon(1e-5));
  CHECK(ls[3] == Approx(-0.407606).epsilon(1e-4));  // f32 spacing near 1000 is 6e-5
  // Masked rows: -inf entries get 0 probability; an all -inf row is nan, as in PyTorch.
  Tensor m = from_vector<double>({0, -kInf, 0, -kInf, -kInf, -kInf}, {2, 3});
  std::vector<double> sm = vals(softmax(m));
  CHECK(sm[0] == 0.5);
  CHECK(sm[1] == 0.0);
  for (int i = 3; i < 6; ++i) CHECK(std::isnan(sm[i]));
  std::vector<double> lsm = vals(log_softmax(m));
  CHECK(lsm[1] == -kInf);
  for (int i = 3; i < 6; ++i) CHECK(std::isnan(lsm[i]));
  // A nan anywhere makes its row nan.
  std::vector<double> sn = vals(softmax(from_vector<double>({1, kNaN, 2, 1, 2, 3}, {2, 3})));
  for (int i = 0; i < 3; ++i) CHECK(std::isnan(sn[i]));
  for (int i = 3; i < 6; ++i) CHECK(std::isfinite(sn[i]));
}

TEST_CASE("softmax and log_softmax pass gradcheck", "[gradcheck][ops]") {
  manual_seed(107);
  std::mt19937 rng(7);
  Tensor a = nc_leaf({3, 4, 2});
  for (std::int64_t d : {0, 1, 2, -1}) {
    INFO("dim " << d);
    expect_ok([d](auto& x) { return softmax(x[0], d); }, {a});
    expect_ok([d](auto& x) { return log_softmax(x[0], d); }, {a});
  }
  for (int trial = 0; trial < 4; ++trial) {
    Shape s = random_shape(rng, 3, 5);
    std::uniform_int_distribution<std::int64_t> pick(0, static_cast<std::int64_t>(s.size()) - 1);
    std::int64_t d = pick(rng);
    INFO("shape " << shape_str(s) << ", dim " << d);
    Tensor b = nc_leaf(s);
    expect_ok([d](auto& x) { return softmax(x[0], d); }, {b});
    expect_ok([d](auto& x) { return log_softmax(x[0], d); }, {b});
  }
  // Composed with other ops (the gradient arriving is not contiguous).
  Tensor c = nc_leaf({4, 3});
  expect_ok([](auto& x) { return softmax(x[0], 0).t().slice(0, 0, 3, 2); }, {c});
  expect_ok([](auto& x) { return sum(log_softmax(x[0]), {1}); }, {c});
}

TEST_CASE("softmax backward in f32 and f16 agrees with f64", "[ops]") {
  manual_seed(108);
  Tensor x = rnd({4, 6});
  Tensor gy = rnd({4, 6});
  for (bool log : {false, true}) {
    auto run = [&](DType t) {
      Tensor xi = leaf(x.to(t).detach());
      Tensor y = log ? log_softmax(xi, 1) : softmax(xi, 1);
      y.backward(gy.to(t));
      return vals(xi.grad());
    };
    std::vector<double> ref = run(DType::f64);
    check_close(run(DType::f32), ref, 1e-5);
    check_close(run(DType::f16), ref, 2e-2);
  }
}

// --------------------------------------------------------------- bad inputs
TEST_CASE("reductions and softmax reject bad inputs with clear messages", "[ops]") {
  Tensor x = zeros({2, 3}, DType::f32);
  Tensor ints = zeros({2, 3}, DType::i64);
  CHECK_THROWS_WITH_ALL(var(Tensor()), ValueError, "var", "undefined");
  CHECK_THROWS_WITH_ALL(var(ints), DTypeError, "var", "i64[2, 3]", "floating");
  CHECK_THROWS_WITH_ALL(var(x, {2}), IndexError, "var", "dim 2", "f32[2, 3]", "[-2, 1]");
  CHECK_THROWS_WITH_ALL(var(x, {0, -2}), IndexError, "var", "repeated dim");
  CHECK_THROWS_WITH_ALL(var(x, {}, -1), ValueError, "var", "correction -1", "expected correction >= 0");
  CHECK_THROWS_WITH_ALL(max(Tensor(), 0), ValueError, "max", "undefined");
  CHECK_THROWS_WITH_ALL(max(x, 2), IndexError, "max", "dim 2", "f32[2, 3]");
  CHECK_THROWS_WITH_ALL(max(x, -3), IndexError, "max", "dim -3");
  CHECK_THROWS_WITH_ALL(max(zeros({2, 0}), 1), ShapeError, "max", "size 0", "f32[2, 0]", "non-empty");
  CHECK_THROWS_WITH_ALL(max(zeros({0, 3})), ShapeError, "max", "empty", "f32[0, 3]", "at least one element");
  CHECK_THROWS_WITH_ALL(max(Tensor()), ValueError, "max", "undefined");
  CHECK_THROWS_WITH_ALL(argmax(x, 5), IndexError, "argmax", "dim 5");
  CHECK_THROWS_WITH_ALL(argmax(zeros({0}), 0), ShapeError, "argmax", "size 0");
  CHECK_THROWS_WITH_ALL(softmax(ints), DTypeError, "softmax", "i64[2, 3]", "floating");
  CHECK_THROWS_WITH_ALL(softmax(x, 2), IndexError, "softmax", "dim 2", "f32[2, 3]");
  CHECK_THROWS_WITH_ALL(log_softmax(x, -3), IndexError, "log_softmax", "dim -3");
  CHECK_THROWS_WITH_ALL(log_softmax(Tensor()), ValueError, "log_softmax", "undefined");
  // A saved output changed in place is caught at backward.
  Tensor a = leaf(rnd({2, 3}));
  Tensor y = softmax(a);
  {
    NoGradGuard ng;
    y.fill_(0.0);
  }
  CHECK_THROWS_WITH_ALL(sum(y).backward(), AutogradError, "softmax", "modified in place");
}
