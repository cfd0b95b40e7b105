// Hostile and careless input (issue 10): every case answers with the right ciuic error,
// naming the op and the offending value, or with the correct result; none crashes, hangs
// or trips the sanitizers (the CI runs this suite under ASan/UBSan with float-cast-overflow).
#include <cmath>
#include <cstdint>
#include <limits>

#include "ciuic/ciuic.h"
#include "ciuic/float_to_int.h"
#include "ciuic/kernels/elementwise_math.h"
#include "test_util.h"

using namespace ciuic;

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr std::int64_t kBig = std::int64_t{1} << 40;
}  // namespace

// ---- 2. size arithmetic ----
TEST_CASE("hostile: shape products and byte counts never overflow", "[errors]") {
  CHECK_THROWS_WITH_ALL(empty({kBig, kBig}), ShapeError, "empty", "[1099511627776, 1099511627776]",
                        "more than 2^63 - 1 elements");
  CHECK_THROWS_WITH_ALL(zeros({std::int64_t{1} << 62}), OutOfMemory, "empty", "f32[4611686018427387904]",
                        "more than 2^63 - 1");
  CHECK_THROWS_WITH_ALL(randn({std::int64_t{1} << 61}, DType::f64), OutOfMemory, "empty", "f64[2305843009213693952]");
  CHECK(ones({3, kBig, kBig, 0, kBig}).numel() == 0);
  // A 0 dim makes any other sizes valid (0 elements), strides saturate instead of overflowing.
  Tensor e = empty({0, kBig, kBig});
  CHECK(e.numel() == 0);
  CHECK(e.is_contiguous());
  CHECK(e.contiguous().numel() == 0);
  CHECK(zeros({kBig, 0}).numel() == 0);
  CHECK(shape_numel({INT64_MAX, 1}) == INT64_MAX);
  CHECK_THROWS_WITH_ALL(shape_numel({INT64_MAX, 2}, "myop"), ShapeError, "myop", "more than 2^63 - 1");
  // arange: absurd lengths are ciuic errors, not std::length_error / std::bad_alloc.
  CHECK_THROWS_WITH_ALL(arange(0.0, 1e300), ValueError, "arange", "1e+300", "at most 2^63 - 1");
  CHECK_THROWS_WITH_ALL(arange(-1e308, 1e308, 1e-300), ValueError, "arange", "at most 2^63 - 1");
  CHECK_THROWS_AS(arange(0.0, 1e18), OutOfMemory);
  CHECK(arange(0.0, 3.0).to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 1, 2});
  CHECK(arange(5.0, 0.0, -2.0, DType::f32).to_vector<float>() == std::vector<float>{5, 3, 1});
  CHECK(arange(3, TensorOptions(DType::f64).requires_grad()).requires_grad());
  // Views: element counts, bounds and steps.
  Tensor t = arange(6, DType::f32);
  CHECK_THROWS_WITH_ALL(t.view({kBig, kBig}), ShapeError, "view", "more than 2^63 - 1", "f32[6]");
  CHECK_THROWS_WITH_ALL(t.reshape({kBig, kBig, 0}), ShapeError, "reshape", "f32[6]");
  CHECK_THROWS_WITH_ALL(t.narrow(0, INT64_MAX, 10), IndexError, "narrow", "start 9223372036854775807", "length 10");
  CHECK_THROWS_WITH_ALL(t.narrow(0, 4, 3), IndexError, "narrow", "start 4", "size 6");
  CHECK(t.narrow(0, -2, 2).to_vector<float>() == std::vector<float>{4, 5});
  Tensor s = t.slice(0, 1, 6, INT64_MAX);  // one element; the stride product would overflow
  CHECK(s.shape() == Shape{1});
  CHECK(s.to_vector<float>() == std::vector<float>{1});
  CHECK(t.slice(0, 0, 6, 4).to_vector<float>() == std::vector<float>{0, 4});
  CHECK(t.slice(0, 2, 2).numel() == 0);
  CHECK_THROWS_WITH_ALL(zeros({1}).expand({kBig, kBig}), ShapeError, "expand", "more than 2^63 - 1");
  CHECK(empty({0, kBig, kBig}).flatten().shape() == Shape{0});
  CHECK_THROWS_WITH_ALL(empty({0, kBig, kBig}).flatten(1), ShapeError, "flatten", "more than 2^63 - 1");
  // conv and pooling output sizes with absurd padding / kernels.
  Conv2dOptions o;
  o.padding[0] = o.padding[1] = std::int64_t{1} << 61;
  CHECK_THROWS_WITH_ALL(conv2d(ones({1, 1, 2, 2}), ones({1, 1, 1, 1}), Tensor(), o), ShapeError, "conv2d",
                        "more than 2^63 - 1");
  o.padding[0] = o.padding[1] = INT64_MAX;
  CHECK_THROWS_AS(conv2d(ones({1, 1, 2, 2}), ones({1, 1, 1, 1}), Tensor(), o), ShapeError);
  o = Conv2dOptions{};
  o.dilation[0] = INT64_MAX;
  CHECK_THROWS_WITH_ALL(conv2d(ones({1, 1, 2, 2}), ones({1, 1, 2, 1}), Tensor(), o), ShapeError, "conv2d",
                        "too small");
  // A 1000x1000 kernel over a padded 1x1 input: a 1001x1001 output (4 MB) but an im2col buffer of
  // 10^6 x 1001^2 f32 (4 TB), refused as OutOfMemory naming conv2d, not std::bad_alloc.
  o = Conv2dOptions{};
  o.padding[0] = o.padding[1] = 1000;
  CHECK_THROWS_WITH_ALL(conv2d(ones({1, 1, 1, 1}), ones({1, 1, 1000, 1000}), Tensor(), o), OutOfMemory, "conv2d",
                        "im2col", "1000x1000");
  CHECK_THROWS_WITH_ALL(avg_pool2d(ones({1, 1, 4, 4}), INT64_MAX, 1, INT64_MAX / 2), ValueError, "avg_pool2d",
                        "kernel = 9223372036854775807");
  CHECK_THROWS_WITH_ALL(max_pool2d(ones({1, 1, 4, 4}), 8, 1, 0), ShapeError, "max_pool2d", "too small");
  // A window as large as the padded input: one valid 4x4 output, every window holding the whole plane.
  CHECK(max_pool2d(arange(16, DType::f32).view({1, 1, 4, 4}), 3037000499, 1, 3037000499 / 2).to_vector<float>() ==
        std::vector<float>(16, 15.0f));
}

