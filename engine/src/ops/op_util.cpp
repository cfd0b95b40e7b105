#include "op_util.h"

#include <algorithm>

#ifdef CIUIC_WITH_CUDA
#include "ciuic/stream.h"
#endif

namespace ciuic::ops {

std::string describe_all(std::initializer_list<std::pair<const char*, const Tensor*>> ts) {
  std::string s;
  for (auto& [name, t] : ts) {
    if (!s.empty()) s += ", ";
    s += std::string(name) + ": " + describe(*t);
  }
  return s;
}

void check_defined(const char* op, std::initializer_list<std::pair<const char*, const Tensor*>> ts) {
  for (auto& [name, t] : ts)
    CIUIC_CHECK(t->defined(), ValueError, op, "argument '", name, "' is an undefined tensor; expected a tensor");
}

void check_same_device(const char* op, std::initializer_list<std::pair<const char*, const Tensor*>> ts) {
  const Tensor* first = nullptr;
  for (auto& [name, t] : ts) {
    if (!t->defined()) continue;
    if (!first) first = t;
    CIUIC_CHECK(t->device() == first->device(), DeviceError, op, "tensors on different devices (", describe_all(ts),
                "); expected all on one device");
  }
}

void check_same_dtype(const char* op, std::initializer_list<std::pair<const char*, const Tensor*>> ts) {
  const Tensor* first = nullptr;
  for (auto& [name, t] : ts) {
    if (!t->defined()) continue;
    if (!first) first = t;
    CIUIC_CHECK(t->dtype() == first->dtype(), DTypeError, op, "mismatched dtypes (", describe_all(ts),
                "); expected one dtype (convert with .to(dtype))");
  }
}

void check_floating(const char* op, const char* name, const Tensor& t) {
  CIUIC_CHECK(is_floating(t.dtype()), DTypeError, op, "argument '", name, "' is ", describe(t),
              "; expected a floating dtype (f32, f64, f16, bf16)");
}

void check_index_dtype(const char* op, const char* name, const Tensor& t) {
  CIUIC_CHECK(t.dtype() == DType::i64 || t.dtype() == DType::i32, DTypeError, op, "argument '", name, "' is ",
              describe(t), "; expected integer indices (i64 or i32)");
}

void check_dim_count(const char* op, const char* name, const Tensor& t, std::int64_t ndim) {
  CIUIC_CHECK(t.dim() == ndim, ShapeError, op, "argument '", name, "' is ", describe(t), "; expected ", ndim, " dims");
}

std::int64_t wrap_dim(const char* op, std::int64_t dim, const Tensor& t) {
  std::int64_t nd = std::max<std::int64_t>(t.dim(), 1);
  std::int64_t w = dim < 0 ? dim + nd : dim;
  CIUIC_CHECK(w >= 0 && w < nd, IndexError, op, "dim ", dim, " out of range for ", describe(t), "; expected a dim in [",
              -nd, ", ", nd - 1, "]");
  return w;
}

std::vector<std::int64_t> wrap_dims(const char* op, const std::vector<std::int64_t>& dims, const Tensor& t) {
  std::vector<std::int64_t> out;
  if (dims.empty()) {
    for (std::int64_t d = 0; d < t.dim(); ++d) out.push_back(d);
    return out;
  }
  for (std::int64_t d : dims) out.push_back(wrap_dim(op, d, t));
  std::sort(out.begin(), out.end());
  CIUIC_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), IndexError, op, "repeated dim in the dims of ",
              describe(t), "; expected each dim once");
  return out;
}

ReduceView reduce_view(const Tensor& a, const std::vector<std::int64_t>& dims) {
  ReduceView v;
  const Shape& shape = a.shape();
  const bool adjacent = dims.empty() || dims.back() - dims.front() + 1 == static_cast<std::int64_t>(dims.size());
  if (adjacent) {
    const std::int64_t first = dims.empty() ? 0 : dims.front(), last = dims.empty() ? -1 : dims.back();
    for (std::int64_t d = 0; d < static_cast<std::int64_t>(shape.size()); ++d)
      (d < first ? v.outer : d > last ? v.inner : v.reduce) *= shape[d];
    v.x = a.detach().contiguous();
    return v;
  }
  Shape perm;
  std::size_t k = 0;
  for (std::int64_t d = 0; d < static_cast<std::int64_t>(shape.size()); ++d) {
    if (k < dims.size() && dims[k] == d) {
      ++k;
      v.reduce *= shape[d];
    } else {
      perm.push_back(d);
      v.outer *= shape[d];
    }
  }
  perm.insert(perm.end(), dims.begin(), dims.end());
  v.x = a.detach().permute(perm).contiguous();
  return v;
}

