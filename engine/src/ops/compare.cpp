// Comparisons (eq, ne, lt, le, gt, ge and their operators), logical ops,
// equal / allclose, and floor_divide. Comparisons promote their operands (ops.h),
// give bool tensors and record no gradient. On CUDA tensors comparisons run on the
// elementwise kernels (compare_indicator in op_util.cpp); logical ops are built
// from them; floor_divide has no CUDA path yet.
#include <cmath>
#include <type_traits>

#include "op_util.h"

namespace ciuic {

using ops::binary_map;
using ops::CompareOp;
using ops::cuda_op;

namespace {

// a and b in one dtype for comparing: their result type, or for two different
// floating dtypes the wider one (f64 when either is, else f32).
std::pair<Tensor, Tensor> compare_operands(const char* op, const Tensor& a, const Tensor& b) {
  ops::check_defined(op, {{"a", &a}, {"b", &b}});
  ops::check_same_device(op, {{"a", &a}, {"b", &b}});
  std::optional<DType> rt = ops::result_type(a, b);
  DType t = rt ? *rt : (a.dtype() == DType::f64 || b.dtype() == DType::f64 ? DType::f64 : DType::f32);
  return {a.detach().to(t), b.detach().to(t)};
}

template <typename F>
Tensor compare(const char* op, CompareOp c, const Tensor& a, const Tensor& b, F f) {
  auto [x, y] = compare_operands(op, a, b);
  return binary_map(op, x, y, f, cuda_op(c), /*out_bool=*/true);
}

enum class Logical { and_, or_, xor_ };

Tensor logical(const char* op, Logical kind, const Tensor& a, const Tensor& b) {
  ops::check_defined(op, {{"a", &a}, {"b", &b}});
  ops::check_same_device(op, {{"a", &a}, {"b", &b}});
  Tensor x = a.detach().to(DType::boolean), y = b.detach().to(DType::boolean);
  if (x.device().is_cuda()) {  // from the comparison kernels: 0/1 values in f32
    Tensor xf = x.to(DType::f32), yf = y.to(DType::f32);
    switch (kind) {
      case Logical::and_: return gt(mul(xf, yf), 0.5);
      case Logical::or_: return gt(add(xf, yf), 0.5);
      case Logical::xor_: return ne(xf, yf);
    }
  }
  return binary_map(op, x, y, [kind](auto p, auto q) {
    const bool u = p, v = q;
    return kind == Logical::and_ ? (u && v) : kind == Logical::or_ ? (u || v) : (u != v);
  }, cuda_op(CompareOp::eq), /*out_bool=*/true);
}

// Number of true elements of a bool tensor.
std::int64_t count_true(const Tensor& m) { return static_cast<std::int64_t>(sum(m).item()); }

}  // namespace

Tensor eq(const Tensor& a, const Tensor& b) {
  return compare("eq", CompareOp::eq, a, b, [](auto x, auto y) { return x == y; });
}
Tensor ne(const Tensor& a, const Tensor& b) {
  return compare("ne", CompareOp::ne, a, b, [](auto x, auto y) { return x != y; });
}
Tensor lt(const Tensor& a, const Tensor& b) {
  return compare("lt", CompareOp::lt, a, b, [](auto x, auto y) { return x < y; });
}
Tensor le(const Tensor& a, const Tensor& b) {
  return compare("le", CompareOp::le, a, b, [](auto x, auto y) { return x <= y; });
}
Tensor gt(const Tensor& a, const Tensor& b) {
  return compare("gt", CompareOp::gt, a, b, [](auto x, auto y) { return x > y; });
}
Tensor ge(const Tensor& a, const Tensor& b) {
  return compare("ge", CompareOp::ge, a, b, [](auto x, auto y) { return x >= y; });
}
Tensor eq(const Tensor& a, Scalar s) { return eq(a, ops::wrap_scalar(a, s)); }
Tensor ne(const Tensor& a, Scalar s) { return ne(a, ops::wrap_scalar(a, s)); }
Tensor lt(const Tensor& a, Scalar s) { return lt(a, ops::wrap_scalar(a, s)); }
Tensor le(const Tensor& a, Scalar s) { return le(a, ops::wrap_scalar(a, s)); }
Tensor gt(const Tensor& a, Scalar s) { return gt(a, ops::wrap_scalar(a, s)); }
Tensor ge(const Tensor& a, Scalar s) { return ge(a, ops::wrap_scalar(a, s)); }

Tensor logical_and(const Tensor& a, const Tensor& b) { return logical("logical_and", Logical::and_, a, b); }
Tensor logical_or(const Tensor& a, const Tensor& b) { return logical("logical_or", Logical::or_, a, b); }
Tensor logical_xor(const Tensor& a, const Tensor& b) { return logical("logical_xor", Logical::xor_, a, b); }
Tensor logical_not(const Tensor& a) {
  ops::check_defined("logical_not", {{"input", &a}});
  return eq(a.detach().to(DType::boolean), false);
}

bool equal(const Tensor& a, const Tensor& b) {
  ops::check_defined("equal", {{"a", &a}, {"b", &b}});
  if (a.shape() != b.shape()) return false;
  return count_true(ne(a, b)) == 0;
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol, bool equal_nan) {
  ops::check_defined("allclose", {{"a", &a}, {"b", &b}});
  CIUIC_CHECK(rtol >= 0 && atol >= 0, ValueError, "allclose", "rtol ", rtol, ", atol ", atol, " for ",
              ops::describe_all({{"a", &a}, {"b", &b}}), "; expected non-negative tolerances");
  broadcast_shapes(a.shape(), b.shape(), "allclose");
  NoGradGuard no_grad;
  Tensor x = a.detach().to(DType::f64), y = b.detach().to(DType::f64);
  // Equal infinities are close (their difference is nan).
  Tensor close = logical_or(eq(x, y), le(abs(sub(x, y)), add(mul(abs(y), rtol), atol)));
  if (equal_nan) close = logical_or(close, logical_and(ne(x, x), ne(y, y)));
  return count_true(logical_not(close)) == 0;
}

Tensor floor_divide(const Tensor& a, const Tensor& b) {
  const char* op = "floor_divide";
  ops::check_defined(op, {{"a", &a}, {"b", &b}});
  if (auto c = ops::promote(a, b)) return floor_divide(c->first, c->second);
  ops::require_cpu(op, {&a, &b});
  CIUIC_CHECK(a.dtype() != DType::boolean, DTypeError, op, "operands ", ops::describe_all({{"a", &a}, {"b", &b}}),
              " are bool; expected numbers (convert with .to(DType::i64))");
  if (!is_floating(a.dtype()) && b.dtype() == a.dtype())
    CIUIC_CHECK(count_true(eq(b, 0)) == 0, ValueError, op, "integer division by zero (divisor ", describe(b),
                " has zeros); expected nonzero divisors, or floating operands (which give +-inf / nan)");
  return binary_map(op, a.detach(), b.detach(), [](auto x, auto y) {
    using A = decltype(x);
    if constexpr (std::is_floating_point_v<A>) {
      return std::floor(x / y);
    } else {
      if constexpr (std::is_signed_v<A>) {
        using U = std::make_unsigned_t<A>;
        if (y == A(-1)) return static_cast<A>(U(0) - static_cast<U>(x));  // wraps for the most negative x
      }
      A q = static_cast<A>(x / y);
      if constexpr (std::is_signed_v<A>) {
        if (x % y != 0 && ((x < 0) != (y < 0))) --q;
      }
      return q;
    }
  }, cuda_op(kernels::BinaryOp::div));
}
Tensor floor_divide(const Tensor& a, Scalar s) { return floor_divide(a, ops::wrap_scalar(a, s)); }

// ---- operators ----
Tensor operator==(const Tensor& a, const Tensor& b) { return eq(a, b); }
Tensor operator!=(const Tensor& a, const Tensor& b) { return ne(a, b); }
Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
Tensor operator==(const Tensor& a, Scalar s) { return eq(a, s); }
Tensor operator!=(const Tensor& a, Scalar s) { return ne(a, s); }
Tensor operator<(const Tensor& a, Scalar s) { return lt(a, s); }
Tensor operator<=(const Tensor& a, Scalar s) { return le(a, s); }
Tensor operator>(const Tensor& a, Scalar s) { return gt(a, s); }
Tensor operator>=(const Tensor& a, Scalar s) { return ge(a, s); }
Tensor operator!(const Tensor& a) { return logical_not(a); }

}  // namespace ciuic
