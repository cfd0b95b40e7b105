// Private to the flash-attention kernels (flash_attn_fwd.cu, flash_attn_bwd.cu):
// the device-side argument block, operand addressing, 16-byte tile loads into
// shared memory, f16/bf16 <-> f32 conversions and the host-side launch checks.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>

#include "ciuic/cuda_check.h"
#include "ciuic/dropout_mask.h"
#include "ciuic/error.h"
#include "ciuic/half.h"
#include "ciuic/kernels/flash_attn.h"
#include "ciuic/kernels/flash_attn_math.h"
#include "kernel_common.cuh"

namespace ciuic::kernels::flash {

// Everything a kernel needs, by value (the launch copies it to constant space).
struct Args {
  const void* q;
  const void* k;
  const void* v;
  std::int64_t q_s0, q_s1, q_st, k_s0, k_s1, k_st, v_s0, v_s1, v_st;  // element strides
  std::int64_t B1, Tq, Tk;
  std::int64_t B;   // batch entries B0 * B1 (tile_grid spreads them over grid y and z)
  int D, Dv;
  bool causal;
  float scale;      // softmax scale
  float c;          // scale * log2(e): scores in log2 units
  std::uint32_t threshold;  // dropout: 0 keeps all
  float rscale;     // 1 / (1 - p)
  std::uint64_t seed, first;
  // forward outputs / backward inputs, contiguous
  void* out;        // (B, Tq, Dv)
  float* lse;       // (B, Tq)
  const void* grad_out;  // (B, Tq, Dv)
  float* delta;     // (B, Tq)
  void* grad_q;     // (B, Tq, D)
  void* grad_k;     // (B, Tk, D)
  void* grad_v;     // (B, Tk, Dv)
};

// Row t of operand X for batch entry bh.
template <typename T>
__device__ __forceinline__ const T* row_ptr(const void* base, std::int64_t s0, std::int64_t s1, std::int64_t st,
                                            std::int64_t B1, std::int64_t bh, std::int64_t t) {
  const std::int64_t b0 = bh / B1, b1 = bh - b0 * B1;
  return static_cast<const T*>(base) + b0 * s0 + b1 * s1 + t * st;
}

__device__ __forceinline__ bool dropout_on(const Args& a) { return a.threshold != 0; }

// Dropout factor of element (bh, i, j): rscale when kept, 0 when dropped, 1 without dropout.
__device__ __forceinline__ float drop_factor(const Args& a, std::int64_t bh, std::int64_t i, std::int64_t j) {
  if (!dropout_on(a)) return 1.0f;
  return dropout_keep_at(a.seed, a.first, a.threshold, bh, i, j, a.Tq, a.Tk) ? a.rscale : 0.0f;
}

// ---- 2-byte element types for the Tensor Core kernels ----------------------

// ciuic::Half / BFloat16 are bit-compatible with CUDA's __half / __nv_bfloat16.
template <typename T> struct Cuda16;
template <> struct Cuda16<Half> {
  using type = __half;
  static __device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }
  static __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
};
template <> struct Cuda16<BFloat16> {
  using type = __nv_bfloat16;
  static __device__ __forceinline__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
  static __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
};

// Storage <-> f32 for the SIMT kernels through the CUDA intrinsics (round to nearest
// even, the same bits as ciuic/half.h's conversions, without its bit manipulation).
template <typename T>
__device__ __forceinline__ float to_f32(T x) {
  if constexpr (std::is_same_v<T, Half>) return __half2float(__ushort_as_half(x.bits));
  else if constexpr (std::is_same_v<T, BFloat16>) return __bfloat162float(__ushort_as_bfloat16(x.bits));
  else return x;
}
template <typename T>
__device__ __forceinline__ T from_f32(float x) {
  if constexpr (std::is_same_v<T, Half>) return Half::from_bits(__half_as_ushort(__float2half_rn(x)));
  else if constexpr (std::is_same_v<T, BFloat16>) return BFloat16::from_bits(__bfloat16_as_ushort(__float2bfloat16_rn(x)));
  else return x;
}

// Four floats rounded to E and stored as one 8-byte access (dst 8-byte aligned).
template <typename E, typename C>
__device__ __forceinline__ void store4(E* dst, float a, float b, float c, float d) {
  union {
    E e[4];
    uint2 u;
  } pk;
  pk.e[0] = C::from_float(a);
  pk.e[1] = C::from_float(b);
  pk.e[2] = C::from_float(c);
  pk.e[3] = C::from_float(d);
  *reinterpret_cast<uint2*>(dst) = pk.u;
}

