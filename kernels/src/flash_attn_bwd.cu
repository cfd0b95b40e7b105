// Flash-attention backward (see ciuic/kernels/flash_attn.h), deterministic, three
// launches on one stream:
//   1. delta (B, Tq) = rowsum(grad_out * out), one warp per row;
//   2. dK, dV: one block per key tile (grid x = key tile, y = bh), query tiles in
//      increasing order from q_tile_begin (causal skipping); per tile P is
//      recomputed from lse, dV += Pd^T dO and dK += dS^T Q;
//   3. dQ: one block per query tile, key tiles in increasing order up to
//      kv_tile_end; dQ += dS K.
// With dropout keep/(1-p) = f: Pd = P f, dP = (dO V^T) f, dS = P (dP - delta);
// delta = rowsum(dO * O) = rowsum(P * dP) also holds with dropout. dK and dQ are
// scaled by the softmax scale once at the end. No atomics: every output element
// is written by one block, in a fixed order, so results are bit-reproducible.
//
// Tensor Core kernels (f16/bf16, D == Dv in {64, 128}): 4 warps, each owning 16
// keys (dK/dV) or 16 query rows (dQ) of a 64-row block tile, against 64-row tiles
// of the other side; products on wmma 16x16x16 with f32 accumulators that stay
// in registers (dK, dV, dQ); P and dS are rounded to the input dtype for their
// products, as in the forward. Shared memory (pitches as in flash_attn_math.h):
//   dK/dV: Ks Vs Qs dOs [64][D+8], St dPt f32 [64][72], Pt dSt [64][72], lse, delta [64]
//   dQ:    Qs dOs Ks Vs [64][D+8], Ss dPs f32 [64][72], dSs [64][72]
// SIMT kernels (f32, other head dims): 4 warps x 4 rows against 32-row tiles,
// lane = the other side's row for the scores, lane + 32e = the column for sums.
#include <mma.h>

#include "flash_attn_common.cuh"

namespace ciuic::kernels {

namespace flash {

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kThreads = 128;
constexpr int kChunks = kFlashMaxHeadDim / 32;

// ---------------------------------------------------------------- delta

template <typename T>
__global__ void __launch_bounds__(kThreads) delta_kernel(const T* go, const T* o, float* delta, std::int64_t rows,
                                                         int Dv) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  float s = 0;
  for (int c = lane; c < Dv; c += 32) s += to_f32(go[row * Dv + c]) * to_f32(o[row * Dv + c]);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  if (lane == 0) delta[row] = s;
}

// ---------------------------------------------------------------- Tensor Cores

// tc_dkdv_smem, tc_dq_smem: flash_attn_common.cuh (the forward's kernel choice needs them too).

// Writes this warp's 16 x D accumulators (times mul) as rows [row0, row0 + 16) of a
// contiguous (rows_total, D) output, staged through stage (f32, pitch D + 8).
template <typename E, typename C, int D, typename Frag>
__device__ __forceinline__ void write_rows(Frag* acc, float mul, float* stage, int wrow, E* dst, std::int64_t row0,
                                           std::int64_t rows_total) {
  constexpr int PO = D + 8;
  const int lane = threadIdx.x % 32, lr = lane / 2, h = lane % 2;
#pragma unroll
  for (int n = 0; n < D / 16; ++n) {
#pragma unroll
    for (int e = 0; e < acc[n].num_elements; ++e) acc[n].x[e] *= mul;
    wmma::store_matrix_sync(stage + wrow * PO + n * 16, acc[n], PO, wmma::mem_row_major);
  }
  __syncwarp();
  const std::int64_t r = row0 + lr;
  if (r < rows_total) {
#pragma unroll
    for (int g = 0; g < D / 8; ++g) {
      const float4 v4 = *reinterpret_cast<const float4*>(stage + (wrow + lr) * PO + 8 * g + 4 * h);
      store4<E, C>(dst + r * D + 8 * g + 4 * h, v4.x, v4.y, v4.z, v4.w);
    }
  }
  __syncwarp();
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) dkdv_tc_kernel(Args a) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using C = Cuda16<T>;
  using E = typename C::type;
  constexpr int PH = D + 8, PS = kTcBM + 8, PP = kTcBM + 8;
  extern __shared__ __align__(128) unsigned char smem[];
  E* Ks = reinterpret_cast<E*>(smem);
  E* Vs = Ks + kTcBN * PH;
  E* Qs = Vs + kTcBN * PH;
  E* dOs = Qs + kTcBM * PH;
  float* St = reinterpret_cast<float*>(dOs + kTcBM * PH);
  float* dPt = St + kTcBN * PS;
  E* Pt = reinterpret_cast<E*>(dPt + kTcBN * PS);
  E* dSt = Pt + kTcBN * PP;
  float* lse_s = reinterpret_cast<float*>(dSt + kTcBN * PP);
  float* delta_s = lse_s + kTcBM;

