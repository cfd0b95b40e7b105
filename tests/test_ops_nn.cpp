// Neural-network ops: layer_norm, rms_norm, embedding, cross_entropy, mse_loss,
// dropout, scaled_dot_product_attention. Values against naive f64 loops written
// here, gradcheck in f64 (random shapes, non-contiguous inputs), f32 against f64,
// and the bad-input catalogue.
#include <cmath>
#include <limits>
#include <random>

#include "ciuic/ciuic.h"
#include "ciuic/dropout_mask.h"
#include "test_util.h"

using namespace ciuic;

namespace {

Tensor leaf(Tensor t) { return t.requires_grad_(true); }

// A non-contiguous f64 tensor of logical shape s: drawn with the dims reversed,
// then permuted back (a plain copy of the values when s has one dim: then sliced).
Tensor noncontig(const Shape& s, double lo = -2, double hi = 2) {
  if (s.size() == 1) return uniform({s[0] * 2}, lo, hi, DType::f64).slice(0, 0, s[0] * 2, 2);
  Shape rev(s.rbegin(), s.rend());
  Shape perm;
  for (std::int64_t d = static_cast<std::int64_t>(s.size()) - 1; d >= 0; --d) perm.push_back(d);
  return uniform(rev, lo, hi, DType::f64).permute(perm);
}
Tensor nc_leaf(const Shape& s, double lo = -2, double hi = 2) { return leaf(noncontig(s, lo, hi).detach()); }
Tensor rnd(const Shape& s, double lo = -2, double hi = 2) { return uniform(s, lo, hi, DType::f64); }

void expect_ok(const GradcheckFn& f, const std::vector<Tensor>& in) {
  GradcheckResult r = gradcheck(f, in);
  INFO(r.report);
  CHECK(r.ok);
}

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= tol * (1 + std::abs(want[i])));
  }
}

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

// ---- naive references ----
std::vector<double> naive_norm(bool centered, const std::vector<double>& x, std::int64_t n,
                               const std::vector<double>& w, const std::vector<double>& b, double eps) {
  std::vector<double> y(x.size());
  for (std::size_t r = 0; r < x.size() / n; ++r) {
    double mu = 0, var = 0;
    if (centered) {
      for (std::int64_t j = 0; j < n; ++j) mu += x[r * n + j];
      mu /= n;
    }
    for (std::int64_t j = 0; j < n; ++j) var += (x[r * n + j] - mu) * (x[r * n + j] - mu);
    var /= n;
    for (std::int64_t j = 0; j < n; ++j) {
      double v = (x[r * n + j] - mu) / std::sqrt(var + eps);
      if (!w.empty()) v *= w[j];
      if (!b.empty()) v += b[j];
      y[r * n + j] = v;
    }
  }
  return y;
}

double naive_cross_entropy(const std::vector<double>& x, const std::vector<std::int64_t>& t, std::int64_t C,
                           std::int64_t ignore) {
  double s = 0;
  int count = 0;
  for (std::size_t r = 0; r < t.size(); ++r) {
    if (t[r] == ignore) continue;
    double se = 0;
    for (std::int64_t c = 0; c < C; ++c) se += std::exp(x[r * C + c]);
    s += std::log(se) - x[r * C + t[r]];
    ++count;
  }
  return s / count;
}

