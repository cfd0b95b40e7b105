// A client of ciuic, built from outside the project: once through the README's
// Meson subproject snippet, once with g++ and `pkg-config --cflags --libs ciuic`
// (and once through CMake's pkg_check_modules when cmake is installed). Built
// without -std=c++20 on purpose: ciuic_dep and ciuic.pc must carry it.
// One training run of a linear regression: exits 0 when the loss fell 10x.
#include <ciuic/ciuic.h>

#include <cstdio>

using namespace ciuic;

int main() {
  try {
    manual_seed(0);
    Tensor x = randn({64, 8}), w_true = randn({8, 1});
    Tensor y = matmul(x, w_true);
    nn::Linear model(8, 1);
    optim::SGD opt(model.parameters(), optim::SGDOptions(0.1));
    double first = 0, last = 0;
    for (int step = 0; step < 100; ++step) {
      opt.zero_grad();
      Tensor loss = mse_loss(model(x), y);
      loss.backward();
      opt.step();
      if (step == 0) first = loss.item();
      last = loss.item();
    }
    std::printf("consumer: loss %.5f -> %.5f\n", first, last);
    return last < first / 10 ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
