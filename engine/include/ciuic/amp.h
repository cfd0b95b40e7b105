// Mixed precision: autocast, and dynamic loss scaling for f16 training.
//
// FP16 training with FP32 master weights (optim.h: an optimizer over f16/bf16
// parameters keeps f32 masters and f32 state by itself):
//
//   model->to(DType::f16);
//   optim::AdamW opt(model->parameters(), optim::AdamWOptions(3e-4));
//   amp::LossScaler scaler;                              // init scale 2^16
//   for (...) {
//     opt.zero_grad();
//     Tensor loss = mse_loss(model->forward(x).to(DType::f32), y);
//     scaler.scale(loss).backward();                     // f16 gradients of loss * scale
//     scaler.unscale_(opt);                              // f32 master gradients / scale, inf/nan check
//     optim::clip_grad_norm_(opt, 1.0);                  // optional: clips the master gradients
//     scaler.step(opt);                                  // skipped on inf/nan (nothing changes)
//     scaler.update();                                   // backoff / growth of the scale
//   }
//
// bf16 has f32's exponent range: use the same loop with LossScalerOptions().enabled(false)
// (scale and unscale_ become identities, step a plain step), or call opt.step() directly.
//
// Autocast runs chosen ops in f16/bf16 on f32 tensors:
//
//   { amp::AutocastGuard autocast(DType::f16);  y = linear(x, w, b); }   // y is f16, w.grad f32
//
// Under the guard, matmul, linear, conv2d and scaled_dot_product_attention cast
// their f32 (and other-half) floating inputs to the autocast dtype with
// Tensor::to (recorded on the tape, so gradients reach f32 parameters in f32) and
// compute in it with f32 accumulation. layer_norm, rms_norm, softmax,
// log_softmax, cross_entropy, mse_loss and batch_norm run in f32: their f16/bf16
// inputs are cast up (f32 weights with f16 activations are fine), so a post-LN
// model runs under the guard as it is. Other ops run in their inputs' dtype.
// Binary elementwise ops promote mixed floating dtypes to the wider one under the
// guard (an autocast output joins an f32 residual stream as f32). f64 and integer
// inputs are never cast down. Each guard caches its casts of leaf tensors that
// require grad (parameters): a weight used by several ops in one forward is cast
// once (a changed version invalidates the entry); the cache is dropped when the
// guard ends. Call backward() outside the guard.
// Checkpoint segments recompute under the autocast state of their forward.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <utility>
#include <vector>

#include "ciuic/optim.h"
#include "ciuic/tensor.h"

namespace ciuic::amp {

// ---------------------------------------------------------------- autocast
struct AutocastState {
  bool enabled = false;
  DType dtype = DType::f16;
};

// This thread's autocast state.
AutocastState autocast_state();
bool autocast_enabled();

// Sets this thread's autocast state for its scope (nestable; enabled = false
// turns autocast off inside an enclosing guard). dtype: f16 or bf16 (DTypeError otherwise).
class AutocastGuard {
 public:
  explicit AutocastGuard(DType dtype = DType::f16, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  AutocastState previous_;
};

// For op implementations, at the top of the op:
//   if (auto c = amp::autocast_args({&a, &b})) return matmul((*c)[0], (*c)[1]);
// When autocast is on and some defined input is f32, f16 or bf16 but not the
// autocast dtype, returns every input with those cast to it (others unchanged,
// undefined ones undefined); otherwise nullopt, so the op runs as called.
std::optional<std::vector<Tensor>> autocast_args(std::initializer_list<const Tensor*> inputs);

// For binary elementwise ops, at the top of the op:
//   if (auto c = amp::autocast_promote(a, b)) return add(c->first, c->second);
// Under autocast, two floating inputs of different dtypes meet in the wider one
// (f64 > f32 > f16, bf16; f16 with bf16 gives f32), so an autocast output can join
// an f32 residual stream. Outside autocast (and for equal dtypes) returns nullopt:
// mixing dtypes there stays a DTypeError.
std::optional<std::pair<Tensor, Tensor>> autocast_promote(const Tensor& a, const Tensor& b);

// For the ops that autocast runs in f32 (PyTorch's float32 list: layer_norm,
// rms_norm, softmax, log_softmax, cross_entropy, mse_loss, batch_norm): when
// autocast is on and some defined input is f16 or bf16, returns every input with
// the f16/bf16 ones cast to f32 (others unchanged); nullopt otherwise.
std::optional<std::vector<Tensor>> autocast_f32(std::initializer_list<const Tensor*> inputs);

// ---------------------------------------------------------------- loss scaling
struct LossScalerOptions {
  double init_scale_ = 65536.0;       // 2^16
  double growth_factor_ = 2.0;        // > 1
  double backoff_factor_ = 0.5;       // in (0, 1)
  std::int64_t growth_interval_ = 2000;  // clean iterations before the scale grows
  std::int64_t hysteresis_ = 1;       // back off at the hysteresis-th consecutive overflow (1: at once)
  double min_scale_ = 1.0;
  double max_scale_ = 16777216.0;     // 2^24
  bool enabled_ = true;

