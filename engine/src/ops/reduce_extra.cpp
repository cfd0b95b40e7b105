// std, amax, amin, logsumexp, prod and norm over a list of dims (negative allowed,
// empty = all), with keepdim, as PyTorch.
//
// Devices: std, amax, amin (floating, i32, i64), logsumexp and norm are compositions
// of ops with CUDA kernels (var, the max reduction, sum, the elementwise kernels), so
// they run on CUDA tensors with the same arithmetic as on the CPU (exact compositions:
// negation and -1 - x are exact). prod has a CPU loop only (NotImplementedError for
// CUDA tensors).
//
// Gradients: amax / amin share the gradient evenly among the elements equal to the
// result (ties), or among the nans when the result is nan; logsumexp's is
// g softmax(x) (0 at -inf elements, also when the whole row is -inf); prod's is the
// product of the other elements, from prefix and suffix products (exact with zeros,
// no division by x); norm's is 0 where the norm is 0 (PyTorch's subgradient).
#include <cmath>
#include <limits>
#include <memory>

#include "ciuic/kernels/elementwise_math.h"
#include "op_util.h"

namespace ciuic {

namespace {

using ops::reduced_shape;

std::int64_t reduce_count(const Tensor& a, const std::vector<std::int64_t>& dims) {
  std::int64_t n = 1;
  for (std::int64_t d : dims) n *= a.shape()[d];
  return n;
}

void check_nonempty_reduce(const char* op, const Tensor& a, const std::vector<std::int64_t>& dims) {
  CIUIC_CHECK(reduce_count(a, dims) > 0, ShapeError, op, "cannot reduce ", describe(a), " over dims ",
              shape_str(dims), " of size 0; expected non-empty reduced dims (", op, " has no identity)");
}

// The max over the (wrapped) dims, keepdim shape, no autograd.
Tensor amax_raw(const char* op, const Tensor& a, const std::vector<std::int64_t>& dims) {
  check_nonempty_reduce(op, a, dims);
  Shape kshape = reduced_shape(a.shape(), dims, true);
  if (a.numel() == 0) return make_tensor(kshape, a.dtype(), a.device());  // nothing to compute (outer == 0)
  ops::ReduceView v = ops::reduce_view(a, dims);
  NoGradGuard ng;
  Tensor values = max(v.x.view({v.outer, v.reduce, v.inner}), 1).first;
  return values.reshape(kshape);
}

// The min as an order-reversing bijection of the max: -max(-x) for floats (exact,
// nan included), -1 - max(-1 - x) for signed integers (two's complement ~x, no
// overflow), 255 - max(255 - x) for u8; bool through u8.
Tensor amin_raw(const char* op, const Tensor& a, const std::vector<std::int64_t>& dims) {
  NoGradGuard ng;
  if (a.dtype() == DType::boolean) return amin_raw(op, a.to(DType::u8), dims).to(DType::boolean);
  if (is_floating(a.dtype())) return neg(amax_raw(op, neg(a), dims));
  const Scalar top(static_cast<std::int64_t>(a.dtype() == DType::u8 ? 255 : -1));  // integral: keeps the dtype
  return rsub(amax_raw(op, rsub(a, top), dims), top);
}

// amax / amin backward: g spread evenly over the elements equal to the result (or the
// nans of x where the result is nan).
Tensor extremum_backward(const Tensor& g, const Tensor& x, const Tensor& outk, const Shape& kshape,
                         const std::vector<std::int64_t>& dims) {
  Tensor hit = logical_or(eq(x, outk), logical_and(ne(x, x), ne(outk, outk)));
  Tensor mask = hit.to(g.dtype());
  Tensor count = sum(mask, dims, true);
  return mul(mask, div(g.reshape(kshape), count));
}

Tensor extremum(const char* op, bool is_max, const Tensor& a, const std::vector<std::int64_t>& dims_in,
                bool keepdim) {
  ops::check_defined(op, {{"input", &a}});
  auto dims = ops::wrap_dims(op, dims_in, a);
  Tensor outk = is_max ? amax_raw(op, a, dims) : amin_raw(op, a, dims);
  Tensor out = keepdim ? outk : outk.reshape(reduced_shape(a.shape(), dims, false));
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a), so(outk);
  Shape kshape = outk.shape();
  record(op, {a}, {out}, [sa, so, kshape, dims, op](const GradList& g) {
    return GradList{extremum_backward(g[0], sa.unpack(op), so.unpack(op), kshape, dims)};
  });
  return out;
}

// ---- prod (CPU) ----
// Integral inputs multiply in i64 (bool, u8, i32 give i64, as sum), wrapping; floating
// ones in acc_t<T> (f32 for f16/bf16), rounded once.
Tensor prod_cpu(const Tensor& a, const std::vector<std::int64_t>& dims) {
  ops::ReduceView v = ops::reduce_view(a, dims);
  Shape kshape = reduced_shape(a.shape(), dims, true);
  Tensor out = make_tensor(kshape, a.dtype(), a.device());
  dispatch_dtype(a.dtype(), "prod", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      return;  // converted to i64 by the caller
    } else {
      using A = acc_t<T>;
      const T* px = detail::typed_ptr<T>(v.x);
      T* po = detail::typed_ptr<T>(out);
      for (std::int64_t o = 0; o < v.outer; ++o)
        for (std::int64_t i = 0; i < v.inner; ++i) {
          A p = A(1);
          for (std::int64_t j = 0; j < v.reduce; ++j)
            p = kernels::math::wrap_mul(p, static_cast<A>(px[(o * v.reduce + j) * v.inner + i]));
          po[o * v.inner + i] = convert<T>(p);
        }
    }
  });
  return out;
}

