// Internal: GELU's backward, shared by gelu and linear_gelu (fused_linear.cpp) so
// that both give bit-identical gradients.
#pragma once

#include "ciuic/ops.h"

namespace ciuic::ops {

// grad * gelu'(x) elementwise (x: GELU's input; approx: the form the forward used).
// Same shape, dtype and device; CPU in acc_t, CUDA through the activation-backward
// kernel. No autograd (first-order gradients only, as every activation here).
Tensor gelu_backward(const Tensor& grad, const Tensor& x, GeluApprox approx);

}  // namespace ciuic::ops