  LossScalerOptions& init_scale(double v) { init_scale_ = v; return *this; }
  LossScalerOptions& growth_factor(double v) { growth_factor_ = v; return *this; }
  LossScalerOptions& backoff_factor(double v) { backoff_factor_ = v; return *this; }
  LossScalerOptions& growth_interval(std::int64_t v) { growth_interval_ = v; return *this; }
  LossScalerOptions& hysteresis(std::int64_t v) { hysteresis_ = v; return *this; }
  LossScalerOptions& min_scale(double v) { min_scale_ = v; return *this; }
  LossScalerOptions& max_scale(double v) { max_scale_ = v; return *this; }
  LossScalerOptions& enabled(bool v) { enabled_ = v; return *this; }
};

// Everything needed to resume: the scale, the counters, and the options.
struct LossScalerState {
  double scale = 65536.0;
  std::int64_t growth_tracker = 0;   // clean iterations since the scale last changed or overflowed
  std::int64_t overflow_streak = 0;  // consecutive overflowing iterations
  LossScalerOptions options;
};

// Dynamic loss scaling. One iteration: scale(loss).backward(); then for each
// optimizer optionally unscale_(opt) (to clip or inspect the gradients), then
// step(opt); then update() once. Several optimizers may share one scaler: each
// gets its own inf/nan flag (its step is skipped on its own flag) and update()
// combines them all.
//
// update(): if any optimizer's gradients had an inf or nan, the growth count
// restarts and the overflow streak grows; once the streak reaches hysteresis the
// scale is multiplied by backoff_factor at every overflowing iteration (never
// below min_scale). A clean iteration ends the streak; after growth_interval
// clean iterations in a row the scale is multiplied by growth_factor (never above
// max_scale).
//
// Misuse is a ValueError naming the call: unscale_ twice for one optimizer, or
// after its step, before update(); step twice for one optimizer before update();
// update() without any step(); load_state_dict() in the middle of an iteration.
// scale() of a non-floating tensor is a DTypeError.
//
// No host read-back: the scale, the growth count and the overflow streak are
// tensors on the gradients' device (ciuic/kernels/loss_scale.h), unscale_ is one
// kernels::multi_tensor_unscale pass per gradient dtype writing a device-side
// flag, the fused optimizer steps read that flag on the device (AdamW keeps its
// step counts there too), and update() combines the flags and grows or backs off
// the scale in a one-thread kernel. The CPU runs the same rule on CPU tensors.
// get_scale(), step_skipped() and state_dict() read the device values (a sync).
// update() also raises deferred device errors already visible to the host
// (ciuic/host_sync.h) without waiting for the device.
class LossScaler {
 public:
  explicit LossScaler(const LossScalerOptions& options = {});

  bool is_enabled() const { return opts_.enabled_; }
  // The current scale (1 when disabled): a host read of the device value.
  double get_scale() const;
  const LossScalerOptions& options() const { return opts_; }

  // loss * scale, in f32 (f16/bf16 losses are converted first, f64 stays f64);
  // differentiable. Disabled: loss itself.
  Tensor scale(const Tensor& loss) const;

  // One pass over every gradient of optimizer's parameters: gradient * (1 / scale)
  // in f32 is written to the ParamState buffer "master_grad" for f16/bf16
  // parameters (their .grad stays as it is) and in place into .grad for f32 and
  // f64 parameters; any inf or nan result sets the optimizer's found_inf flag (an
  // f32 scalar on the parameters' device). Disabled: checks the call order only.
  void unscale_(optim::Optimizer& optimizer);
  // unscale_ (if not done this iteration), then optimizer.step(found_inf): on inf
  // or nan the step is skipped and parameters, masters, state and step counts stay
  // bit-identical. Disabled: optimizer.step().
  void step(optim::Optimizer& optimizer);
  // Ends the iteration: adjusts the scale (see above).
  void update();

  // Whether an inf or nan was found: in the current iteration when some
  // optimizer was unscaled since the last update(), else in the iteration the
  // last update() closed. (A device sync when the flags are on a GPU.)
  bool step_skipped() const;

  // The same two values as tensors, for a training loop that reads them later, once,
  // together with its loss (no host read here): scale_tensor() is a copy of the scale
  // now (0-dim f64 on the scaler's device; 1 when disabled), which update() does not
  // change; step_skipped_tensor() is step_skipped() as a 0-dim f32 (1: skipped), a copy
  // taken now.
  Tensor scale_tensor() const;
  Tensor step_skipped_tensor() const;

  LossScalerState state_dict() const;
  // Checks the options and counters (ValueError) before changing anything.
  void load_state_dict(const LossScalerState& state);

 private:
  struct Record {
    optim::Optimizer* optimizer = nullptr;
    Tensor found_inf;  // undefined when disabled
    bool unscaled = false;
    bool stepped = false;
  };
  Record& record_for(optim::Optimizer& optimizer);

  // Moves the state tensors to d (where the loss / gradients are) if they are elsewhere.
  // (const: scale() may move it; the values do not change.)
  void ensure_on(Device d) const;

  LossScalerOptions opts_;
  mutable Device home_ = Device::cpu();  // where the state tensors live
  mutable Tensor scale_;                 // f64 scalar
  mutable Tensor counters_;              // i64 (2): growth_tracker, overflow_streak
  mutable Tensor f32_;                   // f32 (3): scale, 1 / scale, the last update()'s found_inf (0 / 1)
  std::vector<Record> records_;  // optimizers touched since the last update()
};

}  // namespace ciuic::amp
