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

// ---- more unary math and activations (ops.h "unary math") ----
template <typename A> struct Sin {
  CIUIC_HD A operator()(A x) const { using std::sin; return sin(x); }
};
template <typename A> struct Cos {
  CIUIC_HD A operator()(A x) const { using std::cos; return cos(x); }
};
// log(1 + x), exact for tiny x (log(1 + 1e-10) in f64 would lose 6 digits).
template <typename A> struct Log1p {
  CIUIC_HD A operator()(A x) const { using std::log1p; return log1p(x); }
};
// e^x - 1, exact for tiny x.
template <typename A> struct Expm1 {
  CIUIC_HD A operator()(A x) const { using std::expm1; return expm1(x); }
};
template <typename A> struct Erf {
  CIUIC_HD A operator()(A x) const { using std::erf; return erf(x); }
};
template <typename A> struct Log2 {
  CIUIC_HD A operator()(A x) const { using std::log2; return log2(x); }
};
template <typename A> struct Log10 {
  CIUIC_HD A operator()(A x) const { using std::log10; return log10(x); }
};
template <typename A> struct Reciprocal {
  CIUIC_HD A operator()(A x) const { return A(1) / x; }
};
template <typename A> struct Square {
  CIUIC_HD A operator()(A x) const { return x * x; }
};
// -1, 0, 1; a signed zero stays itself and nan stays nan (NumPy's rule and the README's
// "NaN propagates"; PyTorch gives 0 for nan, an acknowledged bug, pytorch#41245).
template <typename A> struct Sign {
  CIUIC_HD A operator()(A x) const { return x > A(0) ? A(1) : (x < A(0) ? A(-1) : x); }
};
template <typename A> struct Floor {
  CIUIC_HD A operator()(A x) const { using std::floor; return floor(x); }
};
template <typename A> struct Ceil {
  CIUIC_HD A operator()(A x) const { using std::ceil; return ceil(x); }
};
// Round half to even (torch.round, NumPy's round): rint under the default rounding
// mode (round to nearest, ties to even), which neither device changes.
template <typename A> struct Round {
  CIUIC_HD A operator()(A x) const { using std::rint; return rint(x); }
};
template <typename A> struct Trunc {
  CIUIC_HD A operator()(A x) const { using std::trunc; return trunc(x); }
};
// x > 0 ? x : slope x (nan stays nan).
template <typename A> struct LeakyRelu {
  A slope;
  CIUIC_HD A operator()(A x) const { return x > A(0) ? x : x * slope; }
};
// x > 0 ? x : alpha (e^x - 1), with expm1 for accuracy near 0.
template <typename A> struct Elu {
  A alpha;
  CIUIC_HD A operator()(A x) const { using std::expm1; return x > A(0) ? x : alpha * expm1(x); }
};
// PyTorch's softplus: x beta > threshold ? x : log1p(e^(beta x)) / beta.
template <typename A> struct Softplus {
  A beta, threshold;
  CIUIC_HD A operator()(A x) const {
    using std::exp;
    using std::log1p;
    return x * beta > threshold ? x : log1p(exp(x * beta)) / beta;
  }
};
// log sigmoid(x) = min(x, 0) - log1p(e^-|x|): no overflow for either sign.
template <typename A> struct LogSigmoid {
  CIUIC_HD A operator()(A x) const {
    using std::exp;
    using std::fabs;
    using std::log1p;
    if (is_nan(x)) return x;
    return (x < A(0) ? x : A(0)) - log1p(exp(-fabs(x)));
  }
};
// x tanh(softplus(x)) (softplus with beta 1, threshold 20, as PyTorch's mish).
template <typename A> struct Mish {
  CIUIC_HD A operator()(A x) const {
    using std::tanh;
    return x * tanh(Softplus<A>{A(1), A(20)}(x));
  }
};

