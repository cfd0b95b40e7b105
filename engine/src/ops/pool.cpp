// 2-D pooling over the last two dims of x (N, C, H, W) or (C, H, W): every
// leading index is an independent plane of H x W. CPU references with dedicated
// backwards; outputs are contiguous, f16/bf16 compute in f32.
//
// max_pool2d / avg_pool2d: window k x k, stride s (0 means s = k), padding p
// (0 <= p <= k/2, so every window holds at least one element of the input),
// output OH = floor((H + 2p - k) / s) + 1 (no ceil mode).
//   max: padding never wins (it is -inf); the first maximum in row-major window
//        order wins ties, a NaN wins over numbers; the flat index ih*W + iw of
//        the winner is saved and backward sends the gradient there.
//   avg: count_include_pad = true (PyTorch's default): every window divides by
//        k*k, padded positions counting as zeros.
// adaptive_avg_pool2d: output bin i covers rows [floor(i*H/OH), ceil((i+1)*H/OH)),
//   likewise for columns, as in PyTorch; the bins may overlap.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "acc_data.h"
#include "cnn_cuda.h"
#include "op_util.h"

namespace ciuic {

namespace {

using ops::acc_data;
using ops::acc_out;
using ops::store_acc;

struct PoolGeom {
  Shape in_shape, out_shape;
  std::int64_t planes, H, W, OH, OW;
  std::int64_t k = 0, s = 0, p = 0;  // fixed windows only
};

PoolGeom planes_of(const char* op, const Tensor& x) {
  ops::check_defined(op, {{"input", &x}});
  ops::check_floating(op, "input", x);
  CIUIC_CHECK(x.dim() == 3 || x.dim() == 4, ShapeError, op, "input is ", describe(x),
              "; expected 4 dims (N, C, H, W) or 3 dims (C, H, W)");
  PoolGeom g;
  g.in_shape = x.shape();
  g.H = x.size(-2), g.W = x.size(-1);
  g.planes = x.size(0) * (x.dim() == 4 ? x.size(1) : 1);
  return g;
}

void set_out(PoolGeom& g) {
  g.out_shape = g.in_shape;
  g.out_shape[g.out_shape.size() - 2] = g.OH;
  g.out_shape[g.out_shape.size() - 1] = g.OW;
}

PoolGeom check_pool(const char* op, const Tensor& x, std::int64_t kernel, std::int64_t stride, std::int64_t padding) {
  PoolGeom g = planes_of(op, x);
  CIUIC_CHECK(kernel >= 1, ValueError, op, "kernel = ", kernel, "; expected kernel >= 1");
  CIUIC_CHECK(stride >= 0, ValueError, op, "stride = ", stride, "; expected stride >= 1 (or 0 for stride = kernel)");
  CIUIC_CHECK(padding >= 0 && padding <= kernel / 2, ValueError, op, "padding = ", padding, " with kernel = ", kernel,
              "; expected 0 <= padding <= kernel/2 = ", kernel / 2);
  std::int64_t window = 0;  // avg_pool2d divides by k * k
  CIUIC_CHECK(!__builtin_mul_overflow(kernel, kernel, &window), ValueError, op, "kernel = ", kernel,
              "; expected kernel * kernel to fit in int64 (kernel <= 3037000499)");
  g.k = kernel, g.s = stride == 0 ? kernel : stride, g.p = padding;
  // In 128 bits: a kernel and padding near 2^63 must not overflow (p <= k / 2 keeps the result small).
  const auto eh = static_cast<std::int64_t>(static_cast<__int128>(g.H) + 2 * static_cast<__int128>(g.p) - g.k);
  const auto ew = static_cast<std::int64_t>(static_cast<__int128>(g.W) + 2 * static_cast<__int128>(g.p) - g.k);
  g.OH = eh >= 0 ? eh / g.s + 1 : 0;
  g.OW = ew >= 0 ? ew / g.s + 1 : 0;
  CIUIC_CHECK(g.OH >= 1 && g.OW >= 1, ShapeError, op, "computed output size ", g.OH, "x", g.OW, " is too small: input ",
              g.H, "x", g.W, " (", describe(x), "), kernel ", g.k, ", stride ", g.s, ", padding ", g.p,
              "; expected an output of at least 1x1 (the padded input must hold one window)");
  set_out(g);
  return g;
}

ops::PoolWindow window_of(const PoolGeom& g) {
  ops::PoolWindow w;
  w.planes = g.planes, w.H = g.H, w.W = g.W, w.OH = g.OH, w.OW = g.OW;
  w.kh = w.kw = g.k, w.sh = w.sw = g.s, w.ph = w.pw = g.p;
  return w;
}

// A gradient in the forward's dtype (the tape normally delivers it so already).
Tensor grad_as(const Tensor& g, DType dt) { return g.dtype() == dt ? g : g.to(dt); }

// ---- max ----

// out (planes, OH, OW) and idx (same, i64: ih*W + iw within the plane).
void max_pool_cpu(const PoolGeom& g, const Tensor& x, const Tensor& out, const Tensor& idx) {
  std::int64_t* pi = detail::typed_ptr<std::int64_t>(idx);
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    std::vector<A> xbuf, obuf;
    const A* px = acc_data<T>(x, xbuf);
    A* po = acc_out<T>(out, obuf);
    for (std::int64_t pl = 0; pl < g.planes; ++pl) {
      const A* plane = px + pl * g.H * g.W;
      for (std::int64_t oh = 0; oh < g.OH; ++oh)
        for (std::int64_t ow = 0; ow < g.OW; ++ow) {
          const std::int64_t h0 = oh * g.s - g.p, w0 = ow * g.s - g.p;
          const std::int64_t h1 = std::min(h0 + g.k, g.H), w1 = std::min(w0 + g.k, g.W);
          std::int64_t best_i = -1;
          A best = 0;
          for (std::int64_t ih = std::max<std::int64_t>(h0, 0); ih < h1; ++ih)
            for (std::int64_t iw = std::max<std::int64_t>(w0, 0); iw < w1; ++iw) {
              const A v = plane[ih * g.W + iw];
              if (best_i < 0 || v > best || (std::isnan(v) && !std::isnan(best))) {
                best = v;
                best_i = ih * g.W + iw;
              }
            }
          const std::int64_t o = (pl * g.OH + oh) * g.OW + ow;
          po[o] = best;
          pi[o] = best_i;
        }
    }
    store_acc<T>(out, obuf);
  });
}

