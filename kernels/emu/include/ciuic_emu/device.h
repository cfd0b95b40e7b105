// The emulated device as CUDA source sees it: force-included (g++ -include) at the top of
// every kernels/src/*.cu after kernels/emu/rewrite_cu.py has rewritten the three
// constructs host C++ cannot express:
//   k<<<grid, block, smem, stream>>>(args)  ->  ::ciuic::emu::launch(k, "k", grid, block, smem, stream)(args)
//   __shared__ T x[N];                       ->  a local holder type + a reference to the block's copy
//   extern __shared__ T x[];                 ->  T* x = the block's dynamic shared memory
// and has put CIUIC_EMU_KERNEL_ENTRY() at the top of every __global__ body (coverage).
// Everything else (threadIdx, __syncthreads, warp shuffles, atomics, the half/bf16
// intrinsics, wmma through <mma.h>) is ordinary host C++ declared here and executed by
// scheduler.cpp: each CUDA thread is a fiber, a block runs on one OS thread, blocks run
// on a pool of OS threads, and every collective is checked against CUDA's rules.
//
// __CUDA_ARCH__ stays undefined: the real headers' inline-PTX branches then take their
// host path (half.h), and the sm_80+ guards of the Tensor Core kernels compile.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "ciuic_emu/engine.h"

// ---- Qualifiers ---------------------------------------------------------------------
// Host mode leaves __launch_bounds__ undefined and __grid_constant__ an annotation;
// both are compile-time hints with no meaning here. __shared__ must never reach the
// compiler: the rewriter replaced every declaration it recognised, and one it missed
// would silently become a per-thread variable, so it is a compile error instead.
#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __grid_constant__
#define __grid_constant__
#undef __global__
#define __global__
#undef __shared__
#define __shared__ static_assert(false, "a __shared__ declaration the emulation rewriter did not recognise");

// ---- Built-in variables -----------------------------------------------------------------
// Real per-OS-thread variables, refreshed by the scheduler on every fiber switch (a fiber
// never moves to another OS thread). Not macros: the runtime headers use gridDim and
// blockDim as parameter names.
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
inline constexpr int warpSize = 32;