  const std::int64_t kt = blockIdx.x, bh = block_batch_entry(a.B);
  if (bh < 0) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, lr = lane / 2, h = lane % 2;
  const int wrow = warp * 16;
  const std::int64_t k0 = kt * kTcBN, j = k0 + wrow + lr;  // this lane's key
  const int kvalid = static_cast<int>(tile_rows(kt, a.Tk, kTcBN));
  load_tile16<D>(Ks, row_ptr<E>(a.k, a.k_s0, a.k_s1, a.k_st, a.B1, bh, k0), a.k_st, kTcBN, kvalid);
  load_tile16<D>(Vs, row_ptr<E>(a.v, a.v_s0, a.v_s1, a.v_st, a.B1, bh, k0), a.v_st, kTcBN, kvalid);

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> dk[D / 16], dv[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; ++n) {
    wmma::fill_fragment(dk[n], 0.0f);
    wmma::fill_fragment(dv[n], 0.0f);
  }
  const E* go = static_cast<const E*>(a.grad_out);
  const std::int64_t nq = num_tiles(a.Tq, kTcBM);
  for (std::int64_t qt = q_tile_begin(kt, kTcBM, kTcBN, a.Tq, a.causal); qt < nq; ++qt) {
    const std::int64_t q0 = qt * kTcBM;
    const int qvalid = static_cast<int>(tile_rows(qt, a.Tq, kTcBM));
    __syncthreads();  // every warp is done with the previous Q, dO
    load_tile16<D>(Qs, row_ptr<E>(a.q, a.q_s0, a.q_s1, a.q_st, a.B1, bh, q0), a.q_st, kTcBM, qvalid);
    load_tile16<D>(dOs, go + (bh * a.Tq + q0) * D, D, kTcBM, qvalid);
    for (int r = threadIdx.x; r < kTcBM; r += blockDim.x) {
      // Rows past Tq: lse = +inf gives P = 0 (they are masked as well).
      lse_s[r] = r < qvalid ? a.lse[bh * a.Tq + q0 + r] : INFINITY;
      delta_s[r] = r < qvalid ? a.delta[bh * a.Tq + q0 + r] : 0.0f;
    }
    __syncthreads();

    // S^T (16 keys x 64 queries) = K_w Q^T and dPd^T = V_w dO^T.
#pragma unroll
    for (int n = 0; n < kTcBM / 16; ++n) {
#pragma unroll
      for (int which = 0; which < 2; ++which) {  // S^T from (K, Q), then dPd^T from (V, dO)
        const E* A = which == 0 ? Ks : Vs;
        const E* Bm = which == 0 ? Qs : dOs;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> af;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::col_major> bf;
          wmma::load_matrix_sync(af, A + wrow * PH + kk * 16, PH);
          wmma::load_matrix_sync(bf, Bm + n * 16 * PH + kk * 16, PH);
          wmma::mma_sync(acc, af, bf, acc);
        }
        wmma::store_matrix_sync((which == 0 ? St : dPt) + wrow * PS + n * 16, acc, PS, wmma::mem_row_major);
      }
    }
    __syncwarp();

