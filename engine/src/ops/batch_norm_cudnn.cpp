// batch_norm on CUDA through cuDNN (CUDNN_BATCHNORM_SPATIAL; see cnn_cuda.h):
//   training forward  cudnnBatchNormalizationForwardTraining: batch mean and biased
//     variance normalise; running stats move by momentum with the unbiased variance
//     (cuDNN's rule, the CPU reference's too); the batch mean and 1/sqrt(var + eps)
//     are saved for the backward.
//   eval forward      cudnnBatchNormalizationForwardInference with the running stats.
//   training backward cudnnBatchNormalizationBackward with the saved statistics.
//   eval backward     per-channel affine map, with the engine's CUDA ops in f32.
// x (N, C, *) is described as (N, C, S, 1), S = prod(*). cuDNN keeps the per-channel
// tensors in f32 (f64 for f64 data): f16 x uses f32 copies of weight, bias and the
// running stats (rounded back into the f16 running stats); bf16 runs entirely on
// f32 copies (cuDNN's legacy batch norm documents no bf16 data). Undefined weight /
// bias act as ones / zeros.
#include "cnn_cuda.h"

#include <cstdint>

#include "op_util.h"

#ifdef CIUIC_WITH_CUDNN
#include "cudnn_util.h"
#endif

namespace ciuic::ops {

#ifdef CIUIC_WITH_CUDNN

namespace {

using namespace cudnn_detail;

constexpr const char* kOp = "batch_norm";

// The dtype cuDNN sees for x, and the one of its per-channel tensors.
DType data_dtype(DType t) { return t == DType::bf16 ? DType::f32 : t; }
DType param_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

std::int64_t spatial(const Shape& s) {
  std::int64_t n = 1;
  for (std::size_t d = 2; d < s.size(); ++d) n *= s[d];
  return n;
}

// A contiguous per-channel tensor of dtype pt: t converted, or `fill` when t is undefined.
Tensor param(const Tensor& t, DType pt, std::int64_t C, double fill, Device dev) {
  if (!t.defined()) return full({C}, fill, TensorOptions(pt).device(dev));
  return dense(t.to(pt));
}

// Descriptors of x (as (N, C, S, 1) in dtype dd) and of the per-channel tensors.
struct Descs {
  TensorDesc x, p;
};
void set_descs(Descs& d, const Shape& s, DType dd) {
  set_nchw(kOp, d.x, dd, s[0], s[1], spatial(s), 1);
  CIUIC_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(d.p.get(), d.x.get(), CUDNN_BATCHNORM_SPATIAL));
}

void check_eps(double eps) {
  CIUIC_CHECK(eps >= CUDNN_BN_MIN_EPSILON, NotImplementedError, kOp, "eps = ", eps, " is below cuDNN's minimum ",
              CUDNN_BN_MIN_EPSILON, "; expected eps >= ", CUDNN_BN_MIN_EPSILON, " on CUDA");
}

// A running stat as a contiguous tensor of dtype pt that cuDNN may update in place:
// the stat itself when it already is one (and 16-byte aligned), else a copy to write
// back afterwards.
Tensor running_buffer(const Tensor& r, DType pt) {
  if (!r.defined()) return Tensor();
  if (r.dtype() == pt && r.is_contiguous() && reinterpret_cast<std::uintptr_t>(r.data_ptr()) % 16 == 0) return r;
  return r.to(pt).contiguous().clone();
}

}  // namespace

BatchNormCuda batch_norm_cuda(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                              const Tensor& weight, const Tensor& bias, bool training, bool update_running,
                              double momentum, double eps) {
  NoGradGuard no_grad;
  check_eps(eps);
  const Device dev = x.device();
  const DType dd = data_dtype(x.dtype()), pt = param_dtype(x.dtype());
  const std::int64_t C = x.size(1);
  BatchNormCuda r;
  Tensor xc = dense(x.to(dd));
  Tensor y = make_tensor(x.shape(), dd, dev);
  if (training) {
    r.save_mean = make_tensor({C}, pt, dev);
    r.save_invstd = make_tensor({C}, pt, dev);
  }
  if (x.numel() > 0) {
    check_elements(kOp, xc);
    Descs d;
    set_descs(d, x.shape(), dd);
    Tensor w = param(weight, pt, C, 1.0, dev), b = param(bias, pt, C, 0.0, dev);
    const ScaleArg one(1.0), zero(0.0);
    if (training) {
      const bool upd = update_running && running_mean.defined();
      Tensor rm = upd ? running_buffer(running_mean, pt) : Tensor();
      Tensor rv = upd ? running_buffer(running_var, pt) : Tensor();
      {
        Lease L(dev);
        CIUIC_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
            L.handle(), CUDNN_BATCHNORM_SPATIAL, one.ptr(dd), zero.ptr(dd), d.x.get(), xc.data_ptr(), d.x.get(),
            y.data_ptr(), d.p.get(), w.data_ptr(), b.data_ptr(), momentum, upd ? rm.data_ptr() : nullptr,
            upd ? rv.data_ptr() : nullptr, eps, r.save_mean.data_ptr(), r.save_invstd.data_ptr()));
      }
      if (upd && rm.data_ptr() != running_mean.data_ptr()) const_cast<Tensor&>(running_mean).copy_(rm);
      if (upd && rv.data_ptr() != running_var.data_ptr()) const_cast<Tensor&>(running_var).copy_(rv);
    } else {
      Tensor rm = dense(running_mean.to(pt)), rv = dense(running_var.to(pt));
      Lease L(dev);
      CIUIC_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
          L.handle(), CUDNN_BATCHNORM_SPATIAL, one.ptr(dd), zero.ptr(dd), d.x.get(), xc.data_ptr(), d.x.get(),
          y.data_ptr(), d.p.get(), w.data_ptr(), b.data_ptr(), rm.data_ptr(), rv.data_ptr(), eps));
    }
  }
  r.y = y.dtype() == x.dtype() ? y : y.to(x.dtype());
  return r;
}

