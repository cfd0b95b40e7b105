// Strided index arithmetic shared by host loops and CUDA kernels.
//
// A StridedLayout describes a view: element (i0, ..., i{n-1}) lives at
// sum_k i_k * strides[k] elements from the base pointer. Kernels receive it by
// value (it fits in kernel parameter space), so a view of up to kMaxDims dims
// needs no contiguous copy.
#pragma once

#include <cstdint>

#include "ciuic/macros.h"

namespace ciuic {

constexpr int kMaxDims = 8;

struct StridedLayout {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
};

// Offset (in elements) of the linear row-major index `linear` within `layout`.
CIUIC_HD int64_t strided_offset(const StridedLayout& layout, int64_t linear) {
  int64_t off = 0;
  for (int d = layout.ndim - 1; d >= 0; --d) {
    int64_t size = layout.shape[d];
    int64_t i = linear % size;
    linear /= size;
    off += i * layout.strides[d];
  }
  return off;
}

// Row-major contiguous?
CIUIC_HD bool layout_is_contiguous(const StridedLayout& l) {
  int64_t expected = 1;
  for (int d = l.ndim - 1; d >= 0; --d) {
    if (l.shape[d] != 1 && l.strides[d] != expected) return false;
    expected *= l.shape[d];
  }
  return true;
}

}  // namespace ciuic
