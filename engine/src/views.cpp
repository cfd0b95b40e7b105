// Views: new shape/strides/offset over the same storage, no copy. Each view is
// differentiable: its backward maps the gradient back onto the input's shape.
#include <algorithm>
#include <numeric>
#include <optional>

#include "ciuic/autograd.h"
#include "ciuic/ops.h"

namespace ciuic {

namespace {

std::int64_t wrap(std::int64_t d, std::int64_t ndim, const char* op, const Tensor& t) {
  std::int64_t w = d < 0 ? d + ndim : d;
  CIUIC_CHECK(w >= 0 && w < ndim, IndexError, op, "dim ", d, " out of range for ", describe(t),
              "; expected a dim in [", -ndim, ", ", ndim - 1, "]");
  return w;
}

// A view of `base` with new geometry; records `name` with `backward` when base needs grad.
Tensor make_view(const Tensor& base, Shape shape, Shape strides, std::int64_t offset, const char* name,
                 std::function<Tensor(const Tensor&)> backward) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->offset = offset;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = base.dtype();
  Tensor out(std::move(impl));
  if (needs_grad({&base}))
    record(name, {base}, {out}, [bw = std::move(backward)](const GradList& g) { return GradList{bw(g[0])}; });
  return out;
}

// Gradient of a view that picks part of the input: zeros of the input's shape with
// the gradient written into the same part.
std::function<Tensor(const Tensor&)> scatter_backward(const Tensor& in, std::function<Tensor(const Tensor&)> pick) {
  Shape shape = in.shape();
  DType dt = in.dtype();
  Device dev = in.device();
  return [=](const Tensor& g) {
    Tensor gi = zeros(shape, TensorOptions(dt).device(dev));
    Tensor part = pick(gi);
    part.copy_(g);
    return gi;
  };
}

// Strides for viewing (shape, strides) as new_shape without a copy, if possible.
// Dims are grouped into runs that are contiguous among themselves; the new
// shape must split or merge within runs only.
std::optional<Shape> view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape) {
  Shape out(new_shape.size());
  if (shape_numel(shape) == 0 || shape.empty()) return contiguous_strides(new_shape);
  std::int64_t view_d = static_cast<std::int64_t>(new_shape.size()) - 1;
  std::int64_t chunk_stride = strides.back();
  std::int64_t tensor_numel = 1, view_numel = 1;
  for (std::int64_t d = static_cast<std::int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    bool run_ends = d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_stride);
    if (!run_ends) continue;
    while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
      out[view_d] = view_numel * chunk_stride;
      view_numel *= new_shape[view_d];
      --view_d;
    }
    if (view_numel != tensor_numel) return std::nullopt;
    if (d > 0) {
      chunk_stride = strides[d - 1];
      tensor_numel = 1;
      view_numel = 1;
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

Shape infer_shape(const Shape& requested, std::int64_t numel, const char* op, const Tensor& t) {
  Shape s = requested;
  std::int64_t known = 1, infer_at = -1;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      CIUIC_CHECK(infer_at < 0, ShapeError, op, "shape ", shape_str(requested), " has more than one -1; expected at most one");
      infer_at = static_cast<std::int64_t>(i);
    } else {
      CIUIC_CHECK(s[i] >= 0, ShapeError, op, "negative size ", s[i], " in shape ", shape_str(requested),
                  " for ", describe(t), "; expected sizes >= 0 or one -1");
      CIUIC_CHECK(!__builtin_mul_overflow(known, s[i], &known), ShapeError, op, "shape ", shape_str(requested),
                  " has more than 2^63 - 1 elements; expected the element count of ", describe(t), " (", numel, ")");
    }
  }
  if (infer_at >= 0) {
    CIUIC_CHECK(known != 0 && numel % known == 0, ShapeError, op, "cannot view ", describe(t), " as ",
                shape_str(requested), "; expected the element count ", numel, " to be divisible by ", known);
    s[infer_at] = numel / known;
  } else {
    CIUIC_CHECK(known == numel, ShapeError, op, "cannot view ", describe(t), " (", numel, " elements) as ",
                shape_str(requested), " (", known, " elements); expected the same element count");
  }
  return s;
}

}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  Shape shape = infer_shape(requested, numel(), "view", *this);
  auto st = view_strides(this->shape(), strides(), shape);
  CIUIC_CHECK(st.has_value(), ShapeError, "view", "cannot view ", describe(*this), " with strides ",
              shape_str(strides()), " as ", shape_str(shape),
              " without a copy; expected dims that are contiguous among themselves (use reshape() to copy)");
  Shape in_shape = this->shape();
  return make_view(*this, shape, *st, offset(), "view", [in_shape](const Tensor& g) { return g.reshape(in_shape); });
}

