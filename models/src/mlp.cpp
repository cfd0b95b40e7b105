#include "ciuic/models/mlp.h"

namespace ciuic::models {

MLP::MLP(const MLPConfig& cfg, Generator* gen) : Module("MLP") {
  fc1 = register_module("fc1", std::make_shared<nn::Linear>(cfg.in, cfg.hidden, true, gen));
  fc2 = register_module("fc2", std::make_shared<nn::Linear>(cfg.hidden, cfg.out, true, gen));
}

Tensor MLP::forward(const Tensor& x) { return fc2->forward(relu(fc1->forward(x))); }

RegressionData make_teacher_data(const MLPConfig& cfg, std::int64_t n, std::uint64_t seed, Device device) {
  Generator gen{seed, 0};
  MLP teacher(cfg, &gen);
  NoGradGuard no_grad;
  Tensor x = randn({n, cfg.in}, DType::f32, &gen);
  Tensor y = teacher.forward(x);
  return {x.to(device), y.to(device)};
}

}  // namespace ciuic::models
