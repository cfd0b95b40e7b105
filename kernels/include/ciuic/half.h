// Storage types for IEEE half (f16) and bfloat16, with round-to-nearest-even
// conversion. On the host it is done by bit manipulation (a CPU-only build needs
// no CUDA headers; tested exhaustively against the definition). In device code
// (__CUDA_ARCH__) the same conversions are single hardware instructions
// (cvt.rn.f16.f32, cvt.f32.f16, and cvt.rn.bf16.f32 from sm_80): the software path
// compiles to ~150 PTX instructions and 25 branches per rounding. Both round to
// nearest even, so host and device results are identical for every non-nan value.
//
// Invariants: nan stays nan (quiet; the device gives the canonical nan 0x7fff where
// the host keeps the top payload bits), +-inf stays +-inf, f32 values beyond the
// target range round to +-inf, subnormals are produced and read exactly.
#pragma once

#include <cstdint>
#include <cstring>

#include "ciuic/macros.h"

namespace ciuic {

CIUIC_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

CIUIC_HD float f32_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// f32 -> f16 bits, round to nearest even (the host path; the device one is below).
CIUIC_HD uint16_t f32_to_f16_bits_soft(float f) {
  uint32_t x = f32_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // inf or nan
    return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u | ((absx >> 13) & 0x3ffu) : 0u));
  }
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504 -> inf
  if (absx < 0x38800000u) {  // result is subnormal or zero: |f| < 2^-14
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25 rounds to 0
    uint32_t exp = absx >> 23;                   // biased f32 exponent, 102..112
    uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exp;                 // 14..24: aligns to 2^-24 units
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  // normal: rebias exponent 127 -> 15, keep 10 mantissa bits, RNE on the 13 dropped.
  uint32_t r = absx - 0x38000000u;               // exponent rebiased, still f32 layout
  uint32_t q = r >> 13;
  uint32_t rem = r & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;  // a carry into the exponent is correct
  return static_cast<uint16_t>(sign | q);
}

CIUIC_HD float f16_bits_to_f32_soft(uint16_t h) {
  uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return f32_from_bits(sign | 0x7f800000u | (mant << 13));  // inf / nan
  if (exp == 0) {
    if (mant == 0) return f32_from_bits(sign);
    // subnormal: value = mant * 2^-24, exact in f32
    float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

// f32 -> bf16 bits, round to nearest even; nan stays a quiet nan.
CIUIC_HD uint16_t f32_to_bf16_bits_soft(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  uint32_t lsb = (x >> 16) & 1u;
  x += 0x7fffu + lsb;  // overflow of the largest finite values correctly yields inf
  return static_cast<uint16_t>(x >> 16);
}

// The conversions the storage types use: hardware on the device, the bit
// manipulation above on the host.
CIUIC_HD uint16_t f32_to_f16_bits(float f) {
#if defined(__CUDA_ARCH__)
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
#else
  return f32_to_f16_bits_soft(f);
#endif
}

CIUIC_HD float f16_bits_to_f32(uint16_t h) {
#if defined(__CUDA_ARCH__)
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(static_cast<unsigned short>(h)));
  return f;
#else
  return f16_bits_to_f32_soft(h);
#endif
}

CIUIC_HD uint16_t f32_to_bf16_bits(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned short b;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(b) : "f"(f));
  return b;
#else
  return f32_to_bf16_bits_soft(f);
#endif
}

CIUIC_HD float bf16_bits_to_f32(uint16_t b) { return f32_from_bits(static_cast<uint32_t>(b) << 16); }

// 2-byte storage types. Arithmetic happens in float: convert, compute, convert back.
struct Half {
  uint16_t bits = 0;
  Half() = default;
  CIUIC_HD explicit Half(float f) : bits(f32_to_f16_bits(f)) {}
  CIUIC_HD static Half from_bits(uint16_t b) { Half h; h.bits = b; return h; }
  CIUIC_HD operator float() const { return f16_bits_to_f32(bits); }
};

struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  CIUIC_HD explicit BFloat16(float f) : bits(f32_to_bf16_bits(f)) {}
  CIUIC_HD static BFloat16 from_bits(uint16_t b) { BFloat16 h; h.bits = b; return h; }
  CIUIC_HD operator float() const { return bf16_bits_to_f32(bits); }
};

static_assert(sizeof(Half) == 2 && sizeof(BFloat16) == 2, "2-byte storage types");

}  // namespace ciuic
