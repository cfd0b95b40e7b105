// Fused cross-entropy from logits (N, V) contiguous and integer targets (N), i32
// or i64, with ignore_index. One warp (V <= 1024) or one block per row:
//   pass 1: online max m and sum s of exp(x - m) (SoftmaxState), lse = m + log s
//   pass 2: loss_r = lse - x[t_r]; grad[j] = exp(x_j - lse) * scale, minus scale at
//           j = t_r (i.e. (softmax - onehot) * scale)
// Probabilities are never stored separately; grad_logits may alias logits (in
// place: each element is read before it is overwritten, by the same thread).
// scale = d loss / count for the mean reduction (count of rows with t != ignore_index,
// see cross_entropy_count_valid), times the upstream gradient.
//
// Ignored rows: loss 0, lse 0, gradient row 0. A target outside [0, V) that is not
// ignore_index cannot raise on the device: its loss, lse and gradient row are nan
// (the engine's CPU reference validates targets on the host).
// Outputs loss_rows and lse_rows are (N) in the arithmetic type: f32 for
// f32/f16/bf16 logits, f64 for f64; each may be null, as may grad_logits.
#pragma once

#include <cstdint>

#include "ciuic/dtype.h"

namespace ciuic::kernels {

void cross_entropy_forward_backward(void* loss_rows, void* lse_rows, void* grad_logits, const void* logits,
                                    DType dtype, const void* targets, DType target_dtype, std::int64_t N,
                                    std::int64_t V, std::int64_t ignore_index, double grad_scale, void* stream);

// *count (device i64) = number of i in [0, N) with targets[i] != ignore_index.
void cross_entropy_count_valid(std::int64_t* count, const void* targets, DType target_dtype, std::int64_t N,
                               std::int64_t ignore_index, void* stream);

}  // namespace ciuic::kernels
