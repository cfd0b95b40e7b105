// Elementwise kernels (see ciuic/kernels/elementwise.h).
//
// Two kernels per (dtype, op, arity):
//   ew_vec_kernel:     all operands contiguous, same shape, 16-byte aligned. Thread
//                      handles whole 16-byte packs (grid-stride), then the first
//                      threads of block 0 handle the tail of n % width elements.
//   ew_strided_kernel: any layouts; per operand either i (contiguous) or
//                      strided_offset(layout, i) (ciuic/strided.h, tested on the CPU).
// The op is a functor from ciuic/kernels/elementwise_math.h, applied in acc_t<T>.
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/elementwise.h"
#include "ciuic/kernels/elementwise_math.h"
#include "dtype_dispatch.cuh"
#include "kernel_common.cuh"

namespace ciuic::kernels {

namespace {

constexpr int kBlock = 256;

// K input operands of one storage type.
template <typename T, int K>
struct Inputs {
  const T* p[K];
  StridedLayout l[K];
  bool contig[K];
};

template <int K, typename F, typename A>
__device__ __forceinline__ A apply(const F& f, const A (&v)[K]) {
  if constexpr (K == 1) return f(v[0]);
  else return f(v[0], v[1]);
}

template <typename T, int K, typename F>
__global__ void ew_strided_kernel(T* out, Inputs<T, K> in, std::int64_t n, F f) {
  using A = acc_t<T>;
  for (std::int64_t i = kc::global_thread(); i < n; i += kc::grid_threads()) {
    A v[K];
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] = kc::to_acc(in.p[k][in.contig[k] ? i : strided_offset(in.l[k], i)]);
    out[i] = kc::from_acc<T>(apply<K>(f, v));
  }
}

// out and every in.p[k] 16-byte aligned and contiguous with n elements.
template <typename T, int K, typename F>
__global__ void ew_vec_kernel(T* out, Inputs<T, K> in, std::int64_t n, F f) {
  using A = acc_t<T>;
  using P = kc::Pack<T>;
  constexpr int W = P::kWidth;
  const plan::VecSplit sp = plan::vec_split(n, W);
  for (std::int64_t iv = kc::global_thread(); iv < sp.vectors; iv += kc::grid_threads()) {
    P x[K];
#pragma unroll
    for (int k = 0; k < K; ++k) x[k] = reinterpret_cast<const P*>(in.p[k])[iv];
    P o;
#pragma unroll
    for (int w = 0; w < W; ++w) {
      A v[K];
#pragma unroll
      for (int k = 0; k < K; ++k) v[k] = kc::to_acc(x[k].v[w]);
      o.v[w] = kc::from_acc<T>(apply<K>(f, v));
    }
    reinterpret_cast<P*>(out)[iv] = o;
  }
  const std::int64_t t = sp.tail_begin + kc::global_thread();  // fewer than W tail elements
  if (t < n) {
    A v[K];
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] = kc::to_acc(in.p[k][t]);
    out[t] = kc::from_acc<T>(apply<K>(f, v));
  }
}

template <typename T, int K, typename F>
void launch_ew(T* out, const void* const (&ptrs)[K], const StridedLayout* const (&layouts)[K], std::int64_t n, F f,
               cudaStream_t s) {
  Inputs<T, K> in;
  bool vec = kc::aligned16(out);
  for (int k = 0; k < K; ++k) {
    in.p[k] = static_cast<const T*>(ptrs[k]);
    in.l[k] = *layouts[k];
    in.contig[k] = layout_is_contiguous(*layouts[k]);
    vec = vec && in.contig[k] && kc::aligned16(ptrs[k]);
  }
  if (vec) {
    const std::int64_t packs = n / kc::Pack<T>::kWidth;
    ew_vec_kernel<T, K, F><<<plan::grid_blocks(packs, kBlock), kBlock, 0, s>>>(out, in, n, f);
  } else {
    ew_strided_kernel<T, K, F><<<plan::grid_blocks(n, kBlock), kBlock, 0, s>>>(out, in, n, f);
  }
  CIUIC_CUDA_CHECK_LAUNCH();
}

