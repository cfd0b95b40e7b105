// tril / triu, flip, roll, repeat, pad (constant), one_hot, outer, expand_as.
//
// All are compositions of differentiable ops that run on both devices (where with a
// mask, index_select, cat of narrow views, expand + reshape, mul), so their gradients
// are those ops' gradients and their CUDA paths are those ops' kernels. Results are
// copies (PyTorch returns views for some: only the storage sharing differs).
// one_hot reads the indices back once (its checks and num_classes = -1 need the values).
#include <algorithm>

#include "op_util.h"

namespace ciuic {

namespace {

Tensor triangle(const char* op, const Tensor& a, std::int64_t diagonal, bool lower) {
  ops::check_defined(op, {{"input", &a}});
  CIUIC_CHECK(a.dim() >= 2, ShapeError, op, "got ", describe(a), "; expected at least 2 dims (a matrix or a batch)");
  const std::int64_t rows = a.size(-2), cols = a.size(-1);
  // The (rows, cols) mask, built on the CPU, broadcast over the batch dims.
  Tensor mask = make_tensor({rows, cols}, DType::boolean, Device::cpu());
  bool* pm = static_cast<bool*>(mask.data_ptr());
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) pm[i * cols + j] = lower ? j - i <= diagonal : j - i >= diagonal;
  return where(mask.to(a.device()), a, ops::scalar_like(a, 0.0));
}

// [n - 1, ..., 0] or the roll permutation, as an i64 index on `d`.
Tensor index_tensor(const std::vector<std::int64_t>& v, Device d) {
  Tensor t = make_tensor({static_cast<std::int64_t>(v.size())}, DType::i64, Device::cpu());
  std::copy(v.begin(), v.end(), static_cast<std::int64_t*>(t.data_ptr()));
  return t.to(d);
}

}  // namespace

Tensor tril(const Tensor& a, std::int64_t diagonal) { return triangle("tril", a, diagonal, true); }
Tensor triu(const Tensor& a, std::int64_t diagonal) { return triangle("triu", a, diagonal, false); }

Tensor flip(const Tensor& a, const std::vector<std::int64_t>& dims_in) {
  ops::check_defined("flip", {{"input", &a}});
  std::vector<std::int64_t> dims;
  for (std::int64_t d : dims_in) {
    const std::int64_t w = ops::wrap_dim("flip", d, a);
    CIUIC_CHECK(std::find(dims.begin(), dims.end(), w) == dims.end(), ValueError, "flip", "dim ", d,
                " appears twice in ", shape_str(dims_in), " for ", describe(a), "; expected distinct dims");
    dims.push_back(w);
  }
  Tensor out = a;
  for (std::int64_t d : dims) {
    const std::int64_t n = a.size(d);
    if (n <= 1) continue;
    std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) idx[i] = n - 1 - i;
    out = index_select(out, d, index_tensor(idx, a.device()));
  }
  return out.same(a) ? a.clone() : out;
}

Tensor roll(const Tensor& a, const std::vector<std::int64_t>& shifts, const std::vector<std::int64_t>& dims) {
  ops::check_defined("roll", {{"input", &a}});
  if (dims.empty()) {
    CIUIC_CHECK(shifts.size() == 1, ValueError, "roll", shifts.size(), " shifts and no dims for ", describe(a),
                "; expected one shift (over the flattened tensor) or one shift per dim");
    return roll(a.reshape({-1}), shifts, {0}).reshape(a.shape());
  }
  CIUIC_CHECK(shifts.size() == dims.size(), ValueError, "roll", "shifts ", shape_str(shifts), " and dims ",
              shape_str(dims), " for ", describe(a), "; expected as many shifts as dims");
  Tensor out = a;
  for (std::size_t k = 0; k < dims.size(); ++k) {
    const std::int64_t d = ops::wrap_dim("roll", dims[k], a);
    const std::int64_t n = a.size(d);
    if (n == 0) continue;
    const std::int64_t s = ((shifts[k] % n) + n) % n;  // in [0, n)
    if (s == 0) continue;
    // out[i] = a[(i - s) mod n]: the last s elements first.
    out = cat({out.narrow(d, n - s, s), out.narrow(d, 0, n - s)}, d);
  }
  return out.same(a) ? a.clone() : out;
}

Tensor repeat(const Tensor& a, const std::vector<std::int64_t>& sizes) {
  ops::check_defined("repeat", {{"input", &a}});
  const std::size_t nd = sizes.size();
  CIUIC_CHECK(nd >= static_cast<std::size_t>(a.dim()), ShapeError, "repeat", "sizes ", shape_str(sizes), " for ",
              describe(a), "; expected at least as many sizes as dims (", a.dim(), ")");
  for (std::int64_t r : sizes)
    CIUIC_CHECK(r >= 0, ShapeError, "repeat", "sizes ", shape_str(sizes), " for ", describe(a),
                "; expected non-negative sizes");
  // a as (1, s0, 1, s1, ...) with leading 1s for the extra dims, expanded to
  // (r0, s0, r1, s1, ...), then merged pairwise to (r0 s0, r1 s1, ...).
  Shape padded(nd - a.dim(), 1);
  for (std::int64_t s : a.shape()) padded.push_back(s);
  Shape inter, expanded, final_shape;
  for (std::size_t i = 0; i < nd; ++i) {
    inter.push_back(1);
    inter.push_back(padded[i]);
    expanded.push_back(sizes[i]);
    expanded.push_back(padded[i]);
    std::int64_t n = 0;
    CIUIC_CHECK(!__builtin_mul_overflow(sizes[i], padded[i], &n), ShapeError, "repeat", "sizes ", shape_str(sizes),
                " for ", describe(a), " overflow 2^63 - 1 elements in dim ", i, "; expected a representable size");
    final_shape.push_back(n);
  }
  return a.reshape(inter).expand(expanded).reshape(final_shape).contiguous();
}

