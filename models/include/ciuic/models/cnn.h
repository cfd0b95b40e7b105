// A small CNN (conv-bn-relu-pool x2, global average pool, linear) and a
// synthetic image task: class k of K puts a bright square in its own region of
// the image, plus noise, so the classes are separable by a convolution.
#pragma once

#include <memory>

#include <ciuic/ciuic.h>
#include <ciuic/nn.h>

namespace ciuic::models {

struct CNNConfig {
  std::int64_t in_channels = 1, width = 8, classes = 4, image = 12;
};

class SmallCNN : public nn::Module {
 public:
  explicit SmallCNN(const CNNConfig& cfg = {}, Generator* gen = nullptr);
  // x (B, in_channels, H, W) -> logits (B, classes)
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<nn::Sequential> features;  // conv, bn, relu, pool, conv, bn, relu
  std::shared_ptr<nn::Linear> head;
};

// Images (n, in_channels, image, image) f32 and labels (n) i64.
struct ImageData {
  Tensor images, labels;
};
ImageData make_square_images(const CNNConfig& cfg, std::int64_t n, std::uint64_t seed, Device device = Device::cpu());

}  // namespace ciuic::models
