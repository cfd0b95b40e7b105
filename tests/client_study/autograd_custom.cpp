// Client study (e): a custom autograd Function and gradcheck, tensor hooks, retain_grad, detach and
// torch.autograd.grad, from the README alone.
#include <ciuic/ciuic.h>

#include <cmath>
#include <cstdio>
#include <string>

using namespace ciuic;

// torch.autograd.Function: y = x * exp(x) with the saved input and output.
struct XExp : autograd::Function<XExp> {
  static Tensor forward(autograd::Context* ctx, const Tensor& x) {
    Tensor e = exp(x);
    ctx->save_for_backward({x, e});
    return x * e;
  }
  static std::vector<Tensor> backward(autograd::Context* ctx, const std::vector<Tensor>& g) {
    auto s = ctx->saved_tensors();
    return {g[0] * s[1] * (s[0] + 1.0)};  // d/dx x e^x = (x + 1) e^x
  }
};

static int failures = 0;
static void check(bool ok, const std::string& what) {
  if (!ok) { std::fprintf(stderr, "FAILED: %s\n", what.c_str()); ++failures; }
}

int main() {
  try {
    manual_seed(0);
    // gradcheck of the custom function in f64
    Tensor x = randn({5}, DType::f64).requires_grad_();
    GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return XExp::apply(in[0]); }, {x});
    check(r.ok, "gradcheck XExp: " + r.report);

    // its gradient by hand
    Tensor y = sum(XExp::apply(x));
    y.backward();
    Tensor want = (x.detach() + 1.0) * exp(x.detach());
    check(allclose(x.grad(), want, 1e-12, 1e-12), "XExp backward");

    // retain_grad on an intermediate, a hook on a leaf that doubles its gradient
    Tensor a = tensor({1.0, 2.0, 3.0}, DType::f64).requires_grad_();
    Tensor h = a * a;  // intermediate
    h.retain_grad();
    int hook_calls = 0;
    a.register_hook([&](const Tensor& g) { ++hook_calls; return g * 2.0; });
    Tensor out = sum(h * 3.0);
    out.backward();
    check(h.grad().defined() && allclose(h.grad(), full({3}, 3.0, DType::f64)), "retain_grad: h.grad == 3");
    check(hook_calls == 1, "hook called once");
    check(allclose(a.grad(), tensor({12.0, 24.0, 36.0}, DType::f64)), "hooked a.grad == 2 * 6a");

    // detach: no gradient flows through
    a.grad().zero_();
    Tensor z = sum(a.detach() * a);
    z.backward();
    check(allclose(a.grad(), tensor({2.0, 4.0, 6.0}, DType::f64)), "detach blocks the gradient (hooked x2)");
    check(!a.detach().requires_grad(), "detach().requires_grad() == false");

    // torch.autograd.grad(outputs, inputs): returns gradients, leaves .grad alone
    Tensor u = tensor({0.5, -1.0}, DType::f64).requires_grad_();
    Tensor v = sum(tanh(u) * u);
    std::vector<Tensor> gu = autograd::grad({v}, {u});
    Tensor t = tanh(u.detach());
    Tensor want_u = (1.0 - t * t) * u.detach() + t;
    check(gu.size() == 1 && allclose(gu[0], want_u, 1e-12, 1e-12), "autograd::grad value");
    check(!u.grad().defined(), "autograd::grad leaves .grad undefined");

    std::printf("%d failures\n", failures);
    return failures == 0 ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
