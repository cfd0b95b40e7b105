// The op library. Every op: checks its inputs (shapes, dtypes, devices) and
// throws a ciuic error naming them; computes on the inputs' device (CPU
// reference, or the CUDA launcher where one exists); records its backward on the
// tape when an input requires grad. Inputs may be non-contiguous views; outputs
// are contiguous. Binary ops broadcast like NumPy and need equal dtypes.
//
// Where each op lives: engine/src/ops/<family>.cpp holds forward, backward and
// CPU reference together (elementwise.cpp, reduce.cpp, matmul.cpp, nn_ops.cpp,
// shape_ops.cpp, conv.cpp, ...).
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "ciuic/tensor.h"

namespace ciuic {

// ---- elementwise: binary (broadcasting) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);   // a > 0 where b is not an integer
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
// with a scalar
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor rsub(const Tensor& a, double s);         // s - a
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor rdiv(const Tensor& a, double s);         // s / a
Tensor pow(const Tensor& a, double exponent);

// ---- elementwise: unary ----
enum class GeluApprox { none, tanh };
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor gelu(const Tensor& a, GeluApprox approx = GeluApprox::tanh);
Tensor silu(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor clamp(const Tensor& a, std::optional<double> lo, std::optional<double> hi);
// cond: bool (or u8) tensor; a and b broadcast with it.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& a, const Tensor& mask, double value);
// Comparisons give bool tensors (no gradient).
Tensor eq(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, double s);
Tensor lt(const Tensor& a, double s);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(double s, const Tensor& a);

// The shape a and b broadcast to; ShapeError naming op otherwise.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Sums g over broadcast dims so that it has `shape` (the backward of broadcasting).
Tensor sum_to(const Tensor& g, const Shape& shape);

// ---- reductions (dims may be negative; empty dims = all) ----
Tensor sum(const Tensor& a, const std::vector<std::int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& a, const std::vector<std::int64_t>& dims = {}, bool keepdim = false);
// correction = 1: unbiased (Bessel), 0: population variance.
Tensor var(const Tensor& a, const std::vector<std::int64_t>& dims = {}, int correction = 1, bool keepdim = false);
std::pair<Tensor, Tensor> max(const Tensor& a, std::int64_t dim, bool keepdim = false);  // values, i64 indices
Tensor max(const Tensor& a);                                                                // over all elements
Tensor argmax(const Tensor& a, std::int64_t dim, bool keepdim = false);
Tensor softmax(const Tensor& a, std::int64_t dim = -1);
Tensor log_softmax(const Tensor& a, std::int64_t dim = -1);

// ---- linear algebra ----
// 1-D and 2-D as in NumPy; >= 3-D: batched over leading dims, which broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in), weight (out, in), bias (out) or undefined -> (..., out)
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- neural-network functions ----
// Normalises over the trailing dims given by normalized_shape.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(), double eps = 1e-6);
// weight (V, C), indices (any shape, i32/i64) -> (indices..., C). Backward scatter-adds.
Tensor embedding(const Tensor& weight, const Tensor& indices);
// logits (N, C) or (N, C, d1...) is not needed: logits (..., C), targets (...) integer.
// Mean over targets != ignore_index. Fused log-softmax.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, std::int64_t ignore_index = -100);
Tensor mse_loss(const Tensor& input, const Tensor& target);  // mean reduction
// Drops with probability p and scales by 1/(1-p); identity when !training or p == 0.
// The mask is a function of (gen seed, offset): replaying the generator state replays it.
Tensor dropout(const Tensor& x, double p, bool training = true, Generator* gen = nullptr);
// q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv) -> (..., Tq, Dv); scale defaults to 1/sqrt(D).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = false,
                                    std::optional<double> scale = std::nullopt);

// ---- shape ops ----
Tensor cat(const std::vector<Tensor>& tensors, std::int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, std::int64_t dim = 0);
std::vector<Tensor> split(const Tensor& a, std::int64_t split_size, std::int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& a, std::int64_t chunks, std::int64_t dim = 0);
Tensor index_select(const Tensor& a, std::int64_t dim, const Tensor& index);

// ---- convolution and pooling (NCHW) ----
struct Conv2dOptions {
  std::int64_t stride[2] = {1, 1};
  std::int64_t padding[2] = {0, 0};
  std::int64_t dilation[2] = {1, 1};
  std::int64_t groups = 1;
};
// x (N, Cin, H, W), weight (Cout, Cin/groups, kh, kw), bias (Cout) or undefined.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), const Conv2dOptions& opts = {});
Tensor max_pool2d(const Tensor& x, std::int64_t kernel, std::int64_t stride = 0, std::int64_t padding = 0);
Tensor avg_pool2d(const Tensor& x, std::int64_t kernel, std::int64_t stride = 0, std::int64_t padding = 0);
Tensor adaptive_avg_pool2d(const Tensor& x, std::int64_t out_h, std::int64_t out_w);
// x (N, C, ...). training: batch statistics, and running stats (if defined) updated in place
// with momentum; eval: running stats used.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);

}  // namespace ciuic
