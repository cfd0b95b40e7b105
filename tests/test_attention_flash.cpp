// [attention] The flash-attention algorithm without a GPU: the tile / mask / index
// functions of ciuic/kernels/flash_attn_math.h against brute force (ragged last
// tiles, causal tile skipping, Tq != Tk), the shared-memory pitches against the
// bank-conflict rule, and the CPU emulation of the kernels' block schedule
// (tests/flash_attn_emulation.*) against the CPU reference op, forward and
// backward, with and without dropout. Also the reference's attention dropout:
// its mask, its gradcheck, and bit-identical gradients under checkpointing.
#include <cmath>
#include <set>
#include <vector>

#include "ciuic/ciuic.h"
#include "ciuic/kernels/flash_attn_math.h"
#include "flash_attn_emulation.h"
#include "test_util.h"

using namespace ciuic;
namespace fl = ciuic::kernels::flash;

namespace {

double rel_l2(const std::vector<float>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

std::vector<float> floats(const Tensor& t) { return t.to(DType::f32).to_vector<float>(); }

float round_to(DType dt, float x) {
  if (dt == DType::f16) return static_cast<float>(Half(x));
  if (dt == DType::bf16) return static_cast<float>(BFloat16(x));
  return x;
}

}  // namespace

TEST_CASE("flash tiles: ragged last tiles and tile counts", "[attention][kernels]") {
  for (std::int64_t n : {0, 1, 17, 63, 64, 65, 200, 1024}) {
    const std::int64_t nt = fl::num_tiles(n, 64);
    CHECK(nt == (n + 63) / 64);
    std::int64_t total = 0;
    for (std::int64_t t = 0; t < nt; ++t) {
      const std::int64_t r = fl::tile_rows(t, n, 64);
      CHECK(r >= 1);
      CHECK(r <= 64);
      if (t + 1 < nt) CHECK(r == 64);
      total += r;
    }
    CHECK(total == n);
    CHECK(fl::tile_rows(nt, n, 64) == 0);
  }
}

TEST_CASE("flash tiles: causal skipping and element masks agree with brute force", "[attention][kernels]") {
  for (auto [BM, BN] : {std::pair<std::int64_t, std::int64_t>{64, 64}, {16, 32}, {32, 16}})
    for (std::int64_t Tq : {1, 17, 64, 65, 130, 200})
      for (std::int64_t Tk : {1, 5, 64, 100, 200, 257})
        for (bool causal : {false, true}) {
          INFO("BM " << BM << " BN " << BN << " Tq " << Tq << " Tk " << Tk << " causal " << causal);
          const std::int64_t nq = fl::num_tiles(Tq, BM), nk = fl::num_tiles(Tk, BN);
          bool ok_end = true, ok_begin = true, ok_mask = true, ok_visible = true;
          for (std::int64_t qt = 0; qt < nq; ++qt)
            for (std::int64_t kt = 0; kt < nk; ++kt) {
              std::int64_t live = 0, cells = 0;
              for (std::int64_t i = qt * BM; i < (qt + 1) * BM; ++i)
                for (std::int64_t j = kt * BN; j < (kt + 1) * BN; ++j) {
                  ++cells;
                  live += fl::score_live(i, j, Tq, Tk, causal);
                }
              // Visited exactly when some element is live, from both kernels' sides.
              ok_end &= (kt < fl::kv_tile_end(qt, BM, BN, Tq, Tk, causal)) == (live > 0);
              ok_begin &= (qt >= fl::q_tile_begin(kt, BM, BN, Tq, causal)) == (live > 0);
              // Unmasked tiles are fully live (a masked tile may be, too: that only costs time).
              if (live > 0 && !fl::tile_needs_mask(qt, kt, BM, BN, Tq, Tk, causal)) ok_mask &= live == cells;
            }
          for (std::int64_t i = 0; i < Tq; ++i) {
            std::int64_t n = 0;
            for (std::int64_t j = 0; j < Tk; ++j) n += fl::score_live(i, j, Tq, Tk, causal);
            ok_visible &= n == fl::visible_keys(i, Tk, causal);
            ok_visible &= n >= 1;  // top-left causal: every row sees key 0
          }
          CHECK(ok_end);
          CHECK(ok_begin);
          CHECK(ok_mask);
          CHECK(ok_visible);
        }
  // Causal square: query tile qt visits key tiles 0..qt; only the diagonal tile is masked.
  CHECK(fl::kv_tile_end(3, 64, 64, 1024, 1024, true) == 4);
  CHECK(fl::tile_needs_mask(3, 3, 64, 64, 1024, 1024, true));
  CHECK_FALSE(fl::tile_needs_mask(3, 2, 64, 64, 1024, 1024, true));
  CHECK(fl::q_tile_begin(5, 64, 64, 1024, true) == 5);
  // Tq < Tk, causal top-left: keys past Tq - 1 are seen by nobody.
  CHECK(fl::kv_tile_end(0, 64, 64, 17, 200, true) == 1);
  CHECK(fl::q_tile_begin(2, 64, 64, 17, true) == 1);  // == num_tiles(17): the dK/dV block only writes zeros
}

TEST_CASE("flash online softmax: tile-by-tile statistics equal the whole-row softmax", "[attention][kernels]") {
  std::vector<float> t = {0.5f, -1.25f, 3.0f, 2.0f, -INFINITY, 7.5f, 0.0f, -3.0f, 1.0f};
  // Whole row.
  float mx = -INFINITY;
  for (float x : t) mx = std::max(mx, x);
  double sum = 0;
  for (float x : t) sum += std::exp2(static_cast<double>(x) - mx);
  const double lse = (mx + std::log2(sum)) * std::log(2.0);
  // Tiles of 2, 3, 4 (a leading all-masked tile first).
  for (int tile : {2, 3, 4}) {
    float m = -INFINITY, l = 0;
    {  // an all-masked tile: no nan, nothing counted
      const float m_new = std::max(m, -INFINITY);
      const float alpha = fl::online_alpha(m, m_new);
      l = l * alpha + fl::online_p(-INFINITY, m_new);
      m = m_new;
      CHECK(l == 0);
      CHECK(fl::lse_from_stats(m, l) == -INFINITY);
      CHECK(fl::inv_row_sum(l) == 0);
    }
    for (std::size_t s = 0; s < t.size(); s += tile) {
      float tm = -INFINITY;
      for (std::size_t j = s; j < std::min(t.size(), s + tile); ++j) tm = std::max(tm, t[j]);
      const float m_new = std::max(m, tm), alpha = fl::online_alpha(m, m_new);
      float ps = 0;
      for (std::size_t j = s; j < std::min(t.size(), s + tile); ++j) ps += fl::online_p(t[j], m_new);
      l = l * alpha + ps;
      m = m_new;
    }
    CHECK(fl::lse_from_stats(m, l) == Approx(lse).epsilon(1e-6));
    // Recomputed probabilities sum to 1.
    double psum = 0;
    for (float x : t) psum += fl::recompute_p(x, fl::lse_from_stats(m, l));
    CHECK(psum == Approx(1.0).epsilon(1e-6));
  }
  CHECK(fl::recompute_p(1.0f, -INFINITY) == 0);
  CHECK(fl::grad_score(0.25f, 2.0f, 1.0f) == 0.25f);
}

TEST_CASE("flash shared-memory pitches are free of bank conflicts", "[attention][kernels]") {
  for (int cols : {64, 128}) {
    // 2-byte tiles: the 8 rows of one 8x8 matrix load, at any 16-byte column chunk.
    const int p = fl::half_pitch(cols);
    CHECK(p % 8 == 0);  // rows stay 16-byte aligned (wmma ldm, 16-byte stores)
    for (int row0 = 0; row0 < 64; row0 += 8)
      for (int chunk = 0; chunk < cols / 8; ++chunk) {
        std::set<int> groups;
        for (int r = 0; r < 8; ++r) groups.insert(fl::bank_group(row0 + r, chunk * 8, p, 2));
        CHECK(groups.size() == 8);
      }
    // f32 tiles read as float4 by lane pairs: row = lane / 2, column = 4 * (lane % 2) + 8 e.
    const int pf = fl::float_pitch(cols);
    CHECK(pf % 4 == 0);
    for (int quarter = 0; quarter < 4; ++quarter)
      for (int e = 0; e < cols / 8; ++e) {
        std::set<int> groups;
        for (int lane = 8 * quarter; lane < 8 * quarter + 8; ++lane)
          groups.insert(fl::bank_group(lane / 2, 4 * (lane % 2) + 8 * e, pf, 4));
        CHECK(groups.size() == 8);
      }
  }
}

TEST_CASE("flash dropout counters are the row-major index of the probabilities", "[attention][kernels]") {
  const std::uint64_t seed = 77, first = 1000;
  const std::uint32_t thr = dropout_threshold(0.3);
  const std::int64_t Tq = 5, Tk = 7;
  std::int64_t kept = 0, n = 0;
  for (std::int64_t bh = 0; bh < 3; ++bh)
    for (std::int64_t i = 0; i < Tq; ++i)
      for (std::int64_t j = 0; j < Tk; ++j) {
        const std::uint64_t idx = first + static_cast<std::uint64_t>((bh * Tq + i) * Tk + j);
        CHECK(fl::dropout_counter(first, bh, i, j, Tq, Tk) == idx);
        CHECK(fl::dropout_keep_at(seed, first, thr, bh, i, j, Tq, Tk) == dropout_keep(seed, idx, thr));
        kept += fl::dropout_keep_at(seed, first, thr, bh, i, j, Tq, Tk);
        ++n;
      }
  CHECK(kept > n / 2);  // about 70% of 105
  CHECK(kept < n);
  CHECK(fl::dropout_keep_at(seed, first, 0, 0, 0, 0, Tq, Tk));  // threshold 0 keeps all
}

TEST_CASE("attention dropout: the reference drops the probabilities the shared mask names", "[attention][ops]") {
  const std::int64_t B = 2, Tq = 5, Tk = 6, D = 3, Dv = 4;
  Generator init{5, 0};
  Tensor q = randn({B, Tq, D}, TensorOptions(DType::f64), &init), k = randn({B, Tk, D}, TensorOptions(DType::f64), &init),
         v = randn({B, Tk, Dv}, TensorOptions(DType::f64), &init);
  for (bool causal : {false, true}) {
    Generator g{123, 40};
    Tensor out = scaled_dot_product_attention(q, k, v, causal, std::nullopt, 0.25, &g);
    CHECK(g.offset == 40 + static_cast<std::uint64_t>(B * Tq * Tk));
    // By hand: P = softmax(q k^T / sqrt(D)) with the causal mask, times keep / 0.75.
    Tensor s = mul(matmul(q, k.transpose(1, 2)), 1.0 / std::sqrt(3.0));
    std::vector<double> sv = s.to_vector<double>(), want(static_cast<std::size_t>(B * Tq * Dv), 0.0);
    const std::vector<double> vv = v.to_vector<double>();
    const std::uint32_t thr = dropout_threshold(0.25);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t i = 0; i < Tq; ++i) {
        const std::int64_t nk = causal ? std::min(i + 1, Tk) : Tk;
        double mx = -INFINITY, z = 0;
        for (std::int64_t j = 0; j < nk; ++j) mx = std::max(mx, sv[(b * Tq + i) * Tk + j]);
        for (std::int64_t j = 0; j < nk; ++j) z += std::exp(sv[(b * Tq + i) * Tk + j] - mx);
        for (std::int64_t j = 0; j < nk; ++j) {
          const bool keep = dropout_keep(123, 40 + static_cast<std::uint64_t>((b * Tq + i) * Tk + j), thr);
          const double p = keep ? std::exp(sv[(b * Tq + i) * Tk + j] - mx) / z / 0.75 : 0.0;
          for (std::int64_t c = 0; c < Dv; ++c) want[(b * Tq + i) * Dv + c] += p * vv[(b * Tk + j) * Dv + c];
        }
      }
    const std::vector<double> got = out.to_vector<double>();
    for (std::size_t e = 0; e < got.size(); ++e) CHECK(got[e] == Approx(want[e]).epsilon(1e-12).margin(1e-12));
  }
  CHECK_THROWS_WITH_ALL(scaled_dot_product_attention(q, k, v, false, std::nullopt, 1.0), ValueError,
                        "scaled_dot_product_attention", "dropout_p = 1", "[0, 1)");
}

