// Printing for the header-only activations, and nn::Dropout.
#include "ciuic/nn/layers.h"

namespace ciuic::nn {

std::string GELU::extra_repr() const {
  return approximate == GeluApprox::tanh ? "approximate=tanh" : "approximate=none";
}

std::string Flatten::extra_repr() const { return detail::concat("start_dim=", start_dim, ", end_dim=", end_dim); }

Dropout::Dropout(double p_, Generator* gen_) : Module("Dropout"), p(p_), gen(gen_) {
  CIUIC_CHECK(p >= 0 && p <= 1, ValueError, "Dropout", "p ", p, "; expected 0 <= p <= 1");
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training(), gen); }

std::string Dropout::extra_repr() const { return detail::concat("p=", p); }

}  // namespace ciuic::nn