// ---- 12. negative sizes ----
TEST_CASE("hostile: negative sizes are ShapeErrors in every factory and view", "[errors]") {
  Tensor t = ones({2, 3});
  CHECK_THROWS_WITH_ALL(ones({3}).expand({-5}), ShapeError, "expand", "negative size -5", "f32[3]");
  CHECK_THROWS_WITH_ALL(t.expand({-2, 3}), ShapeError, "expand", "negative size -2");
  CHECK_THROWS_WITH_ALL(t.expand({-1, 2, 3}), ShapeError, "expand", "new leading dim");
  CHECK(t.expand({4, -1, -1}).shape() == Shape{4, 2, 3});
  CHECK_THROWS_WITH_ALL(t.view({-2, -3}), ShapeError, "view", "negative size -2");
  CHECK_THROWS_WITH_ALL(t.reshape({3, -7}), ShapeError, "reshape", "negative size -7");
  CHECK(t.view({-1}).shape() == Shape{6});
  const Shape bad{2, -3};
  CHECK_THROWS_WITH_ALL(empty(bad), ShapeError, "empty", "negative size -3", "[2, -3]");
  CHECK_THROWS_WITH_ALL(zeros(bad), ShapeError, "negative size -3");
  CHECK_THROWS_WITH_ALL(ones(bad), ShapeError, "negative size -3");
  CHECK_THROWS_WITH_ALL(full(bad, 1.0), ShapeError, "negative size -3");
  CHECK_THROWS_WITH_ALL(rand(bad), ShapeError, "negative size -3");
  CHECK_THROWS_WITH_ALL(randn(bad), ShapeError, "negative size -3");
  CHECK_THROWS_WITH_ALL(uniform(bad, 0, 1), ShapeError, "negative size -3");
  CHECK_THROWS_WITH_ALL(normal(bad, 0, 1), ShapeError, "negative size -3");
  CHECK_THROWS_WITH_ALL(from_vector<float>({1, 2}, {-1, -2}), ShapeError, "from_vector", "negative size");
  float buf[4] = {};
  CHECK_THROWS_WITH_ALL(from_blob(buf, {-4}, DType::f32), ShapeError, "from_blob", "negative size -4");
  CHECK_THROWS_WITH_ALL(from_blob(buf, {kBig, kBig, 8}, DType::f32), ShapeError, "from_blob");
  CHECK_THROWS_WITH_ALL(from_blob(buf, {std::int64_t{1} << 62}, DType::f64), ShapeError, "from_blob", "bytes");
  CHECK_THROWS_WITH_ALL(arange(-3), ValueError, "arange", "n = -3");
  CHECK_THROWS_WITH_ALL(t.narrow(0, 0, -1), ValueError, "narrow", "length -1");
}

