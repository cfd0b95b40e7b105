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
#include <string>
#include <utility>
#include <vector>

#include "ciuic/indexing.h"
#include "ciuic/scalar.h"
#include "ciuic/tensor.h"

namespace ciuic {

// ---- type promotion (PyTorch's rules) ----
// Binary ops, comparisons and scalar ops first convert their operands to one
// result dtype. Categories: bool < integral (u8 < i32 < i64) < floating.
//  - tensor with tensor: the higher category wins (i64 + f32 -> f32, bool + i32 ->
//    i32); within the integral category the wider one (i32 + i64 -> i64); a 0-dim
//    tensor only decides when its category is higher than the dimensioned operand's
//    (f16[4] * f32[] -> f16, i64[4] * f32[] -> f32).
//  - tensor with a Scalar (scalar.h): a floating scalar on an integral or bool tensor
//    gives the default float dtype f32 (arange(4) * 2.5 -> f32 [0, 2.5, 5, 7.5]);
//    an integral scalar on a bool tensor gives i64; otherwise the tensor's dtype.
//  - div and `/` are true division: integral or bool operands give f32
//    (arange(4) / 2 -> [0, 0.5, 1, 1.5]); floor_divide is the integer division.
//  - sum of bool, u8 or i32 gives i64 (sum(a == b) counts); mean needs a floating
//    dtype, as in PyTorch. Accuracy: mean((argmax(logits, -1) == y).to(DType::f32)).
// Where ciuic deliberately differs: two different floating dtypes (f16 + f32,
// f32 + f64, f16 + bf16) stay a DTypeError outside autocast (a silent upcast hides
// a forgotten .to(); under amp::AutocastGuard they promote to the wider one).
// Comparisons compare mixed floating dtypes in the wider one. Gradients flow back
// through the casts in the operands' own dtypes.

// ---- elementwise: binary (broadcasting) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);   // true division (floating result)
Tensor pow(const Tensor& a, const Tensor& b);   // a > 0 where b is not an integer
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
// floor(a / b); integers: rounds toward -inf as Python's //, division by zero is a
// ValueError, INT_MIN // -1 wraps. No gradient (piecewise constant). CPU only.
Tensor floor_divide(const Tensor& a, const Tensor& b);
Tensor floor_divide(const Tensor& a, Scalar s);
// with a scalar (the scalar is a constant: no gradient)
Tensor add(const Tensor& a, Scalar s);
Tensor sub(const Tensor& a, Scalar s);
Tensor rsub(const Tensor& a, Scalar s);         // s - a
Tensor mul(const Tensor& a, Scalar s);
Tensor div(const Tensor& a, Scalar s);
Tensor rdiv(const Tensor& a, Scalar s);         // s / a
// integral a: a floating exponent gives f32; an integral one keeps a's dtype.
Tensor pow(const Tensor& a, Scalar exponent);

// ---- elementwise: unary ----
// GELU: exact (erf) by default, as PyTorch's F.gelu and nn::GELU; the tanh
// approximation (GPT-2) by name: gelu(x, GeluApprox::tanh) or gelu(x, "tanh").
enum class GeluApprox { none, tanh };
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor gelu(const Tensor& a, GeluApprox approx = GeluApprox::none);
Tensor gelu(const Tensor& a, const std::string& approximate);  // "none" or "tanh"; ValueError otherwise
Tensor silu(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor clamp(const Tensor& a, std::optional<double> lo, std::optional<double> hi);
// cond: bool (or u8) tensor; a and b broadcast with it.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& a, const Tensor& mask, double value);

// ---- unary math and activations (unary_math.cpp; CUDA: the elementwise kernels) ----
// Floating inputs keep their dtype; integral or bool inputs of the math functions
// (sin ... reciprocal) give f32, as in PyTorch. Differentiable.
Tensor sin(const Tensor& a);
Tensor cos(const Tensor& a);
Tensor log1p(const Tensor& a);      // log(1 + x), exact for tiny x
Tensor expm1(const Tensor& a);      // e^x - 1, exact for tiny x
Tensor erf(const Tensor& a);
Tensor log2(const Tensor& a);
Tensor log10(const Tensor& a);
Tensor reciprocal(const Tensor& a);
Tensor square(const Tensor& a);     // integral inputs stay integral (and wrap)
// Piecewise constant: the gradient is 0 (as PyTorch). Integral inputs keep their dtype
// (floor/ceil/round/trunc are then copies). sign(nan) is nan (NumPy; PyTorch gives 0).
Tensor sign(const Tensor& a);
Tensor floor(const Tensor& a);
Tensor ceil(const Tensor& a);
Tensor round(const Tensor& a);      // half to even, as torch.round: round(2.5) = 2, round(-0.5) = -0
Tensor trunc(const Tensor& a);
// Activations (floating dtypes), with PyTorch's defaults and formulas.
Tensor leaky_relu(const Tensor& a, double negative_slope = 0.01);
Tensor elu(const Tensor& a, double alpha = 1.0);
// x beta > threshold ? x : log(1 + e^(beta x)) / beta
Tensor softplus(const Tensor& a, double beta = 1.0, double threshold = 20.0);
Tensor logsigmoid(const Tensor& a);  // min(x, 0) - log1p(e^-|x|): finite for any finite x
// clamp(x, min_val, max_val); the gradient is 0 at and outside the bounds (as PyTorch).
Tensor hardtanh(const Tensor& a, double min_val = -1.0, double max_val = 1.0);
Tensor mish(const Tensor& a);        // x tanh(softplus(x))

// ---- remainder and fmod (remainder.cpp; broadcasting, promoting like sub) ----
// remainder: Python's %, the result has b's sign (torch.remainder); fmod: C's, the
// result has a's sign. Floating and integral dtypes; an integral zero divisor is a
// ValueError (as floor_divide). Gradient: d/da = 1, d/db = -floor(a / b) (remainder)
// or -trunc(a / b) (fmod). CUDA: floating dtypes (integral ones: NotImplementedError).
Tensor remainder(const Tensor& a, const Tensor& b);
Tensor remainder(const Tensor& a, Scalar s);
Tensor fmod(const Tensor& a, const Tensor& b);
Tensor fmod(const Tensor& a, Scalar s);

// ---- comparisons and logical ops: bool tensors, no gradient ----
// Operands promote as above; nan compares unequal to everything (ne gives true).
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, Scalar s);
Tensor ne(const Tensor& a, Scalar s);
Tensor lt(const Tensor& a, Scalar s);
Tensor le(const Tensor& a, Scalar s);
Tensor gt(const Tensor& a, Scalar s);
Tensor ge(const Tensor& a, Scalar s);
// Any dtype; nonzero is true.
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor logical_xor(const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& a);
// True when a and b have the same shape and equal values (dtypes promote; nan != nan).
bool equal(const Tensor& a, const Tensor& b);
// True when the shapes broadcast and |a - b| <= atol + rtol |b| everywhere
// (nan equals nan only with equal_nan), as torch.allclose.
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8, bool equal_nan = false);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, Scalar s);
Tensor operator-(const Tensor& a, Scalar s);
Tensor operator*(const Tensor& a, Scalar s);
Tensor operator/(const Tensor& a, Scalar s);
Tensor operator+(Scalar s, const Tensor& a);
Tensor operator-(Scalar s, const Tensor& a);
Tensor operator*(Scalar s, const Tensor& a);
Tensor operator/(Scalar s, const Tensor& a);
// Comparisons give bool tensors (Tensor::same() tells whether two handles are one tensor).
Tensor operator==(const Tensor& a, const Tensor& b);
Tensor operator!=(const Tensor& a, const Tensor& b);
Tensor operator<(const Tensor& a, const Tensor& b);
Tensor operator<=(const Tensor& a, const Tensor& b);
Tensor operator>(const Tensor& a, const Tensor& b);
Tensor operator>=(const Tensor& a, const Tensor& b);
Tensor operator==(const Tensor& a, Scalar s);
Tensor operator!=(const Tensor& a, Scalar s);
Tensor operator<(const Tensor& a, Scalar s);
Tensor operator<=(const Tensor& a, Scalar s);
Tensor operator>(const Tensor& a, Scalar s);
Tensor operator>=(const Tensor& a, Scalar s);
Tensor operator!(const Tensor& a);  // logical_not

