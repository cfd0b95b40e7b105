// layer_norm / rms_norm forward and backward, and the fused residual add
// (see ciuic/kernels/layernorm.h).
//
// Forward and gx: one warp (cols <= 1024) or one block per row (RowGroup). Each
// thread visits the same columns j = rank, rank + size, ... in every pass, so in the
// residual variant a thread re-reads only what it wrote itself.
// gw/gb: thread per (row chunk, column), coalesced across columns; partials
// (chunks, cols) in workspace, added in chunk order by norm_param_finish_kernel.
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/layernorm.h"
#include "kernel_common.cuh"

namespace ciuic::kernels {

namespace {

// x, y, residual, h: (rows, C); w, b: (C) or null; mean, rstd: (rows) or null.
// kResidual: h = T(x + residual) is written and normalised instead of x.
template <typename T, bool kWarp, bool kCentered, bool kResidual>
__global__ void __launch_bounds__(kc::row_threads_bound(kWarp)) norm_fwd_kernel(T* y, acc_t<T>* mean_out, acc_t<T>* rstd_out, const T* x, const T* residual, T* h,
                                const T* w, const T* b, std::int64_t rows, std::int64_t C, acc_t<T> eps) {
  using G = kc::RowGroup<kWarp>;
  using A = acc_t<T>;
  using std::sqrt;
  for (std::int64_t row = G::first_row(); row < rows; row += G::row_stride()) {  // uniform over the group
    const std::int64_t base = row * C;
    const T* src = kResidual ? h + base : x + base;
    A sum = A(0);
    if constexpr (kResidual) {
      for (std::int64_t j = G::rank(); j < C; j += G::size()) {
        const T hv = kc::from_acc<T>(kc::to_acc(x[base + j]) + kc::to_acc(residual[base + j]));
        h[base + j] = hv;
        sum += kc::to_acc(hv);
      }
    } else if constexpr (kCentered) {
      for (std::int64_t j = G::rank(); j < C; j += G::size()) sum += kc::to_acc(src[j]);
    }
    A mu = A(0);
    if constexpr (kCentered) mu = G::allreduce(sum, kc::SumMerge{}) / static_cast<A>(C);
    A sq = A(0);
    for (std::int64_t j = G::rank(); j < C; j += G::size()) {
      const A d = kc::to_acc(src[j]) - mu;
      sq += d * d;
    }
    sq = G::allreduce(sq, kc::SumMerge{});
    const A rstd = A(1) / sqrt(sq / static_cast<A>(C) + eps);
    if (G::rank() == 0) {
      if (kCentered && mean_out) mean_out[row] = mu;
      if (rstd_out) rstd_out[row] = rstd;
    }
    T* yr = y + base;
    for (std::int64_t j = G::rank(); j < C; j += G::size()) {
      A v = (kc::to_acc(src[j]) - mu) * rstd;
      if (w) v *= kc::to_acc(w[j]);
      if (b) v += kc::to_acc(b[j]);
      yr[j] = kc::from_acc<T>(v);
    }
  }
}

// gx (rows, C) from gy, x (rows, C), w (C) or null, mean (rows; kCentered), rstd (rows).
template <typename T, bool kWarp, bool kCentered>
__global__ void __launch_bounds__(kc::row_threads_bound(kWarp)) norm_bwd_dx_kernel(T* gx, const T* gy, const T* x, const T* w, const acc_t<T>* mean,
                                   const acc_t<T>* rstd, std::int64_t rows, std::int64_t C) {
  using G = kc::RowGroup<kWarp>;
  using A = acc_t<T>;
  for (std::int64_t row = G::first_row(); row < rows; row += G::row_stride()) {
    const std::int64_t base = row * C;
    const A m = kCentered ? mean[row] : A(0), s = rstd[row];
    SumPair<A> p;  // a: sum gxhat, b: sum gxhat * xhat
    for (std::int64_t j = G::rank(); j < C; j += G::size()) {
      const A xhat = (kc::to_acc(x[base + j]) - m) * s;
      A gxhat = kc::to_acc(gy[base + j]);
      if (w) gxhat *= kc::to_acc(w[j]);
      p.a += gxhat;
      p.b += gxhat * xhat;
    }
    p = G::allreduce(p, kc::SumPairMerge{});
    const A mg = kCentered ? p.a / static_cast<A>(C) : A(0), mgx = p.b / static_cast<A>(C);
    for (std::int64_t j = G::rank(); j < C; j += G::size()) {
      const A xhat = (kc::to_acc(x[base + j]) - m) * s;
      A gxhat = kc::to_acc(gy[base + j]);
      if (w) gxhat *= kc::to_acc(w[j]);
      gx[base + j] = kc::from_acc<T>(s * (gxhat - mg - xhat * mgx));
    }
  }
}

// Unit u = k * C + j: column j summed over row chunk k. With chunks == 1 the sums go
// straight to gw/gb (dtype T); otherwise to the partials pw/pb (chunks, C) in acc_t.
template <typename T, bool kCentered>
__global__ void norm_param_partial_kernel(T* gw, T* gb, acc_t<T>* pw, acc_t<T>* pb, const T* __restrict__ gy,
                                          const T* __restrict__ x, const acc_t<T>* mean, const acc_t<T>* rstd,
                                          std::int64_t rows, std::int64_t C, std::int64_t rows_per_chunk,
                                          std::int64_t chunks) {
  using A = acc_t<T>;
  const std::int64_t units = chunks * C;
  for (std::int64_t u = kc::global_thread(); u < units; u += kc::grid_threads()) {
    const std::int64_t k = u / C, j = u % C;
    const std::int64_t r0 = k * rows_per_chunk, r1 = plan::min64(r0 + rows_per_chunk, rows);
    A aw = A(0), ab = A(0);
    for (std::int64_t r = r0; r < r1; ++r) {
      const A g = kc::to_acc(gy[r * C + j]);
      const A m = kCentered ? mean[r] : A(0);
      const A xhat = (kc::to_acc(x[r * C + j]) - m) * rstd[r];
      aw += g * xhat;
      ab += g;
    }
    if (chunks == 1) {
      if (gw) gw[j] = kc::from_acc<T>(aw);
      if (gb) gb[j] = kc::from_acc<T>(ab);
    } else {
      if (gw) pw[k * C + j] = aw;
      if (gb) pb[k * C + j] = ab;
    }
  }
}

template <typename T>
__global__ void norm_param_finish_kernel(T* gw, T* gb, const acc_t<T>* pw, const acc_t<T>* pb, std::int64_t C,
                                         std::int64_t chunks) {
  using A = acc_t<T>;
  for (std::int64_t j = kc::global_thread(); j < C; j += kc::grid_threads()) {
    A aw = A(0), ab = A(0);
    for (std::int64_t k = 0; k < chunks; ++k) {
      if (gw) aw += pw[k * C + j];
      if (gb) ab += pb[k * C + j];
    }
    if (gw) gw[j] = kc::from_acc<T>(aw);
    if (gb) gb[j] = kc::from_acc<T>(ab);
  }
}

constexpr int kBlock = 256;

void check_norm(const char* op, DType dtype, std::int64_t rows, std::int64_t cols) {
  kc::check_size(op, "rows", rows);
  kc::check_size(op, "cols", cols);
  kc::check_floating_dtype(op, dtype);
}

template <bool kCentered, bool kResidual>
void norm_forward(const char* name, void* y, void* residual_out, void* mean, void* rstd, const void* x,
                  const void* residual, const void* weight, const void* bias, DType dtype, std::int64_t rows,
                  std::int64_t cols, double eps, void* stream) {
  check_norm(name, dtype, rows, cols);
  CIUIC_CHECK(eps > 0, ValueError, name, "eps = ", eps, "; expected eps > 0");
  if (rows == 0 || cols == 0) return;
  kc::check_ptr(name, "y", y);
  kc::check_ptr(name, "x", x);
  if (kResidual) {
    kc::check_ptr(name, "residual", residual);
    kc::check_ptr(name, "residual_out", residual_out);
  }
  const kc::RowLaunch l = kc::row_launch(rows, cols);
  const cudaStream_t s = kc::as_stream(stream);
  kc::dispatch_float(dtype, name, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    auto args = [&](auto kernel) {
      kernel<<<l.grid, l.block, 0, s>>>(static_cast<T*>(y), static_cast<A*>(mean), static_cast<A*>(rstd),
                                       static_cast<const T*>(x), static_cast<const T*>(residual),
                                       static_cast<T*>(residual_out), static_cast<const T*>(weight),
                                       static_cast<const T*>(bias), rows, cols, static_cast<A>(eps));
    };
    if (l.warp) args(norm_fwd_kernel<T, true, kCentered, kResidual>);
    else args(norm_fwd_kernel<T, false, kCentered, kResidual>);
    CIUIC_CUDA_CHECK_LAUNCH();
  });
}

template <bool kCentered>
void norm_backward(const char* name, void* grad_x, void* grad_weight, void* grad_bias, const void* grad_y,
                   const void* x, const void* weight, const void* mean, const void* rstd, DType dtype,
                   std::int64_t rows, std::int64_t cols, void* workspace, std::size_t workspace_bytes,
                   void* stream) {
  check_norm(name, dtype, rows, cols);
  const std::size_t need = norm_backward_workspace_bytes(dtype, rows, cols);
  const bool want_params = grad_weight != nullptr || grad_bias != nullptr;
  if (want_params) kc::check_workspace(name, need, workspace, workspace_bytes);
  if (cols == 0) return;
  const cudaStream_t s = kc::as_stream(stream);
  if (rows == 0) {  // the parameter gradients of an empty batch are zeros
    const std::size_t bytes = static_cast<std::size_t>(cols) * dtype_size(dtype);
    if (grad_weight) CIUIC_CUDA_CHECK(cudaMemsetAsync(grad_weight, 0, bytes, s));
    if (grad_bias) CIUIC_CUDA_CHECK(cudaMemsetAsync(grad_bias, 0, bytes, s));
    return;
  }
  if (!grad_x && !want_params) return;
  kc::check_ptr(name, "grad_y", grad_y);
  kc::check_ptr(name, "x", x);
  kc::check_ptr(name, "rstd", rstd);
  if (kCentered) kc::check_ptr(name, "mean", mean);
  kc::dispatch_float(dtype, name, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* gy = static_cast<const T*>(grad_y);
    const T* xp = static_cast<const T*>(x);
    const A* mp = static_cast<const A*>(mean);
    const A* sp = static_cast<const A*>(rstd);
    if (grad_x) {
      const kc::RowLaunch l = kc::row_launch(rows, cols);
      T* gx = static_cast<T*>(grad_x);
      const T* w = static_cast<const T*>(weight);
      if (l.warp) norm_bwd_dx_kernel<T, true, kCentered><<<l.grid, l.block, 0, s>>>(gx, gy, xp, w, mp, sp, rows, cols);
      else norm_bwd_dx_kernel<T, false, kCentered><<<l.grid, l.block, 0, s>>>(gx, gy, xp, w, mp, sp, rows, cols);
      CIUIC_CUDA_CHECK_LAUNCH();
    }
    if (want_params) {
      const plan::ChunkPlan cp = plan::plan_column_sum(rows, cols);
      T* gw = static_cast<T*>(grad_weight);
      T* gb = static_cast<T*>(grad_bias);
      A* pw = static_cast<A*>(workspace);
      A* pb = pw ? pw + cp.chunks * cols : nullptr;
      norm_param_partial_kernel<T, kCentered><<<plan::grid_blocks(cp.chunks * cols, kBlock), kBlock, 0, s>>>(
          gw, gb, pw, pb, gy, xp, mp, sp, rows, cols, cp.rows_per_chunk, cp.chunks);
      CIUIC_CUDA_CHECK_LAUNCH();
      if (cp.chunks > 1) {
        norm_param_finish_kernel<T><<<plan::grid_blocks(cols, kBlock), kBlock, 0, s>>>(gw, gb, pw, pb, cols,
                                                                                       cp.chunks);
        CIUIC_CUDA_CHECK_LAUNCH();
      }
    }
  });
}

}  // namespace

