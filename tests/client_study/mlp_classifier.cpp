// Client study (b): a 2-layer MLP classifier on three Gaussian blobs, from the README alone.
//   model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
//   opt = AdamW(lr=1e-2); sched = StepLR(opt, 50, 0.5)  (and a cosine schedule)
//   with torch.no_grad(): acc = (model(X).argmax(-1) == y).float().mean()
// Checks: the loss falls, the accuracy on held-out points is high, the schedules give the hand-computed lrs.
#include <ciuic/ciuic.h>

#include <cmath>
#include <cstdio>

using namespace ciuic;

static void make_blobs(int64_t n, Generator* g, Tensor& X, Tensor& y) {
  Tensor centers = tensor({{0.0, 4.0}, {4.0, -2.0}, {-4.0, -2.0}});
  y = randint(0, 3, {n}, DType::i64, g);              // i64 labels; the generator comes after the options
  X = centers.index({y}) + randn({n, 2}, {}, g);      // index with an integer tensor
}

int main() {
  try {
    manual_seed(0);
    Generator gtrain(1), gtest(2);
    Tensor X, y, Xt, yt;
    make_blobs(512, &gtrain, X, y);
    make_blobs(256, &gtest, Xt, yt);

    auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(2, 32), std::make_shared<nn::ReLU>(),
                                                  std::make_shared<nn::Linear>(32, 3));
    optim::AdamW opt(model->parameters(), optim::AdamWOptions(1e-2).weight_decay(1e-4));
    optim::StepLR sched(opt, /*step_size=*/50, /*gamma=*/0.5);

    double first = 0, last = 0;
    for (int epoch = 0; epoch < 150; ++epoch) {
      model->train();
      opt.zero_grad();
      Tensor loss = cross_entropy((*model)(X), y);
      loss.backward();
      opt.step();
      sched.step();
      if (epoch == 0) first = loss.item();
      last = loss.item();
    }
    // After 150 epochs: lr = 1e-2 * 0.5^3
    double lr = opt.param_groups()[0].lr;
    std::printf("loss %.4f -> %.4f, lr %.6g\n", first, last, lr);
    if (std::abs(lr - 1e-2 * 0.125) > 1e-12) { std::fprintf(stderr, "StepLR lr %g\n", lr); return 1; }

    double acc;
    model->eval();
    {
      NoGradGuard no_grad;
      Tensor logits = (*model)(Xt);
      if (logits.requires_grad()) { std::fprintf(stderr, "no_grad output requires grad\n"); return 1; }
      acc = mean((argmax(logits, -1) == yt).to(DType::f32)).item();
    }
    std::printf("test accuracy %.3f\n", acc);
    if (!(last < first / 4) || acc < 0.9) return 1;

    // A cosine schedule with warmup: lr_max 1.0, 10 warmup steps, 110 total steps.
    auto p = zeros({1}, TensorOptions(DType::f32).requires_grad());
    optim::SGD sgd({p}, optim::SGDOptions(1.0));
    optim::CosineWithWarmup cos(sgd, /*warmup_steps=*/10, /*total_steps=*/110, /*min_lr_ratio=*/0.0);
    std::vector<double> lrs;
    for (int s = 0; s < 110; ++s) {
      lrs.push_back(sgd.param_groups()[0].lr);
      sgd.step();
      cos.step();
    }
    // warmup: step s < 10 has lr s/10 (0 at the first step); then 0.5 * (1 + cos(pi * (s - 10) / 100))
    const double pi = std::acos(-1.0);
    for (int s : {0, 5, 9}) if (std::abs(lrs[s] - s / 10.0) > 1e-9) { std::fprintf(stderr, "warmup lr[%d] %g\n", s, lrs[s]); return 1; }
    for (int s : {10, 60, 109}) {
      double want = 0.5 * (1 + std::cos(pi * (s - 10) / 100.0));
      if (std::abs(lrs[s] - want) > 1e-9) { std::fprintf(stderr, "cosine lr[%d] %g want %g\n", s, lrs[s], want); return 1; }
    }
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
