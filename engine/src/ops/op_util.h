// Internal helpers shared by the op implementations: input checks with the
// project's error messages, and the CPU elementwise maps (broadcasting, any
// strides, computing in acc_t<T>: f32 for f16/bf16, else T itself).
#pragma once

#include <initializer_list>
#include <string>

#include "../cpu_loop.h"
#include "ciuic/autograd.h"
#include "ciuic/ops.h"

namespace ciuic::ops {

// "a: f32[2, 3] on cpu, b: f64[3] on cpu"
std::string describe_all(std::initializer_list<std::pair<const char*, const Tensor*>> ts);

void check_defined(const char* op, std::initializer_list<std::pair<const char*, const Tensor*>> ts);
// All defined tensors on one device and of one dtype.
void check_same_device(const char* op, std::initializer_list<std::pair<const char*, const Tensor*>> ts);
void check_same_dtype(const char* op, std::initializer_list<std::pair<const char*, const Tensor*>> ts);
void check_floating(const char* op, const char* name, const Tensor& t);
void check_index_dtype(const char* op, const char* name, const Tensor& t);  // i32 or i64
void check_dim_count(const char* op, const char* name, const Tensor& t, std::int64_t ndim);
std::int64_t wrap_dim(const char* op, std::int64_t dim, const Tensor& t);
// Normalised, sorted, unique dims; empty input means all dims.
std::vector<std::int64_t> wrap_dims(const char* op, const std::vector<std::int64_t>& dims, const Tensor& t);

// CUDA tensors reach here only for ops whose kernels have not been written yet.
void require_cpu(const char* op, std::initializer_list<const Tensor*> ts);

// out = f(a) elementwise; f takes and returns acc_t<T>. Floating dtypes only.
template <typename F>
Tensor unary_map(const char* op, const Tensor& a, F f) {
  check_defined(op, {{"input", &a}});
  check_floating(op, "input", a);
  require_cpu(op, {&a});
  Tensor out = make_tensor(a.shape(), a.dtype(), a.device());
  dispatch_floating(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* pa = detail::typed_ptr<T>(a);
    T* po = detail::typed_ptr<T>(out);
    detail::cpu_for_each<2>(a.shape(), {out.strides(), a.strides()}, [&](const auto& o) {
      po[o[0]] = convert<T>(static_cast<A>(f(static_cast<A>(pa[o[1]]))));
    });
  });
  return out;
}

// out = f(a, b) with broadcasting; same dtype and device. The output has the
// inputs' dtype, or bool when out_bool (comparisons). FloatOnly instantiates the
// floating dtypes only (for f that makes no sense on integers; smaller binaries).
template <bool FloatOnly = false, typename F>
Tensor binary_map(const char* op, const Tensor& a, const Tensor& b, F f, bool out_bool = false) {
  check_defined(op, {{"a", &a}, {"b", &b}});
  check_same_device(op, {{"a", &a}, {"b", &b}});
  check_same_dtype(op, {{"a", &a}, {"b", &b}});
  if (FloatOnly) check_floating(op, "a", a);
  require_cpu(op, {&a, &b});
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = make_tensor(shape, out_bool ? DType::boolean : a.dtype(), a.device());
  auto body = [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* pa = detail::typed_ptr<T>(a);
    const T* pb = detail::typed_ptr<T>(b);
    std::array<Shape, 3> st{out.strides(), detail::broadcast_strides(a, shape), detail::broadcast_strides(b, shape)};
    if (out_bool) {
      bool* po = static_cast<bool*>(out.data_ptr());
      detail::cpu_for_each<3>(shape, st, [&](const auto& o) { po[o[0]] = f(static_cast<A>(pa[o[1]]), static_cast<A>(pb[o[2]])); });
    } else {
      T* po = detail::typed_ptr<T>(out);
      detail::cpu_for_each<3>(shape, st, [&](const auto& o) {
        po[o[0]] = convert<T>(static_cast<A>(f(static_cast<A>(pa[o[1]]), static_cast<A>(pb[o[2]]))));
      });
    }
  };
  if constexpr (FloatOnly) dispatch_floating(a.dtype(), op, body);
  else dispatch_dtype(a.dtype(), op, body);
  return out;
}

// A scalar as a 0-dim tensor of t's dtype and device (for broadcasting binary ops).
Tensor scalar_like(const Tensor& t, double v);

}  // namespace ciuic::ops
