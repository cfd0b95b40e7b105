// PyTorch's type promotion, true division, floor_divide, sum of bool, gelu's
// default, comparisons, logical ops, equal/allclose and in-place arithmetic.
#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {
template <typename T>
std::vector<T> vals(const Tensor& t) { return t.to_vector<T>(); }
Tensor f64v(std::vector<double> v) { auto n = static_cast<std::int64_t>(v.size()); return from_vector(v, {n}); }
Tensor i64v(std::vector<std::int64_t> v) { auto n = static_cast<std::int64_t>(v.size()); return from_vector(v, {n}); }
Tensor leaf(Tensor t) { return t.requires_grad_(true); }
}  // namespace

TEST_CASE("integer tensor with a floating scalar gives the default float dtype", "[api][promotion]") {
  Tensor a = arange(4);
  REQUIRE(a.dtype() == DType::i64);
  Tensor m = a * 2.5;
  CHECK(m.dtype() == DType::f32);
  CHECK(vals<float>(m) == std::vector<float>{0, 2.5f, 5, 7.5f});
  CHECK((a + 0.5).dtype() == DType::f32);
  CHECK((1.5 - a).dtype() == DType::f32);
  CHECK(vals<float>(1.5 - a) == std::vector<float>{1.5f, 0.5f, -0.5f, -1.5f});
  // integral scalars keep the integral dtype; floating tensors keep theirs
  CHECK((a * 2).dtype() == DType::i64);
  CHECK(vals<std::int64_t>(a * 2) == std::vector<std::int64_t>{0, 2, 4, 6});
  CHECK((arange(3, DType::i32) + 1).dtype() == DType::i32);
  CHECK((ones({2}, DType::f16) * 0.1).dtype() == DType::f16);
  CHECK((ones({2}, DType::f64) * 2).dtype() == DType::f64);
  // bool with an integer scalar: i64; with a float: f32
  Tensor b = gt(f64v({1, -1}), 0.0);
  CHECK((b + 1).dtype() == DType::i64);
  CHECK((b * 0.5).dtype() == DType::f32);
}

TEST_CASE("true division is floating; floor_divide is Python's //", "[api][promotion]") {
  Tensor a = arange(4);
  CHECK((a / 2.0).dtype() == DType::f32);
  CHECK(vals<float>(a / 2.0) == std::vector<float>{0, 0.5f, 1, 1.5f});
  CHECK(vals<float>(a / 2) == std::vector<float>{0, 0.5f, 1, 1.5f});
  CHECK(vals<float>(div(a, full({4}, 4, DType::i64))) == std::vector<float>{0, 0.25f, 0.5f, 0.75f});
  // the accuracy idiom from the issue: sum(eq) / n
  Tensor pred = i64v({1, 2, 3, 4}), y = i64v({1, 0, 3, 0});
  Tensor acc = sum(eq(pred, y)) / 4.0;
  CHECK(acc.dtype() == DType::f32);
  CHECK(acc.item() == 0.5);
  CHECK(mean((pred == y).to(DType::f32)).item() == 0.5);
  // floor_divide rounds toward -inf, integers and floats
  Tensor x = i64v({7, -7, 7, -7, 0}), d = i64v({2, 2, -2, -2, 3});
  CHECK(vals<std::int64_t>(floor_divide(x, d)) == std::vector<std::int64_t>{3, -4, -4, 3, 0});
  CHECK(floor_divide(x, d).dtype() == DType::i64);
  CHECK(vals<double>(floor_divide(f64v({7.5, -7.5}), 2.0)) == std::vector<double>{3, -4});
  CHECK(floor_divide(x, 2.0).dtype() == DType::f32);
  CHECK_THROWS_WITH_ALL(floor_divide(x, i64v({1, 0, 1, 1, 1})), ValueError, "floor_divide", "division by zero");
  Tensor mn = from_vector(std::vector<std::int64_t>{INT64_MIN}, {1});
  CHECK(floor_divide(mn, -1).item<std::int64_t>() == INT64_MIN);  // wraps, no trap
  CHECK(vals<std::int32_t>(floor_divide(from_vector(std::vector<std::int32_t>{-1, 5}, {2}), 3)) ==
        std::vector<std::int32_t>{-1, 1});
}

