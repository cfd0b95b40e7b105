// scaled_dot_product_attention on CUDA: the flash kernels (kernels/flash_attn.h).
// Nothing of size Tq x Tk is allocated: the forward writes out (B..., Tq, Dv) and
// lse (B, Tq) f32; the backward recomputes the probabilities from lse and needs a
// (B, Tq) f32 workspace for delta = rowsum(grad_out * out).
//
// q, k and v are read in place when their batch dims collapse to two strided dims
// (b0, b1) and the last dim has stride 1, as for the GPT block's
// qkv.split(...).view(B, T, H, D).transpose(1, 2); other layouts are copied
// contiguous first. The selective checkpoint policy keeps (out, lse).
#include "attention_cuda.h"

#ifdef CIUIC_WITH_CUDA

#include <vector>

#include "ciuic/autograd.h"
#include "ciuic/checkpoint.h"
#include "ciuic/device.h"
#include "ciuic/kernels/flash_attn.h"
#include "ciuic/stream.h"
#include "op_util.h"

namespace ciuic::attn {

namespace {

// Stride of dims [a, b) of t merged into one dim, or -1 when they do not merge
// (size-1 dims are ignored; an all-size-1 group has stride 0).
std::int64_t merged_stride(const Tensor& t, std::int64_t a, std::int64_t b) {
  std::int64_t stride = 0, span = 0;  // stride of the innermost non-1 dim seen, and its extent so far
  bool any = false;
  for (std::int64_t d = b - 1; d >= a; --d) {
    if (t.size(d) == 1) continue;
    if (!any) {
      stride = t.stride(d);
      span = t.stride(d) * t.size(d);
      any = true;
    } else {
      if (t.stride(d) != span) return -1;
      span = t.stride(d) * t.size(d);
    }
  }
  return stride;
}

// t as the kernel's (B0, B1, T, C) operand with batch dims [0, split) -> b0 and
// [split, nb) -> b1; `keep` holds a contiguous copy when t's layout does not fit.
kernels::AttnOperand operand(const Tensor& t, std::int64_t split, Tensor& keep) {
  const std::int64_t nb = t.dim() - 2;
  auto fits = [&](const Tensor& x) {
    return (x.size(-1) <= 1 || x.stride(-1) == 1) && merged_stride(x, 0, split) >= 0 &&
           merged_stride(x, split, nb) >= 0;
  };
  keep = fits(t) ? t.detach() : t.detach().contiguous();
  kernels::AttnOperand o;
  o.ptr = keep.data_ptr();
  o.stride_b0 = merged_stride(keep, 0, split);
  o.stride_b1 = merged_stride(keep, split, nb);
  o.stride_t = keep.stride(-2);
  return o;
}

struct Operands {
  Tensor kq, kk, kv;  // the tensors the pointers point into
  kernels::AttnOperand q, k, v;
  kernels::FlashAttnParams p;
};

Operands operands(const Tensor& q, const Tensor& k, const Tensor& v, const AttnDims& d, double scale,
                  const AttnDropout& drop) {
  Operands o;
  const std::int64_t nb = q.dim() - 2;
  const std::int64_t split = nb > 0 ? nb - 1 : 0;  // (leading batch dims, heads)
  o.q = operand(q, split, o.kq);
  o.k = operand(k, split, o.kk);
  o.v = operand(v, split, o.kv);
  std::int64_t B0 = 1, B1 = 1;
  for (std::int64_t i = 0; i < nb; ++i) (i < split ? B0 : B1) *= q.size(i);
  o.p.dtype = q.dtype();
  o.p.B0 = B0;
  o.p.B1 = B1;
  o.p.Tq = d.Tq;
  o.p.Tk = d.Tk;
  o.p.D = d.D;
  o.p.Dv = d.Dv;
  o.p.causal = d.causal;
  o.p.scale = scale;
  o.p.dropout_p = drop.p;
  o.p.seed = drop.seed;
  o.p.first = drop.first;
  return o;
}

}  // namespace

Tensor attention_cuda(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const AttnDims& d,
                      double scale, const AttnDropout& drop) {
  CIUIC_CHECK(q.dtype() == DType::f32 || q.dtype() == DType::f16 || q.dtype() == DType::bf16, NotImplementedError,
              op, "no CUDA kernel for ", ops::describe_all({{"q", &q}, {"k", &k}, {"v", &v}}),
              "; the flash-attention kernels take f32, f16 or bf16 (f64 runs on the CPU)");
  CIUIC_CHECK(d.D <= kernels::kFlashMaxHeadDim && d.Dv <= kernels::kFlashMaxHeadDim, NotImplementedError, op,
              "no CUDA kernel for head dims D = ", d.D, ", Dv = ", d.Dv, " (",
              ops::describe_all({{"q", &q}, {"k", &k}, {"v", &v}}), "); the flash-attention kernels take D, Dv <= ",
              kernels::kFlashMaxHeadDim, " (Tensor Cores for f16/bf16 with D == Dv in {64, 128})");
  DeviceGuard guard(q.device());
  Shape out_shape = q.shape();
  out_shape.back() = d.Dv;
  Tensor out, lse;
  if (auto kept = selective::replay("attention")) {
    out = (*kept)[0];
    lse = (*kept)[1];
  } else {
    Operands o = operands(q, k, v, d, scale, drop);
    out = make_tensor(out_shape, q.dtype(), q.device());
    lse = make_tensor({d.B, d.Tq}, DType::f32, q.device());
    kernels::flash_attn_forward(o.p, o.q, o.k, o.v, out.data_ptr(), static_cast<float*>(lse.data_ptr()),
                                current_stream(q.device()));
    selective::keep("attention", {out, lse});
  }
  if (!needs_grad({&q, &k, &v})) return out;

  SavedTensor sq(q), sk(k), sv(v), so(out), sl(lse);
  const bool want_q = q.requires_grad(), want_k = k.requires_grad(), want_v = v.requires_grad();
  record(op, {q, k, v}, {out}, [=](const GradList& g) {
    Tensor tq = sq.unpack(op), tk = sk.unpack(op), tv = sv.unpack(op), to = so.unpack(op), tl = sl.unpack(op);
    DeviceGuard bg(tq.device());
    Operands o = operands(tq, tk, tv, d, scale, drop);
    Tensor go = g[0].detach().contiguous();
    Tensor gq = make_tensor(tq.shape(), tq.dtype(), tq.device());
    Tensor gk = make_tensor(tk.shape(), tk.dtype(), tk.device());
    Tensor gv = make_tensor(tv.shape(), tv.dtype(), tv.device());
    Tensor delta = make_tensor({d.B, d.Tq}, DType::f32, tq.device());
    kernels::flash_attn_backward(o.p, o.q, o.k, o.v, to.data_ptr(), go.data_ptr(),
                                 static_cast<const float*>(tl.data_ptr()), static_cast<float*>(delta.data_ptr()),
                                 gq.data_ptr(), gk.data_ptr(), gv.data_ptr(), current_stream(tq.device()));
    GradList res(3);
    if (want_q) res[0] = gq;
    if (want_k) res[1] = gk;
    if (want_v) res[2] = gv;
    return res;
  });
  return out;
}

}  // namespace ciuic::attn

#endif  // CIUIC_WITH_CUDA