GradList batch_norm_backward_cuda(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                                  const Tensor& save_invstd, double eps, const std::array<bool, 3>& want) {
  NoGradGuard no_grad;
  const Device dev = gy.device();
  const DType dt = gy.dtype(), dd = data_dtype(dt), pt = param_dtype(dt);
  const std::int64_t C = x.size(1);
  Tensor gx = make_tensor(x.shape(), dd, dev);
  Tensor gw = make_tensor({C}, pt, dev), gb = make_tensor({C}, pt, dev);
  if (x.numel() > 0) {
    Tensor xc = dense(x.to(dd)), gc = dense(gy.to(dd));
    check_elements(kOp, xc);
    Descs d;
    set_descs(d, x.shape(), dd);
    Tensor w = param(weight, pt, C, 1.0, dev);
    const ScaleArg one(1.0), zero(0.0);
    Lease L(dev);
    CIUIC_CUDNN_CHECK(cudnnBatchNormalizationBackward(
        L.handle(), CUDNN_BATCHNORM_SPATIAL, one.ptr(dd), zero.ptr(dd), one.ptr(dd), zero.ptr(dd), d.x.get(),
        xc.data_ptr(), d.x.get(), gc.data_ptr(), d.x.get(), gx.data_ptr(), d.p.get(), w.data_ptr(), gw.data_ptr(),
        gb.data_ptr(), eps, save_mean.data_ptr(), save_invstd.data_ptr()));
  } else {
    gw.zero_();
    gb.zero_();
  }
  return {want[0] ? gx.to(dt) : Tensor(), want[1] ? gw.to(dt) : Tensor(), want[2] ? gb.to(dt) : Tensor()};
}

GradList batch_norm_eval_backward_cuda(const Tensor& gy, const Tensor& x, const Tensor& running_mean,
                                       const Tensor& running_var, const Tensor& weight, double eps,
                                       const std::array<bool, 3>& want) {
  NoGradGuard no_grad;
  const DType dt = gy.dtype(), at = param_dtype(dt);
  const Shape& s = gy.shape();
  const std::int64_t C = s[1];
  // Per-channel tensors broadcast as (1, C, 1, ...).
  Shape bshape(s.size(), 1);
  bshape[1] = C;
  std::vector<std::int64_t> reduce{0};
  for (std::size_t d = 2; d < s.size(); ++d) reduce.push_back(static_cast<std::int64_t>(d));
  Tensor g = gy.to(at);
  Tensor invstd = rsqrt(add(running_var.to(at), eps));
  Tensor gx, gw, gb;
  if (want[0]) {
    Tensor k = weight.defined() ? mul(weight.to(at), invstd) : invstd;
    gx = mul(g, k.reshape(bshape)).to(dt);
  }
  if (want[1]) {
    Tensor xhat = mul(sub(x.to(at), running_mean.to(at).reshape(bshape)), invstd.reshape(bshape));
    gw = sum(mul(g, xhat), reduce).to(dt);
  }
  if (want[2]) gb = sum(g, reduce).to(dt);
  return {gx, gw, gb};
}

#else  // no cuDNN

namespace {
[[noreturn]] void no_cudnn(const Tensor& t) {
  detail::fail<NotImplementedError>("batch_norm", "CUDA tensor ", describe(t),
                                    " needs cuDNN, which this build does not have (Meson did not find libcudnn and "
                                    "cudnn.h); expected a build with cuDNN, or CPU tensors");
}
}  // namespace

BatchNormCuda batch_norm_cuda(const Tensor& x, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, bool,
                              double, double) {
  no_cudnn(x);
}
GradList batch_norm_backward_cuda(const Tensor& gy, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double,
                                  const std::array<bool, 3>&) {
  no_cudnn(gy);
}
GradList batch_norm_eval_backward_cuda(const Tensor& gy, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                       double, const std::array<bool, 3>&) {
  no_cudnn(gy);
}

#endif

}  // namespace ciuic::ops
