// Scalar: a number operand of a tensor-scalar op (add(t, 2), t * 0.5, t == 3).
// It remembers whether it was written as a bool, an integer or a floating
// number, because that kind takes part in type promotion as a Python number
// does in PyTorch: an integral tensor times 2.5 gives the default float dtype
// (f32), an integral tensor times 2 stays integral, and a scalar never widens a
// tensor of its own kind (f16 * 0.1 stays f16, i32 + 1 stays i32).
#pragma once

#include <cstdint>
#include <type_traits>

namespace ciuic {

struct Scalar {
  enum class Kind : std::uint8_t { boolean, integral, floating };
  double value = 0;          // the number (exact for integers below 2^53)
  std::int64_t ivalue = 0;   // the exact integer (integral and boolean kinds)
  Kind kind = Kind::floating;

  Scalar(double v) : value(v), kind(Kind::floating) {}  // NOLINT: implicit, as numbers are
  Scalar(float v) : value(v), kind(Kind::floating) {}   // NOLINT
  Scalar(bool v) : value(v ? 1.0 : 0.0), ivalue(v ? 1 : 0), kind(Kind::boolean) {}  // NOLINT
  template <typename I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
  Scalar(I v) : value(static_cast<double>(v)), ivalue(static_cast<std::int64_t>(v)), kind(Kind::integral) {}  // NOLINT

  bool is_floating() const { return kind == Kind::floating; }
  bool is_integral() const { return kind == Kind::integral; }
  bool is_boolean() const { return kind == Kind::boolean; }
};

}  // namespace ciuic
