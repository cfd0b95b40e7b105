// The classic two-layer MLP (Linear 100->100, ReLU, Linear 100->100) and a
// synthetic regression task for it: targets come from a fixed random "teacher"
// MLP of the same shape, so a low loss is reachable and measures learning.
#pragma once

#include <memory>

#include <ciuic/ciuic.h>
#include <ciuic/nn.h>

namespace ciuic::models {

struct MLPConfig {
  std::int64_t in = 100, hidden = 100, out = 100;
};

class MLP : public nn::Module {
 public:
  explicit MLP(const MLPConfig& cfg = {}, Generator* gen = nullptr);
  // x (B, in) -> (B, out)
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<nn::Linear> fc1, fc2;
};

// Inputs x ~ N(0, 1) of shape (n, in) and targets teacher(x), both f32 on device.
struct RegressionData {
  Tensor x, y;
};
RegressionData make_teacher_data(const MLPConfig& cfg, std::int64_t n, std::uint64_t seed, Device device = Device::cpu());

}  // namespace ciuic::models