namespace ciuic::emu {

struct SourceSite {
  const char* file;
  int line;
};

namespace detail {

// ---- Collectives (scheduler.cpp) --------------------------------------------------------
void syncthreads(SourceSite at);
enum class WarpOp : int { sync, shfl_idx, shfl_up, shfl_down, shfl_xor, ballot, any, all };
// Deposits this lane's value and waits for every lane of `mask`; returns the lane's result
// (the source lane's value, the ballot bits, or 0/1 for any/all).
std::uint64_t warp_collective(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width, SourceSite at);

// ---- Shared memory (scheduler.cpp) ------------------------------------------------------
// The block's copy of one static __shared__ declaration: allocated (bytes, align) by the
// first thread of the block that reaches it, filled with poison, freed at block end. `key`
// identifies the declaration (one per template instantiation).
void* block_shared(const void* key, std::size_t bytes, std::size_t align, SourceSite at);
// The block's dynamic shared memory (the launch's smem bytes, 128-byte aligned, poisoned).
void* block_dynamic_shared(std::size_t align);

// ---- Launch (launch.cpp) ----------------------------------------------------------------
struct LaunchConfig {
  const void* fn;     // the kernel, for cudaFuncSetAttribute's limit
  const char* name;   // the launch site's kernel expression, "fill_kernel<T>"
  SourceSite at;      // the launch site
  dim3 grid, block;
  std::size_t smem;
  cudaStream_t stream;
};
// Runs `thread_body` once per CUDA thread of the grid, in stream order; validates the
// configuration first (a bad one sets the calling thread's last error and runs nothing).
// thread_body is called on the thread's own fiber with the built-in variables set.
struct ThreadBody {
  virtual ~ThreadBody() = default;
  virtual void run() const = 0;
};
void submit(const LaunchConfig& cfg, std::shared_ptr<const ThreadBody> body);

// ---- Coverage ---------------------------------------------------------------------------
template <class Tag>
struct KernelRegistrar {
  static inline KernelRecord* const record = register_kernel(Tag::name());
};
inline void mark_launched(KernelRecord* r) { std::atomic_ref<bool>(r->launched).store(true, std::memory_order_relaxed); }

template <class T>
concept WarpValue = std::is_trivially_copyable_v<T> && sizeof(T) <= 8;

template <WarpValue T>
std::uint64_t to_bits(T v) {
  std::uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <WarpValue T>
T from_bits(std::uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

}  // namespace detail

// Each thread gets its own copy of the arguments (a kernel may write to a by-value
// parameter, as adamw_kernel does).
template <class... P>
struct Launcher {
  void (*fn)(P...);
  detail::LaunchConfig cfg;

  template <class... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    struct Body final : detail::ThreadBody {
      void (*fn)(P...);
      std::tuple<std::decay_t<P>...> args;
      Body(void (*f)(P...), std::tuple<std::decay_t<P>...> t) : fn(f), args(std::move(t)) {}
      // fn takes its parameters by value (a kernel's are), so each thread gets its own copy
      // from the shared tuple, as each GPU thread reads the launch's parameter block.
      void run() const override { std::apply(fn, args); }
    };
    detail::submit(cfg, std::make_shared<const Body>(fn, std::tuple<std::decay_t<P>...>(std::forward<A>(a)...)));
  }
};

template <class... P>
Launcher<P...> launch(void (*fn)(P...), const char* name, dim3 grid, dim3 block, std::size_t smem = 0,
                      cudaStream_t stream = nullptr, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return Launcher<P...>{fn, {reinterpret_cast<const void*>(fn), name, {file, line}, grid, block, smem, stream}};
}

// `__shared__ T x[N]` (rewritten): Holder is a local struct holding the declaration as its
// one member, so alignas / __align__ anywhere in the declaration keep their meaning; the
// allocation is exactly sizeof(Member) so that an overrun is a heap-buffer-overflow.
template <class Holder, class Member>
Member& shared_var(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  static const char key = 0;  // one per declaration and instantiation
  return *static_cast<Member*>(detail::block_shared(&key, sizeof(Member), alignof(Holder), {file, line}));
}

template <class T, std::size_t Align>
T* dynamic_shared() {
  static_assert(Align <= 128, "dynamic shared memory is 128-byte aligned");
  return static_cast<T*>(detail::block_dynamic_shared(Align));
}

}  // namespace ciuic::emu

// The rewriter puts this at the top of every __global__ body. The local tag makes one
// registrar per kernel instantiation, initialised at program start, so the coverage line
// can name instantiations that were never launched.
// CIUIC_EMU_NO_COVERAGE (the emulator's own test kernels, some built to fail): not the
// library's kernels, so not counted.
#ifdef CIUIC_EMU_NO_COVERAGE
#define CIUIC_EMU_KERNEL_ENTRY() ((void)0)
#else
#define CIUIC_EMU_KERNEL_ENTRY()                                                 \
  struct ciuic_emu_kernel_tag {                                                  \
    static const char* name() { return __PRETTY_FUNCTION__; }                    \
  };                                                                             \
  ::ciuic::emu::detail::mark_launched(::ciuic::emu::detail::KernelRegistrar<ciuic_emu_kernel_tag>::record)
#endif

// ---- Synchronisation ------------------------------------------------------------------------
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::ciuic::emu::detail::syncthreads({file, line});
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::ciuic::emu::detail::warp_collective(::ciuic::emu::detail::WarpOp::sync, mask, 0, 0, 32, {file, line});
}
// Fibers of a block run one at a time and blocks share the host's coherent memory: the
// fences need do nothing here (what they order cannot be observed out of order).
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ---- Warp shuffles and votes ------------------------------------------------------------------
#define CIUIC_EMU_SHFL(NAME, OP)                                                                   \
  template <::ciuic::emu::detail::WarpValue T>                                                     \
  T NAME(unsigned mask, T var, int arg, int width = 32, const char* file = __builtin_FILE(),       \
         int line = __builtin_LINE()) {                                                            \
    return ::ciuic::emu::detail::from_bits<T>(::ciuic::emu::detail::warp_collective(               \
        ::ciuic::emu::detail::WarpOp::OP, mask, ::ciuic::emu::detail::to_bits(var), arg, width, {file, line})); \
  }
CIUIC_EMU_SHFL(__shfl_sync, shfl_idx)
CIUIC_EMU_SHFL(__shfl_up_sync, shfl_up)
CIUIC_EMU_SHFL(__shfl_down_sync, shfl_down)
CIUIC_EMU_SHFL(__shfl_xor_sync, shfl_xor)
#undef CIUIC_EMU_SHFL

