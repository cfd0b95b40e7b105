// conv2d, pooling and batch_norm: values against naive loops written here,
// gradcheck in f64 (non-contiguous inputs via permutes of NHWC tensors), and a
// catalogue of bad inputs.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {

Tensor leaf(Tensor t) { return t.requires_grad_(true); }
Tensor rnd(const Shape& s, DType dt = DType::f64, double lo = -2, double hi = 2) { return uniform(s, lo, hi, dt); }
// (N, C, H, W) as a non-contiguous view of an NHWC tensor.
Tensor nchw_view(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, DType dt = DType::f64) {
  return rnd({n, h, w, c}, dt).permute({0, 3, 1, 2});
}

void expect_ok(const GradcheckFn& f, const std::vector<Tensor>& in) {
  GradcheckResult r = gradcheck(f, in);
  INFO(r.report);
  CHECK(r.ok);
}

// got (an op's output unless in_place) has `shape`, is contiguous, and is within tol of want.
void expect_close(const Tensor& got, const std::vector<double>& want, const Shape& shape, double tol,
                  bool in_place = false) {
  REQUIRE(got.shape() == shape);
  if (!in_place) CHECK(got.is_contiguous());
  std::vector<double> g = got.to_vector<double>();
  REQUIRE(g.size() == want.size());
  double worst = 0;
  for (std::size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::abs(g[i] - want[i]));
  INFO("max abs difference " << worst);
  CHECK(worst <= tol);
}

Conv2dOptions conv_opts(std::int64_t sh, std::int64_t sw, std::int64_t ph, std::int64_t pw, std::int64_t dh,
                        std::int64_t dw, std::int64_t groups) {
  Conv2dOptions o;
  o.stride[0] = sh, o.stride[1] = sw, o.padding[0] = ph, o.padding[1] = pw;
  o.dilation[0] = dh, o.dilation[1] = dw, o.groups = groups;
  return o;
}

// Direct convolution, seven loops (n, o, oh, ow, c, i, j), in double.
std::vector<double> naive_conv(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o,
                               Shape& out_shape) {
  const std::int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);
  const std::int64_t Cout = w.size(0), Cg = w.size(1), kh = w.size(2), kw = w.size(3);
  const std::int64_t Og = Cout / o.groups;
  const std::int64_t OH = (H + 2 * o.padding[0] - o.dilation[0] * (kh - 1) - 1) / o.stride[0] + 1;
  const std::int64_t OW = (W + 2 * o.padding[1] - o.dilation[1] * (kw - 1) - 1) / o.stride[1] + 1;
  out_shape = {N, Cout, OH, OW};
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(Cout, 0.0);
  std::vector<double> out(static_cast<std::size_t>(N * Cout * OH * OW));
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t oc = 0; oc < Cout; ++oc)
      for (std::int64_t oh = 0; oh < OH; ++oh)
        for (std::int64_t ow = 0; ow < OW; ++ow) {
          double s = bv[oc];
          const std::int64_t g = oc / Og;
          for (std::int64_t c = 0; c < Cg; ++c)
            for (std::int64_t i = 0; i < kh; ++i)
              for (std::int64_t j = 0; j < kw; ++j) {
                const std::int64_t ih = oh * o.stride[0] - o.padding[0] + i * o.dilation[0];
                const std::int64_t iw = ow * o.stride[1] - o.padding[1] + j * o.dilation[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += xv[((n * Cin + g * Cg + c) * H + ih) * W + iw] * wv[((oc * Cg + c) * kh + i) * kw + j];
              }
          out[((n * Cout + oc) * OH + oh) * OW + ow] = s;
        }
  return out;
}

enum class PoolKind { max, avg };

