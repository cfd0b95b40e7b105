// Losses with mean reduction, each one tape node with a loop backward.
//
// cross_entropy(logits (..., C), targets (...)): rows r = the leading dims flattened,
//   loss_r = logsumexp(logits_r) - logits_r[t_r]   (fused log-softmax + NLL)
//   loss   = sum over rows with t_r != ignore_index of loss_r, divided by their count.
//   All rows ignored: 0 / 0 = nan (as PyTorch), and the gradient is 0 everywhere.
//   The loss is f64 for f64 logits and f32 otherwise (f16/bf16 logits give an f32 loss;
//   rows are computed in f32, the row sum in f64).
//   d loss / d logits_r = (softmax(logits_r) - onehot(t_r)) * g / count, 0 for ignored rows.
// mse_loss(input, target): mean((input - target)^2) over equal shapes (no broadcasting),
//   in the input dtype; d/d input = 2 (input - target) g / n, d/d target = the negation.
//
// A target outside [0, C) that is not ignore_index gives a nan loss and a nan
// gradient row; the first one is reported to the device's error slot and raised as
// an IndexError at the next sync point (ciuic/host_sync.h), on the CPU as on a GPU.
//
// On CUDA nothing is read back: the fused kernel writes the per-row losses and
// log-sum-exps (N values kept for backward, so backward reads each row once and
// never recomputes the lse), count is a device counter, the mean is the sum and div
// ops, and backward's scale g / count is a device scalar the kernel reads.
// mse_loss is sub, mul and sum in acc_t (f32 for f16/bf16), rounded to the input
// dtype at the end.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

#include "acc_data.h"
#include "ciuic/host_sync.h"
#include "ciuic/amp.h"
#include "op_util.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/cross_entropy.h"
#include "ciuic/stream.h"
#endif

