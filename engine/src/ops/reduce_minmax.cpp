// var, max (along a dim and over everything) and argmax. CPU references:
// var accumulates in f64 in two passes (mean, then squared deviations) and rounds
// once; max compares in acc_t<T> and treats nan as larger than everything, so a
// nan propagates and its (first) index is returned, as in PyTorch. On CUDA the
// reduce kernels do the same: var by Welford's method (f32 accumulation for
// f32/f16/bf16), max with nan largest and ties to the first index.
#include <cmath>
#include <memory>
#include <tuple>

#include "op_util.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/reduce.h"
#include "ciuic/stream.h"
#endif

namespace ciuic {

namespace {

using ops::reduced_shape;


template <typename A>
bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>) return std::isnan(v);
  else return false;
}

// v replaces the running max when larger, or when it is the first nan.
template <typename A>
bool beats(A v, A best) {
  return v > best || (is_nan(v) && !is_nan(best));
}

// (outer, n, inner) of a contiguous shape split at dim d; a 0-dim shape is (1, 1, 1).
std::tuple<std::int64_t, std::int64_t, std::int64_t> split_at(const Shape& shape, std::int64_t d) {
  std::int64_t outer = 1, inner = 1;
  if (shape.empty()) return {1, 1, 1};
  for (std::int64_t i = 0; i < d; ++i) outer *= shape[i];
  for (std::size_t i = d + 1; i < shape.size(); ++i) inner *= shape[i];
  return {outer, shape[d], inner};
}

// Values and i64 indices of the max along dim d (already wrapped) of a CPU tensor.
std::pair<Tensor, Tensor> max_dim_cpu(const char* op, const Tensor& a, std::int64_t d, bool keepdim) {
  Tensor ac = a.detach().contiguous();
  auto [outer, n, inner] = split_at(ac.shape(), d);
  CIUIC_CHECK(n > 0, ShapeError, op, "cannot reduce over dim ", d, " of size 0 in ", describe(a),
              "; expected a non-empty dim");
  Shape kshape = a.dim() == 0 ? Shape{} : reduced_shape(a.shape(), {d}, true);
  Tensor values = make_tensor(kshape, a.dtype(), a.device());
  Tensor indices = make_tensor(kshape, DType::i64, a.device());
  dispatch_dtype(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* pa = detail::typed_ptr<T>(ac);
    T* pv = detail::typed_ptr<T>(values);
    std::int64_t* pi = detail::typed_ptr<std::int64_t>(indices);
    std::unique_ptr<A[]> best(new A[static_cast<std::size_t>(inner)]);  // not vector: A may be bool
    for (std::int64_t o = 0; o < outer; ++o) {
      const T* base = pa + o * n * inner;
      std::int64_t* io = pi + o * inner;
      for (std::int64_t i = 0; i < inner; ++i) {
        best[i] = static_cast<A>(base[i]);
        io[i] = 0;
      }
      for (std::int64_t j = 1; j < n; ++j) {
        const T* row = base + j * inner;
        for (std::int64_t i = 0; i < inner; ++i) {
          A v = static_cast<A>(row[i]);
          if (beats(v, best[i])) {
            best[i] = v;
            io[i] = j;
          }
        }
      }
      // The values are elements of a, so converting back is exact.
      for (std::int64_t i = 0; i < inner; ++i) pv[o * inner + i] = base[io[i] * inner + i];
    }
  });
  if (!keepdim && a.dim() > 0) {
    Shape s = reduced_shape(a.shape(), {d}, false);
    values = values.view(s);
    indices = indices.view(s);
  }
  return {values, indices};
}

