// Fill a strided view with one value.
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/core.h"
#include "dtype_dispatch.cuh"

namespace ciuic::kernels {

namespace {
template <typename T>
__global__ void fill_kernel(T* dst, StridedLayout l, std::int64_t n, T value, bool contig) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    dst[contig ? i : strided_offset(l, i)] = value;
}
}  // namespace

void fill(void* dst, DType dtype, const StridedLayout& layout, std::int64_t n, double value, void* stream) {
  if (n == 0) return;
  constexpr unsigned kBlock = 256;
  bool contig = layout_is_contiguous(layout);
  detail::dispatch(dtype, "fill", [&](auto tag) {
    using T = decltype(tag);
    T v = convert<T>(value);  // host conversion: same rounding as the CPU path
    fill_kernel<T><<<detail::grid_for(n, kBlock), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<T*>(dst), layout, n, v, contig);
    CIUIC_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ciuic::kernels
