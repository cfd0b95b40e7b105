// Per-element optimizer update rules, shared by the fused CUDA optimizers
// (kernels/src/optim.cu) and the CPU optimizers and tests: one definition of the
// math, compiled for both sides.
//
// Rounding: every f32 operation below goes through fmul_rn / fadd_rn / fma_rn /
// fdiv_rn / fsqrt_rn, which are the IEEE round-to-nearest intrinsics on the
// device (never contracted into FMAs by nvcc) and the plain operators / std::fma
// / std::sqrt on the host. -std=c++20 does NOT stop g++ from contracting a * b + c
// into an FMA on an FMA host (-mfma, -march=native, aarch64): meson.build passes
// -ffp-contract=off to every host compilation, and tests/test_optim_math_bits.cpp,
// also built with FMA code generation as ciuic_fma_tests, checks it. So a CPU step
// and a GPU step give bit-identical f32 results for the same inputs, which is what
// the [cuda] optimizer tests check. Code that includes this header outside ciuic's
// build must use -ffp-contract=off as well to get the same bits.
//
// Hyperparameters arrive as doubles; the derived per-step constants (bias
// corrections, decay factors) are computed once on the host in double and rounded
// to f32 (adamw_consts / sgd_consts), so both sides also share those values.
#pragma once

#include <cmath>
#include <cstdint>

#include "ciuic/error.h"
#include "ciuic/half.h"
#include "ciuic/macros.h"

