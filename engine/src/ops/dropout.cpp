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
// On CUDA the dropout kernels evaluate the same rule from (seed, first, p): the
// same generator state gives the same mask bit for bit on either device.
#include "acc_data.h"
#include "ciuic/dropout_mask.h"
#include "op_util.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/dropout.h"
#include "ciuic/stream.h"
#endif

namespace ciuic {

namespace {

struct DropoutMask {
  std::uint64_t seed = 0;
  std::uint64_t first = 0;
  std::uint32_t threshold = 0;
  double scale = 0;  // 1 / (1 - p); 0 when p == 1
  double p = 0;
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

#ifdef CIUIC_WITH_CUDA
// apply_mask_cpu on a CUDA tensor (forward and backward apply the same mask).
Tensor apply_mask_cuda(const Tensor& t, const DropoutMask& m, bool backward) {
  Tensor tc = t.detach().contiguous();
  DeviceGuard guard(t.device());
  Tensor out = make_tensor(t.shape(), t.dtype(), t.device());
  auto launch = backward ? kernels::dropout_backward : kernels::dropout_forward;
  launch(out.data_ptr(), tc.data_ptr(), t.dtype(), t.numel(), m.p, m.seed, m.first, current_stream(t.device()));
  return out;
}
#endif

Tensor apply_mask(const char* op, const Tensor& t, const DropoutMask& m, bool backward) {
#ifdef CIUIC_WITH_CUDA
  if (t.device().is_cuda()) return apply_mask_cuda(t, m, backward);
#else
  (void)backward;
#endif
  return apply_mask_cpu(op, t, m);
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  const char* op = "dropout";
  ops::check_defined(op, {{"input", &x}});
  ops::check_floating(op, "input", x);
  CIUIC_CHECK(p >= 0 && p <= 1, ValueError, op, "p = ", p, "; expected a drop probability in [0, 1]");
  if (!training || p == 0) return x;
  Generator& g = gen ? *gen : default_generator();
  DropoutMask m;
  m.seed = g.seed;
  m.first = g.advance(static_cast<std::uint64_t>(x.numel()));
  m.threshold = dropout_threshold(p);
  m.scale = p == 1 ? 0.0 : 1.0 / (1.0 - p);
  m.p = p;
  Tensor out = apply_mask(op, x, m, false);
  if (needs_grad({&x}))
    record(op, {x}, {out}, [m, op](const GradList& gr) { return GradList{apply_mask(op, gr[0], m, true)}; });
  return out;
}

}  // namespace ciuic
