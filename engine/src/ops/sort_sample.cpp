// sort, argsort, topk (CPU references; values differentiable through a
// scatter of the gradient to the picked positions), randint and multinomial
// (from the counter-based generator).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "op_util.h"

namespace ciuic {

namespace {

// a moved so that dim is last, contiguous: rows of `len` values.
struct Rows {
  Tensor x;            // (..., len) contiguous
  Shape perm;          // a.permute(perm) == x's layout
  std::int64_t rows = 1, len = 1;
};

Rows to_rows(const Tensor& a, std::int64_t dim) {
  Rows r;
  for (std::int64_t d = 0; d < a.dim(); ++d)
    if (d != dim) r.perm.push_back(d);
  r.perm.push_back(dim);
  r.x = a.detach().permute(r.perm).contiguous();
  r.len = a.size(dim);
  r.rows = r.len == 0 ? 0 : a.numel() / r.len;
  return r;
}

// The inverse permutation of perm.
Shape inverse(const Shape& perm) {
  Shape inv(perm.size());
  for (std::size_t i = 0; i < perm.size(); ++i) inv[static_cast<std::size_t>(perm[i])] = static_cast<std::int64_t>(i);
  return inv;
}

// Sorted (or the first k of sorted) indices of each row, nan as the largest value.
Tensor sorted_indices(const char* op, const Rows& r, std::int64_t k, bool descending) {
  Shape shape = r.x.shape();
  shape.back() = k;
  Tensor idx = make_tensor(shape, DType::i64, Device::cpu());
  auto* pi = idx.data<std::int64_t>();
  dispatch_dtype(r.x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* px = detail::typed_ptr<T>(r.x);
    std::vector<std::int64_t> order(static_cast<std::size_t>(r.len));
    for (std::int64_t row = 0; row < r.rows; ++row) {
      const T* v = px + row * r.len;
      auto less = [&](std::int64_t i, std::int64_t j) {  // strict weak order with nan largest
        A x = static_cast<A>(v[i]), y = static_cast<A>(v[j]);
        if constexpr (std::is_floating_point_v<A>) {
          if (std::isnan(x)) return false;
          if (std::isnan(y)) return true;
        }
        return x < y;
      };
      std::iota(order.begin(), order.end(), 0);
      if (descending)
        std::stable_sort(order.begin(), order.end(), [&](auto i, auto j) { return less(j, i); });
      else
        std::stable_sort(order.begin(), order.end(), less);
      std::copy(order.begin(), order.begin() + k, pi + row * k);
    }
  });
  return idx;
}

// values and indices for the first k of each sorted row of a along dim.
std::pair<Tensor, Tensor> sort_k(const char* op, const Tensor& a, std::int64_t dim_in, std::int64_t k,
                                 bool descending) {
  ops::check_defined(op, {{"input", &a}});
  ops::require_cpu(op, {&a});
  if (a.dim() == 0) {  // one element: sorted as a 1-element row
    ops::wrap_dim(op, dim_in, a);
    auto [v, i] = sort_k(op, a.reshape({1}), 0, k, descending);
    return {v.reshape({}), i.reshape({})};
  }
  const std::int64_t dim = ops::wrap_dim(op, dim_in, a);
  Rows r = to_rows(a, dim);
  CIUIC_CHECK(k >= 0 && k <= r.len, ValueError, op, "k = ", k, " for dim ", dim_in, " of size ", r.len, " in ",
              describe(a), "; expected 0 <= k <= ", r.len);
  Tensor idx = sorted_indices(op, r, k, descending);  // rows layout
  Tensor indices = idx.permute(inverse(r.perm)).contiguous();
  Tensor values = gather(a, dim, indices);  // gather records the backward
  return {values, indices};
}

}  // namespace

std::pair<Tensor, Tensor> sort(const Tensor& a, std::int64_t dim, bool descending) {
  ops::check_defined("sort", {{"input", &a}});
  const std::int64_t len = a.dim() == 0 ? 1 : a.size(ops::wrap_dim("sort", dim, a));
  return sort_k("sort", a, dim, len, descending);
}

Tensor argsort(const Tensor& a, std::int64_t dim, bool descending) {
  ops::check_defined("argsort", {{"input", &a}});
  NoGradGuard no_grad;
  const std::int64_t len = a.dim() == 0 ? 1 : a.size(ops::wrap_dim("argsort", dim, a));
  return sort_k("argsort", a.detach(), dim, len, descending).second;
}

