// Embedding gather and scatter-add backward (see ciuic/kernels/embedding.h).
#include <cuda_runtime.h>

#include <cub/cub.cuh>

#include <limits>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/embedding.h"
#include "ciuic/kernels/embedding_sort.h"
#include "kernel_common.cuh"

namespace ciuic::kernels {

namespace {

constexpr int kBlock = 256;

// out (n, C) from w (V, C). kVec: C is a multiple of the pack width and both buffers
// are 16-byte aligned, so row i is C / W whole packs. Unit u = (i, pack or column).
template <typename T, typename I, bool kVec>
__global__ void emb_fwd_kernel(T* __restrict__ out, const T* __restrict__ w, const I* __restrict__ idx,
                               std::int64_t V, std::int64_t C, std::int64_t n, DeviceErrorSlot errors) {
  using P = kc::Pack<T>;
  const std::int64_t per_row = kVec ? C / P::kWidth : C;
  const std::int64_t units = n * per_row;
  const T nan = kc::from_acc<T>(std::numeric_limits<acc_t<T>>::quiet_NaN());
  for (std::int64_t u = kc::global_thread(); u < units; u += kc::grid_threads()) {
    const std::int64_t i = u / per_row, p = u % per_row;
    const std::int64_t v = static_cast<std::int64_t>(idx[i]);
    const bool ok = v >= 0 && v < V;
    if (!ok && p == 0) report_device_error(errors, DeviceErrorCode::embedding_index, v, V, C);
    if constexpr (kVec) {
      P val;
      if (ok) {
        val = reinterpret_cast<const P*>(w + v * C)[p];
      } else {
#pragma unroll
        for (int k = 0; k < P::kWidth; ++k) val.v[k] = nan;
      }
      reinterpret_cast<P*>(out + i * C)[p] = val;
    } else {
      out[i * C + p] = ok ? w[v * C + p] : nan;
    }
  }
}

// Deterministic backward (embedding_sort.h): keys and positions, sorted by CUB,
// then one block per sorted position; the blocks at a segment start sum their
// segment's rows column by column in position order and write the row.
template <typename I>
__global__ void emb_sort_prep_kernel(std::uint32_t* keys, std::int32_t* pos, const I* __restrict__ idx,
                                     std::int64_t V, std::int64_t n) {
  for (std::int64_t i = kc::global_thread(); i < n; i += kc::grid_threads()) {
    keys[i] = emb_sort::sort_key(static_cast<std::int64_t>(idx[i]), V);
    pos[i] = static_cast<std::int32_t>(i);
  }
}

constexpr int kSegThreads = 128;

template <typename T>
__global__ void __launch_bounds__(kSegThreads)
    emb_segment_sum_kernel(T* __restrict__ gw, const T* __restrict__ g, const std::uint32_t* __restrict__ keys,
                           const std::int32_t* __restrict__ pos, std::int64_t n, std::int64_t V, std::int64_t C) {
  for (std::int64_t i = blockIdx.x; i < n; i += gridDim.x) {  // uniform over the block
    if (!emb_sort::segment_start(keys, i) || keys[i] >= V) continue;
    const std::int64_t e = emb_sort::segment_end(keys, n, i);
    const std::int64_t row = keys[i];
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x)
      gw[row * C + c] = kc::from_acc<T>(emb_sort::segment_column_sum<acc_t<T>>(g, C, pos, i, e, c));
  }
}

// Byte offsets of the sort buffers inside the workspace (each 256-byte aligned).
struct SortLayout {
  std::size_t keys_in = 0, keys_out = 0, pos_in = 0, pos_out = 0, temp = 0, temp_bytes = 0, total = 0;
};
SortLayout sort_layout(std::int64_t n, std::int64_t V) {
  auto up = [](std::size_t b) { return (b + 255) / 256 * 256; };
  SortLayout l;
  const auto un = static_cast<std::size_t>(n);
  l.keys_out = up(un * sizeof(std::uint32_t));
  l.pos_in = l.keys_out + up(un * sizeof(std::uint32_t));
  l.pos_out = l.pos_in + up(un * sizeof(std::int32_t));
  l.temp = l.pos_out + up(un * sizeof(std::int32_t));
  if (n > 0) {
    CIUIC_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, l.temp_bytes, static_cast<const std::uint32_t*>(nullptr),
                                                     static_cast<std::uint32_t*>(nullptr),
                                                     static_cast<const std::int32_t*>(nullptr),
                                                     static_cast<std::int32_t*>(nullptr), static_cast<int>(n), 0,
                                                     emb_sort::key_bits(V)));
  }
  l.total = l.temp + up(l.temp_bytes);
  return l;
}

