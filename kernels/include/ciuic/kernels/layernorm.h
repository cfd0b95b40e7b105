// layer_norm and rms_norm over the last dim: x, y (rows, cols) contiguous;
// weight, bias (cols) or null.
//
//   layer_norm: mean = sum_j x / cols, var = sum_j (x - mean)^2 / cols (two passes)
//   rms_norm:   mean = 0,             var = sum_j x^2 / cols
//   rstd = 1 / sqrt(var + eps); xhat = (x - mean) rstd; y = xhat * w + b
// mean and rstd are saved per row in the arithmetic type: f32 for f32/f16/bf16,
// f64 for f64 (the CPU reference stores them the same way); either may be null in
// the forward when not needed.
//
// Backward (gxhat = gy * w, or gy without weight):
//   gx = rstd (gxhat - mean_j(gxhat) - xhat mean_j(gxhat xhat))   (rms: no mean_j(gxhat))
//   gw = sum_rows gy xhat, gb = sum_rows gy
// gx: a warp or block per row. gw/gb: each thread sums one column over a chunk of
// rows into workspace, a second kernel adds the chunks in order (deterministic, no
// atomics; launch_plan.h plan_column_sum). Query the workspace size first (0: none).
//
// Launchers validate (ciuic errors naming the kernel; eps > 0), return at once for
// empty sizes, launch on `stream` and check the launch. Floating dtypes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ciuic/dtype.h"

namespace ciuic::kernels {

void layer_norm_forward(void* y, void* mean, void* rstd, const void* x, const void* weight, const void* bias,
                        DType dtype, std::int64_t rows, std::int64_t cols, double eps, void* stream);

void rms_norm_forward(void* y, void* rstd, const void* x, const void* weight, DType dtype, std::int64_t rows,
                      std::int64_t cols, double eps, void* stream);

// Fused residual add: residual_out = x + residual (rounded to dtype), then
// y = layer_norm(residual_out); mean/rstd describe residual_out. residual_out may
// alias x or residual.
void add_layer_norm_forward(void* y, void* residual_out, void* mean, void* rstd, const void* x,
                            const void* residual, const void* weight, const void* bias, DType dtype,
                            std::int64_t rows, std::int64_t cols, double eps, void* stream);

// Same with rms_norm.
void add_rms_norm_forward(void* y, void* residual_out, void* rstd, const void* x, const void* residual,
                          const void* weight, DType dtype, std::int64_t rows, std::int64_t cols, double eps,
                          void* stream);

// Workspace for the weight/bias gradients of layer_norm_backward / rms_norm_backward.
std::size_t norm_backward_workspace_bytes(DType dtype, std::int64_t rows, std::int64_t cols);

// Each of grad_x, grad_weight, grad_bias may be null (not wanted). mean/rstd: from the forward.
void layer_norm_backward(void* grad_x, void* grad_weight, void* grad_bias, const void* grad_y, const void* x,
                         const void* weight, const void* mean, const void* rstd, DType dtype, std::int64_t rows,
                         std::int64_t cols, void* workspace, std::size_t workspace_bytes, void* stream);

void rms_norm_backward(void* grad_x, void* grad_weight, const void* grad_y, const void* x, const void* weight,
                       const void* rstd, DType dtype, std::int64_t rows, std::int64_t cols, void* workspace,
                       std::size_t workspace_bytes, void* stream);

}  // namespace ciuic::kernels
