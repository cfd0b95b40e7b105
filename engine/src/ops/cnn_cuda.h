// Internal: the CUDA paths of conv2d, the pooling ops and batch_norm, called by
// conv.cpp, pool.cpp and batch_norm.cpp after their checks (shapes, dtypes and
// devices are valid; every tensor is on one CUDA device). conv2d, avg_pool2d,
// adaptive_avg_pool2d with even bins and batch_norm run through cuDNN
// (conv_cudnn.cpp, pool_cudnn.cpp, batch_norm_cudnn.cpp); max_pool2d and uneven
// adaptive bins through the hand-written kernels of kernels/pool.h. In a build
// without cuDNN the cuDNN paths throw NotImplementedError naming cuDNN and the op.
// No autograd here: the callers record the nodes. Outputs are contiguous.
#pragma once

#include <array>
#include <cstdint>

#include "ciuic/autograd.h"
#include "ciuic/tensor.h"

namespace ciuic::ops {

// ---- conv2d (conv_cudnn.cpp) ----
struct ConvParams {
  std::int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
};
// x (N, Cin, H, W), w (Cout, Cin/groups, kh, kw), bias (Cout) or undefined; any strides.
Tensor conv2d_cuda(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p, const Shape& out_shape);
// Gradients of (x, w, bias) where want says so (undefined elsewhere). x is needed for
// the weight gradient, w for the input gradient; the shapes are always given.
GradList conv2d_backward_cuda(const Tensor& gout, const Tensor& x, const Tensor& w, const ConvParams& p,
                              const std::array<bool, 3>& want, const Shape& x_shape, const Shape& w_shape);

// ---- pooling (pool_cudnn.cpp); planes = every leading index, H x W each ----
struct PoolWindow {
  std::int64_t planes = 0, H = 0, W = 0, OH = 0, OW = 0;
  std::int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;
};
// max: *index receives the winners (planes, OH, OW) as i32 for the backward.
Tensor max_pool2d_cuda(const Tensor& x, const PoolWindow& g, const Shape& out_shape, Tensor* index);
Tensor max_pool2d_backward_cuda(const Tensor& gout, const Tensor& index, const PoolWindow& g, const Shape& in_shape);
// avg with count_include_pad (every window divides by kh * kw) through cuDNN.
Tensor avg_pool2d_cuda(const Tensor& x, const PoolWindow& g, const Shape& out_shape);
// x and y: the forward's input and output (cuDNN's pooling backward takes them).
Tensor avg_pool2d_backward_cuda(const Tensor& gout, const Tensor& x, const Tensor& y, const PoolWindow& g);
// adaptive: with cuDNN, even bins (H % OH == 0 and W % OW == 0) are avg pooling with window
// and stride H/OH x W/OW through cuDNN; uneven bins, and every bin without cuDNN, run the
// hand-written kernel. adaptive_via_cudnn says which (the backward saves x and y for cuDNN).
bool adaptive_via_cudnn(const PoolWindow& g);
Tensor adaptive_avg_pool2d_cuda(const Tensor& x, const PoolWindow& g, const Shape& out_shape);
Tensor adaptive_avg_pool2d_backward_cuda(const Tensor& gout, const Tensor& x, const Tensor& y, const PoolWindow& g,
                                         const Shape& in_shape);

// ---- batch_norm (batch_norm_cudnn.cpp); x (N, C, *) ----
struct BatchNormCuda {
  Tensor y;
  Tensor save_mean, save_invstd;  // (C) f32 (f64 for f64): the batch statistics (training only)
};
// training: batch statistics; running stats (when defined and update_running) move in
// place with momentum (unbiased variance). eval: running stats normalise.
BatchNormCuda batch_norm_cuda(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                              const Tensor& weight, const Tensor& bias, bool training, bool update_running,
                              double momentum, double eps);
// Training backward through the batch statistics saved by the forward.
GradList batch_norm_backward_cuda(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                                  const Tensor& save_invstd, double eps, const std::array<bool, 3>& want);
// Eval backward: an affine map per channel (gx = w * invstd * gy), with the running stats.
GradList batch_norm_eval_backward_cuda(const Tensor& gy, const Tensor& x, const Tensor& running_mean,
                                       const Tensor& running_var, const Tensor& weight, double eps,
                                       const std::array<bool, 3>& want);

}  // namespace ciuic::ops
