// Embedding gather and scatter-add backward (see ciuic/kernels/embedding.h).
#include <cuda_runtime.h>

#include <limits>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/embedding.h"
#include "kernel_common.cuh"

namespace ciuic::kernels {

namespace {

constexpr int kBlock = 256;

// out (n, C) from w (V, C). kVec: C is a multiple of the pack width and both buffers
// are 16-byte aligned, so row i is C / W whole packs. Unit u = (i, pack or column).
template <typename T, typename I, bool kVec>
__global__ void emb_fwd_kernel(T* __restrict__ out, const T* __restrict__ w, const I* __restrict__ idx,
                               std::int64_t V, std::int64_t C, std::int64_t n, std::int64_t* bad) {
  using P = kc::Pack<T>;
  const std::int64_t per_row = kVec ? C / P::kWidth : C;
  const std::int64_t units = n * per_row;
  const T nan = kc::from_acc<T>(std::numeric_limits<acc_t<T>>::quiet_NaN());
  for (std::int64_t u = kc::global_thread(); u < units; u += kc::grid_threads()) {
    const std::int64_t i = u / per_row, p = u % per_row;
    const std::int64_t v = static_cast<std::int64_t>(idx[i]);
    const bool ok = v >= 0 && v < V;
    if (!ok && p == 0 && bad) atomicAdd(reinterpret_cast<unsigned long long*>(bad), 1ull);
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

// Deterministic backward: one block (kEmbColsPerBlock threads) per (row block, column
// tile), grid-stride over those units. Thread t owns column c = tile * 128 + t of the
// block's 32 vocabulary rows and accumulates them in shared memory (only thread t
// touches acc[.][t]), scanning the indices in order in tiles staged in shared memory.
template <typename T, typename I>
__global__ void __launch_bounds__(plan::kEmbColsPerBlock)
    emb_bwd_det_kernel(T* __restrict__ gw, const T* __restrict__ g, const I* __restrict__ idx, std::int64_t V,
                       std::int64_t C, std::int64_t n) {
  using A = acc_t<T>;
  constexpr int RB = static_cast<int>(plan::kEmbRowsPerBlock);
  constexpr int CB = static_cast<int>(plan::kEmbColsPerBlock);
  constexpr int TILE = static_cast<int>(plan::kEmbIndexTile);
  __shared__ A acc[RB][CB];
  __shared__ std::int64_t sidx[TILE];
  const int t = static_cast<int>(threadIdx.x);
  const std::int64_t col_tiles = plan::ceil_div(C, CB);
  const std::int64_t units = plan::ceil_div(V, RB) * col_tiles;
  for (std::int64_t b = blockIdx.x; b < units; b += gridDim.x) {  // uniform over the block
    const std::int64_t v0 = (b / col_tiles) * RB;
    const std::int64_t c = (b % col_tiles) * CB + t;
    const bool col_ok = c < C;
#pragma unroll
    for (int r = 0; r < RB; ++r) acc[r][t] = A(0);
    for (std::int64_t t0 = 0; t0 < n; t0 += TILE) {
      const int cnt = static_cast<int>(plan::min64(TILE, n - t0));
      __syncthreads();  // everyone is done reading the previous tile
      for (int k = t; k < cnt; k += CB) sidx[k] = static_cast<std::int64_t>(idx[t0 + k]);
      __syncthreads();
      for (int k = 0; k < cnt; ++k) {
        const std::int64_t r = sidx[k] - v0;  // the same for all threads: no divergence
        if (r >= 0 && r < RB && col_ok) acc[r][t] += kc::to_acc(g[(t0 + k) * C + c]);
      }
    }
    if (col_ok) {
      for (int r = 0; r < RB && v0 + r < V; ++r) gw[(v0 + r) * C + c] = kc::from_acc<T>(acc[r][t]);
    }
  }
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
                       const void* indices, DType index_dtype, std::int64_t n, std::int64_t* bad_index_count,
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
                                                                                             bad_index_count);
      else
        emb_fwd_kernel<T, I, false><<<plan::grid_blocks(n * C, kBlock), kBlock, 0, s>>>(o, w, ix, V, C, n,
                                                                                        bad_index_count);
      CIUIC_CUDA_CHECK_LAUNCH();
    });
  });
}

std::size_t embedding_backward_workspace_bytes(DType dtype, std::int64_t V, std::int64_t C, bool deterministic) {
  const char* name = "embedding_backward_workspace_bytes";
  kc::check_size(name, "V", V);
  kc::check_size(name, "C", C);
  kc::check_floating_dtype(name, dtype);
  if (deterministic || !(dtype == DType::f16 || dtype == DType::bf16)) return 0;
  return static_cast<std::size_t>(V) * static_cast<std::size_t>(C) * sizeof(float);
}

void embedding_backward(void* grad_weight, const void* grad_out, DType dtype, std::int64_t V, std::int64_t C,
                        const void* indices, DType index_dtype, std::int64_t n, bool deterministic, void* workspace,
                        std::size_t workspace_bytes, void* stream) {
  const char* name = "embedding_backward";
  check_emb(name, dtype, V, C, index_dtype, n);
  const std::size_t need = embedding_backward_workspace_bytes(dtype, V, C, deterministic);
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
        const std::int64_t units = plan::ceil_div(V, plan::kEmbRowsPerBlock) *
                                   plan::ceil_div(C, plan::kEmbColsPerBlock);
        emb_bwd_det_kernel<T, I><<<plan::grid_blocks(units, 1), plan::kEmbColsPerBlock, 0, s>>>(gw, g, ix, V, C, n);
        CIUIC_CUDA_CHECK_LAUNCH();
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