// d prod / d x_j = prod_{k != j} x_k: prefix[j] * suffix[j + 1], in f64 for f64 and
// f32 otherwise; gk: the gradient in the keepdim shape. Returns a's shape (contiguous).
Tensor prod_backward_cpu(const Tensor& x, const Tensor& gk, const std::vector<std::int64_t>& dims) {
  ops::require_cpu("prod_backward", {&x, &gk});
  ops::ReduceView v = ops::reduce_view(x, dims);
  Tensor gc = gk.detach().contiguous();
  // The gradient in the permuted (outer, reduce, inner) order, then permuted back.
  Tensor gp = make_tensor({v.outer, v.reduce, v.inner}, x.dtype(), x.device());
  dispatch_floating(x.dtype(), "prod_backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* px = detail::typed_ptr<T>(v.x);
    const T* pg = detail::typed_ptr<T>(gc);
    T* po = detail::typed_ptr<T>(gp);
    std::vector<A> suffix(static_cast<std::size_t>(v.reduce) + 1);
    for (std::int64_t o = 0; o < v.outer; ++o)
      for (std::int64_t i = 0; i < v.inner; ++i) {
        auto at = [&](std::int64_t j) { return (o * v.reduce + j) * v.inner + i; };
        suffix[v.reduce] = A(1);
        for (std::int64_t j = v.reduce - 1; j >= 0; --j) suffix[j] = suffix[j + 1] * static_cast<A>(px[at(j)]);
        const A g = static_cast<A>(pg[o * v.inner + i]);
        A prefix = A(1);
        for (std::int64_t j = 0; j < v.reduce; ++j) {
          po[at(j)] = convert<T>(g * prefix * suffix[j + 1]);
          prefix *= static_cast<A>(px[at(j)]);
        }
      }
  });
  // Undo reduce_view's layout: (outer..., reduced...) -> x's dims.
  const Shape& shape = x.shape();
  const bool adjacent = dims.empty() || dims.back() - dims.front() + 1 == static_cast<std::int64_t>(dims.size());
  if (adjacent) return gp.view(shape);
  Shape perm, permuted_shape;
  std::size_t k = 0;
  for (std::int64_t d = 0; d < static_cast<std::int64_t>(shape.size()); ++d) {
    if (k < dims.size() && dims[k] == d) ++k;
    else perm.push_back(d);
  }
  perm.insert(perm.end(), dims.begin(), dims.end());
  for (std::int64_t d : perm) permuted_shape.push_back(shape[d]);
  Shape inverse(perm.size());
  for (std::size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = static_cast<std::int64_t>(i);
  return gp.view(permuted_shape).permute(inverse).contiguous();
}

}  // namespace

Tensor std(const Tensor& a, const std::vector<std::int64_t>& dims, int correction, bool keepdim) {
  ops::check_defined("std", {{"input", &a}});
  ops::check_floating("std", "input", a);
  return sqrt(var(a, dims, correction, keepdim));
}

Tensor amax(const Tensor& a, const std::vector<std::int64_t>& dims, bool keepdim) {
  return extremum("amax", true, a, dims, keepdim);
}

Tensor amin(const Tensor& a, const std::vector<std::int64_t>& dims, bool keepdim) {
  return extremum("amin", false, a, dims, keepdim);
}