template <typename T>
void unary_t(UnaryOp op, void* out_v, const void* x, const StridedLayout& xl, std::int64_t n, const UnaryArgs& args,
             cudaStream_t s) {
  using A = acc_t<T>;
  T* out = static_cast<T*>(out_v);
  const void* const ptrs[1] = {x};
  const StridedLayout* const lays[1] = {&xl};
  auto run = [&](auto f) { launch_ew<T, 1>(out, ptrs, lays, n, f, s); };
  // The arithmetic-op scalar as a 0-dim tensor of dtype T would hold it (rounded to T).
  const A sc = static_cast<A>(convert<T>(args.scalar));
  switch (op) {
    case UnaryOp::neg: run(math::Neg<A>{}); return;
    case UnaryOp::exp: run(math::Exp<A>{}); return;
    case UnaryOp::log: run(math::Log<A>{}); return;
    case UnaryOp::sqrt: run(math::Sqrt<A>{}); return;
    case UnaryOp::rsqrt: run(math::Rsqrt<A>{}); return;
    case UnaryOp::tanh: run(math::Tanh<A>{}); return;
    case UnaryOp::sigmoid: run(math::Sigmoid<A>{}); return;
    case UnaryOp::relu: run(math::Relu<A>{}); return;
    case UnaryOp::gelu_tanh: run(math::GeluTanh<A>{}); return;
    case UnaryOp::gelu_erf: run(math::GeluErf<A>{}); return;
    case UnaryOp::silu: run(math::Silu<A>{}); return;
    case UnaryOp::abs: run(math::Abs<A>{}); return;
    case UnaryOp::clamp: run(math::Clamp<A>{static_cast<A>(args.lo), static_cast<A>(args.hi)}); return;
    case UnaryOp::pow_scalar: run(math::PowScalar<A>{static_cast<A>(args.scalar)}); return;
    case UnaryOp::add_scalar: run(math::AddScalar<A>{sc}); return;
    case UnaryOp::mul_scalar: run(math::MulScalar<A>{sc}); return;
    case UnaryOp::div_scalar: run(math::DivScalar<A>{sc}); return;
    case UnaryOp::rsub_scalar: run(math::RSubScalar<A>{sc}); return;
    case UnaryOp::rdiv_scalar: run(math::RDivScalar<A>{sc}); return;
    case UnaryOp::sin: run(math::Sin<A>{}); return;
    case UnaryOp::cos: run(math::Cos<A>{}); return;
    case UnaryOp::log1p: run(math::Log1p<A>{}); return;
    case UnaryOp::expm1: run(math::Expm1<A>{}); return;
    case UnaryOp::erf: run(math::Erf<A>{}); return;
    case UnaryOp::log2: run(math::Log2<A>{}); return;
    case UnaryOp::log10: run(math::Log10<A>{}); return;
    case UnaryOp::reciprocal: run(math::Reciprocal<A>{}); return;
    case UnaryOp::square: run(math::Square<A>{}); return;
    case UnaryOp::sign: run(math::Sign<A>{}); return;
    case UnaryOp::floor: run(math::Floor<A>{}); return;
    case UnaryOp::ceil: run(math::Ceil<A>{}); return;
    case UnaryOp::round: run(math::Round<A>{}); return;
    case UnaryOp::trunc: run(math::Trunc<A>{}); return;
    case UnaryOp::leaky_relu: run(math::LeakyRelu<A>{static_cast<A>(args.scalar)}); return;
    case UnaryOp::elu: run(math::Elu<A>{static_cast<A>(args.scalar)}); return;
    case UnaryOp::softplus: run(math::Softplus<A>{static_cast<A>(args.scalar), static_cast<A>(args.hi)}); return;
    case UnaryOp::logsigmoid: run(math::LogSigmoid<A>{}); return;
    case UnaryOp::mish: run(math::Mish<A>{}); return;
  }
  ::ciuic::detail::fail<ValueError>("unary", "unknown op ", static_cast<int>(op));
}

