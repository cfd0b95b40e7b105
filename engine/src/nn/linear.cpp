// nn::Linear.
#include <cmath>

#include "ciuic/nn/init.h"
#include "ciuic/nn/layers.h"

namespace ciuic::nn {

Linear::Linear(std::int64_t in, std::int64_t out, bool with_bias, Generator* gen)
    : Module("Linear"), in_features(in), out_features(out) {
  CIUIC_CHECK(in > 0 && out > 0, ValueError, "Linear", "in_features ", in, ", out_features ", out,
              "; expected both > 0");
  weight = register_parameter("weight", empty({out, in}));
  if (with_bias) bias = register_parameter("bias", empty({out}));
  reset_parameters(gen);
}

void Linear::reset_parameters(Generator* gen) {
  // kaiming_uniform_(a = sqrt(5)) gives U(-1/sqrt(in), 1/sqrt(in)); the bias uses the same bound.
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::fan_in, init::Nonlinearity::leaky_relu, gen);
  if (bias.defined()) {
    double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

std::string Linear::extra_repr() const {
  return detail::concat("in_features=", in_features, ", out_features=", out_features,
                        ", bias=", bias.defined() ? "true" : "false");
}

}  // namespace ciuic::nn
