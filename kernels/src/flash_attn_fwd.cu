// Flash-attention forward (see ciuic/kernels/flash_attn.h). Per block: one tile of
// query rows of one batch entry (grid x = query tile, y = bh). Key tiles are
// visited in increasing order up to kv_tile_end (causal tiles past the diagonal
// are skipped); per tile, each query row updates its running max m and sum l
// (log2 units) and rescales its output accumulator by exp2(m_old - m_new). Only
// out and lse = (m + log2 l) ln 2 are written.
//
// Tensor Core kernel (f16/bf16, D == Dv in {64, 128}): 4 warps x 16 query rows,
// 64-key tiles; S = Q K^T and O += P V on wmma 16x16x16 with f32 accumulation.
// Shared memory (2-byte tiles pitch D + 8, f32 tiles pitch cols + 8; see the
// bank-group rule in flash_attn_math.h):
//   Qs, Ks, Vs [64][D + 8]   Ss f32 [64][72]   Ps [64][72]   Os f32 [64][D + 8]
// A lane pair owns one query row: lane/2 is the row in the warp's 16, lane%2
// picks the float4 columns 4*(lane%2) + 8e of the S and O staging tiles.
//
// SIMT kernel (f32, other head dims <= 256, unaligned views): 4 warps x 4 query
// rows against 32-key tiles, lane j scoring key j; the output row is spread over
// the lanes (column lane + 32e).
#include <mma.h>

#include "flash_attn_common.cuh"

