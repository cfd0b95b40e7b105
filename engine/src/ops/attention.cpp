// scaled_dot_product_attention, CPU reference: one tape node that materialises
// the (Tq, Tk) probabilities per batch entry. CUDA tensors go to the flash
// kernels (attention_cuda.cpp), which never materialise them.
//
// Shapes: q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv) -> out (..., Tq, Dv).
// The batch dims (...) must be equal for q, k and v (no broadcasting); they are
// flattened to B.
//   S = scale * q k^T, P = softmax_rows(S), Pd = P * keep / (1 - p), out = Pd v.
// causal: query i sees keys j <= i (top-left aligned, as PyTorch, also when
// Tq != Tk); the other scores are -inf, so their P is 0. Tk == 0 gives zeros.
// Dropout (p > 0): element (b, i, j) is kept as kernels::flash::dropout_keep_at
// decides from the generator state (seed, first = gen.advance(B*Tq*Tk)), the
// same function the CUDA kernels evaluate, so both devices drop the same
// elements and a checkpoint recomputation (generator restored) replays the mask.
// Backward, with P saved (in f32, or f64 for f64 inputs) and the mask recomputed:
//   gV = Pd^T gO,  gPd = gO V^T,  gP = gPd * keep / (1 - p),
//   gS = P * (gP - rowsum(P * gP)),  gQ = scale * gS K,  gK = scale * gS^T Q.
// Sums run in the accumulation type (f32 for f32/f16/bf16, f64 for f64).
#include <algorithm>
#include <cmath>
#include <optional>

#include "ciuic/amp.h"
#include "ciuic/checkpoint.h"
#include "ciuic/kernels/flash_attn_math.h"
#include "acc_data.h"
#include "attention_cuda.h"
#include "op_util.h"