namespace ciuic::kernels {

// ---- IEEE round-to-nearest f32 arithmetic, identical on host and device ----
CIUIC_HD float fmul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
CIUIC_HD float fadd_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
CIUIC_HD float fsub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
CIUIC_HD float fma_rn(float a, float b, float c) {  // a * b + c, one rounding
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
CIUIC_HD float fdiv_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
CIUIC_HD float fsqrt_rn(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}

// Gradient as the update sees it: g * scale (scale = inverse loss scale times a
// clip coefficient, 1 when neither applies; x * 1 == x exactly).
CIUIC_HD float scaled_grad(float g, float scale) { return fmul_rn(g, scale); }

// ---------------------------------------------------------------------------
// AdamW (Loshchilov & Hutter): decoupled weight decay, bias-corrected moments.
//   p <- p * (1 - lr * wd)
//   m <- b1 * m + (1 - b1) * g
//   v <- b2 * v + (1 - b2) * g^2
//   p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// t is the 1-based step count *after* this update (the first call passes 1).
struct AdamWHyper {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

struct AdamWConsts {
  float beta1, beta2;
  float one_minus_beta1, one_minus_beta2;
  float eps;
  float step_size;     // lr / (1 - beta1^t)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - beta2^t)
  float decay;         // 1 - lr * weight_decay
};

// Rounded f64 multiply, never fused with a neighbouring add (host and device alike).
CIUIC_HD double dmul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// b^t for t >= 0 by binary powering with rounded multiplies: the same bits on the
// host and the device (std::pow and CUDA's pow may differ in the last place), so
// bias corrections computed on either side agree.
CIUIC_HD double pow_steps(double b, std::int64_t t) {
  double r = 1.0;
  while (t > 0) {
    if (t & 1) r = dmul_rn(r, b);
    b = dmul_rn(b, b);
    t >>= 1;
  }
  return r;
}

// The f32 constants for step t (>= 1), unchecked: the device computes them from a
// step count it keeps itself (fused_adamw with device steps); adamw_consts checks
// first. f64 division and sqrt are correctly rounded on both sides.
CIUIC_HD AdamWConsts adamw_consts_at(const AdamWHyper& h, std::int64_t step) {
  const double bc1 = 1.0 - pow_steps(h.beta1, step);
  const double bc2 = 1.0 - pow_steps(h.beta2, step);
  AdamWConsts c{};
  c.beta1 = static_cast<float>(h.beta1);
  c.beta2 = static_cast<float>(h.beta2);
  c.one_minus_beta1 = static_cast<float>(1.0 - h.beta1);
  c.one_minus_beta2 = static_cast<float>(1.0 - h.beta2);
  c.eps = static_cast<float>(h.eps);
  c.step_size = static_cast<float>(h.lr / bc1);
#if defined(__CUDA_ARCH__)
  const double root = ::sqrt(bc2);
#else
  const double root = std::sqrt(bc2);
#endif
  c.inv_sqrt_bc2 = static_cast<float>(1.0 / root);
  c.decay = static_cast<float>(1.0 - dmul_rn(h.lr, h.weight_decay));
  return c;
}

// Host-side: validates h and step and derives the f32 constants for step t.
inline AdamWConsts adamw_consts(const AdamWHyper& h, std::int64_t step) {
  CIUIC_CHECK(step >= 1, ValueError, "adamw", "step is ", step, "; expected >= 1 (the count after this update)");
  CIUIC_CHECK(h.lr >= 0.0, ValueError, "adamw", "lr is ", h.lr, "; expected >= 0");
  CIUIC_CHECK(h.beta1 >= 0.0 && h.beta1 < 1.0, ValueError, "adamw", "beta1 is ", h.beta1, "; expected in [0, 1)");
  CIUIC_CHECK(h.beta2 >= 0.0 && h.beta2 < 1.0, ValueError, "adamw", "beta2 is ", h.beta2, "; expected in [0, 1)");
  CIUIC_CHECK(h.eps > 0.0, ValueError, "adamw", "eps is ", h.eps, "; expected > 0");
  CIUIC_CHECK(h.weight_decay >= 0.0, ValueError, "adamw", "weight_decay is ", h.weight_decay, "; expected >= 0");
  return adamw_consts_at(h, step);
}

// One element: p (f32 master weight), m, v (f32 moments) updated in place from the
// already-scaled gradient g.
CIUIC_HD void adamw_update(float& p, float& m, float& v, float g, const AdamWConsts& c) {
  p = fmul_rn(p, c.decay);
  m = fma_rn(c.beta1, m, fmul_rn(c.one_minus_beta1, g));
  v = fma_rn(c.beta2, v, fmul_rn(c.one_minus_beta2, fmul_rn(g, g)));
  const float denom = fadd_rn(fmul_rn(fsqrt_rn(v), c.inv_sqrt_bc2), c.eps);
  p = fsub_rn(p, fmul_rn(c.step_size, fdiv_rn(m, denom)));
}

// ---------------------------------------------------------------------------
// SGD with momentum, dampening, nesterov and (coupled, L2) weight decay, with the
// conventions of the common reference implementation:
//   g <- g + wd * p
//   buf <- g                                  (first step: buffer initialised)
//   buf <- momentum * buf + (1 - dampening) * g  (later steps)
//   d <- nesterov ? g + momentum * buf : buf   (d = g when momentum == 0)
//   p <- p - lr * d
struct SgdHyper {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

struct SgdConsts {
  float lr;
  float momentum;
  float one_minus_dampening;
  float weight_decay;
  bool nesterov;
  bool has_momentum;      // momentum != 0: a buffer exists and is updated
  bool has_weight_decay;  // weight_decay != 0
};

inline SgdConsts sgd_consts(const SgdHyper& h) {
  CIUIC_CHECK(h.lr >= 0.0, ValueError, "sgd", "lr is ", h.lr, "; expected >= 0");
  CIUIC_CHECK(h.momentum >= 0.0, ValueError, "sgd", "momentum is ", h.momentum, "; expected >= 0");
  CIUIC_CHECK(h.weight_decay >= 0.0, ValueError, "sgd", "weight_decay is ", h.weight_decay, "; expected >= 0");
  CIUIC_CHECK(!h.nesterov || (h.momentum > 0.0 && h.dampening == 0.0), ValueError, "sgd",
              "nesterov with momentum ", h.momentum, " and dampening ", h.dampening,
              "; expected momentum > 0 and dampening == 0");
  SgdConsts c{};
  c.lr = static_cast<float>(h.lr);
  c.momentum = static_cast<float>(h.momentum);
  c.one_minus_dampening = static_cast<float>(1.0 - h.dampening);
  c.weight_decay = static_cast<float>(h.weight_decay);
  c.nesterov = h.nesterov;
  c.has_momentum = h.momentum != 0.0;
  c.has_weight_decay = h.weight_decay != 0.0;
  return c;
}

// One element. buf is ignored when !c.has_momentum (may then be any value).
// first_step: the momentum buffer holds garbage and is initialised to g.
CIUIC_HD void sgd_update(float& p, float& buf, float g, const SgdConsts& c, bool first_step) {
  if (c.has_weight_decay) g = fma_rn(c.weight_decay, p, g);
  float d = g;
  if (c.has_momentum) {
    buf = first_step ? g : fma_rn(c.momentum, buf, fmul_rn(c.one_minus_dampening, g));
    d = c.nesterov ? fma_rn(c.momentum, buf, g) : buf;
  }
  p = fsub_rn(p, fmul_rn(c.lr, d));
}

// ---------------------------------------------------------------------------
// Gradient clipping: the factor every gradient is multiplied by so the global norm
// is at most max_norm. NaN norms give a NaN coefficient (the step must not silently
// succeed); an infinite norm gives 0.
CIUIC_HD float clip_coefficient_value(float total_norm, float max_norm, float eps) {
  const float c = fdiv_rn(max_norm, fadd_rn(total_norm, eps));
  return c > 1.0f ? 1.0f : c;
}

// clip_grad_norm_'s factor: clip_coefficient_value for a finite total norm, 1 for
// an infinite or nan one (such gradients are left as they are: the loss scaler
// skips that step, or error_if_nonfinite raises). max_norm >= 0.
CIUIC_HD float clip_grad_coefficient(float total_norm, float max_norm, float eps) {
  if ((f32_bits(total_norm) & 0x7f800000u) == 0x7f800000u) return 1.0f;
  return clip_coefficient_value(total_norm, max_norm, eps);
}

// Max of |values| that lets a NaN win (unlike fmaxf, which drops it).
CIUIC_HD float nan_propagating_max(float a, float b) {
  if (a != a) return a;
  if (b != b) return b;
  return a > b ? a : b;
}

// True for finite values (neither inf nor NaN): the exponent bits are not all ones.
// Bit test, so no fast-math setting can fold it away.
CIUIC_HD bool is_finite_f32(float x) { return (f32_bits(x) & 0x7f800000u) != 0x7f800000u; }

// One element of the unscale pass: out = in * inv_scale, rounded to Out (float,
// Half or BFloat16); returns whether the value *stored* is finite. The check comes
// after the conversion: a finite f32 product above 65504 becomes inf in f16 and
// must raise found_inf like any other overflow. CPU and GPU both call this.
template <typename Out>
CIUIC_HD bool unscale_element(float in, float inv_scale, Out& out) {
  out = Out(scaled_grad(in, inv_scale));
  return is_finite_f32(static_cast<float>(out));
}

}  // namespace ciuic::kernels