void layer_norm_forward(void* y, void* mean, void* rstd, const void* x, const void* weight, const void* bias,
                        DType dtype, std::int64_t rows, std::int64_t cols, double eps, void* stream) {
  norm_forward<true, false>("layer_norm_forward", y, nullptr, mean, rstd, x, nullptr, weight, bias, dtype, rows,
                            cols, eps, stream);
}

void rms_norm_forward(void* y, void* rstd, const void* x, const void* weight, DType dtype, std::int64_t rows,
                      std::int64_t cols, double eps, void* stream) {
  norm_forward<false, false>("rms_norm_forward", y, nullptr, nullptr, rstd, x, nullptr, weight, nullptr, dtype,
                             rows, cols, eps, stream);
}

void add_layer_norm_forward(void* y, void* residual_out, void* mean, void* rstd, const void* x,
                            const void* residual, const void* weight, const void* bias, DType dtype,
                            std::int64_t rows, std::int64_t cols, double eps, void* stream) {
  norm_forward<true, true>("add_layer_norm_forward", y, residual_out, mean, rstd, x, residual, weight, bias, dtype,
                           rows, cols, eps, stream);
}

void add_rms_norm_forward(void* y, void* residual_out, void* rstd, const void* x, const void* residual,
                          const void* weight, DType dtype, std::int64_t rows, std::int64_t cols, double eps,
                          void* stream) {
  norm_forward<false, true>("add_rms_norm_forward", y, residual_out, nullptr, rstd, x, residual, weight, nullptr,
                            dtype, rows, cols, eps, stream);
}