// Non-deterministic backward: acc (V, C), pre-zeroed, gets one atomicAdd per element of g.
template <typename T, typename I, typename A>
__global__ void emb_bwd_atomic_kernel(A* acc, const T* __restrict__ g, const I* __restrict__ idx, std::int64_t V,
                                      std::int64_t C, std::int64_t n) {
  const std::int64_t units = n * C;
  for (std::int64_t u = kc::global_thread(); u < units; u += kc::grid_threads()) {
    const std::int64_t i = u / C, c = u % C;
    const std::int64_t v = static_cast<std::int64_t>(idx[i]);
    if (v >= 0 && v < V) atomicAdd(acc + v * C + c, static_cast<A>(kc::to_acc(g[u])));
  }
}

template <typename T>
__global__ void f32_to_storage_kernel(T* __restrict__ out, const float* __restrict__ in, std::int64_t n) {
  for (std::int64_t i = kc::global_thread(); i < n; i += kc::grid_threads()) out[i] = kc::from_acc<T>(in[i]);
}

template <typename F>
void dispatch_index(DType t, F&& f) {
  if (t == DType::i32) f(std::int32_t{});
  else f(std::int64_t{});
}

void check_emb(const char* op, DType dtype, std::int64_t V, std::int64_t C, DType index_dtype, std::int64_t n) {
  kc::check_size(op, "V", V);
  kc::check_size(op, "C", C);
  kc::check_size(op, "n", n);
  kc::check_floating_dtype(op, dtype);
  kc::check_index_dtype(op, "indices", index_dtype);
}

}  // namespace

void embedding_forward(void* out, const void* weight, DType dtype, std::int64_t V, std::int64_t C,
                       const void* indices, DType index_dtype, std::int64_t n, const DeviceErrorSlot& errors,
                       void* stream) {
  const char* name = "embedding_forward";
  check_emb(name, dtype, V, C, index_dtype, n);
  if (n == 0 || C == 0) return;
  kc::check_ptr(name, "out", out);
  kc::check_ptr(name, "indices", indices);
  if (V > 0) kc::check_ptr(name, "weight", weight);  // V == 0: every index is bad
  const cudaStream_t s = kc::as_stream(stream);
  kc::dispatch_float(dtype, name, [&](auto tag) {
    using T = decltype(tag);
    constexpr int W = kc::Pack<T>::kWidth;
    const bool vec = C % W == 0 && kc::aligned16(out) && kc::aligned16(weight);
    dispatch_index(index_dtype, [&](auto itag) {
      using I = decltype(itag);
      T* o = static_cast<T*>(out);
      const T* w = static_cast<const T*>(weight);
      const I* ix = static_cast<const I*>(indices);
      if (vec)
        emb_fwd_kernel<T, I, true><<<plan::grid_blocks(n * (C / W), kBlock), kBlock, 0, s>>>(o, w, ix, V, C, n,
                                                                                             errors);
      else
        emb_fwd_kernel<T, I, false><<<plan::grid_blocks(n * C, kBlock), kBlock, 0, s>>>(o, w, ix, V, C, n,
                                                                                        errors);
      CIUIC_CUDA_CHECK_LAUNCH();
    });
  });
}

std::size_t embedding_backward_workspace_bytes(DType dtype, std::int64_t V, std::int64_t C, std::int64_t n,
                                               bool deterministic) {
  const char* name = "embedding_backward_workspace_bytes";
  kc::check_size(name, "V", V);
  kc::check_size(name, "C", C);
  kc::check_size(name, "n", n);
  kc::check_floating_dtype(name, dtype);
  if (deterministic) {
    CIUIC_CHECK(V < (std::int64_t{1} << 32) - 1 && n <= 0x7fffffff, ValueError, name, "V = ", V, ", n = ", n,
                "; expected V < 2^32 - 1 and n < 2^31 for the sorted backward");
    return sort_layout(n, V).total;
  }
  if (!(dtype == DType::f16 || dtype == DType::bf16)) return 0;
  return static_cast<std::size_t>(V) * static_cast<std::size_t>(C) * sizeof(float);
}