// q (B, Tq, D), k (B, Tk, D), v (B, Tk, Dv) flattened.
std::vector<double> naive_attention(const std::vector<double>& q, const std::vector<double>& k,
                                    const std::vector<double>& v, std::int64_t B, std::int64_t Tq, std::int64_t Tk,
                                    std::int64_t D, std::int64_t Dv, bool causal, double scale) {
  std::vector<double> out(B * Tq * Dv, 0.0);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < Tq; ++i) {
      std::vector<double> s(Tk);
      double m = -INFINITY;
      for (std::int64_t j = 0; j < Tk; ++j) {
        double dot = 0;
        for (std::int64_t c = 0; c < D; ++c) dot += q[(b * Tq + i) * D + c] * k[(b * Tk + j) * D + c];
        s[j] = (causal && j > i) ? -INFINITY : dot * scale;
        m = std::max(m, s[j]);
      }
      double z = 0;
      for (double& e : s) z += (e = std::exp(e - m));
      for (std::int64_t j = 0; j < Tk; ++j)
        for (std::int64_t c = 0; c < Dv; ++c) out[(b * Tq + i) * Dv + c] += s[j] / z * v[(b * Tk + j) * Dv + c];
    }
  return out;
}

std::int64_t rand_int(std::mt19937& rng, std::int64_t lo, std::int64_t hi) {
  return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
}

}  // namespace

// ============================================================ layer_norm / rms_norm

TEST_CASE("layer_norm and rms_norm match a naive reference", "[ops]") {
  manual_seed(101);
  Tensor x = noncontig({3, 4, 5});
  Tensor w = rnd({4, 5}), b = rnd({4, 5});
  auto xv = vals(x);
  check_close(vals(layer_norm(x, {4, 5}, w, b, 1e-5)), naive_norm(true, xv, 20, vals(w), vals(b), 1e-5), 1e-12);
  check_close(vals(layer_norm(x, {4, 5})), naive_norm(true, xv, 20, {}, {}, 1e-5), 1e-12);
  check_close(vals(layer_norm(x, {4, 5}, w, Tensor(), 0.1)), naive_norm(true, xv, 20, vals(w), {}, 0.1), 1e-12);
  Tensor w5 = rnd({5});
  check_close(vals(layer_norm(x, {5}, Tensor(), w5)), naive_norm(true, xv, 5, {}, vals(w5), 1e-5), 1e-12);
  check_close(vals(rms_norm(x, {5}, w5, 1e-6)), naive_norm(false, xv, 5, vals(w5), {}, 1e-6), 1e-12);
  check_close(vals(rms_norm(x, {4, 5})), naive_norm(false, xv, 20, {}, {}, 1e-6), 1e-12);
  Tensor y = layer_norm(x, {4, 5}, w, b);
  CHECK(y.shape() == Shape{3, 4, 5});
  CHECK(y.dtype() == DType::f64);
  CHECK(y.is_contiguous());
}

TEST_CASE("layer_norm and rms_norm pass gradcheck on random shapes", "[gradcheck][ops]") {
  manual_seed(102);
  std::mt19937 rng(102);
  for (int trial = 0; trial < 3; ++trial) {
    Shape s{rand_int(rng, 1, 3), rand_int(rng, 2, 4), rand_int(rng, 2, 5)};
    Shape ns{s[2]};
    if (trial == 2) ns = {s[1], s[2]};
    INFO("shape " << shape_str(s) << " normalized " << shape_str(ns));
    Tensor x = nc_leaf(s), w = nc_leaf(ns, 0.5, 1.5), b = nc_leaf(ns);
    expect_ok([ns](auto& in) { return layer_norm(in[0], ns, in[1], in[2]); }, {x, w, b});
    expect_ok([ns](auto& in) { return layer_norm(in[0], ns); }, {x});
    expect_ok([ns](auto& in) { return layer_norm(in[0], ns, in[1]); }, {x, w});
    expect_ok([ns](auto& in) { return layer_norm(in[0], ns, Tensor(), in[1], 0.3); }, {x, b});
    expect_ok([ns](auto& in) { return rms_norm(in[0], ns, in[1]); }, {x, w});
    expect_ok([ns](auto& in) { return rms_norm(in[0], ns, Tensor(), 0.2); }, {x});
  }
  // Only the affine parameters need grad.
  Tensor x = noncontig({2, 3}), w = nc_leaf({3}), b = nc_leaf({3});
  expect_ok([x](auto& in) { return layer_norm(x, {3}, in[0], in[1]); }, {w, b});
  expect_ok([x](auto& in) { return rms_norm(x, {3}, in[0]); }, {w});
}