// ---- 3. integer arithmetic ----
TEST_CASE("hostile: integer division by zero and overflow are defined and never trap", "[errors]") {
  const std::int64_t mn = INT64_MIN, mx = INT64_MAX;
  // Since the PyTorch type promotion (issue 11), div of integers is true division (floating);
  // integer division is floor_divide, whose zero divisor is a ValueError and INT_MIN / -1 wraps.
  Tensor a = from_vector<std::int64_t>({7, -7, mn, 5}, {4});
  CHECK_THROWS_WITH_ALL(floor_divide(a, from_vector<std::int64_t>({2, 2, 1, 0}, {4})), ValueError, "floor_divide",
                        "integer division by zero");
  CHECK(floor_divide(a, from_vector<std::int64_t>({2, 2, -1, -1}, {4})).to_vector<std::int64_t>() ==
        std::vector<std::int64_t>{3, -4, mn, -5});
  CHECK(floor_divide(from_vector<std::int32_t>({INT32_MIN, 9}, {2}), from_vector<std::int32_t>({-1, -4}, {2}))
            .to_vector<std::int32_t>() == std::vector<std::int32_t>{INT32_MIN, -3});
  // add / sub / mul with integer tensors and integer scalars wrap modulo 2^64 (2^32), as PyTorch
  // does (a floating scalar would promote to f32).
  Tensor big = from_vector<std::int64_t>({mx, mn, mx, 3}, {4});
  CHECK(add(big, 1).to_vector<std::int64_t>() == std::vector<std::int64_t>{mn, mn + 1, mn, 4});
  CHECK(sub(big, 1).to_vector<std::int64_t>() == std::vector<std::int64_t>{mx - 1, mx, mx - 1, 2});
  CHECK(mul(big, big).to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 0, 1, 9});
  CHECK(mul(big, 2).to_vector<std::int64_t>() == std::vector<std::int64_t>{-2, 0, -2, 6});
  Tensor i32 = from_vector<std::int32_t>({INT32_MAX, INT32_MIN}, {2});
  CHECK(add(i32, i32).to_vector<std::int32_t>() == std::vector<std::int32_t>{-2, 0});
  CHECK(sub(from_vector<std::int32_t>({INT32_MIN}, {1}), 1).to_vector<std::int32_t>() ==
        std::vector<std::int32_t>{INT32_MAX});
  CHECK(mul(i32, 3).to_vector<std::int32_t>() == std::vector<std::int32_t>{2147483645, INT32_MIN});
  CHECK(add(from_vector<std::uint8_t>({250}, {1}), 10).to_vector<std::uint8_t>() == std::vector<std::uint8_t>{4});
  // The shared functors (the CUDA kernels use the same) follow the same rules.
  namespace m = kernels::math;
  CHECK(m::Add<std::int64_t>{}(mx, 1) == mn);
  CHECK(m::Sub<std::int64_t>{}(mn, 1) == mx);
  CHECK(m::Mul<std::int64_t>{}(mn, -1) == mn);
  CHECK(m::Div<std::int64_t>{}(mn, -1) == mn);
  CHECK(m::Div<std::int32_t>{}(INT32_MIN, -1) == INT32_MIN);
  CHECK(m::Div<std::int64_t>{}(5, 0) == 0);
  CHECK(m::Div<std::int64_t>{}(-7, 2) == -3);
  CHECK(std::isinf(m::Div<double>{}(1.0, 0.0)));
}

