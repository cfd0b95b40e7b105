// cat, stack, split, chunk, index_select. split and chunk return views (narrow),
// whose backward comes from the view; cat and index_select copy, and their
// backward slices (cat) or scatter-adds (index_select) the gradient.
// cat copies with copy_, so it runs on any device. On CUDA index_select is the
// embedding gather with the selected dim first (rows of all the other dims), and
// its backward the embedding kernel's deterministic scatter-add.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "op_util.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/embedding.h"
#include "ciuic/stream.h"
#endif

namespace ciuic {

namespace {

// A 1-D tensor with no elements: cat skips it whatever the other shapes are, as PyTorch does.
bool legacy_empty(const Tensor& t) { return t.dim() == 1 && t.size(0) == 0; }

// (outer, n, inner) of a shape split at dim d (d < shape.size()).
struct Rows {
  std::int64_t outer = 1, n = 1, inner = 1;
};
Rows rows_of(const Shape& shape, std::int64_t d) {
  Rows r;
  for (std::int64_t i = 0; i < d; ++i) r.outer *= shape[i];
  for (std::size_t i = d + 1; i < shape.size(); ++i) r.inner *= shape[i];
  r.n = shape[d];
  return r;
}

// Checks the list is non-empty, every tensor defined, of one dtype and on one device.
void check_list(const char* op, const std::vector<Tensor>& ts) {
  CIUIC_CHECK(!ts.empty(), ValueError, op, "got an empty list of tensors; expected at least one tensor");
  for (std::size_t i = 0; i < ts.size(); ++i) {
    CIUIC_CHECK(ts[i].defined(), ValueError, op, "tensor ", i, " is undefined; expected defined tensors");
    CIUIC_CHECK(ts[i].dtype() == ts[0].dtype(), DTypeError, op, "tensor ", i, " is ", describe(ts[i]),
                " but tensor 0 is ", describe(ts[0]), "; expected one dtype (convert with .to(dtype))");
    CIUIC_CHECK(ts[i].device() == ts[0].device(), DeviceError, op, "tensor ", i, " is ", describe(ts[i]),
                " but tensor 0 is ", describe(ts[0]), "; expected all on one device");
  }
}

// index values of a CPU/GPU index tensor, checked against [0, n).
std::vector<std::int64_t> read_indices(const char* op, const Tensor& index, std::int64_t n, std::int64_t dim,
                                       const Tensor& a) {
  std::vector<std::int64_t> idx = index.to_vector<std::int64_t>();
  for (std::size_t k = 0; k < idx.size(); ++k)
    CIUIC_CHECK(idx[k] >= 0 && idx[k] < n, IndexError, op, "index ", idx[k], " (at position ", k,
                ") out of range for dim ", dim, " of size ", n, " in ", describe(a), "; expected indices in [0, ",
                n, ")");
  return idx;
}

// gx (shape, zeros) with gx[.., idx[k], ..] += g[.., k, ..] along dim d; duplicates accumulate.
Tensor index_add_backward(const Tensor& g, const std::vector<std::int64_t>& idx, const Shape& shape, std::int64_t d) {
  ops::require_cpu("index_select", {&g});
  Tensor gc = g.contiguous();
  Tensor gx = zeros(shape, TensorOptions(g.dtype()).device(g.device()));
  Rows r = rows_of(shape, d);
  const std::int64_t m = static_cast<std::int64_t>(idx.size());
  dispatch_floating(g.dtype(), "index_select", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* pg = detail::typed_ptr<T>(gc);
    T* px = detail::typed_ptr<T>(gx);
    // Accumulate in A so that duplicates in f16/bf16 round once.
    std::vector<A> acc;
    if constexpr (!std::is_same_v<T, A>) acc.assign(static_cast<std::size_t>(gx.numel()), A(0));
    for (std::int64_t o = 0; o < r.outer; ++o)
      for (std::int64_t k = 0; k < m; ++k) {
        const T* src = pg + (o * m + k) * r.inner;
        const std::int64_t dst = (o * r.n + idx[k]) * r.inner;
        for (std::int64_t i = 0; i < r.inner; ++i) {
          if constexpr (std::is_same_v<T, A>) px[dst + i] += src[i];
          else acc[dst + i] += static_cast<A>(src[i]);
        }
      }
    if constexpr (!std::is_same_v<T, A>)
      for (std::size_t i = 0; i < acc.size(); ++i) px[i] = convert<T>(acc[i]);
  });
  return gx;
}

#ifdef CIUIC_WITH_CUDA
// t with dim d moved to the front, contiguous: (t.size(d), the other dims in order).
Tensor dim_first(const Tensor& t, std::int64_t d) {
  Shape perm{d};
  for (std::int64_t i = 0; i < t.dim(); ++i)
    if (i != d) perm.push_back(i);
  return t.detach().permute(perm).contiguous();
}
// The inverse: r (k, others...) with dim 0 moved back to position d, contiguous.
Tensor dim_back(const Tensor& r, std::int64_t d) {
  if (d == 0) return r;
  Shape perm;
  for (std::int64_t i = 1; i <= d; ++i) perm.push_back(i);
  perm.push_back(0);
  for (std::int64_t i = d + 1; i < r.dim(); ++i) perm.push_back(i);
  return r.permute(perm).contiguous();
}

// out (a's shape with m = idx.numel() at d) = a's rows idx[k] along d. idx: contiguous, on a's device.
Tensor index_select_cuda(const char* op, const Tensor& a, std::int64_t d, const Tensor& idx) {
  CIUIC_CHECK(is_floating(a.dtype()), DTypeError, op, "no CUDA kernel for ", describe(a),
              "; expected a floating dtype (f32, f16, bf16, f64) on CUDA");
  Tensor rows = dim_first(a, d);  // (n, others...)
  const std::int64_t n = a.size(d), C = a.size(d) == 0 ? 0 : rows.numel() / n, m = idx.numel();
  Shape out_shape = rows.shape();
  out_shape[0] = m;
  DeviceGuard guard(a.device());
  Tensor out = make_tensor(out_shape, a.dtype(), a.device());
  kernels::embedding_forward(out.data_ptr(), rows.data_ptr(), a.dtype(), n, C, idx.data_ptr(), idx.dtype(), m,
                             {}, current_stream(a.device()));
  return dim_back(out, d);
}

// The backward: zeros of `shape` with g's rows k added at idx[k] along d, in k order.
Tensor index_add_backward_cuda(const Tensor& g, const Tensor& idx, const Shape& shape, std::int64_t d) {
  Tensor grows = dim_first(g, d);  // (m, others...)
  Shape rows_shape = grows.shape();
  rows_shape[0] = shape[d];
  const std::int64_t n = shape[d], C = shape_numel(rows_shape) == 0 ? 0 : shape_numel(rows_shape) / n;
  DeviceGuard guard(g.device());
  Tensor gx = make_tensor(rows_shape, g.dtype(), g.device());
  const std::size_t bytes = kernels::embedding_backward_workspace_bytes(g.dtype(), n, C, idx.numel(), true);
  Tensor ws = ops::cuda_workspace(g.device(), bytes);
  kernels::embedding_backward(gx.data_ptr(), grows.data_ptr(), g.dtype(), n, C, idx.data_ptr(), idx.dtype(),
                              idx.numel(), true, ws.defined() ? ws.data_ptr() : nullptr, bytes,
                              current_stream(g.device()));
  return dim_back(gx, d);
}
#endif

}  // namespace

