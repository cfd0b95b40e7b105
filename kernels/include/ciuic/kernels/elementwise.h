// Elementwise kernels: unary, binary (broadcasting), backward helpers of the
// activations, and where(cond, a, b).
//
// Shapes and layouts: the output is contiguous with n elements in row-major order;
// each input is described by a StridedLayout whose shape is the output's shape
// (broadcast dims get stride 0) and whose pointer is the address of the view's
// element 0. Contiguous, same-shape inputs that are 16-byte aligned, with a 16-byte
// aligned output, take a vectorised path (float4 / 8 halves / 2 doubles per access,
// scalar tail for n not a multiple of the width); everything else the strided path.
//
// Dtypes: storage f32, f16, bf16, f64; f16/bf16 compute in f32 and round once on
// store. The binary add/sub/mul/maximum/minimum also take i32 and i64, and where()
// takes every dtype (it only selects). The per-element math is in
// ciuic/kernels/elementwise_math.h (the CPU tests check it).
//
// Every launcher checks its arguments (ciuic errors naming the kernel), returns at
// once for n == 0, launches on `stream` (a cudaStream_t; nullptr = default stream)
// and checks the launch (CudaError). out may alias an input only when both are
// contiguous with the same layout (elementwise in place).
#pragma once

#include <cstdint>
#include <limits>

#include "ciuic/dtype.h"
#include "ciuic/strided.h"

namespace ciuic::kernels {

enum class UnaryOp : std::uint8_t {
  neg, exp, log, sqrt, rsqrt, tanh, sigmoid, relu, gelu_tanh, gelu_erf, silu, abs,
  clamp,        // args.lo / args.hi (+-inf: no bound)
  pow_scalar,   // x ^ args.scalar
  add_scalar,   // x + s    (s rounded to the storage dtype first, as a 0-dim tensor of it would be)
  mul_scalar,   // x * s    (same)
  div_scalar,   // x / s    (same)
  rsub_scalar,  // s - x    (same)
  rdiv_scalar,  // s / x    (same)
  // ops.h "unary math and activations" (functors in elementwise_math.h)
  sin, cos, log1p, expm1, erf, log2, log10, reciprocal, square, sign, floor, ceil, round, trunc,
  leaky_relu,   // args.scalar = negative slope
  elu,          // args.scalar = alpha
  softplus,     // args.scalar = beta, args.hi = threshold
  logsigmoid, mish,
};
const char* unary_op_name(UnaryOp op);

struct UnaryArgs {
  double scalar = 0;
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
};

// out[i] = op(x[x_layout(i)]) for i in [0, n). Floating dtypes.
void unary(UnaryOp op, void* out, const void* x, const StridedLayout& x_layout, DType dtype, std::int64_t n,
           const UnaryArgs& args, void* stream);

// remainder (Python's sign rule) and fmod (C's): floating dtypes on CUDA.
enum class BinaryOp : std::uint8_t { add, sub, mul, div, pow, maximum, minimum, remainder, fmod };
const char* binary_op_name(BinaryOp op);

// out[i] = op(a[a_layout(i)], b[b_layout(i)]); a_layout and b_layout have the output's shape.
void binary(BinaryOp op, void* out, const void* a, const StridedLayout& a_layout, const void* b,
            const StridedLayout& b_layout, DType dtype, std::int64_t n, void* stream);

// Backward of the activations: grad_x[i] = f(grad[i], saved[i]) where saved is the
// forward input x, or the forward output y for the *_from_out ops. lo/hi: clamp only.
enum class UnaryBackwardOp : std::uint8_t {
  relu, gelu_tanh, gelu_erf, silu, abs, clamp,
  tanh_from_out,     // g (1 - y^2)
  sigmoid_from_out,  // g y (1 - y)
  leaky_relu,        // lo = negative slope
  elu,               // lo = alpha
  softplus,          // lo = beta, hi = threshold
  logsigmoid,
  hardtanh,          // lo, hi: the bounds (exclusive: 0 at x <= lo or x >= hi)
  mish, erf, log1p,
};
const char* unary_backward_op_name(UnaryBackwardOp op);

void unary_backward(UnaryBackwardOp op, void* grad_x, const void* grad, const StridedLayout& grad_layout,
                    const void* saved, const StridedLayout& saved_layout, DType dtype, std::int64_t n,
                    double lo, double hi, void* stream);

// out[i] = cond[cond_layout(i)] != 0 ? a[a_layout(i)] : b[b_layout(i)]. cond: one byte per
// element (bool or u8); a, b, out: `dtype` (any).
void where(void* out, const void* cond, const StridedLayout& cond_layout, const void* a,
           const StridedLayout& a_layout, const void* b, const StridedLayout& b_layout, DType dtype, std::int64_t n,
           void* stream);

}  // namespace ciuic::kernels
