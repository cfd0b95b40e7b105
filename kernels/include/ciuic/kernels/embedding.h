// Embedding: rows of weight (V, C) gathered by integer indices, and the
// scatter-add backward. indices: n values, i32 or i64, any contiguous buffer
// (the caller flattens the index tensor); out / grad_out: (n, C) contiguous.
// Floating dtypes for weight and gradients.
//
// Indices outside [0, V) cannot raise an exception from the device. The forward
// writes a row of nan for them and reports the first one it meets to `errors`
// (DeviceErrorCode::embedding_index, value = the index, bound = V, extra = C; a
// slot with null pointers reports nothing); the engine raises it at its next sync
// point (device_error.h). The backward skips them.
//
// Backward modes:
//   deterministic: sort-based (embedding_sort.h): the n indices are sorted with
//     their positions (stable CUB radix sort over the bits V needs), and each run of
//     equal indices is summed column by column in index order by one block (as the
//     CPU loop; bit-identical sums for f32). Cost: one sort plus n * C reads.
//     Workspace: the sort buffers (about 16 bytes per index plus CUB's scratch).
//   non-deterministic: grad_weight zeroed, then one atomicAdd per gradient element
//     (f16/bf16 accumulate in an f32 workspace of V * C floats, then round once).
// Every weight row is written in both modes (rows no index hits become 0).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ciuic/dtype.h"
#include "ciuic/kernels/device_error.h"

namespace ciuic::kernels {

// out[i, :] = weight[indices[i], :] for i in [0, n).
void embedding_forward(void* out, const void* weight, DType dtype, std::int64_t V, std::int64_t C,
                       const void* indices, DType index_dtype, std::int64_t n, const DeviceErrorSlot& errors,
                       void* stream);

// Bytes of device workspace embedding_backward needs for n indices (a host call).
std::size_t embedding_backward_workspace_bytes(DType dtype, std::int64_t V, std::int64_t C, std::int64_t n,
                                               bool deterministic);

// grad_weight (V, C) = sum over i with indices[i] == v of grad_out[i, :].
void embedding_backward(void* grad_weight, const void* grad_out, DType dtype, std::int64_t V, std::int64_t C,
                        const void* indices, DType index_dtype, std::int64_t n, bool deterministic, void* workspace,
                        std::size_t workspace_bytes, void* stream);

}  // namespace ciuic::kernels
