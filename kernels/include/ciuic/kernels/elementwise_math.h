// Per-element math of the elementwise kernels, as __host__ __device__ functors,
// so the CPU tests call exactly the code the GPU runs.
//
// Every functor is templated on A, the arithmetic type: float for f32/f16/bf16
// storage (values are widened on load and rounded once on store), double for f64,
// and the integer type itself for the integer binary ops. The formulas are those of
// the CPU reference in engine/src/ops/elementwise.cpp, except GELU (both forms) and
// its derivatives, which are rewritten in mathematically identical forms that keep
// their relative accuracy in the negative tail (1 + tanh(u) = 2 sigmoid(2u),
// 1 + erf(z) = erfc(-z)); the CPU's forms cancel there (in f32 gelu(-5) was 30% off).
//
// Math functions are called as `using std::exp; exp(x)`: on the host that picks
// std::exp(float/double); in device code it picks CUDA's float/double overloads
// (expf, exp, ...). No fast-math intrinsics.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "ciuic/macros.h"

namespace ciuic::kernels::math {

// ---- the rules every device follows (README, "Errors") ----
// NaN propagates: relu, maximum, minimum and clamp return NaN when an operand (or a clamp
// bound) is NaN, as PyTorch does. Integers wrap: i32/i64 add, sub, mul, neg are computed
// in the unsigned type (two's complement, modulo 2^bits), never signed overflow.
// Integer division truncates toward zero, INT_MIN / -1 wraps to INT_MIN, and x / 0
// is 0 here; the CPU op raises on a zero divisor before it gets that far.

template <typename A>
CIUIC_HD bool is_nan(A x) {
  if constexpr (std::is_floating_point_v<A>) return x != x;
  else return false;
}

// Signed integers wider than int: arithmetic in the unsigned type (no UB). Narrower
// types are promoted to int by C++ and cannot overflow it; floats are plain IEEE.
template <typename A>
inline constexpr bool kWraps = std::is_integral_v<A> && std::is_signed_v<A> && sizeof(A) >= sizeof(int);

template <typename A>
CIUIC_HD A wrap_add(A x, A y) {
  if constexpr (kWraps<A>) {
    using U = std::make_unsigned_t<A>;
    return static_cast<A>(static_cast<U>(static_cast<U>(x) + static_cast<U>(y)));
  } else {
    return static_cast<A>(x + y);
  }
}
template <typename A>
CIUIC_HD A wrap_sub(A x, A y) {
  if constexpr (kWraps<A>) {
    using U = std::make_unsigned_t<A>;
    return static_cast<A>(static_cast<U>(static_cast<U>(x) - static_cast<U>(y)));
  } else {
    return static_cast<A>(x - y);
  }
}
template <typename A>
CIUIC_HD A wrap_mul(A x, A y) {
  if constexpr (kWraps<A>) {
    using U = std::make_unsigned_t<A>;
    return static_cast<A>(static_cast<U>(static_cast<U>(x) * static_cast<U>(y)));
  } else {
    return static_cast<A>(x * y);
  }
}
// Integer division without a trap: truncates, x / -1 = wrapping -x, x / 0 = 0.
template <typename A>
CIUIC_HD A int_div(A x, A y) {
  if (y == A(0)) return A(0);
  if constexpr (std::is_signed_v<A>) {
    if (y == A(-1)) return wrap_sub(A(0), x);
  }
  return static_cast<A>(x / y);
}

// ---- constants (double literals, converted to A where used) ----
constexpr double kSqrt2OverPi = 0.7978845608028654;    // sqrt(2 / pi), GELU tanh form
constexpr double kGeluCubic = 0.044715;                // GELU tanh form
constexpr double kInvSqrt2 = 0.7071067811865476;       // 1 / sqrt(2), GELU erf form
constexpr double kInvSqrt2Pi = 0.3989422804014327;     // 1 / sqrt(2 pi): standard normal pdf at 0

// ---- unary ----
template <typename A> struct Neg {
  CIUIC_HD A operator()(A x) const { return -x; }
};
template <typename A> struct Exp {
  CIUIC_HD A operator()(A x) const { using std::exp; return exp(x); }
};
template <typename A> struct Log {
  CIUIC_HD A operator()(A x) const { using std::log; return log(x); }
};
template <typename A> struct Sqrt {
  CIUIC_HD A operator()(A x) const { using std::sqrt; return sqrt(x); }
};
// 1 / sqrt(x) (not the rsqrt intrinsic: it is only approximately rounded).
template <typename A> struct Rsqrt {
  CIUIC_HD A operator()(A x) const { using std::sqrt; return A(1) / sqrt(x); }
};
template <typename A> struct Tanh {
  CIUIC_HD A operator()(A x) const { using std::tanh; return tanh(x); }
};
// 1 / (1 + e^-x): for x -> -inf, e^-x overflows to inf and the result is 0, not nan.
template <typename A> struct Sigmoid {
  CIUIC_HD A operator()(A x) const { using std::exp; return A(1) / (A(1) + exp(-x)); }
};
// nan -> nan (as PyTorch): only x <= 0 becomes 0.
template <typename A> struct Relu {
  CIUIC_HD A operator()(A x) const { return x <= A(0) ? A(0) : x; }
};
// 0.5 x (1 + tanh(u)), u = k (x + 0.044715 x^3), k = sqrt(2/pi); computed as
// x sigmoid(2u) = x / (1 + e^(-2u)) (identical, no cancellation for u << 0; e^(-2u) = inf gives -0).
template <typename A> struct GeluTanh {
  CIUIC_HD A operator()(A x) const {
    using std::exp;
    const A u = A(kSqrt2OverPi) * (x + A(kGeluCubic) * x * x * x);
    return x / (A(1) + exp(A(-2) * u));
  }
};
// x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2).
template <typename A> struct GeluErf {
  CIUIC_HD A operator()(A x) const { using std::erfc; return A(0.5) * x * erfc(-x * A(kInvSqrt2)); }
};
// x sigmoid(x) = x / (1 + e^-x).
template <typename A> struct Silu {
  CIUIC_HD A operator()(A x) const { using std::exp; return x / (A(1) + exp(-x)); }
};
template <typename A> struct Abs {
  CIUIC_HD A operator()(A x) const { using std::fabs; return fabs(x); }
};
// lo/hi may be -inf/+inf (no bound). min(max(x, lo), hi) with NaN propagation: a NaN x
// or a NaN bound gives NaN.
template <typename A> struct Clamp {
  A lo, hi;
  CIUIC_HD A operator()(A x) const {
    if (is_nan(x) || is_nan(lo)) return is_nan(x) ? x : lo;
    if (is_nan(hi)) return hi;
    return x < lo ? lo : (x > hi ? hi : x);
  }
};
template <typename A> struct PowScalar {
  A e;
  CIUIC_HD A operator()(A x) const { using std::pow; return pow(x, e); }
};
template <typename A> struct AddScalar {
  A s;
  CIUIC_HD A operator()(A x) const { return x + s; }
};
template <typename A> struct MulScalar {
  A s;
  CIUIC_HD A operator()(A x) const { return x * s; }
};
template <typename A> struct DivScalar {
  A s;
  CIUIC_HD A operator()(A x) const { return x / s; }
};
template <typename A> struct RSubScalar {  // s - x
  A s;
  CIUIC_HD A operator()(A x) const { return s - x; }
};
template <typename A> struct RDivScalar {  // s / x
  A s;
  CIUIC_HD A operator()(A x) const { return s / x; }
};

// ---- binary ----
template <typename A> struct Add {
  CIUIC_HD A operator()(A x, A y) const { return wrap_add(x, y); }
};
template <typename A> struct Sub {
  CIUIC_HD A operator()(A x, A y) const { return wrap_sub(x, y); }
};
template <typename A> struct Mul {
  CIUIC_HD A operator()(A x, A y) const { return wrap_mul(x, y); }
};
template <typename A> struct Div {
  CIUIC_HD A operator()(A x, A y) const {
    if constexpr (std::is_integral_v<A>) return int_div(x, y);
    else return x / y;
  }
};
template <typename A> struct Pow {
  CIUIC_HD A operator()(A x, A y) const { using std::pow; return pow(x, y); }
};
// A nan in either operand gives nan (as PyTorch); ties give x.
template <typename A> struct Maximum {
  CIUIC_HD A operator()(A x, A y) const { return (is_nan(x) || x >= y) ? x : y; }
};
template <typename A> struct Minimum {
  CIUIC_HD A operator()(A x, A y) const { return (is_nan(x) || x <= y) ? x : y; }
};

// ---- derivatives (used by the backward functors below) ----
// d/dx of GeluTanh: 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2), t = tanh(u); with
// s = sigmoid(2u): 0.5 (1 + t) = s and 1 - t^2 = 4 s (1 - s), so = s + 2 x s (1 - s) k (1 + 3 c x^2).
template <typename A>
CIUIC_HD A gelu_tanh_grad(A x) {
  using std::exp;
  const A k = A(kSqrt2OverPi), c = A(kGeluCubic);
  const A s = A(1) / (A(1) + exp(A(-2) * k * (x + c * x * x * x)));
  return s + A(2) * x * s * (A(1) - s) * k * (A(1) + A(3) * c * x * x);
}
// d/dx of x Phi(x) = Phi(x) + x phi(x), Phi(x) = 0.5 erfc(-x / sqrt 2).
template <typename A>
CIUIC_HD A gelu_erf_grad(A x) {
  using std::erfc;
  using std::exp;
  const A cdf = A(0.5) * erfc(-x * A(kInvSqrt2));
  const A pdf = exp(A(-0.5) * x * x) * A(kInvSqrt2Pi);
  return cdf + x * pdf;
}
// d/dx of x s(x) = s (1 + x (1 - s)), s = sigmoid(x).
template <typename A>
CIUIC_HD A silu_grad(A x) {
  using std::exp;
  const A s = A(1) / (A(1) + exp(-x));
  return s * (A(1) + x * (A(1) - s));
}

// ---- backward helpers: (g, x) -> grad_x, or (g, y) -> grad_x where named *FromOut ----
// relu: the gradient passes where x > 0 (equivalently y > 0); 0 at a nan (PyTorch passes it
// there). Kept so: the CUDA comparisons build [d > 0] from this functor (op_util.cpp).
template <typename A> struct ReluBackward {
  CIUIC_HD A operator()(A g, A x) const { return x > A(0) ? g : A(0); }
};
template <typename A> struct GeluTanhBackward {
  CIUIC_HD A operator()(A g, A x) const { return g * gelu_tanh_grad(x); }
};
template <typename A> struct GeluErfBackward {
  CIUIC_HD A operator()(A g, A x) const { return g * gelu_erf_grad(x); }
};
template <typename A> struct SiluBackward {
  CIUIC_HD A operator()(A g, A x) const { return g * silu_grad(x); }
};
// sign(x) g, with 0 at x == 0.
template <typename A> struct AbsBackward {
  CIUIC_HD A operator()(A g, A x) const { return x > A(0) ? g : (x < A(0) ? -g : A(0)); }
};
// Passes where lo <= x <= hi (inclusive, as PyTorch).
template <typename A> struct ClampBackward {
  A lo, hi;
  CIUIC_HD A operator()(A g, A x) const { return (x >= lo && x <= hi) ? g : A(0); }
};
// tanh from its output y: g (1 - y^2).
template <typename A> struct TanhBackwardFromOut {
  CIUIC_HD A operator()(A g, A y) const { return g * (A(1) - y * y); }
};
// sigmoid from its output y: g y (1 - y).
template <typename A> struct SigmoidBackwardFromOut {
  CIUIC_HD A operator()(A g, A y) const { return g * y * (A(1) - y); }
};

// ---- dropout ----
// The value of one element once its keep bit is known: dropped elements are exactly 0
// (even for inf / nan inputs), kept ones are x * scale with scale = 1 / (1 - p).
template <typename A>
CIUIC_HD A dropout_value(A x, bool keep, A scale) {
  return keep ? x * scale : A(0);
}

}  // namespace ciuic::kernels::math
