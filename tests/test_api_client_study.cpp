// The API the second client study found missing (tests/client_study/README.md): torch.tensor's
// factory, sizes(), retain_grad and Tensor::register_hook, autograd::grad, min / argmin / any /
// all, cumsum, StepLR.
#include <climits>
#include <cmath>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

TEST_CASE("tensor() infers dtypes as torch.tensor and converts to a given dtype", "[api][tensor]") {
  Tensor f = tensor({1.5, -2.0});
  CHECK(f.dtype() == DType::f32);
  CHECK(f.shape() == Shape{2});
  CHECK(f.to_vector<double>() == std::vector<double>{1.5, -2.0});
  CHECK(tensor({1.5f, 2.0f}).dtype() == DType::f32);
  Tensor i = tensor({3, -4, 5});
  CHECK(i.dtype() == DType::i64);
  CHECK(i.to_vector<std::int64_t>() == std::vector<std::int64_t>{3, -4, 5});
  CHECK(tensor({true, false}).dtype() == DType::boolean);
  CHECK(tensor({true, false}).to_vector<std::uint8_t>() == std::vector<std::uint8_t>{1, 0});
  Tensor m = tensor({{1, 2, 3}, {4, 5, 6}}, DType::f64);
  CHECK(m.dtype() == DType::f64);
  CHECK(m.sizes() == Shape{2, 3});
  CHECK(m.to_vector<double>() == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(tensor({{0.5, 1.0}}).dtype() == DType::f32);
  // i64 beyond 2^53 stays exact; floats convert as to() does (truncate toward zero).
  CHECK(tensor({std::int64_t{9007199254740993}}).to_vector<std::int64_t>()[0] == 9007199254740993);
  CHECK(tensor({2.7, -2.7}, DType::i32).to_vector<std::int32_t>() == std::vector<std::int32_t>{2, -2});
  CHECK(tensor(std::vector<float>{1, 2, 3}).shape() == Shape{3});
  CHECK(tensor(std::vector<int>{7}).dtype() == DType::i64);
  Tensor r = tensor({1.0, 2.0}, TensorOptions(DType::f64).requires_grad());
  CHECK(r.requires_grad());
  CHECK(r.is_leaf());
  CHECK(tensor(std::vector<double>{}).shape() == Shape{0});
  CHECK_THROWS_WITH_ALL(tensor({{1, 2}, {3}}), ShapeError, "tensor", "row 1", "expected rows of equal length");
  Tensor s = scalar_tensor(3.5);
  CHECK(s.dim() == 0);
  CHECK(s.dtype() == DType::f32);
  CHECK(s.item() == 3.5);
  CHECK(scalar_tensor(7, DType::i64).item<std::int64_t>() == 7);
}

TEST_CASE("retain_grad keeps and accumulates a non-leaf's gradient", "[api][autograd]") {
  Tensor a = tensor({1.0, 2.0, 3.0}, DType::f64).requires_grad_();
  Tensor h = a * a;
  CHECK_FALSE(h.retains_grad());
  h.retain_grad();
  h.retain_grad();  // twice is once
  CHECK(h.retains_grad());
  sum(h * 3.0).backward(Tensor(), /*retain_graph=*/true);
  REQUIRE(h.grad().defined());
  CHECK(h.grad().to_vector<double>() == std::vector<double>{3, 3, 3});
  CHECK(a.grad().to_vector<double>() == std::vector<double>{6, 12, 18});
  sum(h * 3.0).backward();  // accumulates, as a leaf's .grad does
  CHECK(h.grad().to_vector<double>() == std::vector<double>{6, 6, 6});
  // a view passes its gradient on unchanged: the leaf's in-place accumulation must not reach h2.grad
  Tensor b = tensor({1.0, 2.0}, DType::f64).requires_grad_();
  Tensor h2 = b.view({2, 1});
  h2.retain_grad();
  h2.backward(ones({2, 1}, DType::f64), /*retain_graph=*/true);
  h2.backward(ones({2, 1}, DType::f64));
  CHECK(h2.grad().to_vector<double>() == std::vector<double>{2, 2});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{2, 2});
  a.retain_grad();  // a no-op on a leaf
  CHECK_FALSE(a.retains_grad());
  CHECK_THROWS_WITH_ALL(ones({2}).retain_grad(), AutogradError, "retain_grad", "does not require grad");
  CHECK_THROWS_AS(Tensor().retain_grad(), ValueError);
}

