// softmax and log_softmax along one dim. The CPU reference views the contiguous
// input as (outer, n, inner) with the softmax dim in the middle and runs over n
// for all `inner` columns at once (row-major friendly for any dim). It subtracts
// the max first, computing in acc_t<T> (f32 for f16/bf16).
//
// A row that is entirely -inf gives nan (max - max = -inf - -inf), as in PyTorch;
// a nan anywhere in a row makes the whole row nan.
//
// The backward is one dedicated pass, not a composition of ops:
//   softmax:     gx = y * (g - sum_n(g * y))
//   log_softmax: gx = g - exp(y) * sum_n(g)
//
// On CUDA both passes are the softmax kernels, which work over the last dim of a
// contiguous (rows, cols) buffer: another dim is swapped to the end first (one copy
// in, one copy out).
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "ciuic/amp.h"
#include "op_util.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/softmax.h"
#include "ciuic/stream.h"
#endif

namespace ciuic {

namespace {

struct Rows {
  std::int64_t outer = 1, n = 1, inner = 1;
};

Rows rows_of(const Shape& shape, std::int64_t d) {
  Rows r;
  if (shape.empty()) return r;
  r.outer = 1;
  r.inner = 1;
  for (std::int64_t i = 0; i < d; ++i) r.outer *= shape[i];
  for (std::size_t i = d + 1; i < shape.size(); ++i) r.inner *= shape[i];
  r.n = shape[d];
  return r;
}

template <typename T, bool Log>
void softmax_forward(const T* x, T* y, Rows r) {
  using A = acc_t<T>;
  const std::size_t inner = static_cast<std::size_t>(r.inner);
  std::vector<A> mx(inner), sum(inner);
  for (std::int64_t o = 0; o < r.outer; ++o) {
    const T* xo = x + o * r.n * r.inner;
    T* yo = y + o * r.n * r.inner;
    std::fill(mx.begin(), mx.end(), -std::numeric_limits<A>::infinity());
    std::fill(sum.begin(), sum.end(), A(0));
    for (std::int64_t j = 0; j < r.n; ++j)
      for (std::size_t i = 0; i < inner; ++i) {
        A v = static_cast<A>(xo[j * r.inner + i]);
        if (v > mx[i]) mx[i] = v;
      }
    for (std::int64_t j = 0; j < r.n; ++j)
      for (std::size_t i = 0; i < inner; ++i) {
        A e = std::exp(static_cast<A>(xo[j * r.inner + i]) - mx[i]);
        sum[i] += e;
        if constexpr (!Log && std::is_same_v<T, A>) yo[j * r.inner + i] = e;  // rescaled below
      }
    if constexpr (Log) {
      for (std::size_t i = 0; i < inner; ++i) sum[i] = mx[i] + std::log(sum[i]);  // log-sum-exp
      for (std::int64_t j = 0; j < r.n; ++j)
        for (std::size_t i = 0; i < inner; ++i)
          yo[j * r.inner + i] = convert<T>(static_cast<A>(xo[j * r.inner + i]) - sum[i]);
    } else {
      for (std::size_t i = 0; i < inner; ++i) sum[i] = A(1) / sum[i];
      for (std::int64_t j = 0; j < r.n; ++j)
        for (std::size_t i = 0; i < inner; ++i) {
          const std::int64_t k = j * r.inner + i;
          if constexpr (std::is_same_v<T, A>) yo[k] *= sum[i];
          else yo[k] = convert<T>(std::exp(static_cast<A>(xo[k]) - mx[i]) * sum[i]);
        }
    }
  }
}

template <typename T, bool Log>
void softmax_backward(const T* g, const T* y, T* gx, Rows r) {
  using A = acc_t<T>;
  const std::size_t inner = static_cast<std::size_t>(r.inner);
  std::vector<A> dot(inner);
  for (std::int64_t o = 0; o < r.outer; ++o) {
    const std::int64_t base = o * r.n * r.inner;
    std::fill(dot.begin(), dot.end(), A(0));
    for (std::int64_t j = 0; j < r.n; ++j)
      for (std::size_t i = 0; i < inner; ++i) {
        const std::int64_t k = base + j * r.inner + i;
        if constexpr (Log) dot[i] += static_cast<A>(g[k]);
        else dot[i] += static_cast<A>(g[k]) * static_cast<A>(y[k]);
      }
    for (std::int64_t j = 0; j < r.n; ++j)
      for (std::size_t i = 0; i < inner; ++i) {
        const std::int64_t k = base + j * r.inner + i;
        A gk = static_cast<A>(g[k]), yk = static_cast<A>(y[k]);
        if constexpr (Log) gx[k] = convert<T>(gk - std::exp(yk) * dot[i]);
        else gx[k] = convert<T>(yk * (gk - dot[i]));
      }
  }
}

#ifdef CIUIC_WITH_CUDA
// t with dim d swapped to the end, contiguous (t itself when d is already last and t contiguous).
Tensor to_last_dim(const Tensor& t, std::int64_t d) {
  const bool swap = t.dim() > 0 && d != t.dim() - 1;
  return (swap ? t.detach().transpose(d, -1) : t.detach()).contiguous();
}
// The inverse of to_last_dim for a result r computed in that layout.
Tensor from_last_dim(const Tensor& r, std::int64_t d) {
  const bool swap = r.dim() > 0 && d != r.dim() - 1;
  return swap ? r.transpose(d, -1).contiguous() : r;
}
// (rows, cols) of the last-dim layout of a tensor of `shape`.
std::pair<std::int64_t, std::int64_t> rows_cols(const Shape& shape, std::int64_t d) {
  const std::int64_t cols = shape.empty() ? 1 : shape[d];
  return {cols == 0 ? 0 : shape_numel(shape) / cols, cols};
}

Tensor softmax_forward_cuda(const Tensor& a, std::int64_t d, bool log) {
  Tensor x = to_last_dim(a, d);
  auto [rows, cols] = rows_cols(a.shape(), d);
  DeviceGuard guard(a.device());
  Tensor y = make_tensor(x.shape(), a.dtype(), a.device());
  kernels::softmax_forward(y.data_ptr(), x.data_ptr(), a.dtype(), rows, cols, log, current_stream(a.device()));
  return from_last_dim(y, d);
}

Tensor softmax_backward_cuda(const Tensor& g, const Tensor& y, std::int64_t d, bool log) {
  Tensor gl = to_last_dim(g, d), yl = to_last_dim(y, d);
  auto [rows, cols] = rows_cols(y.shape(), d);
  DeviceGuard guard(y.device());
  Tensor gx = make_tensor(yl.shape(), y.dtype(), y.device());
  kernels::softmax_backward(gx.data_ptr(), gl.data_ptr(), yl.data_ptr(), y.dtype(), rows, cols, log,
                            current_stream(y.device()));
  return from_last_dim(gx, d);
}
#endif

// dL/dx from g = dL/dy and the saved output y (same shape), along dim d.
template <bool Log>
Tensor softmax_grad(const char* op, const Tensor& g, const Tensor& y, std::int64_t d) {
#ifdef CIUIC_WITH_CUDA
  if (y.device().is_cuda()) return softmax_backward_cuda(g, y, d, Log);
#endif
  Tensor gc = g.contiguous(), yc = y.contiguous();
  Tensor gx = make_tensor(y.shape(), y.dtype(), y.device());
  dispatch_floating(y.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    softmax_backward<T, Log>(detail::typed_ptr<T>(gc), detail::typed_ptr<T>(yc), detail::typed_ptr<T>(gx),
                             rows_of(y.shape(), d));
  });
  return gx;
}

template <bool Log>
Tensor softmax_impl(const char* op, const Tensor& a, std::int64_t dim) {
  ops::check_defined(op, {{"input", &a}});
  ops::check_floating(op, "input", a);
  const std::int64_t d = ops::wrap_dim(op, dim, a);
  Tensor out;
#ifdef CIUIC_WITH_CUDA
  if (a.device().is_cuda()) out = softmax_forward_cuda(a, d, Log);
#endif
  if (!out.defined()) {
    Tensor ac = a.detach().contiguous();
    out = make_tensor(a.shape(), a.dtype(), a.device());
    dispatch_floating(a.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      softmax_forward<T, Log>(detail::typed_ptr<T>(ac), detail::typed_ptr<T>(out), rows_of(a.shape(), d));
    });
  }
  if (needs_grad({&a})) {
    SavedTensor so(out);
    record(op, {a}, {out}, [so, d, op](const GradList& g) {
      return GradList{softmax_grad<Log>(op, g[0], so.unpack(op), d)};
    });
  }
  return out;
}

}  // namespace

Tensor softmax(const Tensor& a, std::int64_t dim) {
  if (auto c = amp::autocast_f32({&a})) return softmax((*c)[0], dim);
  return softmax_impl<false>("softmax", a, dim);
}
Tensor log_softmax(const Tensor& a, std::int64_t dim) {
  if (auto c = amp::autocast_f32({&a})) return log_softmax((*c)[0], dim);
  return softmax_impl<true>("log_softmax", a, dim);
}

}  // namespace ciuic