// ---- 4. undefined tensors ----
TEST_CASE("hostile: every Tensor method on an undefined tensor is a clear error", "[errors]") {
  Tensor u;
  const Tensor cu;
  auto undefined = [](auto&& f, const char* op) {
    INFO(op);
    CHECK_THROWS_WITH_ALL(f(), ValueError, op, "undefined tensor");
  };
  undefined([&] { return u.grad(); }, "grad");
  undefined([&] { return u.is_leaf(); }, "is_leaf");
  undefined([&] { u.zero_grad(); return 0; }, "zero_grad");
  undefined([&] { return &u.requires_grad_(); }, "requires_grad_");
  undefined([&] { u.set_grad(Tensor()); return 0; }, "set_grad");
  undefined([&] { u.backward(); return 0; }, "backward");
  undefined([&] { return u.shape(); }, "shape");
  undefined([&] { return u.strides(); }, "strides");
  undefined([&] { return u.dim(); }, "shape");
  undefined([&] { return u.size(0); }, "shape");
  undefined([&] { return u.stride(0); }, "strides");
  undefined([&] { return u.offset(); }, "offset");
  undefined([&] { return u.numel(); }, "shape");
  undefined([&] { return u.dtype(); }, "dtype");
  undefined([&] { return u.device(); }, "device");
  undefined([&] { return u.element_size(); }, "dtype");
  undefined([&] { return u.is_contiguous(); }, "shape");
  undefined([&] { return &u.storage(); }, "storage");
  undefined([&] { return u.data_ptr(); }, "storage");
  undefined([&] { return u.data<float>(); }, "dtype");
  undefined([&] { return u.version(); }, "version");
  undefined([&] { u.bump_version(); return 0; }, "storage");
  undefined([&] { return u.detach(); }, "detach");
  undefined([&] { return u.view({1}); }, "undefined");
  undefined([&] { return u.reshape({1}); }, "undefined");
  undefined([&] { return u.flatten(); }, "undefined");
  undefined([&] { return u.t(); }, "undefined");
  undefined([&] { return u.permute({0}); }, "undefined");
  undefined([&] { return u.slice(0, 0, 1); }, "undefined");
  undefined([&] { return u.narrow(0, 0, 1); }, "undefined");
  undefined([&] { return u.select(0, 0); }, "undefined");
  undefined([&] { return u.expand({1}); }, "undefined");
  undefined([&] { return u.squeeze(); }, "undefined");
  undefined([&] { return u.squeeze(0); }, "undefined");
  undefined([&] { return u.unsqueeze(0); }, "undefined");
  undefined([&] { return u.to(DType::f64); }, "to");
  undefined([&] { return u.to(Device::cpu()); }, "to");
  undefined([&] { return u.clone(); }, "clone");
  undefined([&] { return u.contiguous(); }, "contiguous");
  undefined([&] { return &u.copy_(ones({1})); }, "copy_");
  undefined([&] { Tensor d = ones({1}); return &d.copy_(cu); }, "copy_");
  undefined([&] { return &u.fill_(1.0); }, "fill_");
  undefined([&] { return &u.zero_(); }, "fill_");
  undefined([&] { return u.item(); }, "item");
  undefined([&] { return u.item<int>(); }, "item");
  undefined([&] { return u.to_vector<float>(); }, "to_vector");
  undefined([&] { return empty_like(u); }, "undefined");
  undefined([&] { return zeros_like(u); }, "undefined");
  undefined([&] { register_hook(u, [](const Tensor& g) { return g; }); return 0; }, "undefined");
  // The queries that answer for an undefined tensor.
  CHECK_FALSE(u.defined());
  CHECK_FALSE(u.requires_grad());
  CHECK(u.str() == "tensor(undefined)");
  CHECK(describe(u) == "undefined tensor");
  CHECK(u.same(Tensor()));
}

// ---- 7. overlapping copies ----
TEST_CASE("hostile: copy_ between overlapping views reads before it writes", "[errors]") {
  Tensor x = arange(6, DType::f32);
  x.slice(0, 1, 6).copy_(x.slice(0, 0, 5));
  CHECK(x.to_vector<float>() == std::vector<float>{0, 0, 1, 2, 3, 4});
  Tensor y = arange(6, DType::f32);
  y.slice(0, 0, 5).copy_(y.slice(0, 1, 6));
  CHECK(y.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 5});
  Tensor z = arange(4, DType::f32).view({2, 2});
  z.copy_(z.t());
  CHECK(z.to_vector<float>() == std::vector<float>{0, 2, 1, 3});
  // Reversed (negative-stride-free) overlap through a broadcast source and a dtype change.
  Tensor w = arange(8, DType::f64).view({2, 4});
  w.copy_(w.select(0, 1));  // the source row is also written
  CHECK(w.to_vector<double>() == std::vector<double>{4, 5, 6, 7, 4, 5, 6, 7});
  Tensor v = arange(6, DType::i64);
  v.slice(0, 2, 6).copy_(v.slice(0, 0, 4));
  CHECK(v.to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 1, 0, 1, 2, 3});
  // Disjoint views of one storage keep the plain path and give the same result.
  Tensor d = arange(6, DType::f32);
  d.slice(0, 3, 6).copy_(d.slice(0, 0, 3));
  CHECK(d.to_vector<float>() == std::vector<float>{0, 1, 2, 0, 1, 2});
}

