// optim::AdamW (decoupled weight decay, bias-corrected moments, optional AMSGrad).
#include <cmath>

#include "ciuic/autograd.h"
#include "ciuic/ops.h"
#include "ciuic/optim.h"
#include "master_weights.h"

namespace ciuic::optim {

namespace {
ParamGroup adamw_defaults(const AdamWOptions& o) {
  ParamGroup g;
  g.lr = o.lr_;
  g.beta1 = o.beta1_;
  g.beta2 = o.beta2_;
  g.eps = o.eps_;
  g.weight_decay = o.weight_decay_;
  g.amsgrad = o.amsgrad_;
  return g;
}

kernels::AdamWHyper hyper_of(const ParamGroup& g) {
  kernels::AdamWHyper h;
  h.lr = g.lr;
  h.beta1 = g.beta1;
  h.beta2 = g.beta2;
  h.eps = g.eps;
  h.weight_decay = g.weight_decay;
  return h;
}

// The fused GPU step serves f32 and f16/bf16 parameters; f64 uses tensor ops.
bool uses_master_math(const Tensor& p) {
  return masters::is_half(p.dtype()) || (p.device().is_cuda() && p.dtype() == DType::f32);
}
}  // namespace

AdamW::AdamW(std::vector<Tensor> params, const AdamWOptions& options) : Optimizer("AdamW", adamw_defaults(options)) {
  add_param_group(std::move(params));
}

AdamW::AdamW(std::vector<Tensor> params, double lr, std::pair<double, double> betas, double eps, double weight_decay,
             bool amsgrad)
    : AdamW(std::move(params), AdamWOptions(lr)
                                   .betas(betas.first, betas.second)
                                   .eps(eps)
                                   .weight_decay(weight_decay)
                                   .amsgrad(amsgrad)) {}

std::vector<std::string> AdamW::hyperparameter_names() const {
  return {"lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad"};
}

std::vector<std::string> AdamW::buffer_names() const { return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}; }

void AdamW::check_group(const ParamGroup& g) const {
  CIUIC_CHECK(g.lr >= 0, ValueError, "AdamW", "lr ", g.lr, "; expected lr >= 0");
  CIUIC_CHECK(g.beta1 >= 0 && g.beta1 < 1 && g.beta2 >= 0 && g.beta2 < 1, ValueError, "AdamW", "betas (", g.beta1,
              ", ", g.beta2, "); expected each in [0, 1)");
  CIUIC_CHECK(g.eps >= 0, ValueError, "AdamW", "eps ", g.eps, "; expected eps >= 0");
  CIUIC_CHECK(g.weight_decay >= 0, ValueError, "AdamW", "weight_decay ", g.weight_decay,
              "; expected weight_decay >= 0");
}

void AdamW::step() { run_step(Tensor()); }

void AdamW::step(const Tensor& found_inf) {
  masters::check_found_inf("AdamW", found_inf);
  run_step(found_inf);
}