TEST_CASE("layer_norm and rms_norm in f32 and f16 match f64", "[ops]") {
  manual_seed(103);
  Tensor x = rnd({4, 16}), w = rnd({16}), b = rnd({16});
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    INFO(dtype_name(dt));
    const double tol = dt == DType::f32 ? 1e-5 : (dt == DType::f16 ? 1e-2 : 5e-2);
    Tensor xl = leaf(x.to(dt)), wl = leaf(w.to(dt)), bl = leaf(b.to(dt));
    Tensor y = layer_norm(xl, {16}, wl, bl);
    CHECK(y.dtype() == dt);
    check_close(vals(y), vals(layer_norm(x, {16}, w, b)), tol);
    check_close(vals(rms_norm(xl, {16}, wl)), vals(rms_norm(x, {16}, w)), tol);
    // Gradients too: f64 vs low precision with the same upstream projection.
    Tensor x64 = leaf(x.clone()), w64 = leaf(w.clone()), b64 = leaf(b.clone());
    Tensor proj = rnd({4, 16});
    sum(mul(layer_norm(x64, {16}, w64, b64), proj)).backward();
    sum(mul(y, proj.to(dt))).backward();
    CHECK(xl.grad().dtype() == dt);
    check_close(vals(xl.grad()), vals(x64.grad()), tol * 4);
    check_close(vals(wl.grad()), vals(w64.grad()), tol * 4);
    check_close(vals(bl.grad()), vals(b64.grad()), tol * 4);
  }
}

// ============================================================ embedding

TEST_CASE("embedding gathers rows and scatter-adds gradients", "[ops]") {
  Tensor w = leaf(arange(0.0, 15.0, 1.0, DType::f64).reshape({5, 3}).detach());
  for (DType it : {DType::i64, DType::i32}) {
    Tensor idx = from_vector<std::int64_t>({4, 0, 4, 2, 4, 1}, {2, 3}).to(it);
    Tensor out = embedding(w, idx);
    CHECK(out.shape() == Shape{2, 3, 3});
    CHECK(vals(out) == std::vector<double>{12, 13, 14, 0, 1, 2, 12, 13, 14, 6, 7, 8, 12, 13, 14, 3, 4, 5});
    w.zero_grad();
    sum(out).backward();
    // row 4 appears three times, row 3 never
    CHECK(vals(w.grad()) == std::vector<double>{1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 3, 3, 3});
  }
  // 0-dim indices give one row; no grad needed gives no graph.
  Tensor r = embedding(w.detach(), from_vector<std::int64_t>({3}, {}));
  CHECK(r.shape() == Shape{3});
  CHECK(vals(r) == std::vector<double>{9, 10, 11});
  CHECK_FALSE(r.requires_grad());
}

TEST_CASE("embedding passes gradcheck with repeated and non-contiguous indices", "[gradcheck][ops]") {
  manual_seed(104);
  Tensor w = nc_leaf({6, 4});
  Tensor idx = from_vector<std::int64_t>({5, 0, 5, 3, 1, 5, 2, 0}, {2, 4}).t();  // (4, 2), strided
  expect_ok([idx](auto& in) { return embedding(in[0], idx); }, {w});
  expect_ok([idx](auto& in) { return embedding(in[0], idx.to(DType::i32)); }, {w});
}

// ============================================================ cross_entropy / mse_loss