inline unsigned __ballot_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<unsigned>(::ciuic::emu::detail::warp_collective(::ciuic::emu::detail::WarpOp::ballot, mask,
                                                                     pred != 0, 0, 32, {file, line}));
}
inline int __any_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(
      ::ciuic::emu::detail::warp_collective(::ciuic::emu::detail::WarpOp::any, mask, pred != 0, 0, 32, {file, line}));
}
inline int __all_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(
      ::ciuic::emu::detail::warp_collective(::ciuic::emu::detail::WarpOp::all, mask, pred != 0, 0, 32, {file, line}));
}

// ---- Atomics ----------------------------------------------------------------------------------------
// Through std::atomic_ref: blocks run on several OS threads, and ThreadSanitizer sees them.
template <class T>
inline T ciuic_emu_atomic_add(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_add(v, std::memory_order_relaxed);
}
inline int atomicAdd(int* p, int v) { return ciuic_emu_atomic_add(p, v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return ciuic_emu_atomic_add(p, v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return ciuic_emu_atomic_add(p, v); }
inline float atomicAdd(float* p, float v) { return ciuic_emu_atomic_add(p, v); }
inline double atomicAdd(double* p, double v) { return ciuic_emu_atomic_add(p, v); }
template <class T>
inline T ciuic_emu_atomic_cas(T* p, T compare, T val) {
  std::atomic_ref<T>(*p).compare_exchange_strong(compare, val, std::memory_order_relaxed);
  return compare;  // the old value either way
}
inline int atomicCAS(int* p, int c, int v) { return ciuic_emu_atomic_cas(p, c, v); }
inline unsigned atomicCAS(unsigned* p, unsigned c, unsigned v) { return ciuic_emu_atomic_cas(p, c, v); }
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long c, unsigned long long v) {
  return ciuic_emu_atomic_cas(p, c, v);
}
template <class T>
inline T ciuic_emu_atomic_exch(T* p, T v) {
  return std::atomic_ref<T>(*p).exchange(v, std::memory_order_relaxed);
}
inline int atomicExch(int* p, int v) { return ciuic_emu_atomic_exch(p, v); }
inline unsigned atomicExch(unsigned* p, unsigned v) { return ciuic_emu_atomic_exch(p, v); }
inline unsigned long long atomicExch(unsigned long long* p, unsigned long long v) { return ciuic_emu_atomic_exch(p, v); }
inline float atomicExch(float* p, float v) { return ciuic_emu_atomic_exch(p, v); }
template <class T>
inline T ciuic_emu_atomic_max(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load(std::memory_order_relaxed);
  while (old < v && !a.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
  }
  return old;
}
template <class T>
inline T ciuic_emu_atomic_min(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load(std::memory_order_relaxed);
  while (v < old && !a.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
  }
  return old;
}
inline int atomicMax(int* p, int v) { return ciuic_emu_atomic_max(p, v); }
inline unsigned atomicMax(unsigned* p, unsigned v) { return ciuic_emu_atomic_max(p, v); }
inline long long atomicMax(long long* p, long long v) { return ciuic_emu_atomic_max(p, v); }
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) { return ciuic_emu_atomic_max(p, v); }
inline int atomicMin(int* p, int v) { return ciuic_emu_atomic_min(p, v); }
inline unsigned atomicMin(unsigned* p, unsigned v) { return ciuic_emu_atomic_min(p, v); }
inline long long atomicMin(long long* p, long long v) { return ciuic_emu_atomic_min(p, v); }
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) { return ciuic_emu_atomic_min(p, v); }

// ---- Math and bit intrinsics the headers provide only under nvcc ----------------------------------
// Correctly rounded IEEE operations: the host's are, and -ffp-contract=off keeps them unfused.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline long long __double_as_longlong(double d) {
  long long v;
  std::memcpy(&v, &d, sizeof v);
  return v;
}
inline double __longlong_as_double(long long v) {
  double d;
  std::memcpy(&d, &v, sizeof d);
  return d;
}
inline unsigned __float_as_uint(float f) {
  unsigned v;
  std::memcpy(&v, &f, sizeof v);
  return v;
}
inline float __uint_as_float(unsigned v) {
  float f;
  std::memcpy(&f, &v, sizeof f);
  return f;
}
inline int __float_as_int(float f) {
  int v;
  std::memcpy(&v, &f, sizeof v);
  return v;
}
inline float __int_as_float(int v) {
  float f;
  std::memcpy(&f, &v, sizeof f);
  return f;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }

// ---- Runtime calls that nvcc's cuda_runtime.h overloads for kernel pointers ---------------------
template <class... P>
cudaError_t cudaFuncSetAttribute(void (*fn)(P...), cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(fn), attr, value);
}
