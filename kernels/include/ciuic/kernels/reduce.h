// Reductions over one middle dim of a contiguous input viewed as (outer, reduce, inner):
// out[o, i] = R_j in[o, j, i]. The caller makes the input contiguous and merges
// adjacent reduced dims (several reduced dims that are adjacent become one; the
// lead reduces non-adjacent dims by permuting first). The last dim is inner == 1.
//
// Outputs are contiguous (outer, inner). Accumulation is in f32 for f32/f16/bf16,
// f64 for f64, i64 for integer sums. Long reductions are split across blocks
// (ciuic/kernels/launch_plan.h plan_reduce): each split writes a partial state to
// `workspace` and a second kernel merges them in split order, so results are
// deterministic (bit-identical run to run for the same sizes). Query the workspace
// size first; it is 0 when no split is needed, and then workspace may be null.
//
// Every launcher validates its arguments (ciuic errors naming the kernel), handles
// empty sizes, launches on `stream` and checks the launch.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ciuic/dtype.h"

namespace ciuic::kernels {

enum class ReduceOp : std::uint8_t { sum, mean, var, max };

// Bytes of workspace `op` needs for these sizes (0: none). deterministic only
// matters for sum/mean (the atomic path needs none).
std::size_t reduce_workspace_bytes(ReduceOp op, DType dtype, std::int64_t outer, std::int64_t reduce,
                                   std::int64_t inner, bool deterministic = true);

// op = sum or mean. out: (outer, inner) of dtype. sum: f32, f64, f16, bf16, i32, i64
// (integers accumulate in i64, and wrap like it). mean: floating only; reduce == 0 gives
// nan (0/0), a sum over reduce == 0 gives 0. deterministic = false lets split sums
// of f32/f64 add partials into out with atomics (order varies run to run); f16/bf16
// and integers always use the two-pass path.
void reduce_sum(ReduceOp op, void* out, const void* in, DType dtype, std::int64_t outer, std::int64_t reduce,
                std::int64_t inner, bool deterministic, void* workspace, std::size_t workspace_bytes, void* stream);

// var with Welford's method: out_var = M2 / max(reduce - correction, 0) (0/0 = nan);
// out_mean (nullable) receives the mean. Floating dtypes; both outputs (outer, inner) of dtype.
void reduce_var(void* out_var, void* out_mean, const void* in, DType dtype, std::int64_t outer, std::int64_t reduce,
                std::int64_t inner, int correction, void* workspace, std::size_t workspace_bytes, void* stream);

// max along the dim: values (nullable: argmax only) of dtype and i64 indices
// (nullable: values only), both (outer, inner). nan counts as the largest value;
// ties go to the first index. Dtypes f32, f64, f16, bf16, i32, i64, u8. reduce must be > 0.
void reduce_max(void* out_values, std::int64_t* out_indices, const void* in, DType dtype, std::int64_t outer,
                std::int64_t reduce, std::int64_t inner, void* workspace, std::size_t workspace_bytes, void* stream);

}  // namespace ciuic::kernels
