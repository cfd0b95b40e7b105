// Tensor metadata accessors and the small helpers every op uses.
#include "ciuic/tensor.h"

#include <sstream>

#include "ciuic/autograd.h"

namespace ciuic {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

std::int64_t shape_numel(const Shape& s, const char* op) {
  bool empty = false;
  for (std::int64_t d : s) {
    CIUIC_CHECK(d >= 0, ShapeError, op, "negative size ", d, " in shape ", shape_str(s),
                "; expected every size >= 0");
    empty = empty || d == 0;
  }
  if (empty) return 0;
  std::int64_t n = 1;
  for (std::int64_t d : s)
    CIUIC_CHECK(!__builtin_mul_overflow(n, d, &n), ShapeError, op, "shape ", shape_str(s),
                " has more than 2^63 - 1 elements; expected a shape whose element count fits in int64");
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  std::int64_t acc = 1;
  for (std::size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    // Overflow is only possible when another dim is 0 (shape_numel refuses the rest): saturate.
    if (__builtin_mul_overflow(acc, s[i], &acc)) acc = INT64_MAX;
  }
  return st;
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  return detail::concat(dtype_name(t.dtype()), shape_str(t.shape()), " on ", t.device().str());
}

static void check_defined(const TensorImpl* impl, const char* what) {
  CIUIC_CHECK(impl != nullptr, ValueError, what, "called on an undefined tensor; expected a tensor made by a "
              "factory or an op");
}

const Shape& Tensor::shape() const { check_defined(impl_.get(), "Tensor::shape"); return impl_->shape; }
const Shape& Tensor::strides() const { check_defined(impl_.get(), "Tensor::strides"); return impl_->strides; }
std::int64_t Tensor::offset() const { check_defined(impl_.get(), "Tensor::offset"); return impl_->offset; }
std::int64_t Tensor::numel() const { return shape_numel(shape(), "Tensor::numel"); }
DType Tensor::dtype() const { check_defined(impl_.get(), "Tensor::dtype"); return impl_->dtype; }
Device Tensor::device() const { check_defined(impl_.get(), "Tensor::device"); return impl_->storage->device; }
const Storage& Tensor::storage() const { check_defined(impl_.get(), "Tensor::storage"); return impl_->storage; }

static std::int64_t wrap_dim(std::int64_t d, std::int64_t ndim, const char* op, const Shape& shape) {
  std::int64_t w = d < 0 ? d + ndim : d;
  CIUIC_CHECK(w >= 0 && w < ndim, IndexError, op, "dim ", d, " out of range for shape ", shape_str(shape),
              "; expected a dim in [", -ndim, ", ", ndim - 1, "]");
  return w;
}

std::int64_t Tensor::size(std::int64_t d) const { return shape()[wrap_dim(d, dim(), "Tensor::size", shape())]; }
std::int64_t Tensor::stride(std::int64_t d) const { return strides()[wrap_dim(d, dim(), "Tensor::stride", shape())]; }

bool Tensor::is_contiguous() const {
  const Shape& sh = shape();
  const Shape& st = strides();
  std::int64_t expected = 1;
  for (std::size_t i = sh.size(); i-- > 0;) {
    if (sh[i] != 1 && st[i] != expected) return false;
    if (__builtin_mul_overflow(expected, sh[i], &expected)) expected = INT64_MAX;  // only with a 0 dim elsewhere
  }
  return true;
}

void* Tensor::data_ptr() const {
  const Storage& s = storage();
  if (!s->data) return nullptr;
  return static_cast<char*>(s->data) + impl_->offset * static_cast<std::int64_t>(element_size());
}

std::uint64_t Tensor::version() const { check_defined(impl_.get(), "Tensor::version"); return storage()->version; }
void Tensor::bump_version() const { ++storage()->version; }

Tensor Tensor::detach() const {
  check_defined(impl_.get(), "detach");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  impl->shape = impl_->shape;
  impl->strides = impl_->strides;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

Tensor make_tensor(const Shape& shape, DType dtype, Device device) {
  const std::int64_t n = shape_numel(shape, "empty");  // ShapeError: negative size or > 2^63 - 1 elements
  const std::int64_t esize = static_cast<std::int64_t>(dtype_size(dtype));
  std::int64_t nbytes = 0;
  CIUIC_CHECK(!__builtin_mul_overflow(n, esize, &nbytes), OutOfMemory, "empty", dtype_name(dtype),
              shape_str(shape), " on ", device.str(), " needs ", n, " x ", esize,
              " bytes, more than 2^63 - 1; expected a request that fits in memory");
  check_device_usable(device, "empty");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = make_storage(static_cast<std::size_t>(nbytes), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

}  // namespace ciuic