Tensor pad(const Tensor& a, const std::vector<std::int64_t>& pads, double value) {
  ops::check_defined("pad", {{"input", &a}});
  CIUIC_CHECK(pads.size() % 2 == 0 && pads.size() <= 2 * static_cast<std::size_t>(a.dim()), ValueError, "pad",
              "pads ", shape_str(pads), " for ", describe(a), "; expected an even count of at most 2 * dim (",
              2 * a.dim(), ") entries: {last_left, last_right, second_last_left, ...}");
  Tensor out = a;
  for (std::size_t k = 0; k < pads.size() / 2; ++k) {
    const std::int64_t d = a.dim() - 1 - static_cast<std::int64_t>(k);
    const std::int64_t left = pads[2 * k], right = pads[2 * k + 1];
    const std::int64_t n = out.size(d);
    // Sizes with overflow checks (hostile pads such as INT64_MAX).
    std::int64_t kept = 0, padded = 0;
    const bool ok = !__builtin_add_overflow(n, std::min<std::int64_t>(left, 0), &kept) &&
                    !__builtin_add_overflow(kept, std::min<std::int64_t>(right, 0), &kept) &&
                    !__builtin_add_overflow(n, left, &padded) && !__builtin_add_overflow(padded, right, &padded);
    CIUIC_CHECK(ok, ShapeError, "pad", "pads ", shape_str(pads), " for ", describe(a), " overflow the size of dim ", d,
                "; expected padded sizes below 2^63");
    CIUIC_CHECK(kept >= 0 && padded >= 0, ShapeError, "pad", "pads ", shape_str(pads), " crop dim ", d, " of ",
                describe(a), " below size 0; expected the padded size to be >= 0");
    if (left < 0 || right < 0) out = out.narrow(d, std::max<std::int64_t>(-left, 0), kept);
    std::vector<Tensor> parts;
    auto filler = [&](std::int64_t len) {
      Shape s = out.shape();
      s[d] = len;
      return full(s, value, TensorOptions(a.dtype()).device(a.device()));
    };
    if (left > 0) parts.push_back(filler(left));
    parts.push_back(out);
    if (right > 0) parts.push_back(filler(right));
    if (parts.size() > 1) out = cat(parts, d);
  }
  return out.same(a) ? a.clone() : out.contiguous();
}

Tensor one_hot(const Tensor& indices, std::int64_t num_classes) {
  ops::check_defined("one_hot", {{"indices", &indices}});
  ops::check_index_dtype("one_hot", "indices", indices);
  CIUIC_CHECK(num_classes >= -1, ValueError, "one_hot", "num_classes ", num_classes, " for ", describe(indices),
              "; expected -1 (infer: max + 1) or a count >= 0");
  const std::vector<std::int64_t> idx = indices.to_vector<std::int64_t>();  // one read-back
  std::int64_t max_v = -1;
  for (std::int64_t v : idx) {
    CIUIC_CHECK(v >= 0, IndexError, "one_hot", "class index ", v, " in ", describe(indices),
                "; expected non-negative class indices");
    max_v = std::max(max_v, v);
  }
  if (num_classes == -1) {
    CIUIC_CHECK(!idx.empty(), ValueError, "one_hot", "cannot infer num_classes from the empty ", describe(indices),
                "; expected num_classes >= 0");
    num_classes = max_v + 1;
  }
  CIUIC_CHECK(max_v < num_classes, IndexError, "one_hot", "class index ", max_v, " in ", describe(indices),
              " out of range; expected indices < num_classes = ", num_classes);
  Shape shape = indices.shape();
  shape.push_back(num_classes);
  Tensor out = zeros(shape, TensorOptions(DType::i64));
  auto* po = static_cast<std::int64_t*>(out.data_ptr());
  for (std::size_t i = 0; i < idx.size(); ++i) po[static_cast<std::int64_t>(i) * num_classes + idx[i]] = 1;
  return out.to(indices.device());
}

Tensor outer(const Tensor& a, const Tensor& b) {
  ops::check_defined("outer", {{"a", &a}, {"b", &b}});
  CIUIC_CHECK(a.dim() == 1 && b.dim() == 1, ShapeError, "outer", "got ", ops::describe_all({{"a", &a}, {"b", &b}}),
              "; expected two 1-D tensors");
  return mul(a.reshape({a.size(0), 1}), b.reshape({1, b.size(0)}));
}

Tensor expand_as(const Tensor& a, const Tensor& other) {
  ops::check_defined("expand_as", {{"input", &a}, {"other", &other}});
  return a.expand(other.shape());
}

}  // namespace ciuic