// Fixed-window pooling on planes of (..., H, W); padding is -inf for max, 0 (counted) for avg.
std::vector<double> naive_pool(const Tensor& x, PoolKind kind, std::int64_t k, std::int64_t s, std::int64_t p,
                               Shape& out_shape) {
  if (s == 0) s = k;
  const std::int64_t H = x.size(-2), W = x.size(-1), planes = x.numel() / (H * W);
  const std::int64_t OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;
  out_shape = x.shape();
  out_shape[out_shape.size() - 2] = OH;
  out_shape[out_shape.size() - 1] = OW;
  std::vector<double> xv = x.to_vector<double>(), out;
  for (std::int64_t pl = 0; pl < planes; ++pl)
    for (std::int64_t oh = 0; oh < OH; ++oh)
      for (std::int64_t ow = 0; ow < OW; ++ow) {
        double acc = kind == PoolKind::max ? -std::numeric_limits<double>::infinity() : 0.0;
        for (std::int64_t i = 0; i < k; ++i)
          for (std::int64_t j = 0; j < k; ++j) {
            const std::int64_t ih = oh * s - p + i, iw = ow * s - p + j;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            const double v = xv[(pl * H + ih) * W + iw];
            acc = kind == PoolKind::max ? std::max(acc, v) : acc + v;
          }
        out.push_back(kind == PoolKind::max ? acc : acc / static_cast<double>(k * k));
      }
  return out;
}

std::vector<double> naive_adaptive(const Tensor& x, std::int64_t OH, std::int64_t OW, Shape& out_shape) {
  const std::int64_t H = x.size(-2), W = x.size(-1), planes = x.numel() / (H * W);
  out_shape = x.shape();
  out_shape[out_shape.size() - 2] = OH;
  out_shape[out_shape.size() - 1] = OW;
  std::vector<double> xv = x.to_vector<double>(), out;
  for (std::int64_t pl = 0; pl < planes; ++pl)
    for (std::int64_t oh = 0; oh < OH; ++oh)
      for (std::int64_t ow = 0; ow < OW; ++ow) {
        const auto h0 = static_cast<std::int64_t>(std::floor(double(oh * H) / double(OH)));
        const auto h1 = static_cast<std::int64_t>(std::ceil(double((oh + 1) * H) / double(OH)));
        const auto w0 = static_cast<std::int64_t>(std::floor(double(ow * W) / double(OW)));
        const auto w1 = static_cast<std::int64_t>(std::ceil(double((ow + 1) * W) / double(OW)));
        double s = 0;
        for (std::int64_t ih = h0; ih < h1; ++ih)
          for (std::int64_t iw = w0; iw < w1; ++iw) s += xv[(pl * H + ih) * W + iw];
        out.push_back(s / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
  return out;
}

// Per-channel mean and biased variance of x (N, C, ...).
void channel_stats(const Tensor& x, std::vector<double>& mean, std::vector<double>& var) {
  const std::int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C);
  std::vector<double> xv = x.to_vector<double>();
  mean.assign(C, 0.0);
  var.assign(C, 0.0);
  for (std::int64_t c = 0; c < C; ++c) {
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t s = 0; s < S; ++s) mean[c] += xv[(n * C + c) * S + s];
    mean[c] /= double(N * S);
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t s = 0; s < S; ++s) var[c] += std::pow(xv[(n * C + c) * S + s] - mean[c], 2);
    var[c] /= double(N * S);
  }
}

std::vector<double> naive_bn(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& var,
                             const Tensor& w, const Tensor& b, double eps) {
  const std::int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C);
  std::vector<double> xv = x.to_vector<double>(), out(xv.size());
  std::vector<double> wv = w.defined() ? w.to_vector<double>() : std::vector<double>(C, 1.0);
  std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(C, 0.0);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t s = 0; s < S; ++s) {
        const std::size_t i = static_cast<std::size_t>((n * C + c) * S + s);
        out[i] = (xv[i] - mean[c]) / std::sqrt(var[c] + eps) * wv[c] + bv[c];
      }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- conv2d

