// CUDA matmul and linear through cuBLASLt. f16/bf16 inputs accumulate in f32
// (CUBLAS_COMPUTE_32F); f32 is strict f32 unless set_allow_tf32(true)
// (CUBLAS_COMPUTE_32F_FAST_TF32); f64 uses CUBLAS_COMPUTE_64F.
#include "matmul_cuda.h"

#include "ciuic/backend_flags.h"
#include "matmul_plan.h"
#include "op_util.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/gemm.h"
#include "ciuic/stream.h"
#endif

namespace ciuic::ops {

#ifdef CIUIC_WITH_CUDA

Tensor bmm_cuda(const Tensor& a, const Tensor& b, const Shape& batch) {
  const std::int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Shape so = batch;
  so.insert(so.end(), {m, n});
  Tensor out = make_tensor(so, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  // Operands in place where their strides allow (matmul_plan.h): transposes as
  // flags, stride-0 broadcast batches, batch folded into M; copies otherwise.
  const matmul_plan::Plan plan =
      matmul_plan::plan_bmm({a.shape(), a.strides()}, {b.shape(), b.strides()}, batch, a.dtype());
  auto materialised = [&](const Tensor& t, std::int64_t r, std::int64_t c) {
    Shape s = batch;
    s.insert(s.end(), {r, c});
    return t.expand(s).contiguous();
  };
  Tensor ac = plan.copy_a ? materialised(a, m, k) : a;
  Tensor bc = plan.copy_b ? materialised(b, k, n) : b;
  DeviceGuard guard(a.device());
  kernels::GemmProblem p = plan.problem;
  p.allow_tf32 = allow_tf32() && a.dtype() == DType::f32;
  kernels::gemm(p, 1.0, ac.data_ptr(), bc.data_ptr(), 0.0, out.data_ptr(), nullptr, nullptr,
                current_stream(a.device()));
  return out;
}

Tensor linear_cuda(const Tensor& x2, const Tensor& weight, const Tensor& bias, bool gelu, Tensor* pre) {
  const std::int64_t rows = x2.size(0), in = x2.size(1), nout = weight.size(0);
  Tensor out = make_tensor({rows, nout}, x2.dtype(), x2.device());
  const bool aux = gelu && pre != nullptr;
  if (aux) *pre = make_tensor({rows, nout}, x2.dtype(), x2.device());
  if (out.numel() == 0) return out;
  // out (rows, nout) = x (rows, in) W^T, bias added in the epilogue; x and W in
  // place when their strides allow (W^T is W's layout with the flag flipped).
  const matmul_plan::MatrixLayout lx = matmul_plan::matrix_layout({x2.shape(), x2.strides()});
  const matmul_plan::MatrixLayout lw = matmul_plan::matrix_layout({weight.shape(), weight.strides()});
  Tensor xc = lx.ok ? x2 : x2.contiguous(), wc = lw.ok ? weight : weight.contiguous();
  DeviceGuard guard(x2.device());
  kernels::GemmProblem p = kernels::gemm_problem(false, true, rows, nout, in, x2.dtype());
  if (lx.ok) {
    p.trans_a = lx.trans;
    p.lda = lx.ld;
  }
  if (lw.ok) {
    p.trans_b = !lw.trans;  // B = W^T: W row-major (nout, in) is W^T column-major
    p.ldb = lw.ld;
  }
  p.allow_tf32 = allow_tf32() && x2.dtype() == DType::f32;
  Tensor bc;
  if (bias.defined()) bc = bias.contiguous();
  using E = kernels::GemmEpilogue;
  if (!gelu) p.epilogue = bc.defined() ? E::bias : E::none;
  else if (!aux) p.epilogue = bc.defined() ? E::gelu_bias : E::gelu;
  else p.epilogue = bc.defined() ? E::gelu_aux_bias : E::gelu_aux;
  if (aux) p.aux_ld = nout;  // pre is a contiguous (rows, nout) matrix; gemm falls back when nout % 8 != 0
  kernels::gemm(p, 1.0, xc.data_ptr(), wc.data_ptr(), 0.0, out.data_ptr(), bc.defined() ? bc.data_ptr() : nullptr,
                aux ? pre->data_ptr() : nullptr, current_stream(x2.device()));
  return out;
}

#else

Tensor bmm_cuda(const Tensor& a, const Tensor&, const Shape&) {
  detail::fail<DeviceError>("matmul", "CUDA tensor ", describe(a), " in a build without CUDA");
}
Tensor linear_cuda(const Tensor& x2, const Tensor&, const Tensor&, bool, Tensor*) {
  detail::fail<DeviceError>("linear", "CUDA tensor ", describe(x2), " in a build without CUDA");
}

#endif

}  // namespace ciuic::ops
