// layer_norm and rms_norm: one tape node each, with a dedicated backward.
//
// x is viewed as (M, N): N = numel(normalized_shape) (the trailing dims), M rows.
// Per row the forward keeps mean (layer_norm only) and rstd = 1 / sqrt(var + eps)
// in the accumulation type (f32 for f32/f16/bf16, f64 for f64); backward reuses
// them with x:
//   xhat = (x - mean) * rstd          (rms_norm: mean = 0, var = mean(x^2))
//   y    = xhat * w + b
//   gxhat = gy * w
//   gx   = rstd * (gxhat - mean_j(gxhat) - xhat * mean_j(gxhat * xhat))   (rms_norm: no mean_j(gxhat) term)
//   gw   = sum_rows gy * xhat,  gb = sum_rows gy
// Row sums are accumulated in f64. The backward is a loop, not ops: it gives
// first-order gradients only (no double backward through these nodes).
// On CUDA the same math runs in the layernorm kernels (row sums in f32 for
// f32/f16/bf16, f64 for f64; mean/rstd saved in that type, as on the CPU).
#include <cmath>
#include <optional>

#include "acc_data.h"
#include "ciuic/amp.h"
#include "norm_impl.h"
#include "op_util.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/layernorm.h"
#include "ciuic/stream.h"
#endif

namespace ciuic {

using ops::NormDims;
using ops::NormForward;
using ops::check_norm_args;
using ops::norm_backward;
using ops::norm_forward;

NormDims ops::check_norm_args(const char* op, const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                         const Tensor& bias, double eps) {
  ops::check_defined(op, {{"input", &x}});
  ops::check_floating(op, "input", x);
  ops::check_same_device(op, {{"input", &x}, {"weight", &weight}, {"bias", &bias}});
  ops::check_same_dtype(op, {{"input", &x}, {"weight", &weight}, {"bias", &bias}});
  const auto k = static_cast<std::int64_t>(normalized_shape.size());
  CIUIC_CHECK(k > 0, ShapeError, op, "normalized_shape is empty for input ", describe(x),
              "; expected at least one trailing dim to normalise over");
  bool match = x.dim() >= k;
  for (std::int64_t i = 0; match && i < k; ++i) match = x.shape()[x.dim() - k + i] == normalized_shape[i];
  CIUIC_CHECK(match, ShapeError, op, "normalized_shape ", shape_str(normalized_shape),
              " does not match the trailing dims of input ", describe(x), "; expected input shape [..., ",
              shape_str(normalized_shape).substr(1));
  for (auto [name, t] : {std::pair<const char*, const Tensor*>{"weight", &weight}, {"bias", &bias}}) {
    CIUIC_CHECK(!t->defined() || t->shape() == normalized_shape, ShapeError, op, "argument '", name, "' is ",
                describe(*t), "; expected shape normalized_shape ", shape_str(normalized_shape));
  }
  CIUIC_CHECK(eps > 0, ValueError, op, "eps = ", eps, "; expected eps > 0");
  NormDims d;
  d.cols = shape_numel(normalized_shape);
  d.rows = d.cols == 0 ? 0 : x.numel() / d.cols;
  return d;
}

namespace {

// ---- CPU reference (A = acc_t<T>) ----

template <typename A>
void norm_rows_forward(bool centered, const A* x, const A* w, const A* b, NormDims d, double eps, A* y, A* mean,
                       A* rstd) {
  const std::int64_t n = d.cols;
  for (std::int64_t r = 0; r < d.rows; ++r) {
    const A* xr = x + r * n;
    double mu = 0;
    if (centered) {
      for (std::int64_t j = 0; j < n; ++j) mu += static_cast<double>(xr[j]);
      mu /= static_cast<double>(n);
    }
    double var = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      double c = static_cast<double>(xr[j]) - mu;
      var += c * c;
    }
    var /= static_cast<double>(n);
    const A m = static_cast<A>(mu), s = static_cast<A>(1.0 / std::sqrt(var + eps));
    if (centered) mean[r] = m;
    rstd[r] = s;
    A* yr = y + r * n;
    for (std::int64_t j = 0; j < n; ++j) {
      A v = (xr[j] - m) * s;
      if (w) v *= w[j];
      if (b) v += b[j];
      yr[j] = v;
    }
  }
}

// gx, gw, gb may be null (not wanted). gw/gb accumulate over rows in f64.
template <typename A>
void norm_rows_backward(bool centered, const A* gy, const A* x, const A* w, const A* mean, const A* rstd, NormDims d,
                        A* gx, A* gw, A* gb) {
  const std::int64_t n = d.cols;
  std::vector<double> sw(gw ? n : 0, 0.0), sb(gb ? n : 0, 0.0);
  for (std::int64_t r = 0; r < d.rows; ++r) {
    const A* xr = x + r * n;
    const A* gr = gy + r * n;
    const A m = centered ? mean[r] : A(0), s = rstd[r];
    double sum_g = 0, sum_gx = 0;  // sum_j gxhat, sum_j gxhat * xhat
    for (std::int64_t j = 0; j < n; ++j) {
      const A xhat = (xr[j] - m) * s;
      const A gxhat = w ? gr[j] * w[j] : gr[j];
      sum_g += static_cast<double>(gxhat);
      sum_gx += static_cast<double>(gxhat) * static_cast<double>(xhat);
      if (gw) sw[j] += static_cast<double>(gr[j]) * static_cast<double>(xhat);
      if (gb) sb[j] += static_cast<double>(gr[j]);
    }
    if (!gx) continue;
    const A mg = centered ? static_cast<A>(sum_g / static_cast<double>(n)) : A(0);
    const A mgx = static_cast<A>(sum_gx / static_cast<double>(n));
    A* gxr = gx + r * n;
    for (std::int64_t j = 0; j < n; ++j) {
      const A xhat = (xr[j] - m) * s;
      const A gxhat = w ? gr[j] * w[j] : gr[j];
      gxr[j] = s * (gxhat - mg - xhat * mgx);
    }
  }
  for (std::int64_t j = 0; gw && j < n; ++j) gw[j] = static_cast<A>(sw[j]);
  for (std::int64_t j = 0; gb && j < n; ++j) gb[j] = static_cast<A>(sb[j]);
}

NormForward norm_forward_cpu(const char* op, bool centered, const Tensor& x, const Tensor& weight, const Tensor& bias,
                             NormDims d, double eps) {
  NormForward res;
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    ops::AccIn<T> xi(x);
    std::optional<ops::AccIn<T>> wi, bi;
    if (weight.defined()) wi.emplace(weight);
    if (bias.defined()) bi.emplace(bias);
    ops::AccOut<T> y(x.shape(), x.device());
    ops::AccOut<A> mean(centered ? Shape{d.rows} : Shape{0}, x.device()), rstd({d.rows}, x.device());
    norm_rows_forward<A>(centered, xi.data(), wi ? wi->data() : nullptr, bi ? bi->data() : nullptr, d, eps, y.data(),
                         mean.data(), rstd.data());
    res.y = y.finish();
    if (centered) res.mean = mean.finish();
    res.rstd = rstd.finish();
  });
  return res;
}