TEST_CASE("conv2d matches a direct 7-loop convolution", "[ops]") {
  manual_seed(101);
  struct Case {
    std::int64_t N, Cin, H, W, Cout, kh, kw;
    Conv2dOptions o;
    bool bias;
  };
  const std::vector<Case> cases = {
      {2, 3, 5, 6, 4, 3, 3, conv_opts(1, 1, 0, 0, 1, 1, 1), true},
      {2, 3, 7, 6, 2, 3, 2, conv_opts(2, 2, 1, 1, 1, 1, 1), true},
      {1, 4, 7, 7, 4, 3, 3, conv_opts(1, 2, 2, 1, 2, 2, 1), false},
      {2, 4, 6, 5, 6, 2, 3, conv_opts(2, 1, 1, 0, 1, 2, 2), true},
      {2, 4, 5, 5, 4, 1, 1, conv_opts(1, 1, 0, 0, 1, 1, 4), true},  // depthwise 1x1
      {1, 2, 3, 3, 3, 3, 3, conv_opts(1, 1, 0, 0, 1, 1, 1), true},  // 1x1 output
      {1, 16, 24, 24, 8, 3, 3, conv_opts(1, 1, 1, 1, 1, 1, 1), true},  // K = 144, P = 576: crosses GEMM blocks
  };
  for (const DType dt : {DType::f64, DType::f32}) {
    for (const Case& c : cases) {
      CAPTURE(dtype_name(dt), c.N, c.Cin, c.H, c.W, c.Cout, c.kh, c.kw, c.o.groups);
      Tensor x = nchw_view(c.N, c.Cin, c.H, c.W, dt);
      Tensor w = rnd({c.Cout, c.Cin / c.o.groups, c.kh, c.kw}, dt);
      Tensor b = c.bias ? rnd({c.Cout}, dt) : Tensor();
      Shape shape;
      std::vector<double> want = naive_conv(x, w, b, c.o, shape);
      expect_close(conv2d(x, w, b, c.o), want, shape, dt == DType::f64 ? 1e-12 : 1e-4);
    }
  }
}

TEST_CASE("conv2d computes f16 and bf16 in f32", "[ops]") {
  manual_seed(102);
  Tensor x = nchw_view(2, 4, 6, 6, DType::f32), w = rnd({4, 2, 3, 3}, DType::f32), b = rnd({4}, DType::f32);
  Conv2dOptions o = conv_opts(2, 1, 1, 1, 1, 1, 2);
  for (const DType dt : {DType::f16, DType::bf16}) {
    Tensor xh = x.to(dt), wh = w.to(dt), bh = b.to(dt);
    Shape shape;
    std::vector<double> want = naive_conv(xh, wh, bh, o, shape);  // same rounded inputs
    Tensor y = conv2d(xh, wh, bh, o);
    CHECK(y.dtype() == dt);
    expect_close(y, want, shape, dt == DType::f16 ? 2e-2 : 1.5e-1);
  }
}

TEST_CASE("conv2d passes gradcheck (stride, padding, dilation, groups, strided input)", "[gradcheck][ops]") {
  manual_seed(103);
  {
    Tensor x = leaf(nchw_view(2, 4, 6, 5)), w = leaf(rnd({4, 2, 3, 2})), b = leaf(rnd({4}));
    Conv2dOptions o = conv_opts(2, 1, 1, 1, 2, 1, 2);
    expect_ok([o](auto& in) { return conv2d(in[0], in[1], in[2], o); }, {x, w, b});
  }
  {
    Tensor x = leaf(nchw_view(2, 3, 5, 6)), w = leaf(rnd({2, 3, 3, 3}).permute({0, 1, 3, 2}));
    Conv2dOptions o = conv_opts(1, 2, 1, 0, 1, 1, 1);
    expect_ok([o](auto& in) { return conv2d(in[0], in[1], Tensor(), o); }, {x, w});
  }
  {
    // Only some inputs need a gradient.
    Tensor x = leaf(rnd({2, 2, 5, 5})), w = rnd({4, 1, 2, 2}), b = leaf(rnd({4}));
    Conv2dOptions o = conv_opts(1, 1, 1, 1, 2, 2, 2);
    expect_ok([o, w](auto& in) { return conv2d(in[0], w, in[1], o); }, {x, b});
    Tensor x2 = rnd({2, 2, 5, 5}), w2 = leaf(rnd({4, 1, 2, 2}));
    expect_ok([o, x2](auto& in) { return conv2d(x2, in[0], Tensor(), o); }, {w2});
  }
}

