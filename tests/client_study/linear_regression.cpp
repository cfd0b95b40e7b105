// Client study (a): linear regression, as a PyTorch user translates it from the README alone.
//   model = nn.Linear(3, 1); opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
//   for step in range(200): opt.zero_grad(); loss = MSELoss()(model(X), y); loss.backward(); opt.step()
// Checks: the loss falls by 100x and the learned weights equal the true ones.
#include <ciuic/ciuic.h>

#include <cmath>
#include <cstdio>

using namespace ciuic;

int main() {
  try {
    manual_seed(0);
    Tensor X = randn({256, 3});
    Tensor w_true = tensor({1.5, -2.0, 0.5}).view({3, 1});  // torch.tensor([[1.5], [-2.0], [0.5]])
    Tensor y = matmul(X, w_true) + 0.25 + randn({256, 1}) * 0.01;

    auto model = std::make_shared<nn::Linear>(3, 1);
    optim::SGD opt(model->parameters(), optim::SGDOptions(0.1).momentum(0.9));
    double first = 0, last = 0;
    for (int step = 0; step < 200; ++step) {
      opt.zero_grad();
      Tensor loss = mse_loss((*model)(X), y);
      loss.backward();
      opt.step();
      if (step == 0) first = loss.item();
      last = loss.item();
      if (step % 50 == 0) std::printf("step %d loss %.6f\n", step, loss.item());
    }
    std::printf("loss %.6f -> %.6f\n", first, last);
    if (!(last < first / 100)) { std::fprintf(stderr, "loss did not fall\n"); return 1; }

    // model.weight / model.bias
    Tensor w = model->weight, b = model->bias;
    if (w.sizes() != std::vector<int64_t>{1, 3}) { std::fprintf(stderr, "weight shape %s\n", w.str().c_str()); return 1; }
    if (!allclose(w.detach(), w_true.t(), 0, 0.01)) { std::fprintf(stderr, "w %s\n", w.str().c_str()); return 1; }
    if (std::abs(b.item() - 0.25) > 0.01) { std::fprintf(stderr, "b %f\n", b.item()); return 1; }
    std::printf("w %s b %.4f\n", w.str().c_str(), b.item());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