    const bool masked = tile_needs_mask(qt, kt, kTcBM, kTcBN, a.Tq, a.Tk, a.causal);
#pragma unroll
    for (int g = 0; g < kTcBM / 8; ++g) {
      const int col = 8 * g + 4 * h;
      const float4 s4 = *reinterpret_cast<const float4*>(St + (wrow + lr) * PS + col);
      const float4 d4 = *reinterpret_cast<const float4*>(dPt + (wrow + lr) * PS + col);
      const float sv[4] = {s4.x, s4.y, s4.z, s4.w}, dv4[4] = {d4.x, d4.y, d4.z, d4.w};
      float pd[4], ds[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const std::int64_t i = q0 + col + u;
        const bool live = !masked || score_live(i, j, a.Tq, a.Tk, a.causal);
        const float p = live ? recompute_p(sv[u] * a.c, lse_s[col + u]) : 0.0f;
        const float f = drop_factor(a, bh, i, j);
        pd[u] = p * f;
        ds[u] = grad_score(p, dv4[u] * f, delta_s[col + u]);
      }
      store4<E, C>(Pt + (wrow + lr) * PP + col, pd[0], pd[1], pd[2], pd[3]);
      store4<E, C>(dSt + (wrow + lr) * PP + col, ds[0], ds[1], ds[2], ds[3]);
    }
    __syncwarp();

    // dV_w += Pd^T (16 x 64) dO (64 x D); dK_w += dS^T (16 x 64) Q (64 x D).
#pragma unroll
    for (int kk = 0; kk < kTcBM / 16; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> pf;
      wmma::load_matrix_sync(pf, Pt + wrow * PP + kk * 16, PP);
#pragma unroll
      for (int n = 0; n < D / 16; ++n) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::row_major> bf;
        wmma::load_matrix_sync(bf, dOs + kk * 16 * PH + n * 16, PH);
        wmma::mma_sync(dv[n], pf, bf, dv[n]);
      }
    }
#pragma unroll
    for (int kk = 0; kk < kTcBM / 16; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> sf;
      wmma::load_matrix_sync(sf, dSt + wrow * PP + kk * 16, PP);
#pragma unroll
      for (int n = 0; n < D / 16; ++n) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::row_major> bf;
        wmma::load_matrix_sync(bf, Qs + kk * 16 * PH + n * 16, PH);
        wmma::mma_sync(dk[n], sf, bf, dk[n]);
      }
    }
  }
  __syncthreads();  // Qs / dOs become the f32 staging tile [64][D + 8]
  float* stage = reinterpret_cast<float*>(Qs);
  write_rows<E, C, D>(dv, 1.0f, stage, wrow, static_cast<E*>(a.grad_v) + bh * a.Tk * D, k0 + wrow, a.Tk);
  write_rows<E, C, D>(dk, a.scale, stage, wrow, static_cast<E*>(a.grad_k) + bh * a.Tk * D, k0 + wrow, a.Tk);