namespace ciuic::kernels {

namespace flash {

void check_params(const char* name, const FlashAttnParams& p, const AttnOperand& q, const AttnOperand& k,
                  const AttnOperand& v) {
  CIUIC_CHECK(p.dtype == DType::f32 || p.dtype == DType::f16 || p.dtype == DType::bf16, NotImplementedError, name,
              "dtype ", dtype_name(p.dtype), "; expected f32, f16 or bf16");
  CIUIC_CHECK(p.B0 >= 0 && p.B1 >= 0 && p.Tq >= 0 && p.Tk >= 0 && p.D >= 0 && p.Dv >= 0, ValueError, name,
              "sizes B0 ", p.B0, ", B1 ", p.B1, ", Tq ", p.Tq, ", Tk ", p.Tk, ", D ", p.D, ", Dv ", p.Dv,
              "; expected sizes >= 0");
  CIUIC_CHECK(p.D <= kFlashMaxHeadDim && p.Dv <= kFlashMaxHeadDim, NotImplementedError, name, "head dims D = ", p.D,
              ", Dv = ", p.Dv, "; expected D, Dv <= ", kFlashMaxHeadDim);
  CIUIC_CHECK(p.dropout_p >= 0 && p.dropout_p < 1, ValueError, name, "dropout_p = ", p.dropout_p,
              "; expected [0, 1)");
  CIUIC_CHECK(std::isfinite(p.scale), ValueError, name, "scale = ", p.scale, "; expected a finite scale");
  if (p.B0 * p.B1 * p.Tq == 0) return;
  kc::check_ptr(name, "q", q.ptr);
  if (p.Tk > 0) {
    kc::check_ptr(name, "k", k.ptr);
    kc::check_ptr(name, "v", v.ptr);
  }
}

dim3 tile_grid(const char* name, std::int64_t tiles, std::int64_t B) {
  constexpr std::int64_t kMaxYZ = 65535;
  const std::int64_t z = (B + kMaxYZ - 1) / kMaxYZ, y = z > 0 ? (B + z - 1) / z : 0;
  CIUIC_CHECK(tiles <= 0x7fffffffLL && z <= kMaxYZ, NotImplementedError, name, tiles, " tiles x ", B,
              " batch entries; expected at most 2^31 - 1 tiles and 65535^2 batch entries (heads x batch) per launch");
  return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(y), static_cast<unsigned>(z));
}

void raise_smem_limit(const void* kernel, std::size_t bytes) {
  if (bytes <= 48 * 1024) return;
  int device = 0;
  CIUIC_CUDA_CHECK(cudaGetDevice(&device));
  static std::mutex m;
  static std::map<std::pair<int, const void*>, std::size_t> raised;  // (device, kernel) -> limit set
  std::lock_guard<std::mutex> lock(m);
  std::size_t& limit = raised[{device, kernel}];
  if (bytes <= limit) return;
  CIUIC_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  limit = bytes;
}

const DeviceLimits& device_limits() {
  int device = 0;
  CIUIC_CUDA_CHECK(cudaGetDevice(&device));
  static std::mutex m;
  static std::map<int, DeviceLimits> cache;
  std::lock_guard<std::mutex> lock(m);
  auto it = cache.find(device);
  if (it == cache.end()) {
    DeviceLimits l;
    int optin = 0;
    CIUIC_CUDA_CHECK(cudaDeviceGetAttribute(&l.cc_major, cudaDevAttrComputeCapabilityMajor, device));
    CIUIC_CUDA_CHECK(cudaDeviceGetAttribute(&l.cc_minor, cudaDevAttrComputeCapabilityMinor, device));
    CIUIC_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    l.smem_optin = static_cast<std::size_t>(optin);
    it = cache.emplace(device, l).first;
  }
  return it->second;  // map nodes are stable
}

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kThreads = 128;

// ---------------------------------------------------------------- Tensor Cores

// tc_fwd_smem: flash_attn_common.cuh.

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) fwd_tc_kernel(Args a) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using C = Cuda16<T>;
  using E = typename C::type;
  constexpr int PH = D + 8, PS = kTcBN + 8, PP = kTcBN + 8, PO = D + 8;
  extern __shared__ __align__(128) unsigned char smem[];
  E* Qs = reinterpret_cast<E*>(smem);
  E* Ks = Qs + kTcBM * PH;
  E* Vs = Ks + kTcBN * PH;
  float* Ss = reinterpret_cast<float*>(Vs + kTcBN * PH);
  E* Ps = reinterpret_cast<E*>(Ss + kTcBM * PS);
  float* Os = reinterpret_cast<float*>(Ps + kTcBM * PP);

  const std::int64_t qt = blockIdx.x, bh = block_batch_entry(a.B);
  if (bh < 0) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, lr = lane / 2, h = lane % 2;
  const int wrow = warp * 16;
  const std::int64_t q0 = qt * kTcBM, i = q0 + wrow + lr;  // this lane's query row

  load_tile16<D>(Qs, row_ptr<E>(a.q, a.q_s0, a.q_s1, a.q_st, a.B1, bh, q0), a.q_st, kTcBM,
                 static_cast<int>(tile_rows(qt, a.Tq, kTcBM)));
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> qf[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) wmma::load_matrix_sync(qf[kk], Qs + wrow * PH + kk * 16, PH);

  float m = -INFINITY, l = 0;
  float o[D / 2];