TEST_CASE("conv2d gradients have the inputs' shapes and only where required", "[ops]") {
  manual_seed(104);
  Tensor x = leaf(rnd({2, 4, 5, 5}, DType::f32)), w = leaf(rnd({6, 2, 3, 3}, DType::f32)), b = rnd({6}, DType::f32);
  Tensor y = conv2d(x, w, b, conv_opts(1, 1, 1, 1, 1, 1, 2));
  sum(y).backward();
  REQUIRE(x.grad().defined());
  REQUIRE(w.grad().defined());
  CHECK(x.grad().shape() == x.shape());
  CHECK(w.grad().shape() == w.shape());
  CHECK_FALSE(b.grad().defined());
  CHECK(x.grad().dtype() == DType::f32);
}

// ---------------------------------------------------------------- pooling

TEST_CASE("max_pool2d and avg_pool2d match naive loops", "[ops]") {
  manual_seed(201);
  struct Case {
    std::int64_t k, s, p;
  };
  for (const Case& c : {Case{2, 0, 0}, Case{3, 2, 1}, Case{3, 1, 1}, Case{2, 1, 1}, Case{4, 3, 2}}) {
    CAPTURE(c.k, c.s, c.p);
    for (const Tensor& x : {nchw_view(2, 3, 7, 6), rnd({3, 5, 7})}) {
      Shape shape;
      std::vector<double> want = naive_pool(x, PoolKind::max, c.k, c.s, c.p, shape);
      expect_close(max_pool2d(x, c.k, c.s, c.p), want, shape, 1e-12);
      want = naive_pool(x, PoolKind::avg, c.k, c.s, c.p, shape);
      expect_close(avg_pool2d(x, c.k, c.s, c.p), want, shape, 1e-12);
    }
  }
  // f32 and f16
  Tensor xf = nchw_view(1, 2, 6, 6, DType::f32);
  Shape shape;
  std::vector<double> want = naive_pool(xf, PoolKind::avg, 3, 2, 1, shape);
  expect_close(avg_pool2d(xf, 3, 2, 1), want, shape, 1e-6);
  Tensor xh = xf.to(DType::f16);
  want = naive_pool(xh, PoolKind::max, 2, 0, 0, shape);
  expect_close(max_pool2d(xh, 2), want, shape, 0.0);
}

TEST_CASE("avg_pool2d counts padding in the divisor (count_include_pad)", "[ops]") {
  Tensor x = ones({1, 1, 2, 2}, DType::f64);
  // kernel 3, stride 1, padding 1: every window holds the 4 ones and 5 padded zeros.
  std::vector<double> v = avg_pool2d(x, 3, 1, 1).to_vector<double>();
  for (double e : v) CHECK(e == Approx(4.0 / 9.0));
}

TEST_CASE("max_pool2d sends the gradient to the first maximum on ties", "[ops]") {
  // One 2x2 window of equal values, and a window with a maximum repeated.
  Tensor x = leaf(from_vector<double>({1, 1, 5, 2, 1, 1, 5, 5}, {1, 1, 2, 4}));
  Tensor y = max_pool2d(x, 2);
  CHECK(y.to_vector<double>() == std::vector<double>{1, 5});
  sum(y).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 0, 1, 0, 0, 0, 0, 0});
  // Overlapping windows that share their maximum accumulate; all-zero windows pick their first element.
  Tensor z = leaf(from_vector<double>({0, 9, 0, 0, 0, 0, 0, 0, 0}, {1, 3, 3}));
  sum(max_pool2d(z, 2, 1)).backward();
  CHECK(z.grad().to_vector<double>() == std::vector<double>{0, 2, 0, 1, 1, 0, 0, 0, 0});
}

