// Elementwise ops: forward (CPU reference through unary_map/binary_map, or on
// CUDA tensors the elementwise kernel each map names), backward recorded on the
// tape. Backward formulas are in terms of other ops or maps with their own CUDA
// kernel, so they run on any device the forward ops support.
#include <cmath>
#include <string>

#include "ciuic/amp.h"
#include "ciuic/kernels/elementwise_math.h"
#include "gelu_backward.h"
#include "op_util.h"

namespace ciuic {

using ops::binary_map;
using ops::CompareOp;
using ops::cuda_op;
using ops::unary_map;
using kernels::BinaryOp;
using kernels::UnaryBackwardOp;
using kernels::UnaryOp;
namespace math = kernels::math;  // the per-element rules both devices share (NaN, integer wrap/division)

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const std::size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    std::int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    CIUIC_CHECK(da == db || da == 1 || db == 1, ShapeError, op, "shapes ", shape_str(a), " and ", shape_str(b),
                " do not broadcast (dim ", i, ": ", da, " vs ", db, "); expected equal sizes or 1");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

// Records a binary op whose backward gives (dL/da, dL/db) before un-broadcasting.
template <typename BW>
Tensor record_binary(const char* name, const Tensor& a, const Tensor& b, Tensor out, BW bw) {
  if (!needs_grad({&a, &b})) return out;
  Shape sa = a.shape(), sb = b.shape();
  record(name, {a, b}, {out}, [=](const GradList& g) {
    auto [ga, gb] = bw(g[0]);
    return GradList{ga.defined() ? sum_to(ga, sa) : ga, gb.defined() ? sum_to(gb, sb) : gb};
  });
  return out;
}

template <typename BW>
Tensor record_unary(const char* name, const Tensor& a, Tensor out, BW bw) {
  if (needs_grad({&a})) record(name, {a}, {out}, [bw](const GradList& g) { return GradList{bw(g[0])}; });
  return out;
}

bool wants(const Tensor& t) { return t.requires_grad(); }

}  // namespace

