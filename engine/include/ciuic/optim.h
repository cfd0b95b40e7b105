// Optimizers (SGD, AdamW), the cosine learning-rate schedule with warm-up, and
// gradient-norm clipping.
//
//   optim::AdamW opt(model->parameters(), optim::AdamWOptions(3e-4).weight_decay(0.1));
//   opt.add_param_group(head->parameters()).lr = 1e-3;   // a second group: defaults, then overrides
//   optim::CosineWithWarmup sched(opt, 100, 10000, 0.1);
//   for (...) {
//     opt.zero_grad();
//     loss.backward();
//     optim::clip_grad_norm_(model->parameters(), 1.0);
//     opt.step();
//     sched.step();
//   }
//
// step() runs under NoGradGuard and writes every parameter in place
// (p.copy_(...)): the parameter tensors stay the same objects, so modules keep
// their handles. Parameters whose .grad is undefined are skipped (their step
// count does not advance). f32 and f64 parameters: state tensors have the
// parameter's dtype and device. f32 updates run the per-element math of
// kernels/optim_math.h (one loop per tensor on the CPU, the fused multi-tensor
// kernels on a GPU: bit-identical results); f64 updates are tensor ops (and so
// are f32 AdamW updates with eps == 0, which the f32 math does not take).
//
// f16 / bf16 parameters (a model converted with Module::to(DType::f16)) get FP32
// master weights: ParamState buffer "master" is an f32 copy of the parameter,
// made at its first step; the state ("exp_avg", "momentum_buffer", ...) is f32;
// each step updates the master in f32 from the f32 gradient and writes the
// rounded result into the parameter in the same pass (one loop per tensor on the
// CPU with the per-element math of kernels/optim_math.h, so it is bit-identical
// to the fused CUDA kernels; on a GPU one fused launch per group). The gradient
// is ParamState buffer "master_grad" when amp::LossScaler::unscale_ made one
// (f32, already unscaled; the step consumes it), otherwise the parameter's .grad.
// The master is authoritative: if the parameter is written by anything else
// (weights loaded, copy_), the next step re-makes the master from it. state_dict()
// includes the masters (never "master_grad").
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "ciuic/nn/ordered_dict.h"
#include "ciuic/tensor.h"

namespace ciuic::amp {
class LossScaler;
}

namespace ciuic::optim {

// The dtype of an optimizer's state for a parameter of dtype t: f32 for f16 and
// bf16 (master weights), t otherwise.
constexpr DType state_dtype(DType t) { return t == DType::f16 || t == DType::bf16 ? DType::f32 : t; }

// A set of parameters and the hyperparameters they are updated with. Each
// optimizer reads the fields its documentation lists and ignores the rest.
// Changing a field (lr by a schedule, say) takes effect at the next step.
struct ParamGroup {
  std::vector<Tensor> params;
  double lr = 1e-3;
  double weight_decay = 0.0;
  double momentum = 0.0;    // SGD
  double dampening = 0.0;   // SGD
  bool nesterov = false;    // SGD
  double beta1 = 0.9;       // AdamW
  double beta2 = 0.999;     // AdamW
  double eps = 1e-8;        // AdamW
  bool amsgrad = false;     // AdamW
};

// What an optimizer keeps for one parameter.
struct ParamState {
  std::int64_t step = 0;              // updates applied to this parameter
  // GPU AdamW: the step count the fused kernels read and advance on the device (an
  // i64 scalar; a step skipped on the device's found_inf does not advance it), so a
  // step never reads the flag back. `step` above is its host mirror, settled when
  // read (state(), state_dict()). Not part of state dicts.
  Tensor device_step;
  nn::OrderedDict<Tensor> buffers;    // by name ("momentum_buffer", "exp_avg", ..., "master"); the parameter's shape
  // f16/bf16 parameters: the parameter's storage and version right after the optimizer
  // last wrote it (or loaded its master); anything else means the master is stale.
  const void* master_synced_storage = nullptr;
  std::uint64_t master_synced_version = 0;
};

// An optimizer's state by group and parameter index (the order of
// param_groups() and of each group's params), plus each group's hyperparameters.
struct OptimizerStateDict {
  struct Group {
    nn::OrderedDict<double> hyperparameters;  // "lr", ...; booleans as 0 / 1
    std::vector<ParamState> params;           // one per parameter of the group
  };
  std::string optimizer;  // "SGD", "AdamW": load_state_dict checks it
  std::vector<Group> groups;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  const std::string& name() const { return name_; }
  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }

