// Private helpers of the hand-written kernels (elementwise, reduce, softmax,
// layernorm, embedding, cross_entropy, dropout):
//   - host-side argument checks that throw ciuic errors naming the kernel,
//   - loads/stores between storage types and the arithmetic type,
//   - warp / block reductions over the states of ciuic/kernels/reduce_math.h,
//   - the row-to-thread-group mapping of ciuic/kernels/launch_plan.h.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "ciuic/dtype.h"
#include "ciuic/error.h"
#include "ciuic/kernels/launch_plan.h"
#include "ciuic/kernels/reduce_math.h"
#include "ciuic/strided.h"

namespace ciuic::kernels::kc {

// ---------------------------------------------------------------------------
// Host-side checks. Messages: "<kernel>: <what was wrong>; expected <what>".
// ---------------------------------------------------------------------------

inline void check_size(const char* op, const char* name, std::int64_t v) {
  CIUIC_CHECK(v >= 0, ValueError, op, name, " = ", v, "; expected a size >= 0");
}

inline void check_floating_dtype(const char* op, DType t) {
  CIUIC_CHECK(is_floating(t), DTypeError, op, "got dtype ", dtype_name(t),
              "; expected a floating dtype (f32, f64, f16, bf16)");
}

inline void check_index_dtype(const char* op, const char* name, DType t) {
  CIUIC_CHECK(t == DType::i32 || t == DType::i64, DTypeError, op, name, " has dtype ", dtype_name(t),
              "; expected i32 or i64");
}

inline void check_ptr(const char* op, const char* name, const void* p) {
  CIUIC_CHECK(p != nullptr, ValueError, op, "pointer '", name, "' is null; expected device memory");
}

// The layout has shape of n elements in total (the output's shape), valid dims.
inline void check_layout(const char* op, const char* name, const StridedLayout& l, std::int64_t n) {
  CIUIC_CHECK(l.ndim >= 0 && l.ndim <= kMaxDims, ValueError, op, "layout '", name, "' has ndim ", l.ndim,
              "; expected 0..", kMaxDims);
  std::int64_t numel = 1;
  for (int d = 0; d < l.ndim; ++d) {
    CIUIC_CHECK(l.shape[d] >= 0, ValueError, op, "layout '", name, "' has size ", l.shape[d], " in dim ", d,
                "; expected sizes >= 0");
    numel *= l.shape[d];
  }
  CIUIC_CHECK(numel == n, ShapeError, op, "layout '", name, "' holds ", numel, " elements but n = ", n,
              "; expected the output's shape (broadcast dims with stride 0)");
}

inline bool same_shape(const StridedLayout& a, const StridedLayout& b) {
  if (a.ndim != b.ndim) return false;
  for (int d = 0; d < a.ndim; ++d)
    if (a.shape[d] != b.shape[d]) return false;
  return true;
}

inline void check_same_shape(const char* op, const char* na, const StridedLayout& a, const char* nb,
                             const StridedLayout& b) {
  CIUIC_CHECK(same_shape(a, b), ShapeError, op, "layouts '", na, "' and '", nb,
              "' differ in shape; expected both in the output's (broadcast) shape");
}

inline void check_workspace(const char* op, std::size_t needed, const void* ws, std::size_t bytes) {
  CIUIC_CHECK(needed == 0 || (ws != nullptr && bytes >= needed), ValueError, op, "workspace of ", bytes,
              " bytes at ", ws, "; expected at least ", needed, " bytes (see the *_workspace_bytes query)");
}

inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Floating storage dispatch (f32, f64, f16, bf16); others throw DTypeError naming op.
template <typename F>
void dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::f16: f(Half{}); return;
    case DType::bf16: f(BFloat16{}); return;
    default: break;
  }
  ::ciuic::detail::fail<DTypeError>(op, "got dtype ", dtype_name(t),
                                    "; expected a floating dtype (f32, f64, f16, bf16)");
}

// ---------------------------------------------------------------------------
// Storage <-> arithmetic type.
// ---------------------------------------------------------------------------

template <typename T>
constexpr bool is_half_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

template <typename T>
__device__ __forceinline__ acc_t<T> load(const T* p) {
  return static_cast<acc_t<T>>(*p);
}
template <typename T>
__device__ __forceinline__ acc_t<T> to_acc(T v) {
  return static_cast<acc_t<T>>(v);
}
template <typename T, typename A>
__device__ __forceinline__ T from_acc(A v) {
  if constexpr (is_half_v<T>) return T(static_cast<float>(v));
  else return static_cast<T>(v);
}

// 16 bytes of T, loaded and stored as one vector access (the pointer must be 16-byte aligned).
template <typename T>
struct alignas(16) Pack {
  static constexpr int kWidth = 16 / static_cast<int>(sizeof(T));
  T v[kWidth];
};

// ---------------------------------------------------------------------------
// Warp shuffles of scalars and reduction states.
// ---------------------------------------------------------------------------

constexpr unsigned kFullMask = 0xffffffffu;

enum class Sh { down, idx };

template <Sh M, typename V>
__device__ __forceinline__ V shfl_raw(V v, int arg) {
  if constexpr (M == Sh::down) return __shfl_down_sync(kFullMask, v, arg);
  else return __shfl_sync(kFullMask, v, arg);
}

