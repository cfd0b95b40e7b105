// batch_norm over x (N, C, *): per channel c, over the M = N * prod(*) elements
// of that channel,
//   y = (x - mean_c) * invstd_c * weight_c + bias_c,   invstd_c = 1 / sqrt(var_c + eps)
// training: mean_c, var_c are the batch statistics (biased variance); running
//   stats, when given, move in place: running = (1 - momentum) * running +
//   momentum * batch, with the unbiased variance (var_c * M / (M - 1)) for
//   running_var, and their versions are bumped.
// eval: mean_c, var_c are the running stats, which must be given.
// One node, dedicated backward (sums per channel in f64, elementwise work in acc_t):
//   xhat = (x - mean) * invstd, gb = sum(gy), gw = sum(gy * xhat),
//   training: gx = w * invstd * (gy - gb / M - xhat * gw / M)   (through the batch stats)
//   eval:     gx = w * invstd * gy                                (an affine map)
// Undefined weight / bias act as 1 / 0 and get no gradient.
#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>
#include <vector>

#include "acc_data.h"
#include "cnn_cuda.h"
#include "ciuic/amp.h"
#include "op_util.h"
#include "ciuic/checkpoint.h"

namespace ciuic {

namespace {

using ops::acc_data;
using ops::acc_out;
using ops::store_acc;

constexpr const char* kOp = "batch_norm";


// Element c of a 1-D tensor of dtype T (any stride), as double.
template <typename T>
double at(const Tensor& t, std::int64_t c) {
  return static_cast<double>(static_cast<acc_t<T>>(detail::typed_ptr<T>(t)[c * t.stride(0)]));
}

// The layout of x seen as (N, C, S): element (n, c, s) at (n * C + c) * S + s.
struct Layout {
  std::int64_t N, C, S;
  std::int64_t M() const { return N * S; }  // elements per channel
};

// Per-channel affine parameters, as double.
struct Stats {
  std::vector<double> mean, invstd, w, b;
};

void check_param(const char* name, const Tensor& t, std::int64_t C, const Tensor& x) {
  if (!t.defined()) return;
  CIUIC_CHECK(t.dim() == 1 && t.size(0) == C, ShapeError, kOp, "argument '", name, "' is ", describe(t),
              "; expected shape [", C, "] (one per channel of input ", describe(x), ")");
}

void check_args(const Tensor& x, const Tensor& rm, const Tensor& rv, const Tensor& w, const Tensor& b, bool training,
                double momentum, double eps) {
  ops::check_defined(kOp, {{"input", &x}});
  ops::check_same_device(kOp, {{"input", &x}, {"running_mean", &rm}, {"running_var", &rv}, {"weight", &w}, {"bias", &b}});
  ops::check_same_dtype(kOp, {{"input", &x}, {"running_mean", &rm}, {"running_var", &rv}, {"weight", &w}, {"bias", &b}});
  ops::check_floating(kOp, "input", x);
  CIUIC_CHECK(x.dim() >= 2, ShapeError, kOp, "input is ", describe(x), "; expected at least 2 dims (N, C, ...)");
  const std::int64_t C = x.size(1);
  check_param("running_mean", rm, C, x);
  check_param("running_var", rv, C, x);
  check_param("weight", w, C, x);
  check_param("bias", b, C, x);
  CIUIC_CHECK(rm.defined() == rv.defined(), ValueError, kOp, "running_mean is ", rm.defined() ? "defined" : "undefined",
              " but running_var is ", rv.defined() ? "defined" : "undefined", "; expected both or neither");
  CIUIC_CHECK(training || rm.defined(), ValueError, kOp,
              "eval mode (training = false) with undefined running stats; expected running_mean and running_var");
  for (const Tensor* r : {&rm, &rv})
    CIUIC_CHECK(!r->defined() || !r->requires_grad(), ValueError, kOp, "running ",
                r == &rm ? "mean" : "var", " ", describe(*r),
                " requires grad; expected a buffer without gradient (running stats are not differentiated)");
  CIUIC_CHECK(std::isfinite(eps) && eps > 0, ValueError, kOp, "eps = ", eps, "; expected eps > 0");
  CIUIC_CHECK(momentum >= 0 && momentum <= 1, ValueError, kOp, "momentum = ", momentum, "; expected 0 <= momentum <= 1");
  if (training) {
    const std::int64_t M = C == 0 ? 0 : x.numel() / C;
    CIUIC_CHECK(M > 1 || C == 0, ValueError, kOp, "training with ", M, " value per channel (input ", describe(x),
                "); expected more than 1 value per channel for batch statistics");
  }
}

// Forward: y from x and the per-channel statistics; in training the statistics
// are computed here (st.mean, st.invstd filled) and the running stats updated.
template <typename T>
void forward_cpu(const Layout& L, const Tensor& x, const Tensor& y, Stats& st, const Tensor& rm, const Tensor& rv,
                 bool training, double momentum, double eps) {
  using A = acc_t<T>;
  std::vector<A> xbuf;
  const A* px = acc_data<T>(x, xbuf);
  T* py = detail::typed_ptr<T>(y);
  const std::int64_t M = L.M();
  for (std::int64_t c = 0; c < L.C; ++c) {
    double mean, var;
    if (training) {
      double s = 0;
      for (std::int64_t n = 0; n < L.N; ++n) {
        const A* p = px + (n * L.C + c) * L.S;
        for (std::int64_t i = 0; i < L.S; ++i) s += static_cast<double>(p[i]);
      }
      mean = s / static_cast<double>(M);
      double ss = 0;  // two passes: no cancellation for large means
      for (std::int64_t n = 0; n < L.N; ++n) {
        const A* p = px + (n * L.C + c) * L.S;
        for (std::int64_t i = 0; i < L.S; ++i) {
          const double d = static_cast<double>(p[i]) - mean;
          ss += d * d;
        }
      }
      var = ss / static_cast<double>(M);
    } else {
      mean = at<T>(rm, c);
      var = at<T>(rv, c);
    }
    st.mean[c] = mean;
    st.invstd[c] = 1.0 / std::sqrt(var + eps);
    if (training && rm.defined()) {
      T* pm = detail::typed_ptr<T>(rm);
      T* pv = detail::typed_ptr<T>(rv);
      const double unbiased = var * static_cast<double>(M) / static_cast<double>(M - 1);
      pm[c * rm.stride(0)] = convert<T>((1 - momentum) * at<T>(rm, c) + momentum * mean);
      pv[c * rv.stride(0)] = convert<T>((1 - momentum) * at<T>(rv, c) + momentum * unbiased);
    }
    const A scale = static_cast<A>(st.invstd[c] * st.w[c]);
    const A shift = static_cast<A>(st.b[c] - mean * st.invstd[c] * st.w[c]);
    for (std::int64_t n = 0; n < L.N; ++n) {
      const A* p = px + (n * L.C + c) * L.S;
      T* q = py + (n * L.C + c) * L.S;
      for (std::int64_t i = 0; i < L.S; ++i) q[i] = convert<T>(static_cast<A>(p[i] * scale + shift));
    }
  }
}

// Gradients for (x, weight, bias) where want says so. x is defined when needed
// (for gw, and for gx in training).
GradList backward_cpu(const Layout& L, const Tensor& gy, const Tensor& x, const Stats& st, bool training,
                      const std::array<bool, 3>& want, const Shape& x_shape) {
  const DType dt = gy.dtype();
  const Device dev = gy.device();
  Tensor gx = want[0] ? make_tensor(x_shape, dt, dev) : Tensor();
  Tensor gw = want[1] ? make_tensor({L.C}, dt, dev) : Tensor();
  Tensor gb = want[2] ? make_tensor({L.C}, dt, dev) : Tensor();
  dispatch_floating(dt, kOp, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    std::vector<A> gbuf, xbuf;
    const A* pg = acc_data<T>(gy, gbuf);
    const A* px = x.defined() ? acc_data<T>(x, xbuf) : nullptr;
    const double M = static_cast<double>(L.M());
    for (std::int64_t c = 0; c < L.C; ++c) {
      const double mean = st.mean[c], invstd = st.invstd[c];
      double sum_g = 0, sum_gxhat = 0;  // sum(gy), sum(gy * xhat)
      for (std::int64_t n = 0; n < L.N; ++n) {
        const A* g = pg + (n * L.C + c) * L.S;
        const A* p = px ? px + (n * L.C + c) * L.S : nullptr;
        for (std::int64_t i = 0; i < L.S; ++i) {
          sum_g += static_cast<double>(g[i]);
          if (p) sum_gxhat += static_cast<double>(g[i]) * (static_cast<double>(p[i]) - mean) * invstd;
        }
      }
      if (want[2]) detail::typed_ptr<T>(gb)[c] = convert<T>(sum_g);
      if (want[1]) detail::typed_ptr<T>(gw)[c] = convert<T>(sum_gxhat);
      if (!want[0]) continue;
      // gx = k * gy + a * x + b0 with per-channel constants (training), or k * gy (eval).
      const double k = st.w[c] * invstd;
      const A kk = static_cast<A>(k);
      const A a = static_cast<A>(training ? -k * invstd * sum_gxhat / M : 0.0);
      const A b0 = static_cast<A>(training ? -k * (sum_g / M - mean * invstd * sum_gxhat / M) : 0.0);
      T* q = detail::typed_ptr<T>(gx);
      for (std::int64_t n = 0; n < L.N; ++n) {
        const A* g = pg + (n * L.C + c) * L.S;
        const A* p = training ? px + (n * L.C + c) * L.S : nullptr;
        T* qq = q + (n * L.C + c) * L.S;
        if (training)
          for (std::int64_t i = 0; i < L.S; ++i) qq[i] = convert<T>(static_cast<A>(kk * g[i] + a * p[i] + b0));
        else
          for (std::int64_t i = 0; i < L.S; ++i) qq[i] = convert<T>(static_cast<A>(kk * g[i]));
      }
    }
  });
  return {gx, gw, gb};
}

// The CUDA path (cnn_cuda.h): cuDNN forward; its backward uses the batch statistics
// cuDNN saved (training) or the running stats (eval).
Tensor batch_norm_cuda_op(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                          const Tensor& bias, bool training, double momentum, double eps) {
  // As on the CPU: a checkpoint recomputation does not move the running stats again.
  const bool update = training && running_mean.defined() && !checkpoint_recomputing();
  ops::BatchNormCuda r = ops::batch_norm_cuda(x, running_mean, running_var, weight, bias, training, update, momentum, eps);
  if (update) {
    running_mean.bump_version();
    running_var.bump_version();
  }
  if (!needs_grad({&x, &weight, &bias})) return r.y;
  const std::array<bool, 3> want{x.requires_grad(), weight.defined() && weight.requires_grad(),
                                 bias.defined() && bias.requires_grad()};
  // Training reads x for every gradient (cuDNN's backward computes all three); eval
  // reads x for gw only and the running stats (stamped: an update before backward is an error).
  SavedTensor sx(training || want[1] ? x : Tensor());
  SavedTensor sw(weight.defined() && (training || want[0]) ? weight : Tensor());
  SavedTensor srm(!training ? running_mean : Tensor()), srv(!training ? running_var : Tensor());
  const DType dt = x.dtype();
  const Tensor save_mean = r.save_mean, save_invstd = r.save_invstd;
  record(kOp, {x, weight, bias}, {r.y},
         [sx, sw, srm, srv, save_mean, save_invstd, training, want, dt, eps](const GradList& g) {
           Tensor gy = g[0].dtype() == dt ? g[0] : g[0].to(dt);
           Tensor xv = sx.defined() ? sx.unpack(kOp) : Tensor();
           Tensor wv = sw.defined() ? sw.unpack(kOp) : Tensor();
           if (training) return ops::batch_norm_backward_cuda(gy, xv, wv, save_mean, save_invstd, eps, want);
           return ops::batch_norm_eval_backward_cuda(gy, xv, srm.unpack(kOp), srv.unpack(kOp), wv, eps, want);
         });
  return r.y;
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  // Under autocast: f32 (running statistics are updated in place, so they are never cast).
  if (auto c = amp::autocast_f32({&x, &weight, &bias}))
    return batch_norm((*c)[0], running_mean, running_var, (*c)[1], (*c)[2], training, momentum, eps);
  check_args(x, running_mean, running_var, weight, bias, training, momentum, eps);
  if (x.device().is_cuda()) return batch_norm_cuda_op(x, running_mean, running_var, weight, bias, training, momentum, eps);
  Layout L{x.size(0), x.size(1), 1};
  for (std::int64_t d = 2; d < x.dim(); ++d) L.S *= x.size(d);
  const auto C = static_cast<std::size_t>(L.C);
  Stats st{std::vector<double>(C), std::vector<double>(C), std::vector<double>(C, 1.0), std::vector<double>(C, 0.0)};
  Tensor y = make_tensor(x.shape(), x.dtype(), x.device());
  dispatch_floating(x.dtype(), kOp, [&](auto tag) {
    using T = decltype(tag);
    for (std::int64_t c = 0; c < L.C; ++c) {
      if (weight.defined()) st.w[c] = at<T>(weight, c);
      if (bias.defined()) st.b[c] = at<T>(bias, c);
    }
    NoGradGuard no_grad;  // the running stats update is not part of the graph
    // A checkpoint recomputation replays a forward that already moved the running stats:
    // training normalises with batch statistics, so leaving them out changes only the update.
    const bool replay = training && checkpoint_recomputing();
    forward_cpu<T>(L, x, y, st, replay ? Tensor() : running_mean, replay ? Tensor() : running_var, training, momentum, eps);
  });
  if (training && running_mean.defined() && !checkpoint_recomputing()) {
    running_mean.bump_version();
    running_var.bump_version();
  }
  if (!needs_grad({&x, &weight, &bias})) return y;
  const std::array<bool, 3> want{x.requires_grad(), weight.defined() && weight.requires_grad(),
                                 bias.defined() && bias.requires_grad()};
  // x is read for gw, and for gx in training (through xhat and the batch stats).
  SavedTensor sx(want[1] || (training && want[0]) ? x : Tensor());
  // The weight's values are captured in st.w; stamp weight so that an in-place change
  // between forward and backward is reported rather than silently ignored.
  SavedTensor sw(want[0] && weight.defined() ? weight : Tensor());
  const DType dt = x.dtype();
  const Shape x_shape = x.shape();
  record(kOp, {x, weight, bias}, {y}, [L, st, sx, sw, training, want, dt, x_shape](const GradList& g) {
    if (sw.defined()) (void)sw.unpack(kOp);
    Tensor xv = sx.defined() ? sx.unpack(kOp) : Tensor();
    Tensor gy = g[0].dtype() == dt ? g[0] : g[0].to(dt);
    return backward_cpu(L, gy, xv, st, training, want, x_shape);
  });
  return y;
}

}  // namespace ciuic