std::pair<Tensor, Tensor> topk(const Tensor& a, std::int64_t k, std::int64_t dim, bool largest) {
  return sort_k("topk", a, dim, k, largest);
}

Tensor randint(std::int64_t low, std::int64_t high, const Shape& shape, TensorOptions opts, Generator* gen) {
  CIUIC_CHECK(low < high, ValueError, "randint", "range [", low, ", ", high, ") is empty; expected low < high");
  CIUIC_CHECK(opts.dtype_ != DType::boolean || (low >= 0 && high <= 2), ValueError, "randint", "range [", low, ", ",
              high, ") for bool; expected [0, 2)");
  CIUIC_CHECK(!opts.requires_grad_ || is_floating(opts.dtype_), DTypeError, "randint",
              "requires_grad for dtype ", dtype_name(opts.dtype_), "; expected a floating dtype for gradients");
  // floor(U * range) in f64 with U uniform in [0, 1): values in [0, range), then shifted.
  const double range = static_cast<double>(high - low);
  TensorOptions u_opts = TensorOptions(DType::f64).device(opts.device_);
  Tensor u = uniform(shape, 0.0, range, u_opts, gen);
  Tensor k = clamp(u, 0.0, range - 1.0).to(DType::i64);  // non-negative: truncation is floor
  Tensor out = add(k, low).to(opts.dtype_);
  if (opts.requires_grad_) out.requires_grad_(true);
  return out;
}

Tensor multinomial(const Tensor& probs, std::int64_t num_samples, bool replacement, Generator* gen) {
  const char* op = "multinomial";
  ops::check_defined(op, {{"probs", &probs}});
  ops::require_cpu(op, {&probs});
  ops::check_floating(op, "probs", probs);
  CIUIC_CHECK(probs.dim() == 1 || probs.dim() == 2, ShapeError, op, "probs ", describe(probs),
              "; expected (C) or (N, C) weights");
  CIUIC_CHECK(num_samples > 0, ValueError, op, "num_samples = ", num_samples, "; expected > 0");
  Tensor p = probs.detach().to(DType::f64).contiguous().view({probs.dim() == 1 ? 1 : probs.size(0), probs.size(-1)});
  const std::int64_t rows = p.size(0), cats = p.size(1);
  const double* pp = p.data<double>();
  for (std::int64_t i = 0; i < rows * cats; ++i)
    CIUIC_CHECK(std::isfinite(pp[i]) && pp[i] >= 0, ValueError, op, "probs ", describe(probs), " has the value ",
                pp[i], " at flat index ", i, "; expected finite, non-negative weights");
  Tensor u = rand({rows, num_samples}, DType::f64, gen);
  const double* pu = u.data<double>();
  Tensor out = make_tensor({rows, num_samples}, DType::i64, Device::cpu());
  auto* po = out.data<std::int64_t>();
  std::vector<double> w(static_cast<std::size_t>(cats)), cum(static_cast<std::size_t>(cats));
  for (std::int64_t r = 0; r < rows; ++r) {
    std::copy(pp + r * cats, pp + (r + 1) * cats, w.begin());
    const std::int64_t nonzero = std::count_if(w.begin(), w.end(), [](double x) { return x > 0; });
    CIUIC_CHECK(nonzero > 0, ValueError, op, "row ", r, " of ", describe(probs),
                " has no positive weight; expected at least one");
    CIUIC_CHECK(replacement || num_samples <= nonzero, ValueError, op, "num_samples = ", num_samples,
                " without replacement but row ", r, " of ", describe(probs), " has only ", nonzero,
                " positive weights; expected num_samples <= ", nonzero, " or replacement = true");
    for (std::int64_t s = 0; s < num_samples; ++s) {
      std::partial_sum(w.begin(), w.end(), cum.begin());
      const double target = pu[r * num_samples + s] * cum.back();
      // First category whose cumulative weight exceeds the target, skipping zero weights.
      auto it = std::upper_bound(cum.begin(), cum.end(), target);
      std::int64_t c = std::min<std::int64_t>(it - cum.begin(), cats - 1);
      while (w[static_cast<std::size_t>(c)] <= 0 && c > 0) --c;  // rounding at the very top lands on a zero weight
      po[r * num_samples + s] = c;
      if (!replacement) w[static_cast<std::size_t>(c)] = 0;
    }
  }
  return probs.dim() == 1 ? out.view({num_samples}) : out;
}

}  // namespace ciuic
