// The counter-based generator state: a seed and an offset. Each random op takes
// a range [offset, offset + n) of Philox counters and advances the offset, so a
// (seed, offset) pair names its numbers exactly on any device and can be
// replayed (dropout in recomputed checkpoint segments).
#pragma once

#include <cstdint>

namespace ciuic {

struct Generator {
  std::uint64_t seed = 0x5eed;
  std::uint64_t offset = 0;
  // Reserves n counters; returns the first.
  std::uint64_t advance(std::uint64_t n) {
    std::uint64_t first = offset;
    offset += n;
    return first;
  }
};

// The process-wide generator used when an op is not given one.
Generator& default_generator();
// Resets the default generator to (seed, offset 0).
void manual_seed(std::uint64_t seed);

}  // namespace ciuic