TEST_CASE("attention dropout passes gradcheck", "[attention][gradcheck]") {
  Generator init{6, 0};
  Tensor q = randn({2, 4, 3}, TensorOptions(DType::f64), &init).requires_grad_(),
         k = randn({2, 5, 3}, TensorOptions(DType::f64), &init).requires_grad_(),
         v = randn({2, 5, 2}, TensorOptions(DType::f64), &init).requires_grad_();
  for (bool causal : {false, true}) {
    // A fresh generator per evaluation: every evaluation drops the same elements.
    auto f = [causal](const std::vector<Tensor>& in) {
      Generator g{31, 7};
      return scaled_dot_product_attention(in[0], in[1], in[2], causal, 0.8, 0.4, &g);
    };
    GradcheckResult r = gradcheck(f, {q, k, v});
    INFO(r.report);
    CHECK(r.ok);
  }
}

TEST_CASE("attention dropout gives bit-identical gradients with and without checkpointing", "[attention][checkpoint]") {
  Generator init{8, 0};
  const std::int64_t B = 2, H = 2, T = 9, D = 4, C = H * D;
  Tensor x0 = randn({B, T, C}, TensorOptions(DType::f32), &init);
  Tensor w = mul(randn({C, 3 * C}, TensorOptions(DType::f32), &init), 0.3).requires_grad_();
  // qkv split and head transpose as the GPT block, attention dropout, then a plain dropout
  // after it: the second draw must replay at the same generator offset too.
  auto block = [&](const Tensor& x) {
    auto parts = split(matmul(x, w), C, 2);
    auto heads = [&](const Tensor& t) { return t.view({B, T, H, D}).transpose(1, 2); };
    Tensor y = scaled_dot_product_attention(heads(parts[0]), heads(parts[1]), heads(parts[2]), true, std::nullopt, 0.3);
    return dropout(y.transpose(1, 2).reshape({B, T, C}), 0.2);
  };
  auto grads = [&](int mode) {
    w.zero_grad();
    Tensor x = x0.clone().requires_grad_();
    manual_seed(55);
    Tensor y;
    if (mode == 0) y = block(x);
    else if (mode == 1) y = checkpoint(block, x);
    else y = checkpoint(block, x, CheckpointOptions::selective());
    sum(mul(y, y)).backward();
    return std::make_pair(w.grad().to_vector<float>(), x.grad().to_vector<float>());
  };
  auto plain = grads(0), ckpt = grads(1), sel = grads(2);
  CHECK(plain.first == ckpt.first);
  CHECK(plain.second == ckpt.second);
  CHECK(plain.first == sel.first);
  CHECK(plain.second == sel.second);
  // Dropout did something: without it the gradients differ.
  w.zero_grad();
  Tensor x = x0.clone().requires_grad_();
  auto parts = split(matmul(x, w), C, 2);
  auto heads = [&](const Tensor& t) { return t.view({B, T, H, D}).transpose(1, 2); };
  sum(scaled_dot_product_attention(heads(parts[0]), heads(parts[1]), heads(parts[2]), true)).backward();
  CHECK(w.grad().to_vector<float>() != plain.first);
}

