// Tensor: a cheap shared handle to storage + offset + shape + strides + dtype +
// device, plus autograd state. Copying a Tensor copies the handle; views share
// storage and cost no copy. Strides and offsets count elements, not bytes.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <cstring>
#include <functional>
#include <type_traits>
#include <vector>

#include "ciuic/device.h"
#include "ciuic/dtype.h"
#include "ciuic/random.h"
#include "ciuic/scalar.h"
#include "ciuic/storage.h"

namespace ciuic {

using Shape = std::vector<std::int64_t>;
std::string shape_str(const Shape& s);  // "[2, 3]"
// The element count. ShapeError naming `op` and the shape when a size is negative or the
// product exceeds 2^63 - 1 (a 0 size anywhere makes the count 0, whatever the others).
std::int64_t shape_numel(const Shape& s, const char* op = "shape_numel");
// Row-major strides (elements). Strides of a shape with 0 elements may saturate at 2^63 - 1
// instead of overflowing; they are never used to address memory.
Shape contiguous_strides(const Shape& s);

struct AutogradMeta;  // autograd.h
class TensorIndex;   // indexing.h

struct TensorImpl {
  Storage storage;
  std::int64_t offset = 0;  // elements from storage->data
  Shape shape;
  Shape strides;            // elements; 0 in expanded dims
  DType dtype = DType::f32;
  std::shared_ptr<AutogradMeta> autograd;  // null until needed
};

class Tensor;

struct TensorOptions {
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu();
  bool requires_grad_ = false;
  TensorOptions() = default;
  TensorOptions(DType t) : dtype_(t) {}        // NOLINT: implicit for zeros({2}, DType::f64)
  TensorOptions(Device d) : device_(d) {}      // NOLINT
  TensorOptions& dtype(DType t) { dtype_ = t; return *this; }
  TensorOptions& device(Device d) { device_ = d; return *this; }
  TensorOptions& requires_grad(bool r = true) { requires_grad_ = r; return *this; }
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Every method below raises ValueError ("<method>: called on an undefined tensor") on a
  // default-constructed Tensor, except defined(), impl(), impl_ptr(), same(), str() (prints
  // "tensor(undefined)") and requires_grad() (false), which answer for it.
  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- metadata ----
  const Shape& shape() const;
  const Shape& sizes() const { return shape(); }  // libtorch's name for the shape (x.sizes() == x.shape())
  const Shape& strides() const;
  std::int64_t dim() const { return static_cast<std::int64_t>(shape().size()); }
  std::int64_t size(std::int64_t d) const;    // d may be negative
  std::int64_t stride(std::int64_t d) const;
  std::int64_t offset() const;
  std::int64_t numel() const;
  DType dtype() const;
  Device device() const;
  std::size_t element_size() const { return dtype_size(dtype()); }
  bool is_contiguous() const;
  const Storage& storage() const;
  void* data_ptr() const;                      // address of element 0 of this view
  template <typename T> T* data() const;       // checks dtype_of<T> == dtype()
  std::uint64_t version() const;
  void bump_version() const;                   // call after every in-place write

  // ---- autograd (autograd.h has the tape) ----
  bool requires_grad() const;
  Tensor& requires_grad_(bool r = true);
  bool is_leaf() const;                        // not produced by a recorded op
  Tensor grad() const;                         // undefined until a backward wrote it
  void set_grad(const Tensor& g) const;
  void zero_grad() const;                      // drops .grad
  Tensor detach() const;                       // same storage, no autograd history
  // As PyTorch's retain_grad(): a non-leaf keeps (accumulates) its gradient in .grad at
  // every backward; a no-op on a leaf. AutogradError when it does not require grad.
  void retain_grad() const;
  bool retains_grad() const;                   // retain_grad() was called on this non-leaf
  // As PyTorch's register_hook: hook(grad) runs on every gradient flowing into this tensor
  // before it is used; it may return a replacement (same shape, dtype, device), an undefined
  // Tensor, or nothing (void). AutogradError when the tensor does not require grad.
  template <typename F>
  void register_hook(F&& hook) const {
    if constexpr (std::is_void_v<std::invoke_result_t<F&, const Tensor&>>)
      register_hook_fn([h = std::forward<F>(hook)](const Tensor& g) mutable { h(g); return Tensor(); });
    else
      register_hook_fn(std::function<Tensor(const Tensor&)>(std::forward<F>(hook)));
  }
  void register_hook_fn(std::function<Tensor(const Tensor&)> hook) const;
  // Gradient of this (a scalar unless grad_output is given) w.r.t. every leaf.
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false) const;

