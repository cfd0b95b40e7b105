// Launchers for the tensor core's CUDA kernels: strided copy with dtype cast,
// fill, and the counter-based random fills. Raw pointers, layouts and a stream
// only. Each launcher checks its launch and throws CudaError on failure.
#pragma once

#include <cstdint>

#include "ciuic/dtype.h"
#include "ciuic/strided.h"

namespace ciuic::kernels {

// dst[dst_layout(i)] = cast(src[src_layout(i)]) for i in [0, n); both layouts have
// the same shape (src may have 0 strides: broadcast). dst and src must not overlap
// unless they are the same contiguous buffer.
void copy_cast(void* dst, DType dst_dtype, const StridedLayout& dst_layout, const void* src, DType src_dtype,
               const StridedLayout& src_layout, std::int64_t n, void* stream);

// dst[layout(i)] = value for i in [0, n).
void fill(void* dst, DType dtype, const StridedLayout& layout, std::int64_t n, double value, void* stream);

enum class RandomKind { uniform, normal };
// Contiguous dst[i] = a + (b - a) * U(seed, first + i) (uniform) or a + b * N(seed, first + i) (normal).
void random_fill(void* dst, DType dtype, std::int64_t n, RandomKind kind, double a, double b, std::uint64_t seed,
                 std::uint64_t first, void* stream);

}  // namespace ciuic::kernels
