// optim::AdamW (decoupled weight decay, bias-corrected moments, optional AMSGrad).
#include <cmath>

#include "ciuic/autograd.h"
#include "ciuic/ops.h"
#include "ciuic/optim.h"

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

// Makes buffer `name` of s exist with p's dtype and device (zeros like p when absent).
void ensure_moment(ParamState& s, const char* name, const Tensor& p) {
  Tensor* b = s.buffers.find(name);
  if (!b)
    s.buffers.insert(name, zeros(p.shape(), TensorOptions(p.dtype()).device(p.device())));
  else if (b->dtype() != p.dtype() || b->device() != p.device())
    *b = b->to(p.device(), p.dtype());
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

void AdamW::step() {
  NoGradGuard no_grad;
  for (std::size_t gi = 0; gi < param_groups().size(); ++gi) {
    const ParamGroup& g = param_groups()[gi];
    for (std::size_t i = 0; i < g.params.size(); ++i) {
      Tensor p = g.params[i];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      ParamState& s = state_for(gi, i);
      const double t = static_cast<double>(++s.step);
      ensure_moment(s, "exp_avg", p);
      ensure_moment(s, "exp_avg_sq", p);
      if (g.amsgrad) ensure_moment(s, "max_exp_avg_sq", p);
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
  }
}

}  // namespace ciuic::optim
