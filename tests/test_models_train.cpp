// The models of models/ train to a low loss within seconds on the CPU.
#include "ciuic/ciuic.h"
#include "ciuic/models/cnn.h"
#include "ciuic/models/mlp.h"
#include "test_util.h"

using namespace ciuic;

TEST_CASE("the MLP (Linear 100->100, ReLU, Linear 100->100) fits its teacher with SGD and MSE", "[nn][models]") {
  models::MLPConfig cfg;
  auto data = models::make_teacher_data(cfg, 256, /*seed=*/1);
  Generator init{2, 0};
  models::MLP net(cfg, &init);
  optim::SGD opt(net.parameters(), optim::SGDOptions(0.05).momentum(0.9));
  double first = 0, last = 0;
  for (int step = 0; step < 600; ++step) {
    std::int64_t start = (step * 64) % 256;
    opt.zero_grad();
    Tensor loss = mse_loss(net.forward(data.x.narrow(0, start, 64)), data.y.narrow(0, start, 64));
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item();
  }
  {
    NoGradGuard ng;
    last = mse_loss(net.forward(data.x), data.y).item();
  }
  INFO("loss " << first << " -> " << last);
  CHECK(last < first / 5);
}

TEST_CASE("the small CNN learns the synthetic image classes", "[nn][models]") {
  models::CNNConfig cfg;
  auto train = models::make_square_images(cfg, 256, 3), test = models::make_square_images(cfg, 128, 4);
  Generator init{5, 0};
  models::SmallCNN net(cfg, &init);
  optim::AdamW opt(net.parameters(), optim::AdamWOptions(3e-3));
  net.train();
  double first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    std::int64_t start = (step * 32) % 256;
    opt.zero_grad();
    Tensor loss = cross_entropy(net.forward(train.images.narrow(0, start, 32)), train.labels.narrow(0, start, 32));
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item();
    last = loss.item();
  }
  net.eval();
  NoGradGuard ng;
  double acc = mean(eq(argmax(net.forward(test.images), 1), test.labels).to(DType::f32)).item();
  INFO("loss " << first << " -> " << last << ", held-out accuracy " << acc);
  CHECK(last < first / 2);
  CHECK(acc > 0.9);
}
