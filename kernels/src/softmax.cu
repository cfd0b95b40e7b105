// softmax / log_softmax over the last dim (see ciuic/kernels/softmax.h).
// Rows map to thread groups as in kernel_common.cuh RowGroup: a warp per row for
// rows of <= 1024 elements (4 rows per 128-thread block), else a block per row.
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/softmax.h"
#include "kernel_common.cuh"

namespace ciuic::kernels {

namespace {

// x, y: (rows, C). Pass 1: online (max, sum exp) over the row; pass 2: the output.
template <typename T, bool kWarp, bool kLog>
__global__ void __launch_bounds__(kc::row_threads_bound(kWarp)) softmax_fwd_kernel(T* y, const T* x, std::int64_t rows, std::int64_t C) {
  using G = kc::RowGroup<kWarp>;
  using A = acc_t<T>;
  for (std::int64_t row = G::first_row(); row < rows; row += G::row_stride()) {  // uniform over the group
    const T* xr = x + row * C;
    T* yr = y + row * C;
    SoftmaxState<A> st;
    for (std::int64_t j = G::rank(); j < C; j += G::size()) st = softmax_push(st, kc::to_acc(xr[j]));
    st = G::allreduce(st, kc::SoftmaxMerge{});
    if constexpr (kLog) {
      const A lse = softmax_logsumexp(st);
      for (std::int64_t j = G::rank(); j < C; j += G::size()) yr[j] = kc::from_acc<T>(kc::to_acc(xr[j]) - lse);
    } else {
      using std::exp;
      const A inv = A(1) / st.s;
      for (std::int64_t j = G::rank(); j < C; j += G::size())
        yr[j] = kc::from_acc<T>(exp(kc::to_acc(xr[j]) - st.m) * inv);
    }
  }
}

// g, y, gx: (rows, C).
template <typename T, bool kWarp, bool kLog>
__global__ void __launch_bounds__(kc::row_threads_bound(kWarp)) softmax_bwd_kernel(T* gx, const T* g, const T* y, std::int64_t rows, std::int64_t C) {
  using G = kc::RowGroup<kWarp>;
  using A = acc_t<T>;
  using std::exp;
  for (std::int64_t row = G::first_row(); row < rows; row += G::row_stride()) {
    const T* gr = g + row * C;
    const T* yr = y + row * C;
    T* gxr = gx + row * C;
    A dot = A(0);  // log: sum g; softmax: sum g * y
    for (std::int64_t j = G::rank(); j < C; j += G::size()) {
      if constexpr (kLog) dot += kc::to_acc(gr[j]);
      else dot += kc::to_acc(gr[j]) * kc::to_acc(yr[j]);
    }
    dot = G::allreduce(dot, kc::SumMerge{});
    for (std::int64_t j = G::rank(); j < C; j += G::size()) {
      const A gj = kc::to_acc(gr[j]), yj = kc::to_acc(yr[j]);
      if constexpr (kLog) gxr[j] = kc::from_acc<T>(gj - exp(yj) * dot);
      else gxr[j] = kc::from_acc<T>(yj * (gj - dot));
    }
  }
}

void check_rows(const char* op, DType dtype, std::int64_t rows, std::int64_t cols) {
  kc::check_size(op, "rows", rows);
  kc::check_size(op, "cols", cols);
  kc::check_floating_dtype(op, dtype);
}

}  // namespace

void softmax_forward(void* y, const void* x, DType dtype, std::int64_t rows, std::int64_t cols, bool log,
                     void* stream) {
  const char* name = log ? "log_softmax_forward" : "softmax_forward";
  check_rows(name, dtype, rows, cols);
  if (rows == 0 || cols == 0) return;
  kc::check_ptr(name, "y", y);
  kc::check_ptr(name, "x", x);
  const kc::RowLaunch l = kc::row_launch(rows, cols);
  const cudaStream_t s = kc::as_stream(stream);
  kc::dispatch_float(dtype, name, [&](auto tag) {
    using T = decltype(tag);
    T* yp = static_cast<T*>(y);
    const T* xp = static_cast<const T*>(x);
    if (l.warp && log) softmax_fwd_kernel<T, true, true><<<l.grid, l.block, 0, s>>>(yp, xp, rows, cols);
    else if (l.warp) softmax_fwd_kernel<T, true, false><<<l.grid, l.block, 0, s>>>(yp, xp, rows, cols);
    else if (log) softmax_fwd_kernel<T, false, true><<<l.grid, l.block, 0, s>>>(yp, xp, rows, cols);
    else softmax_fwd_kernel<T, false, false><<<l.grid, l.block, 0, s>>>(yp, xp, rows, cols);
    CIUIC_CUDA_CHECK_LAUNCH();
  });
}

void softmax_backward(void* grad_x, const void* grad_y, const void* y, DType dtype, std::int64_t rows,
                      std::int64_t cols, bool log, void* stream) {
  const char* name = log ? "log_softmax_backward" : "softmax_backward";
  check_rows(name, dtype, rows, cols);
  if (rows == 0 || cols == 0) return;
  kc::check_ptr(name, "grad_x", grad_x);
  kc::check_ptr(name, "grad_y", grad_y);
  kc::check_ptr(name, "y", y);
  const kc::RowLaunch l = kc::row_launch(rows, cols);
  const cudaStream_t s = kc::as_stream(stream);
  kc::dispatch_float(dtype, name, [&](auto tag) {
    using T = decltype(tag);
    T* gx = static_cast<T*>(grad_x);
    const T* g = static_cast<const T*>(grad_y);
    const T* yp = static_cast<const T*>(y);
    if (l.warp && log) softmax_bwd_kernel<T, true, true><<<l.grid, l.block, 0, s>>>(gx, g, yp, rows, cols);
    else if (l.warp) softmax_bwd_kernel<T, true, false><<<l.grid, l.block, 0, s>>>(gx, g, yp, rows, cols);
    else if (log) softmax_bwd_kernel<T, false, true><<<l.grid, l.block, 0, s>>>(gx, g, yp, rows, cols);
    else softmax_bwd_kernel<T, false, false><<<l.grid, l.block, 0, s>>>(gx, g, yp, rows, cols);
    CIUIC_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ciuic::kernels
