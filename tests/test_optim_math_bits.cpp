// [kernels][optim] The CPU's optimizer and clipping math gives the bits the GPU's
// does. The GPU evaluates kernels/optim_math.h with explicitly rounded intrinsics
// (__fmul_rn, __fadd_rn, __fmaf_rn: never contracted); the host must evaluate the
// same expressions with one rounding per operation as well. The references below
// store every intermediate in a volatile float, which no compiler can fuse, so
// they are the GPU's arithmetic. A host build that contracts a * b + c into an FMA
// (g++ does for C++ with -mfma or on aarch64 unless -ffp-contract=off) fails here.
// This file is also built into ciuic_fma_tests with FMA code generation enabled
// (tests/meson.build), where that contraction would otherwise happen.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>

#include "ciuic/kernels/optim_math.h"
#include "test_util.h"

using namespace ciuic::kernels;

namespace {

std::uint32_t bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// a * b + c with one rounding (what fma_rn is on both devices)
float ref_fma(float a, float b, float c) { return std::fma(a, b, c); }

void ref_adamw(float& p, float& m, float& v, float g, const AdamWConsts& c) {
  volatile float t1, t2, t3, t4, t5;
  t1 = p * c.decay;
  p = t1;
  t2 = c.one_minus_beta1 * g;
  m = ref_fma(c.beta1, m, t2);
  t3 = g * g;
  t4 = c.one_minus_beta2 * t3;
  v = ref_fma(c.beta2, v, t4);
  t5 = std::sqrt(v);
  volatile float s = t5 * c.inv_sqrt_bc2;
  volatile float denom = s + c.eps;
  volatile float q = m / denom;
  volatile float step = c.step_size * q;
  volatile float out = p - step;
  p = out;
}

void ref_sgd(float& p, float& buf, float g, const SgdConsts& c, bool first) {
  if (c.has_weight_decay) g = ref_fma(c.weight_decay, p, g);
  float d = g;
  if (c.has_momentum) {
    volatile float dg = c.one_minus_dampening * g;
    buf = first ? g : ref_fma(c.momentum, buf, dg);
    d = c.nesterov ? ref_fma(c.momentum, buf, g) : buf;
  }
  volatile float step = c.lr * d;
  volatile float out = p - step;
  p = out;
}

float ref_clip(float norm, float max_norm, float eps) {
  volatile float den = norm + eps;
  volatile float q = max_norm / den;
  return q > 1.0f ? 1.0f : q;
}

}  // namespace

TEST_CASE("host optimizer math rounds every operation like the GPU's intrinsics (no contraction)",
          "[kernels][optim]") {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f), e(-20.0f, 2.0f);
  auto draw = [&] { return u(rng) * std::exp2(e(rng)); };  // many magnitudes: rounding differences show
  AdamWHyper h;
  h.lr = 3e-4;
  h.weight_decay = 0.1;
  SgdHyper hs;
  hs.lr = 0.05;
  hs.momentum = 0.9;
  hs.dampening = 0.1;
  hs.weight_decay = 1e-3;
  SgdHyper hn = hs;
  hn.dampening = 0;
  hn.nesterov = true;
  std::size_t bad_adamw = 0, bad_sgd = 0, bad_clip = 0;
  for (int i = 0; i < 200000; ++i) {
    const AdamWConsts c = adamw_consts(h, 1 + i % 7);
    float p = draw(), m = draw(), v = std::fabs(draw()), g = draw();
    float rp = p, rm = m, rv = v;
    adamw_update(p, m, v, g, c);
    ref_adamw(rp, rm, rv, g, c);
    bad_adamw += bits(p) != bits(rp) || bits(m) != bits(rm) || bits(v) != bits(rv);
    for (const SgdHyper* sh : {&hs, &hn}) {
      const SgdConsts sc = sgd_consts(*sh);
      float sp = draw(), sb = draw(), sg = draw();
      float rsp = sp, rsb = sb;
      sgd_update(sp, sb, sg, sc, i % 5 == 0);
      ref_sgd(rsp, rsb, sg, sc, i % 5 == 0);
      bad_sgd += bits(sp) != bits(rsp) || bits(sb) != bits(rsb);
    }
    const float n = std::fabs(draw()) * 4;
    bad_clip += bits(clip_coefficient_value(n, 1.0f, 1e-6f)) != bits(ref_clip(n, 1.0f, 1e-6f));
  }
  CHECK(bad_adamw == 0);
  CHECK(bad_sgd == 0);
  CHECK(bad_clip == 0);
}

TEST_CASE("unscale_element flags a value that overflows only in the stored dtype", "[kernels][optim]") {
  using ciuic::BFloat16;
  using ciuic::Half;
  // 40000 * 2 = 80000: finite in f32 and bf16, inf in f16 (max 65504).
  Half h;
  CHECK_FALSE(unscale_element(40000.0f, 2.0f, h));
  CHECK(std::isinf(static_cast<float>(h)));
  BFloat16 b;
  CHECK(unscale_element(40000.0f, 2.0f, b));
  CHECK(static_cast<float>(b) == 79872.0f);  // bf16 rounding of 80000 (spacing 512 there)
  float f;
  CHECK(unscale_element(40000.0f, 2.0f, f));
  CHECK(f == 80000.0f);
  // 65519 rounds down to 65504 in f16 (finite); 65520 rounds to inf.
  CHECK(unscale_element(65519.0f, 1.0f, h));
  CHECK(static_cast<float>(h) == 65504.0f);
  CHECK_FALSE(unscale_element(65520.0f, 1.0f, h));
  // inf and nan inputs, and an f32 overflow of the product
  CHECK_FALSE(unscale_element(INFINITY, 0.5f, f));
  CHECK_FALSE(unscale_element(NAN, 0.5f, b));
  CHECK_FALSE(unscale_element(3e38f, 4.0f, f));
  CHECK(unscale_element(-1.5f, 0.25f, h));
  CHECK(static_cast<float>(h) == -0.375f);
}