// ---- in-place arithmetic (also Tensor::add_ etc., tensor.h) ----
// a op= b computes in a's dtype (b promotes to it; a result of a higher category
// than a's is a DTypeError, as int_tensor += 0.5 is in PyTorch) and writes into a's
// storage, bumping its version so a saved copy of a fails at backward. Under grad
// mode, a leaf that requires grad is an AutogradError (use NoGradGuard, as
// optimizers do); a non-leaf becomes the output of the op (its earlier value is
// kept for the gradient). Other views of the same storage keep their old history.
Tensor& operator+=(Tensor& a, const Tensor& b);
Tensor& operator-=(Tensor& a, const Tensor& b);
Tensor& operator*=(Tensor& a, const Tensor& b);
Tensor& operator/=(Tensor& a, const Tensor& b);
Tensor& operator+=(Tensor& a, Scalar s);
Tensor& operator-=(Tensor& a, Scalar s);
Tensor& operator*=(Tensor& a, Scalar s);
Tensor& operator/=(Tensor& a, Scalar s);

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
// min / argmin mirror max / argmax (nan propagates, ties go to the first index; the full min
// shares its gradient among ties). any / all: whether any / every element is nonzero (nan
// counts as nonzero), bool results; over an empty tensor or dim any is false and all true.
std::pair<Tensor, Tensor> min(const Tensor& a, std::int64_t dim, bool keepdim = false);  // values, i64 indices
Tensor min(const Tensor& a);                                                                // over all elements
Tensor argmin(const Tensor& a, std::int64_t dim, bool keepdim = false);
Tensor any(const Tensor& a);
Tensor any(const Tensor& a, std::int64_t dim, bool keepdim = false);
Tensor all(const Tensor& a);
Tensor all(const Tensor& a, std::int64_t dim, bool keepdim = false);
// Running sum along dim, as torch.cumsum: bool and integer inputs give i64 (wrapping on
// overflow), floating inputs keep their dtype (accumulated in f64, each output rounded once).
// Differentiable (the gradient is the reversed running sum of g). CPU only so far.
Tensor cumsum(const Tensor& a, std::int64_t dim);
Tensor softmax(const Tensor& a, std::int64_t dim = -1);
Tensor log_softmax(const Tensor& a, std::int64_t dim = -1);