TEST_CASE("adaptive_avg_pool2d matches PyTorch's bins", "[ops]") {
  manual_seed(202);
  struct Case {
    std::int64_t oh, ow;
  };
  Tensor x = nchw_view(2, 3, 7, 5);
  for (const Case& c : {Case{1, 1}, Case{3, 2}, Case{7, 5}, Case{4, 3}, Case{9, 8}}) {
    CAPTURE(c.oh, c.ow);
    Shape shape;
    std::vector<double> want = naive_adaptive(x, c.oh, c.ow, shape);
    expect_close(adaptive_avg_pool2d(x, c.oh, c.ow), want, shape, 1e-12);
  }
  // 1x1 is the global average.
  Tensor g = adaptive_avg_pool2d(x, 1, 1);
  expect_close(g, mean(x, {2, 3}, true).to_vector<double>(), {2, 3, 1, 1}, 1e-12);
  // Known bins: H = 5 into 3 gives rows [0, 2), [1, 4), [3, 5).
  Tensor r = from_vector<double>({1, 2, 3, 4, 5}, {1, 5, 1});
  CHECK(adaptive_avg_pool2d(r, 3, 1).to_vector<double>() == std::vector<double>{1.5, 3.0, 4.5});
}

TEST_CASE("pooling passes gradcheck", "[gradcheck][ops]") {
  manual_seed(203);
  Tensor x = leaf(nchw_view(2, 3, 7, 6));
  expect_ok([](auto& in) { return max_pool2d(in[0], 3, 2, 1); }, {x});
  expect_ok([](auto& in) { return max_pool2d(in[0], 2); }, {x});
  expect_ok([](auto& in) { return avg_pool2d(in[0], 3, 2, 1); }, {x});
  expect_ok([](auto& in) { return avg_pool2d(in[0], 2, 1); }, {x});
  expect_ok([](auto& in) { return adaptive_avg_pool2d(in[0], 3, 4); }, {x});
  expect_ok([](auto& in) { return adaptive_avg_pool2d(in[0], 8, 5); }, {x});
  Tensor x3 = leaf(rnd({3, 5, 6}).transpose(1, 2));
  expect_ok([](auto& in) { return max_pool2d(in[0], 2, 1); }, {x3});
  expect_ok([](auto& in) { return avg_pool2d(in[0], 3, 1, 1); }, {x3});
}

// ---------------------------------------------------------------- batch_norm

TEST_CASE("batch_norm training normalises with batch statistics", "[ops]") {
  manual_seed(301);
  Tensor x = nchw_view(3, 4, 5, 6), w = rnd({4}), b = rnd({4});
  std::vector<double> mean, var;
  channel_stats(x, mean, var);
  expect_close(batch_norm(x, Tensor(), Tensor(), w, b, true, 0.1, 1e-5), naive_bn(x, mean, var, w, b, 1e-5), x.shape(),
               1e-10);
  expect_close(batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true), naive_bn(x, mean, var, Tensor(), Tensor(), 1e-5),
               x.shape(), 1e-10);
  // 2-D (N, C) and 3-D (N, C, L) inputs.
  for (const Tensor& xs : {rnd({6, 3}), rnd({2, 5, 3}).transpose(1, 2)}) {
    Tensor ws = rnd({3}), bs = rnd({3});
    channel_stats(xs, mean, var);
    expect_close(batch_norm(xs, Tensor(), Tensor(), ws, bs, true, 0.1, 1e-3), naive_bn(xs, mean, var, ws, bs, 1e-3),
                 xs.shape(), 1e-10);
  }
  // f32 and bf16 compute in f32.
  Tensor xf = x.to(DType::f32);
  channel_stats(xf, mean, var);
  expect_close(batch_norm(xf, Tensor(), Tensor(), w.to(DType::f32), b.to(DType::f32), true),
               naive_bn(xf, mean, var, w, b, 1e-5), x.shape(), 1e-4);
  Tensor xb = x.to(DType::bf16);
  channel_stats(xb, mean, var);
  Tensor yb = batch_norm(xb, Tensor(), Tensor(), w.to(DType::bf16), b.to(DType::bf16), true);
  CHECK(yb.dtype() == DType::bf16);
  expect_close(yb, naive_bn(xb, mean, var, w.to(DType::bf16), b.to(DType::bf16), 1e-5), x.shape(), 0.1);
}