Tensor max_pool_backward_cpu(const PoolGeom& g, const Tensor& gout, const Tensor& idx) {
  Tensor gx = make_tensor(g.in_shape, gout.dtype(), gout.device());
  const std::int64_t* pi = detail::typed_ptr<std::int64_t>(idx);
  dispatch_floating(gout.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    std::vector<A> gbuf, gxbuf;
    const A* pg = acc_data<T>(gout, gbuf);
    A* pgx = acc_out<T>(gx, gxbuf);
    const std::int64_t per_plane = g.OH * g.OW;
    for (std::int64_t pl = 0; pl < g.planes; ++pl)
      for (std::int64_t o = pl * per_plane; o < (pl + 1) * per_plane; ++o) pgx[pl * g.H * g.W + pi[o]] += pg[o];
    store_acc<T>(gx, gxbuf);
  });
  return gx;
}

// ---- average over fixed windows ----

void avg_pool_cpu(const PoolGeom& g, const Tensor& x, const Tensor& out) {
  dispatch_floating(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    std::vector<A> xbuf, obuf;
    const A* px = acc_data<T>(x, xbuf);
    A* po = acc_out<T>(out, obuf);
    const A inv = A(1) / static_cast<A>(g.k * g.k);
    for (std::int64_t pl = 0; pl < g.planes; ++pl) {
      const A* plane = px + pl * g.H * g.W;
      for (std::int64_t oh = 0; oh < g.OH; ++oh)
        for (std::int64_t ow = 0; ow < g.OW; ++ow) {
          const std::int64_t h0 = oh * g.s - g.p, w0 = ow * g.s - g.p;
          const std::int64_t h1 = std::min(h0 + g.k, g.H), w1 = std::min(w0 + g.k, g.W);
          A sum = 0;
          for (std::int64_t ih = std::max<std::int64_t>(h0, 0); ih < h1; ++ih)
            for (std::int64_t iw = std::max<std::int64_t>(w0, 0); iw < w1; ++iw) sum += plane[ih * g.W + iw];
          po[(pl * g.OH + oh) * g.OW + ow] = sum * inv;
        }
    }
    store_acc<T>(out, obuf);
  });
}

