// The demo training job (./run.sh demo): trains the classic MLP on a teacher
// regression task with SGD + momentum and MSE, then the small CNN on synthetic
// images with AdamW, a cosine schedule and gradient clipping, and saves the CNN's
// weights as safetensors. Everything goes through the public API.
//   demo [--mlp-steps N] [--cnn-steps N] [--out PATH]
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include <ciuic/ciuic.h>
#include <ciuic/io.h>
#include <ciuic/nn.h>
#include <ciuic/optim.h>

#include "ciuic/models/cli.h"
#include "ciuic/models/cnn.h"
#include "ciuic/models/mlp.h"

using namespace ciuic;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void train_mlp(int steps) {
  models::MLPConfig cfg;
  auto data = models::make_teacher_data(cfg, 512, /*seed=*/1);
  Generator init{2, 0};
  auto net = std::make_shared<models::MLP>(cfg, &init);
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.05).momentum(0.9));
  std::int64_t count = 0;
  for (const Tensor& p : net->parameters()) count += p.numel();
  std::printf("MLP %lld->%lld->%lld, %lld parameters, SGD(lr=0.05, momentum=0.9), MSE, batch 64\n",
              (long long)cfg.in, (long long)cfg.hidden, (long long)cfg.out, (long long)count);
  auto t0 = std::chrono::steady_clock::now();
  const std::int64_t n = data.x.size(0), batch = 64;
  for (int step = 0; step <= steps; ++step) {
    std::int64_t start = (step * batch) % n;
    Tensor x = data.x.narrow(0, start, batch), y = data.y.narrow(0, start, batch);
    opt.zero_grad();
    Tensor loss = mse_loss(net->forward(x), y);
    loss.backward();
    opt.step();
    if (step % (steps / 10) == 0) std::printf("  step %4d  loss %.6f\n", step, loss.item());
  }
  NoGradGuard ng;
  double full = mse_loss(net->forward(data.x), data.y).item();
  std::printf("  final loss on all 512 samples %.6f (%.2f s)\n", full, seconds_since(t0));
}

void train_cnn(int steps, const std::string& out) {
  models::CNNConfig cfg;
  auto train = models::make_square_images(cfg, 512, /*seed=*/3);
  auto test = models::make_square_images(cfg, 256, /*seed=*/4);
  Generator init{5, 0};
  auto net = std::make_shared<models::SmallCNN>(cfg, &init);
  optim::AdamW opt(net->parameters(), optim::AdamWOptions(3e-3).weight_decay(0.01));
  optim::CosineWithWarmup schedule(opt, steps / 10, steps, 0.1);
  std::printf("\nSmallCNN on %lldx%lld synthetic images, %lld classes, AdamW(3e-3) + cosine, clip 1.0, batch 32\n",
              (long long)cfg.image, (long long)cfg.image, (long long)cfg.classes);
  auto t0 = std::chrono::steady_clock::now();
  const std::int64_t n = train.images.size(0), batch = 32;
  net->train();
  for (int step = 0; step <= steps; ++step) {
    std::int64_t start = (step * batch) % n;
    schedule.step();
    opt.zero_grad();
    Tensor loss = cross_entropy(net->forward(train.images.narrow(0, start, batch)), train.labels.narrow(0, start, batch));
    loss.backward();
    double norm = optim::clip_grad_norm_(net->parameters(), 1.0);
    opt.step();
    if (step % (steps / 10) == 0) std::printf("  step %4d  loss %.4f  grad-norm %.3f\n", step, loss.item(), norm);
  }
  net->eval();
  NoGradGuard ng;
  Tensor pred = argmax(net->forward(test.images), 1);
  double acc = mean(eq(pred, test.labels).to(DType::f32)).item();
  std::printf("  held-out accuracy %.1f%% on 256 images (%.2f s)\n", 100 * acc, seconds_since(t0));
  if (!out.empty()) {
    std::vector<std::pair<std::string, Tensor>> named;
    for (auto& [k, v] : net->state_dict()) named.emplace_back(k, v);
    save_safetensors(out, named, {{"model", "SmallCNN"}, {"held_out_accuracy", std::to_string(acc)}});
    std::printf("  weights saved to %s (%zu tensors)\n", out.c_str(), named.size());
  }
}

}  // namespace

int main(int argc, char** argv) {
  int mlp_steps = 3000, cnn_steps = 600;
  std::string out = "demo_cnn.safetensors";
  cli::Parser p("demo", "[--mlp-steps N] [--cnn-steps N] [--out PATH]", argc, argv);
  while (p.next()) {
    if (p.is("--mlp-steps")) mlp_steps = p.integer(1, 100'000'000);
    else if (p.is("--cnn-steps")) cnn_steps = p.integer(1, 100'000'000);
    else if (p.is("--out")) out = p.text();
    else return p.unknown();
  }
  if (p.stop()) return p.exit_code();
  try {
    manual_seed(0);
    train_mlp(std::max(mlp_steps, 10));
    train_cnn(std::max(cnn_steps, 10), out);
  } catch (const Error& e) {
    std::cerr << "demo failed: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {  // e.g. std::bad_alloc from the standard library
    std::cerr << "demo failed: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