#ifdef CIUIC_WITH_CUDA
// max_dim_cpu on a CUDA tensor. bool is reduced as u8 (the kernel has no bool).
std::pair<Tensor, Tensor> max_dim_cuda(const char* op, const Tensor& a, std::int64_t d, bool keepdim) {
  auto [outer, n, inner] = split_at(a.shape(), d);
  CIUIC_CHECK(n > 0, ShapeError, op, "cannot reduce over dim ", d, " of size 0 in ", describe(a),
              "; expected a non-empty dim");
  Tensor x = a.detach().contiguous();
  if (x.dtype() == DType::boolean) x = x.to(DType::u8);
  Shape kshape = a.dim() == 0 ? Shape{} : reduced_shape(a.shape(), {d}, true);
  DeviceGuard guard(a.device());
  Tensor values = make_tensor(kshape, x.dtype(), a.device());
  Tensor indices = make_tensor(kshape, DType::i64, a.device());
  const std::size_t bytes = kernels::reduce_workspace_bytes(kernels::ReduceOp::max, x.dtype(), outer, n, inner);
  Tensor ws = ops::cuda_workspace(a.device(), bytes);
  kernels::reduce_max(values.data_ptr(), static_cast<std::int64_t*>(indices.data_ptr()), x.data_ptr(), x.dtype(),
                      outer, n, inner, ws.defined() ? ws.data_ptr() : nullptr, bytes, current_stream(a.device()));
  if (a.dtype() == DType::boolean) values = values.to(DType::boolean);
  if (!keepdim && a.dim() > 0) {
    Shape s = reduced_shape(a.shape(), {d}, false);
    values = values.view(s);
    indices = indices.view(s);
  }
  return {values, indices};
}

// var_cpu on a CUDA tensor: (variance, mean) with the keepdim shape.
std::pair<Tensor, Tensor> var_cuda(const Tensor& a, const std::vector<std::int64_t>& dims, int correction) {
  ops::ReduceView v = ops::reduce_view(a, dims);
  Shape kshape = reduced_shape(a.shape(), dims, true);
  DeviceGuard guard(a.device());
  Tensor var_out = make_tensor(kshape, a.dtype(), a.device());
  Tensor mean_out = make_tensor(kshape, a.dtype(), a.device());
  const std::size_t bytes =
      kernels::reduce_workspace_bytes(kernels::ReduceOp::var, a.dtype(), v.outer, v.reduce, v.inner);
  Tensor ws = ops::cuda_workspace(a.device(), bytes);
  kernels::reduce_var(var_out.data_ptr(), mean_out.data_ptr(), v.x.data_ptr(), a.dtype(), v.outer, v.reduce,
                      v.inner, correction, ws.defined() ? ws.data_ptr() : nullptr, bytes,
                      current_stream(a.device()));
  return {var_out, mean_out};
}
#endif

std::pair<Tensor, Tensor> max_dim(const char* op, const Tensor& a, std::int64_t d, bool keepdim) {
#ifdef CIUIC_WITH_CUDA
  if (a.device().is_cuda()) return max_dim_cuda(op, a, d, keepdim);
#endif
  return max_dim_cpu(op, a, d, keepdim);
}

// var on the CPU: returns (variance, mean), both with the keepdim shape.
std::pair<Tensor, Tensor> var_cpu(const Tensor& a, const std::vector<std::int64_t>& dims, std::int64_t count,
                                  double denom) {
  Shape kshape = reduced_shape(a.shape(), dims, true);
  Tensor var_out = make_tensor(kshape, a.dtype(), a.device());
  Tensor mean_out = make_tensor(kshape, a.dtype(), a.device());
  const std::size_t nout = static_cast<std::size_t>(var_out.numel());
  std::vector<double> mean(nout, 0.0), m2(nout, 0.0);
  Shape ostr = contiguous_strides(kshape);  // output strides in the input's index space: 0 on reduced dims
  for (std::int64_t d : dims) ostr[d] = 0;
  dispatch_floating(a.dtype(), "var", [&](auto tag) {
    using T = decltype(tag);
    const T* pa = detail::typed_ptr<T>(a);
    auto value = [&](std::int64_t off) { return static_cast<double>(static_cast<acc_t<T>>(pa[off])); };
    detail::cpu_for_each<2>(a.shape(), {ostr, a.strides()}, [&](const auto& o) { mean[o[0]] += value(o[1]); });
    for (double& m : mean) m /= static_cast<double>(count);  // count == 0: nan, as in NumPy
    detail::cpu_for_each<2>(a.shape(), {ostr, a.strides()}, [&](const auto& o) {
      double dev = value(o[1]) - mean[o[0]];
      m2[o[0]] += dev * dev;
    });
    T* pv = detail::typed_ptr<T>(var_out);
    T* pm = detail::typed_ptr<T>(mean_out);
    for (std::size_t i = 0; i < nout; ++i) {
      pv[i] = convert<T>(m2[i] / denom);  // denom == 0: inf, or nan when m2 == 0 (one element, correction 1)
      pm[i] = convert<T>(mean[i]);
    }
  });
  return {var_out, mean_out};
}

}  // namespace