Tensor avg_pool_backward_cpu(const PoolGeom& g, const Tensor& gout) {
  Tensor gx = make_tensor(g.in_shape, gout.dtype(), gout.device());
  dispatch_floating(gout.dtype(), "avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    std::vector<A> gbuf, gxbuf;
    const A* pg = acc_data<T>(gout, gbuf);
    A* pgx = acc_out<T>(gx, gxbuf);
    const A inv = A(1) / static_cast<A>(g.k * g.k);
    for (std::int64_t pl = 0; pl < g.planes; ++pl) {
      A* plane = pgx + pl * g.H * g.W;
      for (std::int64_t oh = 0; oh < g.OH; ++oh)
        for (std::int64_t ow = 0; ow < g.OW; ++ow) {
          const A v = pg[(pl * g.OH + oh) * g.OW + ow] * inv;
          const std::int64_t h0 = oh * g.s - g.p, w0 = ow * g.s - g.p;
          const std::int64_t h1 = std::min(h0 + g.k, g.H), w1 = std::min(w0 + g.k, g.W);
          for (std::int64_t ih = std::max<std::int64_t>(h0, 0); ih < h1; ++ih)
            for (std::int64_t iw = std::max<std::int64_t>(w0, 0); iw < w1; ++iw) plane[ih * g.W + iw] += v;
        }
    }
    store_acc<T>(gx, gxbuf);
  });
  return gx;
}

// ---- adaptive average ----

// Bin i of n over a length of `len`: [floor(i*len/n), ceil((i+1)*len/n)).
std::int64_t bin_start(std::int64_t i, std::int64_t len, std::int64_t n) { return (i * len) / n; }
std::int64_t bin_end(std::int64_t i, std::int64_t len, std::int64_t n) { return ((i + 1) * len + n - 1) / n; }

// Runs f(out_index, h0, h1, w0, w1) for every output element of one plane.
template <typename F>
void for_each_bin(const PoolGeom& g, F&& f) {
  for (std::int64_t oh = 0; oh < g.OH; ++oh) {
    const std::int64_t h0 = bin_start(oh, g.H, g.OH), h1 = bin_end(oh, g.H, g.OH);
    for (std::int64_t ow = 0; ow < g.OW; ++ow)
      f(oh * g.OW + ow, h0, h1, bin_start(ow, g.W, g.OW), bin_end(ow, g.W, g.OW));
  }
}

void adaptive_avg_cpu(const PoolGeom& g, const Tensor& x, const Tensor& out) {
  dispatch_floating(x.dtype(), "adaptive_avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    std::vector<A> xbuf, obuf;
    const A* px = acc_data<T>(x, xbuf);
    A* po = acc_out<T>(out, obuf);
    for (std::int64_t pl = 0; pl < g.planes; ++pl) {
      const A* plane = px + pl * g.H * g.W;
      A* oplane = po + pl * g.OH * g.OW;
      for_each_bin(g, [&](std::int64_t o, std::int64_t h0, std::int64_t h1, std::int64_t w0, std::int64_t w1) {
        A sum = 0;
        for (std::int64_t ih = h0; ih < h1; ++ih)
          for (std::int64_t iw = w0; iw < w1; ++iw) sum += plane[ih * g.W + iw];
        oplane[o] = sum / static_cast<A>((h1 - h0) * (w1 - w0));
      });
    }
    store_acc<T>(out, obuf);
  });
}

