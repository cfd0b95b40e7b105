// Hand-written pooling kernels for what cuDNN cannot map exactly onto the engine's
// CPU references (engine/src/ops/pool.cpp):
//   - max pooling with saved winner indices (first maximum wins ties, nan wins),
//     whose backward routes each gradient to the saved winner; cuDNN's max-pooling
//     backward recomputes the winner from x and y, and its tie rule is not documented;
//   - adaptive average pooling whose bins are uneven (H % OH or W % OW != 0).
// All tensors are contiguous planes (planes, H, W) / (planes, OH, OW); f32, f64,
// f16, bf16 (f32 arithmetic for the half types). Per-element bodies live in
// pool_math.h. Backwards gather (no atomics): deterministic, every element written.
#pragma once

#include <cstdint>

#include "ciuic/dtype.h"

namespace ciuic::kernels {

struct PoolShape {
  std::int64_t planes = 0, H = 0, W = 0, OH = 0, OW = 0;
  std::int64_t k = 1, s = 1, p = 0;  // window pooling only
};

// out (planes, OH, OW) and index (planes, OH, OW, i32: ih*W + iw within the plane).
void max_pool2d_forward(const void* x, void* out, std::int32_t* index, DType dtype, const PoolShape& g, void* stream);
// grad_x (planes, H, W) from grad_out and the forward's index.
void max_pool2d_backward(const void* grad_out, const std::int32_t* index, void* grad_x, DType dtype,
                         const PoolShape& g, void* stream);

void adaptive_avg_pool2d_forward(const void* x, void* out, DType dtype, const PoolShape& g, void* stream);
void adaptive_avg_pool2d_backward(const void* grad_out, void* grad_x, DType dtype, const PoolShape& g, void* stream);

}  // namespace ciuic::kernels
