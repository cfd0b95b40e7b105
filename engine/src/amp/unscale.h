// Internal to amp: the multi-tensor unscale pass of LossScaler::unscale_.
#pragma once

#include <vector>

#include "ciuic/tensor.h"

namespace ciuic::amp::detail {

// out = in * inv_scale for one gradient: in is the gradient as backward left it;
// out is an f32 master gradient (f16/bf16 parameters) or in itself (in place).
struct UnscaleItem {
  Tensor in, out;
};

// Unscales every item in one pass and sets found_inf (one f32 on the items'
// device, zeroed by the caller) to 1 when any result is inf or nan. CPU: one loop
// per tensor with kernels::scaled_grad (f32 math, as the CUDA kernel; f64
// gradients in f64). CUDA: kernels::multi_tensor_unscale, one launch sequence
// per (input dtype, output dtype).
// inv_scale: a one-element f32 tensor (1 / scale) on found_inf's device, read there.
void unscale_grads(const std::vector<UnscaleItem>& items, const Tensor& inv_scale, const Tensor& found_inf);

}  // namespace ciuic::amp::detail