namespace ciuic {

namespace {

namespace flash = kernels::flash;
using attn::AttnDims;
using attn::AttnDropout;

// Keys visible to query i: [0, visible(d, i)).
std::int64_t visible(const AttnDims& d, std::int64_t i) { return flash::visible_keys(i, d.Tk, d.causal); }

// Whether element (b, i, j) survives dropout, and the factor it is then scaled by.
template <typename A>
struct DropRule {
  const AttnDropout& m;
  const AttnDims& d;
  A rscale;
  DropRule(const AttnDropout& m_, const AttnDims& d_)
      : m(m_), d(d_), rscale(static_cast<A>(m_.p > 0 ? 1.0 / (1.0 - m_.p) : 1.0)) {}
  A factor(std::int64_t b, std::int64_t i, std::int64_t j) const {
    if (m.threshold == 0) return A(1);
    return flash::dropout_keep_at(m.seed, m.first, m.threshold, b, i, j, d.Tq, d.Tk) ? rscale : A(0);
  }
};

template <typename A>
void attention_forward_rows(const A* q, const A* k, const A* v, const AttnDims& d, A scale, const AttnDropout& drop,
                            A* out, A* P) {
  const DropRule<A> dr(drop, d);
  std::vector<A> s(static_cast<std::size_t>(d.Tk));
  for (std::int64_t b = 0; b < d.B; ++b) {
    const A* qb = q + b * d.Tq * d.D;
    const A* kb = k + b * d.Tk * d.D;
    const A* vb = v + b * d.Tk * d.Dv;
    for (std::int64_t i = 0; i < d.Tq; ++i) {
      const std::int64_t nk = visible(d, i);
      const A* qi = qb + i * d.D;
      A* pi = P + (b * d.Tq + i) * d.Tk;
      A* oi = out + (b * d.Tq + i) * d.Dv;
      if (nk == 0) continue;  // no keys: out row stays 0
      A m = -INFINITY;
      for (std::int64_t j = 0; j < nk; ++j) {
        const A* kj = kb + j * d.D;
        A dot = 0;
        for (std::int64_t c = 0; c < d.D; ++c) dot += qi[c] * kj[c];
        s[j] = dot * scale;
        m = std::max(m, s[j]);
      }
      A sum = 0;
      for (std::int64_t j = 0; j < nk; ++j) sum += (s[j] = std::exp(s[j] - m));
      const A inv = A(1) / sum;
      for (std::int64_t j = 0; j < nk; ++j) {
        pi[j] = s[j] * inv;
        const A pd = pi[j] * dr.factor(b, i, j);
        const A* vj = vb + j * d.Dv;
        for (std::int64_t c = 0; c < d.Dv; ++c) oi[c] += pd * vj[c];
      }
    }
  }
}

// gq, gk, gv: zeroed outputs, or null where not wanted.
template <typename A>
void attention_backward_rows(const A* go, const A* q, const A* k, const A* v, const A* P, const AttnDims& d, A scale,
                             const AttnDropout& drop, A* gq, A* gk, A* gv) {
  const DropRule<A> dr(drop, d);
  std::vector<A> gs(static_cast<std::size_t>(d.Tk)), f(static_cast<std::size_t>(d.Tk));
  for (std::int64_t b = 0; b < d.B; ++b) {
    const A* qb = q + b * d.Tq * d.D;
    const A* kb = k + b * d.Tk * d.D;
    const A* vb = v + b * d.Tk * d.Dv;
    for (std::int64_t i = 0; i < d.Tq; ++i) {
      const std::int64_t nk = visible(d, i);
      const A* pi = P + (b * d.Tq + i) * d.Tk;
      const A* goi = go + (b * d.Tq + i) * d.Dv;
      for (std::int64_t j = 0; j < nk; ++j) f[j] = dr.factor(b, i, j);
      if (gv) {
        A* gvb = gv + b * d.Tk * d.Dv;
        for (std::int64_t j = 0; j < nk; ++j)
          for (std::int64_t c = 0; c < d.Dv; ++c) gvb[j * d.Dv + c] += pi[j] * f[j] * goi[c];
      }
      if (!gq && !gk) continue;
      A delta = 0;  // rowsum(P * gP)
      for (std::int64_t j = 0; j < nk; ++j) {
        const A* vj = vb + j * d.Dv;
        A gp = 0;
        for (std::int64_t c = 0; c < d.Dv; ++c) gp += goi[c] * vj[c];
        gp *= f[j];
        gs[j] = gp;
        delta += pi[j] * gp;
      }
      for (std::int64_t j = 0; j < nk; ++j) gs[j] = pi[j] * (gs[j] - delta) * scale;  // scale folded in
      const A* qi = qb + i * d.D;
      A* gqi = gq ? gq + (b * d.Tq + i) * d.D : nullptr;
      A* gkb = gk ? gk + b * d.Tk * d.D : nullptr;
      for (std::int64_t j = 0; j < nk; ++j) {
        const A* kj = kb + j * d.D;
        if (gqi)
          for (std::int64_t c = 0; c < d.D; ++c) gqi[c] += gs[j] * kj[c];
        if (gkb)
          for (std::int64_t c = 0; c < d.D; ++c) gkb[j * d.D + c] += gs[j] * qi[c];
      }
    }
  }
}

AttnDims check_attention_args(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  ops::check_defined(op, {{"q", &q}, {"k", &k}, {"v", &v}});
  ops::check_same_device(op, {{"q", &q}, {"k", &k}, {"v", &v}});
  ops::check_same_dtype(op, {{"q", &q}, {"k", &k}, {"v", &v}});
  ops::check_floating(op, "q", q);
  auto all = [&] { return ops::describe_all({{"q", &q}, {"k", &k}, {"v", &v}}); };
  CIUIC_CHECK(q.dim() >= 2 && k.dim() >= 2 && v.dim() >= 2, ShapeError, op, "got ", all(),
              "; expected q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv) with at least 2 dims each");
  Shape bq(q.shape().begin(), q.shape().end() - 2), bk(k.shape().begin(), k.shape().end() - 2),
      bv(v.shape().begin(), v.shape().end() - 2);
  CIUIC_CHECK(bq == bk && bq == bv, ShapeError, op, "batch dims differ (", all(),
              "); expected equal leading dims (attention does not broadcast them)");
  CIUIC_CHECK(q.size(-1) == k.size(-1), ShapeError, op, "head dims of q and k differ (", all(),
              "); expected q (..., Tq, D) and k (..., Tk, D) with one D");
  CIUIC_CHECK(k.size(-2) == v.size(-2), ShapeError, op, "k and v have different key counts (", all(),
              "); expected k (..., Tk, D) and v (..., Tk, Dv) with one Tk");
  AttnDims d;
  d.B = shape_numel(bq);
  d.Tq = q.size(-2);
  d.Tk = k.size(-2);
  d.D = q.size(-1);
  d.Dv = v.size(-1);
  d.causal = causal;
  return d;
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    std::optional<double> scale_opt, double dropout_p, Generator* gen) {
  if (auto c = amp::autocast_args({&q, &k, &v}))
    return scaled_dot_product_attention((*c)[0], (*c)[1], (*c)[2], causal, scale_opt, dropout_p, gen);
  const char* op = "scaled_dot_product_attention";
  AttnDims d = check_attention_args(op, q, k, v, causal);
  const double scale = scale_opt ? *scale_opt : (d.D > 0 ? 1.0 / std::sqrt(static_cast<double>(d.D)) : 1.0);
  CIUIC_CHECK(std::isfinite(scale), ValueError, op, "scale = ", scale, "; expected a finite scale");
  CIUIC_CHECK(dropout_p >= 0 && dropout_p < 1, ValueError, op, "dropout_p = ", dropout_p,
              "; expected a drop probability in [0, 1)");
  AttnDropout drop;
  if (dropout_p > 0) {
    // Drawn before any replay, so a selective recomputation advances the generator
    // exactly as the forward did.
    Generator& g = gen ? *gen : default_generator();
    drop.p = dropout_p;
    drop.seed = g.seed;
    drop.first = g.advance(static_cast<std::uint64_t>(d.B * d.Tq * d.Tk));
    drop.threshold = dropout_threshold(dropout_p);
  }
#ifdef CIUIC_WITH_CUDA
  if (q.device().is_cuda()) return attn::attention_cuda(op, q, k, v, d, scale, drop);
#endif
  ops::require_cpu(op, {&q, &k, &v});
  Shape out_shape = q.shape();
  out_shape.back() = d.Dv;
  Tensor out, P;
  if (auto kept = selective::replay("attention")) {
    // Selective checkpoint recomputation: the forward kept the output and, since this
    // reference's backward reads the probabilities, P as well (the CUDA path keeps
    // the output and its log-sum-exp instead).
    out = (*kept)[0];
    P = (*kept)[1];
  } else {
    dispatch_floating(q.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      using A = acc_t<T>;
      ops::AccIn<T> qi(q), ki(k), vi(v);
      ops::AccOut<T> o(out_shape, q.device());
      ops::AccOut<A> p({d.B, d.Tq, d.Tk}, q.device());
      attention_forward_rows<A>(qi.data(), ki.data(), vi.data(), d, static_cast<A>(scale), drop, o.data(),
                                p.data());
      out = o.finish();
      P = p.finish();
    });
    selective::keep("attention", {out, P});
  }
  if (!needs_grad({&q, &k, &v})) return out;