  // ---- views (no copy; differentiable) ----
  Tensor view(const Shape& shape) const;       // needs compatible strides; -1 infers one dim
  Tensor reshape(const Shape& shape) const;    // view when possible, else a copy
  Tensor flatten(std::int64_t start = 0, std::int64_t end = -1) const;
  Tensor transpose(std::int64_t d0, std::int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor permute(const Shape& dims) const;
  Tensor slice(std::int64_t dim, std::int64_t start, std::int64_t end, std::int64_t step = 1) const;
  Tensor narrow(std::int64_t dim, std::int64_t start, std::int64_t length) const;
  Tensor select(std::int64_t dim, std::int64_t index) const;
  Tensor expand(const Shape& shape) const;     // -1 keeps a dim; new leading dims allowed
  Tensor squeeze() const;
  Tensor squeeze(std::int64_t dim) const;
  Tensor unsqueeze(std::int64_t dim) const;

  // ---- copies and conversions ----
  Tensor to(Device d) const;                   // same tensor when already there
  Tensor to(DType t) const;
  Tensor to(Device d, DType t) const;
  Tensor clone() const;                        // contiguous copy
  Tensor contiguous() const;                   // this when already contiguous
  Tensor& copy_(const Tensor& src);            // broadcasts src, converts dtype, crosses devices
  Tensor& fill_(double v);
  Tensor& zero_() { return fill_(0.0); }

  // ---- in-place arithmetic (ops.h describes the rules: promotion into this dtype,
  // version bump, AutogradError on a leaf that requires grad under grad mode) ----
  Tensor& add_(const Tensor& other);
  Tensor& add_(Scalar s);
  Tensor& sub_(const Tensor& other);
  Tensor& sub_(Scalar s);
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(Scalar s);
  Tensor& div_(const Tensor& other);
  Tensor& div_(Scalar s);
  Tensor& clamp_(std::optional<double> lo, std::optional<double> hi);

  // ---- PyTorch-style indexing (indexing.h: Slice, None, Ellipsis, integers, tensors) ----
  Tensor index(std::initializer_list<TensorIndex> indices) const;
  Tensor& index_put_(std::initializer_list<TensorIndex> indices, const Tensor& value);
  Tensor& index_put_(std::initializer_list<TensorIndex> indices, Scalar value);
  // In place: self[..., index[p], ...] += src[p] along dim (ops.h: scatter_add).
  Tensor& scatter_add_(std::int64_t dim, const Tensor& index, const Tensor& src);

  double item() const;                         // one element, as double
  template <typename T> T item() const { return convert<T>(item()); }
  template <typename T> std::vector<T> to_vector() const;  // row-major, converted to T

  std::string str() const;                     // shape, dtype, device and values

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Describes a tensor for error messages: "f32[2, 3] on cpu".
std::string describe(const Tensor& t);

// ---- factories ----
Tensor empty(const Shape& shape, TensorOptions opts = {});
Tensor zeros(const Shape& shape, TensorOptions opts = {});
Tensor ones(const Shape& shape, TensorOptions opts = {});
Tensor full(const Shape& shape, double value, TensorOptions opts = {});
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
// [start, end) by step; dtype defaults to i64.
Tensor arange(double start, double end, double step = 1.0, TensorOptions opts = DType::i64);
Tensor arange(std::int64_t n, TensorOptions opts = DType::i64);
// Uniform [lo, hi) and normal(mean, std) from the counter-based generator.
Tensor rand(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);
Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions opts = {}, Generator* gen = nullptr);
Tensor randn(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);
Tensor normal(const Shape& shape, double mean, double std, TensorOptions opts = {}, Generator* gen = nullptr);

// Copies host data in (dtype from T unless opts says otherwise).
template <typename T>
Tensor from_vector(const std::vector<T>& data, const Shape& shape, TensorOptions opts = TensorOptions(dtype_of<T>::value));
// Wraps external memory without copying; deleter (may be empty) runs when the last view dies.
// As torch.tensor: a new CPU tensor (or on opts' device) holding the given values, row-major.
// The dtype is inferred as PyTorch does when opts is not given: floating values -> f32 (the
// default dtype), integers -> i64, bool -> boolean; with opts the values are converted to its
// dtype. tensor({1.0, 2.0}), tensor({{1, 2}, {3, 4}}, DType::f64), tensor(std::vector<float>{..}).
// A 2-D list with rows of different lengths is a ShapeError.
template <typename T>
Tensor tensor(std::initializer_list<T> values);
template <typename T>
Tensor tensor(std::initializer_list<T> values, TensorOptions opts);
template <typename T>
Tensor tensor(std::initializer_list<std::initializer_list<T>> rows);
template <typename T>
Tensor tensor(std::initializer_list<std::initializer_list<T>> rows, TensorOptions opts);
template <typename T>
Tensor tensor(const std::vector<T>& values);
template <typename T>
Tensor tensor(const std::vector<T>& values, TensorOptions opts);
// A 0-dim tensor (torch.tensor(3.5)): f32 unless opts says otherwise.
Tensor scalar_tensor(double value, TensorOptions opts = {});

Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device = Device::cpu(),
                 std::function<void(void*)> deleter = {});
// A contiguous tensor over fresh storage of the given shape, dtype, device (no autograd).
Tensor make_tensor(const Shape& shape, DType dtype, Device device);

// ---- template definitions ----
template <typename T>
T* Tensor::data() const {
  CIUIC_CHECK(dtype() == dtype_of<T>::value, DTypeError, "Tensor::data", "tensor is ", dtype_name(dtype()),
              "; requested ", dtype_name(dtype_of<T>::value));
  return static_cast<T*>(data_ptr());
}