// Gradients for (x, weight, bias); each only where its flag is set.
GradList norm_backward_cpu(const char* op, bool centered, const Tensor& gy, const Tensor& x, const Tensor& weight,
                           const Tensor& mean, const Tensor& rstd, const Shape& normalized_shape, NormDims d,
                           bool want_x, bool want_w, bool want_b) {
  GradList out(3);
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    ops::AccIn<T> gi(gy), xi(x);
    std::optional<ops::AccIn<T>> wi;
    if (weight.defined()) wi.emplace(weight);
    const A* mp = centered ? static_cast<const A*>(mean.data_ptr()) : nullptr;
    const A* sp = static_cast<const A*>(rstd.data_ptr());
    std::optional<ops::AccOut<T>> gx, gw, gb;
    if (want_x) gx.emplace(x.shape(), x.device());
    if (want_w) gw.emplace(normalized_shape, x.device());
    if (want_b) gb.emplace(normalized_shape, x.device());
    norm_rows_backward<A>(centered, gi.data(), xi.data(), wi ? wi->data() : nullptr, mp, sp, d,
                          gx ? gx->data() : nullptr, gw ? gw->data() : nullptr, gb ? gb->data() : nullptr);
    if (gx) out[0] = gx->finish();
    if (gw) out[1] = gw->finish();
    if (gb) out[2] = gb->finish();
  });
  return out;
}

#ifdef CIUIC_WITH_CUDA
void* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
Tensor contiguous_or_undefined(const Tensor& t) { return t.defined() ? t.detach().contiguous() : Tensor(); }

NormForward norm_forward_cuda(bool centered, const Tensor& x, const Tensor& weight, const Tensor& bias, NormDims d,
                              double eps) {
  Tensor xc = x.detach().contiguous(), wc = contiguous_or_undefined(weight), bc = contiguous_or_undefined(bias);
  const Device dev = x.device();
  const DType acc = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  DeviceGuard guard(dev);
  NormForward res;
  res.y = make_tensor(x.shape(), x.dtype(), dev);
  res.rstd = make_tensor({d.rows}, acc, dev);
  if (centered) {
    res.mean = make_tensor({d.rows}, acc, dev);
    kernels::layer_norm_forward(res.y.data_ptr(), res.mean.data_ptr(), res.rstd.data_ptr(), xc.data_ptr(),
                                ptr_or_null(wc), ptr_or_null(bc), x.dtype(), d.rows, d.cols, eps,
                                current_stream(dev));
  } else {
    kernels::rms_norm_forward(res.y.data_ptr(), res.rstd.data_ptr(), xc.data_ptr(), ptr_or_null(wc), x.dtype(),
                              d.rows, d.cols, eps, current_stream(dev));
  }
  return res;
}