TEST_CASE("hostile: overlapping copies, NaN and float->int casts on CUDA match the CPU", "[errors][cuda]") {
  CIUIC_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  // Casts: the kernels store through float_to_int, the CPU's rule.
  Tensor f = from_vector<double>({1e30, kNaN, -1e30, 3.9, -3.9, 300, -kInf}, {7});
  for (DType from : {DType::f64, DType::f32, DType::f16, DType::bf16})
    for (DType to : {DType::i32, DType::i64, DType::u8}) {
      INFO(dtype_name(from) << " -> " << dtype_name(to));
      Tensor src = f.to(from);
      CHECK(src.to(gpu).to(to).to(Device::cpu()).to_vector<double>() == src.to(to).to_vector<double>());
    }
  // NaN through the elementwise kernels.
  Tensor n = from_vector<float>({NAN, 1, -2}, {3}).to(gpu), one = ones({3}).to(gpu);
  for (const Tensor& r : {relu(n), maximum(n, one), maximum(one, n), minimum(n, one), minimum(one, n),
                          clamp(n, -1.0, 1.0)})
    CHECK(std::isnan(r.to(Device::cpu()).to_vector<float>()[0]));
  Tensor x = arange(1001, TensorOptions(DType::f32).device(Device::cuda(0)));
  x.slice(0, 1, 1001).copy_(x.slice(0, 0, 1000));
  std::vector<float> want(1001);
  for (int i = 1; i < 1001; ++i) want[i] = static_cast<float>(i - 1);
  CHECK(x.to_vector<float>() == want);
  Tensor z = arange(4, TensorOptions(DType::f32).device(Device::cuda(0))).view({2, 2});
  z.copy_(z.t());
  CHECK(z.to_vector<float>() == std::vector<float>{0, 2, 1, 3});
}

// ---- 8. NaN propagation ----
TEST_CASE("hostile: NaN propagates through relu, maximum, minimum and clamp", "[errors]") {
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    INFO(dtype_name(dt));
    Tensor n = full({3}, kNaN, dt), one = full({3}, 1.0, dt);
    auto all_nan = [](const Tensor& t) {
      for (double v : t.to_vector<double>())
        if (!std::isnan(v)) return false;
      return true;
    };
    CHECK(all_nan(relu(n)));
    CHECK(all_nan(maximum(n, one)));
    CHECK(all_nan(maximum(one, n)));
    CHECK(all_nan(minimum(n, one)));
    CHECK(all_nan(minimum(one, n)));
    CHECK(all_nan(clamp(n, -1.0, 1.0)));
    CHECK(all_nan(clamp(n, std::nullopt, 1.0)));
    CHECK(all_nan(clamp(one, kNaN, 2.0)));
    CHECK(all_nan(clamp(one, 0.0, kNaN)));
    // Ordinary values are unchanged.
    Tensor v = from_vector<double>({-2, 0, 3}, {3}).to(dt);
    CHECK(relu(v).to_vector<double>() == std::vector<double>{0, 0, 3});
    CHECK(clamp(v, -1.0, 1.0).to_vector<double>() == std::vector<double>{-1, 0, 1});
    CHECK(maximum(v, one).to_vector<double>() == std::vector<double>{1, 1, 3});
    CHECK(minimum(one, v).to_vector<double>() == std::vector<double>{-2, 0, 1});
    CHECK(relu(full({1}, -kInf, dt)).item() == 0.0);
  }
  // The CUDA functors follow the same rule (they are the code the GPU runs).
  namespace m = kernels::math;
  CHECK(std::isnan(m::Relu<float>{}(NAN)));
  CHECK(std::isnan(m::Maximum<float>{}(NAN, 1.0f)));
  CHECK(std::isnan(m::Minimum<double>{}(1.0, kNaN)));
  CHECK(std::isnan(m::Clamp<float>{-1.0f, 1.0f}(NAN)));
  CHECK(std::isnan(m::Clamp<double>{kNaN, 1.0}(0.5)));
  CHECK(std::isnan(m::Clamp<double>{0.0, kNaN}(0.5)));
  CHECK(m::Clamp<double>{-kInf, kInf}(-1e300) == -1e300);
  CHECK(m::ReluBackward<double>{}(2.0, kNaN) == 0.0);  // the CUDA comparisons rely on [nan > 0] = 0
  CHECK(m::ReluBackward<double>{}(2.0, 0.0) == 0.0);
  // relu's gradient at a NaN input follows the same rule on the CPU.
  Tensor x = full({2}, kNaN, TensorOptions(DType::f64).requires_grad());
  sum(relu(x)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 0});
}