void embedding_backward(void* grad_weight, const void* grad_out, DType dtype, std::int64_t V, std::int64_t C,
                        const void* indices, DType index_dtype, std::int64_t n, bool deterministic, void* workspace,
                        std::size_t workspace_bytes, void* stream) {
  const char* name = "embedding_backward";
  check_emb(name, dtype, V, C, index_dtype, n);
  const std::size_t need = embedding_backward_workspace_bytes(dtype, V, C, n, deterministic);
  kc::check_workspace(name, need, workspace, workspace_bytes);
  if (V == 0 || C == 0) return;
  kc::check_ptr(name, "grad_weight", grad_weight);
  if (n > 0) {
    kc::check_ptr(name, "grad_out", grad_out);
    kc::check_ptr(name, "indices", indices);
  }
  const cudaStream_t s = kc::as_stream(stream);
  const std::int64_t VC = V * C;
  kc::dispatch_float(dtype, name, [&](auto tag) {
    using T = decltype(tag);
    T* gw = static_cast<T*>(grad_weight);
    const T* g = static_cast<const T*>(grad_out);
    dispatch_index(index_dtype, [&](auto itag) {
      using I = decltype(itag);
      const I* ix = static_cast<const I*>(indices);
      if (deterministic) {
        CIUIC_CUDA_CHECK(cudaMemsetAsync(gw, 0, static_cast<std::size_t>(VC) * sizeof(T), s));  // rows no index hits
        if (n > 0) {
          const SortLayout l = sort_layout(n, V);
          auto* base = static_cast<unsigned char*>(workspace);
          auto* keys_in = reinterpret_cast<std::uint32_t*>(base + l.keys_in);
          auto* keys_out = reinterpret_cast<std::uint32_t*>(base + l.keys_out);
          auto* pos_in = reinterpret_cast<std::int32_t*>(base + l.pos_in);
          auto* pos_out = reinterpret_cast<std::int32_t*>(base + l.pos_out);
          emb_sort_prep_kernel<I><<<plan::grid_blocks(n, kBlock), kBlock, 0, s>>>(keys_in, pos_in, ix, V, n);
          CIUIC_CUDA_CHECK_LAUNCH();
          std::size_t temp_bytes = l.temp_bytes;
          CIUIC_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(base + l.temp, temp_bytes, keys_in, keys_out, pos_in,
                                                           pos_out, static_cast<int>(n), 0, emb_sort::key_bits(V),
                                                           s));
          const unsigned blocks = static_cast<unsigned>(plan::min64(n, 65535));
          emb_segment_sum_kernel<T><<<blocks, kSegThreads, 0, s>>>(gw, g, keys_out, pos_out, n, V, C);
          CIUIC_CUDA_CHECK_LAUNCH();
        }
      } else if constexpr (kc::is_half_v<T>) {
        float* acc = static_cast<float*>(workspace);
        CIUIC_CUDA_CHECK(cudaMemsetAsync(acc, 0, static_cast<std::size_t>(VC) * sizeof(float), s));
        if (n > 0) {
          emb_bwd_atomic_kernel<T, I, float><<<plan::grid_blocks(n * C, kBlock), kBlock, 0, s>>>(acc, g, ix, V, C, n);
          CIUIC_CUDA_CHECK_LAUNCH();
        }
        f32_to_storage_kernel<T><<<plan::grid_blocks(VC, kBlock), kBlock, 0, s>>>(gw, acc, VC);
        CIUIC_CUDA_CHECK_LAUNCH();
      } else {
        CIUIC_CUDA_CHECK(cudaMemsetAsync(gw, 0, static_cast<std::size_t>(VC) * sizeof(T), s));
        if (n > 0) {
          emb_bwd_atomic_kernel<T, I, T><<<plan::grid_blocks(n * C, kBlock), kBlock, 0, s>>>(gw, g, ix, V, C, n);
          CIUIC_CUDA_CHECK_LAUNCH();
        }
      }
    });
  });
}

}  // namespace ciuic::kernels