  // Adds a group with this optimizer's construction-time hyperparameters and
  // returns it for adjustment (effective from the next step).
  ParamGroup& add_param_group(std::vector<Tensor> params);
  // Adds a group with its hyperparameters as given (checked like the constructor's).
  ParamGroup& add_param_group(ParamGroup group);

  // Drops the .grad of every parameter, or with set_to_none = false fills the
  // existing ones with zeros in place (for gradients that are views into a buffer).
  void zero_grad(bool set_to_none = true);
  // One update of every parameter that has a gradient.
  virtual void step() = 0;
  // The same update, skipped when found_inf (a one-element f32 tensor, the flag
  // amp::LossScaler::unscale_ sets when a gradient was inf or nan) is non-zero:
  // a skipped step leaves parameters, masters and state bit-identical and does
  // not advance any step count. CPU flag: read at once. CUDA flag (SGD, AdamW):
  // the fused kernels read it on the device and the host does not wait; host
  // step counts then advance provisionally until the flags are read: AdamW keeps
  // its counts on the device as well (ParamState::device_step) and settles the
  // host mirror only when state is read (state(), state_dict(), or a step that
  // needs the host count); SGD settles the previous flag at its next step. The
  // base version (for other optimizers) reads the flag on the host and calls step().
  virtual void step(const Tensor& found_inf);
  // Settles the steps taken under device flags the host has not read: the last
  // one with `skipped`, earlier ones by reading their flags (a host read). A
  // skipped step's counts go back; buffers created by steps that all turned out
  // skipped are dropped. No-op when there is none.
  void resolve_deferred_step(bool skipped);
  // The same, reading every flag (a device sync when there are any).
  void settle_deferred_steps() const;
  bool has_deferred_step() const { return !pending_.empty(); }

  // The state of parameter `index` of group `group` (step 0 and no buffers before its first update).
  const ParamState& state(std::size_t group, std::size_t index) const;
  // The gradient the next step uses for that parameter: its "master_grad" buffer
  // when LossScaler::unscale_ made one, else its .grad (undefined when neither).
  Tensor step_gradient(std::size_t group, std::size_t index) const;

  // Handles to the current state tensors (the steps here replace state tensors
  // rather than write into them, but clone() for a snapshot that is safe either way).
  OptimizerStateDict state_dict() const;
  // Restores state and hyperparameters (state tensors are copied, converted to
  // each parameter's dtype and device). Checks everything first: ValueError for
  // another optimizer's dict, a different number of groups or of parameters in
  // a group, missing or unknown hyperparameters or buffer names; ShapeError for
  // a buffer whose shape is not its parameter's.
  void load_state_dict(const OptimizerStateDict& dict);

 protected:
  Optimizer(std::string name, ParamGroup defaults);

  // The ParamGroup fields this optimizer reads, in state-dict order.
  virtual std::vector<std::string> hyperparameter_names() const = 0;
  // The buffer names its ParamState may hold.
  virtual std::vector<std::string> buffer_names() const = 0;
  // ValueError for hyperparameters out of range.
  virtual void check_group(const ParamGroup& g) const = 0;

  // The state of (group, index), created on first use (the groups may have grown).
  ParamState& state_for(std::size_t group, std::size_t index);

  // For steps: drops every "master_grad" buffer (a step consumes them, skipped or not).
  void drop_master_grads();
  // A parameter stepped under a device-side flag: its step count before, and the
  // buffers the step created (dropped again if the step turns out skipped).
  struct DeferredParam {
    std::size_t group = 0, index = 0;
    std::int64_t step_before = 0;
    std::vector<std::string> created;
  };
  // Before a step(found_inf) on the device: settles the previous ones by reading
  // their flags (SGD), or (settle_first = false: AdamW, whose counts live on the
  // device) just opens a new pending step.
  void begin_deferred_step(const Tensor& found_inf, bool settle_first = true);
  // Adds a parameter to the pending step begin_deferred_step opened.
  void add_deferred(DeferredParam p) { pending_.back().params.push_back(std::move(p)); }

