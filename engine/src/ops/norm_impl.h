// Internal: the forward/backward of layer_norm and rms_norm (norm.cpp), shared
// with add_layer_norm (add_layer_norm.cpp) so that the fused op runs the very same
// CPU reference and CUDA kernels and gives the same numbers.
#pragma once

#include "ciuic/autograd.h"
#include "ciuic/tensor.h"

namespace ciuic::ops {

struct NormDims {
  std::int64_t rows = 0;  // M: numel / N
  std::int64_t cols = 0;  // N: numel(normalized_shape)
};

// y (x's shape and dtype); mean, rstd (rows) in the accumulation type (f32 for
// f32/f16/bf16, f64 for f64); mean undefined for rms_norm.
struct NormForward {
  Tensor y, mean, rstd;
};

// Checks x, weight, bias (each of the last two may be undefined) and eps; throws
// ciuic errors naming op. Returns the (rows, cols) view of x.
NormDims check_norm_args(const char* op, const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                         const Tensor& bias, double eps);

// centered: layer_norm (else rms_norm). No autograd. CPU reference or CUDA kernels by x's device.
NormForward norm_forward(const char* op, bool centered, const Tensor& x, const Tensor& weight, const Tensor& bias,
                         NormDims d, double eps);

// Gradients (x, weight, bias), each only where its want_ flag is set. No autograd.
GradList norm_backward(const char* op, bool centered, const Tensor& gy, const Tensor& x, const Tensor& weight,
                       const Tensor& mean, const Tensor& rstd, const Shape& normalized_shape, NormDims d, bool want_x,
                       bool want_w, bool want_b);

}  // namespace ciuic::ops