TEST_CASE("tensor-tensor promotion follows PyTorch's categories", "[api][promotion]") {
  Tensor i = arange(3), f = ones({3});
  CHECK((i + f).dtype() == DType::f32);
  CHECK((f * i).dtype() == DType::f32);
  CHECK((arange(3, DType::i32) + i).dtype() == DType::i64);
  CHECK((arange(3, DType::u8) + arange(3, DType::i32)).dtype() == DType::i32);
  Tensor b = gt(f64v({1, -1, 2}), 0.0);
  CHECK((b + arange(3, DType::i32)).dtype() == DType::i32);
  CHECK((b * f).dtype() == DType::f32);
  // 0-dim tensors decide only with a higher category
  CHECK((ones({3}, DType::f16) * full({}, 2.0, DType::f32)).dtype() == DType::f16);
  CHECK((i * full({}, 0.5, DType::f64)).dtype() == DType::f64);
  CHECK((i * full({}, 2, DType::i32)).dtype() == DType::i64);
  // deliberate difference: two different floating dtypes stay a DTypeError outside autocast
  CHECK_THROWS_WITH_ALL(ones({2}, DType::f16) + ones({2}), DTypeError, "add", "f16[2]", "f32[2]");
  CHECK_THROWS_AS(ones({2}, DType::f64) * ones({2}), DTypeError);
  // gradients flow back through the casts in each operand's own dtype
  Tensor w = leaf(f64v({1, 2, 3}));
  Tensor loss = sum(w * arange(3));
  loss.backward();
  CHECK(vals<double>(w.grad()) == std::vector<double>{0, 1, 2});
}

TEST_CASE("sum of bool and small integers gives i64; mean needs floating", "[api][promotion]") {
  Tensor m = gt(f64v({1, -1, 2, 3}), 0.0);
  Tensor s = sum(m);
  CHECK(s.dtype() == DType::i64);
  CHECK(s.item<std::int64_t>() == 3);
  CHECK(sum(arange(4, DType::i32)).dtype() == DType::i64);
  CHECK(sum(arange(4, DType::u8)).item() == 6);
  CHECK(vals<std::int64_t>(sum(m.view({2, 2}), {1})) == std::vector<std::int64_t>{1, 2});
  CHECK_THROWS_AS(mean(arange(4)), DTypeError);
}

TEST_CASE("gelu defaults to exact erf everywhere; tanh by name", "[api][ops]") {
  Tensor x = f64v({-2, -0.5, 0.3, 1.7});
  std::vector<double> exact;
  for (double v : vals<double>(x)) exact.push_back(0.5 * v * (1 + std::erf(v / std::sqrt(2.0))));
  auto got = vals<double>(gelu(x));
  for (std::size_t i = 0; i < exact.size(); ++i) CHECK(got[i] == Approx(exact[i]).epsilon(1e-14));
  CHECK(equal(gelu(x), nn::GELU().forward(x)));
  CHECK(equal(gelu(x, "tanh"), gelu(x, GeluApprox::tanh)));
  CHECK(equal(gelu(x, "none"), gelu(x)));
  CHECK_FALSE(equal(gelu(x, "tanh"), gelu(x)));
  CHECK_THROWS_WITH_ALL(gelu(x, "fast"), ValueError, "gelu", "fast", "tanh");
}

TEST_CASE("comparisons and operators give bool tensors", "[api][compare]") {
  Tensor a = f64v({1, 2, 3, NAN}), b = f64v({3, 2, 1, NAN});
  auto as_u8 = [](const Tensor& t) {
    REQUIRE(t.dtype() == DType::boolean);
    return t.to(DType::u8).to_vector<std::uint8_t>();
  };
  using V = std::vector<std::uint8_t>;
  CHECK(as_u8(a == b) == V{0, 1, 0, 0});
  CHECK(as_u8(a != b) == V{1, 0, 1, 1});
  CHECK(as_u8(a < b) == V{1, 0, 0, 0});
  CHECK(as_u8(a <= b) == V{1, 1, 0, 0});
  CHECK(as_u8(a > b) == V{0, 0, 1, 0});
  CHECK(as_u8(a >= b) == V{0, 1, 1, 0});
  CHECK(as_u8(a == 2) == V{0, 1, 0, 0});
  CHECK(as_u8(a >= 2.5) == V{0, 0, 1, 0});
  CHECK(as_u8(le(a, 1)) == V{1, 0, 0, 0});
  CHECK(as_u8(ne(a, 1.0)) == V{0, 1, 1, 1});
  // integers against a fractional scalar compare in floating point (no truncation)
  CHECK(as_u8(arange(4) < 1.5) == V{1, 1, 0, 0});
  // mixed floating dtypes compare in the wider one; broadcasting
  CHECK(as_u8(ones({2, 1}, DType::f16) == ones({3})) == V{1, 1, 1, 1, 1, 1});
  CHECK(as_u8(logical_and(a > 1, b > 1)) == V{0, 1, 0, 0});
  CHECK(as_u8(logical_or(a > 2, b > 2)) == V{1, 0, 1, 0});
  CHECK(as_u8(logical_xor(a > 1, b > 1)) == V{1, 0, 1, 0});
  CHECK(as_u8(logical_not(f64v({0, 2, NAN}))) == V{1, 0, 0});
  CHECK(as_u8(!(a > 1)) == V{1, 0, 0, 1});
  CHECK_THROWS_AS(eq(ones({2}), ones({3})), ShapeError);
  CHECK_FALSE((a > 0).requires_grad());
}

