// Multi-tensor kernels: one launch covers many tensors (a model's parameters or
// gradients) instead of one launch per tensor.
//
// How work is split (plan_multi_tensor, host-side, tested on the CPU): every
// tensor is cut into chunks of kMultiTensorChunk elements (the last one shorter);
// each CUDA block handles exactly one chunk. A launch carries, by value in kernel
// parameter space (no device table, no allocation, no host sync), up to
// max_tensors tensor slots (their pointers and sizes) and up to max_blocks
// (slot, chunk) pairs. When either runs out the plan starts the next launch, and a
// tensor cut across the boundary appears as a slot in both launches. Tensors with
// zero elements get no slot at all. Chunks are numbered globally across launches
// (MultiTensorLaunch::block_offset), which is what makes the norm's per-block
// partials deterministic: partial b always covers the same elements.
//
// Pointer lists passed to the launchers are host arrays of device pointers, all of
// one dtype per list; numels[i] is the element count of tensor i, every tensor
// contiguous.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ciuic/dtype.h"
#include "ciuic/error.h"
#include "ciuic/kernels/device_error.h"

namespace ciuic::kernels {

// Elements per chunk (= per block). 64Ki: big enough to amortise a block's start,
// small enough that a few large tensors still spread over every SM.
constexpr std::int64_t kMultiTensorChunk = 65536;
// Blocks per launch: bounded so the (slot, chunk) table fits in kernel parameters.
constexpr int kMultiTensorMaxBlocks = 320;

// Tensor slots per launch for `depth` pointer lists: chosen so the whole table
// (depth * slots pointers + slots sizes + blocks entries) stays under the classic
// 4 KiB kernel-parameter limit.
constexpr int multi_tensor_max_tensors(int depth) {
  return depth <= 1 ? 96 : depth == 2 ? 64 : depth == 3 ? 48 : depth == 4 ? 40 : depth == 5 ? 36 : 32;
}

struct MultiTensorLaunch {
  std::vector<int> tensors;         // slot -> index into the caller's list
  std::vector<int> block_slot;      // block -> slot
  std::vector<int> block_chunk;     // block -> chunk index within its tensor
  std::int64_t block_offset = 0;    // global index of this launch's block 0
};

// Splits `count` tensors of numels[i] elements into launches (see above).
// chunk >= 1, max_tensors >= 1, max_blocks >= 1; numels[i] >= 0.
inline std::vector<MultiTensorLaunch> plan_multi_tensor(const std::int64_t* numels, int count, std::int64_t chunk,
                                                        int max_tensors, int max_blocks) {
  CIUIC_CHECK(count >= 0, ValueError, "plan_multi_tensor", "count is ", count, "; expected >= 0");
  CIUIC_CHECK(chunk >= 1 && max_tensors >= 1 && max_blocks >= 1, ValueError, "plan_multi_tensor", "chunk ", chunk,
              ", max_tensors ", max_tensors, ", max_blocks ", max_blocks, "; expected all >= 1");
  std::vector<MultiTensorLaunch> plan;
  MultiTensorLaunch cur;
  std::int64_t blocks_before = 0;
  auto flush = [&] {
    if (cur.block_slot.empty()) return;
    cur.block_offset = blocks_before;
    blocks_before += static_cast<std::int64_t>(cur.block_slot.size());
    plan.push_back(std::move(cur));
    cur = MultiTensorLaunch{};
  };
  for (int t = 0; t < count; ++t) {
    CIUIC_CHECK(numels[t] >= 0, ValueError, "plan_multi_tensor", "tensor ", t, " has numel ", numels[t],
                "; expected >= 0");
    const std::int64_t nchunks = (numels[t] + chunk - 1) / chunk;
    CIUIC_CHECK(nchunks <= 0x7fffffff, ValueError, "plan_multi_tensor", "tensor ", t, " has ", numels[t],
                " elements: too many chunks of ", chunk);
    for (std::int64_t c = 0; c < nchunks; ++c) {
      const bool has_slot = !cur.tensors.empty() && cur.tensors.back() == t;
      if (!has_slot) {
        if (static_cast<int>(cur.tensors.size()) == max_tensors) flush();
        cur.tensors.push_back(t);
      }
      cur.block_slot.push_back(static_cast<int>(cur.tensors.size()) - 1);
      cur.block_chunk.push_back(static_cast<int>(c));
      if (static_cast<int>(cur.block_slot.size()) == max_blocks) flush();
    }
  }
  flush();
  return plan;
}

// Total number of chunks (= blocks over all launches) for these tensors.
inline std::int64_t multi_tensor_total_chunks(const std::int64_t* numels, int count,
                                              std::int64_t chunk = kMultiTensorChunk) {
  std::int64_t total = 0;
  for (int t = 0; t < count; ++t) total += (numels[t] + chunk - 1) / chunk;
  return total;
}

// ---- launchers (kernels/src/multi_tensor.cu; CUDA builds only) ----

enum class NormKind { l2, inf };

// Bytes of device scratch multi_tensor_norm needs: one f32 partial per chunk.
inline std::size_t multi_tensor_norm_workspace_bytes(const std::int64_t* numels, int count) {
  return static_cast<std::size_t>(multi_tensor_total_chunks(numels, count)) * sizeof(float);
}

// *out (one f32 on the device) = the L2 norm sqrt(sum x^2) or the inf-norm
// max |x| over every element of every tensor. dtype: f32, f16 or bf16 (all
// tensors). Deterministic: per-chunk partials in `workspace` (at least
// multi_tensor_norm_workspace_bytes, device memory), then one block sums them in a
// fixed order (in f64 for l2). No atomics; the result stays on the device. NaN
// anywhere gives NaN; an empty list gives 0.
void multi_tensor_norm(const void* const* tensors, DType dtype, const std::int64_t* numels, int count,
                       NormKind kind, float* out, void* workspace, std::size_t workspace_bytes, void* stream);

// out[i][j] = in[i][j] * (*inv_scale) for every tensor i, element j, converted to
// out_dtype; if any result is inf or NaN, *found_inf = 1.0f (the kernel only ever
// writes 1.0f there, never clears it: zero it before the first use of a step).
// in_dtype, out_dtype: f32, f16 or bf16. out[i] may equal in[i] (in place) when the
// dtypes match. inv_scale and found_inf are device pointers.
void multi_tensor_unscale(const void* const* in, DType in_dtype, void* const* out, DType out_dtype,
                          const std::int64_t* numels, int count, const float* inv_scale, float* found_inf,
                          void* stream);

// x[i][j] *= *coef in place (coef: a device pointer, e.g. from clip_coefficient).
// dtype: f32, f16 or bf16.
void multi_tensor_scale(void* const* tensors, DType dtype, const std::int64_t* numels, int count, const float* coef,
                        void* stream);

// *coef = clip_grad_coefficient(*total_norm, max_norm, eps) on the device (one
// thread): min(1, max_norm / (*total_norm + eps)), or 1 for a non-finite total, so
// clipping needs no host sync. max_norm >= 0, eps >= 0. With a non-null `errors`
// slot, a non-finite total is reported (DeviceErrorCode::clip_grad_nonfinite, value =
// the total's bits as an f64, bound = tensor_count, extra = norm_type's f64 bits).
void clip_coefficient(const float* total_norm, float max_norm, float eps, float* coef, void* stream,
                      const DeviceErrorSlot& errors = {}, std::int64_t tensor_count = 0, double norm_type = 2.0);

}  // namespace ciuic::kernels