Tensor cat(const std::vector<Tensor>& ts, std::int64_t dim) {
  const char* op = "cat";
  check_list(op, ts);
  std::size_t ref = 0;  // the first tensor that is not a skipped 1-D empty
  while (ref < ts.size() && legacy_empty(ts[ref])) ++ref;
  if (ref == ts.size()) ref = 0;
  const Tensor& r = ts[ref];
  CIUIC_CHECK(r.dim() > 0, ShapeError, op, "tensor ", ref, " is ", describe(r),
              "; expected tensors with at least 1 dim (zero-dim tensors cannot be concatenated; use stack)");
  const std::int64_t d = ops::wrap_dim(op, dim, r);
  Shape out_shape = r.shape();
  out_shape[d] = 0;
  std::vector<bool> skip(ts.size());
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    skip[i] = legacy_empty(t) && !legacy_empty(r);
    if (skip[i]) continue;
    CIUIC_CHECK(t.dim() == r.dim(), ShapeError, op, "tensor ", i, " is ", describe(t), " but tensor ", ref, " is ",
                describe(r), "; expected the same number of dims");
    for (std::int64_t j = 0; j < t.dim(); ++j)
      CIUIC_CHECK(j == d || t.size(j) == r.size(j), ShapeError, op, "tensor ", i, " is ", describe(t),
                  " but tensor ", ref, " is ", describe(r), " (dim ", j, ": ", t.size(j), " vs ", r.size(j),
                  "); expected equal sizes except in the cat dim ", d);
    out_shape[d] += t.size(d);
  }

  Tensor out = make_tensor(out_shape, r.dtype(), r.device());
  std::vector<std::int64_t> starts(ts.size(), 0);
  std::int64_t at = 0;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    starts[i] = at;
    if (skip[i]) continue;
    const std::int64_t len = ts[i].size(d);
    if (len > 0 && out.numel() > 0) out.narrow(d, at, len).copy_(ts[i].detach());
    at += len;
  }
  if (needs_grad(ts)) {
    // Input i's gradient is g's slice [start_i, start_i + len_i) along d; skipped empties get zeros.
    std::vector<std::int64_t> lens(ts.size());
    std::vector<bool> wants(ts.size());
    for (std::size_t i = 0; i < ts.size(); ++i) {
      lens[i] = skip[i] ? -1 : ts[i].size(d);
      wants[i] = ts[i].requires_grad();
    }
    record(op, ts, {out}, [d, starts, lens, wants](const GradList& g) {
      GradList gs(lens.size());
      for (std::size_t i = 0; i < lens.size(); ++i) {
        if (!wants[i]) continue;
        gs[i] = lens[i] < 0 ? zeros({0}, TensorOptions(g[0].dtype()).device(g[0].device()))
                            : g[0].narrow(d, starts[i], lens[i]);
      }
      return gs;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& ts, std::int64_t dim) {
  const char* op = "stack";
  check_list(op, ts);
  for (std::size_t i = 0; i < ts.size(); ++i)
    CIUIC_CHECK(ts[i].shape() == ts[0].shape(), ShapeError, op, "tensor ", i, " is ", describe(ts[i]),
                " but tensor 0 is ", describe(ts[0]), "; expected all tensors to have the same shape");
  const std::int64_t nd = ts[0].dim() + 1;  // the result's dims
  const std::int64_t d = dim < 0 ? dim + nd : dim;
  CIUIC_CHECK(d >= 0 && d < nd, IndexError, op, "dim ", dim, " out of range for stacking ", describe(ts[0]),
              "; expected a dim in [", -nd, ", ", nd - 1, "]");
  std::vector<Tensor> parts;
  parts.reserve(ts.size());
  for (const Tensor& t : ts) parts.push_back(t.unsqueeze(d));
  return cat(parts, d);
}

std::vector<Tensor> split(const Tensor& a, std::int64_t split_size, std::int64_t dim) {
  const char* op = "split";
  ops::check_defined(op, {{"input", &a}});
  CIUIC_CHECK(a.dim() > 0, ShapeError, op, "cannot split the zero-dim tensor ", describe(a),
              "; expected at least 1 dim");
  CIUIC_CHECK(split_size > 0, ValueError, op, "split_size ", split_size, " for ", describe(a),
              "; expected split_size > 0");
  const std::int64_t d = ops::wrap_dim(op, dim, a);
  const std::int64_t n = a.size(d);
  if (n == 0) return {a.narrow(d, 0, 0)};
  std::vector<Tensor> out;
  for (std::int64_t s = 0; s < n; s += split_size) out.push_back(a.narrow(d, s, std::min(split_size, n - s)));
  return out;
}

std::vector<Tensor> chunk(const Tensor& a, std::int64_t chunks, std::int64_t dim) {
  const char* op = "chunk";
  ops::check_defined(op, {{"input", &a}});
  CIUIC_CHECK(a.dim() > 0, ShapeError, op, "cannot chunk the zero-dim tensor ", describe(a),
              "; expected at least 1 dim");
  CIUIC_CHECK(chunks > 0, ValueError, op, "chunks ", chunks, " for ", describe(a), "; expected chunks > 0");
  const std::int64_t d = ops::wrap_dim(op, dim, a);
  const std::int64_t n = a.size(d);
  // As PyTorch: chunks of ceil(n / chunks), so there may be fewer than `chunks`; an empty dim gives `chunks` empties.
  if (n == 0) {
    std::vector<Tensor> out;
    for (std::int64_t i = 0; i < chunks; ++i) out.push_back(a.narrow(d, 0, 0));  // distinct views
    return out;
  }
  return split(a, (n + chunks - 1) / chunks, d);
}

Tensor index_select(const Tensor& a, std::int64_t dim, const Tensor& index) {
  const char* op = "index_select";
  ops::check_defined(op, {{"input", &a}, {"index", &index}});
  ops::check_same_device(op, {{"input", &a}, {"index", &index}});
  ops::check_index_dtype(op, "index", index);
  CIUIC_CHECK(index.dim() <= 1, ShapeError, op, "index is ", describe(index), "; expected a 1-D index");
  CIUIC_CHECK(a.dim() > 0, ShapeError, op, "input is the zero-dim tensor ", describe(a), "; expected at least 1 dim");
  const std::int64_t d = ops::wrap_dim(op, dim, a);
  std::vector<std::int64_t> idx = read_indices(op, index, a.size(d), dim, a);
#ifdef CIUIC_WITH_CUDA
  if (a.device().is_cuda()) {
    Tensor idx_dev = index.detach().reshape({-1}).clone();  // private: later in-place changes do not reach backward
    Tensor out = index_select_cuda(op, a, d, idx_dev);
    if (needs_grad({&a})) {
      Shape shape = a.shape();
      record(op, {a, index}, {out}, [idx_dev, shape, d](const GradList& g) {
        return GradList{index_add_backward_cuda(g[0], idx_dev, shape, d), Tensor()};
      });
    }
    return out;
  }
#endif

  const std::int64_t m = static_cast<std::int64_t>(idx.size());
  Shape out_shape = a.shape();
  out_shape[d] = m;
  Tensor out = make_tensor(out_shape, a.dtype(), a.device());
  Tensor ac = a.detach().contiguous();
  Rows r = rows_of(a.shape(), d);
  // Rows of `inner` elements are copied as bytes: any dtype.
  const std::size_t es = a.element_size(), row_bytes = static_cast<std::size_t>(r.inner) * es;
  const auto* src = static_cast<const unsigned char*>(ac.data_ptr());
  auto* dst = static_cast<unsigned char*>(out.data_ptr());
  if (row_bytes > 0)
    for (std::int64_t o = 0; o < r.outer; ++o)
      for (std::int64_t k = 0; k < m; ++k)
        std::memcpy(dst + static_cast<std::size_t>(o * m + k) * row_bytes,
                    src + static_cast<std::size_t>(o * r.n + idx[k]) * row_bytes, row_bytes);

  if (needs_grad({&a})) {
    Shape shape = a.shape();
    record(op, {a, index}, {out}, [idx = std::move(idx), shape, d](const GradList& g) {
      return GradList{index_add_backward(g[0], idx, shape, d), Tensor()};
    });
  }
  return out;
}

}  // namespace ciuic
