// conv2d (NCHW): CPU reference by im2col + GEMM, with a dedicated backward that
// gives (gx, gw, gb) in one node.
//
// Per image n and group g, with Cg = Cin/groups input channels, Og = Cout/groups
// output channels, K = Cg*kh*kw and P = OH*OW output positions:
//   col[K, P]      = im2col(x[n, group g])          (zero where the window is in the padding)
//   out[n, g][Og, P] = W_g[Og, K] * col[K, P] (+ bias)
// backward:
//   gW_g[Og, K]   += gout[n, g][Og, P] * col^T
//   gcol[K, P]     = W_g^T * gout[n, g];  gx[n, group g] += col2im(gcol)
//   gb[o]          = sum over n, P of gout[n, o]
// f16/bf16 compute in f32, f64 in f64.
#include <algorithm>
#include <array>
#include <climits>
#include <type_traits>
#include <vector>


#include "ciuic/amp.h"
#include "cpu_gemm.h"
#include "acc_data.h"
#include "cnn_cuda.h"
#include "op_util.h"

namespace ciuic {

namespace {

using ops::acc_data;
using ops::acc_out;
using ops::store_acc;

constexpr const char* kOp = "conv2d";

// ---- buffers in the compute type A = acc_t<T> ----




// ---- GEMM ----

// C[M, N] (= or +=) op(A)[M, K] * op(B)[K, N], row-major with leading dims lda,
// ldb, ldc: the shared CPU gemm (CBLAS when built with it, a blocked loop otherwise).
template <typename A>
void gemm(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, const A* a, std::int64_t lda,
          const A* b, std::int64_t ldb, bool accumulate, A* c, std::int64_t ldc) {
  detail::GemmArgs g;
  g.trans_a = ta;
  g.trans_b = tb;
  g.m = M;
  g.n = N;
  g.k = K;
  g.lda = lda;
  g.ldb = ldb;
  g.ldc = ldc;
  detail::cpu_gemm(g, A(1), a, b, accumulate ? A(1) : A(0), c);
}

// ---- geometry ----

struct Geometry {
  std::int64_t N, Cin, H, W;      // input
  std::int64_t Cout, kh, kw;      // weight
  std::int64_t OH, OW;            // output
  std::int64_t sh, sw, ph, pw, dh, dw, groups;
  std::int64_t Cg() const { return Cin / groups; }
  std::int64_t Og() const { return Cout / groups; }
  std::int64_t K() const { return Cg() * kh * kw; }
  std::int64_t P() const { return OH * OW; }
};

// Checks everything about the arguments and computes the output geometry.
Geometry check_conv(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& o) {
  ops::check_defined(kOp, {{"input", &x}, {"weight", &w}});
  ops::check_same_device(kOp, {{"input", &x}, {"weight", &w}, {"bias", &bias}});
  ops::check_same_dtype(kOp, {{"input", &x}, {"weight", &w}, {"bias", &bias}});
  ops::check_floating(kOp, "input", x);
  CIUIC_CHECK(x.dim() == 4, ShapeError, kOp, "input is ", describe(x), "; expected 4 dims (N, Cin, H, W)");
  CIUIC_CHECK(w.dim() == 4, ShapeError, kOp, "weight is ", describe(w), "; expected 4 dims (Cout, Cin/groups, kh, kw)");
  for (int d = 0; d < 2; ++d) {
    CIUIC_CHECK(o.stride[d] > 0, ValueError, kOp, "stride (", o.stride[0], ", ", o.stride[1],
                "); expected positive strides");
    CIUIC_CHECK(o.dilation[d] > 0, ValueError, kOp, "dilation (", o.dilation[0], ", ", o.dilation[1],
                "); expected positive dilations");
    CIUIC_CHECK(o.padding[d] >= 0, ValueError, kOp, "padding (", o.padding[0], ", ", o.padding[1],
                "); expected non-negative padding");
  }
  CIUIC_CHECK(o.groups > 0, ValueError, kOp, "groups = ", o.groups, "; expected groups >= 1");
  Geometry g{};
  g.N = x.size(0), g.Cin = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.Cout = w.size(0), g.kh = w.size(2), g.kw = w.size(3);
  g.sh = o.stride[0], g.sw = o.stride[1], g.ph = o.padding[0], g.pw = o.padding[1];
  g.dh = o.dilation[0], g.dw = o.dilation[1], g.groups = o.groups;
  CIUIC_CHECK(g.Cin % g.groups == 0, ShapeError, kOp, "input channels ", g.Cin, " (input ", describe(x),
              ") not divisible by groups = ", g.groups, "; expected Cin % groups == 0");
  CIUIC_CHECK(w.size(1) == g.Cin / g.groups, ShapeError, kOp, "weight ", describe(w), " has ", w.size(1),
              " input channels per group; expected Cin/groups = ", g.Cin, "/", g.groups, " = ", g.Cin / g.groups,
              " (input ", describe(x), ")");
  CIUIC_CHECK(g.Cout % g.groups == 0, ShapeError, kOp, "output channels ", g.Cout, " (weight ", describe(w),
              ") not divisible by groups = ", g.groups, "; expected Cout % groups == 0");
  CIUIC_CHECK(g.kh > 0 && g.kw > 0, ShapeError, kOp, "weight ", describe(w), " has an empty kernel; expected kh, kw >= 1");
  if (bias.defined())
    CIUIC_CHECK(bias.dim() == 1 && bias.size(0) == g.Cout, ShapeError, kOp, "bias is ", describe(bias),
                "; expected shape [", g.Cout, "] (one per output channel of weight ", describe(w), ")");
  // In 128 bits: padding, dilation and kernel sizes near 2^63 must not overflow the formula.
  auto out_size = [](std::int64_t in, std::int64_t pad, std::int64_t dil, std::int64_t k, std::int64_t stride) {
    const __int128 span = static_cast<__int128>(in) + 2 * static_cast<__int128>(pad) -
                          static_cast<__int128>(dil) * (k - 1) - 1;
    const __int128 q = span >= 0 ? span / stride : -((-span + stride - 1) / stride);  // floor
    const __int128 o = q + 1;
    return o > INT64_MAX ? INT64_MAX : (o < INT64_MIN ? INT64_MIN : static_cast<std::int64_t>(o));
  };
  g.OH = out_size(g.H, g.ph, g.dh, g.kh, g.sh);
  g.OW = out_size(g.W, g.pw, g.dw, g.kw, g.sw);
  CIUIC_CHECK(g.OH >= 1 && g.OW >= 1, ShapeError, kOp, "computed output size ", g.OH, "x", g.OW,
              " is too small: input ", g.H, "x", g.W, " (", describe(x), "), kernel ", g.kh, "x", g.kw,
              ", dilation (", g.dh, ", ", g.dw, "), padding (", g.ph, ", ", g.pw, "), stride (", g.sh, ", ", g.sw,
              "); expected an output of at least 1x1");
  // The output and the im2col buffer must have countable sizes (ShapeError naming conv2d otherwise).
  shape_numel({g.N, g.Cout, g.OH, g.OW}, kOp);
  shape_numel({g.Cin, g.kh, g.kw, g.OH, g.OW}, kOp);
  return g;
}

// The im2col scratch col[K, P] (K = Cg*kh*kw, P = OH*OW) can be far larger than the input and the
// output together (a large kernel over large padding), so it comes from the CPU allocator:
// OutOfMemory naming conv2d and the request, within the CPU cap, never std::bad_alloc.
template <typename A>
Tensor make_col_buffer(const Geometry& g, std::int64_t n) {
  constexpr DType dt = std::is_same_v<A, double> ? DType::f64 : DType::f32;
  try {
    return make_tensor({n}, dt, Device::cpu());
  } catch (const OutOfMemory& e) {
    detail::fail<OutOfMemory>(kOp, "the im2col buffer of ", g.K(), " x ", g.P(), " ", dtype_name(dt),
                              " elements (kernel ", g.kh, "x", g.kw, " over ", g.Cg(), " channels, output ", g.OH,
                              "x", g.OW, ") does not fit: ", e.what());
  }
}

// col[K, P] from one image's channels [c0, c0 + Cg) of x (xi points at channel 0 of that image).
template <typename A>
void im2col(const Geometry& g, const A* xi, std::int64_t c0, A* col) {
  const std::int64_t P = g.P();
  for (std::int64_t c = 0; c < g.Cg(); ++c) {
    const A* plane = xi + (c0 + c) * g.H * g.W;
    for (std::int64_t i = 0; i < g.kh; ++i)
      for (std::int64_t j = 0; j < g.kw; ++j) {
        A* row = col + ((c * g.kh + i) * g.kw + j) * P;
        for (std::int64_t oh = 0; oh < g.OH; ++oh) {
          A* r = row + oh * g.OW;
          const std::int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.H) {
            std::fill_n(r, g.OW, A(0));
            continue;
          }
          const A* src = plane + ih * g.W;
          for (std::int64_t ow = 0; ow < g.OW; ++ow) {
            const std::int64_t iw = ow * g.sw - g.pw + j * g.dw;
            r[ow] = (iw >= 0 && iw < g.W) ? src[iw] : A(0);
          }
        }
      }
  }
}

// The adjoint of im2col: adds col[K, P] into channels [c0, c0 + Cg) of one image of gx.
template <typename A>
void col2im_add(const Geometry& g, const A* col, std::int64_t c0, A* gxi) {
  const std::int64_t P = g.P();
  for (std::int64_t c = 0; c < g.Cg(); ++c) {
    A* plane = gxi + (c0 + c) * g.H * g.W;
    for (std::int64_t i = 0; i < g.kh; ++i)
      for (std::int64_t j = 0; j < g.kw; ++j) {
        const A* row = col + ((c * g.kh + i) * g.kw + j) * P;
        for (std::int64_t oh = 0; oh < g.OH; ++oh) {
          const std::int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          const A* r = row + oh * g.OW;
          A* dst = plane + ih * g.W;
          for (std::int64_t ow = 0; ow < g.OW; ++ow) {
            const std::int64_t iw = ow * g.sw - g.pw + j * g.dw;
            if (iw >= 0 && iw < g.W) dst[iw] += r[ow];
          }
        }
      }
  }
}

Tensor conv2d_cpu(const Geometry& g, const Tensor& x, const Tensor& w, const Tensor& bias) {
  Tensor out = make_tensor({g.N, g.Cout, g.OH, g.OW}, x.dtype(), x.device());
  dispatch_floating(x.dtype(), kOp, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    std::vector<A> xbuf, wbuf, bbuf, obuf;
    const A* px = acc_data<T>(x, xbuf);
    const A* pw = acc_data<T>(w, wbuf);
    const A* pb = bias.defined() ? acc_data<T>(bias, bbuf) : nullptr;
    A* po = acc_out<T>(out, obuf);
    const std::int64_t K = g.K(), P = g.P(), Og = g.Og();
    Tensor colt = make_col_buffer<A>(g, K * P);
    A* col = detail::typed_ptr<A>(colt);
    for (std::int64_t n = 0; n < g.N; ++n) {
      const A* xi = px + n * g.Cin * g.H * g.W;
      for (std::int64_t gr = 0; gr < g.groups; ++gr) {
        im2col(g, xi, gr * g.Cg(), col);
        A* og = po + (n * g.Cout + gr * Og) * P;
        gemm<A>(false, false, Og, P, K, pw + gr * Og * K, K, col, P, false, og, P);
      }
      if (pb)
        for (std::int64_t o = 0; o < g.Cout; ++o) {
          A* row = po + (n * g.Cout + o) * P;
          for (std::int64_t p = 0; p < P; ++p) row[p] += pb[o];
        }
    }
    store_acc<T>(out, obuf);
  });
  return out;
}