namespace detail {
// Contiguous host bytes of t converted to dtype `to` (copies from the GPU when needed).
std::vector<unsigned char> host_bytes(const Tensor& t, DType to);
Tensor from_host(const void* data, DType dtype, const Shape& shape, TensorOptions opts);
}  // namespace detail

template <typename T>
std::vector<T> Tensor::to_vector() const {
  auto bytes = detail::host_bytes(*this, dtype_of<T>::value);
  std::vector<T> out(static_cast<std::size_t>(numel()));
  if (!out.empty()) std::memcpy(static_cast<void*>(out.data()), bytes.data(), bytes.size());
  return out;
}

template <typename T>
Tensor from_vector(const std::vector<T>& data, const Shape& shape, TensorOptions opts) {
  static_assert(!std::is_same_v<T, bool>, "std::vector<bool> is packed: use std::vector<uint8_t> with DType::boolean");
  const std::int64_t n = shape_numel(shape, "from_vector");
  CIUIC_CHECK(static_cast<std::int64_t>(data.size()) == n, ShapeError, "from_vector",
              "got ", data.size(), " values for shape ", shape_str(shape), " (", n, " elements)");
  return detail::from_host(data.data(), dtype_of<T>::value, shape, opts);
}

namespace detail {
// torch.tensor's dtype for C++ values of type T: f32 for floating, boolean for bool, i64 otherwise.
template <typename T>
constexpr DType inferred_dtype() {
  if constexpr (std::is_same_v<T, bool>) return DType::boolean;
  else if constexpr (std::is_floating_point_v<T>) return DType::f32;
  else return DType::i64;
}
// The values as the widest host type of their kind (double, int64, or uint8 for bool) and
// converted by from_host to opts' dtype.
template <typename T>
Tensor tensor_from_values(const T* data, const Shape& shape, TensorOptions opts) {
  static_assert(std::is_arithmetic_v<T>, "tensor(): expected numbers or bools");
  const std::size_t n = static_cast<std::size_t>(shape_numel(shape, "tensor"));
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = data[i] ? 1 : 0;
    return from_host(v.data(), DType::boolean, shape, opts);
  } else if constexpr (std::is_floating_point_v<T>) {
    std::vector<double> v(data, data + n);
    return from_host(v.data(), DType::f64, shape, opts);
  } else {
    std::vector<std::int64_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::int64_t>(data[i]);
    return from_host(v.data(), DType::i64, shape, opts);
  }
}
template <typename T>
Tensor tensor_from_rows(std::initializer_list<std::initializer_list<T>> rows, TensorOptions opts) {
  const std::size_t cols = rows.size() == 0 ? 0 : rows.begin()->size();
  std::vector<T> flat;
  flat.reserve(rows.size() * cols);
  std::size_t r = 0;
  for (const auto& row : rows) {
    CIUIC_CHECK(row.size() == cols, ShapeError, "tensor", "row ", r, " has ", row.size(), " values, row 0 has ",
                cols, "; expected rows of equal length");
    flat.insert(flat.end(), row.begin(), row.end());
    ++r;
  }
  Shape shape{static_cast<std::int64_t>(rows.size()), static_cast<std::int64_t>(cols)};
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<std::uint8_t> b(flat.begin(), flat.end());
    return from_host(b.data(), DType::boolean, shape, opts);
  } else {
    return tensor_from_values(flat.data(), shape, opts);
  }
}
}  // namespace detail

template <typename T>
Tensor tensor(std::initializer_list<T> values, TensorOptions opts) {
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<std::uint8_t> b(values.begin(), values.end());
    return detail::from_host(b.data(), DType::boolean, {static_cast<std::int64_t>(b.size())}, opts);
  } else {
    return detail::tensor_from_values(values.begin(), {static_cast<std::int64_t>(values.size())}, opts);
  }
}
template <typename T>
Tensor tensor(std::initializer_list<T> values) {
  return tensor(values, TensorOptions(detail::inferred_dtype<T>()));
}
template <typename T>
Tensor tensor(std::initializer_list<std::initializer_list<T>> rows, TensorOptions opts) {
  return detail::tensor_from_rows(rows, opts);
}
template <typename T>
Tensor tensor(std::initializer_list<std::initializer_list<T>> rows) {
  return detail::tensor_from_rows(rows, TensorOptions(detail::inferred_dtype<T>()));
}
template <typename T>
Tensor tensor(const std::vector<T>& values, TensorOptions opts) {
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<std::uint8_t> b(values.begin(), values.end());
    return detail::from_host(b.data(), DType::boolean, {static_cast<std::int64_t>(b.size())}, opts);
  } else {
    return detail::tensor_from_values(values.data(), {static_cast<std::int64_t>(values.size())}, opts);
  }
}
template <typename T>
Tensor tensor(const std::vector<T>& values) {
  return tensor(values, TensorOptions(detail::inferred_dtype<T>()));
}

}  // namespace ciuic
