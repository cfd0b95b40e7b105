// Flash attention (forward and backward) for scaled_dot_product_attention on CUDA.
// The (Tq, Tk) probability matrix is never stored: the forward keeps an online
// softmax over key tiles and writes the output and the per-row log-sum-exp; the
// backward recomputes the probabilities tile by tile from the log-sum-exp.
//
// Shapes (bh = b0 * B1 + b1 runs over the flattened batch dims, B = B0 * B1):
//   q (B0, B1, Tq, D), k (B0, B1, Tk, D), v (B0, B1, Tk, Dv): read through strides
//     (the last dim must have stride 1), so the GPT block's qkv split and head
//     transpose are read in place;
//   out (B, Tq, Dv) and grad_out (B, Tq, Dv): contiguous, the dtype of q;
//   lse (B, Tq) f32, natural log units (-inf for a row with no visible key);
//   grad_q (B, Tq, D), grad_k (B, Tk, D), grad_v (B, Tk, Dv): contiguous, written whole.
// S = scale * q k^T; causal keeps keys j <= i (top-left aligned, also for Tq != Tk);
// P = softmax_rows(S); optional dropout: Pd = P * keep / (1 - p) with keep as in
// ciuic/kernels/flash_attn_math.h (dropout_keep_at on counter first + (bh*Tq+i)*Tk+j);
// out = Pd v. All sums and softmax statistics in f32.
//
// Kernels: f16 / bf16 with D == Dv in {64, 128}, 16-byte aligned operands and
// strides a multiple of 8 run on Tensor Cores (wmma 16x16x16, f32 accumulation);
// everything else (f32, other head dims up to 256, unaligned views) runs a
// SIMT kernel with the same tile schedule shape. f64 is not supported.
// The backward is deterministic: dK/dV come from a kernel per key tile and dQ
// from a kernel per query tile (no atomics), after a small kernel that computes
// delta = rowsum(grad_out * out).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ciuic/dtype.h"

namespace ciuic::kernels {

// One operand: element (b0, b1, t, c) at ptr + b0*stride_b0 + b1*stride_b1 + t*stride_t + c
// (strides in elements).
struct AttnOperand {
  const void* ptr = nullptr;
  std::int64_t stride_b0 = 0, stride_b1 = 0, stride_t = 0;
};

struct FlashAttnParams {
  DType dtype = DType::f32;  // f32, f16 or bf16
  std::int64_t B0 = 1, B1 = 1, Tq = 0, Tk = 0, D = 0, Dv = 0;
  bool causal = false;
  double scale = 1.0;
  double dropout_p = 0.0;    // in [0, 1)
  std::uint64_t seed = 0, first = 0;  // dropout generator state (first = gen.advance(B*Tq*Tk))
};

// Largest head dim (D and Dv) the kernels take.
constexpr std::int64_t kFlashMaxHeadDim = 256;

// Whether (params, operands) run on the Tensor Core kernels.
bool flash_attn_uses_tensor_cores(const FlashAttnParams& p, const AttnOperand& q, const AttnOperand& k,
                                  const AttnOperand& v);

void flash_attn_forward(const FlashAttnParams& p, const AttnOperand& q, const AttnOperand& k, const AttnOperand& v,
                        void* out, float* lse, void* stream);

// delta: workspace of B*Tq floats.
void flash_attn_backward(const FlashAttnParams& p, const AttnOperand& q, const AttnOperand& k, const AttnOperand& v,
                         const void* out, const void* grad_out, const float* lse, float* delta, void* grad_q,
                         void* grad_k, void* grad_v, void* stream);

}  // namespace ciuic::kernels
