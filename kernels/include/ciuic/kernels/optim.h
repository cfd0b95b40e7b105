// Fused multi-tensor optimizer steps: every parameter of a model updated by one
// launch (or a few, see multi_tensor.h: each launch covers up to 320 chunks of 64Ki
// elements and a few dozen tensors; the tables travel in kernel parameters, so
// nothing is allocated and the host never waits).
//
// Per element, the math is adamw_update / sgd_update from optim_math.h, the same
// functions the CPU optimizers use; a GPU step is bit-identical to a CPU step on
// the same f32 inputs.
//
// Mixed precision: master weights and optimizer state are f32; gradients may be
// f32, f16 or bf16 (read and converted to f32, then multiplied by *grad_scale
// when given: the inverse loss scale, possibly times a clip coefficient). With
// model_copies, the updated weight is also written rounded to f16/bf16 in the same
// pass (the copy the next forward reads). With found_inf (a device f32, e.g. from
// multi_tensor_unscale) non-zero, every block returns before touching anything:
// the step is skipped on the device, no host sync needed.
#pragma once

#include <cstdint>

#include "ciuic/dtype.h"
#include "ciuic/kernels/optim_math.h"

namespace ciuic::kernels {

// Host arrays of `count` device pointers; every tensor i is contiguous with
// numels[i] elements in all of its lists.
struct FusedOptimTensors {
  int count = 0;
  const std::int64_t* numels = nullptr;
  void* const* params = nullptr;         // f32 master weights, updated in place
  const void* const* grads = nullptr;    // grad_dtype: f32, f16 or bf16; read only
  DType grad_dtype = DType::f32;
  void* const* state1 = nullptr;         // f32: AdamW exp_avg / SGD momentum buffer
  void* const* state2 = nullptr;         // f32: AdamW exp_avg_sq; unused by SGD
  void* const* model_copies = nullptr;   // optional: copy_dtype (f16 or bf16) = rounded new params
  DType copy_dtype = DType::f16;
  // AdamW, optional: one i64 device scalar per tensor, its step count before this
  // update. When given, each tensor's bias corrections come from *steps[i] + 1,
  // computed on the device (adamw_consts_at, the same bits as the host's), the
  // `step` argument is ignored, and after the update every count is advanced by 1
  // on the device unless found_inf is set: a skipped step leaves it as it was, so
  // the host never needs to read found_inf to know the next step's count.
  void* const* steps = nullptr;
};

// One AdamW step with step count `step` (>= 1, the count after this update: bias
// corrections 1 - beta^step). state1/state2 required. grad_scale and found_inf are
// optional device pointers to one f32.
void fused_adamw(const FusedOptimTensors& t, const AdamWHyper& h, std::int64_t step, const float* grad_scale,
                 const float* found_inf, void* stream);

// One SGD step. state1 is required when h.momentum != 0 (ignored otherwise);
// first_step = the momentum buffers are uninitialised and get set to the gradient
// (callers track this per optimizer, as the reference SGD does per parameter).
void fused_sgd(const FusedOptimTensors& t, const SgdHyper& h, bool first_step, const float* grad_scale,
               const float* found_inf, void* stream);

}  // namespace ciuic::kernels