// ---- 9. float -> int casts ----
TEST_CASE("hostile: float to integer casts saturate and map NaN to 0", "[errors]") {
  const std::vector<double> in{1e30, -1e30, kNaN, 3.7, -3.7, kInf, -kInf, 2147483647.5, -2147483648.9, 255.9, -0.5};
  Tensor f64 = from_vector(in, {static_cast<std::int64_t>(in.size())});
  CHECK(f64.to(DType::i32).to_vector<std::int32_t>() ==
        std::vector<std::int32_t>{INT32_MAX, INT32_MIN, 0, 3, -3, INT32_MAX, INT32_MIN, INT32_MAX, INT32_MIN, 255, 0});
  CHECK(f64.to(DType::i64).to_vector<std::int64_t>() ==
        std::vector<std::int64_t>{INT64_MAX, INT64_MIN, 0, 3, -3, INT64_MAX, INT64_MIN, 2147483647, -2147483648, 255, 0});
  CHECK(f64.to(DType::u8).to_vector<std::uint8_t>() ==
        std::vector<std::uint8_t>{255, 0, 0, 3, 0, 255, 0, 255, 0, 255, 0});
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    INFO(dtype_name(dt));
    Tensor f = from_vector<double>({1e30, kNaN, -1e30, 100.5}, {4}).to(dt);  // f16: 1e30 is inf
    CHECK(f.to(DType::i32).to_vector<std::int32_t>() == std::vector<std::int32_t>{INT32_MAX, 0, INT32_MIN, 100});
    CHECK(f.to(DType::i64).to_vector<std::int64_t>() == std::vector<std::int64_t>{INT64_MAX, 0, INT64_MIN, 100});
    CHECK(f.to(DType::u8).to_vector<std::uint8_t>() == std::vector<std::uint8_t>{255, 0, 0, 100});
  }
  // Boundaries: 2^63 is the first double above i64, -2^63 is i64's min exactly.
  CHECK(float_to_int<std::int64_t>(9223372036854775808.0) == INT64_MAX);
  CHECK(float_to_int<std::int64_t>(9223372036854774784.0) == 9223372036854774784LL);
  CHECK(float_to_int<std::int64_t>(-9223372036854775808.0) == INT64_MIN);
  CHECK(float_to_int<std::int32_t>(2147483648.0f) == INT32_MAX);
  CHECK(float_to_int<std::int32_t>(2147483520.0f) == 2147483520);
  CHECK(float_to_int<std::int32_t>(-2147483904.0f) == INT32_MIN);
  CHECK(float_to_int<std::uint8_t>(256.0) == 255);
  CHECK(float_to_int<std::uint8_t>(-1e-300) == 0);
  CHECK(float_to_int<std::int64_t>(-0.0) == 0);
  // item<T>, bool (NaN is true, as a C++ and PyTorch bool of NaN) and printing i64 extremes.
  CHECK(full({}, 1e20).item<std::int32_t>() == INT32_MAX);
  CHECK(full({}, kNaN).to(DType::boolean).item() == 1.0);
  CHECK(from_vector<std::int64_t>({INT64_MAX, INT64_MIN}, {2}).str().find("9223372036854775807") != std::string::npos);
  // fill_ and the scalar of a binary op convert by the same rule.
  CHECK(full({2}, 1e300, DType::i32).to_vector<std::int32_t>() == std::vector<std::int32_t>{INT32_MAX, INT32_MAX});
  CHECK(full({1}, kNaN, DType::i64).item() == 0.0);
}

