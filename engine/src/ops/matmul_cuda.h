// Internal: the CUDA paths of matmul and linear, through cuBLASLt (kernels/gemm.h).
#pragma once

#include "ciuic/tensor.h"

namespace ciuic::ops {

// a (..., m, k) and b (..., k, n) already broadcast-checked; batch: the broadcast
// batch shape. Returns (batch..., m, n), contiguous, in the inputs' dtype.
Tensor bmm_cuda(const Tensor& a, const Tensor& b, const Shape& batch);
// x2 (rows, in), weight (out, in), bias (out) or undefined -> (rows, out).
// gelu: one GEMM with cuBLASLt's GELU epilogue, whose GELU is the tanh form
// (kernels::gemm_gelu_tanh): out = gelu_tanh(x2 W^T + b). pre (gelu only), when
// not null, receives the pre-activation x2 W^T + b (rows, out), contiguous, in x2's
// dtype, written by the same GEMM (the gelu_aux epilogue) for the backward.
Tensor linear_cuda(const Tensor& x2, const Tensor& weight, const Tensor& bias, bool gelu = false,
                   Tensor* pre = nullptr);

}  // namespace ciuic::ops
