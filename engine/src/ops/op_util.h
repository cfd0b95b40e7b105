// Internal helpers shared by the op implementations: input checks with the
// project's error messages, and the elementwise maps (broadcasting, any
// strides). On the CPU they compute in acc_t<T> (f32 for f16/bf16, else T itself);
// on a CUDA tensor they run the elementwise kernel named by their CudaUnary /
// CudaBinary argument (ciuic/kernels/elementwise.h), which computes the same way.
#pragma once

#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <string>

#include "../cpu_loop.h"
#include "ciuic/autograd.h"
#include "ciuic/kernels/elementwise.h"  // op enums only: plain C++, no CUDA headers
#include "ciuic/ops.h"
#include "ciuic/strided.h"

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
// Shape after reducing `dims` (sorted, unique, as wrap_dims gives) of `shape`:
// reduced dims dropped, or kept as 1 with keepdim.
Shape reduced_shape(const Shape& shape, const std::vector<std::int64_t>& dims, bool keepdim);
// Normalised, sorted, unique dims; empty input means all dims.
std::vector<std::int64_t> wrap_dims(const char* op, const std::vector<std::int64_t>& dims, const Tensor& t);

// `a` as the contiguous (outer, reduce, inner) problem of reducing the sorted,
// unique `dims`, the shape the reduction kernels take: a itself or a contiguous
// copy, with the reduced dims permuted to the end first unless they are adjacent.
// The (outer, inner) result, row-major, is the keepdim-shaped output. No autograd.
struct ReduceView {
  Tensor x;
  std::int64_t outer = 1, reduce = 1, inner = 1;
};
ReduceView reduce_view(const Tensor& a, const std::vector<std::int64_t>& dims);

// CUDA tensors reach here only for ops whose kernels have not been written yet.
void require_cpu(const char* op, std::initializer_list<const Tensor*> ts);

// ---- what an elementwise map runs on CUDA tensors ----
struct CudaUnary {
  kernels::UnaryOp op;
  kernels::UnaryArgs args{};
};

// IEEE comparisons: false whenever an operand is nan.
enum class CompareOp : std::uint8_t { eq, gt, lt, ge, le, ne };

struct CudaBinary {
  enum class Kind : std::uint8_t { binary, activation_backward, compare };
  Kind kind = Kind::binary;
  kernels::BinaryOp binary = kernels::BinaryOp::add;
  kernels::UnaryBackwardOp backward = kernels::UnaryBackwardOp::relu;  // f(grad = a, saved = b)
  double lo = -INFINITY, hi = INFINITY;                                 // clamp backward only
  CompareOp compare = CompareOp::eq;                                   // 1 / 0 (or true / false)
};
inline CudaBinary cuda_op(kernels::BinaryOp op) {
  CudaBinary k;
  k.binary = op;
  return k;
}
inline CudaBinary cuda_op(kernels::UnaryBackwardOp op, double lo = -INFINITY, double hi = INFINITY) {
  CudaBinary k;
  k.kind = CudaBinary::Kind::activation_backward;
  k.backward = op;
  k.lo = lo;
  k.hi = hi;
  return k;
}
inline CudaBinary cuda_op(CompareOp op) {
  CudaBinary k;
  k.kind = CudaBinary::Kind::compare;
  k.compare = op;
  return k;
}

#ifdef CIUIC_WITH_CUDA
// Tensor-level wrappers of the elementwise launchers (op_util.cpp). Inputs may be
// any views; broadcast operands get stride-0 layouts; outputs are contiguous, on
// the inputs' device, launched on its current stream. No autograd.
Tensor cuda_unary(const char* op, const Tensor& a, const CudaUnary& k);
// out_bool: comparisons give bool; otherwise the output has a's dtype (1 / 0 for comparisons).
Tensor cuda_binary(const char* op, const Tensor& a, const Tensor& b, const CudaBinary& k, bool out_bool = false);
Tensor cuda_where(const char* op, const Tensor& cond, const Tensor& a, const Tensor& b);

// t viewed with `shape` (t broadcasts to it) as a kernel layout; NotImplementedError
// beyond kMaxDims dims.
StridedLayout cuda_layout(const char* op, const Tensor& t, const Shape& shape);
// A device scratch buffer of at least `bytes` (undefined for 0); keep it alive until
// the launch that uses it is enqueued (the caching allocator orders reuse per stream).
Tensor cuda_workspace(Device d, std::size_t bytes);
#endif

// out = f(a) elementwise; f takes and returns acc_t<T>. Floating dtypes only.
// `cuda`: the kernel computing f on CUDA tensors.
template <typename F>
Tensor unary_map(const char* op, const Tensor& a, F f, const CudaUnary& cuda) {
  check_defined(op, {{"input", &a}});
  check_floating(op, "input", a);
#ifdef CIUIC_WITH_CUDA
  if (a.device().is_cuda()) return cuda_unary(op, a, cuda);
#else
  (void)cuda;
#endif
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
// `cuda`: the kernel computing f on CUDA tensors.
template <bool FloatOnly = false, typename F>
Tensor binary_map(const char* op, const Tensor& a, const Tensor& b, F f, const CudaBinary& cuda,
                  bool out_bool = false) {
  check_defined(op, {{"a", &a}, {"b", &b}});
  check_same_device(op, {{"a", &a}, {"b", &b}});
  check_same_dtype(op, {{"a", &a}, {"b", &b}});
  if (FloatOnly) check_floating(op, "a", a);
#ifdef CIUIC_WITH_CUDA
  if (a.device().is_cuda()) return cuda_binary(op, a, b, cuda, out_bool);
#else
  (void)cuda;
#endif
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

// ---- in-place ops (inplace.cpp) ----
// AutogradError for a leaf that requires grad under grad mode.
void check_inplace_target(const char* op, const Tensor& self);
// Writes result (self's shape, a dtype category <= self's) into self, bumping its
// version; when result carries a gradient, self becomes result in the graph.
Tensor& inplace_write(const char* op, Tensor& self, const Tensor& result);

// ---- type promotion (PyTorch's rules; ops.h states them) ----
// Categories: bool < integral (u8, i32, i64) < floating.
int dtype_category(DType t);
// The dtype both of x and y convert to: the higher category's, or within one
// category the wider integer. nullopt for two different floating dtypes (ciuic
// keeps that an error outside autocast; the caller's dtype check reports it).
std::optional<DType> promote_types(DType x, DType y);
// PyTorch's result type of a binary op: dimensioned tensors decide, except that a
// 0-dim tensor of a higher category gives its own dtype.
std::optional<DType> result_type(const Tensor& a, const Tensor& b);
// a and b converted to their result type (floating_only: an integral or bool result
// becomes f32, for true division) when that changes either; nullopt otherwise.
std::optional<std::pair<Tensor, Tensor>> promote(const Tensor& a, const Tensor& b, bool floating_only = false);
// s as a 0-dim tensor on a's device, of a's dtype, or of the default dtype of s's
// kind (f32 for a floating, i64 for an integral scalar) when that kind is higher than a's.
Tensor wrap_scalar(const Tensor& a, const Scalar& s);

}  // namespace ciuic::ops