Tensor logsumexp(const Tensor& a, const std::vector<std::int64_t>& dims_in, bool keepdim) {
  const char* op = "logsumexp";
  ops::check_defined(op, {{"input", &a}});
  // Integral inputs give f32, as in PyTorch.
  if (!is_floating(a.dtype())) return logsumexp(a.to(DType::f32), dims_in, keepdim);
  auto dims = ops::wrap_dims(op, dims_in, a);
  Tensor outk;
  {
    NoGradGuard ng;
    Tensor x = a.detach();
    // Shift by the max; an infinite max (a row of -inf, or a +inf) shifts by 0 so that
    // the row gives log(0) = -inf or log(inf) = inf instead of inf - inf = nan.
    // Empty reduced dims: sum of nothing = 0, log 0 = -inf (as PyTorch).
    Tensor m = reduce_count(a, dims) == 0 ? zeros(reduced_shape(a.shape(), dims, true), TensorOptions(a.dtype()).device(a.device()))
                                          : amax_raw(op, x, dims);
    m = where(lt(abs(m), std::numeric_limits<double>::infinity()), m, ops::scalar_like(m, 0.0));
    outk = add(log(sum(exp(sub(x, m)), dims, true)), m);
  }
  Tensor out = keepdim ? outk : outk.reshape(reduced_shape(a.shape(), dims, false));
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a), so(outk);
  Shape kshape = outk.shape();
  record(op, {a}, {out}, [sa, so, kshape, op](const GradList& g) {
    Tensor x = sa.unpack(op);
    Tensor p = exp(sub(x, so.unpack(op)));                                    // softmax
    p = where(eq(x, -std::numeric_limits<double>::infinity()), ops::scalar_like(p, 0.0), p);  // -inf rows: 0, not nan
    return GradList{mul(p, g[0].reshape(kshape))};
  });
  return out;
}

Tensor prod(const Tensor& a, const std::vector<std::int64_t>& dims_in, bool keepdim) {
  const char* op = "prod";
  ops::check_defined(op, {{"input", &a}});
  ops::require_cpu(op, {&a});
  if (a.dtype() == DType::boolean || a.dtype() == DType::u8 || a.dtype() == DType::i32)
    return prod(a.to(DType::i64), dims_in, keepdim);
  auto dims = ops::wrap_dims(op, dims_in, a);
  Tensor outk = prod_cpu(a.detach(), dims);  // empty reduced dims: 1 (the empty product)
  Tensor out = keepdim ? outk : outk.reshape(reduced_shape(a.shape(), dims, false));
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a);
  Shape kshape = outk.shape();
  record(op, {a}, {out}, [sa, kshape, dims, op](const GradList& g) {
    return GradList{prod_backward_cpu(sa.unpack(op), g[0].reshape(kshape), dims)};
  });
  return out;
}

Tensor norm(const Tensor& a, double p, const std::vector<std::int64_t>& dims_in, bool keepdim) {
  const char* op = "norm";
  ops::check_defined(op, {{"input", &a}});
  ops::check_floating(op, "input", a);
  CIUIC_CHECK(p >= 0 || p == -std::numeric_limits<double>::infinity(), ValueError, op, "p = ", p, " for ",
              describe(a), "; expected p >= 0, inf or -inf");
  auto dims = ops::wrap_dims(op, dims_in, a);
  const double inf = std::numeric_limits<double>::infinity();
  if (p == 1) return sum(abs(a), dims, keepdim);  // abs' gradient is 0 at 0
  if (p == inf) return amax(abs(a), dims, keepdim);
  if (p == -inf) return amin(abs(a), dims, keepdim);
  if (p == 0) {  // the count of non-zeros; piecewise constant: no gradient
    NoGradGuard ng;
    return sum(ne(a.detach(), 0.0).to(a.dtype()), dims, keepdim);
  }
  // (sum |x|^p)^(1/p); f16/bf16 accumulate in f32 (x^2 of an f16 overflows from 256).
  Tensor outk;
  {
    NoGradGuard ng;
    Tensor x = a.detach();
    Tensor xa = x.dtype() == DType::f16 || x.dtype() == DType::bf16 ? x.to(DType::f32) : x;
    Tensor s = p == 2 ? sum(mul(xa, xa), dims, true) : sum(pow(abs(xa), p), dims, true);
    outk = (p == 2 ? sqrt(s) : pow(s, 1.0 / p)).to(a.dtype());
  }
  Tensor out = keepdim ? outk : outk.reshape(reduced_shape(a.shape(), dims, false));
  if (!needs_grad({&a})) return out;
  SavedTensor sa(a), so(outk);
  Shape kshape = outk.shape();
  record(op, {a}, {out}, [sa, so, kshape, p, op](const GradList& g) {
    // d/dx_i = sign(x_i) |x_i|^(p-1) / norm^(p-1); 0 where the norm is 0 (and at x_i = 0).
    Tensor x = sa.unpack(op), n = so.unpack(op);
    Tensor gk = g[0].reshape(kshape);
    Tensor zero = ops::scalar_like(x, 0.0);
    Tensor d = p == 2 ? div(x, n) : div(mul(sign(x), pow(abs(x), p - 1.0)), pow(n, p - 1.0));
    d = where(eq(n, 0.0), zero, where(eq(x, 0.0), zero, d));
    return GradList{mul(d, gk)};
  });
  return out;
}

}  // namespace ciuic
