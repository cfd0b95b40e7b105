// Device-side dtype dispatch: maps a DType to the CUDA storage type and loads
// and stores through float/double. f16/bf16 use ciuic::Half/BFloat16 (bitwise
// identical to the host conversions).
#pragma once

#include "ciuic/dtype.h"
#include "ciuic/error.h"
#include "ciuic/float_to_int.h"

namespace ciuic::kernels::detail {

template <typename T>
__device__ __forceinline__ double load_as_double(const T* p) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) return static_cast<float>(*p);
  else return static_cast<double>(*p);
}

template <typename T>
__device__ __forceinline__ void store_from_double(T* p, double v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) *p = T(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, bool>) *p = v != 0.0;
  else if constexpr (std::is_integral_v<T>) *p = float_to_int<T>(v);  // the CPU's rule: saturate, NaN -> 0
  else *p = static_cast<T>(v);
}

// Calls f(T{}) for the storage type of t; unknown dtypes throw DTypeError.
template <typename F>
void dispatch(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::f16: f(Half{}); return;
    case DType::bf16: f(BFloat16{}); return;
    case DType::i32: f(int32_t{}); return;
    case DType::i64: f(int64_t{}); return;
    case DType::u8: f(uint8_t{}); return;
    case DType::boolean: f(bool{}); return;
  }
  ::ciuic::detail::fail<DTypeError>(op, "unknown dtype");
}

inline unsigned grid_for(std::int64_t n, unsigned block) {
  std::int64_t g = (n + block - 1) / block;
  return static_cast<unsigned>(g > 65535LL * 32 ? 65535LL * 32 : g);  // grid-stride loops cover the rest
}

}  // namespace ciuic::kernels::detail