#endif
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) dq_tc_kernel(Args a) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using C = Cuda16<T>;
  using E = typename C::type;
  constexpr int PH = D + 8, PS = kTcBN + 8, PP = kTcBN + 8;
  extern __shared__ __align__(128) unsigned char smem[];
  E* Qs = reinterpret_cast<E*>(smem);
  E* dOs = Qs + kTcBM * PH;
  E* Ks = dOs + kTcBM * PH;
  E* Vs = Ks + kTcBN * PH;
  float* Ss = reinterpret_cast<float*>(Vs + kTcBN * PH);
  float* dPs = Ss + kTcBM * PS;
  E* dSs = reinterpret_cast<E*>(dPs + kTcBM * PS);

  const std::int64_t qt = blockIdx.x, bh = block_batch_entry(a.B);
  if (bh < 0) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, lr = lane / 2, h = lane % 2;
  const int wrow = warp * 16;
  const std::int64_t q0 = qt * kTcBM, i = q0 + wrow + lr;  // this lane's query row
  const int qvalid = static_cast<int>(tile_rows(qt, a.Tq, kTcBM));
  load_tile16<D>(Qs, row_ptr<E>(a.q, a.q_s0, a.q_s1, a.q_st, a.B1, bh, q0), a.q_st, kTcBM, qvalid);
  load_tile16<D>(dOs, static_cast<const E*>(a.grad_out) + (bh * a.Tq + q0) * D, D, kTcBM, qvalid);
  const float lse_i = i < a.Tq ? a.lse[bh * a.Tq + i] : INFINITY;
  const float delta_i = i < a.Tq ? a.delta[bh * a.Tq + i] : 0.0f;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> dq[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; ++n) wmma::fill_fragment(dq[n], 0.0f);

  const std::int64_t kend = kv_tile_end(qt, kTcBM, kTcBN, a.Tq, a.Tk, a.causal);
  for (std::int64_t kt = 0; kt < kend; ++kt) {
    const std::int64_t k0 = kt * kTcBN;
    const int kvalid = static_cast<int>(tile_rows(kt, a.Tk, kTcBN));
    __syncthreads();
    load_tile16<D>(Ks, row_ptr<E>(a.k, a.k_s0, a.k_s1, a.k_st, a.B1, bh, k0), a.k_st, kTcBN, kvalid);
    load_tile16<D>(Vs, row_ptr<E>(a.v, a.v_s0, a.v_s1, a.v_st, a.B1, bh, k0), a.v_st, kTcBN, kvalid);
    __syncthreads();

    // S (16 x 64) = Q_w K^T and dPd = dO_w V^T.
#pragma unroll
    for (int n = 0; n < kTcBN / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> sacc, pacc;
      wmma::fill_fragment(sacc, 0.0f);
      wmma::fill_fragment(pacc, 0.0f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> af;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::col_major> bf;
        wmma::load_matrix_sync(af, Qs + wrow * PH + kk * 16, PH);
        wmma::load_matrix_sync(bf, Ks + n * 16 * PH + kk * 16, PH);
        wmma::mma_sync(sacc, af, bf, sacc);
        wmma::load_matrix_sync(af, dOs + wrow * PH + kk * 16, PH);
        wmma::load_matrix_sync(bf, Vs + n * 16 * PH + kk * 16, PH);
        wmma::mma_sync(pacc, af, bf, pacc);
      }
      wmma::store_matrix_sync(Ss + wrow * PS + n * 16, sacc, PS, wmma::mem_row_major);
      wmma::store_matrix_sync(dPs + wrow * PS + n * 16, pacc, PS, wmma::mem_row_major);
    }
    __syncwarp();

    const bool masked = tile_needs_mask(qt, kt, kTcBM, kTcBN, a.Tq, a.Tk, a.causal);
#pragma unroll
    for (int g = 0; g < kTcBN / 8; ++g) {
      const int col = 8 * g + 4 * h;
      const float4 s4 = *reinterpret_cast<const float4*>(Ss + (wrow + lr) * PS + col);
      const float4 d4 = *reinterpret_cast<const float4*>(dPs + (wrow + lr) * PS + col);
      const float sv[4] = {s4.x, s4.y, s4.z, s4.w}, dv4[4] = {d4.x, d4.y, d4.z, d4.w};
      float ds[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const std::int64_t j = k0 + col + u;
        const bool live = !masked || score_live(i, j, a.Tq, a.Tk, a.causal);
        const float p = live ? recompute_p(sv[u] * a.c, lse_i) : 0.0f;
        ds[u] = grad_score(p, dv4[u] * drop_factor(a, bh, i, j), delta_i);
      }
      store4<E, C>(dSs + (wrow + lr) * PP + col, ds[0], ds[1], ds[2], ds[3]);
    }
    __syncwarp();

    // dQ_w += dS (16 x 64) K (64 x D).
#pragma unroll
    for (int kk = 0; kk < kTcBN / 16; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> sf;
      wmma::load_matrix_sync(sf, dSs + wrow * PP + kk * 16, PP);
#pragma unroll
      for (int n = 0; n < D / 16; ++n) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::row_major> bf;
        wmma::load_matrix_sync(bf, Ks + kk * 16 * PH + n * 16, PH);
        wmma::mma_sync(dq[n], sf, bf, dq[n]);
      }
    }
  }
  __syncthreads();  // Ss / dPs become the f32 staging tile [64][D + 8]
  write_rows<E, C, D>(dq, a.scale, Ss, wrow, static_cast<E*>(a.grad_q) + bh * a.Tq * D, q0 + wrow, a.Tq);
