// add_layer_norm: the pre-LN transformer's residual add fused with the LayerNorm
// that reads it, one tape node with two outputs.
//
//   x, residual (..., C) of one shape; weight, bias (C) or undefined
//   sum = x + residual                      (rounded to the dtype, as add)
//   y   = layer_norm(sum) over the last dim (mean, rstd per row of sum)
// Returns (y, sum), both contiguous, both differentiable.
//
// Forward: CPU: add's per-element rule, then layer_norm's CPU reference on sum, so
// both outputs are bit-identical to (layer_norm(x + residual), x + residual). CUDA:
// one kernel (kernels::add_layer_norm_forward) writes sum, y, mean and rstd.
// Backward (the composition's, in one node; norm_impl.h):
//   gsum = g_sum + layer_norm_backward_x(g_y; sum, mean, rstd, weight)
//   g_x = g_residual = gsum;  g_weight, g_bias as layer_norm's
// An output that got no gradient contributes zeros (the tape's rule). One visible
// difference from the composition: when only sum reaches the loss, the composition
// never runs layer_norm's backward and weight / bias get no gradient, while this
// node runs and gives them zeros (as any multi-output node in PyTorch would).
//
// Autocast: the composition promotes x and residual to the wider dtype (add) and
// runs layer_norm in f32 (its f16/bf16 inputs cast up). When that changes nothing
// (x, residual, weight and bias all of one f32 or f64 dtype) the fused path runs;
// otherwise this op runs the composition itself, so its results are the
// composition's exactly (the fused kernel takes one dtype for all operands).
#include "ciuic/amp.h"
#include "norm_impl.h"
#include "op_util.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/layernorm.h"
#include "ciuic/stream.h"
#endif

namespace ciuic {

namespace {

ops::NormForward add_norm_forward_cpu(const char* op, const Tensor& x, const Tensor& residual, const Tensor& weight,
                                      const Tensor& bias, ops::NormDims d, double eps, Tensor& sum) {
  sum = add(x.detach(), residual.detach());
  return ops::norm_forward(op, true, sum, weight, bias, d, eps);
}

#ifdef CIUIC_WITH_CUDA
Tensor contiguous_or_undefined(const Tensor& t) { return t.defined() ? t.detach().contiguous() : Tensor(); }
void* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

ops::NormForward add_norm_forward_cuda(const Tensor& x, const Tensor& residual, const Tensor& weight,
                                       const Tensor& bias, ops::NormDims d, double eps, Tensor& sum) {
  Tensor xc = x.detach().contiguous(), rc = residual.detach().contiguous();
  Tensor wc = contiguous_or_undefined(weight), bc = contiguous_or_undefined(bias);
  const Device dev = x.device();
  const DType acc = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  DeviceGuard guard(dev);
  ops::NormForward f;
  f.y = make_tensor(x.shape(), x.dtype(), dev);
  sum = make_tensor(x.shape(), x.dtype(), dev);
  f.mean = make_tensor({d.rows}, acc, dev);
  f.rstd = make_tensor({d.rows}, acc, dev);
  kernels::add_layer_norm_forward(f.y.data_ptr(), sum.data_ptr(), f.mean.data_ptr(), f.rstd.data_ptr(),
                                  xc.data_ptr(), rc.data_ptr(), ptr_or_null(wc), ptr_or_null(bc), x.dtype(), d.rows,
                                  d.cols, eps, current_stream(dev));
  return f;
}
#endif

}  // namespace

std::pair<Tensor, Tensor> add_layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight,
                                         const Tensor& bias, double eps) {
  const char* op = "add_layer_norm";
  ops::check_defined(op, {{"input", &x}, {"residual", &residual}});
  ops::check_same_device(op, {{"input", &x}, {"residual", &residual}, {"weight", &weight}, {"bias", &bias}});
  CIUIC_CHECK(x.dim() >= 1, ShapeError, op, "input is ", describe(x), "; expected at least 1 dim (..., C)");
  CIUIC_CHECK(residual.shape() == x.shape(), ShapeError, op, "input ", describe(x), " and residual ",
              describe(residual), " differ in shape; expected the same shape (no broadcasting)");
  const Shape normalized{x.size(-1)};

  if (amp::autocast_enabled()) {
    bool same = true, half = false;
    for (const Tensor* t : {&x, &residual, &weight, &bias}) {
      if (!t->defined()) continue;
      same = same && t->dtype() == x.dtype();
      half = half || t->dtype() == DType::f16 || t->dtype() == DType::bf16;
    }
    if (!same || half) {  // the composition's own casts decide: run it
      Tensor s = add(x, residual);
      return {layer_norm(s, normalized, weight, bias, eps), s};
    }
  }
  ops::check_same_dtype(op, {{"input", &x}, {"residual", &residual}, {"weight", &weight}, {"bias", &bias}});
  ops::check_floating(op, "input", x);
  const ops::NormDims d = ops::check_norm_args(op, x, normalized, weight, bias, eps);

  Tensor sum;
#ifdef CIUIC_WITH_CUDA
  ops::NormForward f = x.device().is_cuda() ? add_norm_forward_cuda(x, residual, weight, bias, d, eps, sum)
                                            : add_norm_forward_cpu(op, x, residual, weight, bias, d, eps, sum);
#else
  ops::NormForward f = add_norm_forward_cpu(op, x, residual, weight, bias, d, eps, sum);
#endif

  if (needs_grad({&x, &residual, &weight, &bias})) {
    const bool want_x = x.requires_grad(), want_r = residual.requires_grad();
    const bool want_w = weight.defined() && weight.requires_grad(), want_b = bias.defined() && bias.requires_grad();
    SavedTensor ss(sum), sw(weight);
    record(op, {x, residual, weight, bias}, {f.y, sum},
           [=, mean = f.mean, rstd = f.rstd](const GradList& g) {
             GradList gr = ops::norm_backward(op, true, g[0], ss.unpack(op), sw.defined() ? sw.unpack(op) : Tensor(),
                                              mean, rstd, normalized, d, want_x || want_r, want_w, want_b);
             Tensor gsum = gr[0].defined() ? add(gr[0], g[1]) : Tensor();
             return GradList{want_x ? gsum : Tensor(), want_r ? gsum : Tensor(), gr[1], gr[2]};
           });
  }
  return {f.y, sum};
}

}  // namespace ciuic
