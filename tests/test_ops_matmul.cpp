// matmul and linear: values against a naive triple loop in f64 written here (all
// rank combinations, broadcast batch dims, non-contiguous operands, zero sizes),
// the plain-loop gemm checked directly (it is what a build without CBLAS runs),
// gradcheck in f64, and the bad-input catalogue.
#include <algorithm>
#include <cmath>
#include <random>

#include "../engine/src/ops/cpu_gemm.h"
#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {

Tensor leaf(Tensor t) { return t.requires_grad_(true); }

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= tol * (1 + std::abs(want[i])));
  }
}

void expect_ok(const GradcheckFn& f, const std::vector<Tensor>& in) {
  GradcheckResult r = gradcheck(f, in);
  INFO(r.report);
  CHECK(r.ok);
}

// An f64 tensor of logical shape s in one of several memory layouts:
// 0 contiguous, 1 last two dims transposed (column-major matrices), 2 every other
// element along the last dim, 3 all dims reversed in memory, 4 a size-1 dim expanded
// (stride 0) where s has one leading dim > 1.
Tensor make(const Shape& s, int layout) {
  const std::int64_t nd = static_cast<std::int64_t>(s.size());
  if (layout == 1 && nd >= 2) {
    Shape t = s;
    std::swap(t[nd - 1], t[nd - 2]);
    return uniform(t, -1, 1, DType::f64).transpose(-1, -2);
  }
  if (layout == 2 && nd >= 1) {
    Shape t = s;
    t[nd - 1] *= 2;
    return uniform(t, -1, 1, DType::f64).slice(nd - 1, 0, t[nd - 1], 2);
  }
  if (layout == 3 && nd >= 2) {
    Shape rev(s.rbegin(), s.rend()), perm;
    for (std::int64_t d = nd - 1; d >= 0; --d) perm.push_back(d);
    return uniform(rev, -1, 1, DType::f64).permute(perm);
  }
  if (layout == 4 && nd >= 3) {
    Shape one = s;
    one[0] = 1;
    return uniform(one, -1, 1, DType::f64).expand(s);
  }
  return uniform(s, -1, 1, DType::f64);
}

// NumPy matmul on row-major values, written independently of the library.
std::vector<double> naive_matmul(const std::vector<double>& a, Shape as, const std::vector<double>& b, Shape bs,
                                 Shape& out_shape) {
  const bool a_vec = as.size() == 1, b_vec = bs.size() == 1;
  if (a_vec) as.insert(as.begin(), 1);
  if (b_vec) bs.push_back(1);
  const std::int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  Shape ba(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  const std::size_t nb = std::max(ba.size(), bb.size());
  ba.insert(ba.begin(), nb - ba.size(), 1);
  bb.insert(bb.begin(), nb - bb.size(), 1);
  Shape batch(nb);
  std::int64_t nbatch = 1;
  for (std::size_t i = 0; i < nb; ++i) nbatch *= (batch[i] = ba[i] == 1 ? bb[i] : ba[i]);
  std::vector<double> out(static_cast<std::size_t>(nbatch * m * n), 0.0);
  for (std::int64_t bi = 0; bi < nbatch; ++bi) {
    // Batch offsets of a and b: coordinate c in dim i, clamped to 0 where broadcast.
    std::int64_t rem = bi, oa = 0, ob = 0, sa = 1, sb = 1;
    for (std::int64_t i = static_cast<std::int64_t>(nb) - 1; i >= 0; --i) {
      std::int64_t c = rem % batch[i];
      rem /= batch[i];
      oa += (ba[i] == 1 ? 0 : c) * sa;
      ob += (bb[i] == 1 ? 0 : c) * sb;
      sa *= ba[i];
      sb *= bb[i];
    }
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (std::int64_t p = 0; p < k; ++p) acc += a[(oa * m + i) * k + p] * b[(ob * k + p) * n + j];
        out[(bi * m + i) * n + j] = acc;
      }
  }
  out_shape = batch;
  if (!a_vec) out_shape.push_back(m);
  if (!b_vec) out_shape.push_back(n);
  return out;
}

struct Case {
  Shape a, b;
};