template <typename T>
void binary_t(BinaryOp op, void* out_v, const void* a, const StridedLayout& al, const void* b,
              const StridedLayout& bl, std::int64_t n, cudaStream_t s) {
  using A = acc_t<T>;
  T* out = static_cast<T*>(out_v);
  const void* const ptrs[2] = {a, b};
  const StridedLayout* const lays[2] = {&al, &bl};
  auto run = [&](auto f) { launch_ew<T, 2>(out, ptrs, lays, n, f, s); };
  switch (op) {
    case BinaryOp::add: run(math::Add<A>{}); return;
    case BinaryOp::sub: run(math::Sub<A>{}); return;
    case BinaryOp::mul: run(math::Mul<A>{}); return;
    case BinaryOp::maximum: run(math::Maximum<A>{}); return;
    case BinaryOp::minimum: run(math::Minimum<A>{}); return;
    case BinaryOp::div:
    case BinaryOp::pow:
    case BinaryOp::remainder:
    case BinaryOp::fmod:
      if constexpr (!std::is_integral_v<T>) {
        if (op == BinaryOp::div) run(math::Div<A>{});
        else if (op == BinaryOp::pow) run(math::Pow<A>{});
        else if (op == BinaryOp::remainder) run(math::Remainder<A>{});
        else run(math::Fmod<A>{});
        return;
      }
      break;
  }
  ::ciuic::detail::fail<DTypeError>("binary", binary_op_name(op), " got dtype ", dtype_name(dtype_of<T>::value),
                                    "; expected a floating dtype (f32, f64, f16, bf16)");
}

template <typename T>
void unary_backward_t(UnaryBackwardOp op, void* gx, const void* g, const StridedLayout& gl, const void* x,
                      const StridedLayout& xl, std::int64_t n, double lo, double hi, cudaStream_t s) {
  using A = acc_t<T>;
  T* out = static_cast<T*>(gx);
  const void* const ptrs[2] = {g, x};
  const StridedLayout* const lays[2] = {&gl, &xl};
  auto run = [&](auto f) { launch_ew<T, 2>(out, ptrs, lays, n, f, s); };
  switch (op) {
    case UnaryBackwardOp::relu: run(math::ReluBackward<A>{}); return;
    case UnaryBackwardOp::gelu_tanh: run(math::GeluTanhBackward<A>{}); return;
    case UnaryBackwardOp::gelu_erf: run(math::GeluErfBackward<A>{}); return;
    case UnaryBackwardOp::silu: run(math::SiluBackward<A>{}); return;
    case UnaryBackwardOp::abs: run(math::AbsBackward<A>{}); return;
    case UnaryBackwardOp::clamp: run(math::ClampBackward<A>{static_cast<A>(lo), static_cast<A>(hi)}); return;
    case UnaryBackwardOp::tanh_from_out: run(math::TanhBackwardFromOut<A>{}); return;
    case UnaryBackwardOp::sigmoid_from_out: run(math::SigmoidBackwardFromOut<A>{}); return;
    case UnaryBackwardOp::leaky_relu: run(math::LeakyReluBackward<A>{static_cast<A>(lo)}); return;
    case UnaryBackwardOp::elu: run(math::EluBackward<A>{static_cast<A>(lo)}); return;
    case UnaryBackwardOp::softplus: run(math::SoftplusBackward<A>{static_cast<A>(lo), static_cast<A>(hi)}); return;
    case UnaryBackwardOp::logsigmoid: run(math::LogSigmoidBackward<A>{}); return;
    case UnaryBackwardOp::hardtanh: run(math::HardtanhBackward<A>{static_cast<A>(lo), static_cast<A>(hi)}); return;
    case UnaryBackwardOp::mish: run(math::MishBackward<A>{}); return;
    case UnaryBackwardOp::erf: run(math::ErfBackward<A>{}); return;
    case UnaryBackwardOp::log1p: run(math::Log1pBackward<A>{}); return;
  }
  ::ciuic::detail::fail<ValueError>("unary_backward", "unknown op ", static_cast<int>(op));
}

template <typename T>
__global__ void where_kernel(T* out, const std::uint8_t* c, StridedLayout cl, bool cc, const T* a,
                             StridedLayout al, bool ac, const T* b, StridedLayout bl, bool bc, std::int64_t n) {
  for (std::int64_t i = kc::global_thread(); i < n; i += kc::grid_threads()) {
    const std::uint8_t ci = c[cc ? i : strided_offset(cl, i)];
    // Only the selected operand is read (the other may be any value, even a trapping pattern).
    out[i] = ci != 0 ? a[ac ? i : strided_offset(al, i)] : b[bc ? i : strided_offset(bl, i)];
  }
}

}  // namespace