template <Sh M> __device__ __forceinline__ float shfl(float v, int a) { return shfl_raw<M>(v, a); }
template <Sh M> __device__ __forceinline__ double shfl(double v, int a) { return shfl_raw<M>(v, a); }
template <Sh M> __device__ __forceinline__ std::int64_t shfl(std::int64_t v, int a) {
  return static_cast<std::int64_t>(shfl_raw<M>(static_cast<long long>(v), a));
}
template <Sh M, typename A>
__device__ __forceinline__ WelfordState<A> shfl(WelfordState<A> s, int a) {
  s.mean = shfl<M>(s.mean, a);
  s.m2 = shfl<M>(s.m2, a);
  s.n = shfl<M>(s.n, a);
  return s;
}
template <Sh M, typename A>
__device__ __forceinline__ ArgMaxState<A> shfl(ArgMaxState<A> s, int a) {
  s.v = shfl<M>(s.v, a);
  s.i = shfl<M>(s.i, a);
  return s;
}
template <Sh M, typename A>
__device__ __forceinline__ SoftmaxState<A> shfl(SoftmaxState<A> s, int a) {
  s.m = shfl<M>(s.m, a);
  s.s = shfl<M>(s.s, a);
  return s;
}
template <Sh M, typename A>
__device__ __forceinline__ SumPair<A> shfl(SumPair<A> s, int a) {
  s.a = shfl<M>(s.a, a);
  s.b = shfl<M>(s.b, a);
  return s;
}

// Lane 0 ends with merge over the 32 lanes, lower lanes always on the left, in a
// fixed tree (offsets 16, 8, 4, 2, 1).
template <typename S, typename M>
__device__ __forceinline__ S warp_reduce(S s, M merge) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s = merge(s, shfl<Sh::down>(s, o));
  return s;
}

// Every lane gets lane 0's result (identical bits in all lanes).
template <typename S, typename M>
__device__ __forceinline__ S warp_allreduce(S s, M merge) {
  return shfl<Sh::idx>(warp_reduce(s, merge), 0);
}

// Every thread of the block gets the same merge over all threads (blockDim.x a
// multiple of 32, at most 1024). All threads must call it. Safe to call repeatedly.
template <typename S, typename M>
__device__ __forceinline__ S block_allreduce(S s, M merge) {
  __shared__ alignas(16) unsigned char raw[33 * sizeof(S)];
  S* sh = reinterpret_cast<S*>(raw);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  s = warp_reduce(s, merge);
  __syncthreads();  // readers of a previous call are done with sh
  if (lane == 0) sh[warp] = s;
  __syncthreads();
  if (warp == 0) {
    S t = lane < nwarps ? sh[lane] : S{};
    t = warp_reduce(t, merge);
    if (lane == 0) sh[32] = t;
  }
  __syncthreads();
  return sh[32];
}

// ---------------------------------------------------------------------------
// Rows mapped to thread groups (see plan::row_group_threads): kWarp: a warp per
// row, plan::kRowBlockThreads threads per block; otherwise the whole block per row.
// ---------------------------------------------------------------------------

template <bool kWarp>
struct RowGroup {
  __device__ static int rank() { return kWarp ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x); }
  __device__ static int size() { return kWarp ? 32 : static_cast<int>(blockDim.x); }
  __device__ static std::int64_t first_row() {
    return kWarp ? static_cast<std::int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5)
                 : static_cast<std::int64_t>(blockIdx.x);
  }
  __device__ static std::int64_t row_stride() {
    return kWarp ? static_cast<std::int64_t>(gridDim.x) * (blockDim.x >> 5) : static_cast<std::int64_t>(gridDim.x);
  }
  // Merge over the group; every thread of the group gets the result. In block mode all
  // threads of the block must call it (the row loop is uniform over the block).
  template <typename S, typename M>
  __device__ static S allreduce(S s, M merge) {
    if constexpr (kWarp) return warp_allreduce(s, merge);
    else return block_allreduce(s, merge);
  }
};

// The largest block a row kernel is launched with (plan::row_group_threads). Row
// kernels declare their bound in __launch_bounds__ so the compiler keeps them within
// the registers that block size allows; without it a debug (-G) build could not
// launch them.
constexpr int kMaxRowThreads = 1024;
// The bound of one instantiation: plan::row_threads_bound (warp mode 128, block mode 1024).
constexpr int row_threads_bound(bool warp) { return plan::row_threads_bound(warp); }
static_assert(plan::row_threads_bound(false) == kMaxRowThreads);

// Launch shape for `rows` rows of length `len` (see plan::row_group_threads).
struct RowLaunch {
  bool warp = true;
  unsigned block = 128;
  unsigned grid = 1;
};
inline RowLaunch row_launch(std::int64_t rows, std::int64_t len) {
  RowLaunch l;
  const int g = plan::row_group_threads(len);
  l.warp = g == 32;
  l.block = l.warp ? static_cast<unsigned>(plan::kRowBlockThreads) : static_cast<unsigned>(g);
  l.grid = plan::grid_blocks(rows, plan::rows_per_block(g));
  return l;
}

// Merge functors (device lambdas would need --extended-lambda).
struct SumMerge {
  template <typename A>
  __device__ A operator()(A a, A b) const { return a + b; }
};
struct SumPairMerge {
  template <typename A>
  __device__ SumPair<A> operator()(SumPair<A> a, SumPair<A> b) const { return sum_pair_merge(a, b); }
};
struct WelfordMerge {
  template <typename A>
  __device__ WelfordState<A> operator()(WelfordState<A> a, WelfordState<A> b) const { return welford_merge(a, b); }
};
struct ArgMaxMerge {
  template <typename A>
  __device__ ArgMaxState<A> operator()(ArgMaxState<A> a, ArgMaxState<A> b) const { return argmax_merge(a, b); }
};
struct SoftmaxMerge {
  template <typename A>
  __device__ SoftmaxState<A> operator()(SoftmaxState<A> a, SoftmaxState<A> b) const { return softmax_merge(a, b); }
};

__device__ __forceinline__ std::int64_t global_thread() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t grid_threads() {
  return static_cast<std::int64_t>(gridDim.x) * blockDim.x;
}

}  // namespace ciuic::kernels::kc