TEST_CASE("batch_norm training updates running stats in place and bumps their versions", "[ops]") {
  manual_seed(302);
  Tensor x = nchw_view(2, 3, 4, 5);
  Tensor rm = from_vector<double>({0.5, -1.0, 2.0}, {3}), rv = from_vector<double>({1.0, 2.0, 0.5}, {3});
  const std::uint64_t vm = rm.version(), vv = rv.version();
  std::vector<double> mean, var;
  channel_stats(x, mean, var);
  const double M = 2 * 4 * 5, momentum = 0.25;
  Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), true, momentum, 1e-5);
  CHECK(rm.version() > vm);
  CHECK(rv.version() > vv);
  const std::vector<double> old_m{0.5, -1.0, 2.0}, old_v{1.0, 2.0, 0.5};
  std::vector<double> want_m, want_v;
  for (int c = 0; c < 3; ++c) {
    want_m.push_back((1 - momentum) * old_m[c] + momentum * mean[c]);
    want_v.push_back((1 - momentum) * old_v[c] + momentum * var[c] * M / (M - 1));  // unbiased
  }
  expect_close(rm, want_m, {3}, 1e-12);
  expect_close(rv, want_v, {3}, 1e-12);
  // The output still used the biased batch variance.
  expect_close(y, naive_bn(x, mean, var, Tensor(), Tensor(), 1e-5), x.shape(), 1e-10);
  // Strided running stats are written through their strides.
  Tensor buf = zeros({3, 2}, DType::f64);
  Tensor rm2 = buf.select(1, 0), rv2 = buf.select(1, 1);
  rv2.fill_(1.0);
  batch_norm(x, rm2, rv2, Tensor(), Tensor(), true, 1.0, 1e-5);
  expect_close(rm2, mean, {3}, 1e-12, true);
  // Eval reads the stats and leaves them alone.
  const std::uint64_t v2 = rm.version();
  batch_norm(x, rm, rv, Tensor(), Tensor(), false);
  CHECK(rm.version() == v2);
  expect_close(rm, want_m, {3}, 1e-12);
}

TEST_CASE("batch_norm training under grad mode records only x, weight, bias", "[ops]") {
  manual_seed(303);
  Tensor x = leaf(rnd({4, 3, 2})), w = leaf(rnd({3})), rm = zeros({3}, DType::f64), rv = ones({3}, DType::f64);
  Tensor y = batch_norm(x, rm, rv, w, Tensor(), true);
  sum(mul(y, y)).backward();
  CHECK(x.grad().defined());
  CHECK(w.grad().defined());
  CHECK_FALSE(rm.requires_grad());
  CHECK_FALSE(rm.grad().defined());
}

TEST_CASE("batch_norm eval uses the running stats", "[ops]") {
  manual_seed(304);
  Tensor x = nchw_view(2, 3, 4, 4), w = rnd({3}), b = rnd({3});
  std::vector<double> mean{0.3, -0.2, 1.0}, var{0.5, 2.0, 1.5};
  Tensor rm = from_vector(mean, {3}), rv = from_vector(var, {3});
  expect_close(batch_norm(x, rm, rv, w, b, false, 0.1, 1e-3), naive_bn(x, mean, var, w, b, 1e-3), x.shape(), 1e-12);
  expect_close(batch_norm(x, rm, rv, Tensor(), b, false), naive_bn(x, mean, var, Tensor(), b, 1e-5), x.shape(), 1e-12);
}

TEST_CASE("batch_norm passes gradcheck in training and eval", "[gradcheck][ops]") {
  manual_seed(305);
  // Training without running stats, so repeated calls from gradcheck change no state.
  Tensor x = leaf(nchw_view(2, 3, 5, 4)), w = leaf(rnd({3})), b = leaf(rnd({3}));
  expect_ok([](auto& in) { return batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true); }, {x, w, b});
  expect_ok([](auto& in) { return batch_norm(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-3); }, {x});
  Tensor x2 = leaf(rnd({5, 4})), w2 = leaf(rnd({8}).slice(0, 0, 8, 2));
  expect_ok([](auto& in) { return batch_norm(in[0], Tensor(), Tensor(), in[1], Tensor(), true); }, {x2, w2});
  Tensor x3 = leaf(rnd({3, 6, 2}).transpose(1, 2));  // (3, 2, 6): C = 2
  Tensor b3 = leaf(rnd({2}));
  expect_ok([](auto& in) { return batch_norm(in[0], Tensor(), Tensor(), Tensor(), in[1], true); }, {x3, b3});
  // Eval: running stats are read only.
  Tensor rm = rnd({3}), rv = rnd({3}, DType::f64, 0.5, 2.0);
  expect_ok([rm, rv](auto& in) { return batch_norm(in[0], rm, rv, in[1], in[2], false); }, {x, w, b});
}