TEST_CASE("equal and allclose", "[api][compare]") {
  Tensor a = f64v({1, 2, 3});
  CHECK(equal(a, a.clone()));
  CHECK(equal(a, arange(1, 4)));  // dtypes promote
  CHECK_FALSE(equal(a, f64v({1, 2})));
  CHECK_FALSE(equal(a, f64v({1, 2, 4})));
  CHECK_FALSE(equal(f64v({NAN}), f64v({NAN})));
  CHECK(allclose(a, a + 1e-9));
  CHECK_FALSE(allclose(a, a + 1e-3));
  CHECK(allclose(a, a + 1e-3, 1e-2, 0.0));
  CHECK(allclose(f64v({INFINITY, 1}), f64v({INFINITY, 1})));
  CHECK_FALSE(allclose(f64v({NAN}), f64v({NAN})));
  CHECK(allclose(f64v({NAN}), f64v({NAN}), 1e-5, 1e-8, true));
  CHECK(allclose(ones({2, 3}), ones({3}, DType::f64)));
  CHECK_THROWS_AS(allclose(ones({2}), ones({3})), ShapeError);
}

TEST_CASE("in-place arithmetic writes, bumps the version and guards leaves", "[api][inplace]") {
  Tensor a = f64v({1, 2, 3});
  const auto v0 = a.version();
  a += 1.0;
  a.mul_(f64v({2, 2, 2}));
  a -= f64v({1, 1, 1});
  a /= 2;
  CHECK(vals<double>(a) == std::vector<double>{1.5, 2.5, 3.5});
  CHECK(a.version() >= v0 + 4);
  a.clamp_(2.0, 3.0);
  CHECK(vals<double>(a) == std::vector<double>{2, 2.5, 3});
  a.zero_();
  CHECK(vals<double>(a) == std::vector<double>{0, 0, 0});
  // views write through to their base
  Tensor m = zeros({2, 3}, DType::f64);
  Tensor row = m.select(0, 1);
  row.add_(5.0);
  CHECK(vals<double>(m) == std::vector<double>{0, 0, 0, 5, 5, 5});
  // int tensor: integral operands fine, a floating result is a DTypeError (as in PyTorch)
  Tensor i = arange(3);
  i += 2;
  CHECK(vals<std::int64_t>(i) == std::vector<std::int64_t>{2, 3, 4});
  CHECK_THROWS_WITH_ALL(i *= 0.5, DTypeError, "mul_", "f32", "i64[3]");
  CHECK_THROWS_WITH_ALL(i.div_(2), DTypeError, "div_");
  CHECK_THROWS_WITH_ALL(a.add_(ones({2, 3}, DType::f64)), ShapeError, "add_");
  // a leaf that requires grad: AutogradError under grad mode, fine under NoGradGuard
  Tensor w = leaf(f64v({1, 2}));
  CHECK_THROWS_WITH_ALL(w.add_(1.0), AutogradError, "add_", "leaf", "NoGradGuard");
  CHECK_THROWS_AS(w *= 2.0, AutogradError);
  CHECK_THROWS_AS(w.zero_(), AutogradError);
  {
    NoGradGuard ng;
    w.sub_(1.0);
  }
  CHECK(vals<double>(w) == std::vector<double>{0, 1});
  CHECK(w.is_leaf());
}

TEST_CASE("in-place on a non-leaf is differentiable; the saved-tensor check catches misuse", "[api][inplace][gradcheck]") {
  manual_seed(3);
  // h = x * 2; h += y; h *= x  ->  d/dx = (4x + y) ... checked by gradcheck
  Tensor x = leaf(uniform({3, 2}, -1, 1, DType::f64)), y = leaf(uniform({2}, -1, 1, DType::f64));
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) {
    Tensor h = in[0] * 2.0;
    h += in[1];
    h *= in[0];
    h.sub_(in[1]);
    h.div_(add(abs(in[0]), 1.0));
    h.clamp_(-0.8, 0.8);
    return h;
  }, {x, y});
  INFO(r.report);
  CHECK(r.ok);
  // a tensor saved for backward and then changed in place fails at backward
  Tensor h = x * 1.0;
  Tensor e = exp(h);  // saves its output
  e.add_(1.0);        // e becomes add's output; exp's saved output changed
  CHECK_THROWS_WITH_ALL(sum(e).backward(), AutogradError, "exp");
  Tensor t = x * 1.0;
  Tensor s = t * t;   // saves t
  t.mul_(3.0);
  CHECK_THROWS_AS(sum(s).backward(), AutogradError);
}