TEST_CASE("Tensor::register_hook takes hooks returning a tensor or nothing", "[api][autograd]") {
  Tensor a = tensor({1.0, 2.0}, DType::f64).requires_grad_();
  int seen = 0;
  a.register_hook([&](const Tensor& g) { seen += static_cast<int>(g.numel()); });        // void: observes
  a.register_hook([](const Tensor& g) { return g * 10.0; });                            // replaces
  Tensor h = a * 2.0;
  h.register_hook([](const Tensor& g) { return g + 1.0; });  // a non-leaf hook
  sum(h).backward();
  CHECK(seen == 2);
  CHECK(a.grad().to_vector<double>() == std::vector<double>{40, 40});  // ((1 + 1) * 2) * 10
  CHECK_THROWS_WITH_ALL(ones({1}).register_hook([](const Tensor& g) { return g; }), AutogradError,
                        "register_hook", "does not require grad");
}

TEST_CASE("autograd::grad is torch.autograd.grad", "[api][autograd]") {
  Tensor u = tensor({0.5, -1.0}, DType::f64).requires_grad_();
  auto g = autograd::grad({sum(u * u * u)}, {u});
  REQUIRE(g.size() == 1);
  CHECK(g[0].to_vector<double>() == std::vector<double>{0.75, 3.0});
  CHECK_FALSE(u.grad().defined());
  autograd::backward({sum(u * 2.0)});
  CHECK(u.grad().to_vector<double>() == std::vector<double>{2, 2});
}

TEST_CASE("min, argmin, any, all as in PyTorch", "[api][ops]") {
  Tensor x = tensor({{3.0, -1.0, 2.0}, {-1.0, 5.0, -4.0}});
  CHECK(min(x).item() == -4.0);
  auto [v, i] = min(x, 1);
  CHECK(v.to_vector<double>() == std::vector<double>{-1, -4});
  CHECK(i.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 2});
  CHECK(argmin(x, 0).to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 0, 1});
  CHECK(min(x, 0, true).first.shape() == Shape{1, 3});
  CHECK(argmin(tensor({2.0, 1.0, 1.0}), 0).item<std::int64_t>() == 1);  // ties: the first index
  CHECK(std::isnan(min(tensor({1.0, std::nan(""), -3.0})).item()));               // nan propagates
  // integers: the order reversal never overflows
  Tensor ints = tensor({INT_MAX, INT_MIN, 0}, DType::i32);
  CHECK(min(ints).item<std::int64_t>() == INT_MIN);
  CHECK(min(ints).dtype() == DType::i32);
  CHECK(min(tensor({LLONG_MIN, LLONG_MAX})).item<std::int64_t>() == LLONG_MIN);
  CHECK(min(tensor({200, 7, 255}, DType::u8)).item<std::int64_t>() == 7);
  CHECK(min(tensor({true, false})).item<bool>() == false);
  CHECK(min(tensor({true, true})).item<bool>() == true);
  CHECK_THROWS_WITH_ALL(min(zeros({0})), ShapeError, "min", "empty");
  CHECK_THROWS_WITH_ALL(min(x, 2), IndexError, "min");

  CHECK(any(tensor({0, 0, 3})).item<bool>());
  CHECK_FALSE(any(zeros({4})).item<bool>());
  CHECK(any(tensor({0.0, std::nan("")})).item<bool>());       // nan is nonzero
  CHECK(any(tensor({0.0, std::nan("")})).dtype() == DType::boolean);
  CHECK_FALSE(any(zeros({0})).item<bool>());
  CHECK(all(zeros({0})).item<bool>());
  CHECK(all(tensor({1, 2})).item<bool>());
  CHECK_FALSE(all(tensor({1, 0})).item<bool>());
  Tensor b = tensor({{true, false}, {true, true}});
  CHECK(all(b, 1).to_vector<std::uint8_t>() == std::vector<std::uint8_t>{0, 1});
  CHECK(any(b, 0).to_vector<std::uint8_t>() == std::vector<std::uint8_t>{1, 1});
  CHECK(any(b, -1, true).shape() == Shape{2, 1});
  CHECK(all(zeros({2, 0}), 1).to_vector<std::uint8_t>() == std::vector<std::uint8_t>{1, 1});
  CHECK(any(zeros({2, 0}), 1, true).shape() == Shape{2, 1});
}