#pragma unroll
  for (int e = 0; e < D / 2; ++e) o[e] = 0;

  const std::int64_t kend = kv_tile_end(qt, kTcBM, kTcBN, a.Tq, a.Tk, a.causal);
  for (std::int64_t kt = 0; kt < kend; ++kt) {
    const std::int64_t k0 = kt * kTcBN;
    const int kvalid = static_cast<int>(tile_rows(kt, a.Tk, kTcBN));
    __syncthreads();  // every warp is done with the previous K, V
    load_tile16<D>(Ks, row_ptr<E>(a.k, a.k_s0, a.k_s1, a.k_st, a.B1, bh, k0), a.k_st, kTcBN, kvalid);
    load_tile16<D>(Vs, row_ptr<E>(a.v, a.v_s0, a.v_s1, a.v_st, a.B1, bh, k0), a.v_st, kTcBN, kvalid);
    __syncthreads();

    // S (16 x 64) of this warp's rows.
#pragma unroll
    for (int n = 0; n < kTcBN / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::col_major> kf;  // K^T
        wmma::load_matrix_sync(kf, Ks + n * 16 * PH + kk * 16, PH);
        wmma::mma_sync(acc, qf[kk], kf, acc);
      }
      wmma::store_matrix_sync(Ss + wrow * PS + n * 16, acc, PS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax over this lane's 32 scores of row i.
    const bool masked = tile_needs_mask(qt, kt, kTcBM, kTcBN, a.Tq, a.Tk, a.causal);
    float t[kTcBN / 2];
    float mx = -INFINITY;
#pragma unroll
    for (int g = 0; g < kTcBN / 8; ++g) {
      const float4 s4 = *reinterpret_cast<const float4*>(Ss + (wrow + lr) * PS + 8 * g + 4 * h);
      const float sv[4] = {s4.x, s4.y, s4.z, s4.w};
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const std::int64_t j = k0 + 8 * g + 4 * h + u;
        float x = sv[u] * a.c;
        if (masked && !score_live(i, j, a.Tq, a.Tk, a.causal)) x = -INFINITY;
        t[4 * g + u] = x;
        mx = fmaxf(mx, x);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m, mx), alpha = online_alpha(m, m_new);
    float ps = 0;
#pragma unroll
    for (int g = 0; g < kTcBN / 8; ++g) {
      float pv[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const float pr = online_p(t[4 * g + u], m_new);
        ps += pr;
        pv[u] = dropout_on(a) ? pr * drop_factor(a, bh, i, k0 + 8 * g + 4 * h + u) : pr;
      }
      store4<E, C>(Ps + (wrow + lr) * PP + 8 * g + 4 * h, pv[0], pv[1], pv[2], pv[3]);
    }
    ps += __shfl_xor_sync(0xffffffffu, ps, 1);
    l = l * alpha + ps;
    m = m_new;
    __syncwarp();

    // O_tile (16 x D) = P (16 x 64) V (64 x D), staged in Os, folded into o.
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int kk = 0; kk < kTcBN / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> pf;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::row_major> vf;
        wmma::load_matrix_sync(pf, Ps + wrow * PP + kk * 16, PP);
        wmma::load_matrix_sync(vf, Vs + kk * 16 * PH + n * 16, PH);
        wmma::mma_sync(acc, pf, vf, acc);
      }
      wmma::store_matrix_sync(Os + wrow * PO + n * 16, acc, PO, wmma::mem_row_major);
    }
    __syncwarp();
#pragma unroll
    for (int g = 0; g < D / 8; ++g) {
      const float4 v4 = *reinterpret_cast<const float4*>(Os + (wrow + lr) * PO + 8 * g + 4 * h);
      o[4 * g + 0] = o[4 * g + 0] * alpha + v4.x;
      o[4 * g + 1] = o[4 * g + 1] * alpha + v4.y;
      o[4 * g + 2] = o[4 * g + 2] * alpha + v4.z;
      o[4 * g + 3] = o[4 * g + 3] * alpha + v4.w;
    }
    __syncwarp();  // Os is rewritten by the next tile's P V
  }

  if (i < a.Tq) {
    const float inv = inv_row_sum(l);
    E* orow = static_cast<E*>(a.out) + (bh * a.Tq + i) * D;
#pragma unroll
    for (int g = 0; g < D / 8; ++g)
      store4<E, C>(orow + 8 * g + 4 * h, o[4 * g] * inv, o[4 * g + 1] * inv, o[4 * g + 2] * inv,
                   o[4 * g + 3] * inv);
    if (h == 0) a.lse[bh * a.Tq + i] = lse_from_stats(m, l);
  }
#endif
}

// ---------------------------------------------------------------- SIMT

constexpr int kChunks = kFlashMaxHeadDim / 32;  // output columns per lane: lane + 32e

std::size_t simt_fwd_smem(int D, int Dv) {
  return sizeof(float) * (static_cast<std::size_t>(kSimtRows) * D + kSimtCols * (D + 1) + kSimtCols * Dv);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) fwd_simt_kernel(Args a) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int D = a.D, Dv = a.Dv, KP = D + 1;
  float* Qs = reinterpret_cast<float*>(smem);  // [16][D]
  float* Ks = Qs + kSimtRows * D;              // [32][D + 1]: lane j reads row j, conflict-free
  float* Vs = Ks + kSimtCols * KP;             // [32][Dv]
  const std::int64_t qt = blockIdx.x, bh = block_batch_entry(a.B);
  if (bh < 0) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t q0 = qt * kSimtRows;

  for (int idx = threadIdx.x; idx < kSimtRows * D; idx += blockDim.x) {
    const int r = idx / D, c = idx - r * D;
    Qs[idx] = q0 + r < a.Tq ? to_f32(row_ptr<T>(a.q, a.q_s0, a.q_s1, a.q_st, a.B1, bh, q0 + r)[c]) : 0.0f;
  }
  float m[kSimtRowsPerWarp], l[kSimtRowsPerWarp], o[kSimtRowsPerWarp][kChunks];
