// Embedding: rows of weight (V, C) gathered by integer indices, and the
// scatter-add backward. indices: n values, i32 or i64, any contiguous buffer
// (the caller flattens the index tensor); out / grad_out: (n, C) contiguous.
// Floating dtypes for weight and gradients.
//
// Indices outside [0, V) cannot raise an exception from the device. The forward
// writes a row of nan for them and, if bad_index_count (device i64, nullable) is
// given, adds 1 to it per bad index; the caller may check it later (the engine's
// CPU reference validates indices on the host first). The backward skips them.
//
// Backward modes:
//   deterministic: sort-free. Block (r, c) owns vocabulary rows [32 r, 32 r + 32) and
//     columns [128 c, 128 c + 128); it scans all n indices in order and adds matching
//     gradient rows into shared-memory accumulators, so each weight-gradient element
//     is summed by one thread in index order (as the CPU loop; bit-identical sums for
//     f32). Cost: every block reads all n indices (O(n * V/32 * C/128) index reads).
//   non-deterministic: grad_weight zeroed, then one atomicAdd per gradient element
//     (f16/bf16 accumulate in an f32 workspace of V * C floats, then round once).
// Every weight row is written in both modes (rows no index hits become 0).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ciuic/dtype.h"

namespace ciuic::kernels {

// out[i, :] = weight[indices[i], :] for i in [0, n).
void embedding_forward(void* out, const void* weight, DType dtype, std::int64_t V, std::int64_t C,
                       const void* indices, DType index_dtype, std::int64_t n, std::int64_t* bad_index_count,
                       void* stream);

std::size_t embedding_backward_workspace_bytes(DType dtype, std::int64_t V, std::int64_t C, bool deterministic);

// grad_weight (V, C) = sum over i with indices[i] == v of grad_out[i, :].
void embedding_backward(void* grad_weight, const void* grad_out, DType dtype, std::int64_t V, std::int64_t C,
                        const void* indices, DType index_dtype, std::int64_t n, bool deterministic, void* workspace,
                        std::size_t workspace_bytes, void* stream);

}  // namespace ciuic::kernels
