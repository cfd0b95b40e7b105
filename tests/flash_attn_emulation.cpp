#include "flash_attn_emulation.h"

#include <algorithm>
#include <cmath>

#include "ciuic/dropout_mask.h"
#include "ciuic/kernels/flash_attn_math.h"

namespace ciuic::test {

namespace fl = kernels::flash;

namespace {

float dot(const float* a, const float* b, std::int64_t n) {
  float s = 0;
  for (std::int64_t c = 0; c < n; ++c) s += a[c] * b[c];
  return s;
}

struct Drop {
  std::uint32_t threshold = 0;
  float rscale = 1;
  explicit Drop(const EmuProblem& p)
      : threshold(p.dropout_p > 0 ? dropout_threshold(p.dropout_p) : 0),
        rscale(p.dropout_p > 0 ? static_cast<float>(1.0 / (1.0 - p.dropout_p)) : 1.0f) {}
};

// Score t (log2 units) of element (i, j) as a kernel computes it: -inf when the
// tile needs the element mask and the element is not live.
float score(const EmuProblem& p, const float* qi, const float* kj, std::int64_t i, std::int64_t j, bool masked) {
  if (masked && !fl::score_live(i, j, p.Tq, p.Tk, p.causal)) return -INFINITY;
  return dot(qi, kj, p.D) * (p.scale * fl::kLog2e);
}

}  // namespace

void emulate_flash_forward(const EmuProblem& p, const std::vector<float>& q, const std::vector<float>& k,
                           const std::vector<float>& v, std::vector<float>& out, std::vector<float>& lse,
                           EmuCounts* counts) {
  const Drop drop(p);
  const std::int64_t BM = p.bm, BN = p.bn;
  auto round_p = [&](float x) { return p.round_p ? p.round(x) : x; };
  out.assign(static_cast<std::size_t>(p.B * p.Tq * p.Dv), 0.0f);
  lse.assign(static_cast<std::size_t>(p.B * p.Tq), 0.0f);
  const std::int64_t nq = fl::num_tiles(p.Tq, BM);
  std::vector<float> t(BN), o(static_cast<std::size_t>(p.Dv));
  for (std::int64_t bh = 0; bh < p.B; ++bh)
    for (std::int64_t qt = 0; qt < nq; ++qt) {
      const std::int64_t rows = fl::tile_rows(qt, p.Tq, BM), kend = fl::kv_tile_end(qt, BM, BN, p.Tq, p.Tk, p.causal);
      if (counts) counts->fwd_tiles += kend;
      for (std::int64_t r = 0; r < rows; ++r) {  // one row of the tile, as one lane pair holds it
        const std::int64_t i = qt * BM + r;
        const float* qi = &q[static_cast<std::size_t>((bh * p.Tq + i) * p.D)];
        float m = -INFINITY, l = 0;
        std::fill(o.begin(), o.end(), 0.0f);
        for (std::int64_t kt = 0; kt < kend; ++kt) {
          const bool masked = fl::tile_needs_mask(qt, kt, BM, BN, p.Tq, p.Tk, p.causal);
          if (counts && r == 0) counts->masked_tiles += masked;
          float mx = -INFINITY;
          for (std::int64_t c = 0; c < BN; ++c) {
            const std::int64_t j = kt * BN + c;
            // Ragged key rows are zero in shared memory; the mask removes them.
            t[c] = j < p.Tk ? score(p, qi, &k[static_cast<std::size_t>((bh * p.Tk + j) * p.D)], i, j, masked)
                            : (masked ? -INFINITY : 0.0f);
            mx = std::max(mx, t[c]);
          }
          const float m_new = std::max(m, mx), alpha = fl::online_alpha(m, m_new);
          float ps = 0;
          for (auto& x : o) x *= alpha;
          for (std::int64_t c = 0; c < BN; ++c) {
            const std::int64_t j = kt * BN + c;
            const float pr = fl::online_p(t[c], m_new);
            ps += pr;
            const bool keep = fl::dropout_keep_at(p.seed, p.first, drop.threshold, bh, i, j, p.Tq, p.Tk);
            const float pd = round_p(keep ? pr * drop.rscale : 0.0f);
            if (j >= p.Tk) continue;
            const float* vj = &v[static_cast<std::size_t>((bh * p.Tk + j) * p.Dv)];
            for (std::int64_t c2 = 0; c2 < p.Dv; ++c2) o[c2] += pd * vj[c2];
          }
          l = l * alpha + ps;
          m = m_new;
        }
        const float inv = fl::inv_row_sum(l);
        for (std::int64_t c = 0; c < p.Dv; ++c)
          out[static_cast<std::size_t>((bh * p.Tq + i) * p.Dv + c)] = p.round(o[c] * inv);
        lse[static_cast<std::size_t>(bh * p.Tq + i)] = fl::lse_from_stats(m, l);
      }
    }
}

void emulate_flash_backward(const EmuProblem& p, const std::vector<float>& q, const std::vector<float>& k,
                            const std::vector<float>& v, const std::vector<float>& out,
                            const std::vector<float>& grad_out, const std::vector<float>& lse,
                            std::vector<float>& grad_q, std::vector<float>& grad_k, std::vector<float>& grad_v,
                            EmuCounts* counts) {
  const Drop drop(p);
  const float c2 = p.scale * fl::kLog2e;
  auto round_p = [&](float x) { return p.round_p ? p.round(x) : x; };
  // delta = rowsum(grad_out * out): the small kernel before the two backward kernels.
  std::vector<float> delta(static_cast<std::size_t>(p.B * p.Tq));
  for (std::int64_t r = 0; r < p.B * p.Tq; ++r)
    delta[static_cast<std::size_t>(r)] =
        dot(&grad_out[static_cast<std::size_t>(r * p.Dv)], &out[static_cast<std::size_t>(r * p.Dv)], p.Dv);
  // (P, dS) of element (i, j), both rounded to the input dtype as the kernels store them.
  auto element = [&](std::int64_t bh, std::int64_t i, std::int64_t j, bool masked, float& pd, float& ds) {
    const float* qi = &q[static_cast<std::size_t>((bh * p.Tq + i) * p.D)];
    const float* kj = &k[static_cast<std::size_t>((bh * p.Tk + j) * p.D)];
    const float t = dot(qi, kj, p.D) * c2;
    const bool live = !masked || fl::score_live(i, j, p.Tq, p.Tk, p.causal);
    const float pr = live ? fl::recompute_p(t, lse[static_cast<std::size_t>(bh * p.Tq + i)]) : 0.0f;
    const bool keep = fl::dropout_keep_at(p.seed, p.first, drop.threshold, bh, i, j, p.Tq, p.Tk);
    const float dpd = dot(&grad_out[static_cast<std::size_t>((bh * p.Tq + i) * p.Dv)],
                          &v[static_cast<std::size_t>((bh * p.Tk + j) * p.Dv)], p.Dv);
    pd = round_p(keep ? pr * drop.rscale : 0.0f);
    ds = round_p(fl::grad_score(pr, keep ? dpd * drop.rscale : 0.0f, delta[static_cast<std::size_t>(bh * p.Tq + i)]));
  };
  grad_q.assign(static_cast<std::size_t>(p.B * p.Tq * p.D), 0.0f);
  grad_k.assign(static_cast<std::size_t>(p.B * p.Tk * p.D), 0.0f);
  grad_v.assign(static_cast<std::size_t>(p.B * p.Tk * p.Dv), 0.0f);
  std::vector<float> dk(static_cast<std::size_t>(p.D)), dv(static_cast<std::size_t>(p.Dv)),
      dq(static_cast<std::size_t>(p.D));
  for (std::int64_t bh = 0; bh < p.B; ++bh) {
    // dK / dV kernel: one block per key tile, query tiles in increasing order.
    {  // its own tile sizes
      const std::int64_t BM = p.dkdv_bm, BN = p.dkdv_bn;
      const std::int64_t nq = fl::num_tiles(p.Tq, BM), nk = fl::num_tiles(p.Tk, BN);
      for (std::int64_t kt = 0; kt < nk; ++kt) {
        const std::int64_t qbeg = fl::q_tile_begin(kt, BM, BN, p.Tq, p.causal);
        if (counts) counts->dkdv_tiles += std::max<std::int64_t>(nq - qbeg, 0);
        for (std::int64_t r = 0; r < fl::tile_rows(kt, p.Tk, BN); ++r) {
          const std::int64_t j = kt * BN + r;
          std::fill(dk.begin(), dk.end(), 0.0f);
          std::fill(dv.begin(), dv.end(), 0.0f);
          for (std::int64_t qt = qbeg; qt < nq; ++qt) {
            const bool masked = fl::tile_needs_mask(qt, kt, BM, BN, p.Tq, p.Tk, p.causal);
            for (std::int64_t c = 0; c < fl::tile_rows(qt, p.Tq, BM); ++c) {
              const std::int64_t i = qt * BM + c;
              float pd, ds;
              element(bh, i, j, masked, pd, ds);
              const float* goi = &grad_out[static_cast<std::size_t>((bh * p.Tq + i) * p.Dv)];
              const float* qi = &q[static_cast<std::size_t>((bh * p.Tq + i) * p.D)];
              for (std::int64_t e = 0; e < p.Dv; ++e) dv[e] += pd * goi[e];
              for (std::int64_t e = 0; e < p.D; ++e) dk[e] += ds * qi[e];
            }
          }
          for (std::int64_t e = 0; e < p.D; ++e)
            grad_k[static_cast<std::size_t>((bh * p.Tk + j) * p.D + e)] = p.round(dk[e] * p.scale);
          for (std::int64_t e = 0; e < p.Dv; ++e)
            grad_v[static_cast<std::size_t>((bh * p.Tk + j) * p.Dv + e)] = p.round(dv[e]);
        }
      }
    }
    // dQ kernel: one block per query tile, key tiles in increasing order up to the causal end.
    const std::int64_t BM = p.bm, BN = p.bn, nq = fl::num_tiles(p.Tq, BM);
    for (std::int64_t qt = 0; qt < nq; ++qt) {
      const std::int64_t kend = fl::kv_tile_end(qt, BM, BN, p.Tq, p.Tk, p.causal);
      if (counts) counts->dq_tiles += kend;
      for (std::int64_t r = 0; r < fl::tile_rows(qt, p.Tq, BM); ++r) {
        const std::int64_t i = qt * BM + r;
        std::fill(dq.begin(), dq.end(), 0.0f);
        for (std::int64_t kt = 0; kt < kend; ++kt) {
          const bool masked = fl::tile_needs_mask(qt, kt, BM, BN, p.Tq, p.Tk, p.causal);
          for (std::int64_t c = 0; c < fl::tile_rows(kt, p.Tk, BN); ++c) {
            const std::int64_t j = kt * BN + c;
            float pd, ds;
            element(bh, i, j, masked, pd, ds);
            const float* kj = &k[static_cast<std::size_t>((bh * p.Tk + j) * p.D)];
            for (std::int64_t e = 0; e < p.D; ++e) dq[e] += ds * kj[e];
          }
        }
        for (std::int64_t e = 0; e < p.D; ++e)
          grad_q[static_cast<std::size_t>((bh * p.Tq + i) * p.D + e)] = p.round(dq[e] * p.scale);
      }
    }
  }
}

}  // namespace ciuic::test