Tensor adaptive_avg_backward_cpu(const PoolGeom& g, const Tensor& gout) {
  Tensor gx = make_tensor(g.in_shape, gout.dtype(), gout.device());
  dispatch_floating(gout.dtype(), "adaptive_avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    std::vector<A> gbuf, gxbuf;
    const A* pg = acc_data<T>(gout, gbuf);
    A* pgx = acc_out<T>(gx, gxbuf);
    for (std::int64_t pl = 0; pl < g.planes; ++pl) {
      A* plane = pgx + pl * g.H * g.W;
      const A* gplane = pg + pl * g.OH * g.OW;
      for_each_bin(g, [&](std::int64_t o, std::int64_t h0, std::int64_t h1, std::int64_t w0, std::int64_t w1) {
        const A v = gplane[o] / static_cast<A>((h1 - h0) * (w1 - w0));
        for (std::int64_t ih = h0; ih < h1; ++ih)
          for (std::int64_t iw = w0; iw < w1; ++iw) plane[ih * g.W + iw] += v;
      });
    }
    store_acc<T>(gx, gxbuf);
  });
  return gx;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, std::int64_t kernel, std::int64_t stride, std::int64_t padding) {
  const PoolGeom g = check_pool("max_pool2d", x, kernel, stride, padding);
  const bool cuda = x.device().is_cuda();
  Tensor out, idx;  // idx: the winners, i64 on the CPU, i32 on CUDA
  if (cuda) {
    out = ops::max_pool2d_cuda(x, window_of(g), g.out_shape, &idx);
  } else {
    out = make_tensor(g.out_shape, x.dtype(), x.device());
    idx = make_tensor({g.planes, g.OH, g.OW}, DType::i64, x.device());
    max_pool_cpu(g, x, out, idx);
  }
  if (needs_grad({&x})) {
    const DType dt = x.dtype();
    // idx is private to this node: nothing else can write to it, so no version stamp is needed.
    record("max_pool2d", {x}, {out}, [g, idx, dt, cuda](const GradList& gr) {
      if (cuda) return GradList{ops::max_pool2d_backward_cuda(grad_as(gr[0], dt), idx, window_of(g), g.in_shape)};
      return GradList{max_pool_backward_cpu(g, grad_as(gr[0], dt), idx)};
    });
  }
  return out;
}

Tensor avg_pool2d(const Tensor& x, std::int64_t kernel, std::int64_t stride, std::int64_t padding) {
  const PoolGeom g = check_pool("avg_pool2d", x, kernel, stride, padding);
  const bool cuda = x.device().is_cuda();
  Tensor out;
  if (cuda) {
    out = ops::avg_pool2d_cuda(x, window_of(g), g.out_shape);
  } else {
    out = make_tensor(g.out_shape, x.dtype(), x.device());
    avg_pool_cpu(g, x, out);
  }
  if (needs_grad({&x})) {
    const DType dt = x.dtype();
    // cuDNN's pooling backward takes the forward's input and output.
    SavedTensor sx(cuda ? x : Tensor()), so(cuda ? out : Tensor());
    record("avg_pool2d", {x}, {out}, [g, dt, cuda, sx, so](const GradList& gr) {
      if (cuda)
        return GradList{ops::avg_pool2d_backward_cuda(grad_as(gr[0], dt), sx.unpack("avg_pool2d"),
                                                      so.unpack("avg_pool2d"), window_of(g))};
      return GradList{avg_pool_backward_cpu(g, grad_as(gr[0], dt))};
    });
  }
  return out;
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::int64_t out_h, std::int64_t out_w) {
  const char* op = "adaptive_avg_pool2d";
  PoolGeom g = planes_of(op, x);
  CIUIC_CHECK(out_h >= 1 && out_w >= 1, ValueError, op, "output size ", out_h, "x", out_w,
              "; expected out_h, out_w >= 1");
  CIUIC_CHECK(g.H >= 1 && g.W >= 1, ShapeError, op, "input is ", describe(x),
              "; expected non-empty spatial dims (H, W >= 1)");
  g.OH = out_h, g.OW = out_w;
  set_out(g);
  const bool cuda = x.device().is_cuda();
  const ops::PoolWindow win = window_of(g);
  Tensor out;
  if (cuda) {
    out = ops::adaptive_avg_pool2d_cuda(x, win, g.out_shape);
  } else {
    out = make_tensor(g.out_shape, x.dtype(), x.device());
    adaptive_avg_cpu(g, x, out);
  }
  if (needs_grad({&x})) {
    const DType dt = x.dtype();
    // cuDNN's pooling backward (even bins) takes the forward's input and output.
    const bool keep = cuda && ops::adaptive_via_cudnn(win);
    SavedTensor sx(keep ? x : Tensor()), so(keep ? out : Tensor());
    record(op, {x}, {out}, [g, dt, cuda, win, sx, so, op](const GradList& gr) {
      if (cuda)
        return GradList{ops::adaptive_avg_pool2d_backward_cuda(
            grad_as(gr[0], dt), sx.defined() ? sx.unpack(op) : Tensor(), so.defined() ? so.unpack(op) : Tensor(), win,
            g.in_shape)};
      return GradList{adaptive_avg_backward_cpu(g, grad_as(gr[0], dt))};
    });
  }
  return out;
}

}  // namespace ciuic