Tensor var(const Tensor& a, const std::vector<std::int64_t>& dims_in, int correction, bool keepdim) {
  ops::check_defined("var", {{"input", &a}});
  ops::check_floating("var", "input", a);
  CIUIC_CHECK(correction >= 0, ValueError, "var", "correction ", correction, " for ", describe(a),
              "; expected correction >= 0 (1: unbiased, 0: population)");
  auto dims = ops::wrap_dims("var", dims_in, a);
  std::int64_t count = 1;
  for (std::int64_t d : dims) count *= a.shape()[d];
  // As PyTorch: max(0, N - correction).
  const double denom = static_cast<double>(std::max<std::int64_t>(count - correction, 0));
#ifdef CIUIC_WITH_CUDA
  auto [v, mean_k] = a.device().is_cuda() ? var_cuda(a, dims, correction) : var_cpu(a.detach(), dims, count, denom);
#else
  auto [v, mean_k] = var_cpu(a.detach(), dims, count, denom);
#endif
  Shape out_shape = reduced_shape(a.shape(), dims, keepdim);
  Tensor out = keepdim ? v : v.view(out_shape);
  if (needs_grad({&a})) {
    Shape kshape = v.shape();
    SavedTensor sa(a), sm(mean_k);
    // d var / d x = 2 (x - mean) / (N - correction); g broadcast back over the reduced dims.
    record("var", {a}, {out}, [sa, sm, kshape, denom](const GradList& g) {
      Tensor gk = g[0].reshape(kshape);
      Tensor dev = sub(sa.unpack("var"), sm.unpack("var"));
      return GradList{mul(mul(dev, gk), 2.0 / denom)};
    });
  }
  return out;
}

std::pair<Tensor, Tensor> max(const Tensor& a, std::int64_t dim, bool keepdim) {
  ops::check_defined("max", {{"input", &a}});
  const std::int64_t d = ops::wrap_dim("max", dim, a);
  auto [values, indices] = max_dim("max", a, d, keepdim);
  if (needs_grad({&a})) {
    // The gradient goes to the (first) max along the dim: where(index == position, g, 0).
    Shape shape = a.shape();
    Shape kshape = a.dim() == 0 ? Shape{} : reduced_shape(shape, {d}, true);
    SavedTensor si(indices);
    record("max", {a}, {values}, [si, shape, kshape, d](const GradList& g) {
      if (shape.empty()) return GradList{g[0]};
      Tensor idx = si.unpack("max").reshape(kshape);
      Shape pos_shape(shape.size(), 1);
      pos_shape[d] = shape[d];
      Tensor pos = arange(shape[d], TensorOptions(DType::i64).device(g[0].device())).view(pos_shape);
      Tensor zero = zeros({}, TensorOptions(g[0].dtype()).device(g[0].device()));
      return GradList{where(eq(idx, pos), g[0].reshape(kshape), zero)};
    });
  }
  return {values, indices};
}

Tensor max(const Tensor& a) {
  ops::check_defined("max", {{"input", &a}});
  CIUIC_CHECK(a.numel() > 0, ShapeError, "max", "cannot take the max of the empty tensor ", describe(a),
              "; expected at least one element");
  Tensor value = max_dim("max", a.detach().reshape({-1}), 0, false).first;
  if (needs_grad({&a})) {
    // Ties share the gradient evenly (as PyTorch's full max does): g * mask / count(mask),
    // where mask marks the elements equal to the max, or the nans when the max is nan.
    const bool max_is_nan = std::isnan(value.item());
    SavedTensor sa(a), sv(value);
    record("max", {a}, {value}, [sa, sv, max_is_nan](const GradList& g) {
      Tensor x = sa.unpack("max");
      Tensor is_max = eq(x, sv.unpack("max")).to(x.dtype());
      Tensor mask = where(eq(x, x), is_max, ops::scalar_like(x, max_is_nan ? 1.0 : 0.0));
      return GradList{mul(mask, div(g[0], sum(mask)))};
    });
  }
  return value;
}

Tensor argmax(const Tensor& a, std::int64_t dim, bool keepdim) {
  ops::check_defined("argmax", {{"input", &a}});
  const std::int64_t d = ops::wrap_dim("argmax", dim, a);
  return max_dim("argmax", a, d, keepdim).second;
}

}  // namespace ciuic
