// gradcheck for every elementwise op, on broadcast and non-contiguous f64 inputs.
#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {
Tensor leaf(Tensor t) { return t.requires_grad_(true); }
// A non-contiguous (transposed) leaf of logical shape {r, c}.
Tensor leaf_t(std::int64_t r, std::int64_t c, double lo = -2, double hi = 2) {
  Tensor base = uniform({c, r}, lo, hi, DType::f64);
  return leaf(base.t());
}
Tensor rnd(const Shape& s, double lo = -2, double hi = 2) { return leaf(uniform(s, lo, hi, DType::f64)); }

void expect_ok(const GradcheckFn& f, const std::vector<Tensor>& in) {
  GradcheckResult r = gradcheck(f, in);
  INFO(r.report);
  CHECK(r.ok);
}
}  // namespace

TEST_CASE("binary ops pass gradcheck with broadcasting and strides", "[gradcheck][ops]") {
  manual_seed(7);
  Tensor a = leaf_t(3, 4), b = rnd({4}), c = rnd({3, 1}, 0.5, 2.0);
  expect_ok([](auto& x) { return add(x[0], x[1]); }, {a, b});
  expect_ok([](auto& x) { return sub(x[0], x[1]); }, {a, b});
  expect_ok([](auto& x) { return mul(x[0], x[1]); }, {a, b});
  expect_ok([](auto& x) { return div(x[0], x[1]); }, {a, c});
  expect_ok([](auto& x) { return pow(x[1], x[0]); }, {a, c});
  expect_ok([](auto& x) { return maximum(x[0], x[1]); }, {a, b});
  expect_ok([](auto& x) { return minimum(x[0], x[1]); }, {a, b});
  expect_ok([](auto& x) { return x[0] * 3.0 - 2.0 / x[1] + 1.0; }, {a, c});
}

TEST_CASE("unary ops pass gradcheck", "[gradcheck][ops]") {
  manual_seed(8);
  Tensor a = leaf_t(3, 5), p = rnd({2, 3}, 0.2, 3.0);
  expect_ok([](auto& x) { return neg(x[0]); }, {a});
  expect_ok([](auto& x) { return exp(x[0]); }, {a});
  expect_ok([](auto& x) { return log(x[0]); }, {p});
  expect_ok([](auto& x) { return sqrt(x[0]); }, {p});
  expect_ok([](auto& x) { return rsqrt(x[0]); }, {p});
  expect_ok([](auto& x) { return pow(x[0], 2.5); }, {p});
  expect_ok([](auto& x) { return tanh(x[0]); }, {a});
  expect_ok([](auto& x) { return sigmoid(x[0]); }, {a});
  expect_ok([](auto& x) { return relu(x[0]); }, {a});
  expect_ok([](auto& x) { return gelu(x[0], GeluApprox::tanh); }, {a});
  expect_ok([](auto& x) { return gelu(x[0], GeluApprox::none); }, {a});
  expect_ok([](auto& x) { return silu(x[0]); }, {a});
  expect_ok([](auto& x) { return abs(x[0]); }, {a});
  expect_ok([](auto& x) { return clamp(x[0], -0.5, 0.7); }, {a});
}

TEST_CASE("where and masked_fill pass gradcheck", "[gradcheck][ops]") {
  manual_seed(9);
  Tensor a = leaf_t(3, 4), b = rnd({4});
  Tensor cond = gt(uniform({3, 4}, -1, 1, DType::f64), 0.0);
  expect_ok([cond](auto& x) { return where(cond, x[0], x[1]); }, {a, b});
  expect_ok([cond](auto& x) { return masked_fill(x[0], cond, -3.0); }, {a});
}

TEST_CASE("reductions sum and mean pass gradcheck", "[gradcheck][ops]") {
  manual_seed(10);
  Tensor a = leaf_t(4, 3);
  Tensor b = rnd({2, 3, 4});
  expect_ok([](auto& x) { return sum(x[0]); }, {a});
  expect_ok([](auto& x) { return sum(x[0], {0}); }, {a});
  expect_ok([](auto& x) { return sum(x[0], {-1}, true); }, {b});
  expect_ok([](auto& x) { return mean(x[0], {0, 2}); }, {b});
  expect_ok([](auto& x) { return mean(x[0]); }, {b});
}

TEST_CASE("views pass gradcheck", "[gradcheck][ops]") {
  manual_seed(11);
  Tensor b = rnd({2, 3, 4});
  expect_ok([](auto& x) { return x[0].transpose(0, 2).reshape({4, 6}); }, {b});
  expect_ok([](auto& x) { return x[0].permute({1, 2, 0}).slice(1, 1, 4, 2); }, {b});
  expect_ok([](auto& x) { return x[0].select(1, -1).unsqueeze(0).expand({5, 2, 4}); }, {b});
  expect_ok([](auto& x) { return x[0].narrow(2, 1, 2).flatten().view({-1, 2}); }, {b});
  expect_ok([](auto& x) { return x[0].slice(0, 0, 1).squeeze(0); }, {b});
}