// Python's %: the result has the divisor's sign (torch.remainder). Floats: fmod, then
// moved into the divisor's sign range; x % 0 is nan. Integers: y == 0 gives 0 here
// (the CPU op raises first); INT_MIN % -1 is 0 (no trap).
template <typename A> struct Remainder {
  CIUIC_HD A operator()(A x, A y) const {
    if constexpr (std::is_integral_v<A>) {
      if (y == A(0)) return A(0);
      if constexpr (std::is_signed_v<A>) {
        if (y == A(-1)) return A(0);
      }
      A r = static_cast<A>(x % y);
      if constexpr (std::is_signed_v<A>) {
        if (r != A(0) && ((r < A(0)) != (y < A(0)))) r = static_cast<A>(r + y);
      }
      return r;
    } else {
      using std::fmod;
      A r = fmod(x, y);
      if (r != A(0) && ((r < A(0)) != (y < A(0)))) r += y;
      return r;
    }
  }
};
// C's fmod: the result has the dividend's sign (torch.fmod). Integers as Remainder.
template <typename A> struct Fmod {
  CIUIC_HD A operator()(A x, A y) const {
    if constexpr (std::is_integral_v<A>) {
      if (y == A(0)) return A(0);
      if constexpr (std::is_signed_v<A>) {
        if (y == A(-1)) return A(0);
      }
      return static_cast<A>(x % y);
    } else {
      using std::fmod;
      return fmod(x, y);
    }
  }
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

// ---- backward helpers of the activations above: (g, x) -> grad_x ----
template <typename A> struct LeakyReluBackward {
  A slope;
  CIUIC_HD A operator()(A g, A x) const { return x > A(0) ? g : g * slope; }
};
template <typename A> struct EluBackward {
  A alpha;
  CIUIC_HD A operator()(A g, A x) const { using std::exp; return x > A(0) ? g : g * alpha * exp(x); }
};
// Where the forward is x (beta x > threshold) the derivative is 1, else sigmoid(beta x).
template <typename A> struct SoftplusBackward {
  A beta, threshold;
  CIUIC_HD A operator()(A g, A x) const {
    using std::exp;
    return x * beta > threshold ? g : g / (A(1) + exp(-x * beta));
  }
};
// d/dx log sigmoid(x) = sigmoid(-x) = 1 / (1 + e^x) (e^x = inf gives 0).
template <typename A> struct LogSigmoidBackward {
  CIUIC_HD A operator()(A g, A x) const { using std::exp; return g / (A(1) + exp(x)); }
};
// 0 where x <= lo or x >= hi (exclusive, as PyTorch's hardtanh_backward), else g.
template <typename A> struct HardtanhBackward {
  A lo, hi;
  CIUIC_HD A operator()(A g, A x) const { return (x <= lo || x >= hi) ? A(0) : g; }
};
// d/dx x tanh(sp(x)) = t + x sigmoid(x) (1 - t^2), t = tanh(softplus(x)).
template <typename A> struct MishBackward {
  CIUIC_HD A operator()(A g, A x) const {
    using std::exp;
    using std::tanh;
    const A t = tanh(Softplus<A>{A(1), A(20)}(x));
    const A s = A(1) / (A(1) + exp(-x));
    return g * (t + x * s * (A(1) - t * t));
  }
};
// d/dx erf(x) = 2 / sqrt(pi) e^(-x^2).
template <typename A> struct ErfBackward {
  CIUIC_HD A operator()(A g, A x) const { using std::exp; return g * A(1.1283791670955126) * exp(-x * x); }
};
// d/dx log1p(x) = 1 / (1 + x).
template <typename A> struct Log1pBackward {
  CIUIC_HD A operator()(A g, A x) const { return g / (A(1) + x); }
};

// ---- dropout ----
// The value of one element once its keep bit is known: dropped elements are exactly 0
// (even for inf / nan inputs), kept ones are x * scale with scale = 1 / (1 - p).
template <typename A>
CIUIC_HD A dropout_value(A x, bool keep, A scale) {
  return keep ? x * scale : A(0);
}

}  // namespace ciuic::kernels::math
