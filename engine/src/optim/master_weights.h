// Internal to the optimizers: FP32 master weights for f16/bf16 parameters, the
// found_inf skip flag, and the fused multi-tensor CUDA launches.
//
// CPU: one loop per tensor reads the gradient (f32 master_grad, or the f16/bf16
// .grad), updates master and state with kernels::adamw_update / sgd_update (the
// same per-element math as the fused kernels, so the results are bit-identical)
// and writes the rounded master into the parameter. f32 parameters use the same
// loops without a master.
#pragma once

#include <string>
#include <vector>

#include "ciuic/kernels/optim_math.h"
#include "ciuic/optim.h"

namespace ciuic::optim::masters {

constexpr bool is_half(DType t) { return t == DType::f16 || t == DType::bf16; }

// ValueError / DTypeError unless found_inf is a defined one-element floating tensor.
void check_found_inf(const char* op, const Tensor& found_inf);
// The flag's value on the host (a device sync for a CUDA flag).
bool flag_set(const Tensor& found_inf);

// Makes s.buffers[name] exist as a contiguous tensor of p's shape, the state dtype
// (f32 for half parameters) and p's device: zeros when zero_init, else
// uninitialised; an existing buffer of another dtype or device is converted.
// Returns true when it was created. Insertions may move the buffers: take
// references only after every ensure_buffer call.
bool ensure_buffer(ParamState& s, const char* name, const Tensor& p, bool zero_init = true);
// Makes s.buffers["master"] an f32 contiguous copy of p when absent or stale (p
// was written since the optimizer last did). Returns true when it was (re)made.
bool ensure_master(ParamState& s, const Tensor& p);
// Records p's current storage and version as the ones matching the master.
void mark_master_synced(ParamState& s, const Tensor& p);

// ---- CPU steps with the per-element math (f32 and f16/bf16 parameters) ----
// master: the f32 master of a half parameter p, updated in place, with p written
// as its rounding; undefined for an f32 parameter p, which is updated itself.
// State tensors: f32 contiguous. grad: f32, f16 or bf16 of p's shape, used as it is
// (already unscaled). vmax: the AMSGrad buffer, or nullptr.
void adamw_step_cpu(const Tensor& p, const Tensor& master, const Tensor& m, const Tensor& v, const Tensor* vmax,
                    const Tensor& grad, const kernels::AdamWConsts& c);
// buf: the momentum buffer, or nullptr without momentum; first_step: buf is uninitialised.
void sgd_step_cpu(const Tensor& p, const Tensor& master, const Tensor* buf, bool first_step, const Tensor& grad,
                  const kernels::SgdConsts& c);

// ---- CUDA (CIUIC_WITH_CUDA builds; never run without a GPU) ----
// One parameter for a fused launch: `weight` is the f32 tensor updated in place
// (the master of a half parameter, or an f32 parameter itself), `copy` the half
// parameter written in the same pass (undefined for f32 parameters).
struct FusedParam {
  Tensor weight, grad, state1, state2, copy;
  Tensor step;  // AdamW: the parameter's device step count (i64 scalar, ParamState::device_step)
};
// Launches kernels::fused_adamw / fused_sgd over the items, split into launches
// of equal gradient dtype and copy dtype. found_inf: undefined or a device f32.
// AdamW reads and advances every item's device step count (FusedParam::step).
void fused_adamw_cuda(const std::vector<FusedParam>& items, const kernels::AdamWHyper& h, const Tensor& found_inf);
void fused_sgd_cuda(const std::vector<FusedParam>& items, const kernels::SgdHyper& h, bool first_step,
                    const Tensor& found_inf);

}  // namespace ciuic::optim::masters
