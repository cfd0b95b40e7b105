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
// On CUDA: cross_entropy runs the fused kernel, once for the per-row losses (their
// sum and the division by count are the sum and div ops) and again in backward for
// the gradient, which recomputes the row's log-sum-exp instead of keeping (N, C)
// probabilities. The targets are checked on the host first (one copy, the CPU's
// IndexError), which also gives count. mse_loss is sub, mul and sum in acc_t
// (f32 for f16/bf16), rounded to the input dtype at the end.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

#include "acc_data.h"
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

// Targets as i64, contiguous; IndexError on the first one outside [0, C) that is not ignore_index.
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
  for (std::int64_t v : t)
    CIUIC_CHECK(v == ignore_index || (v >= 0 && v < C), IndexError, "cross_entropy", "target ", v,
                " out of range for logits ", describe(logits), " (C = ", C, "); expected targets in [0, ", C,
                ") or ignore_index ", ignore_index);
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
    const A* xr = x + static_cast<std::int64_t>(r) * C;
    A m = xr[0];
    for (std::int64_t c = 1; c < C; ++c) m = std::max(m, xr[c]);
    A s = 0;
    for (std::int64_t c = 0; c < C; ++c) s += std::exp(xr[c] - m);
    lse[r] = m + std::log(s);
    res.loss_sum += static_cast<double>(lse[r] - xr[t[r]]);
    ++res.count;
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
    for (std::int64_t c = 0; c < C; ++c) gr[c] = std::exp(xr[c] - lse[r]) * scale;
    gr[t[r]] -= scale;
  }
}

#ifdef CIUIC_WITH_CUDA
Tensor cross_entropy_cuda(const Tensor& logits, const Tensor& targets, std::int64_t ignore_index) {
  const char* op = "cross_entropy";
  const std::int64_t C = logits.shape().back();
  const std::vector<std::int64_t> host_t = checked_targets(targets.to(Device::cpu()), logits, C, ignore_index);
  const std::int64_t N = static_cast<std::int64_t>(host_t.size());
  const std::int64_t count =
      std::count_if(host_t.begin(), host_t.end(), [&](std::int64_t v) { return v != ignore_index; });
  const Device dev = logits.device();
  const DType loss_dt = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;  // also the kernel's row type
  Tensor x = logits.detach().contiguous();
  Tensor t = targets.detach().clone();  // private, contiguous: later in-place changes do not reach backward
  Tensor loss_rows;
  {
    DeviceGuard guard(dev);
    loss_rows = make_tensor({N}, loss_dt, dev);
    kernels::cross_entropy_forward_backward(loss_rows.data_ptr(), nullptr, nullptr, x.data_ptr(), x.dtype(),
                                            t.data_ptr(), t.dtype(), N, C, ignore_index, 0.0, current_stream(dev));
  }
  Tensor loss = div(sum(loss_rows), static_cast<double>(count));  // count == 0: 0 / 0 = nan, as the CPU
  if (!needs_grad({&logits})) return loss;

  SavedTensor sx(logits);
  record(op, {logits, targets}, {loss}, [=](const GradList& g) {
    Tensor xs = sx.unpack(op).contiguous();
    const double gscale = count == 0 ? 0.0 : g[0].item() / static_cast<double>(count);
    DeviceGuard guard(dev);
    Tensor gx = make_tensor(xs.shape(), xs.dtype(), dev);
    kernels::cross_entropy_forward_backward(nullptr, nullptr, gx.data_ptr(), xs.data_ptr(), xs.dtype(),
                                            t.data_ptr(), t.dtype(), N, C, ignore_index, gscale,
                                            current_stream(dev));
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
    const double scale = 2.0 * g[0].item() / static_cast<double>(n);
    Tensor ga = mul(sub(sa.unpack(op).to(acc), sb.unpack(op).to(acc)), scale).to(dt);
    return GradList{want_a ? ga : Tensor(), want_b ? neg(ga) : Tensor()};
  });
  return loss;
}
#endif

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, std::int64_t ignore_index) {
  const char* op = "cross_entropy";
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
  if (!needs_grad({&logits})) return loss;

  SavedTensor sx(logits);
  const std::int64_t count = fr.count;
  record(op, {logits, targets}, {loss}, [=](const GradList& g) {
    Tensor x = sx.unpack(op);
    Tensor gx;
    const double gscale = count == 0 ? 0.0 : g[0].item() / static_cast<double>(count);
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
    const double scale = 2.0 * g[0].item() / static_cast<double>(n);
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
