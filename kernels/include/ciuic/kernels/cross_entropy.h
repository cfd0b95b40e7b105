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
// ignore_index cannot raise on the device: its loss, lse and gradient row are nan,
// and the first one is reported to `errors` (DeviceErrorCode::cross_entropy_target,
// value = the target, bound = V, extra = ignore_index; device_error.h), which the
// engine raises at its next sync point.
// Outputs loss_rows and lse_rows are (N) in the arithmetic type: f32 for
// f32/f16/bf16 logits, f64 for f64; each may be null, as may grad_logits.
#pragma once

#include <cstdint>

#include "ciuic/dtype.h"
#include "ciuic/kernels/device_error.h"

namespace ciuic::kernels {

void cross_entropy_forward_backward(void* loss_rows, void* lse_rows, void* grad_logits, const void* logits,
                                    DType dtype, const void* targets, DType target_dtype, std::int64_t N,
                                    std::int64_t V, std::int64_t ignore_index, double grad_scale, void* stream,
                                    const DeviceErrorSlot& errors = {});

// The backward alone from the forward's lse_rows (N values in the arithmetic type):
// grad[j] = exp(x_j - lse) * s, minus s at j = t, with s = grad_scale, times
// *grad_scale_dev when that device pointer (one value of the arithmetic type, e.g.
// upstream gradient / count, computed on the device) is given. One read of the row,
// no log-sum-exp pass. Ignored rows get 0, bad targets nan (reported by the forward).
void cross_entropy_backward(void* grad_logits, const void* logits, DType dtype, const void* lse_rows,
                            const void* targets, DType target_dtype, std::int64_t N, std::int64_t V,
                            std::int64_t ignore_index, double grad_scale, const void* grad_scale_dev, void* stream);

// *count (device i64) = number of i in [0, N) with targets[i] != ignore_index.
void cross_entropy_count_valid(std::int64_t* count, const void* targets, DType target_dtype, std::int64_t N,
                               std::int64_t ignore_index, void* stream);

}  // namespace ciuic::kernels
