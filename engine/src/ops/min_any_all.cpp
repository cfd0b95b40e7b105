// min, argmin, any, all: composed from max and elementwise ops, so they run wherever
// those do (CPU and CUDA) and min's gradient comes from max's.
//
// min(x) = r(max(r(x))) for an order-reversing map r that is its own inverse and never
// overflows: -x for floating dtypes (nan stays nan, so it still propagates), ~x = -1 - x
// for i32/i64 (INT_MIN <-> INT_MAX; no wrap), 255 - x for u8 and !x for bool. Ties keep
// the first index, as max's do.
#include "op_util.h"

namespace ciuic {

namespace {

Tensor reverse_order(const Tensor& a) {
  switch (a.dtype()) {
    case DType::boolean: return logical_not(a);
    case DType::u8: return rsub(a, 255);
    case DType::i32:
    case DType::i64: return rsub(a, -1);
    default: return neg(a);
  }
}

// The shape of a reduced over dim d (wrapped), with or without keepdim.
Shape reduce_one(const Tensor& a, std::int64_t d, bool keepdim) {
  if (a.dim() == 0) return {};
  return ops::reduced_shape(a.shape(), {d}, keepdim);
}

}  // namespace

std::pair<Tensor, Tensor> min(const Tensor& a, std::int64_t dim, bool keepdim) {
  ops::check_defined("min", {{"input", &a}});
  ops::wrap_dim("min", dim, a);
  auto [values, indices] = max(reverse_order(a), dim, keepdim);
  return {reverse_order(values), indices};
}

Tensor min(const Tensor& a) {
  ops::check_defined("min", {{"input", &a}});
  CIUIC_CHECK(a.numel() > 0, ShapeError, "min", "cannot take the min of the empty tensor ", describe(a),
              "; expected at least one element");
  return reverse_order(max(reverse_order(a)));
}

Tensor argmin(const Tensor& a, std::int64_t dim, bool keepdim) {
  ops::check_defined("argmin", {{"input", &a}});
  ops::wrap_dim("argmin", dim, a);
  return argmax(reverse_order(a.detach()), dim, keepdim);
}

Tensor any(const Tensor& a) {
  ops::check_defined("any", {{"input", &a}});
  if (a.numel() == 0) return zeros({}, TensorOptions(DType::boolean).device(a.device()));
  return max(ne(a.detach(), 0));
}

Tensor any(const Tensor& a, std::int64_t dim, bool keepdim) {
  ops::check_defined("any", {{"input", &a}});
  const std::int64_t d = ops::wrap_dim("any", dim, a);
  if (a.numel() == 0) return zeros(reduce_one(a, d, keepdim), TensorOptions(DType::boolean).device(a.device()));
  return max(ne(a.detach(), 0), d, keepdim).first;
}

Tensor all(const Tensor& a) {
  ops::check_defined("all", {{"input", &a}});
  return logical_not(any(logical_not(a.detach())));
}

Tensor all(const Tensor& a, std::int64_t dim, bool keepdim) {
  ops::check_defined("all", {{"input", &a}});
  return logical_not(any(logical_not(a.detach()), dim, keepdim));
}

}  // namespace ciuic
