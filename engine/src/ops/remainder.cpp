// remainder (Python's sign rule) and fmod (C's), with broadcasting and PyTorch's
// promotion. The per-element rule is math::Remainder / math::Fmod
// (ciuic/kernels/elementwise_math.h), the same functors the CUDA binary kernel runs.
// Integral dtypes: a zero divisor is a ValueError on the CPU (README "Rules for
// hostile input"); on CUDA there is no integral kernel (the check would need a read-back).
#include <cmath>

#include "ciuic/amp.h"
#include "ciuic/kernels/elementwise_math.h"
#include "op_util.h"

namespace ciuic {

namespace math = kernels::math;

namespace {

template <template <typename> class F>
Tensor remainder_like(const char* op, kernels::BinaryOp kop, const Tensor& a, const Tensor& b) {
  ops::check_defined(op, {{"a", &a}, {"b", &b}});
  CIUIC_CHECK(a.dtype() != DType::boolean && b.dtype() != DType::boolean, DTypeError, op, "got ",
              ops::describe_all({{"a", &a}, {"b", &b}}), "; expected numeric dtypes (not bool)");
  if (auto c = ops::promote(a, b)) return remainder_like<F>(op, kop, c->first, c->second);
  if (auto c = amp::autocast_promote(a, b)) return remainder_like<F>(op, kop, c->first, c->second);
  ops::check_same_device(op, {{"a", &a}, {"b", &b}});
  CIUIC_CHECK(is_floating(a.dtype()) || !a.device().is_cuda(), NotImplementedError, op,
              "no CUDA kernel for integral ", ops::describe_all({{"a", &a}, {"b", &b}}),
              " (the zero-divisor check would need a read-back); expected floating tensors on CUDA, or CPU tensors");
  Tensor out = ops::binary_map(op, a, b, [&a, &b, op](auto x, auto y) {
    using A = decltype(x);
    if constexpr (std::is_integral_v<A>)
      CIUIC_CHECK(y != A(0), ValueError, op, "integer division by zero (", ops::describe_all({{"a", &a}, {"b", &b}}),
                  "); expected non-zero divisors for integer dtypes (convert to a floating dtype for nan)");
    return F<A>{}(x, y);
  }, ops::cuda_op(kop));
  if (!needs_grad({&a, &b})) return out;
  const bool floor_rule = kop == kernels::BinaryOp::remainder;
  SavedTensor sa(a.requires_grad() || b.requires_grad() ? a : Tensor()), sb(b);
  Shape shape_a = a.shape(), shape_b = b.shape();
  record(op, {a, b}, {out}, [sa, sb, shape_a, shape_b, floor_rule, op](const GradList& g) {
    // a - q b with q = floor(a / b) (remainder) or trunc(a / b) (fmod), q piecewise constant.
    Tensor q = div(sa.unpack(op), sb.unpack(op));
    q = floor_rule ? floor(q) : trunc(q);
    return GradList{sum_to(g[0], shape_a), sum_to(neg(mul(g[0], q)), shape_b)};
  });
  return out;
}

}  // namespace

Tensor remainder(const Tensor& a, const Tensor& b) {
  return remainder_like<math::Remainder>("remainder", kernels::BinaryOp::remainder, a, b);
}
Tensor remainder(const Tensor& a, Scalar s) {
  ops::check_defined("remainder", {{"a", &a}});
  return remainder(a, ops::wrap_scalar(a, s));
}
Tensor fmod(const Tensor& a, const Tensor& b) { return remainder_like<math::Fmod>("fmod", kernels::BinaryOp::fmod, a, b); }
Tensor fmod(const Tensor& a, Scalar s) {
  ops::check_defined("fmod", {{"a", &a}});
  return fmod(a, ops::wrap_scalar(a, s));
}

}  // namespace ciuic
