// Internal: the one strided loop that CPU references are built on.
//
// cpu_for_each<N>(shape, strides, f) calls f(off) for every index of `shape` in
// row-major order, where off[k] is the element offset of that index in operand
// k (operand k has strides strides[k]; a stride of 0 broadcasts). The innermost
// dim is a plain loop with strided increments; outer dims advance a counter, so
// there is no division per element.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "ciuic/tensor.h"

namespace ciuic::detail {

template <std::size_t N, typename F>
void cpu_for_each(const Shape& shape, const std::array<Shape, N>& strides, F&& f) {
  const std::size_t nd = shape.size();
  std::array<std::int64_t, N> off{};
  for (std::int64_t s : shape)
    if (s == 0) return;
  if (nd == 0) {
    f(off);
    return;
  }
  const std::int64_t inner = shape[nd - 1];
  std::array<std::int64_t, N> inner_stride;
  for (std::size_t k = 0; k < N; ++k) inner_stride[k] = strides[k][nd - 1];
  std::vector<std::int64_t> idx(nd, 0);
  while (true) {
    std::array<std::int64_t, N> o = off;
    for (std::int64_t i = 0; i < inner; ++i) {
      f(o);
      for (std::size_t k = 0; k < N; ++k) o[k] += inner_stride[k];
    }
    // advance the outer counter (dims nd-2 .. 0)
    std::size_t d = nd - 1;
    while (true) {
      if (d == 0) return;
      --d;
      ++idx[d];
      for (std::size_t k = 0; k < N; ++k) off[k] += strides[k][d];
      if (idx[d] < shape[d]) break;
      for (std::size_t k = 0; k < N; ++k) off[k] -= strides[k][d] * shape[d];
      idx[d] = 0;
    }
  }
}

// Strides of t viewed with shape `to` under broadcasting (0 where t has size 1 or lacks the dim).
// The caller has checked that t broadcasts to `to`.
inline Shape broadcast_strides(const Tensor& t, const Shape& to) {
  Shape st(to.size(), 0);
  const std::size_t off = to.size() - t.shape().size();
  for (std::size_t i = 0; i < t.shape().size(); ++i)
    st[off + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return st;
}

template <typename T>
T* typed_ptr(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

}  // namespace ciuic::detail