TEST_CASE("cross_entropy matches a naive reference, with ignored targets", "[ops]") {
  manual_seed(105);
  Tensor x = noncontig({6, 5});
  std::vector<std::int64_t> t{1, -100, 4, 0, -100, 2};
  Tensor tt = from_vector(t, {6});
  Tensor loss = cross_entropy(x, tt);
  CHECK(loss.dim() == 0);
  CHECK(loss.dtype() == DType::f64);
  CHECK(loss.item() == Approx(naive_cross_entropy(vals(x), t, 5, -100)).epsilon(1e-12));
  // A custom ignore_index, leading dims, i32 targets.
  Tensor x3 = rnd({2, 3, 4});
  std::vector<std::int64_t> t3{0, 3, 2, 3, 1, 1};
  CHECK(cross_entropy(x3, from_vector(t3, {2, 3}).to(DType::i32), 3).item() ==
        Approx(naive_cross_entropy(vals(x3), t3, 4, 3)).epsilon(1e-12));
  // 1-D logits with a 0-dim target.
  Tensor x1 = rnd({7});
  CHECK(cross_entropy(x1, from_vector<std::int64_t>({6}, {})).item() ==
        Approx(naive_cross_entropy(vals(x1), {6}, 7, -100)).epsilon(1e-12));
  // Large logits do not overflow (log-sum-exp is shifted by the row max).
  Tensor big = from_vector<double>({1000, 0, -1000}, {1, 3});
  CHECK(cross_entropy(big, from_vector<std::int64_t>({1}, {1})).item() == Approx(1000.0));
}

TEST_CASE("cross_entropy with every target ignored is nan with zero gradient", "[ops]") {
  Tensor x = leaf(rnd({3, 4}));
  Tensor loss = cross_entropy(x, full({3}, -100, DType::i64));
  CHECK(std::isnan(loss.item()));
  loss.backward();
  CHECK(vals(x.grad()) == std::vector<double>(12, 0.0));
}

TEST_CASE("cross_entropy f16/bf16 logits give an f32 loss close to f64", "[ops]") {
  manual_seed(106);
  Tensor x = rnd({8, 10});
  Tensor t = from_vector<std::int64_t>({0, 9, 3, -100, 5, 5, 1, 2}, {8});
  const double ref = cross_entropy(x, t).item();
  Tensor l32 = cross_entropy(x.to(DType::f32), t);
  CHECK(l32.dtype() == DType::f32);
  CHECK(l32.item() == Approx(ref).epsilon(1e-6));
  for (DType dt : {DType::f16, DType::bf16}) {
    Tensor xl = leaf(x.to(dt));
    Tensor l = cross_entropy(xl, t);
    CHECK(l.dtype() == DType::f32);
    CHECK(l.item() == Approx(cross_entropy(xl.detach().to(DType::f64), t).item()).epsilon(1e-5));
    l.backward();
    CHECK(xl.grad().dtype() == dt);
    CHECK(xl.grad().shape() == Shape{8, 10});
  }
}

TEST_CASE("cross_entropy and mse_loss pass gradcheck", "[gradcheck][ops]") {
  manual_seed(107);
  std::mt19937 rng(107);
  for (int trial = 0; trial < 3; ++trial) {
    Shape s{rand_int(rng, 2, 4), rand_int(rng, 1, 3), rand_int(rng, 2, 5)};
    const std::int64_t C = s[2];
    std::vector<std::int64_t> tv;
    for (std::int64_t i = 0; i < s[0] * s[1]; ++i) tv.push_back(i % 3 == 1 ? -100 : rand_int(rng, 0, C - 1));
    Tensor t = from_vector(tv, {s[0], s[1]});
    INFO("logits " << shape_str(s));
    expect_ok([t](auto& in) { return cross_entropy(in[0], t); }, {nc_leaf(s)});
    expect_ok([t](auto& in) { return cross_entropy(in[0] * 2.0, t.to(DType::i32)); }, {nc_leaf(s)});
    expect_ok([](auto& in) { return mse_loss(in[0], in[1]); }, {nc_leaf(s), leaf(rnd(s))});
  }
  Tensor fixed = rnd({3, 2});
  expect_ok([fixed](auto& in) { return mse_loss(fixed, in[0]); }, {nc_leaf({3, 2})});
}

