// Contiguous casts, tiled transpose and the swap12 permute
// (ciuic/kernels/cast_transpose.h).
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "ciuic/cuda_check.h"
#include "ciuic/half.h"
#include "ciuic/kernels/cast_transpose.h"
#include "dtype_dispatch.cuh"

namespace ciuic::kernels {

namespace {

constexpr unsigned kBlock = 256;

// ---- casts ----

template <typename T, int N>
struct alignas(sizeof(T) * N < 16 ? sizeof(T) * N : 16) Pack {
  T v[N];
};

template <typename To, typename From>
CIUIC_HD To cast_elem(From x) {
  const float f = static_cast<float>(x);
  if constexpr (std::is_same_v<To, float>) return f;
  else return To(f);
}

// Vector part: element block i covers [i * V, i * V + V).
template <typename To, typename From, int V>
__global__ void cast_vec_kernel(To* dst, const From* src, std::int64_t nvec) {
  const auto* s = reinterpret_cast<const Pack<From, V>*>(src);
  auto* d = reinterpret_cast<Pack<To, V>*>(dst);
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < nvec;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const Pack<From, V> in = s[i];
    Pack<To, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j) out.v[j] = cast_elem<To>(in.v[j]);
    d[i] = out;
  }
}

template <typename To, typename From>
__global__ void cast_scalar_kernel(To* dst, const From* src, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    dst[i] = cast_elem<To>(src[i]);
}

template <typename To, typename From>
void launch_cast(To* dst, const From* src, std::int64_t n, cudaStream_t s) {
  constexpr int V = 16 / sizeof(From);
  const bool aligned = reinterpret_cast<std::uintptr_t>(src) % 16 == 0 &&
                       reinterpret_cast<std::uintptr_t>(dst) % alignof(Pack<To, V>) == 0;
  const std::int64_t nvec = aligned ? n / V : 0;
  if (nvec > 0) {
    cast_vec_kernel<To, From, V><<<detail::grid_for(nvec, kBlock), kBlock, 0, s>>>(dst, src, nvec);
    CIUIC_CUDA_CHECK_LAUNCH();
  }
  const std::int64_t done = nvec * V, rest = n - done;  // the tail, or everything when misaligned
  if (rest > 0) {
    cast_scalar_kernel<To, From><<<detail::grid_for(rest, kBlock), kBlock, 0, s>>>(dst + done, src + done, rest);
    CIUIC_CUDA_CHECK_LAUNCH();
  }
}

template <typename F>
void dispatch_cast_type(DType t, const char* what, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f16: f(Half{}); return;
    case DType::bf16: f(BFloat16{}); return;
    default: break;
  }
  ::ciuic::detail::fail<DTypeError>("cast_contiguous", what, " dtype is ", dtype_name(t),
                                    "; expected f32, f16 or bf16");
}

// ---- transpose ----

constexpr int kTile = 32;
constexpr int kTileRowsPerPass = 8;  // block (32, 8): each thread moves 4 elements per tile

// U: an unsigned integer of the element's size; elements move as raw bits.
template <typename U>
__global__ void transpose_kernel(U* dst, const U* src, std::int64_t batch, std::int64_t rows, std::int64_t cols,
                                 std::int64_t row_tiles) {
  // +1 column: element (j, i) of the transposed read sits in bank (j * 33 + i) mod 32,
  // so a warp reading a tile column touches 32 different banks.
  __shared__ U tile[kTile][kTile + 1];
  const std::int64_t c0 = static_cast<std::int64_t>(blockIdx.x) * kTile;
  for (std::int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    const U* s = src + b * rows * cols;
    U* d = dst + b * rows * cols;
    for (std::int64_t rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
      const std::int64_t r0 = rt * kTile;
      for (int j = threadIdx.y; j < kTile; j += kTileRowsPerPass) {
        const std::int64_t r = r0 + j, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[j][threadIdx.x] = s[r * cols + c];
      }
      __syncthreads();
      for (int j = threadIdx.y; j < kTile; j += kTileRowsPerPass) {
        const std::int64_t c = c0 + j, r = r0 + threadIdx.x;  // writes along dst rows (= src columns)
        if (c < cols && r < rows) d[c * rows + r] = tile[threadIdx.x][j];
      }
      __syncthreads();
    }
  }
}