 private:
  friend class amp::LossScaler;  // writes "master_grad" buffers (unscale_)
  void check_params(const std::vector<Tensor>& params, std::size_t new_group) const;

  std::string name_;
  ParamGroup defaults_;
  std::vector<ParamGroup> groups_;
  // Settling pending steps changes the host mirrors of the step counts (and drops
  // buffers of steps that were all skipped), also from const readers: mutable.
  mutable std::vector<std::vector<ParamState>> state_;
  struct PendingStep {
    Tensor flag;  // the step's device found_inf
    std::vector<DeferredParam> params;
  };
  mutable std::vector<PendingStep> pending_;
  void apply_pending(const std::vector<bool>& skipped) const;
};

// ---------------------------------------------------------------- SGD
struct SGDOptions {
  explicit SGDOptions(double lr) : lr_(lr) {}
  SGDOptions& lr(double v) { lr_ = v; return *this; }
  SGDOptions& momentum(double v) { momentum_ = v; return *this; }
  SGDOptions& dampening(double v) { dampening_ = v; return *this; }
  SGDOptions& weight_decay(double v) { weight_decay_ = v; return *this; }
  SGDOptions& nesterov(bool v) { nesterov_ = v; return *this; }
  double lr_;
  double momentum_ = 0.0, dampening_ = 0.0, weight_decay_ = 0.0;
  bool nesterov_ = false;
};

// Reads lr, momentum, dampening, weight_decay, nesterov. For each parameter p with gradient g:
//   d = g + weight_decay * p
//   with momentum: buf = d on the first step, else momentum * buf + (1 - dampening) * d;
//                  d = nesterov ? d + momentum * buf : buf
//   p -= lr * d
// Buffer: "momentum_buffer". nesterov needs momentum > 0 and dampening == 0.
// f16/bf16 parameters: the update is kernels::sgd_update on the f32 master.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& options);
  SGD(std::vector<Tensor> params, double lr, double momentum = 0.0, double dampening = 0.0,
      double weight_decay = 0.0, bool nesterov = false);
  void step() override;
  void step(const Tensor& found_inf) override;

 protected:
  std::vector<std::string> hyperparameter_names() const override;
  std::vector<std::string> buffer_names() const override;
  void check_group(const ParamGroup& g) const override;

 private:
  void run_step(const Tensor& found_inf);
};

// ---------------------------------------------------------------- AdamW
struct AdamWOptions {
  explicit AdamWOptions(double lr = 1e-3) : lr_(lr) {}
  AdamWOptions& lr(double v) { lr_ = v; return *this; }
  AdamWOptions& betas(double b1, double b2) { beta1_ = b1; beta2_ = b2; return *this; }
  AdamWOptions& eps(double v) { eps_ = v; return *this; }
  AdamWOptions& weight_decay(double v) { weight_decay_ = v; return *this; }
  AdamWOptions& amsgrad(bool v) { amsgrad_ = v; return *this; }
  double lr_;
  double beta1_ = 0.9, beta2_ = 0.999, eps_ = 1e-8, weight_decay_ = 1e-2;
  bool amsgrad_ = false;
};

// Reads lr, beta1, beta2, eps, weight_decay, amsgrad. For each parameter p with gradient g,
// with t its step count after incrementing:
//   p *= 1 - lr * weight_decay                          (decoupled decay)
//   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2     (zeros before the first step)
//   amsgrad: vmax = max(vmax, v), used in place of v below
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Buffers: "exp_avg", "exp_avg_sq", and "max_exp_avg_sq" with amsgrad.
// f16/bf16 parameters: the update is kernels::adamw_update on the f32 master
// (its f32 constants need eps > 0); amsgrad there is CPU-only for now (the fused
// kernel has no amsgrad: NotImplementedError on a GPU).
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Tensor> params, const AdamWOptions& options = AdamWOptions());
  AdamW(std::vector<Tensor> params, double lr, std::pair<double, double> betas = {0.9, 0.999}, double eps = 1e-8,
        double weight_decay = 1e-2, bool amsgrad = false);
  void step() override;
  void step(const Tensor& found_inf) override;

 protected:
  std::vector<std::string> hyperparameter_names() const override;
  std::vector<std::string> buffer_names() const override;
  void check_group(const ParamGroup& g) const override;

 private:
  void run_step(const Tensor& found_inf);
};