#endif
}

// ---------------------------------------------------------------- SIMT

std::size_t simt_dq_smem(int D, int Dv) {
  // Qs [16][D], dOs [16][Dv], Ks [32][D + 1], Vs [32][Dv + 1]
  return sizeof(float) * (static_cast<std::size_t>(kSimtRows) * (D + Dv) + kSimtCols * (D + 1 + Dv + 1));
}
std::size_t simt_dkdv_smem(int D, int Dv) {
  // Ks [16][D], Vs [16][Dv], Qs [32][D + 1], dOs [32][Dv + 1], lse, delta [32]
  return sizeof(float) * (static_cast<std::size_t>(kSimtRows) * (D + Dv) + kSimtCols * (D + 1 + Dv + 1) + 2 * kSimtCols);
}

template <typename T>
__device__ __forceinline__ float ld(const T* p) {
  return to_f32(*p);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) dq_simt_kernel(Args a) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int D = a.D, Dv = a.Dv;
  float* Qs = reinterpret_cast<float*>(smem);
  float* dOs = Qs + kSimtRows * D;
  float* Ks = dOs + kSimtRows * Dv;
  float* Vs = Ks + kSimtCols * (D + 1);
  const std::int64_t qt = blockIdx.x, bh = block_batch_entry(a.B);
  if (bh < 0) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t q0 = qt * kSimtRows;
  const T* go = static_cast<const T*>(a.grad_out);
  for (int idx = threadIdx.x; idx < kSimtRows * D; idx += blockDim.x) {
    const int r = idx / D, c = idx - r * D;
    Qs[idx] = q0 + r < a.Tq ? ld(row_ptr<T>(a.q, a.q_s0, a.q_s1, a.q_st, a.B1, bh, q0 + r) + c) : 0.0f;
  }
  for (int idx = threadIdx.x; idx < kSimtRows * Dv; idx += blockDim.x) {
    const int r = idx / Dv, c = idx - r * Dv;
    dOs[idx] = q0 + r < a.Tq ? ld(go + (bh * a.Tq + q0 + r) * Dv + c) : 0.0f;
  }
  float lse[kSimtRowsPerWarp], delta[kSimtRowsPerWarp], dq[kSimtRowsPerWarp][kChunks];
