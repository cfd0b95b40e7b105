// Unary math and activations beyond elementwise.cpp's: sin ... trunc, leaky_relu,
// elu, softplus, logsigmoid, hardtanh, mish. The CPU reference calls the very
// functors of ciuic/kernels/elementwise_math.h that the CUDA elementwise kernel runs
// (UnaryOp / UnaryBackwardOp of the same name), so the CPU tests cover the GPU's
// per-element math. Backward: a backward functor (activations, erf, log1p) or a
// composition of ops that have CUDA kernels themselves.
#include <cmath>

#include "ciuic/kernels/elementwise_math.h"
#include "op_util.h"

namespace ciuic {

using kernels::UnaryBackwardOp;
using kernels::UnaryOp;
using ops::cuda_op;
using ops::unary_map;
namespace math = kernels::math;

namespace {

template <typename BW>
Tensor record_unary(const char* name, const Tensor& a, Tensor out, BW bw) {
  if (needs_grad({&a})) record(name, {a}, {out}, [bw](const GradList& g) { return GradList{bw(g[0])}; });
  return out;
}

// Integral and bool inputs of the floating math functions compute in f32 (PyTorch's
// default float), as sin(arange(3)) does there.
Tensor as_floating(const Tensor& a) {
  ops::check_defined("unary", {{"input", &a}});
  return is_floating(a.dtype()) ? a : a.to(DType::f32);
}

// A forward whose gradient is 0 everywhere (floor, sign, ...): recorded, so that
// backward through it works and gives zeros, as PyTorch's.
Tensor record_zero_grad(const char* name, const Tensor& a, Tensor out) {
  return record_unary(name, a, out, [](const Tensor& g) { return zeros_like(g); });
}

// g * f'(x) through a backward functor (same on CPU and CUDA). make(A) builds the
// functor BF<A> with its parameters; lo / hi are the same parameters for the kernel.
template <typename Make>
Tensor functor_backward(const char* name, const Tensor& g, const Tensor& x, UnaryBackwardOp op, Make make,
                        double lo = 0, double hi = 0) {
  return ops::binary_map<true>(name, g, x, [make](auto gy, auto xv) {
    return make(static_cast<decltype(xv)*>(nullptr))(gy, xv);
  }, cuda_op(op, lo, hi));
}
// Makers: [](auto* t) { return BF<std::remove_pointer_t<decltype(t)>>{...}; }
#define CIUIC_MAKE(BF, ...) [=](auto* t_) { using A = std::remove_pointer_t<decltype(t_)>; return BF<A>{__VA_ARGS__}; }

}  // namespace

Tensor sin(const Tensor& a_in) {
  Tensor a = as_floating(a_in);
  Tensor out = unary_map("sin", a, [](auto x) { return math::Sin<decltype(x)>{}(x); }, {UnaryOp::sin});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("sin", a, out, [sa](const Tensor& g) { return mul(g, cos(sa.unpack("sin"))); });
}

Tensor cos(const Tensor& a_in) {
  Tensor a = as_floating(a_in);
  Tensor out = unary_map("cos", a, [](auto x) { return math::Cos<decltype(x)>{}(x); }, {UnaryOp::cos});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("cos", a, out, [sa](const Tensor& g) { return neg(mul(g, sin(sa.unpack("cos")))); });
}

Tensor log1p(const Tensor& a_in) {
  Tensor a = as_floating(a_in);
  Tensor out = unary_map("log1p", a, [](auto x) { return math::Log1p<decltype(x)>{}(x); }, {UnaryOp::log1p});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("log1p", a, out, [sa](const Tensor& g) {
    return functor_backward("log1p_backward", g, sa.unpack("log1p"), UnaryBackwardOp::log1p,
                                           CIUIC_MAKE(math::Log1pBackward));
  });
}

Tensor expm1(const Tensor& a_in) {
  Tensor a = as_floating(a_in);
  Tensor out = unary_map("expm1", a, [](auto x) { return math::Expm1<decltype(x)>{}(x); }, {UnaryOp::expm1});
  if (!needs_grad({&a})) return out;
  SavedTensor so(out);
  // d/dx (e^x - 1) = e^x = out + 1
  return record_unary("expm1", a, out, [so](const Tensor& g) { return mul(g, add(so.unpack("expm1"), 1.0)); });
}

Tensor erf(const Tensor& a_in) {
  Tensor a = as_floating(a_in);
  Tensor out = unary_map("erf", a, [](auto x) { return math::Erf<decltype(x)>{}(x); }, {UnaryOp::erf});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("erf", a, out, [sa](const Tensor& g) {
    return functor_backward("erf_backward", g, sa.unpack("erf"), UnaryBackwardOp::erf,
                                         CIUIC_MAKE(math::ErfBackward));
  });
}

Tensor log2(const Tensor& a_in) {
  Tensor a = as_floating(a_in);
  Tensor out = unary_map("log2", a, [](auto x) { return math::Log2<decltype(x)>{}(x); }, {UnaryOp::log2});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  // 1 / (x ln 2)
  return record_unary("log2", a, out, [sa](const Tensor& g) { return div(g, mul(sa.unpack("log2"), M_LN2)); });
}

Tensor log10(const Tensor& a_in) {
  Tensor a = as_floating(a_in);
  Tensor out = unary_map("log10", a, [](auto x) { return math::Log10<decltype(x)>{}(x); }, {UnaryOp::log10});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("log10", a, out, [sa](const Tensor& g) { return div(g, mul(sa.unpack("log10"), M_LN10)); });
}

Tensor reciprocal(const Tensor& a_in) {
  Tensor a = as_floating(a_in);
  Tensor out =
      unary_map("reciprocal", a, [](auto x) { return math::Reciprocal<decltype(x)>{}(x); }, {UnaryOp::reciprocal});
  if (!needs_grad({&a})) return out;
  SavedTensor so(out);
  // d/dx 1/x = -1/x^2 = -out^2
  return record_unary("reciprocal", a, out, [so](const Tensor& g) {
    Tensor y = so.unpack("reciprocal");
    return neg(mul(g, mul(y, y)));
  });
}

Tensor square(const Tensor& a) {
  ops::check_defined("square", {{"input", &a}});
  if (!is_floating(a.dtype())) return mul(a, a);  // integral: wraps like mul; bool: logical and
  Tensor out = unary_map("square", a, [](auto x) { return math::Square<decltype(x)>{}(x); }, {UnaryOp::square});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("square", a, out, [sa](const Tensor& g) { return mul(g, mul(sa.unpack("square"), 2.0)); });
}

// ---- piecewise constant ----
Tensor sign(const Tensor& a) {
  ops::check_defined("sign", {{"input", &a}});
  if (!is_floating(a.dtype())) {
    if (a.dtype() == DType::boolean) return a.clone();
    // (a > 0) - (a < 0) in a's dtype, by selection (works for u8 and on CUDA).
    auto c = [&](double v) { return full({}, v, TensorOptions(a.dtype()).device(a.device())); };
    return where(gt(a, 0), c(1), where(lt(a, 0), c(-1), c(0)));
  }
  Tensor out = unary_map("sign", a, [](auto x) { return math::Sign<decltype(x)>{}(x); }, {UnaryOp::sign});
  return record_zero_grad("sign", a, out);
}

#define CIUIC_ROUNDING_OP(name, Functor)                                                              \
  Tensor name(const Tensor& a) {                                                                      \
    ops::check_defined(#name, {{"input", &a}});                                                       \
    if (!is_floating(a.dtype())) return a.clone(); /* integers are already integral: a copy */       \
    Tensor out = unary_map(#name, a, [](auto x) { return math::Functor<decltype(x)>{}(x); }, {UnaryOp::name}); \
    return record_zero_grad(#name, a, out);                                                          \
  }
CIUIC_ROUNDING_OP(floor, Floor)
CIUIC_ROUNDING_OP(ceil, Ceil)
CIUIC_ROUNDING_OP(round, Round)
CIUIC_ROUNDING_OP(trunc, Trunc)
#undef CIUIC_ROUNDING_OP

// ---- activations ----
Tensor leaky_relu(const Tensor& a, double slope) {
  Tensor out = unary_map("leaky_relu", a, [slope](auto x) {
    using A = decltype(x);
    return math::LeakyRelu<A>{A(slope)}(x);
  }, {UnaryOp::leaky_relu, {slope}});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("leaky_relu", a, out, [sa, slope](const Tensor& g) {
    return functor_backward("leaky_relu_backward", g, sa.unpack("leaky_relu"),
                                                     UnaryBackwardOp::leaky_relu,
                                                     CIUIC_MAKE(math::LeakyReluBackward, A(slope)), slope);
  });
}

Tensor elu(const Tensor& a, double alpha) {
  Tensor out = unary_map("elu", a, [alpha](auto x) {
    using A = decltype(x);
    return math::Elu<A>{A(alpha)}(x);
  }, {UnaryOp::elu, {alpha}});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("elu", a, out, [sa, alpha](const Tensor& g) {
    return functor_backward("elu_backward", g, sa.unpack("elu"), UnaryBackwardOp::elu,
                                              CIUIC_MAKE(math::EluBackward, A(alpha)), alpha);
  });
}

Tensor softplus(const Tensor& a, double beta, double threshold) {
  ops::check_defined("softplus", {{"input", &a}});
  CIUIC_CHECK(beta != 0 && !std::isnan(beta), ValueError, "softplus", "beta ", beta, " for ", describe(a),
              "; expected a non-zero beta");
  Tensor out = unary_map("softplus", a, [beta, threshold](auto x) {
    using A = decltype(x);
    return math::Softplus<A>{A(beta), A(threshold)}(x);
  }, {UnaryOp::softplus, {beta, -INFINITY, threshold}});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("softplus", a, out, [sa, beta, threshold](const Tensor& g) {
    return functor_backward("softplus_backward", g, sa.unpack("softplus"),
                                                    UnaryBackwardOp::softplus,
                                                    CIUIC_MAKE(math::SoftplusBackward, A(beta), A(threshold)), beta,
                                                    threshold);
  });
}

Tensor logsigmoid(const Tensor& a) {
  Tensor out =
      unary_map("logsigmoid", a, [](auto x) { return math::LogSigmoid<decltype(x)>{}(x); }, {UnaryOp::logsigmoid});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("logsigmoid", a, out, [sa](const Tensor& g) {
    return functor_backward("logsigmoid_backward", g, sa.unpack("logsigmoid"),
                                                      UnaryBackwardOp::logsigmoid,
                                                      CIUIC_MAKE(math::LogSigmoidBackward));
  });
}

Tensor hardtanh(const Tensor& a, double lo, double hi) {
  ops::check_defined("hardtanh", {{"input", &a}});
  CIUIC_CHECK(lo <= hi, ValueError, "hardtanh", "min_val ", lo, " > max_val ", hi, " for ", describe(a),
              "; expected min_val <= max_val");
  Tensor out = unary_map("hardtanh", a, [lo, hi](auto x) {
    using A = decltype(x);
    return math::Clamp<A>{A(lo), A(hi)}(x);
  }, {UnaryOp::clamp, {0.0, lo, hi}});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("hardtanh", a, out, [sa, lo, hi](const Tensor& g) {
    return functor_backward("hardtanh_backward", g, sa.unpack("hardtanh"),
                                                    UnaryBackwardOp::hardtanh,
                                                    CIUIC_MAKE(math::HardtanhBackward, A(lo), A(hi)), lo, hi);
  });
}

Tensor mish(const Tensor& a) {
  Tensor out = unary_map("mish", a, [](auto x) { return math::Mish<decltype(x)>{}(x); }, {UnaryOp::mish});
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  return record_unary("mish", a, out, [sa](const Tensor& g) {
    return functor_backward("mish_backward", g, sa.unpack("mish"), UnaryBackwardOp::mish,
                                                CIUIC_MAKE(math::MishBackward));
  });
}

#undef CIUIC_MAKE

}  // namespace ciuic