// Every rank combination, broadcast batch dims, and zero sizes.
const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {{4}, {4}},                   // dot
      {{3}, {3, 5}},                // vector @ matrix
      {{4, 3}, {3}},                // matrix @ vector
      {{4, 3}, {3, 5}},             // matrix @ matrix
      {{1, 1}, {1, 1}},
      {{3}, {2, 3, 5}},             // vector @ batch
      {{2, 4, 3}, {3}},             // batch @ vector
      {{2, 4, 3}, {3, 5}},          // batch @ matrix (folds into one gemm)
      {{4, 3}, {2, 3, 5}},          // matrix @ batch
      {{2, 4, 3}, {2, 3, 5}},       // batch @ batch
      {{2, 1, 4, 3}, {3, 3, 2}},    // broadcast batch (2,1) x (3) -> (2,3)
      {{1, 4, 3}, {2, 1, 3, 5}},    // broadcast batch (1) x (2,1) -> (2,1)
      {{3, 2, 1, 3}, {1, 3, 4}},    // m = 1
      {{2, 4, 1}, {2, 1, 5}},       // k = 1 (outer products)
      {{0, 3}, {3, 5}},             // m = 0
      {{4, 3}, {3, 0}},             // n = 0
      {{4, 0}, {0, 5}},             // k = 0 -> zeros
      {{0}, {0}},                   // empty dot -> 0
      {{2, 4, 0}, {0, 5}},          // batched k = 0
      {{0, 4, 3}, {3, 5}},          // empty batch
      {{2, 0, 4, 3}, {1, 3, 5}},    // empty broadcast batch
  };
  return c;
}

}  // namespace

TEST_CASE("matmul matches a naive triple loop for every rank combination and layout", "[ops]") {
  manual_seed(201);
  for (const Case& c : cases()) {
    for (int la = 0; la < 5; ++la)
      for (int lb = 0; lb < 5; ++lb) {
        Tensor a = make(c.a, la), b = make(c.b, lb);
        INFO("a " << describe(a) << " layout " << la << ", b " << describe(b) << " layout " << lb);
        Shape want_shape;
        std::vector<double> want = naive_matmul(vals(a), a.shape(), vals(b), b.shape(), want_shape);
        Tensor y = matmul(a, b);
        CHECK(y.shape() == want_shape);
        CHECK(y.is_contiguous());
        check_close(vals(y), want, 1e-12);
        Tensor yf = matmul(a.to(DType::f32), b.to(DType::f32));
        CHECK(yf.dtype() == DType::f32);
        check_close(vals(yf), want, 1e-5);
      }
  }
}

TEST_CASE("matmul in f16 and bf16 computes in f32 and rounds once", "[ops]") {
  manual_seed(202);
  for (DType t : {DType::f16, DType::bf16}) {
    Tensor a = make({2, 5, 16}, 1).to(t), b = make({16, 3}, 0).to(t);
    Shape s;
    std::vector<double> want = naive_matmul(vals(a), a.shape(), vals(b), b.shape(), s);
    Tensor y = matmul(a, b);
    CHECK(y.dtype() == t);
    check_close(vals(y), want, t == DType::f16 ? 2e-3 : 1e-2);
    check_close(vals(matmul(a.select(0, 1), b.t().t())), std::vector<double>(want.begin() + 15, want.end()),
                t == DType::f16 ? 2e-3 : 1e-2);
  }
  // k = 0 in half: zeros.
  CHECK(vals(matmul(zeros({2, 0}, DType::f16), zeros({0, 3}, DType::f16))) == std::vector<double>(6, 0.0));
}

TEST_CASE("matmul of larger matrices agrees with the naive loop", "[ops]") {
  manual_seed(203);
  Tensor a = make({67, 45}, 0), b = make({45, 71}, 1);
  Shape s;
  std::vector<double> want = naive_matmul(vals(a), a.shape(), vals(b), b.shape(), s);
  check_close(vals(matmul(a, b)), want, 1e-12);
  check_close(vals(matmul(a.to(DType::f32), b.to(DType::f32))), want, 1e-5);
}