namespace ciuic {

namespace {

// A 0-dim tensor holding v.
Tensor scalar_tensor(double v, DType dt, Device dev) {
  Tensor t = make_tensor({}, dt, dev);
  dispatch_floating(dt, "scalar_tensor", [&](auto tag) {
    using T = decltype(tag);
    *static_cast<T*>(t.data_ptr()) = convert<T>(v);
  });
  return t;
}

// The value of a one-element CPU tensor, read in place (not item(), which counts as a host read).
double cpu_scalar(const Tensor& t) {
  double v = 0;
  dispatch_floating(t.dtype(), "cpu_scalar", [&](auto tag) {
    using T = decltype(tag);
    v = convert<double>(*static_cast<const T*>(t.data_ptr()));
  });
  return v;
}

// Targets as i64, contiguous; the first one outside [0, C) that is not ignore_index is reported.
std::vector<std::int64_t> checked_targets(const Tensor& targets, const Tensor& logits, std::int64_t C,
                                          std::int64_t ignore_index) {
  Tensor c = ops::contiguous_data(targets);
  std::vector<std::int64_t> t(static_cast<std::size_t>(c.numel()));
  auto load = [&](auto tag) {
    using I = decltype(tag);
    const I* p = static_cast<const I*>(c.data_ptr());
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<std::int64_t>(p[i]);
  };
  if (c.dtype() == DType::i32) load(std::int32_t{});
  else load(std::int64_t{});
  (void)logits;
  for (std::int64_t v : t)
    if (v != ignore_index && (v < 0 || v >= C)) {
      detail::report_cpu_error(kernels::DeviceErrorCode::cross_entropy_target, v, C, ignore_index);
      break;
    }
  return t;
}

struct CrossEntropyRows {
  std::int64_t count = 0;  // rows not ignored
  double loss_sum = 0;
};

// lse[r] = logsumexp of row r (left 0 for ignored rows).
template <typename A>
CrossEntropyRows cross_entropy_forward_rows(const A* x, const std::vector<std::int64_t>& t, std::int64_t C,
                                            std::int64_t ignore_index, A* lse) {
  CrossEntropyRows res;
  for (std::size_t r = 0; r < t.size(); ++r) {
    if (t[r] == ignore_index) continue;
    ++res.count;
    if (t[r] < 0 || t[r] >= C) {  // reported; nan as the CUDA kernel
      lse[r] = std::numeric_limits<A>::quiet_NaN();
      res.loss_sum = std::numeric_limits<double>::quiet_NaN();
      continue;
    }
    const A* xr = x + static_cast<std::int64_t>(r) * C;
    A m = xr[0];
    for (std::int64_t c = 1; c < C; ++c) m = std::max(m, xr[c]);
    A s = 0;
    for (std::int64_t c = 0; c < C; ++c) s += std::exp(xr[c] - m);
    lse[r] = m + std::log(s);
    res.loss_sum += static_cast<double>(lse[r] - xr[t[r]]);
  }
  return res;
}

template <typename A>
void cross_entropy_backward_rows(const A* x, const std::vector<std::int64_t>& t, const A* lse, std::int64_t C,
                                 std::int64_t ignore_index, A scale, A* gx) {
  for (std::size_t r = 0; r < t.size(); ++r) {
    if (t[r] == ignore_index) continue;  // gx stays 0
    const A* xr = x + static_cast<std::int64_t>(r) * C;
    A* gr = gx + static_cast<std::int64_t>(r) * C;
    if (t[r] < 0 || t[r] >= C) {
      for (std::int64_t c = 0; c < C; ++c) gr[c] = std::numeric_limits<A>::quiet_NaN();
      continue;
    }
    for (std::int64_t c = 0; c < C; ++c) gr[c] = std::exp(xr[c] - lse[r]) * scale;
    gr[t[r]] -= scale;
  }
}

#ifdef CIUIC_WITH_CUDA
Tensor cross_entropy_cuda(const Tensor& logits, const Tensor& targets, std::int64_t ignore_index) {
  const char* op = "cross_entropy";
  const std::int64_t C = logits.shape().back();
  const Device dev = logits.device();
  const DType loss_dt = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;  // also the kernel's row type
  Tensor x = logits.detach().contiguous();
  Tensor t = targets.detach().clone();  // private, contiguous: later in-place changes do not reach backward
  const std::int64_t N = t.numel();
  Tensor loss_rows, lse_rows, count;
  {
    DeviceGuard guard(dev);
    loss_rows = make_tensor({N}, loss_dt, dev);
    lse_rows = make_tensor({N}, loss_dt, dev);
    count = make_tensor({}, DType::i64, dev);
    kernels::cross_entropy_count_valid(static_cast<std::int64_t*>(count.data_ptr()), t.data_ptr(), t.dtype(), N,
                                       ignore_index, current_stream(dev));
    kernels::cross_entropy_forward_backward(loss_rows.data_ptr(), lse_rows.data_ptr(), nullptr, x.data_ptr(),
                                            x.dtype(), t.data_ptr(), t.dtype(), N, C, ignore_index, 0.0,
                                            current_stream(dev), detail::device_error_slot(dev));
  }
  detail::after_checked_op(dev);
  Tensor count_f = count.to(loss_dt);
  Tensor loss = div(sum(loss_rows), count_f);  // count == 0: 0 / 0 = nan, as the CPU
  if (!needs_grad({&logits})) return loss;

  SavedTensor sx(logits);
  record(op, {logits, targets}, {loss}, [=](const GradList& g) {
    Tensor xs = sx.unpack(op).contiguous();
    // g / count on the device; count == 0 means every row is ignored (gradient 0 whatever the scale).
    Tensor scale = div(g[0].detach().to(loss_dt), maximum(count_f, ones({}, TensorOptions(loss_dt).device(dev))));
    DeviceGuard guard(dev);
    Tensor gx = make_tensor(xs.shape(), xs.dtype(), dev);
    kernels::cross_entropy_backward(gx.data_ptr(), xs.data_ptr(), xs.dtype(), lse_rows.data_ptr(), t.data_ptr(),
                                    t.dtype(), N, C, ignore_index, 1.0, scale.data_ptr(), current_stream(dev));
    return GradList{gx, Tensor()};
  });
  return loss;
}

Tensor mse_loss_cuda(const Tensor& input, const Tensor& target) {
  const char* op = "mse_loss";
  const DType dt = input.dtype(), acc = dt == DType::f64 ? DType::f64 : DType::f32;
  const std::int64_t n = input.numel();
  Tensor d = sub(input.detach().to(acc), target.detach().to(acc));
  Tensor loss = div(sum(mul(d, d)), static_cast<double>(n)).to(dt);  // n == 0: nan
  if (!needs_grad({&input, &target})) return loss;

  SavedTensor sa(input), sb(target);
  const bool want_a = input.requires_grad(), want_b = target.requires_grad();
  record(op, {input, target}, {loss}, [=](const GradList& g) {
    // 2 g / n as a device scalar: no read-back
    Tensor scale = mul(g[0].detach().to(acc), 2.0 / static_cast<double>(n));
    Tensor ga = mul(sub(sa.unpack(op).to(acc), sb.unpack(op).to(acc)), scale).to(dt);
    return GradList{want_a ? ga : Tensor(), want_b ? neg(ga) : Tensor()};
  });
  return loss;
}
#endif

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, std::int64_t ignore_index) {
  const char* op = "cross_entropy";
  if (auto c = amp::autocast_f32({&logits})) return cross_entropy((*c)[0], targets, ignore_index);
  ops::check_defined(op, {{"logits", &logits}, {"targets", &targets}});
  ops::check_same_device(op, {{"logits", &logits}, {"targets", &targets}});
  ops::check_floating(op, "logits", logits);
  ops::check_index_dtype(op, "targets", targets);
  CIUIC_CHECK(logits.dim() >= 1 && logits.shape().back() >= 1, ShapeError, op, "logits ", describe(logits),
              "; expected logits of shape (..., C) with C >= 1");
  Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  CIUIC_CHECK(targets.shape() == lead, ShapeError, op, "targets ", describe(targets), " do not fit logits ",
              describe(logits), "; expected targets of shape ", shape_str(lead), " (the logits' shape without C)");
#ifdef CIUIC_WITH_CUDA
  if (logits.device().is_cuda()) return cross_entropy_cuda(logits, targets, ignore_index);
#endif
  const std::int64_t C = logits.shape().back();
  auto tgt = std::make_shared<const std::vector<std::int64_t>>(checked_targets(targets, logits, C, ignore_index));
  const DType loss_dt = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const Device dev = logits.device();
  const std::int64_t rows = static_cast<std::int64_t>(tgt->size());

  Tensor lse;  // (rows) in acc_t: kept for backward
  CrossEntropyRows fr;
  dispatch_floating(logits.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    ops::AccIn<T> xi(logits);
    ops::AccOut<A> l({rows}, dev);
    fr = cross_entropy_forward_rows<A>(xi.data(), *tgt, C, ignore_index, l.data());
    lse = l.finish();
  });
  const double loss_value = fr.count == 0 ? std::numeric_limits<double>::quiet_NaN()
                                          : fr.loss_sum / static_cast<double>(fr.count);
  Tensor loss = scalar_tensor(loss_value, loss_dt, dev);
  detail::after_checked_op(dev);
  if (!needs_grad({&logits})) return loss;

