// The dropout mask, shared by the CPU reference and (later) the CUDA kernel so
// both drop exactly the same elements.
//
// Element i of a dropout over n elements, drawn at generator state (seed,
// first = gen.advance(n)), is kept iff philox_uniform(seed, first + i) >= p.
// philox_uniform is k / 2^24 for the integer k = top 24 bits of Philox word 0,
// so the test is done on k against an integer threshold, exactly and without
// any floating-point rounding on either device:
//   k / 2^24 >= p  <=>  k >= ceil(p * 2^24)   (p * 2^24 is exact in f64).
#pragma once

#include <cmath>
#include <cstdint>

#include "ciuic/macros.h"
#include "ciuic/philox.h"

namespace ciuic {

// The threshold for drop probability p in [0, 1]: 0 keeps all, 2^24 drops all.
CIUIC_HD uint32_t dropout_threshold(double p) {
  using std::ceil;
  return static_cast<uint32_t>(ceil(p * 16777216.0));
}

// Whether element `index` (first + i) survives.
CIUIC_HD bool dropout_keep(uint64_t seed, uint64_t index, uint32_t threshold) {
  return (philox4x32_10(index, seed).v[0] >> 8) >= threshold;
}

}  // namespace ciuic
