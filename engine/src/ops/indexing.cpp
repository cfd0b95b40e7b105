// PyTorch-style indexing (Tensor::index, index_put_), gather, scatter_add(_),
// masked_select. Basic indices compose views (views.cpp); gather, scatter and
// masked_select have CPU references with their backward, no CUDA kernels yet.
#include <algorithm>

#include "op_util.h"

namespace ciuic {

using indexing::Slice;

namespace {

// Python's slice bounds for a dim of size n: negative from the end, clamped.
std::pair<std::int64_t, std::int64_t> slice_bounds(const Slice& s, std::int64_t n) {
  auto norm = [n](std::optional<std::int64_t> v, std::int64_t dflt) {
    if (!v) return dflt;
    std::int64_t x = *v < 0 ? *v + n : *v;
    return std::clamp<std::int64_t>(x, 0, n);
  };
  std::int64_t start = norm(s.start, 0), stop = norm(s.stop, n);
  return {start, std::max(start, stop)};
}

struct Parsed {
  Tensor view;              // after the basic indices
  const Tensor* tensor = nullptr;  // an integer tensor index, applied at dim tensor_dim of view
  std::int64_t tensor_dim = 0;
};

// Applies integers, slices, None and Ellipsis as views; remembers one integer tensor index.
Parsed apply_basic(const char* op, const Tensor& self, std::initializer_list<TensorIndex> idx) {
  std::int64_t consumed = 0, ellipses = 0, tensors = 0;
  for (const TensorIndex& i : idx) {
    switch (i.kind()) {
      case TensorIndex::Kind::integer: case TensorIndex::Kind::slice: ++consumed; break;
      case TensorIndex::Kind::tensor: ++consumed; ++tensors; break;
      case TensorIndex::Kind::ellipsis: ++ellipses; break;
      case TensorIndex::Kind::none: break;
    }
  }
  CIUIC_CHECK(ellipses <= 1, IndexError, op, "more than one Ellipsis indexing ", describe(self),
              "; expected at most one");
  CIUIC_CHECK(tensors <= 1, NotImplementedError, op, tensors, " tensor indices into ", describe(self),
              "; expected at most one (combine them with index_select or gather)");
  CIUIC_CHECK(consumed <= self.dim(), IndexError, op, "too many indices (", consumed, ") for ", describe(self),
              "; expected at most ", self.dim());
  Parsed p;
  Tensor cur = self;
  std::int64_t d = 0;
  for (const TensorIndex& i : idx) {
    switch (i.kind()) {
      case TensorIndex::Kind::integer: {
        const std::int64_t n = cur.size(d), k = i.integer() < 0 ? i.integer() + n : i.integer();
        CIUIC_CHECK(k >= 0 && k < n, IndexError, op, "index ", i.integer(), " out of range for dim ", d, " of size ",
                    n, " in ", describe(self), "; expected an index in [", -n, ", ", n - 1, "]");
        cur = cur.select(d, k);
        break;
      }
      case TensorIndex::Kind::slice: {
        CIUIC_CHECK(i.slice().step > 0, ValueError, op, "slice step ", i.slice().step, " for ", describe(self),
                    "; expected step > 0");
        auto [start, stop] = slice_bounds(i.slice(), cur.size(d));
        cur = cur.slice(d, start, stop, i.slice().step);
        ++d;
        break;
      }
      case TensorIndex::Kind::none:
        cur = cur.unsqueeze(d);
        ++d;
        break;
      case TensorIndex::Kind::ellipsis:
        d += self.dim() - consumed;
        break;
      case TensorIndex::Kind::tensor:
        p.tensor = &i.tensor();
        p.tensor_dim = d;
        ++d;
        break;
    }
  }
  p.view = cur;
  return p;
}

bool is_mask(const Tensor& t) { return t.dtype() == DType::boolean || t.dtype() == DType::u8; }

// The single-mask form x[mask]: checks and returns the mask, or null.
const Tensor* sole_mask(const char* op, const Tensor& self, std::initializer_list<TensorIndex> idx) {
  for (const TensorIndex& i : idx) {
    if (i.kind() != TensorIndex::Kind::tensor || !i.tensor().defined() || !is_mask(i.tensor())) continue;
    CIUIC_CHECK(idx.size() == 1, NotImplementedError, op, "a bool mask ", describe(i.tensor()),
                " among other indices into ", describe(self), "; expected the mask as the only index");
    CIUIC_CHECK(i.tensor().shape() == self.shape(), ShapeError, op, "mask ", describe(i.tensor()), " for ",
                describe(self), "; expected a mask of the tensor's shape");
    return &i.tensor();
  }
  return nullptr;
}

}  // namespace

Tensor Tensor::index(std::initializer_list<TensorIndex> idx) const {
  const char* op = "index";
  ops::check_defined(op, {{"self", this}});
  if (const Tensor* mask = sole_mask(op, *this, idx)) return masked_select(*this, *mask);
  Parsed p = apply_basic(op, *this, idx);
  if (!p.tensor) return p.view;
  const Tensor& t = *p.tensor;
  ops::check_defined(op, {{"index", &t}});
  ops::check_index_dtype(op, "index", t);
  Tensor picked = index_select(p.view, p.tensor_dim, t.reshape({-1}));
  Shape shape = p.view.shape();
  shape.erase(shape.begin() + p.tensor_dim);
  shape.insert(shape.begin() + p.tensor_dim, t.shape().begin(), t.shape().end());
  return picked.reshape(shape);
}

Tensor& Tensor::index_put_(std::initializer_list<TensorIndex> idx, const Tensor& value) {
  const char* op = "index_put_";
  ops::check_defined(op, {{"self", this}, {"value", &value}});
  if (const Tensor* mask = sole_mask(op, *this, idx)) {
    ops::check_inplace_target(op, *this);
    Tensor v = value.dtype() == dtype() ? value : value.to(dtype());
    return ops::inplace_write(op, *this, where(mask->to(DType::boolean), v, *this));
  }
  Parsed p = apply_basic(op, *this, idx);
  CIUIC_CHECK(!p.tensor, NotImplementedError, op, "an integer tensor index into ", describe(*this),
              "; expected Slice/None/Ellipsis/integer indices or one bool mask (use scatter_add_ for tensor indices)");
  p.view.copy_(value);  // AutogradError when self takes part in autograd; bumps the version
  return *this;
}

Tensor& Tensor::index_put_(std::initializer_list<TensorIndex> idx, Scalar value) {
  return index_put_(idx, full({}, value.value, TensorOptions(dtype()).device(device())));
}

// ---- gather / scatter_add ----
namespace {

void check_gather_args(const char* op, const Tensor& a, std::int64_t dim, const Tensor& index, const Tensor* src) {
  ops::check_defined(op, {{"input", &a}, {"index", &index}});
  ops::check_index_dtype(op, "index", index);
  static const Tensor kNone;
  ops::require_cpu(op, {&a, &index, src ? src : &kNone});
  CIUIC_CHECK(index.dim() == a.dim(), ShapeError, op, "index ", describe(index), " for input ", describe(a),
              "; expected the same number of dims");
  for (std::int64_t d = 0; d < a.dim(); ++d) {
    CIUIC_CHECK(d == dim || index.size(d) <= a.size(d), ShapeError, op, "index ", describe(index), " is larger than ",
                "input ", describe(a), " in dim ", d, "; expected index sizes <= the input's outside dim ", dim);
    if (src)
      CIUIC_CHECK(index.size(d) <= src->size(d), ShapeError, op, "index ", describe(index), " is larger than src ",
                  describe(*src), " in dim ", d, "; expected index sizes <= src's");
  }
  if (src) {
    CIUIC_CHECK(src->dim() == a.dim(), ShapeError, op, "src ", describe(*src), " for ", describe(a),
                "; expected the same number of dims");
    ops::check_same_dtype(op, {{"self", &a}, {"src", src}});
  }
}

// Calls f(offset into a, offset into index's companion at strides cs) for every position of index,
// after checking its value against a's size along dim.
template <typename F>
void for_each_index(const char* op, const Tensor& a, std::int64_t dim, const Tensor& index, const Shape& cs, F f) {
  Shape astr = a.strides();
  astr[dim] = 0;
  const std::int64_t n = a.size(dim), sd = a.stride(dim);
  dispatch_dtype(index.dtype(), op, [&](auto tag) {
    using I = decltype(tag);
    if constexpr (std::is_same_v<I, std::int64_t> || std::is_same_v<I, std::int32_t>) {
      const I* pi = detail::typed_ptr<I>(index);
      detail::cpu_for_each<3>(index.shape(), {index.strides(), astr, cs}, [&](const auto& o) {
        const std::int64_t k = static_cast<std::int64_t>(pi[o[0]]);
        CIUIC_CHECK(k >= -n && k < n, IndexError, op, "index value ", k, " out of range for dim ", dim, " of size ",
                    n, " in ", describe(a), "; expected values in [", -n, ", ", n - 1, "]");
        f(o[1] + (k < 0 ? k + n : k) * sd, o[2]);
      });
    }
  });
}

Tensor gather_raw(const Tensor& a, std::int64_t dim, const Tensor& index) {
  Tensor out = make_tensor(index.shape(), a.dtype(), a.device());
  dispatch_dtype(a.dtype(), "gather", [&](auto tag) {
    using T = decltype(tag);
    const T* pa = detail::typed_ptr<T>(a);
    T* po = detail::typed_ptr<T>(out);
    for_each_index("gather", a, dim, index, out.strides(), [&](std::int64_t ai, std::int64_t oi) { po[oi] = pa[ai]; });
  });
  return out;
}

// A copy of self with src[p] added at index[p] along dim (accumulating in acc_t).
Tensor scatter_add_raw(const Tensor& self, std::int64_t dim, const Tensor& index, const Tensor& src) {
  Tensor out = self.detach().clone();
  dispatch_dtype(self.dtype(), "scatter_add", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    T* po = detail::typed_ptr<T>(out);
    const T* ps = detail::typed_ptr<T>(src);
    for_each_index("scatter_add", out, dim, index, src.strides(), [&](std::int64_t oi, std::int64_t si) {
      if constexpr (std::is_same_v<T, bool>) po[oi] = po[oi] || ps[si];
      else po[oi] = convert<T>(static_cast<A>(static_cast<A>(po[oi]) + static_cast<A>(ps[si])));
    });
  });
  return out;
}

}  // namespace