// ---------------------------------------------------------------- bad inputs

TEST_CASE("conv2d rejects bad inputs with clear errors", "[ops]") {
  Tensor x = zeros({2, 4, 5, 5}), w = zeros({6, 2, 3, 3});
  Conv2dOptions g2 = conv_opts(1, 1, 0, 0, 1, 1, 2);
  CHECK_NOTHROW(conv2d(x, w, Tensor(), g2));
  CHECK_THROWS_WITH_ALL(conv2d(zeros({4, 5, 5}), w), ShapeError, "conv2d", "f32[4, 5, 5]", "expected 4 dims");
  CHECK_THROWS_WITH_ALL(conv2d(x, zeros({6, 4, 3})), ShapeError, "conv2d", "weight", "expected 4 dims");
  CHECK_THROWS_WITH_ALL(conv2d(zeros({2, 3, 5, 5}), zeros({6, 1, 3, 3}), Tensor(), g2), ShapeError,
                        "input channels 3", "groups = 2");
  CHECK_THROWS_WITH_ALL(conv2d(x, zeros({6, 3, 3, 3}), Tensor(), g2), ShapeError, "has 3 input channels per group",
                        "Cin/groups = 4/2 = 2");
  CHECK_THROWS_WITH_ALL(conv2d(x, zeros({5, 2, 3, 3}), Tensor(), g2), ShapeError, "output channels 5",
                        "Cout % groups == 0");
  CHECK_THROWS_WITH_ALL(conv2d(x, zeros({6, 4, 3, 3}), zeros({5})), ShapeError, "bias", "f32[5]", "expected shape [6]");
  CHECK_THROWS_WITH_ALL(conv2d(x, zeros({6, 4, 3, 3}), Tensor(), conv_opts(0, 1, 0, 0, 1, 1, 1)), ValueError, "stride (0, 1)",
                        "positive");
  CHECK_THROWS_WITH_ALL(conv2d(x, zeros({6, 4, 3, 3}), Tensor(), conv_opts(1, 1, 0, -1, 1, 1, 1)), ValueError,
                        "padding (0, -1)", "non-negative");
  CHECK_THROWS_WITH_ALL(conv2d(x, zeros({6, 4, 3, 3}), Tensor(), conv_opts(1, 1, 0, 0, 1, 0, 1)), ValueError,
                        "dilation (1, 0)");
  CHECK_THROWS_WITH_ALL(conv2d(x, zeros({6, 4, 3, 3}), Tensor(), conv_opts(1, 1, 0, 0, 1, 1, 0)), ValueError, "groups = 0");
  CHECK_THROWS_WITH_ALL(conv2d(zeros({1, 4, 2, 5}), zeros({6, 4, 3, 3})), ShapeError, "computed output size 0x3",
                        "input 2x5", "kernel 3x3");
  CHECK_THROWS_WITH_ALL(conv2d(x, zeros({6, 4, 3, 3}), Tensor(), conv_opts(1, 1, 0, 0, 3, 1, 1)), ShapeError,
                        "computed output size -1x3", "dilation (3, 1)");
  CHECK_THROWS_WITH_ALL(conv2d(x, zeros({6, 4, 3, 3}, DType::f64)), DTypeError, "conv2d", "mismatched dtypes", "f64");
  CHECK_THROWS_WITH_ALL(conv2d(zeros({2, 4, 5, 5}, DType::i64), zeros({6, 4, 3, 3}, DType::i64)), DTypeError,
                        "floating dtype");
  CHECK_THROWS_WITH_ALL(conv2d(x, Tensor()), ValueError, "conv2d", "'weight'", "undefined");
}