#pragma unroll
  for (int r = 0; r < kSimtRowsPerWarp; ++r) {
    const std::int64_t i = q0 + warp * kSimtRowsPerWarp + r;
    lse[r] = i < a.Tq ? a.lse[bh * a.Tq + i] : INFINITY;
    delta[r] = i < a.Tq ? a.delta[bh * a.Tq + i] : 0.0f;
#pragma unroll
    for (int e = 0; e < kChunks; ++e) dq[r][e] = 0;
  }
  const std::int64_t kend = kv_tile_end(qt, kSimtRows, kSimtCols, a.Tq, a.Tk, a.causal);
  for (std::int64_t kt = 0; kt < kend; ++kt) {
    const std::int64_t k0 = kt * kSimtCols;
    __syncthreads();
    for (int idx = threadIdx.x; idx < kSimtCols * D; idx += blockDim.x) {
      const int r = idx / D, c = idx - r * D;
      Ks[r * (D + 1) + c] = k0 + r < a.Tk ? ld(row_ptr<T>(a.k, a.k_s0, a.k_s1, a.k_st, a.B1, bh, k0 + r) + c) : 0.0f;
    }
    for (int idx = threadIdx.x; idx < kSimtCols * Dv; idx += blockDim.x) {
      const int r = idx / Dv, c = idx - r * Dv;
      Vs[r * (Dv + 1) + c] = k0 + r < a.Tk ? ld(row_ptr<T>(a.v, a.v_s0, a.v_s1, a.v_st, a.B1, bh, k0 + r) + c) : 0.0f;
    }
    __syncthreads();
    const bool masked = tile_needs_mask(qt, kt, kSimtRows, kSimtCols, a.Tq, a.Tk, a.causal);
    const std::int64_t j = k0 + lane;
    // Keys past Tk have ds = 0: the dS.K loop stops at the last real key (uniform over the warp).
    const int live_keys = static_cast<int>(a.Tk - k0 < kSimtCols ? a.Tk - k0 : kSimtCols);
#pragma unroll
    for (int r = 0; r < kSimtRowsPerWarp; ++r) {
      const int rr = warp * kSimtRowsPerWarp + r;
      const std::int64_t i = q0 + rr;
      float s = 0, dp = 0;
      for (int c = 0; c < D; ++c) s += Qs[rr * D + c] * Ks[lane * (D + 1) + c];
      for (int c = 0; c < Dv; ++c) dp += dOs[rr * Dv + c] * Vs[lane * (Dv + 1) + c];
      const bool live = !masked || score_live(i, j, a.Tq, a.Tk, a.causal);
      const float p = live ? recompute_p(s * a.c, lse[r]) : 0.0f;
      const float ds = grad_score(p, dp * drop_factor(a, bh, i, j), delta[r]);
      for (int jj = 0; jj < live_keys; ++jj) {
        const float dsj = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
        for (int e = 0; e < kChunks; ++e)
          if (lane + 32 * e < D) dq[r][e] += dsj * Ks[jj * (D + 1) + lane + 32 * e];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kSimtRowsPerWarp; ++r) {
    const std::int64_t i = q0 + warp * kSimtRowsPerWarp + r;
    if (i >= a.Tq) continue;
    T* row = static_cast<T*>(a.grad_q) + (bh * a.Tq + i) * D;
#pragma unroll
    for (int e = 0; e < kChunks; ++e)
      if (lane + 32 * e < D) row[lane + 32 * e] = from_f32<T>(dq[r][e] * a.scale);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) dkdv_simt_kernel(Args a) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int D = a.D, Dv = a.Dv;
  float* Ks = reinterpret_cast<float*>(smem);  // this block's 16 keys
  float* Vs = Ks + kSimtRows * D;
  float* Qs = Vs + kSimtRows * Dv;             // 32-query tiles, lane i reads row i
  float* dOs = Qs + kSimtCols * (D + 1);
  float* lse_s = dOs + kSimtCols * (Dv + 1);
  float* delta_s = lse_s + kSimtCols;
  const std::int64_t kt = blockIdx.x, bh = block_batch_entry(a.B);
  if (bh < 0) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t k0 = kt * kSimtRows;  // key tiles of 16 (the block's rows)
  const T* go = static_cast<const T*>(a.grad_out);
  for (int idx = threadIdx.x; idx < kSimtRows * D; idx += blockDim.x) {
    const int r = idx / D, c = idx - r * D;
    Ks[idx] = k0 + r < a.Tk ? ld(row_ptr<T>(a.k, a.k_s0, a.k_s1, a.k_st, a.B1, bh, k0 + r) + c) : 0.0f;
  }
  for (int idx = threadIdx.x; idx < kSimtRows * Dv; idx += blockDim.x) {
    const int r = idx / Dv, c = idx - r * Dv;
    Vs[idx] = k0 + r < a.Tk ? ld(row_ptr<T>(a.v, a.v_s0, a.v_s1, a.v_st, a.B1, bh, k0 + r) + c) : 0.0f;
  }
  float dk[kSimtRowsPerWarp][kChunks], dv[kSimtRowsPerWarp][kChunks];
#pragma unroll
  for (int r = 0; r < kSimtRowsPerWarp; ++r)
#pragma unroll
    for (int e = 0; e < kChunks; ++e) dk[r][e] = dv[r][e] = 0;
  // Query tiles of 32 against key tiles of 16: the roles of BM and BN swap.
  const std::int64_t nq = num_tiles(a.Tq, kSimtCols);
  for (std::int64_t qt = q_tile_begin(kt, kSimtCols, kSimtRows, a.Tq, a.causal); qt < nq; ++qt) {
    const std::int64_t q0 = qt * kSimtCols;
    __syncthreads();
    for (int idx = threadIdx.x; idx < kSimtCols * D; idx += blockDim.x) {
      const int r = idx / D, c = idx - r * D;
      Qs[r * (D + 1) + c] = q0 + r < a.Tq ? ld(row_ptr<T>(a.q, a.q_s0, a.q_s1, a.q_st, a.B1, bh, q0 + r) + c) : 0.0f;
    }
    for (int idx = threadIdx.x; idx < kSimtCols * Dv; idx += blockDim.x) {
      const int r = idx / Dv, c = idx - r * Dv;
      dOs[r * (Dv + 1) + c] = q0 + r < a.Tq ? ld(go + (bh * a.Tq + q0 + r) * Dv + c) : 0.0f;
    }
    for (int r = threadIdx.x; r < kSimtCols; r += blockDim.x) {
      lse_s[r] = q0 + r < a.Tq ? a.lse[bh * a.Tq + q0 + r] : INFINITY;
      delta_s[r] = q0 + r < a.Tq ? a.delta[bh * a.Tq + q0 + r] : 0.0f;
    }
    __syncthreads();
    const bool masked = tile_needs_mask(qt, kt, kSimtCols, kSimtRows, a.Tq, a.Tk, a.causal);
    const std::int64_t i = q0 + lane;
    // Queries past Tq have p = ds = 0: the dV and dK loops stop at the last real query (uniform
    // over the warp).
    const int live_queries = static_cast<int>(a.Tq - q0 < kSimtCols ? a.Tq - q0 : kSimtCols);
#pragma unroll
    for (int r = 0; r < kSimtRowsPerWarp; ++r) {
      const int rr = warp * kSimtRowsPerWarp + r;
      const std::int64_t j = k0 + rr;
      float s = 0, dp = 0;
      for (int c = 0; c < D; ++c) s += Qs[lane * (D + 1) + c] * Ks[rr * D + c];
      for (int c = 0; c < Dv; ++c) dp += dOs[lane * (Dv + 1) + c] * Vs[rr * Dv + c];
      const bool live = !masked || score_live(i, j, a.Tq, a.Tk, a.causal);
      const float p = live ? recompute_p(s * a.c, lse_s[lane]) : 0.0f;
      const float f = drop_factor(a, bh, i, j);
      const float pd = p * f, ds = grad_score(p, dp * f, delta_s[lane]);
      for (int ii = 0; ii < live_queries; ++ii) {
        const float pdi = __shfl_sync(0xffffffffu, pd, ii), dsi = __shfl_sync(0xffffffffu, ds, ii);
#pragma unroll
        for (int e = 0; e < kChunks; ++e) {
          if (lane + 32 * e < Dv) dv[r][e] += pdi * dOs[ii * (Dv + 1) + lane + 32 * e];
          if (lane + 32 * e < D) dk[r][e] += dsi * Qs[ii * (D + 1) + lane + 32 * e];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kSimtRowsPerWarp; ++r) {
    const std::int64_t j = k0 + warp * kSimtRowsPerWarp + r;
    if (j >= a.Tk) continue;
    T* krow = static_cast<T*>(a.grad_k) + (bh * a.Tk + j) * D;
    T* vrow = static_cast<T*>(a.grad_v) + (bh * a.Tk + j) * Dv;
#pragma unroll
    for (int e = 0; e < kChunks; ++e) {
      if (lane + 32 * e < D) krow[lane + 32 * e] = from_f32<T>(dk[r][e] * a.scale);
      if (lane + 32 * e < Dv) vrow[lane + 32 * e] = from_f32<T>(dv[r][e]);
    }
  }
}

}  // namespace

}  // namespace flash

void flash_attn_backward(const FlashAttnParams& p, const AttnOperand& q, const AttnOperand& k, const AttnOperand& v,
                         const void* out, const void* grad_out, const float* lse, float* delta, void* grad_q,
                         void* grad_k, void* grad_v, void* stream) {
  const char* name = "flash_attn_backward";
  flash::check_params(name, p, q, k, v);
  const std::int64_t B = p.B0 * p.B1;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  // Zero-size problems: the gradients that exist are zero.
  if (B * p.Tq == 0 || p.Tk == 0) {
    const std::size_t es = dtype_size(p.dtype);
    if (grad_q && B * p.Tq * p.D > 0)
      CIUIC_CUDA_CHECK(cudaMemsetAsync(grad_q, 0, static_cast<std::size_t>(B * p.Tq * p.D) * es, s));
    if (grad_k && B * p.Tk * p.D > 0)
      CIUIC_CUDA_CHECK(cudaMemsetAsync(grad_k, 0, static_cast<std::size_t>(B * p.Tk * p.D) * es, s));
    if (grad_v && B * p.Tk * p.Dv > 0)
      CIUIC_CUDA_CHECK(cudaMemsetAsync(grad_v, 0, static_cast<std::size_t>(B * p.Tk * p.Dv) * es, s));
    return;
  }
  for (auto [n, ptr] : {std::pair<const char*, const void*>{"out", out}, {"grad_out", grad_out}, {"lse", lse},
                        {"delta", delta}, {"grad_q", grad_q}, {"grad_k", grad_k}, {"grad_v", grad_v}})
    kc::check_ptr(name, n, ptr);
  flash::Args a = flash::make_args(p, q, k, v);
  a.lse = const_cast<float*>(lse);
  a.grad_out = grad_out;
  a.delta = delta;
  a.grad_q = grad_q;
  a.grad_k = grad_k;
  a.grad_v = grad_v;

  kc::dispatch_float(p.dtype, name, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, double>) {
      const std::int64_t rows = B * p.Tq;
      flash::delta_kernel<T><<<static_cast<unsigned>((rows + 3) / 4), flash::kThreads, 0, s>>>(
          static_cast<const T*>(grad_out), static_cast<const T*>(out), delta, rows, static_cast<int>(p.Dv));
      CIUIC_CUDA_CHECK_LAUNCH();
    }
  });

  auto launch = [&](auto kernel, std::int64_t tiles, std::size_t smem) {
    flash::allow_smem(kernel, smem);
    kernel<<<flash::tile_grid(name, tiles, B), flash::kThreads, smem, s>>>(a);
    CIUIC_CUDA_CHECK_LAUNCH();
  };
  const std::int64_t tq_tc = flash::num_tiles(p.Tq, flash::kTcBM), tk_tc = flash::num_tiles(p.Tk, flash::kTcBN);
  // The Tensor Core kernels read grad_out (and write the gradients) in 16-byte vectors: a
  // contiguous view at an odd element offset would be a misaligned access, which ends the CUDA
  // context, so such operands take the SIMT kernels (scalar accesses) instead.
  const bool vec_ok = kc::aligned16(grad_out) && kc::aligned16(grad_q) && kc::aligned16(grad_k) && kc::aligned16(grad_v);
  if (vec_ok && flash_attn_uses_tensor_cores(p, q, k, v)) {
    auto run = [&](auto tag, auto dim) {
      using T = decltype(tag);
      constexpr int D = decltype(dim)::value;
      launch(flash::dkdv_tc_kernel<T, D>, tk_tc, flash::tc_dkdv_smem<D>());
      launch(flash::dq_tc_kernel<T, D>, tq_tc, flash::tc_dq_smem<D>());
    };
    using D64 = std::integral_constant<int, 64>;
    using D128 = std::integral_constant<int, 128>;
    if (p.dtype == DType::f16) {
      if (p.D == 64) run(Half{}, D64{});
      else run(Half{}, D128{});
    } else {
      if (p.D == 64) run(BFloat16{}, D64{});
      else run(BFloat16{}, D128{});
    }
    return;
  }
  const int D = static_cast<int>(p.D), Dv = static_cast<int>(p.Dv);
  const std::int64_t tq = flash::num_tiles(p.Tq, flash::kSimtRows), tk = flash::num_tiles(p.Tk, flash::kSimtRows);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    launch(flash::dkdv_simt_kernel<T>, tk, flash::simt_dkdv_smem(D, Dv));
    launch(flash::dq_simt_kernel<T>, tq, flash::simt_dq_smem(D, Dv));
  };
  switch (p.dtype) {
    case DType::f32: run(float{}); break;
    case DType::f16: run(Half{}); break;
    default: run(BFloat16{}); break;
  }
}

}  // namespace ciuic::kernels
