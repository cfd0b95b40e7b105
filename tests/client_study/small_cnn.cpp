// Client study (c): a small CNN, from the README alone.
//   nn.Sequential(Conv2d(1, 8, 3, padding=1), BatchNorm2d(8), ReLU(), MaxPool2d(2), Flatten(), Dropout(0.25),
//                 Linear(8 * 4 * 4, 2))
// Task: is the bright bar in an 8x8 image horizontal or vertical? model.train() for the loop, model.eval() to
// evaluate, state_dict to safetensors and back into a fresh model, same eval outputs.
#include <ciuic/ciuic.h>

#include <cstdio>
#include <filesystem>

using namespace ciuic;
using namespace ciuic::indexing;

static std::shared_ptr<nn::Sequential> make_model() {
  return std::make_shared<nn::Sequential>(
      std::make_shared<nn::Conv2d>(1, 8, 3, /*stride=*/1, /*padding=*/1), std::make_shared<nn::BatchNorm2d>(8),
      std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Dropout>(0.25), std::make_shared<nn::Linear>(8 * 4 * 4, 2));
}

// n images (n, 1, 8, 8): label 0 = a horizontal bar in a random row, 1 = a vertical bar in a random column.
static void make_bars(int64_t n, Generator* g, Tensor& X, Tensor& y) {
  X = randn({n, 1, 8, 8}, {}, g) * 0.3;
  y = randint(0, 2, {n}, DType::i64, g);
  Tensor pos = randint(0, 8, {n}, DType::i64, g);
  for (int64_t i = 0; i < n; ++i) {
    int64_t p = pos.index({i}).item<int64_t>();
    if (y.index({i}).item<int64_t>() == 0) X.index({i, 0, p}).add_(2.0);
    else X.index({i, 0, Slice(), p}).add_(2.0);
  }
}

int main() {
  try {
    manual_seed(0);
    Generator g(7);
    Tensor X, y, Xt, yt;
    make_bars(128, &g, X, y);
    make_bars(64, &g, Xt, yt);

    auto model = make_model();
    optim::SGD opt(model->parameters(), optim::SGDOptions(0.05).momentum(0.9));
    double first = 0, last = 0;
    model->train();
    for (int step = 0; step < 60; ++step) {
      opt.zero_grad();
      Tensor loss = cross_entropy((*model)(X), y);
      loss.backward();
      opt.step();
      if (step == 0) first = loss.item();
      last = loss.item();
    }
    model->eval();
    Tensor out;
    {
      NoGradGuard no_grad;
      out = (*model)(Xt);
    }
    double acc = mean((argmax(out, -1) == yt).to(DType::f32)).item();
    std::printf("loss %.4f -> %.4f, test accuracy %.3f\n", first, last, acc);
    if (!(last < first / 3) || acc < 0.9) return 1;

    // eval() is deterministic: dropout off, batch norm on running statistics.
    Tensor out2 = (*model)(Xt).detach();
    if (!equal(out, out2)) { std::fprintf(stderr, "eval outputs differ between two calls\n"); return 1; }

    // torch.save(model.state_dict()) / model2.load_state_dict(torch.load(...))
    auto sd = model->state_dict();
        if (!sd.contains("1.running_mean") || !sd.contains("1.running_var")) {
      std::fprintf(stderr, "state_dict lacks the batch norm's running statistics\n");
      return 1;
    }
    const std::string path = "client_study_cnn.safetensors";
    save_state_dict(path, model->state_dict().items());
    auto copy = make_model();
    load_state_dict(path, copy->state_dict().items());
    copy->eval();
    Tensor out3;
    {
      NoGradGuard no_grad;
      out3 = (*copy)(Xt);
    }
    std::filesystem::remove(path);
    if (!equal(out, out3)) { std::fprintf(stderr, "reloaded model gives other outputs\n"); return 1; }
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