TEST_CASE("mse_loss matches a naive reference", "[ops]") {
  Tensor a = from_vector<double>({1, 2, 3, 4}, {2, 2}), b = from_vector<double>({0, 2, 5, 1}, {2, 2});
  CHECK(mse_loss(a, b).item() == Approx((1.0 + 0 + 4 + 9) / 4));
  CHECK(mse_loss(a.t(), b.t()).item() == Approx((1.0 + 0 + 4 + 9) / 4));
  Tensor l = mse_loss(a.to(DType::f32), b.to(DType::f32));
  CHECK(l.dtype() == DType::f32);
  CHECK(l.dim() == 0);
  Tensor al = leaf(a.clone()), bl = leaf(b.clone());
  mse_loss(al, bl).backward();
  CHECK(vals(al.grad()) == std::vector<double>{0.5, 0, -1, 1.5});
  CHECK(vals(bl.grad()) == std::vector<double>{-0.5, 0, 1, -1.5});
}

// ============================================================ dropout

TEST_CASE("dropout is the identity in eval mode and for p == 0", "[ops]") {
  Tensor x = leaf(rnd({3, 4}));
  Generator g{5, 17};
  CHECK(dropout(x, 0.5, false, &g).same(x));
  CHECK(dropout(x, 0.0, true, &g).same(x));
  CHECK(g.offset == 17);  // untouched
}

TEST_CASE("dropout mask replays from (seed, offset) and matches dropout_keep", "[ops]") {
  const double p = 0.3;
  Tensor x = noncontig({40, 25});
  Generator g{1234, 99};
  Tensor a = dropout(x, p, true, &g);
  CHECK(g.offset == 99 + 1000);
  Tensor b = dropout(x, p, true, &g);  // next counters: a different mask
  Generator replay{1234, 99};
  Tensor c = dropout(x, p, true, &replay);
  CHECK(vals(a) == vals(c));
  CHECK(vals(a) != vals(b));
  // Each element is x / (1 - p) exactly where the shared helper keeps it, else 0.
  auto av = vals(a), xv = vals(x);
  const std::uint32_t th = dropout_threshold(p);
  for (std::size_t i = 0; i < av.size(); ++i) {
    const bool keep = dropout_keep(1234, 99 + i, th);
    CHECK(keep == (philox_uniform(1234, 99 + i) >= p));
    CHECK(av[i] == (keep ? xv[i] * (1.0 / (1.0 - p)) : 0.0));
  }
  // The default generator is used (and advanced) when none is given.
  manual_seed(77);
  Tensor d1 = dropout(x, p);
  CHECK(default_generator().offset == 1000);
  Generator same{77, 0};
  CHECK(vals(d1) == vals(dropout(x, p, true, &same)));
}

TEST_CASE("dropout keeps a fraction near 1 - p and scales to preserve the mean", "[ops]") {
  Tensor x = ones({100000}, DType::f32);
  for (double p : {0.1, 0.5, 0.9}) {
    Generator g{42, 0};
    auto v = vals(dropout(x, p, true, &g));
    std::size_t kept = 0;
    double s = 0;
    for (double e : v) {
      kept += e != 0;
      s += e;
    }
    INFO("p = " << p);
    CHECK(static_cast<double>(kept) / 1e5 == Approx(1 - p).margin(0.01));
    CHECK(s / 1e5 == Approx(1.0).margin(0.03));
  }
  Generator g{42, 0};
  Tensor xl = leaf(rnd({10}));
  Tensor z = dropout(xl, 1.0, true, &g);
  CHECK(vals(z) == std::vector<double>(10, 0.0));
  sum(z).backward();
  CHECK(vals(xl.grad()) == std::vector<double>(10, 0.0));
}