// A tile of `rows` x COLS 2-byte elements into shared memory (pitch half_pitch(COLS)),
// 16 bytes per thread and step; rows at or past `valid` are zero (ragged last tile).
// The block's threads all take part; the caller synchronises.
template <int COLS, typename E>
__device__ __forceinline__ void load_tile16(E* sm, const E* g, std::int64_t stride_t, int rows, int valid) {
  constexpr int kChunks = COLS / 8;
  constexpr int kPitch = COLS + 8;
  for (int idx = threadIdx.x; idx < rows * kChunks; idx += blockDim.x) {
    const int r = idx / kChunks, ch = idx - r * kChunks;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (r < valid) val = *reinterpret_cast<const uint4*>(g + r * stride_t + ch * 8);
    *reinterpret_cast<uint4*>(sm + r * kPitch + ch * 8) = val;
  }
}

// Dynamic shared memory of the Tensor Core kernels (bytes), and the most any of them needs.
template <int D>
constexpr std::size_t tc_fwd_smem() {
  return (3 * kTcBM * (D + 8)) * 2 + kTcBM * (kTcBN + 8) * 4 + kTcBM * (kTcBN + 8) * 2 + kTcBM * (D + 8) * 4;
}
template <int D>
constexpr std::size_t tc_dkdv_smem() {
  return 4 * kTcBN * (D + 8) * 2 + 2 * kTcBN * (kTcBM + 8) * 4 + 2 * kTcBN * (kTcBM + 8) * 2 + 2 * kTcBM * 4;
}
template <int D>
constexpr std::size_t tc_dq_smem() {
  return 4 * kTcBM * (D + 8) * 2 + 2 * kTcBM * (kTcBN + 8) * 4 + kTcBM * (kTcBN + 8) * 2;
}
template <int D>
constexpr std::size_t tc_max_smem() {
  return std::max({tc_fwd_smem<D>(), tc_dkdv_smem<D>(), tc_dq_smem<D>()});
}

// ---- host side ---------------------------------------------------------------

inline Args make_args(const FlashAttnParams& p, const AttnOperand& q, const AttnOperand& k, const AttnOperand& v) {
  Args a{};
  a.q = q.ptr;
  a.k = k.ptr;
  a.v = v.ptr;
  a.q_s0 = q.stride_b0; a.q_s1 = q.stride_b1; a.q_st = q.stride_t;
  a.k_s0 = k.stride_b0; a.k_s1 = k.stride_b1; a.k_st = k.stride_t;
  a.v_s0 = v.stride_b0; a.v_s1 = v.stride_b1; a.v_st = v.stride_t;
  a.B1 = p.B1;
  a.B = p.B0 * p.B1;
  a.Tq = p.Tq;
  a.Tk = p.Tk;
  a.D = static_cast<int>(p.D);
  a.Dv = static_cast<int>(p.Dv);
  a.causal = p.causal;
  a.scale = static_cast<float>(p.scale);
  a.c = static_cast<float>(p.scale * 1.4426950408889634);
  a.threshold = p.dropout_p > 0 ? dropout_threshold(p.dropout_p) : 0u;
  a.rscale = p.dropout_p > 0 ? static_cast<float>(1.0 / (1.0 - p.dropout_p)) : 1.0f;
  a.seed = p.seed;
  a.first = p.first;
  return a;
}

void check_params(const char* name, const FlashAttnParams& p, const AttnOperand& q, const AttnOperand& k,
                  const AttnOperand& v);

// Dynamic shared memory above 48 KiB needs an opt-in per kernel and device. The limit is
// only ever raised, under a lock, to the largest size asked for so far: setting it per call
// let two host threads launching one kernel with different head dims race (one thread's
// smaller limit landing between the other's set and its launch, which then failed).
void raise_smem_limit(const void* kernel, std::size_t bytes);
template <typename K>
void allow_smem(K kernel, std::size_t bytes) {
  raise_smem_limit(reinterpret_cast<const void*>(kernel), bytes);
}

// The current device's limits that choose between the Tensor Core and SIMT kernels.
struct DeviceLimits {
  int cc_major = 0, cc_minor = 0;
  std::size_t smem_optin = 0;  // cudaDevAttrMaxSharedMemoryPerBlockOptin
};
const DeviceLimits& device_limits();

// Grid of (tiles, batch entries): tiles in x (up to 2^31 - 1); the batch entries B0 * B1
// spread over y and z (each at most 65535), so any batch x heads up to 65535^2 launches.
dim3 tile_grid(const char* name, std::int64_t tiles, std::int64_t B);

// This block's batch entry (see tile_grid), or -1 for the few blocks of the last z slice
// past B, which then return before touching anything (uniformly, so no barrier is split).
__device__ __forceinline__ std::int64_t block_batch_entry(std::int64_t B) {
  const std::int64_t bh = blockIdx.y + static_cast<std::int64_t>(blockIdx.z) * gridDim.y;
  return bh < B ? bh : -1;
}

}  // namespace ciuic::kernels::flash
