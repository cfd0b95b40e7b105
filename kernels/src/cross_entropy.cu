// Fused cross-entropy forward + backward (see ciuic/kernels/cross_entropy.h).
#include <cuda_runtime.h>

#include <limits>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/cross_entropy.h"
#include "kernel_common.cuh"

namespace ciuic::kernels {

namespace {

// x, grad: (N, V); tgt, loss, lse: (N). Only the thread owning column t of a row
// reads x[t] (in pass 2, before it writes grad[t]), so in-place grad is safe.
template <typename T, typename I, bool kWarp>
__global__ void __launch_bounds__(kc::row_threads_bound(kWarp)) ce_kernel(acc_t<T>* loss, acc_t<T>* lse_out, T* grad, const T* x, const I* __restrict__ tgt,
                          std::int64_t N, std::int64_t V, std::int64_t ignore_index, acc_t<T> scale,
                          DeviceErrorSlot errors) {
  using G = kc::RowGroup<kWarp>;
  using A = acc_t<T>;
  using std::exp;
  const A nan = std::numeric_limits<A>::quiet_NaN();
  for (std::int64_t row = G::first_row(); row < N; row += G::row_stride()) {  // uniform over the group
    const std::int64_t t = static_cast<std::int64_t>(tgt[row]);
    const T* xr = x + row * V;
    T* gr = grad ? grad + row * V : nullptr;
    if (t == ignore_index) {
      if (G::rank() == 0) {
        if (loss) loss[row] = A(0);
        if (lse_out) lse_out[row] = A(0);
      }
      if (gr)
        for (std::int64_t j = G::rank(); j < V; j += G::size()) gr[j] = kc::from_acc<T>(A(0));
      continue;
    }
    if (t < 0 || t >= V) {
      if (G::rank() == 0) {
        report_device_error(errors, DeviceErrorCode::cross_entropy_target, t, V, ignore_index);
        if (loss) loss[row] = nan;
        if (lse_out) lse_out[row] = nan;
      }
      if (gr)
        for (std::int64_t j = G::rank(); j < V; j += G::size()) gr[j] = kc::from_acc<T>(nan);
      continue;
    }
    SoftmaxState<A> st;
    for (std::int64_t j = G::rank(); j < V; j += G::size()) st = softmax_push(st, kc::to_acc(xr[j]));
    st = G::allreduce(st, kc::SoftmaxMerge{});
    const A lse = softmax_logsumexp(st);
    if (G::rank() == 0 && lse_out) lse_out[row] = lse;
    for (std::int64_t j = G::rank(); j < V; j += G::size()) {
      const A xj = kc::to_acc(xr[j]);
      if (j == t && loss) loss[row] = lse - xj;
      if (gr) {
        A g = exp(xj - lse) * scale;
        if (j == t) g -= scale;
        gr[j] = kc::from_acc<T>(g);
      }
    }
  }
}

// grad (N, V) from x (N, V) and the forward's lse (N); scale times *scale_dev when given.
template <typename T, typename I, bool kWarp>
__global__ void __launch_bounds__(kc::row_threads_bound(kWarp))
    ce_backward_kernel(T* grad, const T* x, const acc_t<T>* __restrict__ lse_rows, const I* __restrict__ tgt,
                       std::int64_t N, std::int64_t V, std::int64_t ignore_index, acc_t<T> scale,
                       const acc_t<T>* __restrict__ scale_dev) {
  using G = kc::RowGroup<kWarp>;
  using A = acc_t<T>;
  using std::exp;
  const A s = scale_dev ? scale * *scale_dev : scale;
  for (std::int64_t row = G::first_row(); row < N; row += G::row_stride()) {  // uniform over the group
    const std::int64_t t = static_cast<std::int64_t>(tgt[row]);
    const T* xr = x + row * V;
    T* gr = grad + row * V;
    if (t == ignore_index) {
      for (std::int64_t j = G::rank(); j < V; j += G::size()) gr[j] = kc::from_acc<T>(A(0));
      continue;
    }
    const A lse = t < 0 || t >= V ? std::numeric_limits<A>::quiet_NaN() : lse_rows[row];
    for (std::int64_t j = G::rank(); j < V; j += G::size()) {
      A g = exp(kc::to_acc(xr[j]) - lse) * s;
      if (j == t) g -= s;
      gr[j] = kc::from_acc<T>(g);
    }
  }
}

template <typename I>
__global__ void ce_count_kernel(std::int64_t* count, const I* __restrict__ tgt, std::int64_t N,
                                std::int64_t ignore_index) {
  unsigned long long c = 0;
  for (std::int64_t i = kc::global_thread(); i < N; i += kc::grid_threads())
    c += static_cast<std::int64_t>(tgt[i]) != ignore_index ? 1 : 0;
  // Integer sums are exact in any order: atomics keep this deterministic.
  c = static_cast<unsigned long long>(kc::warp_reduce(static_cast<std::int64_t>(c), kc::SumMerge{}));
  if ((threadIdx.x & 31) == 0 && c != 0) atomicAdd(reinterpret_cast<unsigned long long*>(count), c);
}

template <typename F>
void dispatch_index(DType t, F&& f) {
  if (t == DType::i32) f(std::int32_t{});
  else f(std::int64_t{});
}

}  // namespace

void cross_entropy_forward_backward(void* loss_rows, void* lse_rows, void* grad_logits, const void* logits,
                                    DType dtype, const void* targets, DType target_dtype, std::int64_t N,
                                    std::int64_t V, std::int64_t ignore_index, double grad_scale, void* stream,
                                    const DeviceErrorSlot& errors) {
  const char* name = "cross_entropy";
  kc::check_size(name, "N", N);
  kc::check_size(name, "V", V);
  kc::check_floating_dtype(name, dtype);
  kc::check_index_dtype(name, "targets", target_dtype);
  CIUIC_CHECK(V > 0 || N == 0, ShapeError, name, "logits (", N, ", ", V, ") have no classes; expected V >= 1");
  if (N == 0) return;
  if (!loss_rows && !lse_rows && !grad_logits) return;
  kc::check_ptr(name, "logits", logits);
  kc::check_ptr(name, "targets", targets);
  const kc::RowLaunch l = kc::row_launch(N, V);
  const cudaStream_t s = kc::as_stream(stream);
  kc::dispatch_float(dtype, name, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    dispatch_index(target_dtype, [&](auto itag) {
      using I = decltype(itag);
      auto launch = [&](auto kernel) {
        kernel<<<l.grid, l.block, 0, s>>>(static_cast<A*>(loss_rows), static_cast<A*>(lse_rows),
                                         static_cast<T*>(grad_logits), static_cast<const T*>(logits),
                                         static_cast<const I*>(targets), N, V, ignore_index,
                                         static_cast<A>(grad_scale), errors);
      };
      if (l.warp) launch(ce_kernel<T, I, true>);
      else launch(ce_kernel<T, I, false>);
      CIUIC_CUDA_CHECK_LAUNCH();
    });
  });
}

