// Internal: the CUDA paths of matmul and linear, through cuBLASLt (kernels/gemm.h).
#pragma once

#include "ciuic/tensor.h"

namespace ciuic::ops {

// a (..., m, k) and b (..., k, n) already broadcast-checked; batch: the broadcast
// batch shape. Returns (batch..., m, n), contiguous, in the inputs' dtype.
Tensor bmm_cuda(const Tensor& a, const Tensor& b, const Shape& batch);
// x2 (rows, in), weight (out, in), bias (out) or undefined -> (rows, out).
Tensor linear_cuda(const Tensor& x2, const Tensor& weight, const Tensor& bias);

}  // namespace ciuic::ops