TEST_CASE("the plain-loop gemm (the no-CBLAS fallback) is correct for every transpose and beta", "[ops]") {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(-1, 1);
  INFO("this build calls CBLAS: " << (detail::cpu_gemm_has_cblas() ? "yes" : "no"));
  const std::int64_t m = 5, n = 7, k = 4;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (double beta : {0.0, 1.0, 0.5}) {
        INFO("trans_a " << ta << ", trans_b " << tb << ", beta " << beta);
        // Leading dims larger than the rows, to check they are honoured.
        detail::GemmArgs g;
        g.trans_a = ta;
        g.trans_b = tb;
        g.m = m;
        g.n = n;
        g.k = k;
        g.lda = (ta ? m : k) + 2;
        g.ldb = (tb ? k : n) + 1;
        g.ldc = n + 3;
        std::vector<double> a((ta ? k : m) * g.lda), b((tb ? n : k) * g.ldb), c0(m * g.ldc);
        for (auto* v : {&a, &b, &c0})
          for (double& x : *v) x = u(rng);
        std::vector<double> want = c0;
        for (std::int64_t i = 0; i < m; ++i)
          for (std::int64_t j = 0; j < n; ++j) {
            double acc = 0;
            for (std::int64_t p = 0; p < k; ++p)
              acc += (ta ? a[p * g.lda + i] : a[i * g.lda + p]) * (tb ? b[j * g.ldb + p] : b[p * g.ldb + j]);
            want[i * g.ldc + j] = 1.5 * acc + (beta == 0 ? 0.0 : beta * c0[i * g.ldc + j]);
          }
        std::vector<double> c = c0;
        if (beta == 0)  // beta == 0 must not read C: nan there must not leak
          for (std::int64_t i = 0; i < m; ++i) c[i * g.ldc] = std::nan("");
        std::vector<double> c_blas = c;
        detail::cpu_gemm_loop(g, 1.5, a.data(), b.data(), beta, c.data());
        detail::cpu_gemm(g, 1.5, a.data(), b.data(), beta, c_blas.data());
        for (std::int64_t i = 0; i < m; ++i)
          for (std::int64_t j = 0; j < g.ldc; ++j) {
            std::size_t at = static_cast<std::size_t>(i * g.ldc + j);
            INFO("C[" << i << ", " << j << "]");
            if (j < n) {
              CHECK(c[at] == Approx(want[at]).margin(1e-12));
              CHECK(c_blas[at] == Approx(want[at]).margin(1e-12));
            } else {
              CHECK(c[at] == c0[at]);  // padding past n is untouched
            }
          }
        // f32 through the same loop.
        std::vector<float> af(a.begin(), a.end()), bf(b.begin(), b.end()), cf(c0.begin(), c0.end());
        detail::cpu_gemm_loop(g, 1.5f, af.data(), bf.data(), static_cast<float>(beta), cf.data());
        for (std::int64_t i = 0; i < m; ++i)
          for (std::int64_t j = 0; j < n; ++j) CHECK(cf[i * g.ldc + j] == Approx(want[i * g.ldc + j]).margin(1e-5));
      }
  // k = 0 scales C by beta (zeros for beta 0).
  detail::GemmArgs g;
  g.m = 2;
  g.n = 2;
  g.k = 0;
  g.lda = 1;
  g.ldb = 2;
  g.ldc = 2;
  std::vector<float> c = {1, 2, 3, 4};
  detail::cpu_gemm_loop(g, 1.0f, nullptr, nullptr, 0.0f, c.data());
  CHECK(c == std::vector<float>{0, 0, 0, 0});
}

