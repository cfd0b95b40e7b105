// Counter-based random fills: element i takes Philox counter first + i, exactly
// as the CPU path does, so a seed gives the same tensor on both devices.
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/core.h"
#include "ciuic/philox.h"
#include "dtype_dispatch.cuh"

namespace ciuic::kernels {

namespace {
template <typename T>
__global__ void random_kernel(T* dst, std::int64_t n, bool normal, double a, double b, std::uint64_t seed,
                              std::uint64_t first) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::uint64_t c = first + static_cast<std::uint64_t>(i);
    double v = normal ? affine_rn(a, b, static_cast<double>(philox_normal(seed, c)))
                      : affine_rn(a, b - a, static_cast<double>(philox_uniform(seed, c)));
    dst[i] = convert<T>(v);  // the CPU's rounding (see factories.cpp)
  }
}
}  // namespace

void random_fill(void* dst, DType dtype, std::int64_t n, RandomKind kind, double a, double b, std::uint64_t seed,
                 std::uint64_t first, void* stream) {
  if (n == 0) return;
  constexpr unsigned kBlock = 256;
  CIUIC_CHECK(is_floating(dtype), DTypeError, "random_fill", "got dtype ", dtype_name(dtype),
              "; expected a floating dtype");
  detail::dispatch(dtype, "random_fill", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T> || std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
      random_kernel<T><<<detail::grid_for(n, kBlock), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
          static_cast<T*>(dst), n, kind == RandomKind::normal, a, b, seed, first);
      CIUIC_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace ciuic::kernels
