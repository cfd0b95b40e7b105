// linear_gelu: y = gelu(linear(x, weight, bias)), one tape node.
//
//   x (..., in), weight (out, in), bias (out) or undefined -> pre (..., out) -> y (..., out)
//
// CPU: the composition itself (linear's CPU GEMM, then gelu's per-element rule),
// so it is the reference and bit-identical to gelu(linear(x, w, b)).
// CUDA, tanh form: one cuBLASLt GEMM with the GELU epilogue (kernels/gemm.h:
// gemm_gelu_tanh); when any input requires grad (or a checkpoint segment's forward
// is running) the same GEMM also writes pre (the gelu_aux epilogue), which the
// backward needs. The epilogue only implements the tanh form: the exact (erf) GELU
// on CUDA runs the unfused composition (linear's GEMM with the bias epilogue, then
// the gelu kernel) inside this op, so its numbers are those of gelu(linear(...)).
// On CUDA the epilogue applies GELU to the f32 accumulator before pre is rounded
// to the output dtype, where the composition rounds pre first: f16/bf16 results
// may differ from the composition by one rounding of pre (f32/f64: none in pre).
//
// Backward (the composition's, in one node):
//   gpre = gelu_backward(gy, pre)        (gelu's own backward, gelu_backward.h)
//   gx = gpre W,  gW = gpre2^T x2,  gb = sum_rows gpre2   (linear's backward; 2: rows flattened)
//
// Autocast: linear's rule (the inputs cast to the autocast dtype), then GELU in it,
// as the composition. Selective checkpointing: the pre-activation is kept and
// replayed under the name "linear", exactly what the composition keeps (linear's
// output), so a segment keeps the same tensors and recomputes only the GELU.
#include "ciuic/amp.h"
#include "ciuic/checkpoint.h"
#include "gelu_backward.h"
#include "matmul_cuda.h"
#include "op_util.h"

namespace ciuic {

namespace {

void check_linear_gelu_args(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  ops::check_defined(op, {{"input", &x}, {"weight", &weight}});
  ops::check_same_device(op, {{"input", &x}, {"weight", &weight}, {"bias", &bias}});
  ops::check_same_dtype(op, {{"input", &x}, {"weight", &weight}, {"bias", &bias}});
  ops::check_floating(op, "input", x);
  CIUIC_CHECK(weight.dim() == 2, ShapeError, op, "weight is ", describe(weight),
              "; expected 2 dims (out_features, in_features)");
  CIUIC_CHECK(x.dim() >= 1, ShapeError, op, "input is ", describe(x), "; expected at least 1 dim (..., in_features)");
  CIUIC_CHECK(x.size(-1) == weight.size(1), ShapeError, op, "input ", describe(x), " has ", x.size(-1),
              " features but weight ", describe(weight), " takes ", weight.size(1),
              "; expected input.size(-1) == weight.size(1)");
  CIUIC_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)), ShapeError, op, "bias is ",
              describe(bias), " for weight ", describe(weight), "; expected bias of shape [", weight.size(0), "]");
}

}  // namespace

Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias, GeluApprox approx) {
  if (auto c = amp::autocast_args({&x, &weight, &bias})) return linear_gelu((*c)[0], (*c)[1], (*c)[2], approx);
  const char* op = "linear_gelu";
  check_linear_gelu_args(op, x, weight, bias);

  const std::int64_t in = weight.size(1), nout = weight.size(0);
  Shape lead(x.shape().begin(), x.shape().end() - 1);
  const std::int64_t rows = shape_numel(lead);
  Shape out_shape = lead;
  out_shape.push_back(nout);
  const Tensor bd = bias.defined() ? bias.detach() : Tensor();

  // pre: the pre-activation (..., out), needed by the backward and by selective keep.
  Tensor pre, y;
  const bool fused_cuda = x.device().is_cuda() && approx == GeluApprox::tanh;
  if (!fused_cuda) {
    // linear() on detached inputs records nothing and does its own selective keep /
    // replay under "linear", as in the composition.
    pre = linear(x.detach(), weight.detach(), bd);
    y = gelu(pre, approx);
  } else if (auto kept = selective::replay("linear")) {
    pre = (*kept)[0];  // selective checkpoint recomputation: only the GELU runs again
    y = gelu(pre, approx);
  } else {
    const bool any_grad = x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad());
    // A segment's forward (grad_tracking) may keep pre even where no input requires grad.
    const bool want_pre = grad_mode_enabled() && (any_grad || grad_tracking());
    Tensor p;
    y = ops::linear_cuda(x.detach().reshape({rows, in}), weight.detach(), bd, /*gelu=*/true, want_pre ? &p : nullptr)
            .view(out_shape);
    if (want_pre) {
      pre = p.view(out_shape);
      selective::keep("linear", {pre});
    }
  }

  if (needs_grad({&x, &weight, &bias})) {
    SavedTensor sx(weight.requires_grad() ? x : Tensor()), sw(x.requires_grad() ? weight : Tensor()), sp(pre);
    const bool want_b = bias.defined() && bias.requires_grad();
    record(op, {x, weight, bias}, {y}, [sx, sw, sp, want_b, rows, in, nout, approx](const GradList& g) {
      Tensor gpre = ops::gelu_backward(g[0], sp.unpack("linear_gelu"), approx);
      Tensor gx, gw, gb;
      Tensor g2 = gpre.reshape({rows, nout});
      if (sw.defined()) gx = matmul(gpre, sw.unpack("linear_gelu"));
      if (sx.defined()) gw = matmul(g2.t(), sx.unpack("linear_gelu").reshape({rows, in}));
      if (want_b) gb = sum(g2, {0});
      return GradList{gx, gw, gb};
    });
  }
  return y;
}

}  // namespace ciuic