// ---- binary ----
Tensor add(const Tensor& a, const Tensor& b) {
  if (auto c = ops::promote(a, b)) return add(c->first, c->second);
  if (auto c = amp::autocast_promote(a, b)) return add(c->first, c->second);
  Tensor out = binary_map("add", a, b, [](auto x, auto y) { return math::Add<decltype(x)>{}(x, y); }, cuda_op(BinaryOp::add));
  return record_binary("add", a, b, out, [](const Tensor& g) { return std::pair{g, g}; });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  if (auto c = ops::promote(a, b)) return sub(c->first, c->second);
  if (auto c = amp::autocast_promote(a, b)) return sub(c->first, c->second);
  Tensor out = binary_map("sub", a, b, [](auto x, auto y) { return math::Sub<decltype(x)>{}(x, y); }, cuda_op(BinaryOp::sub));
  return record_binary("sub", a, b, out, [](const Tensor& g) { return std::pair{g, neg(g)}; });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  if (auto c = ops::promote(a, b)) return mul(c->first, c->second);
  if (auto c = amp::autocast_promote(a, b)) return mul(c->first, c->second);
  Tensor out = binary_map("mul", a, b, [](auto x, auto y) { return math::Mul<decltype(x)>{}(x, y); }, cuda_op(BinaryOp::mul));
  if (!needs_grad({&a, &b})) return out;
  SavedTensor sa(wants(b) ? a : Tensor()), sb(wants(a) ? b : Tensor());
  return record_binary("mul", a, b, out, [sa, sb](const Tensor& g) {
    return std::pair{sb.defined() ? mul(g, sb.unpack("mul")) : Tensor(), sa.defined() ? mul(g, sa.unpack("mul")) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  if (auto c = ops::promote(a, b, /*floating_only=*/true)) return div(c->first, c->second);
  if (auto c = amp::autocast_promote(a, b)) return div(c->first, c->second);
  // Integer division truncates; a zero divisor is an error on the CPU (as PyTorch's ZeroDivisionError).
  Tensor out = binary_map("div", a, b, [&a, &b](auto x, auto y) {
    using A = decltype(x);
    if constexpr (std::is_integral_v<A>)
      CIUIC_CHECK(y != A(0), ValueError, "div", "integer division by zero (", ops::describe_all({{"a", &a}, {"b", &b}}),
                  "); expected non-zero divisors for integer dtypes (convert to a floating dtype for inf / nan)");
    return math::Div<A>{}(x, y);
  }, cuda_op(BinaryOp::div));
  if (!needs_grad({&a, &b})) return out;
  SavedTensor sa(wants(b) ? a : Tensor()), sb(b);
  return record_binary("div", a, b, out, [sa, sb](const Tensor& g) {
    Tensor bv = sb.unpack("div");
    Tensor ga = div(g, bv);
    Tensor gb = sa.defined() ? neg(div(mul(ga, sa.unpack("div")), bv)) : Tensor();  // -g a / b^2
    return std::pair{ga, gb};
  });
}

Tensor pow(const Tensor& a, const Tensor& b) {
  if (auto c = ops::promote(a, b)) return pow(c->first, c->second);
  if (auto c = amp::autocast_promote(a, b)) return pow(c->first, c->second);
  Tensor out = binary_map<true>("pow", a, b, [](auto x, auto y) { return std::pow(x, y); }, cuda_op(BinaryOp::pow));
  if (!needs_grad({&a, &b})) return out;
  SavedTensor sa(a), sb(b), so(out);
  return record_binary("pow", a, b, out, [sa, sb, so](const Tensor& g) {
    Tensor av = sa.unpack("pow"), bv = sb.unpack("pow");
    Tensor ga = mul(g, mul(bv, pow(av, sub(bv, ops::scalar_like(bv, 1.0)))));
    Tensor gb = mul(g, mul(so.unpack("pow"), log(av)));
    return std::pair{ga, gb};
  });
}

// d max(a, b): to a where a >= b (ties go to a), else to b.
Tensor maximum(const Tensor& a, const Tensor& b) {
  if (auto c = ops::promote(a, b)) return maximum(c->first, c->second);
  if (auto c = amp::autocast_promote(a, b)) return maximum(c->first, c->second);
  Tensor out =
      binary_map("maximum", a, b, [](auto x, auto y) { return math::Maximum<decltype(x)>{}(x, y); }, cuda_op(BinaryOp::maximum));
  if (!needs_grad({&a, &b})) return out;
  SavedTensor sa(a), sb(b);
  return record_binary("maximum", a, b, out, [sa, sb](const Tensor& g) {
    Tensor pick_a = binary_map<true>("maximum", sa.unpack("maximum"), sb.unpack("maximum"),
                               [](auto x, auto y) { return x >= y ? 1.0 : 0.0; }, cuda_op(CompareOp::ge));
    return std::pair{mul(g, pick_a), mul(g, rsub(pick_a, 1.0))};
  });
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  if (auto c = ops::promote(a, b)) return minimum(c->first, c->second);
  if (auto c = amp::autocast_promote(a, b)) return minimum(c->first, c->second);
  Tensor out =
      binary_map("minimum", a, b, [](auto x, auto y) { return math::Minimum<decltype(x)>{}(x, y); }, cuda_op(BinaryOp::minimum));
  if (!needs_grad({&a, &b})) return out;
  SavedTensor sa(a), sb(b);
  return record_binary("minimum", a, b, out, [sa, sb](const Tensor& g) {
    Tensor pick_a = binary_map<true>("minimum", sa.unpack("minimum"), sb.unpack("minimum"),
                               [](auto x, auto y) { return x <= y ? 1.0 : 0.0; }, cuda_op(CompareOp::le));
    return std::pair{mul(g, pick_a), mul(g, rsub(pick_a, 1.0))};
  });
}

// ---- with a scalar (the scalar is a constant: no gradient; wrap_scalar gives its dtype) ----
Tensor add(const Tensor& a, Scalar s) { return add(a, ops::wrap_scalar(a, s)); }
Tensor sub(const Tensor& a, Scalar s) { return sub(a, ops::wrap_scalar(a, s)); }
Tensor rsub(const Tensor& a, Scalar s) { return sub(ops::wrap_scalar(a, s), a); }
Tensor mul(const Tensor& a, Scalar s) { return mul(a, ops::wrap_scalar(a, s)); }
Tensor div(const Tensor& a, Scalar s) { return div(a, ops::wrap_scalar(a, s)); }
Tensor rdiv(const Tensor& a, Scalar s) { return div(ops::wrap_scalar(a, s), a); }

Tensor pow(const Tensor& a, Scalar exponent) {
  ops::check_defined("pow", {{"input", &a}});
  if (!is_floating(a.dtype())) {  // integral ** integral stays integral (exact in f64 below 2^53)
    if (exponent.is_floating()) return pow(a.to(DType::f32), exponent);
    return pow(a.to(DType::f64), exponent).to(a.dtype());
  }
  const double e = exponent.value;
  Tensor out = unary_map("pow", a, [e](auto x) { return std::pow(x, static_cast<decltype(x)>(e)); },
                         {UnaryOp::pow_scalar, {e}});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("pow", a, out, [sa, e](const Tensor& g) { return mul(g, mul(pow(sa.unpack("pow"), e - 1.0), e)); });
}

// ---- unary ----
Tensor neg(const Tensor& a) {
  Tensor out = unary_map("neg", a, [](auto x) { return -x; }, {UnaryOp::neg});
  return record_unary("neg", a, out, [](const Tensor& g) { return neg(g); });
}

Tensor exp(const Tensor& a) {
  Tensor out = unary_map("exp", a, [](auto x) { return std::exp(x); }, {UnaryOp::exp});
  if (!needs_grad({&a})) return out;
  SavedTensor so(out);
  return record_unary("exp", a, out, [so](const Tensor& g) { return mul(g, so.unpack("exp")); });
}

Tensor log(const Tensor& a) {
  Tensor out = unary_map("log", a, [](auto x) { return std::log(x); }, {UnaryOp::log});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("log", a, out, [sa](const Tensor& g) { return div(g, sa.unpack("log")); });
}

Tensor sqrt(const Tensor& a) {
  Tensor out = unary_map("sqrt", a, [](auto x) { return std::sqrt(x); }, {UnaryOp::sqrt});
  if (!needs_grad({&a})) return out;
  SavedTensor so(out);
  return record_unary("sqrt", a, out, [so](const Tensor& g) { return div(g, mul(so.unpack("sqrt"), 2.0)); });
}

Tensor rsqrt(const Tensor& a) {
  Tensor out = unary_map("rsqrt", a, [](auto x) { return decltype(x)(1) / std::sqrt(x); }, {UnaryOp::rsqrt});
  if (!needs_grad({&a})) return out;
  SavedTensor so(out);
  // d/dx x^-1/2 = -1/2 x^-3/2 = -1/2 out^3
  return record_unary("rsqrt", a, out, [so](const Tensor& g) { return mul(g, mul(pow(so.unpack("rsqrt"), 3.0), -0.5)); });
}

Tensor tanh(const Tensor& a) {
  Tensor out = unary_map("tanh", a, [](auto x) { return std::tanh(x); }, {UnaryOp::tanh});
  if (!needs_grad({&a})) return out;
  SavedTensor so(out);
  return record_unary("tanh", a, out, [so](const Tensor& g) {
    Tensor t = so.unpack("tanh");
    return mul(g, rsub(mul(t, t), 1.0));
  });
}

Tensor sigmoid(const Tensor& a) {
  Tensor out = unary_map(
      "sigmoid", a, [](auto x) { return decltype(x)(1) / (decltype(x)(1) + std::exp(-x)); }, {UnaryOp::sigmoid});
  if (!needs_grad({&a})) return out;
  SavedTensor so(out);
  return record_unary("sigmoid", a, out, [so](const Tensor& g) {
    Tensor s = so.unpack("sigmoid");
    return mul(g, mul(s, rsub(s, 1.0)));
  });
}

Tensor relu(const Tensor& a) {
  Tensor out = unary_map("relu", a, [](auto x) { return math::Relu<decltype(x)>{}(x); }, {UnaryOp::relu});
  if (!needs_grad({&a})) return out;
  SavedTensor so(out);
  return record_unary("relu", a, out, [so](const Tensor& g) {
    return binary_map<true>(
        "relu_backward", g, so.unpack("relu"), [](auto gy, auto y) { return math::ReluBackward<decltype(y)>{}(gy, y); },
        cuda_op(UnaryBackwardOp::relu));
  });
}

namespace {
// GELU, tanh approximation: 0.5 x (1 + tanh(k (x + 0.044715 x^3))), k = sqrt(2/pi).
template <typename A> A gelu_tanh(A x) {
  const A k = A(0.7978845608028654), c = A(0.044715);
  return A(0.5) * x * (A(1) + std::tanh(k * (x + c * x * x * x)));
}
template <typename A> A gelu_tanh_grad(A x) {
  const A k = A(0.7978845608028654), c = A(0.044715);
  A u = k * (x + c * x * x * x);
  A t = std::tanh(u);
  return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * k * (A(1) + A(3) * c * x * x);
}
// Exact GELU: x Phi(x), Phi the standard normal CDF.
template <typename A> A gelu_erf(A x) { return A(0.5) * x * (A(1) + std::erf(x * A(0.7071067811865476))); }
template <typename A> A gelu_erf_grad(A x) {
  A cdf = A(0.5) * (A(1) + std::erf(x * A(0.7071067811865476)));
  A pdf = std::exp(A(-0.5) * x * x) * A(0.3989422804014327);
  return cdf + x * pdf;
}
}  // namespace

Tensor ops::gelu_backward(const Tensor& grad, const Tensor& x, GeluApprox approx) {
  const bool tanh_form = approx == GeluApprox::tanh;
  return binary_map<true>("gelu_backward", grad, x,
                          [tanh_form](auto gy, auto v) { return gy * (tanh_form ? gelu_tanh_grad(v) : gelu_erf_grad(v)); },
                          cuda_op(tanh_form ? UnaryBackwardOp::gelu_tanh : UnaryBackwardOp::gelu_erf));
}

Tensor gelu(const Tensor& a, GeluApprox approx) {
  bool tanh_form = approx == GeluApprox::tanh;
  Tensor out = unary_map("gelu", a, [tanh_form](auto x) { return tanh_form ? gelu_tanh(x) : gelu_erf(x); },
                         {tanh_form ? UnaryOp::gelu_tanh : UnaryOp::gelu_erf});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("gelu", a, out,
                      [sa, approx](const Tensor& g) { return ops::gelu_backward(g, sa.unpack("gelu"), approx); });
}

Tensor gelu(const Tensor& a, const std::string& approximate) {
  CIUIC_CHECK(approximate == "none" || approximate == "tanh", ValueError, "gelu", "approximate=\"", approximate,
              "\" for ", describe(a), "; expected \"none\" (exact erf) or \"tanh\"");
  return gelu(a, approximate == "tanh" ? GeluApprox::tanh : GeluApprox::none);
}

Tensor silu(const Tensor& a) {
  Tensor out = unary_map("silu", a, [](auto x) { return x / (decltype(x)(1) + std::exp(-x)); }, {UnaryOp::silu});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("silu", a, out, [sa](const Tensor& g) {
    return binary_map<true>("silu_backward", g, sa.unpack("silu"), [](auto gy, auto x) {
      using A = decltype(x);
      A s = A(1) / (A(1) + std::exp(-x));
      return gy * s * (A(1) + x * (A(1) - s));
    }, cuda_op(UnaryBackwardOp::silu));
  });
}

Tensor abs(const Tensor& a) {
  Tensor out = unary_map("abs", a, [](auto x) { return std::abs(x); }, {UnaryOp::abs});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("abs", a, out, [sa](const Tensor& g) {
    return binary_map<true>("abs_backward", g, sa.unpack("abs"),
                      [](auto gy, auto x) { return x > 0 ? gy : (x < 0 ? -gy : decltype(gy)(0)); },
                      cuda_op(UnaryBackwardOp::abs));
  });
}

// Gradient passes where lo <= x <= hi (inclusive, as PyTorch does).
Tensor clamp(const Tensor& a, std::optional<double> lo, std::optional<double> hi) {
  CIUIC_CHECK(!(lo && hi && *lo > *hi), ValueError, "clamp", "lo ", *lo, " > hi ", *hi, " for ", describe(a),
              "; expected lo <= hi");
  double l = lo.value_or(-INFINITY), h = hi.value_or(INFINITY);
  Tensor out = unary_map("clamp", a, [l, h](auto x) {
    using A = decltype(x);
    return math::Clamp<A>{A(l), A(h)}(x);
  }, {UnaryOp::clamp, {0.0, l, h}});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("clamp", a, out, [sa, l, h](const Tensor& g) {
    return binary_map<true>("clamp_backward", g, sa.unpack("clamp"), [l, h](auto gy, auto x) {
      using A = decltype(x);
      return (x >= A(l) && x <= A(h)) ? gy : decltype(gy)(0);
    }, cuda_op(UnaryBackwardOp::clamp, l, h));
  });
}

// ---- selection ----
namespace {
Tensor where_impl(const char* op, const Tensor& cond, const Tensor& a, const Tensor& b) {
  ops::check_defined(op, {{"cond", &cond}, {"a", &a}, {"b", &b}});
  ops::check_same_device(op, {{"cond", &cond}, {"a", &a}, {"b", &b}});
  ops::check_same_dtype(op, {{"a", &a}, {"b", &b}});
  CIUIC_CHECK(cond.dtype() == DType::boolean || cond.dtype() == DType::u8, DTypeError, op, "condition is ",
              describe(cond), "; expected a bool or u8 mask");
#ifdef CIUIC_WITH_CUDA
  if (a.device().is_cuda()) return ops::cuda_where(op, cond, a, b);
#endif
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), op), b.shape(), op);
  Tensor out = make_tensor(shape, a.dtype(), a.device());
  dispatch_dtype(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const auto* pc = static_cast<const std::uint8_t*>(cond.data_ptr());  // bool and u8: one byte each
    const T* pa = detail::typed_ptr<T>(a);
    const T* pb = detail::typed_ptr<T>(b);
    T* po = detail::typed_ptr<T>(out);
    detail::cpu_for_each<4>(shape, {out.strides(), detail::broadcast_strides(cond, shape),
                                    detail::broadcast_strides(a, shape), detail::broadcast_strides(b, shape)},
                            [&](const auto& o) { po[o[0]] = pc[o[1]] ? pa[o[2]] : pb[o[3]]; });
  });
  return out;
}
}  // namespace

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = where_impl("where", cond, a, b);
  if (!needs_grad({&a, &b})) return out;
  Tensor c = cond.detach();
  Shape sa = a.shape(), sb = b.shape();
  record("where", {a, b}, {out}, [c, sa, sb](const GradList& g) {
    Tensor z = zeros({}, TensorOptions(g[0].dtype()).device(g[0].device()));
    return GradList{sum_to(where_impl("where_backward", c, g[0], z), sa),
                    sum_to(where_impl("where_backward", c, z, g[0]), sb)};
  });
  return out;
}