// Gradients for the inputs flagged in want (x, weight, bias); undefined for the rest.
GradList conv2d_backward_cpu(const Geometry& g, const Tensor& gout, const Tensor& x, const Tensor& w,
                             const std::array<bool, 3>& want) {
  Tensor gx = want[0] ? make_tensor({g.N, g.Cin, g.H, g.W}, gout.dtype(), gout.device()) : Tensor();
  Tensor gw = want[1] ? make_tensor({g.Cout, g.Cg(), g.kh, g.kw}, gout.dtype(), gout.device()) : Tensor();
  Tensor gb = want[2] ? make_tensor({g.Cout}, gout.dtype(), gout.device()) : Tensor();
  dispatch_floating(gout.dtype(), kOp, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    std::vector<A> gbuf, xbuf, wbuf, gxbuf, gwbuf, gbbuf;
    const A* pg = acc_data<T>(gout, gbuf);
    const std::int64_t K = g.K(), P = g.P(), Og = g.Og();
    Tensor colt = make_col_buffer<A>(g, (want[0] || want[1]) ? K * P : 0);
    A* col = detail::typed_ptr<A>(colt);
    if (want[2]) {
      A* pgb = acc_out<T>(gb, gbbuf);
      for (std::int64_t n = 0; n < g.N; ++n)
        for (std::int64_t o = 0; o < g.Cout; ++o) {
          const A* row = pg + (n * g.Cout + o) * P;
          A s = 0;
          for (std::int64_t p = 0; p < P; ++p) s += row[p];
          pgb[o] += s;
        }
      store_acc<T>(gb, gbbuf);
    }
    if (want[1]) {
      const A* px = acc_data<T>(x, xbuf);
      A* pgw = acc_out<T>(gw, gwbuf);
      for (std::int64_t n = 0; n < g.N; ++n)
        for (std::int64_t gr = 0; gr < g.groups; ++gr) {
          im2col(g, px + n * g.Cin * g.H * g.W, gr * g.Cg(), col);
          const A* gg = pg + (n * g.Cout + gr * Og) * P;
          gemm<A>(false, true, Og, K, P, gg, P, col, P, true, pgw + gr * Og * K, K);
        }
      store_acc<T>(gw, gwbuf);
    }
    if (want[0]) {
      const A* pw = acc_data<T>(w, wbuf);
      A* pgx = acc_out<T>(gx, gxbuf);
      for (std::int64_t n = 0; n < g.N; ++n)
        for (std::int64_t gr = 0; gr < g.groups; ++gr) {
          const A* gg = pg + (n * g.Cout + gr * Og) * P;
          gemm<A>(true, false, K, P, Og, pw + gr * Og * K, K, gg, P, false, col, P);
          col2im_add(g, col, gr * g.Cg(), pgx + n * g.Cin * g.H * g.W);
        }
      store_acc<T>(gx, gxbuf);
    }
  });
  return {gx, gw, gb};
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opts) {
  if (auto c = amp::autocast_args({&x, &weight, &bias})) return conv2d((*c)[0], (*c)[1], (*c)[2], opts);
  const Geometry g = check_conv(x, weight, bias, opts);
  const bool cuda = x.device().is_cuda();
  const ops::ConvParams cp{g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups};
  Tensor out = cuda ? ops::conv2d_cuda(x, weight, bias, cp, {g.N, g.Cout, g.OH, g.OW}) : conv2d_cpu(g, x, weight, bias);
  if (!needs_grad({&x, &weight, &bias})) return out;
  const std::array<bool, 3> want{x.requires_grad(), weight.requires_grad(), bias.defined() && bias.requires_grad()};
  // x is needed for gw, weight for gx.
  SavedTensor sx(want[1] ? x : Tensor()), sw(want[0] ? weight : Tensor());
  const DType dt = x.dtype();
  const Shape xs = x.shape(), ws = weight.shape();
  record(kOp, {x, weight, bias}, {out}, [g, cp, cuda, xs, ws, sx, sw, want, dt](const GradList& grads) {
    Tensor x_ = sx.defined() ? sx.unpack(kOp) : Tensor();
    Tensor w_ = sw.defined() ? sw.unpack(kOp) : Tensor();
    Tensor go = grads[0].dtype() == dt ? grads[0] : grads[0].to(dt);
    if (cuda) return ops::conv2d_backward_cuda(go, x_, w_, cp, want, xs, ws);
    return conv2d_backward_cpu(g, go, x_, w_, want);
  });
  return out;
}

}  // namespace ciuic
