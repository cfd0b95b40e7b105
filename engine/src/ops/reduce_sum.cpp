// sum, mean and sum_to (the backward of broadcasting). The CPU reference
// accumulates in f64 whatever the dtype, then rounds once; on CUDA the reduce
// kernel accumulates in f32 (f32, f16, bf16), f64 or i64, deterministically.
#include "op_util.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/reduce.h"
#include "ciuic/stream.h"
#endif

namespace ciuic {

namespace {

using ops::reduced_shape;

// sum over dims on the CPU; out has keepdim shape internally.
Tensor sum_cpu(const char* op, const Tensor& a, const std::vector<std::int64_t>& dims, bool keepdim) {
  Shape kshape = reduced_shape(a.shape(), dims, true);
  Tensor out = make_tensor(kshape, a.dtype(), a.device());
  std::vector<double> acc(static_cast<std::size_t>(out.numel()), 0.0);
  // Output strides seen from the input's index space: 0 along reduced dims.
  Shape ostr = contiguous_strides(kshape);
  for (std::int64_t d : dims) ostr[d] = 0;
  dispatch_dtype(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* pa = detail::typed_ptr<T>(a);
    detail::cpu_for_each<2>(a.shape(), {ostr, a.strides()},
                            [&](const auto& o) { acc[o[0]] += static_cast<double>(static_cast<acc_t<T>>(pa[o[1]])); });
    T* po = detail::typed_ptr<T>(out);
    for (std::size_t i = 0; i < acc.size(); ++i) po[i] = convert<T>(acc[i]);
  });
  return keepdim ? out : out.view(reduced_shape(a.shape(), dims, false));
}

#ifdef CIUIC_WITH_CUDA
// sum over dims of a CUDA tensor; out has keepdim shape internally.
Tensor sum_cuda(const char* op, const Tensor& a, const std::vector<std::int64_t>& dims, bool keepdim) {
  const DType dt = a.dtype();
  CIUIC_CHECK(is_floating(dt) || dt == DType::i32 || dt == DType::i64, DTypeError, op, "no CUDA sum for ",
              describe(a), "; expected f32, f16, bf16, f64, i32 or i64 on CUDA (convert with .to(DType::i64))");
  ops::ReduceView v = ops::reduce_view(a, dims);
  DeviceGuard guard(a.device());
  Tensor out = make_tensor(reduced_shape(a.shape(), dims, true), dt, a.device());
  const auto op_kind = kernels::ReduceOp::sum;
  const std::size_t bytes = kernels::reduce_workspace_bytes(op_kind, dt, v.outer, v.reduce, v.inner, true);
  Tensor ws = ops::cuda_workspace(a.device(), bytes);
  kernels::reduce_sum(op_kind, out.data_ptr(), v.x.data_ptr(), dt, v.outer, v.reduce, v.inner, true,
                      ws.defined() ? ws.data_ptr() : nullptr, bytes, current_stream(a.device()));
  return keepdim ? out : out.view(reduced_shape(a.shape(), dims, false));
}
#endif

// Gradient of a reduction: g (reduced shape) broadcast back to `shape`.
Tensor expand_back(const Tensor& g, const Shape& shape, const std::vector<std::int64_t>& dims, bool keepdim) {
  Tensor gk = keepdim ? g : g.reshape(reduced_shape(shape, dims, true));
  return gk.expand(shape).contiguous();
}

}  // namespace

Tensor sum(const Tensor& a, const std::vector<std::int64_t>& dims_in, bool keepdim) {
  ops::check_defined("sum", {{"input", &a}});
  // bool, u8 and i32 sum to i64, as in PyTorch: sum(a == b) counts without overflow.
  if (a.dtype() == DType::boolean || a.dtype() == DType::u8 || a.dtype() == DType::i32)
    return sum(a.to(DType::i64), dims_in, keepdim);
  auto dims = ops::wrap_dims("sum", dims_in, a);
#ifdef CIUIC_WITH_CUDA
  Tensor out = a.device().is_cuda() ? sum_cuda("sum", a, dims, keepdim) : sum_cpu("sum", a, dims, keepdim);
#else
  Tensor out = sum_cpu("sum", a, dims, keepdim);
#endif
  if (needs_grad({&a})) {
    Shape shape = a.shape();
    record("sum", {a}, {out}, [shape, dims, keepdim](const GradList& g) {
      return GradList{expand_back(g[0], shape, dims, keepdim)};
    });
  }
  return out;
}

Tensor mean(const Tensor& a, const std::vector<std::int64_t>& dims_in, bool keepdim) {
  ops::check_defined("mean", {{"input", &a}});
  ops::check_floating("mean", "input", a);
  auto dims = ops::wrap_dims("mean", dims_in, a);
  std::int64_t count = 1;
  for (std::int64_t d : dims) count *= a.shape()[d];
  Tensor s = sum(a, dims, keepdim);
  return div(s, static_cast<double>(count));  // count == 0 gives nan, as in NumPy
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const std::int64_t lead = g.dim() - static_cast<std::int64_t>(shape.size());
  CIUIC_CHECK(lead >= 0, ShapeError, "sum_to", "cannot reduce ", describe(g), " to ", shape_str(shape),
              "; expected a target with at most as many dims");
  std::vector<std::int64_t> dims;
  for (std::int64_t d = 0; d < g.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
      continue;
    }
    std::int64_t want = shape[d - lead];
    CIUIC_CHECK(want == g.shape()[d] || want == 1, ShapeError, "sum_to", "cannot reduce ", describe(g), " to ",
                shape_str(shape), "; expected each target dim to match or be 1");
    if (want == 1 && g.shape()[d] != 1) dims.push_back(d);
  }
  Tensor s = dims.empty() ? g : sum(g, dims, true);
  return s.reshape(shape);
}

}  // namespace ciuic