TEST_CASE("dropout passes gradcheck with a fixed generator state", "[gradcheck][ops]") {
  manual_seed(108);
  for (double p : {0.2, 0.6}) {
    // The mask must be the same on every call: rebuild the generator each time.
    expect_ok([p](auto& in) {
      Generator g{2024, 7};
      return dropout(in[0], p, true, &g);
    }, {nc_leaf({4, 5})});
  }
  // Backward uses the same mask as the forward: gradient = mask / (1 - p).
  Tensor x = leaf(rnd({50}));
  Generator g{9, 3};
  Tensor y = dropout(x, 0.4, true, &g);
  sum(y).backward();
  auto gy = vals(x.grad()), yv = vals(y), xv = vals(x);
  for (std::size_t i = 0; i < gy.size(); ++i) CHECK(gy[i] * xv[i] == Approx(yv[i]));
}

// ============================================================ attention

TEST_CASE("scaled_dot_product_attention matches a naive reference", "[ops]") {
  manual_seed(109);
  struct Case {
    std::int64_t Tq, Tk, D, Dv;
  };
  for (Case c : {Case{4, 4, 3, 5}, Case{3, 6, 4, 2}, Case{6, 3, 2, 3}, Case{1, 5, 8, 8}}) {
    for (bool causal : {false, true}) {
      INFO("Tq " << c.Tq << " Tk " << c.Tk << " causal " << causal);
      // batch dims (2, 3); q non-contiguous
      Tensor q = noncontig({c.D, c.Tq, 3, 2}).permute({3, 2, 1, 0});
      Tensor k = rnd({2, 3, c.Tk, c.D}), v = rnd({2, 3, c.Tk, c.Dv});
      Tensor out = scaled_dot_product_attention(q, k, v, causal);
      CHECK(out.shape() == Shape{2, 3, c.Tq, c.Dv});
      check_close(vals(out),
                  naive_attention(vals(q), vals(k), vals(v), 6, c.Tq, c.Tk, c.D, c.Dv, causal,
                                  1.0 / std::sqrt(static_cast<double>(c.D))),
                  1e-12);
      check_close(vals(scaled_dot_product_attention(q, k, v, causal, 0.7)),
                  naive_attention(vals(q), vals(k), vals(v), 6, c.Tq, c.Tk, c.D, c.Dv, causal, 0.7), 1e-12);
      // f32 against f64
      check_close(vals(scaled_dot_product_attention(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32), causal)),
                  vals(out), 1e-5);
    }
  }
  // No batch dims: (Tq, D).
  Tensor q = rnd({3, 2}), k = rnd({4, 2}), v = rnd({4, 3});
  CHECK(scaled_dot_product_attention(q, k, v).shape() == Shape{3, 3});
}

TEST_CASE("scaled_dot_product_attention passes gradcheck", "[gradcheck][ops]") {
  manual_seed(110);
  std::mt19937 rng(110);
  for (int trial = 0; trial < 3; ++trial) {
    const std::int64_t B = rand_int(rng, 1, 2), Tq = rand_int(rng, 1, 4), Tk = rand_int(rng, 1, 4),
                       D = rand_int(rng, 1, 3), Dv = rand_int(rng, 1, 3);
    INFO("B " << B << " Tq " << Tq << " Tk " << Tk << " D " << D << " Dv " << Dv);
    Tensor q = nc_leaf({B, Tq, D}), k = nc_leaf({B, Tk, D}), v = nc_leaf({B, Tk, Dv});
    for (bool causal : {false, true})
      expect_ok([causal](auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], causal); }, {q, k, v});
  }
  // Only some inputs need grad; explicit scale.
  Tensor q = rnd({2, 3, 2}), k = nc_leaf({2, 4, 2}), v = rnd({2, 4, 3});
  expect_ok([q, v](auto& in) { return scaled_dot_product_attention(q, in[0], v, true, 0.5); }, {k});
  Tensor vl = nc_leaf({2, 4, 3});
  expect_ok([q, k](auto& in) { return scaled_dot_product_attention(q, k.detach(), in[0], false); }, {vl});
}

