// softmax and log_softmax over the last dim: x, y (rows, cols) contiguous.
//
// A row is handled by one warp (cols <= 1024) or one block (256 or 1024 threads);
// the max and the sum of exp(x - max) come from one online pass (SoftmaxState in
// ciuic/kernels/reduce_math.h), then a second pass writes the output. Arithmetic in
// f32 for f32/f16/bf16 (f64 for f64). A row of only -inf gives nan, a nan in a row
// makes the row nan, as the CPU reference.
//
// y may alias x (forward) and grad_x may alias grad_y (backward): each element is
// read before it is written, by the same thread, after the row's reduction.
// Launchers validate (ciuic errors naming the kernel), return at once for empty
// sizes, launch on `stream` and check the launch.
#pragma once

#include <cstdint>

#include "ciuic/dtype.h"

namespace ciuic::kernels {

// y = softmax(x) (log = false) or log_softmax(x) (log = true) along the last dim.
void softmax_forward(void* y, const void* x, DType dtype, std::int64_t rows, std::int64_t cols, bool log,
                     void* stream);

// From the forward output y:
//   softmax:     grad_x = y * (grad_y - sum_row(grad_y * y))
//   log_softmax: grad_x = grad_y - exp(y) * sum_row(grad_y)
void softmax_backward(void* grad_x, const void* grad_y, const void* y, DType dtype, std::int64_t rows,
                      std::int64_t cols, bool log, void* stream);

}  // namespace ciuic::kernels