// ---- more reductions (reduce_extra.cpp; dims may be negative, empty = all) ----
// std = sqrt(var), same arguments (correction 1: Bessel's). Call it ciuic::std: under
// `using namespace ciuic` an unqualified std(x) is ambiguous with the namespace.
Tensor std(const Tensor& a, const std::vector<std::int64_t>& dims = {}, int correction = 1, bool keepdim = false);
// Max / min over dims; nan propagates. The gradient is shared evenly among ties (as
// PyTorch), or among the nans where the result is nan. Any dtype but an empty reduced
// dim is a ShapeError. CUDA: through the max reduction kernel (not u8 for amin).
Tensor amax(const Tensor& a, const std::vector<std::int64_t>& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& a, const std::vector<std::int64_t>& dims = {}, bool keepdim = false);
// log(sum(exp(x))) shifted by the max (no overflow); a row of -inf gives -inf, an empty
// one -inf. Gradient: g softmax(x) (0 at -inf elements). Integral inputs give f32.
Tensor logsumexp(const Tensor& a, const std::vector<std::int64_t>& dims = {}, bool keepdim = false);
// Product; bool, u8, i32 give i64 (as sum). The gradient is the product of the other
// elements (prefix/suffix products: exact with zeros). CPU only (NotImplementedError on CUDA).
Tensor prod(const Tensor& a, const std::vector<std::int64_t>& dims = {}, bool keepdim = false);
// The p-norm over dims (floating): p = 2 (default), 1, inf (max |x|), -inf (min |x|), 0
// (count of non-zeros, no gradient), or any p > 0. The gradient is 0 where the norm is
// 0 (PyTorch's subgradient). f16/bf16 accumulate in f32. norm(x, INFINITY) for inf.
Tensor norm(const Tensor& a, double p = 2.0, const std::vector<std::int64_t>& dims = {}, bool keepdim = false);

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