const char* unary_op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::neg: return "neg";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::rsqrt: return "rsqrt";
    case UnaryOp::tanh: return "tanh";
    case UnaryOp::sigmoid: return "sigmoid";
    case UnaryOp::relu: return "relu";
    case UnaryOp::gelu_tanh: return "gelu_tanh";
    case UnaryOp::gelu_erf: return "gelu_erf";
    case UnaryOp::silu: return "silu";
    case UnaryOp::abs: return "abs";
    case UnaryOp::clamp: return "clamp";
    case UnaryOp::pow_scalar: return "pow_scalar";
    case UnaryOp::add_scalar: return "add_scalar";
    case UnaryOp::mul_scalar: return "mul_scalar";
    case UnaryOp::div_scalar: return "div_scalar";
    case UnaryOp::rsub_scalar: return "rsub_scalar";
    case UnaryOp::rdiv_scalar: return "rdiv_scalar";
    case UnaryOp::sin: return "sin";
    case UnaryOp::cos: return "cos";
    case UnaryOp::log1p: return "log1p";
    case UnaryOp::expm1: return "expm1";
    case UnaryOp::erf: return "erf";
    case UnaryOp::log2: return "log2";
    case UnaryOp::log10: return "log10";
    case UnaryOp::reciprocal: return "reciprocal";
    case UnaryOp::square: return "square";
    case UnaryOp::sign: return "sign";
    case UnaryOp::floor: return "floor";
    case UnaryOp::ceil: return "ceil";
    case UnaryOp::round: return "round";
    case UnaryOp::trunc: return "trunc";
    case UnaryOp::leaky_relu: return "leaky_relu";
    case UnaryOp::elu: return "elu";
    case UnaryOp::softplus: return "softplus";
    case UnaryOp::logsigmoid: return "logsigmoid";
    case UnaryOp::mish: return "mish";
  }
  return "?";
}

const char* binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
    case BinaryOp::pow: return "pow";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
    case BinaryOp::remainder: return "remainder";
    case BinaryOp::fmod: return "fmod";
  }
  return "?";
}

const char* unary_backward_op_name(UnaryBackwardOp op) {
  switch (op) {
    case UnaryBackwardOp::relu: return "relu_backward";
    case UnaryBackwardOp::gelu_tanh: return "gelu_tanh_backward";
    case UnaryBackwardOp::gelu_erf: return "gelu_erf_backward";
    case UnaryBackwardOp::silu: return "silu_backward";
    case UnaryBackwardOp::abs: return "abs_backward";
    case UnaryBackwardOp::clamp: return "clamp_backward";
    case UnaryBackwardOp::tanh_from_out: return "tanh_backward";
    case UnaryBackwardOp::sigmoid_from_out: return "sigmoid_backward";
    case UnaryBackwardOp::leaky_relu: return "leaky_relu_backward";
    case UnaryBackwardOp::elu: return "elu_backward";
    case UnaryBackwardOp::softplus: return "softplus_backward";
    case UnaryBackwardOp::logsigmoid: return "logsigmoid_backward";
    case UnaryBackwardOp::hardtanh: return "hardtanh_backward";
    case UnaryBackwardOp::mish: return "mish_backward";
    case UnaryBackwardOp::erf: return "erf_backward";
    case UnaryBackwardOp::log1p: return "log1p_backward";
  }
  return "?";
}

void unary(UnaryOp op, void* out, const void* x, const StridedLayout& x_layout, DType dtype, std::int64_t n,
           const UnaryArgs& args, void* stream) {
  const char* name = unary_op_name(op);
  kc::check_size(name, "n", n);
  kc::check_floating_dtype(name, dtype);
  kc::check_layout(name, "x", x_layout, n);
  CIUIC_CHECK(op != UnaryOp::clamp || !(args.lo > args.hi), ValueError, name, "lo ", args.lo, " > hi ", args.hi,
              "; expected lo <= hi");
  if (n == 0) return;
  kc::check_ptr(name, "out", out);
  kc::check_ptr(name, "x", x);
  kc::dispatch_float(dtype, name, [&](auto tag) {
    unary_t<decltype(tag)>(op, out, x, x_layout, n, args, kc::as_stream(stream));
  });
}