Tensor gather(const Tensor& a, std::int64_t dim_in, const Tensor& index) {
  const char* op = "gather";
  ops::check_defined(op, {{"input", &a}, {"index", &index}});
  std::int64_t dim = ops::wrap_dim(op, dim_in, a);
  check_gather_args(op, a, dim, index, nullptr);
  Tensor out = gather_raw(a, dim, index);
  if (needs_grad({&a})) {
    Shape shape = a.shape();
    Tensor idx = index.detach();
    record(op, {a}, {out}, [shape, dim, idx](const GradList& g) {
      return GradList{scatter_add(zeros(shape, TensorOptions(g[0].dtype()).device(g[0].device())), dim, idx, g[0])};
    });
  }
  return out;
}

Tensor scatter_add(const Tensor& self, std::int64_t dim_in, const Tensor& index, const Tensor& src) {
  const char* op = "scatter_add";
  ops::check_defined(op, {{"self", &self}, {"index", &index}, {"src", &src}});
  std::int64_t dim = ops::wrap_dim(op, dim_in, self);
  check_gather_args(op, self, dim, index, &src);
  Tensor out = scatter_add_raw(self, dim, index, src);
  if (needs_grad({&self, &src})) {
    Tensor idx = index.detach();
    Shape src_shape = src.shape();
    record(op, {self, src}, {out}, [dim, idx, src_shape](const GradList& g) {
      Tensor gs = gather(g[0], dim, idx);
      if (gs.shape() != src_shape) {  // src larger than index: no gradient beyond index's extent
        Tensor full_g = zeros(src_shape, TensorOptions(gs.dtype()).device(gs.device()));
        Tensor region = full_g;
        for (std::int64_t d = 0; d < gs.dim(); ++d) region = region.narrow(d, 0, gs.size(d));
        NoGradGuard no_grad;
        region.copy_(gs);
        gs = full_g;
      }
      return GradList{g[0], gs};
    });
  }
  return out;
}