#pragma unroll
  for (int r = 0; r < kSimtRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0;
#pragma unroll
    for (int e = 0; e < kChunks; ++e) o[r][e] = 0;
  }
  const std::int64_t kend = kv_tile_end(qt, kSimtRows, kSimtCols, a.Tq, a.Tk, a.causal);
  for (std::int64_t kt = 0; kt < kend; ++kt) {
    const std::int64_t k0 = kt * kSimtCols;
    __syncthreads();
    for (int idx = threadIdx.x; idx < kSimtCols * D; idx += blockDim.x) {
      const int r = idx / D, c = idx - r * D;
      Ks[r * KP + c] =
          k0 + r < a.Tk ? to_f32(row_ptr<T>(a.k, a.k_s0, a.k_s1, a.k_st, a.B1, bh, k0 + r)[c]) : 0.0f;
    }
    for (int idx = threadIdx.x; idx < kSimtCols * Dv; idx += blockDim.x) {
      const int r = idx / Dv, c = idx - r * Dv;
      Vs[idx] = k0 + r < a.Tk ? to_f32(row_ptr<T>(a.v, a.v_s0, a.v_s1, a.v_st, a.B1, bh, k0 + r)[c]) : 0.0f;
    }
    __syncthreads();
    const bool masked = tile_needs_mask(qt, kt, kSimtRows, kSimtCols, a.Tq, a.Tk, a.causal);
    const std::int64_t j = k0 + lane;
    // Keys past Tk have p = 0 (and zero V rows): the P.V loop stops at the last real key
    // (uniform over the warp, so the full-mask shuffles stay convergent).
    const int live_keys = static_cast<int>(a.Tk - k0 < kSimtCols ? a.Tk - k0 : kSimtCols);
#pragma unroll
    for (int r = 0; r < kSimtRowsPerWarp; ++r) {
      const int rr = warp * kSimtRowsPerWarp + r;
      const std::int64_t i = q0 + rr;
      float s = 0;
      for (int c = 0; c < D; ++c) s += Qs[rr * D + c] * Ks[lane * KP + c];
      float t = s * a.c;
      if (masked && !score_live(i, j, a.Tq, a.Tk, a.causal)) t = -INFINITY;
      float mx = t;
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float m_new = fmaxf(m[r], mx), alpha = online_alpha(m[r], m_new);
      const float p = online_p(t, m_new);
      float ps = p;
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, off);
      l[r] = l[r] * alpha + ps;
      m[r] = m_new;
      const float pd = p * drop_factor(a, bh, i, j);
#pragma unroll
      for (int e = 0; e < kChunks; ++e) o[r][e] *= alpha;
      for (int jj = 0; jj < live_keys; ++jj) {
        const float pj = __shfl_sync(0xffffffffu, pd, jj);
#pragma unroll
        for (int e = 0; e < kChunks; ++e)
          if (lane + 32 * e < Dv) o[r][e] += pj * Vs[jj * Dv + lane + 32 * e];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kSimtRowsPerWarp; ++r) {
    const std::int64_t i = q0 + warp * kSimtRowsPerWarp + r;
    if (i >= a.Tq) continue;
    const float inv = inv_row_sum(l[r]);
    T* orow = static_cast<T*>(a.out) + (bh * a.Tq + i) * Dv;
#pragma unroll
    for (int e = 0; e < kChunks; ++e)
      if (lane + 32 * e < Dv) orow[lane + 32 * e] = from_f32<T>(o[r][e] * inv);
    if (lane == 0) a.lse[bh * a.Tq + i] = lse_from_stats(m[r], l[r]);
  }
}

}  // namespace

}  // namespace flash

