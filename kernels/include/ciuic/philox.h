// Philox4x32-10 (Salmon et al., SC'11): a counter-based generator. The random
// numbers of element i are a pure function of (seed, offset + i), so the CPU and
// the GPU produce the same tensor for the same seed, and a dropout mask can be
// replayed exactly from its (seed, offset).
#pragma once

#include <cmath>
#include <cstdint>

#include "ciuic/macros.h"

namespace ciuic {

struct Philox4 {
  uint32_t v[4];
};

CIUIC_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// counter: 128 bits (c0 = low word of the element counter ... c3), key: the 64-bit seed.
CIUIC_HD Philox4 philox4x32_10(uint64_t counter, uint64_t seed) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform in [0, 1): the top 24 bits, so every value is exactly representable in f32.
CIUIC_HD float philox_uniform(uint64_t seed, uint64_t index) {
  return static_cast<float>(philox4x32_10(index, seed).v[0] >> 8) * (1.0f / 16777216.0f);
}

// Standard normal by Box-Muller on the first two words; u1 in (0, 1] avoids log(0).
CIUIC_HD float philox_normal(uint64_t seed, uint64_t index) {
  Philox4 r = philox4x32_10(index, seed);
  float u1 = (static_cast<float>(r.v[0] >> 8) + 1.0f) * (1.0f / 16777216.0f);
  float u2 = static_cast<float>(r.v[1] >> 8) * (1.0f / 16777216.0f);
  // Computed in f64 on host and device alike, then rounded: the two agree to the last f32 bit
  // except in the rare case where a 1-ulp f64 difference crosses an f32 rounding boundary.
  using std::sqrt; using std::log; using std::cos;
  return static_cast<float>(sqrt(-2.0 * log(static_cast<double>(u1))) *
                            cos(6.283185307179586 * static_cast<double>(u2)));
}

// a + scale * u with the product and the sum each rounded on its own, on host and
// device alike: uniform(lo, hi) is affine_rn(lo, hi - lo, U), normal(mean, std) is
// affine_rn(mean, std, N). ptxas would otherwise contract the expression into an fma
// on the GPU (as g++ does on an FMA host without -ffp-contract=off, which
// meson.build passes), and the two devices would differ in the last bit.
CIUIC_HD double affine_rn(double a, double scale, double u) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, __dmul_rn(scale, u));
#else
  return a + scale * u;
#endif
}

}  // namespace ciuic
