// Dropout forward/backward (see ciuic/kernels/dropout.h). One Philox evaluation per
// element (word 0 of counter first + i), as the CPU reference; 16-byte packs when
// both buffers are aligned, scalar otherwise and for the tail.
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/dropout_mask.h"
#include "ciuic/kernels/dropout.h"
#include "ciuic/kernels/elementwise_math.h"
#include "kernel_common.cuh"

namespace ciuic::kernels {

namespace {

constexpr int kBlock = 256;

template <typename T>
__device__ __forceinline__ T drop_one(T x, std::uint64_t seed, std::uint64_t index, std::uint32_t threshold,
                                      acc_t<T> scale) {
  return kc::from_acc<T>(math::dropout_value(kc::to_acc(x), dropout_keep(seed, index, threshold), scale));
}

template <typename T, bool kVec>
__global__ void dropout_kernel(T* out, const T* x, std::int64_t n, std::uint64_t seed, std::uint64_t first,
                               std::uint32_t threshold, acc_t<T> scale) {
  if constexpr (kVec) {
    using P = kc::Pack<T>;
    constexpr int W = P::kWidth;
    const plan::VecSplit sp = plan::vec_split(n, W);
    for (std::int64_t iv = kc::global_thread(); iv < sp.vectors; iv += kc::grid_threads()) {
      const P in = reinterpret_cast<const P*>(x)[iv];
      P o;
      const std::uint64_t base = first + static_cast<std::uint64_t>(iv * W);
#pragma unroll
      for (int w = 0; w < W; ++w) o.v[w] = drop_one(in.v[w], seed, base + w, threshold, scale);
      reinterpret_cast<P*>(out)[iv] = o;
    }
    const std::int64_t t = sp.tail_begin + kc::global_thread();
    if (t < n) out[t] = drop_one(x[t], seed, first + static_cast<std::uint64_t>(t), threshold, scale);
  } else {
    for (std::int64_t i = kc::global_thread(); i < n; i += kc::grid_threads())
      out[i] = drop_one(x[i], seed, first + static_cast<std::uint64_t>(i), threshold, scale);
  }
}

void dropout_impl(const char* name, void* out, const void* x, DType dtype, std::int64_t n, double p,
                  std::uint64_t seed, std::uint64_t first, void* stream) {
  kc::check_size(name, "n", n);
  kc::check_floating_dtype(name, dtype);
  CIUIC_CHECK(p >= 0 && p <= 1, ValueError, name, "p = ", p, "; expected a drop probability in [0, 1]");
  if (n == 0) return;
  kc::check_ptr(name, "out", out);
  kc::check_ptr(name, "x", x);
  const std::uint32_t threshold = dropout_threshold(p);
  const double scale = p == 1 ? 0.0 : 1.0 / (1.0 - p);  // as the CPU op
  const cudaStream_t s = kc::as_stream(stream);
  kc::dispatch_float(dtype, name, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    T* o = static_cast<T*>(out);
    const T* xi = static_cast<const T*>(x);
    if (kc::aligned16(out) && kc::aligned16(x))
      dropout_kernel<T, true><<<plan::grid_blocks(n / kc::Pack<T>::kWidth, kBlock), kBlock, 0, s>>>(
          o, xi, n, seed, first, threshold, static_cast<A>(scale));
    else
      dropout_kernel<T, false><<<plan::grid_blocks(n, kBlock), kBlock, 0, s>>>(o, xi, n, seed, first, threshold,
                                                                               static_cast<A>(scale));
    CIUIC_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void dropout_forward(void* out, const void* x, DType dtype, std::int64_t n, double p, std::uint64_t seed,
                     std::uint64_t first, void* stream) {
  dropout_impl("dropout_forward", out, x, dtype, n, p, seed, first, stream);
}

void dropout_backward(void* grad_x, const void* grad_out, DType dtype, std::int64_t n, double p, std::uint64_t seed,
                      std::uint64_t first, void* stream) {
  dropout_impl("dropout_backward", grad_x, grad_out, dtype, n, p, seed, first, stream);
}

}  // namespace ciuic::kernels