Shape reduced_shape(const Shape& shape, const std::vector<std::int64_t>& dims, bool keepdim) {
  Shape out;
  std::size_t k = 0;
  for (std::int64_t d = 0; d < static_cast<std::int64_t>(shape.size()); ++d) {
    bool reduced = k < dims.size() && dims[k] == d;
    if (reduced) ++k;
    if (!reduced) out.push_back(shape[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

void require_cpu(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    CIUIC_CHECK(!t->defined() || t->device().is_cpu(), NotImplementedError, op, "no CUDA kernel yet for ", describe(*t),
                "; expected CPU tensors (move with .to(Device::cpu()))");
}

Tensor scalar_like(const Tensor& t, double v) { return full({}, v, TensorOptions(t.dtype()).device(t.device())); }

int dtype_category(DType t) { return t == DType::boolean ? 0 : is_floating(t) ? 2 : 1; }

std::optional<DType> promote_types(DType x, DType y) {
  if (x == y) return x;
  const int cx = dtype_category(x), cy = dtype_category(y);
  if (cx != cy) return cx > cy ? x : y;
  if (cx == 2) return std::nullopt;
  auto rank = [](DType t) { return t == DType::u8 ? 0 : t == DType::i32 ? 1 : 2; };  // integral only
  return rank(x) >= rank(y) ? x : y;
}

std::optional<DType> result_type(const Tensor& a, const Tensor& b) {
  const bool a0 = a.dim() == 0, b0 = b.dim() == 0;
  if (a0 != b0) {
    const Tensor& dimensioned = a0 ? b : a;
    const Tensor& zero_dim = a0 ? a : b;
    return dtype_category(zero_dim.dtype()) > dtype_category(dimensioned.dtype()) ? zero_dim.dtype()
                                                                                   : dimensioned.dtype();
  }
  return promote_types(a.dtype(), b.dtype());
}

std::optional<std::pair<Tensor, Tensor>> promote(const Tensor& a, const Tensor& b, bool floating_only) {
  if (!a.defined() || !b.defined()) return std::nullopt;
  std::optional<DType> rt = result_type(a, b);
  if (!rt) return std::nullopt;
  DType t = floating_only && !is_floating(*rt) ? DType::f32 : *rt;
  if (a.dtype() == t && b.dtype() == t) return std::nullopt;
  return std::pair{a.to(t), b.to(t)};
}

Tensor wrap_scalar(const Tensor& a, const Scalar& s) {
  CIUIC_CHECK(a.defined(), ValueError, "scalar op", "undefined tensor with a scalar; expected a tensor");
  const int cs = s.is_floating() ? 2 : s.is_integral() ? 1 : 0;
  DType t = a.dtype();
  if (cs > dtype_category(t)) t = cs == 2 ? DType::f32 : DType::i64;
  return full({}, s.value, TensorOptions(t).device(a.device()));
}

#ifdef CIUIC_WITH_CUDA

namespace {

namespace k = kernels;

// Layouts over one output shape for operands with the given (broadcast) strides,
// with size-1 dims dropped and adjacent dims merged where every operand allows it
// (outer stride == inner stride * inner size). Fewer dims make the index math
// cheaper, and contiguous operands become one dim, which the kernels' vector path needs.
std::vector<StridedLayout> merged_layouts(const char* op, const Shape& shape, const std::vector<Shape>& strides) {
  Shape sizes;
  std::vector<Shape> st(strides.size());
  // No elements: one empty dim (the products below could overflow on, say, [0, 2^40, 2^40]).
  if (std::find(shape.begin(), shape.end(), std::int64_t{0}) != shape.end()) {
    std::vector<StridedLayout> empty(strides.size());
    for (auto& l : empty) {
      l.ndim = 1;
      l.shape[0] = 0;
      l.strides[0] = 1;
    }
    return empty;
  }
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !sizes.empty();
    for (std::size_t k = 0; merge && k < strides.size(); ++k) {
      std::int64_t span = 0;  // a stride that overflows when multiplied out cannot merge
      merge = !__builtin_mul_overflow(strides[k][d], shape[d], &span) && st[k].back() == span;
    }
    if (merge) {
      sizes.back() *= shape[d];
      for (std::size_t k = 0; k < strides.size(); ++k) st[k].back() = strides[k][d];
    } else {
      sizes.push_back(shape[d]);
      for (std::size_t k = 0; k < strides.size(); ++k) st[k].push_back(strides[k][d]);
    }
  }
  CIUIC_CHECK(sizes.size() <= static_cast<std::size_t>(kMaxDims), NotImplementedError, op, "a CUDA view of ",
              shape.size(), " dims (", shape_str(shape), ") whose strides do not merge into ", kMaxDims,
              " or fewer; expected contiguous() inputs");
  std::vector<StridedLayout> out(strides.size());
  for (std::size_t k = 0; k < strides.size(); ++k) {
    out[k].ndim = static_cast<int>(sizes.size());
    for (std::size_t d = 0; d < sizes.size(); ++d) {
      out[k].shape[d] = sizes[d];
      out[k].strides[d] = st[k][d];
    }
  }
  return out;
}

void* stream_of(const Tensor& t) { return current_stream(t.device()); }

Tensor launch_binary(const char* op, k::BinaryOp bop, const Tensor& a, const Tensor& b) {
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  DeviceGuard guard(a.device());
  Tensor out = make_tensor(shape, a.dtype(), a.device());
  auto ls = merged_layouts(op, shape, {detail::broadcast_strides(a, shape), detail::broadcast_strides(b, shape)});
  k::binary(bop, out.data_ptr(), a.data_ptr(), ls[0], b.data_ptr(), ls[1], a.dtype(), out.numel(), stream_of(a));
  return out;
}

// grad_x = f(grad, saved), both broadcast to their common shape.
Tensor launch_unary_backward(const char* op, k::UnaryBackwardOp bop, const Tensor& grad, const Tensor& saved,
                             double lo, double hi) {
  Shape shape = broadcast_shapes(grad.shape(), saved.shape(), op);
  DeviceGuard guard(saved.device());
  Tensor out = make_tensor(shape, saved.dtype(), saved.device());
  auto ls = merged_layouts(op, shape,
                           {detail::broadcast_strides(grad, shape), detail::broadcast_strides(saved, shape)});
  k::unary_backward(bop, out.data_ptr(), grad.data_ptr(), ls[0], saved.data_ptr(), ls[1], saved.dtype(),
                    out.numel(), lo, hi, stream_of(saved));
  return out;
}

// 1 where `cmp` holds and 0 elsewhere (also where either side is nan), in a's
// dtype when floating, else in f64 (exact for integers below 2^53), built from
// the elementwise kernels:
//   [d > 0]       relu_backward(1, d)        (nan -> 0)
//   [t not nan]   clamp_backward(1, t, -inf, inf)
//   x > y  = [x - y > 0]         (inf - inf = nan -> 0; a rounded difference of
//                                 distinct values never becomes 0, overflow gives inf)
//   x >= y = [x ok][y ok] - [y - x > 0]
//   x == y = [x ok][y ok] - [|x - y| > 0]   (equal infinities: nan -> 0 -> equal)
Tensor compare_indicator(const char* op, CompareOp cmp, const Tensor& a, const Tensor& b) {
  const DType ft = is_floating(a.dtype()) ? a.dtype() : DType::f64;
  const Tensor x = a.detach().to(ft), y = b.detach().to(ft);
  const Tensor one = full({}, 1.0, TensorOptions(ft).device(a.device()));
  auto sub = [&](const Tensor& p, const Tensor& q) { return launch_binary(op, k::BinaryOp::sub, p, q); };
  auto positive = [&](const Tensor& d) {
    return launch_unary_backward(op, k::UnaryBackwardOp::relu, one, d, -INFINITY, INFINITY);
  };
  auto both_ordered = [&] {
    auto ordered = [&](const Tensor& t) {
      return launch_unary_backward(op, k::UnaryBackwardOp::clamp, one, t, -INFINITY, INFINITY);
    };
    return launch_binary(op, k::BinaryOp::mul, ordered(x), ordered(y));
  };
  switch (cmp) {
    case CompareOp::gt: return positive(sub(x, y));
    case CompareOp::lt: return positive(sub(y, x));
    case CompareOp::ge: return sub(both_ordered(), positive(sub(y, x)));
    case CompareOp::le: return sub(both_ordered(), positive(sub(x, y)));
    case CompareOp::eq: return sub(both_ordered(), positive(cuda_unary(op, sub(x, y), {k::UnaryOp::abs})));
    case CompareOp::ne: return sub(one, sub(both_ordered(), positive(cuda_unary(op, sub(x, y), {k::UnaryOp::abs}))));
  }
  detail::fail<ValueError>(op, "unknown comparison ", static_cast<int>(cmp));
}

}  // namespace

StridedLayout cuda_layout(const char* op, const Tensor& t, const Shape& shape) {
  CIUIC_CHECK(shape.size() <= static_cast<std::size_t>(kMaxDims), NotImplementedError, op, "a CUDA view of ",
              shape.size(), " dims (", shape_str(shape), "); expected at most ", kMaxDims,
              " dims (call contiguous() or reshape first)");
  Shape st = detail::broadcast_strides(t, shape);
  StridedLayout l;
  l.ndim = static_cast<int>(shape.size());
  for (std::size_t d = 0; d < shape.size(); ++d) {
    l.shape[d] = shape[d];
    l.strides[d] = st[d];
  }
  return l;
}

Tensor cuda_workspace(Device d, std::size_t bytes) {
  return bytes == 0 ? Tensor() : make_tensor({static_cast<std::int64_t>(bytes)}, DType::u8, d);
}

Tensor cuda_unary(const char* op, const Tensor& a, const CudaUnary& ku) {
  DeviceGuard guard(a.device());
  Tensor out = make_tensor(a.shape(), a.dtype(), a.device());
  auto ls = merged_layouts(op, a.shape(), {a.strides()});
  k::unary(ku.op, out.data_ptr(), a.data_ptr(), ls[0], a.dtype(), a.numel(), ku.args, stream_of(a));
  return out;
}

Tensor cuda_binary(const char* op, const Tensor& a, const Tensor& b, const CudaBinary& kb, bool out_bool) {
  switch (kb.kind) {
    case CudaBinary::Kind::compare: {
      broadcast_shapes(a.shape(), b.shape(), op);  // ShapeError naming op before any launch
      Tensor ind = compare_indicator(op, kb.compare, a, b);
      return ind.to(out_bool ? DType::boolean : a.dtype());
    }
    case CudaBinary::Kind::activation_backward:
      check_floating(op, "a", a);
      return launch_unary_backward(op, kb.backward, a, b, kb.lo, kb.hi);
    case CudaBinary::Kind::binary: {
      const bool int_ok = kb.binary != k::BinaryOp::div && kb.binary != k::BinaryOp::pow &&
                          kb.binary != k::BinaryOp::remainder && kb.binary != k::BinaryOp::fmod;
      CIUIC_CHECK(is_floating(a.dtype()) || (int_ok && (a.dtype() == DType::i32 || a.dtype() == DType::i64)),
                  DTypeError, op, "no CUDA kernel for ", describe_all({{"a", &a}, {"b", &b}}), "; expected ",
                  int_ok ? "f32, f16, bf16, f64, i32 or i64" : "a floating dtype (f32, f16, bf16, f64)",
                  " on CUDA (convert with .to(dtype))");
      return launch_binary(op, kb.binary, a, b);
    }
  }
  detail::fail<ValueError>(op, "unknown CUDA map kind ", static_cast<int>(kb.kind));
}

Tensor cuda_where(const char* op, const Tensor& cond, const Tensor& a, const Tensor& b) {
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), op), b.shape(), op);
  DeviceGuard guard(a.device());
  Tensor out = make_tensor(shape, a.dtype(), a.device());
  auto ls = merged_layouts(op, shape,
                           {detail::broadcast_strides(cond, shape), detail::broadcast_strides(a, shape),
                            detail::broadcast_strides(b, shape)});
  k::where(out.data_ptr(), cond.data_ptr(), ls[0], a.data_ptr(), ls[1], b.data_ptr(), ls[2], a.dtype(), out.numel(),
           stream_of(a));
  return out;
}

#endif  // CIUIC_WITH_CUDA

}  // namespace ciuic::ops