bool flash_attn_uses_tensor_cores(const FlashAttnParams& p, const AttnOperand& q, const AttnOperand& k,
                                  const AttnOperand& v) {
  if (p.dtype != DType::f16 && p.dtype != DType::bf16) return false;
  if (p.D != p.Dv || (p.D != 64 && p.D != 128)) return false;
  // The Tensor Core kernels use mma.sync for f16/bf16, which needs sm_80; their bodies are
  // compiled only for sm_80+ (below that they are empty and would leave the output unwritten),
  // so the kernel nvcc built for this device must be sm_80+ as well.
  const flash::DeviceLimits& dev = flash::device_limits();
  if (dev.cc_major < 8) return false;
  cudaFuncAttributes fa{};
  CIUIC_CUDA_CHECK(cudaFuncGetAttributes(&fa, reinterpret_cast<const void*>(flash::fwd_tc_kernel<Half, 64>)));
  if (fa.binaryVersion < 80) return false;
  // Forward and backward share this choice, so both must fit the device's opt-in shared memory
  // (D = 128 needs 112-122.5 KiB: fine on sm_80/90, not on sm_86/89's 99 KiB).
  const std::size_t need = p.D == 64 ? flash::tc_max_smem<64>() : flash::tc_max_smem<128>();
  if (need > dev.smem_optin) return false;
  for (const AttnOperand* o : {&q, &k, &v}) {
    if ((reinterpret_cast<std::uintptr_t>(o->ptr) & 15u) != 0) return false;
    if (o->stride_b0 % 8 != 0 || o->stride_b1 % 8 != 0 || o->stride_t % 8 != 0) return false;  // 16-byte rows
  }
  return true;
}

void flash_attn_forward(const FlashAttnParams& p, const AttnOperand& q, const AttnOperand& k, const AttnOperand& v,
                        void* out, float* lse, void* stream) {
  const char* name = "flash_attn_forward";
  flash::check_params(name, p, q, k, v);
  const std::int64_t B = p.B0 * p.B1;
  if (B * p.Tq == 0) return;
  kc::check_ptr(name, "out", out);
  kc::check_ptr(name, "lse", lse);
  flash::Args a = flash::make_args(p, q, k, v);
  a.out = out;
  a.lse = lse;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (flash_attn_uses_tensor_cores(p, q, k, v)) {
    const dim3 grid = flash::tile_grid(name, flash::num_tiles(p.Tq, flash::kTcBM), B);
    auto launch = [&](auto kernel, std::size_t smem) {
      flash::allow_smem(kernel, smem);
      kernel<<<grid, flash::kThreads, smem, s>>>(a);
      CIUIC_CUDA_CHECK_LAUNCH();
    };
    if (p.dtype == DType::f16) {
      if (p.D == 64) launch(flash::fwd_tc_kernel<Half, 64>, flash::tc_fwd_smem<64>());
      else launch(flash::fwd_tc_kernel<Half, 128>, flash::tc_fwd_smem<128>());
    } else {
      if (p.D == 64) launch(flash::fwd_tc_kernel<BFloat16, 64>, flash::tc_fwd_smem<64>());
      else launch(flash::fwd_tc_kernel<BFloat16, 128>, flash::tc_fwd_smem<128>());
    }
    return;
  }
  const dim3 grid = flash::tile_grid(name, flash::num_tiles(p.Tq, flash::kSimtRows), B);
  const std::size_t smem = flash::simt_fwd_smem(static_cast<int>(p.D), static_cast<int>(p.Dv));
  auto launch = [&](auto kernel) {
    flash::allow_smem(kernel, smem);
    kernel<<<grid, flash::kThreads, smem, s>>>(a);
    CIUIC_CUDA_CHECK_LAUNCH();
  };
  switch (p.dtype) {
    case DType::f32: launch(flash::fwd_simt_kernel<float>); break;
    case DType::f16: launch(flash::fwd_simt_kernel<Half>); break;
    default: launch(flash::fwd_simt_kernel<BFloat16>); break;
  }
}

}  // namespace ciuic::kernels
