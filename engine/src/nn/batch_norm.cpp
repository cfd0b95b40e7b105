// nn::BatchNorm2d.
#include "ciuic/autograd.h"
#include "ciuic/nn/layers.h"

namespace ciuic::nn {

BatchNorm2d::BatchNorm2d(std::int64_t c, double eps_, double momentum_, bool affine_, bool track)
    : Module("BatchNorm2d"), num_features(c), eps(eps_), momentum(momentum_), affine(affine_),
      track_running_stats(track) {
  const char* op = "BatchNorm2d";
  CIUIC_CHECK(c > 0, ValueError, op, "num_features ", c, "; expected num_features > 0");
  CIUIC_CHECK(eps > 0, ValueError, op, "eps ", eps, "; expected eps > 0");
  CIUIC_CHECK(momentum >= 0 && momentum <= 1, ValueError, op, "momentum ", momentum, "; expected 0 <= momentum <= 1");
  if (affine) {
    weight = register_parameter("weight", ones({c}));
    bias = register_parameter("bias", zeros({c}));
  }
  if (track) {
    running_mean = register_buffer("running_mean", zeros({c}));
    running_var = register_buffer("running_var", ones({c}));
    num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, DType::i64));
  }
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  CIUIC_CHECK(x.defined() && x.dim() == 4, ShapeError, "BatchNorm2d", "input ", describe(x),
              "; expected a 4-D input (N, C, H, W)");
  CIUIC_CHECK(x.size(1) == num_features, ShapeError, "BatchNorm2d", "input ", describe(x), " has ", x.size(1),
              " channels; expected ", num_features);
  if (!track_running_stats) return batch_norm(x, Tensor(), Tensor(), weight, bias, true, momentum, eps);
  if (!is_training()) return batch_norm(x, running_mean, running_var, weight, bias, false, momentum, eps);
  Tensor y = batch_norm(x, running_mean, running_var, weight, bias, true, momentum, eps);
  NoGradGuard no_grad;
  num_batches_tracked.copy_(add(num_batches_tracked, 1.0));
  return y;
}

std::string BatchNorm2d::extra_repr() const {
  return detail::concat(num_features, ", eps=", eps, ", momentum=", momentum, ", affine=", affine ? "true" : "false",
                        ", track_running_stats=", track_running_stats ? "true" : "false");
}

}  // namespace ciuic::nn
