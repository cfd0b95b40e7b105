// The one rule for converting a floating value to an integer type, on the host and
// on the GPU (both call this function):
//   - truncate toward zero (as C++ and CUDA's cvt.rzi do);
//   - values beyond the type's range saturate to its min / max (1e30 -> i32 max,
//     -1e30 -> i32 min, -5 -> u8 0, 300 -> u8 255);
//   - NaN converts to 0.
// This is what the CUDA hardware's saturating cvt instructions give, and it replaces
// what a plain static_cast does there, which is undefined behaviour in C++.
// bool is not an integer here: the callers convert to bool as "!= 0" (NaN -> true).
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "ciuic/macros.h"

namespace ciuic {

template <typename I, typename F>
CIUIC_HD I float_to_int(F v) {
  static_assert(std::is_integral_v<I> && !std::is_same_v<I, bool>, "float_to_int: integer targets only");
  static_assert(std::is_floating_point_v<F>, "float_to_int: float or double sources only");
  // 2^digits is exactly representable in F: the first value above the range (unsigned:
  // max + 1; signed: -min). -2^digits (signed) is the type's min, also exact.
  constexpr F upper = F(2) * F(std::numeric_limits<I>::max() / 2 + 1);
  constexpr F lower = std::is_signed_v<I> ? -upper : F(0);
  if (v != v) return I(0);                                          // NaN
  if (v >= upper) return std::numeric_limits<I>::max();
  if (v <= lower) return std::numeric_limits<I>::min();             // also the exact min itself
  return static_cast<I>(v);                                         // in (lower, upper): truncates in range
}

}  // namespace ciuic