Tensor masked_fill(const Tensor& a, const Tensor& mask, double value) {
  ops::check_defined("masked_fill", {{"input", &a}, {"mask", &mask}});
  CIUIC_CHECK(broadcast_shapes(a.shape(), mask.shape(), "masked_fill") == a.shape(), ShapeError, "masked_fill",
              "mask ", describe(mask), " does not broadcast to input ", describe(a), "; expected the input's shape");
  Tensor v = ops::scalar_like(a, value);
  Tensor out = where_impl("masked_fill", mask, v, a);
  if (!needs_grad({&a})) return out;
  Tensor m = mask.detach();
  return record_unary("masked_fill", a, out, [m](const Tensor& g) {
    return where_impl("masked_fill_backward", m, zeros({}, TensorOptions(g.dtype()).device(g.device())), g);
  });
}

// ---- operators ----
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, Scalar s) { return add(a, s); }
Tensor operator-(const Tensor& a, Scalar s) { return sub(a, s); }
Tensor operator*(const Tensor& a, Scalar s) { return mul(a, s); }
Tensor operator/(const Tensor& a, Scalar s) { return div(a, s); }
Tensor operator+(Scalar s, const Tensor& a) { return add(a, s); }
Tensor operator-(Scalar s, const Tensor& a) { return rsub(a, s); }
Tensor operator*(Scalar s, const Tensor& a) { return mul(a, s); }
Tensor operator/(Scalar s, const Tensor& a) { return rdiv(a, s); }

}  // namespace ciuic