TEST_CASE("linear matches x W^T + b", "[ops]") {
  manual_seed(204);
  for (int lx = 0; lx < 4; ++lx)
    for (int lw = 0; lw < 4; ++lw) {
      Tensor x = make({2, 3, 4}, lx), w = make({5, 4}, lw), b = make({5}, lx % 3 == 2 ? 2 : 0);
      INFO("x " << describe(x) << " layout " << lx << ", w layout " << lw);
      Shape s;
      std::vector<double> xw = naive_matmul(vals(x), x.shape(), vals(w.t().contiguous()), {4, 5}, s);
      std::vector<double> bv = vals(b), want = xw;
      for (std::size_t i = 0; i < want.size(); ++i) want[i] += bv[i % 5];
      Tensor y = linear(x, w, b);
      CHECK(y.shape() == Shape{2, 3, 5});
      check_close(vals(y), want, 1e-12);
      check_close(vals(linear(x, w)), xw, 1e-12);
      check_close(vals(linear(x.to(DType::f32), w.to(DType::f32), b.to(DType::f32))), want, 1e-5);
      check_close(vals(linear(x.to(DType::bf16), w.to(DType::bf16), b.to(DType::bf16))),
                  vals(linear(x.to(DType::bf16).to(DType::f64), w.to(DType::bf16).to(DType::f64),
                              b.to(DType::bf16).to(DType::f64))),
                  1e-2);
    }
  // 1-D input, empty batch, in_features = 0 (bias only).
  Tensor w = make({3, 2}, 0), b = make({3}, 0);
  Tensor x1 = make({2}, 2);
  CHECK(linear(x1, w, b).shape() == Shape{3});
  check_close(vals(linear(x1, w, b)), vals(add(matmul(w, x1), b)), 1e-12);
  CHECK(linear(zeros({0, 2}, DType::f64), w, b).shape() == Shape{0, 3});
  CHECK(vals(linear(zeros({2, 0}, DType::f64), zeros({3, 0}, DType::f64), b)) ==
        std::vector<double>{vals(b)[0], vals(b)[1], vals(b)[2], vals(b)[0], vals(b)[1], vals(b)[2]});
}

TEST_CASE("linear records one node", "[ops]") {
  Tensor x = leaf(make({2, 4}, 0)), w = leaf(make({3, 4}, 0)), b = leaf(make({3}, 0));
  Tensor y = linear(x, w, b);
  REQUIRE(y.impl()->autograd);
  REQUIRE(y.impl()->autograd->grad_fn);
  CHECK(y.impl()->autograd->grad_fn->name == "linear");
  CHECK(y.impl()->autograd->grad_fn->next.size() == 3);
  sum(y).backward();
  CHECK(vals(b.grad()) == std::vector<double>{2, 2, 2});
  // Only the inputs that require grad get one.
  Tensor x2 = make({2, 4}, 0);
  sum(linear(x2, w)).backward();
  CHECK_FALSE(x2.grad().defined());
}

TEST_CASE("matmul passes gradcheck for every rank combination", "[gradcheck][ops]") {
  manual_seed(205);
  int layout = 0;
  for (const Case& c : cases()) {
    Tensor a = leaf(make(c.a, layout % 4).detach()), b = leaf(make(c.b, (layout + 1) % 4).detach());
    ++layout;
    INFO("a " << describe(a) << ", b " << describe(b));
    expect_ok([](auto& x) { return matmul(x[0], x[1]); }, {a, b});
  }
  // Gradient for one input only.
  Tensor a = leaf(make({2, 3, 4}, 1).detach()), b = make({4, 2}, 0);
  expect_ok([b](auto& x) { return matmul(x[0], b); }, {a});
  expect_ok([a](auto& x) { return matmul(a.detach(), x[0]); }, {leaf(make({4, 2}, 1).detach())});
}

TEST_CASE("matmul passes gradcheck on random batched shapes", "[gradcheck][ops]") {
  manual_seed(206);
  std::mt19937 rng(12);
  std::uniform_int_distribution<int> sz(1, 3), nbd(0, 2), lay(0, 3), coin(0, 1);
  for (int trial = 0; trial < 6; ++trial) {
    const std::int64_t m = sz(rng), k = sz(rng), n = sz(rng);
    Shape batch;
    for (int i = nbd(rng); i > 0; --i) batch.push_back(sz(rng));
    Shape as = batch, bs = batch;
    // Broadcast: drop or shrink to 1 some batch dims of one side.
    for (auto& d : as) if (coin(rng)) d = 1;
    if (!bs.empty() && coin(rng)) bs.erase(bs.begin());
    as.push_back(m);
    as.push_back(k);
    bs.push_back(k);
    bs.push_back(n);
    Tensor a = leaf(make(as, lay(rng)).detach()), b = leaf(make(bs, lay(rng)).detach());
    INFO("a " << describe(a) << ", b " << describe(b));
    expect_ok([](auto& x) { return matmul(x[0], x[1]); }, {a, b});
  }
}

