// The CUDA paths of the pooling ops (see cnn_cuda.h). Inputs are made contiguous
// and seen as planes (planes, 1, H, W).
//   avg_pool2d: cuDNN's CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING is the CPU
//     reference exactly: with padding <= kernel/2 and floor-mode output sizes every
//     window lies inside the padded plane, so each divides by kh * kw.
//   adaptive_avg_pool2d with even bins: the same pooling with window = stride =
//     (H/OH, W/OW) and no padding. Uneven bins (which vary in size and may overlap)
//     have no cuDNN equivalent: the hand-written kernels of kernels/pool.h.
//   max_pool2d: the hand-written kernels, which save the winner's index (first
//     maximum wins ties, nan wins) and send the gradient there, as the CPU does;
//     cuDNN's max-pooling backward re-derives the winner and its tie rule is not
//     documented, so it could differ silently.
// bf16 runs cuDNN's pooling on f32 copies (rounded back once): cuDNN's legacy pooling
// documents no bf16 support; the hand-written kernels take bf16 directly.
#include "cnn_cuda.h"

#include "op_util.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/pool.h"
#include "ciuic/stream.h"
#endif
#ifdef CIUIC_WITH_CUDNN
#include "cudnn_util.h"
#endif

namespace ciuic::ops {

bool adaptive_via_cudnn(const PoolWindow& g) {
#ifdef CIUIC_WITH_CUDNN
  return g.H % g.OH == 0 && g.W % g.OW == 0;
#else
  (void)g;
  return false;
#endif
}

#ifdef CIUIC_WITH_CUDA

namespace {

kernels::PoolShape kernel_shape(const PoolWindow& g) {
  kernels::PoolShape s;
  s.planes = g.planes, s.H = g.H, s.W = g.W, s.OH = g.OH, s.OW = g.OW;
  s.k = g.kh, s.s = g.sh, s.p = g.ph;  // max pooling windows are square
  return s;
}

}  // namespace

Tensor max_pool2d_cuda(const Tensor& x, const PoolWindow& g, const Shape& out_shape, Tensor* index) {
  DeviceGuard guard(x.device());
  Tensor xc = x.contiguous();
  Tensor out = make_tensor(out_shape, x.dtype(), x.device());
  *index = make_tensor({g.planes, g.OH, g.OW}, DType::i32, x.device());
  if (out.numel() == 0) return out;
  kernels::max_pool2d_forward(xc.data_ptr(), out.data_ptr(), static_cast<std::int32_t*>(index->data_ptr()),
                              x.dtype(), kernel_shape(g), current_stream(x.device()));
  return out;
}

Tensor max_pool2d_backward_cuda(const Tensor& gout, const Tensor& index, const PoolWindow& g, const Shape& in_shape) {
  DeviceGuard guard(gout.device());
  Tensor gc = gout.contiguous();
  Tensor gx = make_tensor(in_shape, gout.dtype(), gout.device());
  if (gx.numel() == 0) return gx;
  kernels::max_pool2d_backward(gc.data_ptr(), static_cast<const std::int32_t*>(index.data_ptr()), gx.data_ptr(),
                               gout.dtype(), kernel_shape(g), current_stream(gout.device()));
  return gx;
}

#endif

#ifdef CIUIC_WITH_CUDNN

namespace {

using namespace cudnn_detail;

// cuDNN runs pooling in these dtypes; bf16 goes through f32.
DType pool_dtype(DType t) { return t == DType::bf16 ? DType::f32 : t; }

void set_pool(const char* op, const PoolDesc& d, const PoolWindow& g) {
  CIUIC_CUDNN_CHECK(cudnnSetPooling2dDescriptor(d.get(), CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
                                                CUDNN_PROPAGATE_NAN, to_int(op, "kernel", g.kh),
                                                to_int(op, "kernel", g.kw), to_int(op, "padding", g.ph),
                                                to_int(op, "padding", g.pw), to_int(op, "stride", g.sh),
                                                to_int(op, "stride", g.sw)));
}

// Average pooling of x (any shape with planes x H x W elements) into a new tensor
// of out_shape, through cuDNN.
Tensor avg_forward(const char* op, const Tensor& x, const PoolWindow& g, const Shape& out_shape) {
  NoGradGuard no_grad;
  const DType run = pool_dtype(x.dtype());
  Tensor xc = dense(x.to(run));
  Tensor out = make_tensor(out_shape, run, x.device());
  if (out.numel() > 0) {
    check_elements(op, xc);
    check_elements(op, out);
    TensorDesc xd, yd;
    PoolDesc pd;
    set_nchw(op, xd, run, g.planes, 1, g.H, g.W);
    set_nchw(op, yd, run, g.planes, 1, g.OH, g.OW);
    set_pool(op, pd, g);
    int n = 0, c = 0, h = 0, w = 0;
    CIUIC_CUDNN_CHECK(cudnnGetPooling2dForwardOutputDim(pd.get(), xd.get(), &n, &c, &h, &w));
    CIUIC_CHECK(h == g.OH && w == g.OW, CudaError, op, "cuDNN computes a ", h, "x", w, " output for input ",
                describe(x), "; expected ", g.OH, "x", g.OW);
    const ScaleArg one(1.0), zero(0.0);
    Lease L(x.device());
    CIUIC_CUDNN_CHECK(cudnnPoolingForward(L.handle(), pd.get(), one.ptr(run), xd.get(), xc.data_ptr(), zero.ptr(run),
                                          yd.get(), out.data_ptr()));
  }
  return out.dtype() == x.dtype() ? out : out.to(x.dtype());
}

Tensor avg_backward(const char* op, const Tensor& gout, const Tensor& x, const Tensor& y, const PoolWindow& g) {
  NoGradGuard no_grad;
  const DType run = pool_dtype(gout.dtype());
  Tensor gx = make_tensor(x.shape(), run, gout.device());
  if (gx.numel() > 0) {
    Tensor gc = dense(gout.to(run)), xc = dense(x.to(run)), yc = dense(y.to(run));
    check_elements(op, xc);
    check_elements(op, yc);
    TensorDesc xd, yd;
    PoolDesc pd;
    set_nchw(op, xd, run, g.planes, 1, g.H, g.W);
    set_nchw(op, yd, run, g.planes, 1, g.OH, g.OW);
    set_pool(op, pd, g);
    const ScaleArg one(1.0), zero(0.0);
    Lease L(gout.device());
    CIUIC_CUDNN_CHECK(cudnnPoolingBackward(L.handle(), pd.get(), one.ptr(run), yd.get(), yc.data_ptr(), yd.get(),
                                           gc.data_ptr(), xd.get(), xc.data_ptr(), zero.ptr(run), xd.get(),
                                           gx.data_ptr()));
  }
  return gx.dtype() == gout.dtype() ? gx : gx.to(gout.dtype());
}

}  // namespace

Tensor avg_pool2d_cuda(const Tensor& x, const PoolWindow& g, const Shape& out_shape) {
  return avg_forward("avg_pool2d", x, g, out_shape);
}

Tensor avg_pool2d_backward_cuda(const Tensor& gout, const Tensor& x, const Tensor& y, const PoolWindow& g) {
  return avg_backward("avg_pool2d", gout, x, y, g);
}

#else  // no cuDNN: avg pooling and even adaptive bins have no CUDA path

namespace {
[[noreturn]] void no_cudnn(const char* op, const Tensor& t) {
  detail::fail<NotImplementedError>(op, "CUDA tensor ", describe(t),
                                    " needs cuDNN, which this build does not have (Meson did not find libcudnn and "
                                    "cudnn.h); expected a build with cuDNN, or CPU tensors");
}
[[maybe_unused]] Tensor avg_forward(const char* op, const Tensor& x, const PoolWindow&, const Shape&) {
  no_cudnn(op, x);
}
[[maybe_unused]] Tensor avg_backward(const char* op, const Tensor& gout, const Tensor&, const Tensor&,
                                     const PoolWindow&) {
  no_cudnn(op, gout);
}
}  // namespace

Tensor avg_pool2d_cuda(const Tensor& x, const PoolWindow&, const Shape&) { no_cudnn("avg_pool2d", x); }
Tensor avg_pool2d_backward_cuda(const Tensor& gout, const Tensor&, const Tensor&, const PoolWindow&) {
  no_cudnn("avg_pool2d", gout);
}

#endif

#ifdef CIUIC_WITH_CUDA

namespace {

// Adaptive even bins as a plain average pooling window.
PoolWindow even_window(const PoolWindow& g) {
  PoolWindow w = g;
  w.kh = w.sh = g.H / g.OH;
  w.kw = w.sw = g.W / g.OW;
  w.ph = w.pw = 0;
  return w;
}

}  // namespace

// Uneven bins, and every bin in a build without cuDNN, run the hand-written kernels.
Tensor adaptive_avg_pool2d_cuda(const Tensor& x, const PoolWindow& g, const Shape& out_shape) {
  if (adaptive_via_cudnn(g)) return avg_forward("adaptive_avg_pool2d", x, even_window(g), out_shape);
  DeviceGuard guard(x.device());
  Tensor xc = x.contiguous();
  Tensor out = make_tensor(out_shape, x.dtype(), x.device());
  if (out.numel() > 0)
    kernels::adaptive_avg_pool2d_forward(xc.data_ptr(), out.data_ptr(), x.dtype(), kernel_shape(g),
                                         current_stream(x.device()));
  return out;
}

Tensor adaptive_avg_pool2d_backward_cuda(const Tensor& gout, const Tensor& x, const Tensor& y, const PoolWindow& g,
                                         const Shape& in_shape) {
  if (adaptive_via_cudnn(g)) return avg_backward("adaptive_avg_pool2d", gout, x, y, even_window(g));
  DeviceGuard guard(gout.device());
  Tensor gc = gout.contiguous();
  Tensor gx = make_tensor(in_shape, gout.dtype(), gout.device());
  if (gx.numel() > 0)
    kernels::adaptive_avg_pool2d_backward(gc.data_ptr(), gx.data_ptr(), gout.dtype(), kernel_shape(g),
                                          current_stream(gout.device()));
  return gx;
}

#endif

#ifndef CIUIC_WITH_CUDA
// CPU-only build: no CUDA tensor can reach these.
Tensor max_pool2d_cuda(const Tensor& x, const PoolWindow&, const Shape&, Tensor*) {
  detail::fail<DeviceError>("max_pool2d", "CUDA tensor ", describe(x), " in a build without CUDA");
}
Tensor max_pool2d_backward_cuda(const Tensor& gout, const Tensor&, const PoolWindow&, const Shape&) {
  detail::fail<DeviceError>("max_pool2d", "CUDA tensor ", describe(gout), " in a build without CUDA");
}
Tensor adaptive_avg_pool2d_cuda(const Tensor& x, const PoolWindow&, const Shape&) {
  detail::fail<DeviceError>("adaptive_avg_pool2d", "CUDA tensor ", describe(x), " in a build without CUDA");
}
Tensor adaptive_avg_pool2d_backward_cuda(const Tensor& gout, const Tensor&, const Tensor&, const PoolWindow&,
                                         const Shape&) {
  detail::fail<DeviceError>("adaptive_avg_pool2d", "CUDA tensor ", describe(gout), " in a build without CUDA");
}
#endif

}  // namespace ciuic::ops
