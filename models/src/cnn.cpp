#include "ciuic/models/cnn.h"

namespace ciuic::models {

SmallCNN::SmallCNN(const CNNConfig& cfg, Generator* gen) : Module("SmallCNN") {
  const std::int64_t w = cfg.width;
  auto conv = [&](std::int64_t in, std::int64_t out) {
    return std::make_shared<nn::Conv2d>(nn::Conv2dOptions(in, out, 3).padding(1), gen);
  };
  features = register_module("features", std::make_shared<nn::Sequential>(
      conv(cfg.in_channels, w), std::make_shared<nn::BatchNorm2d>(w), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::MaxPool2d>(2), conv(w, 2 * w), std::make_shared<nn::BatchNorm2d>(2 * w),
      std::make_shared<nn::ReLU>()));
  head = register_module("head", std::make_shared<nn::Linear>(2 * w, cfg.classes, true, gen));
}

Tensor SmallCNN::forward(const Tensor& x) {
  Tensor f = features->forward(x);                       // (B, 2w, H/2, W/2)
  Tensor pooled = adaptive_avg_pool2d(f, 1, 1).flatten(1);  // (B, 2w)
  return head->forward(pooled);
}

ImageData make_square_images(const CNNConfig& cfg, std::int64_t n, std::uint64_t seed, Device device) {
  Generator gen{seed, 0};
  const std::int64_t s = cfg.image, k = cfg.classes, c = cfg.in_channels;
  Tensor images = normal({n, c, s, s}, 0.0, 0.3, DType::f32, &gen);
  Tensor u = rand({n}, DType::f64, &gen);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(n));
  const std::int64_t side = s / 3;  // square size; class k's square starts at column/row positions on a grid
  for (std::int64_t i = 0; i < n; ++i) {
    std::int64_t label = std::min<std::int64_t>(k - 1, static_cast<std::int64_t>(u.select(0, i).item() * k));
    labels[i] = label;
    std::int64_t row = (label / 2) * (s - side), col = (label % 2) * (s - side);
    if (k > 4) row = (label * side) % (s - side + 1);  // more classes: spread along the rows
    images.select(0, i).slice(1, row, row + side).slice(2, col, col + side).copy_(
        add(images.select(0, i).slice(1, row, row + side).slice(2, col, col + side), 1.0));
  }
  return {images.to(device), from_vector(labels, {n}).to(device)};
}

}  // namespace ciuic::models
