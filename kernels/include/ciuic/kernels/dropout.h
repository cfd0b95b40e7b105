// Dropout over a contiguous buffer of n elements, bit-identical to the CPU rule
// (ciuic/dropout_mask.h): element i is kept iff philox_uniform(seed, first + i) >= p,
// tested exactly as dropout_keep(seed, first + i, dropout_threshold(p)). Kept
// elements become x * scale with scale = 1 / (1 - p) computed in f64 and rounded to
// the arithmetic type (f32 for f32/f16/bf16, f64 for f64); dropped ones exactly 0.
// p == 1 drops everything (scale 0). No mask is stored: the backward recomputes it
// from (seed, first), so forward and backward must be given the same (seed, first, p).
//
// The caller takes first = gen.advance(n) from the generator, as the CPU op does.
// out may alias x. Launchers validate (p in [0, 1], floating dtype), return at once
// for n == 0, launch on `stream` and check the launch.
#pragma once

#include <cstdint>

#include "ciuic/dtype.h"

namespace ciuic::kernels {

// out[i] = keep(i) ? x[i] * scale : 0.
void dropout_forward(void* out, const void* x, DType dtype, std::int64_t n, double p, std::uint64_t seed,
                     std::uint64_t first, void* stream);

// grad_x[i] = keep(i) ? grad_out[i] * scale : 0 (the same mask as the forward).
void dropout_backward(void* grad_x, const void* grad_out, DType dtype, std::int64_t n, double p, std::uint64_t seed,
                      std::uint64_t first, void* stream);

}  // namespace ciuic::kernels
