// nll_loss, binary_cross_entropy(_with_logits), l1_loss, smooth_l1_loss, huber_loss,
// kl_div with PyTorch's reductions (ops.h, Reduction).
//
// Each loss is its pointwise formula in ops that have CPU and CUDA paths (where,
// logsigmoid, abs, log, the comparisons, sum), followed by the reduction, so the
// gradients are those ops' gradients, on either device. binary_cross_entropy records
// its own backward (PyTorch's: (p - y) / max(p (1 - p), 1e-12), which stays finite at
// p = 0 and 1 where the clamped logs have no slope).
//
// Checks that need values: nll_loss's target range (IndexError naming the first bad
// target) and binary_cross_entropy's input range (ValueError) are made on the CPU at
// once; for CUDA tensors nll_loss reads one count back (a sync) and
// binary_cross_entropy does not check (as PyTorch's device assert would not be caught).
#include <cmath>
#include <limits>

#include "op_util.h"

namespace ciuic {

namespace {

Tensor reduce_loss(const char* op, const Tensor& l, Reduction r, std::int64_t batch = -1) {
  switch (r) {
    case Reduction::none: return l;
    case Reduction::sum: return sum(l);
    case Reduction::mean: return mean(l);
    case Reduction::batchmean:
      CIUIC_CHECK(batch >= 0, ValueError, op, "reduction batchmean for ", describe(l),
                  "; expected none, mean or sum (batchmean is kl_div's)");
      return div(sum(l), static_cast<double>(batch));  // batch 0: 0 / 0 = nan, as PyTorch
  }
  detail::fail<ValueError>(op, "unknown reduction ", static_cast<int>(r));
}

void check_same_shape(const char* op, const Tensor& a, const char* an, const Tensor& b, const char* bn) {
  ops::check_defined(op, {{an, &a}, {bn, &b}});
  CIUIC_CHECK(a.shape() == b.shape(), ShapeError, op, "got ", ops::describe_all({{an, &a}, {bn, &b}}),
              "; expected equal shapes");
  ops::check_same_device(op, {{an, &a}, {bn, &b}});
  ops::check_floating(op, an, a);
  ops::check_same_dtype(op, {{an, &a}, {bn, &b}});
}

}  // namespace

Reduction reduction_from_string(const std::string& name, const char* op) {
  if (name == "none") return Reduction::none;
  if (name == "mean") return Reduction::mean;
  if (name == "sum") return Reduction::sum;
  if (name == "batchmean") return Reduction::batchmean;
  detail::fail<ValueError>(op, "reduction \"", name, "\"; expected \"none\", \"mean\", \"sum\" or \"batchmean\"");
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& targets, std::int64_t ignore_index, Reduction reduction) {
  const char* op = "nll_loss";
  ops::check_defined(op, {{"log_probs", &log_probs}, {"targets", &targets}});
  ops::check_floating(op, "log_probs", log_probs);
  ops::check_index_dtype(op, "targets", targets);
  ops::check_same_device(op, {{"log_probs", &log_probs}, {"targets", &targets}});
  CIUIC_CHECK(log_probs.dim() >= 1, ShapeError, op, "log_probs ", describe(log_probs),
              "; expected (..., C) with the classes last, as cross_entropy");
  const Shape& ls = log_probs.shape();
  CIUIC_CHECK(targets.shape() == Shape(ls.begin(), ls.end() - 1), ShapeError, op, "got ",
              ops::describe_all({{"log_probs", &log_probs}, {"targets", &targets}}),
              "; expected targets of log_probs' shape without its last (class) dim");
  const std::int64_t C = ls.back();
  Tensor t = targets.to(DType::i64);
  Tensor valid = ne(t, static_cast<double>(ignore_index));
  Tensor bad = logical_and(valid, logical_or(lt(t, 0.0), ge(t, static_cast<double>(C))));
  if (t.device().is_cpu()) {
    const std::vector<std::int64_t> tv = t.to_vector<std::int64_t>();
    for (std::int64_t v : tv)
      CIUIC_CHECK(v == ignore_index || (v >= 0 && v < C), IndexError, op, "target ", v, " out of range for ",
                  describe(log_probs), " (C = ", C, ", ignore_index = ", ignore_index,
                  "); expected 0 <= target < C or ignore_index");
  } else {
    const std::int64_t nbad = static_cast<std::int64_t>(sum(bad).item());  // one read-back on CUDA
    CIUIC_CHECK(nbad == 0, IndexError, op, nbad, " targets out of range for ", describe(log_probs), " (C = ", C,
                ", ignore_index = ", ignore_index, "); expected 0 <= target < C or ignore_index");
  }
  // -log_probs[t] per row by selection with the one-hot mask (0 for ignored rows).
  Tensor classes = arange(C, TensorOptions(DType::i64).device(t.device()));
  Tensor pick = logical_and(eq(t.unsqueeze(-1), classes), valid.unsqueeze(-1));
  Tensor zero = ops::scalar_like(log_probs, 0.0);
  Tensor per_row = neg(sum(where(pick, log_probs, zero), {-1}));
  if (reduction == Reduction::mean) {
    Tensor count = sum(valid.to(log_probs.dtype()));
    return div(sum(per_row), count);  // all ignored: 0 / 0 = nan, as PyTorch
  }
  return reduce_loss(op, per_row, reduction);
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& targets, Reduction reduction,
                                        const Tensor& pos_weight) {
  const char* op = "binary_cross_entropy_with_logits";
  check_same_shape(op, logits, "logits", targets, "targets");
  Tensor lsig = logsigmoid(logits);
  Tensor one_minus_y = rsub(targets, 1.0);
  Tensor l;
  if (pos_weight.defined()) {
    ops::check_same_device(op, {{"logits", &logits}, {"pos_weight", &pos_weight}});
    ops::check_same_dtype(op, {{"logits", &logits}, {"pos_weight", &pos_weight}});
    broadcast_shapes(logits.shape(), pos_weight.shape(), op);
    Tensor w = add(mul(sub(pos_weight, 1.0), targets), 1.0);  // 1 + (pw - 1) y
    l = sub(mul(one_minus_y, logits), mul(w, lsig));
  } else {
    l = sub(mul(one_minus_y, logits), lsig);
  }
  return reduce_loss(op, l, reduction);
}

Tensor binary_cross_entropy(const Tensor& probs, const Tensor& targets, Reduction reduction) {
  const char* op = "binary_cross_entropy";
  check_same_shape(op, probs, "input", targets, "target");
  if (probs.device().is_cpu()) {
    for (double v : probs.to_vector<double>())
      CIUIC_CHECK(!(v < 0 || v > 1), ValueError, op, "input value ", v, " in ", describe(probs),
                  "; expected probabilities in [0, 1] (use binary_cross_entropy_with_logits for logits)");
  }
  Tensor l, lp, l1p;
  {
    NoGradGuard ng;
    Tensor p = probs.detach(), y = targets.detach();
    lp = clamp(log(p), -100.0, std::nullopt);
    l1p = clamp(log1p(neg(p)), -100.0, std::nullopt);
    l = neg(add(mul(y, lp), mul(rsub(y, 1.0), l1p)));
  }
  if (needs_grad({&probs, &targets})) {
    SavedTensor sp(probs), sy(targets), slp(lp), sl1p(l1p);
    record(op, {probs, targets}, {l}, [sp, sy, slp, sl1p, op](const GradList& g) {
      Tensor p = sp.unpack(op), y = sy.unpack(op);
      Tensor denom = clamp(mul(p, rsub(p, 1.0)), 1e-12, std::nullopt);
      Tensor gp = div(mul(g[0], sub(p, y)), denom);
      Tensor gy = mul(g[0], sub(sl1p.unpack(op), slp.unpack(op)));
      return GradList{gp, gy};
    });
  }
  return reduce_loss(op, l, reduction);
}

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  check_same_shape("l1_loss", input, "input", target, "target");
  return reduce_loss("l1_loss", abs(sub(input, target)), reduction);
}

Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction reduction, double beta) {
  const char* op = "smooth_l1_loss";
  check_same_shape(op, input, "input", target, "target");
  CIUIC_CHECK(beta >= 0, ValueError, op, "beta ", beta, " for ", describe(input), "; expected beta >= 0");
  if (beta == 0) return l1_loss(input, target, reduction);
  Tensor d = sub(input, target), ad = abs(d);
  Tensor l = where(lt(ad, beta), mul(mul(d, d), 0.5 / beta), sub(ad, 0.5 * beta));
  return reduce_loss(op, l, reduction);
}

