// optim::SGD (PyTorch's semantics: momentum buffer starts as the first update direction).
#include <map>

#include "ciuic/autograd.h"
#include "ciuic/ops.h"
#include "ciuic/optim.h"
#include "master_weights.h"

namespace ciuic::optim {

namespace {
ParamGroup sgd_defaults(const SGDOptions& o) {
  ParamGroup g;
  g.lr = o.lr_;
  g.momentum = o.momentum_;
  g.dampening = o.dampening_;
  g.weight_decay = o.weight_decay_;
  g.nesterov = o.nesterov_;
  return g;
}

kernels::SgdHyper hyper_of(const ParamGroup& g) {
  kernels::SgdHyper h;
  h.lr = g.lr;
  h.momentum = g.momentum;
  h.dampening = g.dampening;
  h.weight_decay = g.weight_decay;
  h.nesterov = g.nesterov;
  return h;
}
}  // namespace

SGD::SGD(std::vector<Tensor> params, const SGDOptions& options) : Optimizer("SGD", sgd_defaults(options)) {
  add_param_group(std::move(params));
}

SGD::SGD(std::vector<Tensor> params, double lr, double momentum, double dampening, double weight_decay, bool nesterov)
    : SGD(std::move(params),
          SGDOptions(lr).momentum(momentum).dampening(dampening).weight_decay(weight_decay).nesterov(nesterov)) {}

std::vector<std::string> SGD::hyperparameter_names() const {
  return {"lr", "momentum", "dampening", "weight_decay", "nesterov"};
}

std::vector<std::string> SGD::buffer_names() const { return {"momentum_buffer"}; }

void SGD::check_group(const ParamGroup& g) const {
  CIUIC_CHECK(g.lr >= 0, ValueError, "SGD", "lr ", g.lr, "; expected lr >= 0");
  CIUIC_CHECK(g.momentum >= 0, ValueError, "SGD", "momentum ", g.momentum, "; expected momentum >= 0");
  CIUIC_CHECK(g.weight_decay >= 0, ValueError, "SGD", "weight_decay ", g.weight_decay, "; expected weight_decay >= 0");
  CIUIC_CHECK(!g.nesterov || (g.momentum > 0 && g.dampening == 0), ValueError, "SGD", "nesterov with momentum ",
              g.momentum, " and dampening ", g.dampening, "; expected momentum > 0 and dampening == 0");
}

void SGD::step() { run_step(Tensor()); }

void SGD::step(const Tensor& found_inf) {
  masters::check_found_inf("SGD", found_inf);
  run_step(found_inf);
}

void SGD::run_step(const Tensor& found_inf) {
  NoGradGuard no_grad;
  // A host-side flag is read once, up front; a device flag is read by the fused kernels.
  const bool device_flag = found_inf.defined() && found_inf.device().is_cuda();
  if (found_inf.defined() && !device_flag && masters::flag_set(found_inf)) {
    drop_master_grads();
    return;
  }
  // Earlier steps under device flags are settled first (a host read of their flags):
  // whether the momentum buffers are initialised depends on them.
  settle_deferred_steps();
  if (device_flag) begin_deferred_step(found_inf);
  int host_skip = -1;  // device flag read on the host for parameters outside the fused path (-1: not yet)
  for (std::size_t gi = 0; gi < param_groups().size(); ++gi) {
    const ParamGroup& g = param_groups()[gi];
    const bool has_momentum = g.momentum != 0;
    struct Batch {
      std::vector<masters::FusedParam> items;
      std::vector<std::size_t> index;
    };
    std::map<bool, Batch> fused;  // by first_step (momentum buffers not yet initialised)
    for (std::size_t i = 0; i < g.params.size(); ++i) {
      Tensor p = g.params[i];
      Tensor grad = step_gradient(gi, i);
      if (!grad.defined()) continue;
      ParamState& s = state_for(gi, i);
      const bool half = masters::is_half(p.dtype());
      if (p.device().is_cuda() && (half || p.dtype() == DType::f32)) {
        DeferredParam d{gi, i, s.step, {}};
        if (half && masters::ensure_master(s, p)) d.created.push_back("master");
        bool first = false;
        if (has_momentum && masters::ensure_buffer(s, "momentum_buffer", p, false)) {
          first = true;
          d.created.push_back("momentum_buffer");
        }
        ++s.step;
        Batch& batch = fused[first];
        batch.items.push_back({half ? s.buffers.at("master") : p.detach(), grad.detach().contiguous(),
                               has_momentum ? s.buffers.at("momentum_buffer") : Tensor(), Tensor(),
                               half ? p.detach() : Tensor()});
        batch.index.push_back(i);
        if (device_flag) add_deferred(std::move(d));
        continue;
      }
      if (device_flag) {
        if (host_skip < 0) host_skip = masters::flag_set(found_inf) ? 1 : 0;
        if (host_skip) continue;
      }
      if (half || p.dtype() == DType::f32) {
        const kernels::SgdConsts c = kernels::sgd_consts(hyper_of(g));
        if (half) masters::ensure_master(s, p);
        const bool first = has_momentum && masters::ensure_buffer(s, "momentum_buffer", p, false);
        const Tensor* buf = has_momentum ? &s.buffers.at("momentum_buffer") : nullptr;
        masters::sgd_step_cpu(p, half ? s.buffers.at("master") : Tensor(), buf, first, grad, c);
        if (half) masters::mark_master_synced(s, p);
        ++s.step;
        continue;
      }
      // f64: the tensor-op formula.
      Tensor d = g.weight_decay != 0 ? add(grad, mul(p, g.weight_decay)) : grad;
      if (has_momentum) {
        Tensor* buf = s.buffers.find("momentum_buffer");
        if (!buf) {
          // A copy: d may be the gradient itself, which clipping rescales in place.
          buf = &s.buffers.insert("momentum_buffer", d.clone());
        } else {
          if (buf->dtype() != p.dtype() || buf->device() != p.device()) *buf = buf->to(p.device(), p.dtype());
          *buf = add(mul(*buf, g.momentum), mul(d, 1.0 - g.dampening));
        }
        d = g.nesterov ? add(d, mul(*buf, g.momentum)) : *buf;
      }
      p.copy_(sub(p, mul(d, g.lr)));
      ++s.step;
    }
    for (auto& [first, batch] : fused) {
      masters::fused_sgd_cuda(batch.items, hyper_of(g), first, device_flag ? found_inf : Tensor());
      for (std::size_t i : batch.index) masters::mark_master_synced(state_for(gi, i), g.params[i]);
    }
  }
  drop_master_grads();
}

}  // namespace ciuic::optim