// ---------------------------------------------------------------- learning-rate schedule
// lr(s) = base_lr * factor(s) for each group, with base_lr the group's lr when
// the schedule is made (or when the group first appears), and
//   s <  warmup:        factor = s / warmup                      (linear from 0)
//   warmup <= s < total: factor = r + (1 - r) (1 + cos(pi (s - warmup) / (total - warmup))) / 2
//   s >= total:         factor = r                               (r = min_lr_ratio)
// Like PyTorch's LambdaLR: construction sets the lrs for step 0 (0 with a
// warm-up) and each step() advances s by one, so call it after optimizer.step().
// The optimizer must outlive the schedule. To resume a run, make the schedule
// from the freshly built optimizer (so that it takes the base lrs), then load
// the optimizer's state, then set_step(the saved last_step()).
class CosineWithWarmup {
 public:
  CosineWithWarmup(Optimizer& optimizer, std::int64_t warmup_steps, std::int64_t total_steps,
                   double min_lr_ratio = 0.0);
  void step();
  // Jumps to step s and sets the lrs (to resume a run).
  void set_step(std::int64_t s);
  std::int64_t last_step() const { return step_; }
  double factor(std::int64_t s) const;
  // The lrs the schedule set for the current step, one per group.
  std::vector<double> get_lr() const;
  double get_lr(std::size_t group) const;
  const std::vector<double>& base_lrs() const { return base_lrs_; }

 private:
  void apply();

  Optimizer& opt_;
  std::int64_t warmup_, total_;
  double min_ratio_;
  std::int64_t step_ = 0;
  std::vector<double> base_lrs_;
};

// As PyTorch's StepLR: lr(s) = base_lr * gamma^floor(s / step_size) for each group (base_lr
// as for CosineWithWarmup). Construction sets the lrs for step 0; step() advances s by one, so
// call it after optimizer.step() (once per epoch for an epoch-wise schedule).
class StepLR {
 public:
  StepLR(Optimizer& optimizer, std::int64_t step_size, double gamma = 0.1);
  void step();
  void set_step(std::int64_t s);
  std::int64_t last_step() const { return step_; }
  double factor(std::int64_t s) const;
  std::vector<double> get_last_lr() const;  // the lrs set for the current step, one per group

 private:
  void apply();

  Optimizer& opt_;
  std::int64_t step_size_;
  double gamma_;
  std::int64_t step_ = 0;
  std::vector<double> base_lrs_;
};

// ---------------------------------------------------------------- gradient clipping
constexpr double kInfNorm = std::numeric_limits<double>::infinity();

// Scales the gradients of params (those defined) in place, as one vector, so
// that their norm_type-norm (kInfNorm: max |g|) is at most max_norm:
// g *= max_norm / (total + 1e-6) when that factor is < 1. Returns the total
// norm before clipping (0 without gradients). A non-finite total (nan or inf
// gradients) leaves the gradients unchanged and is returned; with
// error_if_nonfinite it is a ValueError, raised as a deferred device error
// (ciuic/host_sync.h): by the item() these functions end with, or, for the
// _tensor_ versions, at the next sync point.
//
// clip_grad_norm_tensor_ does the same without reading anything back: it returns
// the total as a 0-dim tensor (f64 on the CPU, computed in f64; f32 on a GPU) and,
// on a GPU, computes the norm with kernels::multi_tensor_norm (one pass per
// gradient dtype), the factor on the device and the scaling with
// kernels::multi_tensor_scale: use it inside a training step. clip_grad_norm_
// returns total.item() (one host read).
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);
Tensor clip_grad_norm_tensor_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                              bool error_if_nonfinite = false);
// The same over the gradients optimizer's next step will use (Optimizer::step_gradient):
// with mixed precision, call it between LossScaler::unscale_(optimizer) and
// LossScaler::step(optimizer) so it clips the unscaled f32 master gradients of
// f16/bf16 parameters (and the unscaled .grad of f32 ones). A non-finite total
// (an overflow the scaler will skip) leaves them unchanged, as above.
double clip_grad_norm_(Optimizer& optimizer, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);
Tensor clip_grad_norm_tensor_(Optimizer& optimizer, double max_norm, double norm_type = 2.0,
                              bool error_if_nonfinite = false);

}  // namespace ciuic::optim