template <typename F>
void dispatch_bytes(std::size_t size, F&& f) {
  switch (size) {
    case 1: f(std::uint8_t{}); return;
    case 2: f(std::uint16_t{}); return;
    case 4: f(std::uint32_t{}); return;
    case 8: f(std::uint64_t{}); return;
    case 16: f(uint4{}); return;
    default: break;
  }
  ::ciuic::detail::fail<ValueError>("cast_transpose", "unsupported unit size ", size);
}

// ---- permute ----

// Unit index i of dst (B, Y, X, R) <- unit swap12_src_offset(i) of src (B, X, Y, R).
template <typename U>
__global__ void swap12_kernel(U* dst, const U* src, std::int64_t total, std::int64_t X, std::int64_t Y,
                              std::int64_t R) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    dst[i] = src[swap12_src_offset(i, X, Y, R)];
}

void check_nonneg(const char* op, std::initializer_list<std::int64_t> sizes) {
  for (std::int64_t v : sizes) CIUIC_CHECK(v >= 0, ValueError, op, "got size ", v, "; expected sizes >= 0");
}

}  // namespace

void cast_contiguous(void* dst, DType dst_dtype, const void* src, DType src_dtype, std::int64_t n, void* stream) {
  check_nonneg("cast_contiguous", {n});
  dispatch_cast_type(dst_dtype, "destination", [](auto) {});
  dispatch_cast_type(src_dtype, "source", [](auto) {});
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (dst_dtype == src_dtype) {
    CIUIC_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<std::size_t>(n) * dtype_size(src_dtype),
                                     cudaMemcpyDeviceToDevice, s));
    return;
  }
  dispatch_cast_type(dst_dtype, "destination", [&](auto dtag) {
    dispatch_cast_type(src_dtype, "source", [&](auto stag) {
      using To = decltype(dtag);
      using From = decltype(stag);
      if constexpr (!std::is_same_v<To, From>)  // same dtype took the memcpy above
        launch_cast<To, From>(static_cast<To*>(dst), static_cast<const From*>(src), n, s);
    });
  });
}

void transpose_2d(void* dst, const void* src, DType dtype, std::int64_t batch, std::int64_t rows, std::int64_t cols,
                  void* stream) {
  check_nonneg("transpose_2d", {batch, rows, cols});
  if (batch == 0 || rows == 0 || cols == 0) return;
  const std::int64_t col_tiles = (cols + kTile - 1) / kTile, row_tiles = (rows + kTile - 1) / kTile;
  CIUIC_CHECK(col_tiles <= 0x7fffffff, ValueError, "transpose_2d", "cols ", cols, " exceeds the grid");
  const dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(row_tiles < 65535 ? row_tiles : 65535),
                  static_cast<unsigned>(batch < 65535 ? batch : 65535));
  const dim3 block(kTile, kTileRowsPerPass);
  dispatch_bytes(dtype_size(dtype), [&](auto tag) {
    using U = decltype(tag);
    // An element is at most 8 bytes: no 16-byte transpose kernel is instantiated (it could
    // never launch; dispatch_bytes refuses 16 here as any other unknown size).
    if constexpr (sizeof(U) <= 8) {
      transpose_kernel<U><<<grid, block, 0, static_cast<cudaStream_t>(stream)>>>(
          static_cast<U*>(dst), static_cast<const U*>(src), batch, rows, cols, row_tiles);
      CIUIC_CUDA_CHECK_LAUNCH();
    } else {
      ::ciuic::detail::fail<ValueError>("transpose_2d", "unsupported element size ", sizeof(U));
    }
  });
}

void permute_swap12(void* dst, const void* src, DType dtype, std::int64_t B, std::int64_t X, std::int64_t Y,
                    std::int64_t D, void* stream) {
  check_nonneg("permute_swap12", {B, X, Y, D});
  if (B == 0 || X == 0 || Y == 0 || D == 0) return;
  const std::uint64_t row_bytes = static_cast<std::uint64_t>(D) * dtype_size(dtype);
  const unsigned unit = copy_unit_bytes(row_bytes, reinterpret_cast<std::uintptr_t>(dst),
                                        reinterpret_cast<std::uintptr_t>(src));
  const std::int64_t R = static_cast<std::int64_t>(row_bytes / unit);
  const std::int64_t total = B * X * Y * R;
  dispatch_bytes(unit, [&](auto tag) {
    using U = decltype(tag);
    swap12_kernel<U><<<detail::grid_for(total, kBlock), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<U*>(dst), static_cast<const U*>(src), total, X, Y, R);
    CIUIC_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ciuic::kernels