// ---- fused ops (one tape node each; the CPU path is the composition itself) ----
// gelu(linear(x, weight, bias), approx): x (..., in), weight (out, in) as nn::Linear
// stores it, bias (out) or undefined -> (..., out), one floating dtype, one device.
// Gradients to x, weight and bias as the composition's (gelu's backward at the
// pre-activation, then linear's). CUDA with GeluApprox::tanh: one cuBLASLt GEMM with
// the GELU epilogue, which also writes the pre-activation for the backward when an
// input requires grad; GeluApprox::none (exact erf, which the epilogue does not
// implement) runs the unfused GEMM + gelu kernel. Autocast, checkpoint segments and
// selective checkpointing (the pre-activation is kept as "linear") behave as for the
// composition. Errors name "linear_gelu".
Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias, GeluApprox approx = GeluApprox::none);
// The pre-LN residual add fused with the LayerNorm that reads it:
//   sum = x + residual, y = layer_norm(sum, {C}, weight, bias, eps); returns (y, sum).
// x, residual (..., C) of the same shape (no broadcasting), weight, bias (C) or
// undefined; one floating dtype and device. Both outputs are differentiable: x and
// residual get grad_sum + layer_norm's input gradient, weight and bias layer_norm's
// (zeros, where the composition gives none, when only sum reaches the loss).
// CPU: add then layer_norm's reference (bit-identical to the composition); CUDA: one
// kernel for the add, the statistics and y. Under autocast with f16/bf16 or mixed
// dtypes it runs the composition (add promotes, layer_norm runs in f32).
std::pair<Tensor, Tensor> add_layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight,
                                         const Tensor& bias, double eps = 1e-5);
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
// causal: query i sees keys j <= i (top-left aligned). dropout_p > 0 drops attention
// probabilities (scaling the rest by 1/(1-p)) with a mask drawn from gen (default
// generator when null), identical on CPU and CUDA and replayed by checkpointing;
// pass 0 outside training. On CUDA: flash kernels, no (Tq, Tk) matrix stored.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = false,
                                    std::optional<double> scale = std::nullopt, double dropout_p = 0.0,
                                    Generator* gen = nullptr);

// ---- shape ops ----
Tensor cat(const std::vector<Tensor>& tensors, std::int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, std::int64_t dim = 0);
std::vector<Tensor> split(const Tensor& a, std::int64_t split_size, std::int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& a, std::int64_t chunks, std::int64_t dim = 0);
Tensor index_select(const Tensor& a, std::int64_t dim, const Tensor& index);

// ---- more shape and construction ops (shape_extra.cpp; copies, differentiable) ----
// The lower / upper triangle of the last two dims (diagonal > 0: above the main one),
// the rest 0.
Tensor tril(const Tensor& a, std::int64_t diagonal = 0);
Tensor triu(const Tensor& a, std::int64_t diagonal = 0);
Tensor flip(const Tensor& a, const std::vector<std::int64_t>& dims);
// Rolls elements by shifts[i] along dims[i] (wrapping); empty dims: over the flattened
// tensor (one shift), as torch.roll.
Tensor roll(const Tensor& a, const std::vector<std::int64_t>& shifts, const std::vector<std::int64_t>& dims = {});
// Tiles a: sizes has at least a.dim() entries (extra leading ones add dims), as Tensor.repeat.
Tensor repeat(const Tensor& a, const std::vector<std::int64_t>& sizes);
// Constant padding, PyTorch's order: {last_left, last_right, second_last_left, ...}
// (an even count, at most 2 a.dim()); negative pads crop.
Tensor pad(const Tensor& a, const std::vector<std::int64_t>& pads, double value = 0.0);
// i64 (or i32) class indices -> i64 (..., num_classes) of 0/1; num_classes -1: max + 1.
// Negative or too large indices are an IndexError (one read-back of the indices).
Tensor one_hot(const Tensor& indices, std::int64_t num_classes = -1);
Tensor outer(const Tensor& a, const Tensor& b);  // 1-D a (n), b (m) -> (n, m)
Tensor expand_as(const Tensor& a, const Tensor& other);