TEST_CASE("min's gradient", "[api][gradcheck]") {
  Tensor x = tensor({{0.3, -1.2, 2.0}, {-0.7, 1.5, -2.5}}, DType::f64).requires_grad_();
  CHECK(gradcheck([](const std::vector<Tensor>& in) { return min(in[0], 1).first; }, {x}).ok);
  CHECK(gradcheck([](const std::vector<Tensor>& in) { return min(in[0], 0, true).first; }, {x}).ok);
  CHECK(gradcheck([](const std::vector<Tensor>& in) { return min(in[0]); }, {x}).ok);
  // ties share the full min's gradient, as max's do
  Tensor t = tensor({1.0, 1.0, 3.0}, DType::f64).requires_grad_();
  min(t).backward();
  CHECK(t.grad().to_vector<double>() == std::vector<double>{0.5, 0.5, 0});
}

TEST_CASE("cumsum values, dtypes and errors", "[api][ops]") {
  CHECK(cumsum(arange(5), 0).to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 1, 3, 6, 10});
  CHECK(cumsum(tensor({true, true, false}), 0).dtype() == DType::i64);
  CHECK(cumsum(tensor({1, 2}, DType::i32), 0).dtype() == DType::i64);
  CHECK(cumsum(tensor({250, 10}, DType::u8), 0).to_vector<std::int64_t>() == std::vector<std::int64_t>{250, 260});
  CHECK(cumsum(tensor({LLONG_MAX, 1LL}), 0).to_vector<std::int64_t>()[1] == LLONG_MIN);  // wraps
  Tensor m = arange(6, DType::f32).reshape({2, 3});
  CHECK(cumsum(m, 1).to_vector<float>() == std::vector<float>{0, 1, 3, 3, 7, 12});
  CHECK(cumsum(m, 0).to_vector<float>() == std::vector<float>{0, 1, 2, 3, 5, 7});
  CHECK(cumsum(m, -1).dtype() == DType::f32);
  CHECK(cumsum(m.t(), 0).to_vector<float>() == std::vector<float>{0, 3, 1, 7, 3, 12});  // non-contiguous
  CHECK(cumsum(arange(4, DType::f16), 0).to_vector<float>() == std::vector<float>{0, 1, 3, 6});
  CHECK(cumsum(scalar_tensor(2.5), 0).item() == 2.5);
  CHECK(cumsum(zeros({0, 3}), 0).shape() == Shape{0, 3});
  CHECK_THROWS_WITH_ALL(cumsum(m, 2), IndexError, "cumsum");
  CHECK_THROWS_AS(cumsum(Tensor(), 0), ValueError);
}

TEST_CASE("cumsum's gradient", "[api][gradcheck]") {
  Tensor x = randn({3, 4, 2}, DType::f64).requires_grad_();
  for (std::int64_t d : {0, 1, 2, -1})
    CHECK(gradcheck([d](const std::vector<Tensor>& in) { return cumsum(in[0], d); }, {x}).ok);
  Tensor y = randn({5}, DType::f64).requires_grad_();
  CHECK(gradcheck([](const std::vector<Tensor>& in) { return cumsum(in[0].t(), 0); },
                  {randn({3, 2}, DType::f64).requires_grad_()}).ok);
  sum(cumsum(y, 0)).backward();
  CHECK(y.grad().to_vector<double>() == std::vector<double>{5, 4, 3, 2, 1});
}

TEST_CASE("StepLR as PyTorch's", "[api][optim]") {
  Tensor p = zeros({1}, TensorOptions(DType::f32).requires_grad());
  optim::SGD opt({p}, optim::SGDOptions(0.1));
  optim::StepLR sched(opt, 3, 0.5);
  std::vector<double> lrs;
  for (int s = 0; s < 8; ++s) {
    lrs.push_back(opt.param_groups()[0].lr);
    opt.step();
    sched.step();
  }
  CHECK(lrs == std::vector<double>{0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025});
  CHECK(sched.get_last_lr() == std::vector<double>{0.1 * 0.25});
  sched.set_step(3);
  CHECK(opt.param_groups()[0].lr == 0.05);
  CHECK_THROWS_WITH_ALL(optim::StepLR(opt, 0), ValueError, "StepLR", "step_size");
  CHECK_THROWS_WITH_ALL(optim::StepLR(opt, 2, -1.0), ValueError, "StepLR", "gamma");
}
