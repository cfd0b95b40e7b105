// Element types. f64 exists for the CPU reference and gradcheck; f16/bf16 are
// stored as 2-byte types and computed in f32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <type_traits>

#include "ciuic/error.h"
#include "ciuic/float_to_int.h"
#include "ciuic/half.h"

namespace ciuic {

enum class DType : uint8_t { f32, f16, bf16, f64, i32, i64, u8, boolean };

constexpr std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::f16: case DType::bf16: return 2;
    case DType::u8: case DType::boolean: return 1;
  }
  return 0;
}

constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
    case DType::boolean: return "bool";
  }
  return "?";
}

constexpr bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64;
}
constexpr bool is_integral(DType t) { return !is_floating(t); }

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

// C++ type <-> DType.
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<Half> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<BFloat16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::boolean; };

// The type arithmetic happens in: f32 for the 2-byte floats, itself otherwise.
template <typename T> struct acc_type { using type = T; };
template <> struct acc_type<Half> { using type = float; };
template <> struct acc_type<BFloat16> { using type = float; };
template <typename T> using acc_t = typename acc_type<T>::type;

// Calls f(T{}) with the C++ type of dtype t. Usage:
//   dispatch_dtype(t, "add", [&](auto tag) { using T = decltype(tag); ... });
template <typename F>
decltype(auto) dispatch_dtype(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::f16: return f(Half{});
    case DType::bf16: return f(BFloat16{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8: return f(uint8_t{});
    case DType::boolean: return f(bool{});
  }
  detail::fail<DTypeError>(op, "unknown dtype");
}

// Same, restricted to the floating types; anything else is a DTypeError naming op.
template <typename F>
decltype(auto) dispatch_floating(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::f16: return f(Half{});
    case DType::bf16: return f(BFloat16{});
    default: break;
  }
  detail::fail<DTypeError>(op, "got dtype ", dtype_name(t), "; expected a floating dtype (f32, f64, f16, bf16)");
}

// Value conversion between any two element types, the same on host and device (the
// GPU's copy kernel calls this function), so casts agree bit for bit on both:
// integer -> integer is C++'s static_cast (wraps modulo 2^bits); integer -> float
// rounds once to nearest; floating -> integer saturates and maps NaN to 0
// (float_to_int); f16/bf16 go through f32; anything -> bool is "!= 0 after
// rounding to f32".
template <typename To, typename From>
CIUIC_HD To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, Half> || std::is_same_v<To, BFloat16>) {
    // From f64 this rounds twice (f64 -> f32 -> 2 bytes); it can differ from a direct
    // rounding only on exact ties of the dropped bits, which the f64 tests do not rely on.
    return To(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, bool>) {
    return static_cast<float>(v) != 0.0f;
  } else if constexpr (std::is_same_v<From, Half> || std::is_same_v<From, BFloat16>) {
    return convert<To>(static_cast<float>(v));
  } else if constexpr (std::is_integral_v<To> && std::is_floating_point_v<From>) {
    return float_to_int<To>(v);  // saturates, NaN -> 0 (ciuic/float_to_int.h), as on the GPU
  } else {
    return static_cast<To>(v);
  }
}

}  // namespace ciuic
