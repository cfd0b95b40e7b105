// dropout: out = x * mask / (1 - p), one tape node.
//
// The mask is a pure function of the generator state: for n = numel(x) and
// (seed, first = gen.advance(n)), element i (row-major) is kept iff
// dropout_keep(seed, first + i, dropout_threshold(p)) (ciuic/dropout_mask.h, shared
// with the CUDA kernel). Restoring a saved Generator replays the mask exactly.
// Dropped elements are exactly 0 (even where x is inf or nan).
//
// Backward recomputes the mask from (seed, first) instead of saving it: no
// memory is held per element, at the cost of one Philox evaluation each.
//
// !training or p == 0 returns x itself and leaves the generator untouched.
// p == 1 drops everything (zeros, zero gradient) and still advances the generator.
#include "acc_data.h"
#include "ciuic/dropout_mask.h"
#include "op_util.h"

namespace ciuic {

namespace {

struct DropoutMask {
  std::uint64_t seed = 0;
  std::uint64_t first = 0;
  std::uint32_t threshold = 0;
  double scale = 0;  // 1 / (1 - p); 0 when p == 1
};

// out[i] = keep(i) ? t[i] * scale : 0 over t's row-major elements.
Tensor apply_mask_cpu(const char* op, const Tensor& t, const DropoutMask& m) {
  Tensor out;
  dispatch_floating(t.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    ops::AccIn<T> in(t);
    ops::AccOut<T> o(t.shape(), t.device());
    const A* pi = in.data();
    A* po = o.data();
    const A scale = static_cast<A>(m.scale);
    const auto n = static_cast<std::uint64_t>(t.numel());
    for (std::uint64_t i = 0; i < n; ++i)
      po[i] = dropout_keep(m.seed, m.first + i, m.threshold) ? pi[i] * scale : A(0);
    out = o.finish();
  });
  return out;
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  const char* op = "dropout";
  ops::check_defined(op, {{"input", &x}});
  ops::check_floating(op, "input", x);
  CIUIC_CHECK(p >= 0 && p <= 1, ValueError, op, "p = ", p, "; expected a drop probability in [0, 1]");
  if (!training || p == 0) return x;
  ops::require_cpu(op, {&x});
  // A CUDA path goes here: if (x.device().is_cuda()) return a kernel using dropout_keep with the same m.
  Generator& g = gen ? *gen : default_generator();
  DropoutMask m;
  m.seed = g.seed;
  m.first = g.advance(static_cast<std::uint64_t>(x.numel()));
  m.threshold = dropout_threshold(p);
  m.scale = p == 1 ? 0.0 : 1.0 / (1.0 - p);
  Tensor out = apply_mask_cpu(op, x, m);
  if (needs_grad({&x}))
    record(op, {x}, {out}, [m, op](const GradList& gr) { return GradList{apply_mask_cpu(op, gr[0], m)}; });
  return out;
}

}  // namespace ciuic