void cross_entropy_backward(void* grad_logits, const void* logits, DType dtype, const void* lse_rows,
                            const void* targets, DType target_dtype, std::int64_t N, std::int64_t V,
                            std::int64_t ignore_index, double grad_scale, const void* grad_scale_dev, void* stream) {
  const char* name = "cross_entropy_backward";
  kc::check_size(name, "N", N);
  kc::check_size(name, "V", V);
  kc::check_floating_dtype(name, dtype);
  kc::check_index_dtype(name, "targets", target_dtype);
  CIUIC_CHECK(V > 0 || N == 0, ShapeError, name, "logits (", N, ", ", V, ") have no classes; expected V >= 1");
  if (N == 0) return;
  kc::check_ptr(name, "grad_logits", grad_logits);
  kc::check_ptr(name, "logits", logits);
  kc::check_ptr(name, "lse_rows", lse_rows);
  kc::check_ptr(name, "targets", targets);
  const kc::RowLaunch l = kc::row_launch(N, V);
  const cudaStream_t s = kc::as_stream(stream);
  kc::dispatch_float(dtype, name, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    dispatch_index(target_dtype, [&](auto itag) {
      using I = decltype(itag);
      auto launch = [&](auto kernel) {
        kernel<<<l.grid, l.block, 0, s>>>(static_cast<T*>(grad_logits), static_cast<const T*>(logits),
                                         static_cast<const A*>(lse_rows), static_cast<const I*>(targets), N, V,
                                         ignore_index, static_cast<A>(grad_scale),
                                         static_cast<const A*>(grad_scale_dev));
      };
      if (l.warp) launch(ce_backward_kernel<T, I, true>);
      else launch(ce_backward_kernel<T, I, false>);
      CIUIC_CUDA_CHECK_LAUNCH();
    });
  });
}

void cross_entropy_count_valid(std::int64_t* count, const void* targets, DType target_dtype, std::int64_t N,
                               std::int64_t ignore_index, void* stream) {
  const char* name = "cross_entropy_count_valid";
  kc::check_size(name, "N", N);
  kc::check_index_dtype(name, "targets", target_dtype);
  kc::check_ptr(name, "count", count);
  const cudaStream_t s = kc::as_stream(stream);
  CIUIC_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(std::int64_t), s));
  if (N == 0) return;
  kc::check_ptr(name, "targets", targets);
  constexpr int kBlock = 256;
  dispatch_index(target_dtype, [&](auto itag) {
    using I = decltype(itag);
    ce_count_kernel<I><<<static_cast<unsigned>(plan::min64(plan::grid_blocks(N, kBlock), 1024)), kBlock, 0, s>>>(
        count, static_cast<const I*>(targets), N, ignore_index);
    CIUIC_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ciuic::kernels