void binary(BinaryOp op, void* out, const void* a, const StridedLayout& a_layout, const void* b,
            const StridedLayout& b_layout, DType dtype, std::int64_t n, void* stream) {
  const char* name = binary_op_name(op);
  kc::check_size(name, "n", n);
  const bool int_ok = op != BinaryOp::div && op != BinaryOp::pow && op != BinaryOp::remainder && op != BinaryOp::fmod;
  CIUIC_CHECK(is_floating(dtype) || (int_ok && (dtype == DType::i32 || dtype == DType::i64)), DTypeError, name,
              "got dtype ", dtype_name(dtype), "; expected f32, f64, f16, bf16",
              int_ok ? ", i32 or i64" : " (no integer ", name, ")");
  kc::check_layout(name, "a", a_layout, n);
  kc::check_layout(name, "b", b_layout, n);
  kc::check_same_shape(name, "a", a_layout, "b", b_layout);
  if (n == 0) return;
  kc::check_ptr(name, "out", out);
  kc::check_ptr(name, "a", a);
  kc::check_ptr(name, "b", b);
  const cudaStream_t s = kc::as_stream(stream);
  switch (dtype) {
    case DType::i32: binary_t<std::int32_t>(op, out, a, a_layout, b, b_layout, n, s); return;
    case DType::i64: binary_t<std::int64_t>(op, out, a, a_layout, b, b_layout, n, s); return;
    default:
      kc::dispatch_float(dtype, name, [&](auto tag) {
        binary_t<decltype(tag)>(op, out, a, a_layout, b, b_layout, n, s);
      });
  }
}

void unary_backward(UnaryBackwardOp op, void* grad_x, const void* grad, const StridedLayout& grad_layout,
                    const void* saved, const StridedLayout& saved_layout, DType dtype, std::int64_t n, double lo,
                    double hi, void* stream) {
  const char* name = unary_backward_op_name(op);
  kc::check_size(name, "n", n);
  kc::check_floating_dtype(name, dtype);
  kc::check_layout(name, "grad", grad_layout, n);
  kc::check_layout(name, "saved", saved_layout, n);
  kc::check_same_shape(name, "grad", grad_layout, "saved", saved_layout);
  if (n == 0) return;
  kc::check_ptr(name, "grad_x", grad_x);
  kc::check_ptr(name, "grad", grad);
  kc::check_ptr(name, "saved", saved);
  kc::dispatch_float(dtype, name, [&](auto tag) {
    unary_backward_t<decltype(tag)>(op, grad_x, grad, grad_layout, saved, saved_layout, n, lo, hi,
                                    kc::as_stream(stream));
  });
}

void where(void* out, const void* cond, const StridedLayout& cond_layout, const void* a,
           const StridedLayout& a_layout, const void* b, const StridedLayout& b_layout, DType dtype, std::int64_t n,
           void* stream) {
  const char* name = "where";
  kc::check_size(name, "n", n);
  kc::check_layout(name, "cond", cond_layout, n);
  kc::check_layout(name, "a", a_layout, n);
  kc::check_layout(name, "b", b_layout, n);
  kc::check_same_shape(name, "cond", cond_layout, "a", a_layout);
  kc::check_same_shape(name, "a", a_layout, "b", b_layout);
  if (n == 0) return;
  kc::check_ptr(name, "out", out);
  kc::check_ptr(name, "cond", cond);
  kc::check_ptr(name, "a", a);
  kc::check_ptr(name, "b", b);
  const bool cc = layout_is_contiguous(cond_layout), ac = layout_is_contiguous(a_layout),
             bc = layout_is_contiguous(b_layout);
  detail::dispatch(dtype, name, [&](auto tag) {
    using T = decltype(tag);
    where_kernel<T><<<plan::grid_blocks(n, kBlock), kBlock, 0, kc::as_stream(stream)>>>(
        static_cast<T*>(out), static_cast<const std::uint8_t*>(cond), cond_layout, cc, static_cast<const T*>(a),
        a_layout, ac, static_cast<const T*>(b), b_layout, bc, n);
    CIUIC_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ciuic::kernels