std::size_t norm_backward_workspace_bytes(DType dtype, std::int64_t rows, std::int64_t cols) {
  const char* name = "norm_backward_workspace_bytes";
  check_norm(name, dtype, rows, cols);
  const plan::ChunkPlan cp = plan::plan_column_sum(rows, cols);
  if (cp.chunks <= 1) return 0;
  const std::size_t acc = dtype == DType::f64 ? 8 : 4;
  return 2 * static_cast<std::size_t>(cp.chunks) * static_cast<std::size_t>(cols) * acc;  // weight and bias partials
}

void layer_norm_backward(void* grad_x, void* grad_weight, void* grad_bias, const void* grad_y, const void* x,
                         const void* weight, const void* mean, const void* rstd, DType dtype, std::int64_t rows,
                         std::int64_t cols, void* workspace, std::size_t workspace_bytes, void* stream) {
  norm_backward<true>("layer_norm_backward", grad_x, grad_weight, grad_bias, grad_y, x, weight, mean, rstd, dtype,
                      rows, cols, workspace, workspace_bytes, stream);
}

void rms_norm_backward(void* grad_x, void* grad_weight, const void* grad_y, const void* x, const void* weight,
                       const void* rstd, DType dtype, std::int64_t rows, std::int64_t cols, void* workspace,
                       std::size_t workspace_bytes, void* stream) {
  norm_backward<false>("rms_norm_backward", grad_x, grad_weight, nullptr, grad_y, x, weight, nullptr, rstd, dtype,
                       rows, cols, workspace, workspace_bytes, stream);
}

}  // namespace ciuic::kernels
