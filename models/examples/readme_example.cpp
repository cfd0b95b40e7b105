// The README's example, compiled and run by `meson test` so that it stays true.
#include <ciuic/ciuic.h>

#include <cstdio>

using namespace ciuic;

// A model is a Module that registers its parameters and children by name.
struct Net : nn::Module {
  std::shared_ptr<nn::Linear> fc1, fc2;
  Net() : Module("Net") {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(100, 100));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(100, 100));
  }
  Tensor forward(const Tensor& x) override { return fc2->forward(relu(fc1->forward(x))); }
};

int main() {
  try {
    manual_seed(0);
    auto net = std::make_shared<Net>();
    Tensor x = randn({64, 100}), y = randn({64, 100});  // a fixed synthetic batch to fit
    optim::SGD opt(net->parameters(), optim::SGDOptions(0.05).momentum(0.9));
    double first = 0, last = 0;
    for (int step = 0; step < 500; ++step) {
      opt.zero_grad();
      Tensor loss = mse_loss(net->forward(x), y);
      loss.backward();
      opt.step();
      if (step == 0) first = loss.item();
      last = loss.item();
    }
    std::printf("loss %.4f -> %.4f\n", first, last);
    save_safetensors("net.safetensors", net->state_dict().items());  // readable from Python's safetensors
    nn::StateDict loaded;
    for (auto& [name, t] : load_safetensors("net.safetensors")) loaded.insert(name, t);
    Net copy;
    copy.load_state_dict(loaded);  // missing, unexpected or mis-shaped keys are clear errors
    return last < first / 10 ? 0 : 1;  // it learned
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
