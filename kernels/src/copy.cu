// Strided copy with dtype conversion. One thread per element in a grid-stride
// loop; the index arithmetic is strided_offset() from ciuic/strided.h, the same
// function the CPU tests exercise. Values convert with ciuic::convert, the CPU's
// function (no double trip).
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/core.h"
#include "dtype_dispatch.cuh"

namespace ciuic::kernels {

namespace {

template <typename To, typename From>
__global__ void copy_cast_kernel(To* dst, StridedLayout dl, const From* src, StridedLayout sl, std::int64_t n,
                                 bool dst_contig, bool src_contig) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t so = src_contig ? i : strided_offset(sl, i);
    std::int64_t doff = dst_contig ? i : strided_offset(dl, i);
    // The CPU's own conversion: a trip through double would saturate or round
    // integers differently (i64 2^40 -> i32, -1 -> u8, i64 beyond 2^53 -> f32).
    dst[doff] = convert<To>(src[so]);
  }
}

}  // namespace

void copy_cast(void* dst, DType dst_dtype, const StridedLayout& dst_layout, const void* src, DType src_dtype,
               const StridedLayout& src_layout, std::int64_t n, void* stream) {
  if (n == 0) return;
  constexpr unsigned kBlock = 256;
  bool dc = layout_is_contiguous(dst_layout), sc = layout_is_contiguous(src_layout);
  auto s = static_cast<cudaStream_t>(stream);
  detail::dispatch(dst_dtype, "copy_cast", [&](auto dt) {
    using To = decltype(dt);
    detail::dispatch(src_dtype, "copy_cast", [&](auto st) {
      using From = decltype(st);
      copy_cast_kernel<To, From><<<detail::grid_for(n, kBlock), kBlock, 0, s>>>(
          static_cast<To*>(dst), dst_layout, static_cast<const From*>(src), src_layout, n, dc, sc);
      CIUIC_CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace ciuic::kernels
