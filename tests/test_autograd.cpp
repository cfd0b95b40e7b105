// The tape: accumulation, retain_graph, version counters, hooks, grad mode.
#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {
std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }
}  // namespace

TEST_CASE("gradients of a small expression", "[autograd]") {
  Tensor x = from_vector<double>({1, 2, 3}, {3}).requires_grad_();
  Tensor y = sum(mul(x, x) * 3.0);  // dy/dx = 6x
  y.backward();
  CHECK(vals(x.grad()) == std::vector<double>{6, 12, 18});
  CHECK(x.is_leaf());
  CHECK(!y.is_leaf());
}

TEST_CASE("a tensor used several times accumulates all its gradients", "[autograd]") {
  Tensor x = from_vector<double>({2}, {1}).requires_grad_();
  Tensor y = x * x * x + x * 2.0 + exp(x) * 0.0;  // 3x^2 + 2 = 14
  sum(y).backward();
  CHECK(vals(x.grad()) == std::vector<double>{14});
  // gradients add up across backward calls until zero_grad
  sum(x * 5.0).backward();
  CHECK(vals(x.grad()) == std::vector<double>{19});
  x.zero_grad();
  CHECK(!x.grad().defined());
}

TEST_CASE("a defined gradient accumulates in place; an expanded one is replaced by the sum", "[autograd]") {
  Tensor x = from_vector<double>({1, 2, 3}, {3}).requires_grad_();
  sum(x * 2.0).backward();
  const void* first = x.grad().data_ptr();
  Tensor held = x.grad();  // as in PyTorch, a held .grad sees later accumulation
  sum(mul(x, x)).backward();  // + 2x
  CHECK(x.grad().data_ptr() == first);
  CHECK(vals(held) == std::vector<double>{4, 6, 8});
  // A gradient buffer the caller provides (a data-parallel bucket view) is accumulated into.
  Tensor bucket = zeros({5}, DType::f64);
  x.set_grad(bucket.narrow(0, 1, 3));
  sum(x * 3.0).backward();
  CHECK(vals(bucket) == std::vector<double>{0, 3, 3, 3, 0});
  // An expanded gradient (its elements alias) must not be added into in place.
  Tensor one = from_vector<double>({1}, {1});
  x.set_grad(one.expand({3}));
  sum(x * from_vector<double>({1, 2, 3}, {3})).backward();
  CHECK(vals(x.grad()) == std::vector<double>{2, 3, 4});
  CHECK(vals(one) == std::vector<double>{1});
}

