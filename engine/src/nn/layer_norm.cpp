// nn::LayerNorm.
#include "ciuic/nn/layers.h"

namespace ciuic::nn {

LayerNorm::LayerNorm(Shape shape, double eps_, bool affine)
    : Module("LayerNorm"), normalized_shape(std::move(shape)), eps(eps_), elementwise_affine(affine) {
  CIUIC_CHECK(!normalized_shape.empty(), ValueError, "LayerNorm", "empty normalized_shape; expected at least one dim");
  for (std::int64_t d : normalized_shape)
    CIUIC_CHECK(d > 0, ValueError, "LayerNorm", "normalized_shape ", shape_str(normalized_shape),
                "; expected every size > 0");
  CIUIC_CHECK(eps > 0, ValueError, "LayerNorm", "eps ", eps, "; expected eps > 0");
  if (affine) {
    weight = register_parameter("weight", ones(normalized_shape));
    bias = register_parameter("bias", zeros(normalized_shape));
  }
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, normalized_shape, weight, bias, eps); }

std::string LayerNorm::extra_repr() const {
  return detail::concat(shape_str(normalized_shape), ", eps=", eps,
                        ", elementwise_affine=", elementwise_affine ? "true" : "false");
}

}  // namespace ciuic::nn