  SavedTensor sx(logits);
  const std::int64_t count = fr.count;
  record(op, {logits, targets}, {loss}, [=](const GradList& g) {
    Tensor x = sx.unpack(op);
    Tensor gx;
    const double gscale = count == 0 ? 0.0 : cpu_scalar(g[0]) / static_cast<double>(count);
    dispatch_floating(x.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      using A = acc_t<T>;
      ops::AccIn<T> xi(x);
      ops::AccOut<T> out(x.shape(), x.device());
      cross_entropy_backward_rows<A>(xi.data(), *tgt, static_cast<const A*>(lse.data_ptr()), C, ignore_index,
                                     static_cast<A>(gscale), out.data());
      gx = out.finish();
    });
    return GradList{gx, Tensor()};
  });
  return loss;
}

Tensor mse_loss(const Tensor& input, const Tensor& target) {
  const char* op = "mse_loss";
  if (auto c = amp::autocast_f32({&input, &target})) return mse_loss((*c)[0], (*c)[1]);
  ops::check_defined(op, {{"input", &input}, {"target", &target}});
  ops::check_same_device(op, {{"input", &input}, {"target", &target}});
  ops::check_same_dtype(op, {{"input", &input}, {"target", &target}});
  ops::check_floating(op, "input", input);
  CIUIC_CHECK(input.shape() == target.shape(), ShapeError, op, "shapes differ (",
              ops::describe_all({{"input", &input}, {"target", &target}}),
              "); expected equal shapes (mse_loss does not broadcast)");
#ifdef CIUIC_WITH_CUDA
  if (input.device().is_cuda()) return mse_loss_cuda(input, target);
#endif
  const std::int64_t n = input.numel();
  double s = 0;
  dispatch_floating(input.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    ops::AccIn<T> a(input), b(target);
    for (std::int64_t i = 0; i < n; ++i) {
      double d = static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i]);
      s += d * d;
    }
  });
  Tensor loss = scalar_tensor(s / static_cast<double>(n), input.dtype(), input.device());  // n == 0: nan
  if (!needs_grad({&input, &target})) return loss;

  SavedTensor sa(input), sb(target);
  const bool want_a = input.requires_grad(), want_b = target.requires_grad();
  record(op, {input, target}, {loss}, [=](const GradList& g) {
    Tensor ia = sa.unpack(op), ib = sb.unpack(op);
    const double scale = 2.0 * cpu_scalar(g[0]) / static_cast<double>(n);
    Tensor ga, gb;
    dispatch_floating(ia.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      using A = acc_t<T>;
      ops::AccIn<T> a(ia), b(ib);
      std::optional<ops::AccOut<T>> oa, ob;
      if (want_a) oa.emplace(ia.shape(), ia.device());
      if (want_b) ob.emplace(ia.shape(), ia.device());
      const A sc = static_cast<A>(scale);
      for (std::int64_t i = 0; i < n; ++i) {
        const A d = (a.data()[i] - b.data()[i]) * sc;
        if (oa) oa->data()[i] = d;
        if (ob) ob->data()[i] = -d;
      }
      if (oa) ga = oa->finish();
      if (ob) gb = ob->finish();
    });
    return GradList{ga, gb};
  });
  return loss;
}

}  // namespace ciuic