// ---- 10. hooks ----
TEST_CASE("hostile: a gradient hook's result must match the hooked tensor", "[errors]") {
  Tensor x = ones({3}, TensorOptions().requires_grad());
  register_hook(x, [](const Tensor&) { return zeros({5}); });
  CHECK_THROWS_WITH_ALL(sum(x * 2.0).backward(), AutogradError, "register_hook", "leaf f32[3] on cpu", "f32[5]",
                        "expected the hooked tensor's shape, dtype and device");
  CHECK_FALSE(x.grad().defined());

  Tensor y = ones({3}, TensorOptions().requires_grad());
  register_hook(y, [](const Tensor& g) { return g.to(DType::f64); });
  CHECK_THROWS_WITH_ALL(sum(y * 2.0).backward(), AutogradError, "register_hook", "f64[3]");

  Tensor w = ones({2, 2}, TensorOptions().requires_grad());
  Tensor h = w * 3.0;  // a non-leaf
  register_hook(h, [](const Tensor& g) { return g.t().reshape({4}); });
  CHECK_THROWS_WITH_ALL(sum(h).backward(), AutogradError, "register_hook", "output 0 of mul", "f32[2, 2]", "f32[4]");

  // A hook returning a same-shaped replacement still works.
  Tensor z = ones({3}, TensorOptions().requires_grad());
  register_hook(z, [](const Tensor& g) { return g * 10.0; });
  sum(z * 2.0).backward();
  CHECK(z.grad().to_vector<float>() == std::vector<float>{20, 20, 20});
}

// ---- 11. checkpoint returning captured tensors ----
TEST_CASE("hostile: checkpoint outputs that are inputs or captured tensors keep their identity", "[errors]") {
  Tensor p = from_vector<double>({1, 2}, {2}, TensorOptions(DType::f64).requires_grad());
  Tensor c = from_vector<double>({5, 6}, {2}, DType::f64);  // a constant
  Tensor x = from_vector<double>({3, 4}, {2}, TensorOptions(DType::f64).requires_grad());
  std::vector<Tensor> outs = checkpoint(
      [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0] * p, p, c, in[0]}; }, {x});
  CHECK(p.is_leaf());
  CHECK_FALSE(c.requires_grad());
  CHECK(x.is_leaf());
  CHECK_FALSE(outs[1].same(p));
  CHECK(outs[1].data_ptr() == p.data_ptr());  // an alias, not a copy
  CHECK(outs[2].data_ptr() == c.data_ptr());
  // loss = sum(x p) + 3 sum(p) + sum(c) + 7 sum(x)
  Tensor loss = sum(outs[0]) + sum(outs[1] * 3.0) + sum(outs[2]) + sum(outs[3] * 7.0);
  loss.backward();
  CHECK(p.grad().to_vector<double>() == std::vector<double>{3 + 3, 4 + 3});
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1 + 7, 2 + 7});
  CHECK_FALSE(c.grad().defined());
  CHECK(p.is_leaf());

  // The single-tensor form returning a parameter as it is.
  Tensor q = ones({2}, TensorOptions(DType::f64).requires_grad());
  Tensor out = checkpoint([&](const Tensor&) { return q; }, x.detach());
  CHECK(q.is_leaf());
  sum(out * 2.0).backward();
  CHECK(q.grad().to_vector<double>() == std::vector<double>{2, 2});
}

// ---- 13. backward(grad_output) ----
TEST_CASE("hostile: backward checks grad_output against the output at entry", "[errors]") {
  Tensor x = ones({2, 3}, TensorOptions().requires_grad());
  Tensor y = x * 2.0;
  CHECK_THROWS_WITH_ALL(y.backward(ones({2, 3}, DType::f64)), DTypeError, "backward", "grad_output f64[2, 3]",
                        "f32[2, 3]", "dtype");
  CHECK_THROWS_WITH_ALL(y.backward(ones({3, 2})), ShapeError, "backward", "grad_output f32[3, 2]", "shape");
  CHECK_THROWS_WITH_ALL(backward({y}, {ones({2, 3}, DType::f16)}), DTypeError, "backward", "f16[2, 3]");
  y.backward(full({2, 3}, 0.5));
  CHECK(x.grad().to_vector<float>() == std::vector<float>(6, 1.0f));
}