TEST_CASE("the CPU emulation of the flash kernels' schedule matches the reference", "[attention][kernels]") {
  struct Case {
    std::int64_t B, Tq, Tk, D;
    bool causal;
    double drop;
    DType dt;
  };
  std::vector<Case> cases;
  for (std::int64_t D : {64, 128})
    for (std::int64_t T : {1, 17, 64, 200})
      for (bool causal : {false, true}) cases.push_back({2, T, T, D, causal, 0.0, DType::f32});
  cases.push_back({1, 17, 200, 64, true, 0.0, DType::f32});   // Tq < Tk
  cases.push_back({1, 200, 17, 64, true, 0.0, DType::f32});   // Tq > Tk
  cases.push_back({1, 130, 70, 128, false, 0.0, DType::f32});
  cases.push_back({2, 65, 65, 64, true, 0.2, DType::f32});    // dropout
  cases.push_back({1, 100, 80, 64, false, 0.1, DType::f32});
  cases.push_back({2, 200, 200, 64, true, 0.0, DType::f16});
  cases.push_back({2, 200, 130, 128, false, 0.0, DType::bf16});
  cases.push_back({1, 64, 64, 64, true, 0.1, DType::bf16});
  // The SIMT kernels' schedule (f32, any head dim): 16 x 32 tiles, dK/dV 16 keys x 32 queries.
  const std::size_t n_tc = cases.size();
  cases.push_back({2, 17, 17, 40, true, 0.0, DType::f32});
  cases.push_back({1, 65, 130, 24, true, 0.2, DType::f32});
  cases.push_back({1, 130, 65, 64, true, 0.0, DType::f32});
  cases.push_back({2, 50, 50, 64, false, 0.0, DType::f16});
  for (std::size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    const bool simt = ci >= n_tc;
    INFO("B " << c.B << " Tq " << c.Tq << " Tk " << c.Tk << " D " << c.D << " causal " << c.causal << " dropout "
              << c.drop << " " << dtype_name(c.dt) << (simt ? " SIMT schedule" : " Tensor Core schedule"));
    Generator init{static_cast<std::uint64_t>(c.Tq * 1000 + c.Tk + c.D), 0};
    // Inputs rounded to the dtype under test, then both sides compute from the same values.
    auto make = [&](Shape s) { return randn(s, TensorOptions(DType::f32), &init).to(c.dt).to(DType::f32); };
    Tensor q = make({c.B, c.Tq, c.D}).requires_grad_(), k = make({c.B, c.Tk, c.D}).requires_grad_(),
           v = make({c.B, c.Tk, c.D}).requires_grad_(), go = make({c.B, c.Tq, c.D});
    const float scale = 0.125f;
    Generator g{99, 17};
    Tensor ref = scaled_dot_product_attention(q, k, v, c.causal, scale, c.drop, &g);
    sum(mul(ref, go)).backward();

    test::EmuProblem p;
    p.B = c.B;
    p.Tq = c.Tq;
    p.Tk = c.Tk;
    p.D = p.Dv = c.D;
    p.causal = c.causal;
    p.scale = scale;
    p.dropout_p = c.drop;
    p.seed = 99;
    p.first = 17;
    const DType dt = c.dt;
    p.round = [dt](float x) { return round_to(dt, x); };
    if (simt) p.simt();
    std::vector<float> out, lse, gq, gk, gv;
    test::EmuCounts counts;
    test::emulate_flash_forward(p, floats(q), floats(k), floats(v), out, lse, &counts);
    test::emulate_flash_backward(p, floats(q), floats(k), floats(v), out, floats(go), lse, gq, gk, gv, &counts);
    // f32: both sides in f32 with different summation orders; f16/bf16: P, dS and the
    // outputs rounded to the dtype on the emulation's side only.
    const double bound = dt == DType::f32 ? 2e-5 : (dt == DType::f16 ? 5e-3 : 3e-2);
    const std::vector<double> ref_out = ref.to_vector<double>();
    CHECK(rel_l2(out, ref_out) <= bound);
    CHECK(rel_l2(gq, q.grad().to_vector<double>()) <= bound);
    CHECK(rel_l2(gk, k.grad().to_vector<double>()) <= bound);
    CHECK(rel_l2(gv, v.grad().to_vector<double>()) <= bound);
    // lse against the reference's row statistics, from scores computed in f64.
    for (std::int64_t r = 0; r < c.B * c.Tq; r += 13) {
      const std::int64_t b = r / c.Tq, i = r % c.Tq;
      const std::vector<double> qv = q.to_vector<double>(), kv = k.to_vector<double>();
      double mx = -INFINITY, z = 0;
      std::vector<double> s;
      for (std::int64_t j = 0; j < fl::visible_keys(i, c.Tk, c.causal); ++j) {
        double d = 0;
        for (std::int64_t e = 0; e < c.D; ++e) d += qv[(b * c.Tq + i) * c.D + e] * kv[(b * c.Tk + j) * c.D + e];
        s.push_back(d * scale);
        mx = std::max(mx, d * scale);
      }
      for (double x : s) z += std::exp(x - mx);
      CHECK(lse[static_cast<std::size_t>(r)] == Approx(mx + std::log(z)).epsilon(1e-5).margin(1e-5));
    }
    // Causal skipping: a square causal problem of n tiles visits n(n+1)/2 of n^2 tiles.
    const std::int64_t nq = fl::num_tiles(c.Tq, p.bm), nk = fl::num_tiles(c.Tk, p.bn);
    if (c.causal && c.Tq == c.Tk && !simt) {
      CHECK(counts.fwd_tiles == c.B * nq * (nq + 1) / 2);
      CHECK(counts.dq_tiles == counts.fwd_tiles);
      CHECK(counts.dkdv_tiles == counts.fwd_tiles);
    } else if (!c.causal) {
      CHECK(counts.fwd_tiles == c.B * nq * nk);
    } else {
      CHECK(counts.fwd_tiles <= c.B * nq * nk);  // causal never visits more
    }
  }
}