Tensor Tensor::reshape(const Shape& requested) const {
  Shape shape = infer_shape(requested, numel(), "reshape", *this);
  if (view_strides(this->shape(), strides(), shape)) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::flatten(std::int64_t start, std::int64_t end) const {
  if (dim() == 0) return reshape({1});
  std::int64_t s = wrap(start, dim(), "flatten", *this), e = wrap(end, dim(), "flatten", *this);
  CIUIC_CHECK(s <= e, IndexError, "flatten", "start dim ", start, " after end dim ", end, " for ", describe(*this));
  Shape shape(this->shape().begin(), this->shape().begin() + s);
  std::int64_t n = shape_numel(Shape(this->shape().begin() + s, this->shape().begin() + e + 1), "flatten");
  shape.push_back(n);
  shape.insert(shape.end(), this->shape().begin() + e + 1, this->shape().end());
  return reshape(shape);
}

Tensor Tensor::permute(const Shape& dims) const {
  const std::int64_t nd = dim();
  CIUIC_CHECK(static_cast<std::int64_t>(dims.size()) == nd, ShapeError, "permute", "got ", dims.size(),
              " dims ", shape_str(dims), " for ", describe(*this), "; expected ", nd);
  Shape shape(nd), strides(nd), inverse(nd);
  std::vector<bool> used(nd, false);
  for (std::int64_t i = 0; i < nd; ++i) {
    std::int64_t d = wrap(dims[i], nd, "permute", *this);
    CIUIC_CHECK(!used[d], IndexError, "permute", "dim ", dims[i], " repeated in ", shape_str(dims),
                "; expected a permutation of 0..", nd - 1);
    used[d] = true;
    shape[i] = this->shape()[d];
    strides[i] = this->strides()[d];
    inverse[d] = i;
  }
  return make_view(*this, shape, strides, offset(), "permute", [inverse](const Tensor& g) { return g.permute(inverse); });
}

Tensor Tensor::transpose(std::int64_t d0, std::int64_t d1) const {
  const std::int64_t nd = dim();
  std::int64_t a = wrap(d0, nd, "transpose", *this), b = wrap(d1, nd, "transpose", *this);
  Shape perm(nd);
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[a], perm[b]);
  return permute(perm);
}

Tensor Tensor::slice(std::int64_t d, std::int64_t start, std::int64_t end, std::int64_t step) const {
  std::int64_t dd = wrap(d, dim(), "slice", *this);
  const std::int64_t n = shape()[dd];
  CIUIC_CHECK(step > 0, ValueError, "slice", "step ", step, " for ", describe(*this), "; expected step > 0");
  std::int64_t s = start < 0 ? start + n : start, e = end < 0 ? end + n : end;
  CIUIC_CHECK(s >= 0 && e <= n && s <= e, IndexError, "slice", "range [", start, ", ", end, ") out of range for dim ",
              d, " of size ", n, " in ", describe(*this), "; expected 0 <= start <= end <= ", n);
  Shape shape = this->shape(), strides = this->strides();
  shape[dd] = e == s ? 0 : (e - s - 1) / step + 1;  // ceil((e - s) / step) without overflow for a huge step
  // A step that does not fit the stride product leaves at most one element: its stride is never used.
  if (__builtin_mul_overflow(strides[dd], step, &strides[dd])) strides[dd] = this->strides()[dd];
  std::int64_t off = offset() + s * this->strides()[dd];
  return make_view(*this, shape, strides, off, "slice",
                   scatter_backward(*this, [dd, s, e, step](const Tensor& gi) { return gi.slice(dd, s, e, step); }));
}