void AdamW::run_step(const Tensor& found_inf) {
  NoGradGuard no_grad;
  // A host-side flag is read once, up front; a device flag is read by the fused kernels.
  const bool device_flag = found_inf.defined() && found_inf.device().is_cuda();
  if (found_inf.defined() && !device_flag && masters::flag_set(found_inf)) {
    drop_master_grads();
    return;
  }
  // Device step counts (ParamState::device_step) make the fused GPU path independent of
  // earlier flags: it never reads them. Other parameters need settled host counts.
  if (device_flag) begin_deferred_step(found_inf, /*settle_first=*/false);
  int host_skip = -1;  // device flag read on the host for parameters outside the fused path (-1: not yet)
  for (std::size_t gi = 0; gi < param_groups().size(); ++gi) {
    const ParamGroup& g = param_groups()[gi];
    std::vector<masters::FusedParam> fused;
    std::vector<std::size_t> fused_index;  // of each fused item's parameter in the group
    for (std::size_t i = 0; i < g.params.size(); ++i) {
      Tensor p = g.params[i];
      Tensor grad = step_gradient(gi, i);
      if (!grad.defined()) continue;
      ParamState& s = state_for(gi, i);
      if (p.device().is_cuda() && uses_master_math(p)) {
        CIUIC_CHECK(!g.amsgrad, NotImplementedError, "AdamW", "amsgrad for ", describe(p),
                    ": the fused GPU step has no amsgrad yet; expected amsgrad = false");
        DeferredParam d{gi, i, s.step, {}};
        if (masters::is_half(p.dtype()) && masters::ensure_master(s, p)) d.created.push_back("master");
        for (const char* name : {"exp_avg", "exp_avg_sq"})
          if (masters::ensure_buffer(s, name, p)) d.created.push_back(name);
        // First GPU step of this parameter (or after load_state_dict): no pending step
        // involves it yet, so the host count is exact and moves to the device.
        if (!s.device_step.defined() || s.device_step.device() != p.device())
          s.device_step = full({}, static_cast<double>(s.step), TensorOptions(DType::i64).device(p.device()));
        ++s.step;
        Tensor weight = masters::is_half(p.dtype()) ? s.buffers.at("master") : p.detach();
        Tensor copy = masters::is_half(p.dtype()) ? p.detach() : Tensor();
        fused.push_back({weight, grad.detach().contiguous(), s.buffers.at("exp_avg"), s.buffers.at("exp_avg_sq"),
                         copy, s.device_step});
        fused_index.push_back(i);
        if (device_flag) add_deferred(std::move(d));
        continue;
      }
      // The host paths below use the host count: settle (a host read), then reopen the
      // current pending step for the fused parameters that follow.
      if (has_deferred_step()) {
        settle_deferred_steps();
        if (device_flag) begin_deferred_step(found_inf, /*settle_first=*/false);
      }
      if (device_flag) {
        if (host_skip < 0) host_skip = masters::flag_set(found_inf) ? 1 : 0;
        if (host_skip) continue;
      }
      const bool half = masters::is_half(p.dtype());
      if (half || (p.dtype() == DType::f32 && g.eps > 0)) {
        CIUIC_CHECK(g.eps > 0, ValueError, "AdamW", "eps ", g.eps, " for ", describe(p),
                    "; expected eps > 0 with master weights (the f32 update divides by sqrt(v) + eps)");
        const kernels::AdamWConsts c = kernels::adamw_consts(hyper_of(g), s.step + 1);
        if (half) masters::ensure_master(s, p);
        masters::ensure_buffer(s, "exp_avg", p);
        masters::ensure_buffer(s, "exp_avg_sq", p);
        if (g.amsgrad) masters::ensure_buffer(s, "max_exp_avg_sq", p);
        const Tensor* vmax = g.amsgrad ? &s.buffers.at("max_exp_avg_sq") : nullptr;
        masters::adamw_step_cpu(p, half ? s.buffers.at("master") : Tensor(), s.buffers.at("exp_avg"),
                                s.buffers.at("exp_avg_sq"), vmax, grad, c);
        if (half) masters::mark_master_synced(s, p);
        ++s.step;
        continue;
      }
      // f64 (and f32 with eps == 0): the tensor-op formula.
      const double t = static_cast<double>(++s.step);
      masters::ensure_buffer(s, "exp_avg", p);
      masters::ensure_buffer(s, "exp_avg_sq", p);
      if (g.amsgrad) masters::ensure_buffer(s, "max_exp_avg_sq", p);
      // References only after every insertion (inserting may move the buffers).
      Tensor& m = s.buffers.at("exp_avg");
      Tensor& v = s.buffers.at("exp_avg_sq");
      m = add(mul(m, g.beta1), mul(grad, 1.0 - g.beta1));
      v = add(mul(v, g.beta2), mul(mul(grad, grad), 1.0 - g.beta2));
      Tensor second = v;
      if (g.amsgrad) {
        Tensor& vmax = s.buffers.at("max_exp_avg_sq");
        vmax = maximum(vmax, v);
        second = vmax;
      }
      const double bc1 = 1.0 - std::pow(g.beta1, t);
      const double bc2 = 1.0 - std::pow(g.beta2, t);
      Tensor denom = add(div(sqrt(second), std::sqrt(bc2)), g.eps);
      Tensor decayed = g.weight_decay != 0 ? mul(p, 1.0 - g.lr * g.weight_decay) : p;
      p.copy_(sub(decayed, mul(div(m, denom), g.lr / bc1)));
    }
    if (!fused.empty()) {
      masters::fused_adamw_cuda(fused, hyper_of(g), device_flag ? found_inf : Tensor());
      for (std::size_t i : fused_index) masters::mark_master_synced(state_for(gi, i), g.params[i]);
    }
  }
  drop_master_grads();
}

}  // namespace ciuic::optim