TEST_CASE("linear passes gradcheck", "[gradcheck][ops]") {
  manual_seed(207);
  Tensor x = leaf(make({2, 3, 4}, 3).detach()), w = leaf(make({5, 4}, 1).detach()), b = leaf(make({5}, 2).detach());
  expect_ok([](auto& v) { return linear(v[0], v[1], v[2]); }, {x, w, b});
  expect_ok([](auto& v) { return linear(v[0], v[1]); }, {x, w});
  Tensor x1 = leaf(make({4}, 2).detach());
  expect_ok([](auto& v) { return linear(v[0], v[1], v[2]); }, {x1, w, b});
  Tensor x0 = leaf(zeros({0, 4}, DType::f64));
  expect_ok([](auto& v) { return linear(v[0], v[1], v[2]); }, {x0, w, b});
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> sz(1, 4);
  for (int trial = 0; trial < 3; ++trial) {
    Shape xs;
    for (int i = sz(rng) % 3; i >= 0; --i) xs.push_back(sz(rng));
    const std::int64_t in = xs.back(), out = sz(rng);
    Tensor xi = leaf(make(xs, trial).detach()), wi = leaf(make({out, in}, 1).detach()), bi = leaf(make({out}, 0).detach());
    INFO("x " << describe(xi) << ", w " << describe(wi));
    expect_ok([](auto& v) { return linear(v[0], v[1], v[2]); }, {xi, wi, bi});
  }
}

TEST_CASE("matmul and linear reject bad inputs with clear messages", "[ops]") {
  Tensor a = zeros({2, 3}), b = zeros({4, 5});
  CHECK_THROWS_WITH_ALL(matmul(a, b), ShapeError, "matmul", "inner dims differ", "f32[2, 3]", "f32[4, 5]");
  CHECK_THROWS_WITH_ALL(matmul(zeros({3}), zeros({4})), ShapeError, "matmul", "inner dims differ", "f32[3]",
                        "f32[4]");
  CHECK_THROWS_WITH_ALL(matmul(zeros({2, 2, 3}), zeros({3, 3, 4})), ShapeError, "matmul", "batch dims", "[2]",
                        "[3]", "do not broadcast");
  CHECK_THROWS_WITH_ALL(matmul(zeros({}), a), ShapeError, "matmul", "f32[]", "at least 1 dim");
  CHECK_THROWS_WITH_ALL(matmul(a, zeros({3, 2}, DType::f64)), DTypeError, "matmul", "mismatched dtypes", "f64[3, 2]");
  CHECK_THROWS_WITH_ALL(matmul(zeros({2, 3}, DType::i64), zeros({3, 2}, DType::i64)), DTypeError, "matmul", "i64",
                        "floating");
  CHECK_THROWS_WITH_ALL(matmul(Tensor(), a), ValueError, "matmul", "undefined");
  Tensor x = zeros({2, 4}), w = zeros({3, 4}), bias = zeros({3});
  CHECK_THROWS_WITH_ALL(linear(x, zeros({4})), ShapeError, "linear", "weight", "f32[4]", "2 dims");
  CHECK_THROWS_WITH_ALL(linear(zeros({2, 5}), w), ShapeError, "linear", "f32[2, 5]", "f32[3, 4]",
                        "input.size(-1) == weight.size(1)");
  CHECK_THROWS_WITH_ALL(linear(x, w, zeros({4})), ShapeError, "linear", "bias", "f32[4]", "[3]");
  CHECK_THROWS_WITH_ALL(linear(x, w, zeros({1, 3})), ShapeError, "linear", "bias", "f32[1, 3]");
  CHECK_THROWS_WITH_ALL(linear(zeros({}), w), ShapeError, "linear", "f32[]", "at least 1 dim");
  CHECK_THROWS_WITH_ALL(linear(x, w, zeros({3}, DType::f64)), DTypeError, "linear", "mismatched dtypes", "bias");
  CHECK_THROWS_WITH_ALL(linear(x.to(DType::i32), w.to(DType::i32)), DTypeError, "linear", "i32", "floating");
  CHECK_THROWS_WITH_ALL(linear(x, Tensor()), ValueError, "linear", "weight", "undefined");
}