GradList norm_backward_cuda(bool centered, const Tensor& gy, const Tensor& x, const Tensor& weight,
                            const Tensor& mean, const Tensor& rstd, const Shape& normalized_shape, NormDims d,
                            bool want_x, bool want_w, bool want_b) {
  Tensor gc = gy.detach().contiguous(), xc = x.detach().contiguous(), wc = contiguous_or_undefined(weight);
  const Device dev = x.device();
  DeviceGuard guard(dev);
  GradList out(3);
  if (want_x) out[0] = make_tensor(x.shape(), x.dtype(), dev);
  if (want_w) out[1] = make_tensor(normalized_shape, x.dtype(), dev);
  if (want_b) out[2] = make_tensor(normalized_shape, x.dtype(), dev);
  const std::size_t bytes = kernels::norm_backward_workspace_bytes(x.dtype(), d.rows, d.cols);
  Tensor ws = ops::cuda_workspace(dev, bytes);
  if (centered)
    kernels::layer_norm_backward(ptr_or_null(out[0]), ptr_or_null(out[1]), ptr_or_null(out[2]), gc.data_ptr(),
                                 xc.data_ptr(), ptr_or_null(wc), mean.data_ptr(), rstd.data_ptr(), x.dtype(), d.rows,
                                 d.cols, ptr_or_null(ws), bytes, current_stream(dev));
  else
    kernels::rms_norm_backward(ptr_or_null(out[0]), ptr_or_null(out[1]), gc.data_ptr(), xc.data_ptr(),
                               ptr_or_null(wc), rstd.data_ptr(), x.dtype(), d.rows, d.cols, ptr_or_null(ws), bytes,
                               current_stream(dev));
  return out;
}
#endif

}  // namespace

NormForward ops::norm_forward(const char* op, bool centered, const Tensor& x, const Tensor& weight, const Tensor& bias,
                         NormDims d, double eps) {
#ifdef CIUIC_WITH_CUDA
  if (x.device().is_cuda()) return norm_forward_cuda(centered, x, weight, bias, d, eps);
#endif
  return norm_forward_cpu(op, centered, x, weight, bias, d, eps);
}

GradList ops::norm_backward(const char* op, bool centered, const Tensor& gy, const Tensor& x, const Tensor& weight,
                       const Tensor& mean, const Tensor& rstd, const Shape& normalized_shape, NormDims d, bool want_x,
                       bool want_w, bool want_b) {
#ifdef CIUIC_WITH_CUDA
  if (x.device().is_cuda())
    return norm_backward_cuda(centered, gy, x, weight, mean, rstd, normalized_shape, d, want_x, want_w, want_b);
#endif
  return norm_backward_cpu(op, centered, gy, x, weight, mean, rstd, normalized_shape, d, want_x, want_w, want_b);
}

namespace {

// The shared op: layer_norm (centered, with bias) and rms_norm.
Tensor norm_op(const char* op, bool centered, const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
               const Tensor& bias, double eps) {
  NormDims d = check_norm_args(op, x, normalized_shape, weight, bias, eps);
  NormForward f = norm_forward(op, centered, x, weight, bias, d, eps);
  if (!needs_grad({&x, &weight, &bias})) return f.y;
  const bool want_x = x.requires_grad(), want_w = weight.defined() && weight.requires_grad();
  const bool want_b = bias.defined() && bias.requires_grad();
  SavedTensor sx(x), sw(weight);
  Shape ns = normalized_shape;
  std::vector<Tensor> inputs{x, weight};
  if (centered) inputs.push_back(bias);
  record(op, inputs, {f.y},
         [=, mean = f.mean, rstd = f.rstd](const GradList& g) {
           GradList gr = norm_backward(op, centered, g[0], sx.unpack(op), sw.defined() ? sw.unpack(op) : Tensor(),
                                       mean, rstd, ns, d, want_x, want_w, want_b);
           if (!centered) gr.pop_back();
           return gr;
         });
  return f.y;
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  if (auto c = amp::autocast_f32({&x, &weight, &bias})) return layer_norm((*c)[0], normalized_shape, (*c)[1], (*c)[2], eps);
  return norm_op("layer_norm", true, x, normalized_shape, weight, bias, eps);
}

Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, double eps) {
  if (auto c = amp::autocast_f32({&x, &weight})) return rms_norm((*c)[0], normalized_shape, (*c)[1], eps);
  return norm_op("rms_norm", false, x, normalized_shape, weight, Tensor(), eps);
}

}  // namespace ciuic
