#include "op_util.h"

#include <algorithm>

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

void require_cpu(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    CIUIC_CHECK(!t->defined() || t->device().is_cpu(), NotImplementedError, op, "no CUDA kernel yet for ", describe(*t),
                "; expected CPU tensors (move with .to(Device::cpu()))");
}

Tensor scalar_like(const Tensor& t, double v) { return full({}, v, TensorOptions(t.dtype()).device(t.device())); }

}  // namespace ciuic::ops