  SavedTensor sq(q), sk(k), sv(v);
  const bool want_q = q.requires_grad(), want_k = k.requires_grad(), want_v = v.requires_grad();
  record(op, {q, k, v}, {out}, [=](const GradList& g) {
    Tensor tq = sq.unpack(op), tk = sk.unpack(op), tv = sv.unpack(op);
    GradList res(3);
    dispatch_floating(tq.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      using A = acc_t<T>;
      ops::AccIn<T> gi(g[0]), qi(tq), ki(tk), vi(tv);
      std::optional<ops::AccOut<T>> gq, gk, gv;
      if (want_q) gq.emplace(tq.shape(), tq.device());
      if (want_k) gk.emplace(tk.shape(), tk.device());
      if (want_v) gv.emplace(tv.shape(), tv.device());
      attention_backward_rows<A>(gi.data(), qi.data(), ki.data(), vi.data(), static_cast<const A*>(P.data_ptr()), d,
                                 static_cast<A>(scale), drop, gq ? gq->data() : nullptr, gk ? gk->data() : nullptr,
                                 gv ? gv->data() : nullptr);
      if (gq) res[0] = gq->finish();
      if (gk) res[1] = gk->finish();
      if (gv) res[2] = gv->finish();
    });
    return res;
  });
  return out;
}

}  // namespace ciuic
