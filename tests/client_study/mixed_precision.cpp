// Client study (f): mixed precision as in PyTorch (torch.autocast + GradScaler), gradient clipping and gradient
// accumulation, from the README alone.
//   with torch.autocast("cpu", dtype=torch.float16): loss = F.cross_entropy(model(x), y)
//   scaler.scale(loss).backward(); scaler.unscale_(opt); clip_grad_norm_(model.parameters(), 1.0)
//   scaler.step(opt); scaler.update()
#include <ciuic/amp.h>
#include <ciuic/ciuic.h>

#include <cmath>
#include <cstdio>

using namespace ciuic;

static std::shared_ptr<nn::Sequential> make_model() {
  return std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(8, 64), std::make_shared<nn::GELU>(),
                                          std::make_shared<nn::Linear>(64, 4));
}

int main() {
  try {
    manual_seed(0);
    Tensor X = randn({128, 8});
    Tensor y = argmax(matmul(X, randn({8, 4})), -1);  // a learnable labelling

    // 1. autocast + loss scaling + clipping
    auto model = make_model();
    optim::AdamW opt(model->parameters(), optim::AdamWOptions(3e-3));
    amp::LossScaler scaler;
    double first = 0, last = 0, scale0 = scaler.get_scale();
    for (int step = 0; step < 100; ++step) {
      opt.zero_grad();
      Tensor loss;
      {
        amp::AutocastGuard autocast(DType::f16);
        Tensor logits = (*model)(X);
        if (logits.dtype() != DType::f16) { std::fprintf(stderr, "autocast logits %s\n", logits.str().c_str()); return 1; }
        loss = cross_entropy(logits, y);
      }
      if (loss.dtype() != DType::f32) { std::fprintf(stderr, "loss dtype\n"); return 1; }
      scaler.scale(loss).backward();
      scaler.unscale_(opt);
      double norm = optim::clip_grad_norm_(model->parameters(), 1.0);
      if (!std::isfinite(norm)) { std::fprintf(stderr, "norm %f\n", norm); return 1; }
      scaler.step(opt);
      scaler.update();
      if (step == 0) first = loss.item();
      last = loss.item();
    }
    std::printf("autocast f16: loss %.4f -> %.4f, scale %g -> %g\n", first, last, scale0, scaler.get_scale());
    if (!(last < first / 2)) return 1;
    for (auto& p : model->parameters())
      if (p.dtype() != DType::f32 || p.grad().dtype() != DType::f32) { std::fprintf(stderr, "param/grad not f32\n"); return 1; }

    // 2. gradient clipping: the returned norm is the total norm before clipping, after it the norm is max_norm
    auto m2 = make_model();
    sum(pow((*m2)(X), 2)).backward();
    double total = 0;
    for (auto& p : m2->parameters()) total += sum(p.grad() * p.grad()).item();
    total = std::sqrt(total);
    double returned = optim::clip_grad_norm_(m2->parameters(), 0.5);
    double after = 0;
    for (auto& p : m2->parameters()) after += sum(p.grad() * p.grad()).item();
    after = std::sqrt(after);
    std::printf("clip: total %.5f returned %.5f after %.5f\n", total, returned, after);
    if (std::abs(returned - total) > 1e-4 * total || std::abs(after - 0.5) > 1e-4) return 1;

    // 3. gradient accumulation: 4 micro-batches of loss / 4 give the full batch's gradient
    auto m3 = make_model();
    m3->zero_grad();
    cross_entropy((*m3)(X), y).backward();
    std::vector<Tensor> full;
    for (auto& p : m3->parameters()) full.push_back(p.grad().clone());
    m3->zero_grad();
    for (auto [xb, yb] = std::pair{chunk(X, 4, 0), chunk(y, 4, 0)}; auto i : {0, 1, 2, 3})
      (cross_entropy((*m3)(xb[i]), yb[i]) / 4.0).backward();
    auto ps = m3->parameters();
    for (size_t i = 0; i < ps.size(); ++i)
      if (!allclose(ps[i].grad(), full[i], 1e-4, 1e-6)) { std::fprintf(stderr, "accumulated grad %zu differs\n", i); return 1; }
    std::printf("gradient accumulation matches the full batch\n");
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