// ---- more losses (losses_extra.cpp) ----
// reduction: Reduction::mean (default), sum, none, or batchmean (kl_div only: the sum
// divided by input.size(0)); also by name ("mean", "sum", "none", "batchmean").
enum class Reduction { none, mean, sum, batchmean };
Reduction reduction_from_string(const std::string& name, const char* op);
// log_probs (..., C) like cross_entropy's logits, targets (...) integral: -log_probs[t],
// mean over targets != ignore_index (all ignored: nan, as PyTorch). Out-of-range targets:
// IndexError (checked on the targets, one read-back).
Tensor nll_loss(const Tensor& log_probs, const Tensor& targets, std::int64_t ignore_index = -100,
                Reduction reduction = Reduction::mean);
// Stable: (1 - y) x - w log sigmoid(x), w = 1 + (pos_weight - 1) y; pos_weight (optional)
// broadcasts along the last dim. Differentiable in x, y and pos_weight.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& targets,
                                        Reduction reduction = Reduction::mean, const Tensor& pos_weight = Tensor());
// -(y log p + (1 - y) log(1 - p)) with each log clamped at -100 (as PyTorch); p in [0, 1].
Tensor binary_cross_entropy(const Tensor& probs, const Tensor& targets, Reduction reduction = Reduction::mean);
Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);
// |d| < beta ? 0.5 d^2 / beta : |d| - 0.5 beta (beta 0: l1_loss).
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean,
                      double beta = 1.0);
// |d| <= delta ? 0.5 d^2 : delta (|d| - 0.5 delta).
Tensor huber_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean,
                  double delta = 1.0);
// input: log-probabilities; target: probabilities (or log-probabilities with log_target).
// Pointwise target (log target - input), 0 where target == 0. Use Reduction::batchmean
// for the mathematical KL divergence (mean is per element, as PyTorch).
Tensor kl_div(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean,
              bool log_target = false);

// ---- gather / scatter / masks (Tensor::index and index_put_ in indexing.h) ----
// index: i64 or i32 with a's dim count and sizes <= a's outside dim (any inside).
// out (index's shape)[..., i, ...] = a[..., index[..., i, ...], ...] along dim.
// Backward scatter-adds. CPU only (NotImplementedError for CUDA tensors).
Tensor gather(const Tensor& a, std::int64_t dim, const Tensor& index);
// self + src scattered along dim: out[..., index[p], ...] += src[p] for every
// position p of index (src sizes >= index's). Differentiable in self and src. CPU only.
Tensor scatter_add(const Tensor& self, std::int64_t dim, const Tensor& index, const Tensor& src);
// The elements of a where mask (bool, broadcast to a's shape) is true, row-major, 1-D.
// Backward puts the gradient back at the mask's positions. CPU only.
Tensor masked_select(const Tensor& a, const Tensor& mask);

// ---- sorting and sampling (CPU only: NotImplementedError naming the op for CUDA tensors) ----
// values and i64 indices along dim; nan sorts as the largest value; stable.
// The values are differentiable (the gradient goes back to the picked positions).
std::pair<Tensor, Tensor> sort(const Tensor& a, std::int64_t dim = -1, bool descending = false);
Tensor argsort(const Tensor& a, std::int64_t dim = -1, bool descending = false);
// The k largest (or smallest) along dim, in sorted order: values and i64 indices.
std::pair<Tensor, Tensor> topk(const Tensor& a, std::int64_t k, std::int64_t dim = -1, bool largest = true);
// Uniform integers in [low, high) (any integral or floating dtype; i64 by default),
// from the counter-based generator like rand (so on CPU and CUDA alike).
Tensor randint(std::int64_t low, std::int64_t high, const Shape& shape, TensorOptions opts = DType::i64,
               Generator* gen = nullptr);
// probs (C) or (N, C): non-negative weights, not necessarily normalised -> i64
// (num_samples) or (N, num_samples) category indices. Without replacement no
// category is drawn twice (num_samples <= the nonzero weights per row).
Tensor multinomial(const Tensor& probs, std::int64_t num_samples, bool replacement = false,
                   Generator* gen = nullptr);

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
