// Autocast coverage: the f32 ops (layer_norm, rms_norm, softmax, log_softmax,
// cross_entropy, mse_loss, batch_norm), the per-guard cast cache, and a post-LN
// model under the guard.
#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

TEST_CASE("autocast runs the normalisation, softmax and loss ops in f32", "[api][amp]") {
  Generator g{4, 0};
  Tensor x16 = randn({4, 6}, DType::f32, &g).to(DType::f16);
  Tensor w = randn({6}, DType::f32, &g).requires_grad_(), b = randn({6}, DType::f32, &g).requires_grad_();
  Tensor t = from_vector(std::vector<std::int64_t>{0, 5, 2, 3}, {4});
  {
    amp::AutocastGuard autocast(DType::f16);
    Tensor ln = layer_norm(x16, {6}, w, b);  // f16 input, f32 weights: fine under autocast
    CHECK(ln.dtype() == DType::f32);
    CHECK(allclose(ln, layer_norm(x16.to(DType::f32), {6}, w, b)));
    CHECK(rms_norm(x16, {6}, w).dtype() == DType::f32);
    CHECK(softmax(x16).dtype() == DType::f32);
    CHECK(log_softmax(x16, 0).dtype() == DType::f32);
    CHECK(cross_entropy(x16, t).dtype() == DType::f32);
    CHECK(mse_loss(x16, randn({4, 6}, DType::f32, &g)).dtype() == DType::f32);
    Tensor img = randn({2, 3, 4, 4}, DType::f32, &g).to(DType::bf16);
    Tensor rm = zeros({3}), rv = ones({3});
    Tensor bn = batch_norm(img, rm, rv, ones({3}), zeros({3}), true);
    CHECK(bn.dtype() == DType::f32);
    CHECK(rm.dtype() == DType::f32);
    CHECK_FALSE(equal(rm, zeros({3})));  // running statistics updated in place, in f32
  }
  // outside the guard the mismatch is still reported
  CHECK_THROWS_WITH_ALL(layer_norm(x16, {6}, w, b), DTypeError, "layer_norm", "f16", "f32");
}

TEST_CASE("autocast casts each parameter once per guard", "[api][amp]") {
  Tensor w = randn({4, 4}).requires_grad_();
  Tensor x = randn({2, 4});
  Tensor first, again, after_write, y;
  {
    amp::AutocastGuard autocast(DType::f16);
    first = (*amp::autocast_args({&w}))[0];
    again = (*amp::autocast_args({&w}))[0];
    CHECK(first.same(again));  // one cast, shared by every use in this forward
    CHECK(first.dtype() == DType::f16);
    y = linear(linear(x, w), w);  // both linears use the cached cast
    {
      NoGradGuard ng;
      w.mul_(2.0);  // a changed parameter is cast again
    }
    after_write = (*amp::autocast_args({&w}))[0];
    CHECK_FALSE(after_write.same(first));
    Tensor a = x.detach();
    CHECK_FALSE((*amp::autocast_args({&a}))[0].same((*amp::autocast_args({&a}))[0]));  // activations: not cached
  }
  sum(y.to(DType::f32)).backward();  // gradients flow through the shared cast to w (in f32)
  REQUIRE(w.grad().defined());
  CHECK(w.grad().dtype() == DType::f32);
  {
    amp::AutocastGuard autocast(DType::f16);
    CHECK_FALSE((*amp::autocast_args({&w}))[0].same(after_write));  // a new guard starts empty
  }
}

TEST_CASE("a post-LN model runs under autocast as it is", "[api][amp]") {
  struct PostLN : nn::Module {
    std::shared_ptr<nn::Linear> fc1, fc2;
    std::shared_ptr<nn::LayerNorm> ln1, ln2;
    PostLN() : Module("PostLN") {
      Generator g{7, 0};
      fc1 = register_module("fc1", std::make_shared<nn::Linear>(8, 8, true, &g));
      ln1 = register_module("ln1", std::make_shared<nn::LayerNorm>(8));
      fc2 = register_module("fc2", std::make_shared<nn::Linear>(8, 3, true, &g));
      ln2 = register_module("ln2", std::make_shared<nn::LayerNorm>(3));
    }
    Tensor forward(const Tensor& x) override { return ln2->forward(fc2->forward(gelu(ln1->forward(x + fc1->forward(x))))); }
  } net;
  Generator g{8, 0};
  Tensor x = randn({5, 8}, DType::f32, &g);
  Tensor t = from_vector(std::vector<std::int64_t>{0, 1, 2, 1, 0}, {5});
  const double ref = cross_entropy(net.forward(x), t).item();
  net.zero_grad();
  Tensor loss;
  {
    amp::AutocastGuard autocast(DType::f16);
    loss = cross_entropy(net.forward(x), t);
  }
  CHECK(loss.dtype() == DType::f32);
  CHECK(loss.item() == Approx(ref).epsilon(1e-2));
  loss.backward();
  for (auto& [name, p] : net.named_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().dtype() == DType::f32);
  }
}
