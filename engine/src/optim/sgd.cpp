// optim::SGD (PyTorch's semantics: momentum buffer starts as the first update direction).
#include "ciuic/autograd.h"
#include "ciuic/ops.h"
#include "ciuic/optim.h"

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

void SGD::step() {
  NoGradGuard no_grad;
  for (std::size_t gi = 0; gi < param_groups().size(); ++gi) {
    const ParamGroup& g = param_groups()[gi];
    for (std::size_t i = 0; i < g.params.size(); ++i) {
      Tensor p = g.params[i];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      ParamState& s = state_for(gi, i);
      Tensor d = g.weight_decay != 0 ? add(grad, mul(p, g.weight_decay)) : grad;
      if (g.momentum != 0) {
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
  }
}

}  // namespace ciuic::optim