TEST_CASE("backward twice without retain_graph is a clear error; with it, it works", "[autograd]") {
  Tensor x = from_vector<double>({1, 2}, {2}).requires_grad_();
  Tensor y = sum(exp(x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  auto g = vals(x.grad());
  CHECK(g[0] == Approx(2 * std::exp(1.0)));
  CHECK_THROWS_WITH_ALL(y.backward(), AutogradError, "second time", "retain_graph");
}

TEST_CASE("a saved tensor modified in place raises an error naming the op", "[autograd]") {
  Tensor x = from_vector<double>({1, 2}, {2}).requires_grad_();
  Tensor w = from_vector<double>({3, 4}, {2});
  Tensor y = sum(mul(x, w));  // mul saves w for x's gradient
  w.fill_(0);
  CHECK_THROWS_WITH_ALL(y.backward(), AutogradError, "mul", "modified in place", "f64[2] on cpu");
}

TEST_CASE("in-place writes into tensors that require grad are refused under grad mode", "[autograd]") {
  Tensor x = zeros({2}, DType::f64).requires_grad_();
  CHECK_THROWS_WITH_ALL(x.fill_(1), AutogradError, "fill_", "requires grad", "NoGradGuard");
  {
    NoGradGuard ng;
    x.fill_(1);  // an optimizer step
  }
  CHECK(vals(x) == std::vector<double>{1, 1});
}

TEST_CASE("grad mode guards, detach and requires_grad_", "[autograd]") {
  Tensor x = ones({2}, DType::f64).requires_grad_();
  {
    NoGradGuard ng;
    CHECK(!grad_mode_enabled());
    Tensor y = x * 2.0;
    CHECK(!y.requires_grad());
    {
      EnableGradGuard eg;
      CHECK((x * 2.0).requires_grad());
    }
  }
  CHECK(grad_mode_enabled());
  Tensor d = (x * 2.0).detach();
  CHECK(!d.requires_grad());
  CHECK(d.is_leaf());
  Tensor y = x * 2.0;
  CHECK_THROWS_WITH_ALL(y.requires_grad_(false), AutogradError, "requires_grad_", "leaf");
  CHECK_THROWS_WITH_ALL(arange(3).requires_grad_(), DTypeError, "integral");
  CHECK_THROWS_WITH_ALL(sum(ones({2})).backward(), AutogradError, "does not require grad");
  CHECK_THROWS_WITH_ALL((x * 2.0).backward(), ShapeError, "not a scalar");
}

TEST_CASE("explicit output gradients and several roots", "[autograd]") {
  Tensor x = from_vector<double>({1, 2, 3}, {3}).requires_grad_();
  Tensor y = x * 2.0;
  y.backward(from_vector<double>({1, 10, 100}, {3}));
  CHECK(vals(x.grad()) == std::vector<double>{2, 20, 200});
  x.zero_grad();
  Tensor a = sum(x), b = sum(x * x);
  backward({a, b});
  CHECK(vals(x.grad()) == std::vector<double>{3, 5, 7});
}

TEST_CASE("grad() returns gradients without touching .grad", "[autograd]") {
  Tensor x = from_vector<double>({1, 2}, {2}).requires_grad_();
  Tensor h = x * 3.0;
  Tensor y = sum(h * h);
  auto g = grad({y}, {x, h});
  CHECK(vals(g[0]) == std::vector<double>{18, 36});
  CHECK(vals(g[1]) == std::vector<double>{6, 12});
  CHECK(!x.grad().defined());
}

TEST_CASE("tensor hooks see and may replace gradients", "[autograd]") {
  Tensor x = from_vector<double>({1, 2}, {2}).requires_grad_();
  std::vector<double> seen;
  register_hook(x, [&](const Tensor& g) {
    seen = vals(g);
    return mul(g, 2.0);
  });
  Tensor h = x * 3.0;
  register_hook(h, [](const Tensor& g) { return add(g, 1.0); });  // non-leaf hook
  sum(h).backward();
  CHECK(seen == std::vector<double>{6, 6});            // (1 + 1) * 3
  CHECK(vals(x.grad()) == std::vector<double>{12, 12});  // doubled by the leaf hook
}

TEST_CASE("the gradient-ready hook fires once per backward, after the final gradient", "[autograd]") {
  Tensor w = from_vector<double>({1, 2}, {2}).requires_grad_();
  Tensor u = from_vector<double>({5}, {1}).requires_grad_();
  int fired_w = 0, fired_u = 0;
  std::vector<double> at_fire;
  register_grad_ready_hook(w, [&](const Tensor& p) {
    ++fired_w;
    at_fire = vals(p.grad());
  });
  register_grad_ready_hook(u, [&](const Tensor&) { ++fired_u; });
  // w is used three times, at different depths of the graph
  Tensor a = w * 2.0;
  Tensor b = exp(a) * w;
  Tensor y = sum(b + w * u);
  y.backward();
  CHECK(fired_w == 1);
  CHECK(fired_u == 1);
  CHECK(at_fire == vals(w.grad()));  // the hook saw the final gradient
  sum(w * 2.0).backward();
  CHECK(fired_w == 2);
  CHECK(fired_u == 1);  // u not in the second graph
}

TEST_CASE("an unused graph frees itself and its saved tensors", "[autograd]") {
  AllocatorStats before = cpu_allocator().stats();
  {
    Tensor x = ones({1000}, DType::f64).requires_grad_();
    Tensor y = exp(x * 2.0);  // saves a 8 KB output
    (void)y;
  }
  AllocatorStats after = cpu_allocator().stats();
  CHECK(after.allocated_bytes == before.allocated_bytes);
}
