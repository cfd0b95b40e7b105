// CUDA matmul and linear through cuBLASLt. f16/bf16 inputs accumulate in f32
// (CUBLAS_COMPUTE_32F); f32 is strict f32 (TF32 is an opt-in of the gemm
// launcher, not used here); f64 uses CUBLAS_COMPUTE_64F.
#include "matmul_cuda.h"

#include "op_util.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/gemm.h"
#include "ciuic/stream.h"
#endif

namespace ciuic::ops {

#ifdef CIUIC_WITH_CUDA

Tensor bmm_cuda(const Tensor& a, const Tensor& b, const Shape& batch) {
  const std::int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  // Broadcast batch dims are materialised: one strided-batched gemm then covers all.
  Shape sa = batch, sb = batch, so = batch;
  sa.insert(sa.end(), {m, k});
  sb.insert(sb.end(), {k, n});
  so.insert(so.end(), {m, n});
  Tensor ac = a.expand(sa).contiguous(), bc = b.expand(sb).contiguous();
  Tensor out = make_tensor(so, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(a.device());
  kernels::GemmProblem p = kernels::gemm_problem(false, false, m, n, k, a.dtype());
  p.batch = shape_numel(batch);
  p.stride_a = m * k;
  p.stride_b = k * n;
  p.stride_c = m * n;
  kernels::gemm(p, 1.0, ac.data_ptr(), bc.data_ptr(), 0.0, out.data_ptr(), nullptr, nullptr,
                current_stream(a.device()));
  return out;
}

Tensor linear_cuda(const Tensor& x2, const Tensor& weight, const Tensor& bias) {
  const std::int64_t rows = x2.size(0), in = x2.size(1), nout = weight.size(0);
  Tensor xc = x2.contiguous(), wc = weight.contiguous();
  Tensor out = make_tensor({rows, nout}, x2.dtype(), x2.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(x2.device());
  // out (rows, nout) = x (rows, in) W^T, bias added in the epilogue.
  kernels::GemmProblem p = kernels::gemm_problem(false, true, rows, nout, in, x2.dtype());
  Tensor bc;
  if (bias.defined()) {
    bc = bias.contiguous();
    p.epilogue = kernels::GemmEpilogue::bias;
  }
  kernels::gemm(p, 1.0, xc.data_ptr(), wc.data_ptr(), 0.0, out.data_ptr(), bc.defined() ? bc.data_ptr() : nullptr,
                nullptr, current_stream(x2.device()));
  return out;
}

#else

Tensor bmm_cuda(const Tensor& a, const Tensor&, const Shape&) {
  detail::fail<DeviceError>("matmul", "CUDA tensor ", describe(a), " in a build without CUDA");
}
Tensor linear_cuda(const Tensor& x2, const Tensor&, const Tensor&) {
  detail::fail<DeviceError>("linear", "CUDA tensor ", describe(x2), " in a build without CUDA");
}

#endif

}  // namespace ciuic::ops