Tensor& Tensor::scatter_add_(std::int64_t dim, const Tensor& index, const Tensor& src) {
  ops::check_inplace_target("scatter_add_", *this);
  const bool records = grad_mode_enabled() && (requires_grad() || src.requires_grad());
  return ops::inplace_write("scatter_add_", *this, scatter_add(records ? clone() : *this, dim, index, src));
}

// ---- masked_select ----
namespace {
// Positions (row-major offsets into a contiguous tensor of `shape`) where mask is set.
std::vector<std::int64_t> mask_positions(const Tensor& mask, const Shape& shape) {
  std::vector<std::int64_t> pos;
  Tensor m = mask.to(DType::boolean).expand(shape).contiguous();
  const bool* pm = static_cast<const bool*>(m.data_ptr());
  for (std::int64_t i = 0; i < m.numel(); ++i)
    if (pm[i]) pos.push_back(i);
  return pos;
}
}  // namespace

Tensor masked_select(const Tensor& a, const Tensor& mask) {
  const char* op = "masked_select";
  ops::check_defined(op, {{"input", &a}, {"mask", &mask}});
  ops::require_cpu(op, {&a, &mask});
  CIUIC_CHECK(is_mask(mask), DTypeError, op, "mask ", describe(mask), "; expected a bool (or u8) mask");
  CIUIC_CHECK(broadcast_shapes(a.shape(), mask.shape(), op) == a.shape(), ShapeError, op, "mask ", describe(mask),
              " does not broadcast to input ", describe(a), "; expected the input's shape");
  std::vector<std::int64_t> pos = mask_positions(mask, a.shape());
  Tensor src = a.detach().contiguous();
  Tensor out = make_tensor({static_cast<std::int64_t>(pos.size())}, a.dtype(), a.device());
  dispatch_dtype(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* ps = detail::typed_ptr<T>(src);
    T* po = detail::typed_ptr<T>(out);
    for (std::size_t i = 0; i < pos.size(); ++i) po[i] = ps[pos[i]];
  });
  if (needs_grad({&a})) {
    Shape shape = a.shape();
    Tensor flat_index = from_vector(pos, {static_cast<std::int64_t>(pos.size())});
    record(op, {a}, {out}, [shape, flat_index](const GradList& g) {
      Tensor z = zeros({shape_numel(shape)}, TensorOptions(g[0].dtype()).device(g[0].device()));
      return GradList{scatter_add(z, 0, flat_index, g[0]).view(shape)};
    });
  }
  return out;
}

}  // namespace ciuic