Tensor huber_loss(const Tensor& input, const Tensor& target, Reduction reduction, double delta) {
  const char* op = "huber_loss";
  check_same_shape(op, input, "input", target, "target");
  CIUIC_CHECK(delta > 0, ValueError, op, "delta ", delta, " for ", describe(input), "; expected delta > 0");
  Tensor d = sub(input, target), ad = abs(d);
  Tensor l = where(lt(ad, delta), mul(mul(d, d), 0.5), mul(sub(ad, 0.5 * delta), delta));
  return reduce_loss(op, l, reduction);
}

Tensor kl_div(const Tensor& input, const Tensor& target, Reduction reduction, bool log_target) {
  const char* op = "kl_div";
  check_same_shape(op, input, "input", target, "target");
  Tensor l;
  if (log_target) {
    // e^t (t - x), 0 where t = -inf (a zero probability; the formula would give 0 * -inf).
    Tensor safe = where(eq(target, -std::numeric_limits<double>::infinity()), ops::scalar_like(target, 0.0), target);
    l = where(eq(target, -std::numeric_limits<double>::infinity()), ops::scalar_like(target, 0.0),
              mul(exp(target), sub(safe, input)));
  } else {
    // t log t - t x, with 0 log 0 = 0 (xlogy): log of 1 where t == 0, so no -inf * 0.
    Tensor safe = where(eq(target, 0.0), ops::scalar_like(target, 1.0), target);
    l = sub(mul(target, log(safe)), mul(target, input));
  }
  return reduce_loss(op, l, reduction, input.dim() == 0 ? 1 : input.size(0));
}

}  // namespace ciuic
