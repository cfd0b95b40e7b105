// Custom autograd functions (function.h): gradcheck, saved tensors with the
// version check, non-tensor values, needs_input_grad, non-differentiable outputs,
// automatic sum_to, inside checkpoint segments and under autocast.
#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {

// y = tanh(alpha x) * w, w broadcast over x's rows.
struct ScaledTanh : autograd::Function<ScaledTanh> {
  static constexpr const char* name = "ScaledTanh";
  static Tensor forward(autograd::Context* ctx, const Tensor& x, const Tensor& w, double alpha) {
    Tensor t = tanh(x * alpha);
    ctx->save_for_backward({t, w});
    ctx->saved_data["alpha"] = alpha;
    return t * w;
  }
  static std::vector<Tensor> backward(autograd::Context* ctx, const std::vector<Tensor>& grad_out) {
    auto s = ctx->saved_tensors();
    const double alpha = std::any_cast<double>(ctx->saved_data["alpha"]);
    const Tensor& g = grad_out[0];
    Tensor gx = ctx->needs_input_grad(0) ? g * s[1] * (1.0 - s[0] * s[0]) * alpha : Tensor();
    Tensor gw = ctx->needs_input_grad(1) ? g * s[0] : Tensor();  // x's shape: summed to w's by apply
    return {gx, gw, Tensor()};
  }
};

// Returns (max over the last dim, its index): the index is non-differentiable.
struct MaxWithIndex : autograd::Function<MaxWithIndex> {
  static std::vector<Tensor> forward(autograd::Context* ctx, const Tensor& x) {
    auto [v, i] = max(x, -1);
    ctx->mark_non_differentiable({i});
    ctx->save_for_backward({i});
    ctx->saved_data["shape"] = x.shape();
    return {v, i};
  }
  static std::vector<Tensor> backward(autograd::Context* ctx, const std::vector<Tensor>& g) {
    Tensor i = ctx->saved_tensors()[0];
    Shape shape = std::any_cast<Shape>(ctx->saved_data["shape"]);
    CHECK(equal(g[1], zeros(g[1].shape(), g[1].dtype())));  // zeros for the index output
    Tensor z = zeros(shape, TensorOptions(g[0].dtype()));
    return {scatter_add(z, -1, i.unsqueeze(-1), g[0].unsqueeze(-1))};  // one per tensor argument
  }
};

// Saves its input, so an in-place change before backward must be caught.
struct Square : autograd::Function<Square> {
  static constexpr const char* name = "Square";
  static Tensor forward(autograd::Context* ctx, const Tensor& x) {
    ctx->save_for_backward({x});
    return x * x;
  }
  static std::vector<Tensor> backward(autograd::Context* ctx, const std::vector<Tensor>& g) {
    return {g[0] * ctx->saved_tensors()[0] * 2.0};
  }
};

struct WrongCount : autograd::Function<WrongCount> {
  static Tensor forward(autograd::Context*, const Tensor& x) { return x * 2.0; }
  static std::vector<Tensor> backward(autograd::Context*, const std::vector<Tensor>& g) { return {g[0], g[0]}; }
};

}  // namespace

TEST_CASE("a custom function passes gradcheck, with broadcasting summed for the user", "[api][function][gradcheck]") {
  manual_seed(2);
  Tensor x = uniform({3, 4}, -1, 1, DType::f64).requires_grad_();
  Tensor w = uniform({4}, -1, 1, DType::f64).requires_grad_();
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return ScaledTanh::apply(in[0], in[1], 0.7); }, {x, w});
  INFO(r.report);
  CHECK(r.ok);
  // the same values as the ops it stands for
  Tensor y = ScaledTanh::apply(x, w, 0.7);
  CHECK(allclose(y, tanh(x * 0.7) * w));
  CHECK(y.requires_grad());
  // needs_input_grad: w without grad gets none
  Tensor wc = w.detach();
  sum(ScaledTanh::apply(x, wc, 0.7)).backward();
  CHECK(x.grad().defined());
  CHECK_FALSE(wc.grad().defined());
  // no input requires grad: nothing recorded
  CHECK_FALSE(ScaledTanh::apply(x.detach(), wc, 0.7).requires_grad());
}

TEST_CASE("non-differentiable outputs, saved-tensor versions and gradient counts", "[api][function]") {
  manual_seed(3);
  Tensor x = uniform({2, 5}, -1, 1, DType::f64).requires_grad_();
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return MaxWithIndex::apply(in[0])[0]; }, {x});
  INFO(r.report);
  CHECK(r.ok);
  auto out = MaxWithIndex::apply(x);
  CHECK(out[1].dtype() == DType::i64);
  CHECK_FALSE(out[1].requires_grad());
  // an input changed in place after being saved
  Tensor h = x * 1.0;
  Tensor s = Square::apply(h);
  {
    NoGradGuard ng;
    h.add_(1.0);
  }
  CHECK_THROWS_WITH_ALL(sum(s).backward(), AutogradError, "Square");
  // a wrong number of gradients names the function's problem
  Tensor z = x * 1.0;
  CHECK_THROWS_WITH_ALL(sum(WrongCount::apply(z)).backward(), ValueError, "custom Function", "returned 2 gradients");
}

TEST_CASE("custom functions inside checkpoint segments and under autocast", "[api][function][checkpoint][amp]") {
  manual_seed(4);
  Tensor x = randn({3, 4}).requires_grad_();
  Tensor w = randn({4}).requires_grad_();
  Tensor lin = randn({4, 4}).requires_grad_();
  auto block = [&](const Tensor& h) { return ScaledTanh::apply(matmul(h, lin), w, 0.5); };
  sum(block(x)).backward();
  Tensor gx = x.grad(), gw = w.grad(), gl = lin.grad();
  for (Tensor* t : {&x, &w, &lin}) t->zero_grad();
  sum(checkpoint(block, x)).backward();
  CHECK(equal(x.grad(), gx));
  CHECK(equal(w.grad(), gw));
  CHECK(equal(lin.grad(), gl));
  for (Tensor* t : {&x, &w, &lin}) t->zero_grad();
  Tensor y;
  {
    amp::AutocastGuard autocast(DType::f16);
    y = block(x);  // matmul in f16; the function's ops promote f16 * f32 -> f32 under the guard
  }
  sum(y.to(DType::f32)).backward();
  REQUIRE(w.grad().defined());
  CHECK(w.grad().dtype() == DType::f32);
  CHECK(lin.grad().dtype() == DType::f32);
  CHECK(allclose(w.grad(), gw, 1e-2, 1e-2));
}
