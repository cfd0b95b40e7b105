// Printing for the activations with parameters added with ops.h's "unary math and activations".
#include "ciuic/nn/layers.h"

namespace ciuic::nn {

std::string LeakyReLU::extra_repr() const { return detail::concat("negative_slope=", negative_slope); }
std::string ELU::extra_repr() const { return detail::concat("alpha=", alpha); }
std::string Softplus::extra_repr() const { return detail::concat("beta=", beta, ", threshold=", threshold); }
std::string Hardtanh::extra_repr() const { return detail::concat("min_val=", min_val, ", max_val=", max_val); }

}  // namespace ciuic::nn