TEST_CASE("pooling rejects bad inputs with clear errors", "[ops]") {
  Tensor x = zeros({1, 2, 5, 5});
  CHECK_THROWS_WITH_ALL(max_pool2d(zeros({5, 5}), 2), ShapeError, "max_pool2d", "f32[5, 5]", "expected 4 dims");
  CHECK_THROWS_WITH_ALL(avg_pool2d(zeros({1, 1, 1, 5, 5}), 2), ShapeError, "avg_pool2d", "expected 4 dims");
  CHECK_THROWS_WITH_ALL(max_pool2d(x, 0), ValueError, "kernel = 0");
  CHECK_THROWS_WITH_ALL(max_pool2d(x, 2, -1), ValueError, "stride = -1");
  CHECK_THROWS_WITH_ALL(avg_pool2d(x, 3, 1, 2), ValueError, "padding = 2 with kernel = 3", "kernel/2 = 1");
  CHECK_THROWS_WITH_ALL(max_pool2d(x, 2, 1, -1), ValueError, "padding = -1");
  CHECK_THROWS_WITH_ALL(max_pool2d(zeros({1, 2, 2, 5}), 3), ShapeError, "computed output size 0x1", "input 2x5",
                        "kernel 3");
  CHECK_THROWS_WITH_ALL(max_pool2d(zeros({1, 2, 5, 5}, DType::i32), 2), DTypeError, "max_pool2d", "floating dtype");
  CHECK_THROWS_WITH_ALL(adaptive_avg_pool2d(x, 0, 2), ValueError, "adaptive_avg_pool2d", "output size 0x2");
  CHECK_THROWS_WITH_ALL(adaptive_avg_pool2d(zeros({1, 2, 0, 5}), 1, 1), ShapeError, "non-empty spatial dims");
  CHECK_THROWS_WITH_ALL(adaptive_avg_pool2d(Tensor(), 1, 1), ValueError, "undefined");
}

TEST_CASE("batch_norm rejects bad inputs with clear errors", "[ops]") {
  Tensor x = zeros({2, 3, 4}), c3 = zeros({3}), c4 = ones({4});
  CHECK_THROWS_WITH_ALL(batch_norm(zeros({3}), Tensor(), Tensor(), Tensor(), Tensor(), true), ShapeError, "batch_norm",
                        "f32[3]", "at least 2 dims");
  CHECK_THROWS_WITH_ALL(batch_norm(x, Tensor(), Tensor(), c4, Tensor(), true), ShapeError, "'weight'", "f32[4]",
                        "expected shape [3]");
  CHECK_THROWS_WITH_ALL(batch_norm(x, c4, c4, Tensor(), Tensor(), true), ShapeError, "'running_mean'");
  CHECK_THROWS_WITH_ALL(batch_norm(x, c3, Tensor(), Tensor(), Tensor(), true), ValueError, "running_var is undefined",
                        "both or neither");
  CHECK_THROWS_WITH_ALL(batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false), ValueError, "eval mode",
                        "expected running_mean and running_var");
  CHECK_THROWS_WITH_ALL(batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 0.0), ValueError, "eps = 0");
  CHECK_THROWS_WITH_ALL(batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 1.5), ValueError, "momentum = 1.5");
  CHECK_THROWS_WITH_ALL(batch_norm(zeros({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true), ValueError,
                        "1 value per channel", "more than 1");
  Tensor rg = zeros({3}).requires_grad_(true);
  CHECK_THROWS_WITH_ALL(batch_norm(x, rg, ones({3}), Tensor(), Tensor(), true), ValueError, "running mean",
                        "requires grad");
  CHECK_THROWS_WITH_ALL(batch_norm(x, Tensor(), Tensor(), zeros({3}, DType::f64), Tensor(), true), DTypeError,
                        "mismatched dtypes");
  CHECK_THROWS_WITH_ALL(batch_norm(zeros({2, 3}, DType::i64), Tensor(), Tensor(), Tensor(), Tensor(), true), DTypeError,
                        "floating dtype");
  // Eval with a single sample is fine.
  CHECK_NOTHROW(batch_norm(zeros({1, 3}), c3, ones({3}), Tensor(), Tensor(), false));
}