TEST_CASE("scaled_dot_product_attention gradients in f32 match f64", "[ops]") {
  manual_seed(111);
  Tensor q = rnd({2, 5, 4}), k = rnd({2, 6, 4}), v = rnd({2, 6, 3}), proj = rnd({2, 5, 3});
  std::vector<std::vector<double>> grads[2];
  for (int i = 0; i < 2; ++i) {
    DType dt = i == 0 ? DType::f64 : DType::f32;
    Tensor ql = leaf(q.to(dt).clone()), kl = leaf(k.to(dt).clone()), vl = leaf(v.to(dt).clone());
    sum(mul(scaled_dot_product_attention(ql, kl, vl, true), proj.to(dt))).backward();
    grads[i] = {vals(ql.grad()), vals(kl.grad()), vals(vl.grad())};
  }
  for (int j = 0; j < 3; ++j) check_close(grads[1][j], grads[0][j], 1e-5);
}

// ============================================================ bad inputs

TEST_CASE("nn ops reject bad inputs with clear messages", "[ops]") {
  Tensor x = rnd({2, 3}), w3 = rnd({3});
  // layer_norm / rms_norm
  CHECK_THROWS_WITH_ALL(layer_norm(x, {4}), ShapeError, "layer_norm", "normalized_shape [4]", "f64[2, 3]");
  CHECK_THROWS_WITH_ALL(layer_norm(x, {2, 3, 1}), ShapeError, "layer_norm", "trailing dims");
  CHECK_THROWS_WITH_ALL(layer_norm(x, {}), ShapeError, "layer_norm", "normalized_shape is empty");
  CHECK_THROWS_WITH_ALL(layer_norm(x, {3}, rnd({4})), ShapeError, "layer_norm", "'weight'", "f64[4]", "[3]");
  CHECK_THROWS_WITH_ALL(layer_norm(x, {3}, w3, rnd({2})), ShapeError, "layer_norm", "'bias'", "f64[2]");
  CHECK_THROWS_WITH_ALL(layer_norm(x, {3}, w3.to(DType::f32)), DTypeError, "layer_norm", "weight: f32[3]");
  CHECK_THROWS_WITH_ALL(layer_norm(x, {3}, w3, Tensor(), 0.0), ValueError, "layer_norm", "eps = 0",
                        "expected eps > 0");
  CHECK_THROWS_WITH_ALL(rms_norm(x, {3}, w3, -1.0), ValueError, "rms_norm", "eps = -1");
  CHECK_THROWS_WITH_ALL(rms_norm(x.to(DType::i64), {3}), DTypeError, "rms_norm", "i64[2, 3]", "floating");
  CHECK_THROWS_WITH_ALL(rms_norm(Tensor(), {3}), ValueError, "rms_norm", "undefined");
  // embedding
  Tensor emb = rnd({5, 4});
  // out-of-range indices and targets are deferred errors, raised at the next sync point (test_host_sync.cpp)
  CHECK_THROWS_WITH_ALL((embedding(emb, from_vector<std::int64_t>({1, 5}, {2})), synchronize(Device::cpu())),
                        IndexError, "embedding", "index 5", "V = 5", "[0, 5)");
  CHECK_THROWS_WITH_ALL((embedding(emb, from_vector<std::int64_t>({-1}, {1})), synchronize(Device::cpu())),
                        IndexError, "embedding", "index -1");
  CHECK_THROWS_WITH_ALL(embedding(emb, from_vector<float>({1}, {1})), DTypeError, "embedding", "'indices'", "f32[1]",
                        "i64 or i32");
  CHECK_THROWS_WITH_ALL(embedding(rnd({5}), from_vector<std::int64_t>({1}, {1})), ShapeError, "embedding",
                        "'weight'", "f64[5]", "2 dims");
  CHECK_THROWS_WITH_ALL(embedding(emb.to(DType::i64), from_vector<std::int64_t>({1}, {1})), DTypeError, "embedding",
                        "'weight'", "floating");
  // cross_entropy
  Tensor logits = rnd({4, 3});
  CHECK_THROWS_WITH_ALL(cross_entropy(logits, from_vector<std::int64_t>({0, 1, 3, 2}, {4})).item(), IndexError,
                        "cross_entropy", "target 3", "C = 3", "ignore_index -100");
  CHECK_THROWS_WITH_ALL(cross_entropy(logits, from_vector<std::int64_t>({0, -1, 0, 2}, {4})).item(), IndexError,
                        "cross_entropy", "target -1");
  CHECK_THROWS_WITH_ALL(cross_entropy(logits, from_vector<std::int64_t>({0, 1, 2}, {3})), ShapeError,
                        "cross_entropy", "i64[3]", "f64[4, 3]", "expected targets of shape [4]");
  CHECK_THROWS_WITH_ALL(cross_entropy(logits, from_vector<double>({0, 1, 2, 0}, {4})), DTypeError, "cross_entropy",
                        "'targets'", "i64 or i32");
  CHECK_THROWS_WITH_ALL(cross_entropy(rnd({4, 0}), zeros({4}, DType::i64)), ShapeError, "cross_entropy", "C >= 1");
  CHECK_THROWS_WITH_ALL(cross_entropy(full({}, 1.0, DType::f64), zeros({}, DType::i64)), ShapeError,
                        "cross_entropy", "(..., C)");
  // mse_loss
  CHECK_THROWS_WITH_ALL(mse_loss(x, rnd({3})), ShapeError, "mse_loss", "input: f64[2, 3]", "target: f64[3]",
                        "does not broadcast");
  CHECK_THROWS_WITH_ALL(mse_loss(x, x.to(DType::f32)), DTypeError, "mse_loss", "f32[2, 3]");
  // dropout
  CHECK_THROWS_WITH_ALL(dropout(x, 1.5), ValueError, "dropout", "p = 1.5", "[0, 1]");
  CHECK_THROWS_WITH_ALL(dropout(x, -0.1), ValueError, "dropout", "p = -0.1");
  CHECK_THROWS_WITH_ALL(dropout(x, std::numeric_limits<double>::quiet_NaN()), ValueError, "dropout", "p = nan");
  CHECK_THROWS_WITH_ALL(dropout(x.to(DType::i32), 0.5), DTypeError, "dropout", "i32[2, 3]");
  // attention
  Tensor q = rnd({2, 3, 4}), k = rnd({2, 5, 4}), v = rnd({2, 5, 6});
  CHECK_THROWS_WITH_ALL(scaled_dot_product_attention(q, rnd({2, 5, 3}), v), ShapeError,
                        "scaled_dot_product_attention", "head dims", "q: f64[2, 3, 4]", "k: f64[2, 5, 3]");
  CHECK_THROWS_WITH_ALL(scaled_dot_product_attention(q, k, rnd({2, 4, 6})), ShapeError,
                        "scaled_dot_product_attention", "key counts", "v: f64[2, 4, 6]");
  CHECK_THROWS_WITH_ALL(scaled_dot_product_attention(q, rnd({1, 5, 4}), rnd({1, 5, 6})), ShapeError,
                        "scaled_dot_product_attention", "batch dims differ", "k: f64[1, 5, 4]");
  CHECK_THROWS_WITH_ALL(scaled_dot_product_attention(rnd({4}), k, v), ShapeError, "scaled_dot_product_attention",
                        "at least 2 dims");
  CHECK_THROWS_WITH_ALL(scaled_dot_product_attention(q, k.to(DType::f32), v), DTypeError,
                        "scaled_dot_product_attention", "k: f32[2, 5, 4]");
  CHECK_THROWS_WITH_ALL(scaled_dot_product_attention(q, k, v, false, INFINITY), ValueError,
                        "scaled_dot_product_attention", "scale = inf");
}