Tensor Tensor::narrow(std::int64_t d, std::int64_t start, std::int64_t length) const {
  CIUIC_CHECK(length >= 0, ValueError, "narrow", "length ", length, " for ", describe(*this), "; expected >= 0");
  std::int64_t dd = wrap(d, dim(), "narrow", *this);
  const std::int64_t n = shape()[dd];
  std::int64_t s = start < 0 ? start + n : start, e = 0;
  CIUIC_CHECK(s >= 0 && !__builtin_add_overflow(s, length, &e) && e <= n, IndexError, "narrow", "start ", start,
              " and length ", length, " out of range for dim ", d, " of size ", n, " in ", describe(*this),
              "; expected 0 <= start and start + length <= ", n);
  return slice(dd, s, e);
}

Tensor Tensor::select(std::int64_t d, std::int64_t index) const {
  std::int64_t dd = wrap(d, dim(), "select", *this);
  const std::int64_t n = shape()[dd];
  std::int64_t i = index < 0 ? index + n : index;
  CIUIC_CHECK(i >= 0 && i < n, IndexError, "select", "index ", index, " out of range for dim ", d, " of size ", n,
              " in ", describe(*this), "; expected an index in [", -n, ", ", n - 1, "]");
  Shape shape = this->shape(), strides = this->strides();
  std::int64_t off = offset() + i * strides[dd];
  shape.erase(shape.begin() + dd);
  strides.erase(strides.begin() + dd);
  return make_view(*this, shape, strides, off, "select",
                   scatter_backward(*this, [dd, i](const Tensor& gi) { return gi.select(dd, i); }));
}

Tensor Tensor::expand(const Shape& requested) const {
  const std::int64_t nd = dim(), nn = static_cast<std::int64_t>(requested.size());
  CIUIC_CHECK(nn >= nd, ShapeError, "expand", "cannot expand ", describe(*this), " to ", shape_str(requested),
              "; expected at least ", nd, " dims");
  Shape shape(nn), strides(nn);
  for (std::int64_t i = nn - 1; i >= 0; --i) {
    std::int64_t j = i - (nn - nd);  // matching input dim, or < 0 for a new leading dim
    std::int64_t want = requested[i];
    CIUIC_CHECK(want >= -1, ShapeError, "expand", "negative size ", want, " at dim ", i, " of ", shape_str(requested),
                " for ", describe(*this), "; expected sizes >= 0, or -1 to keep an existing dim");
    if (j >= 0) {
      std::int64_t have = this->shape()[j];
      if (want == -1) want = have;
      CIUIC_CHECK(want == have || have == 1, ShapeError, "expand", "cannot expand ", describe(*this), " to ",
                  shape_str(requested), ": dim ", j, " has size ", have, "; expected size 1 or ", want);
      shape[i] = want;
      strides[i] = have == want ? this->strides()[j] : 0;
    } else {
      CIUIC_CHECK(want >= 0, ShapeError, "expand", "size ", want, " for new leading dim ", i, " in ",
                  shape_str(requested), " of ", describe(*this), "; expected >= 0 (-1 keeps existing dims only)");
      shape[i] = want;
      strides[i] = 0;
    }
  }
  shape_numel(shape, "expand");  // ShapeError beyond 2^63 - 1 elements
  Shape in_shape = this->shape();
  return make_view(*this, shape, strides, offset(), "expand", [in_shape](const Tensor& g) { return sum_to(g, in_shape); });
}

Tensor Tensor::squeeze() const {
  Shape shape;
  for (std::int64_t s : this->shape())
    if (s != 1) shape.push_back(s);
  return view(shape);
}

Tensor Tensor::squeeze(std::int64_t d) const {
  std::int64_t dd = wrap(d, dim(), "squeeze", *this);
  if (shape()[dd] != 1) return view(shape());
  Shape shape = this->shape();
  shape.erase(shape.begin() + dd);
  return view(shape);
}

Tensor Tensor::unsqueeze(std::int64_t d) const {
  std::int64_t dd = wrap(d, dim() + 1, "unsqueeze", *this);
  Shape shape = this->shape();
  shape.insert(shape.begin() + dd, 1);
  return view(shape);
}

}  // namespace ciuic
