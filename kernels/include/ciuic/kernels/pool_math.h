// Index arithmetic and per-output / per-input bodies of the hand-written pooling
// kernels (src/pool.cu), host- and device-callable so that the CPU tests run the
// very code the GPU runs against the engine's CPU references.
//
// A plane is one (n, c) image of H x W, contiguous; outputs are OH x OW.
//   window pooling (max): output (oh, ow) covers rows [oh*s - p, oh*s - p + k) and
//     columns likewise, clipped to the plane (padding never wins a max).
//   adaptive bins: output i of n over a length len covers [floor(i*len/n),
//     ceil((i+1)*len/n)) (PyTorch's bins; they may overlap when len % n != 0).
// Backward passes gather: each input element sums the outputs whose window or bin
// holds it, so no atomics are needed and the result is deterministic.
#pragma once

#include <cstdint>

#include "ciuic/macros.h"

namespace ciuic::kernels::pool {

// A half-open range [lo, hi) of output indices (empty when hi <= lo).
struct Range {
  std::int64_t lo = 0, hi = 0;
};

// Windows (kernel k, stride s, padding p, n outputs) whose span holds input index i:
// o*s - p <= i < o*s - p + k  <=>  ceil((i + p - k + 1) / s) <= o <= floor((i + p) / s).
CIUIC_HD Range windows_covering(std::int64_t i, std::int64_t k, std::int64_t s, std::int64_t p, std::int64_t n) {
  const std::int64_t a = i + p - k + 1;
  Range r;
  r.lo = a <= 0 ? 0 : (a + s - 1) / s;
  const std::int64_t last = (i + p) / s;  // i + p >= 0 since i, p >= 0
  r.hi = last + 1 < n ? last + 1 : n;
  return r;
}

CIUIC_HD std::int64_t bin_start(std::int64_t i, std::int64_t len, std::int64_t n) { return (i * len) / n; }
CIUIC_HD std::int64_t bin_end(std::int64_t i, std::int64_t len, std::int64_t n) { return ((i + 1) * len + n - 1) / n; }

// Adaptive bins (n over len) that hold input index i:
// bin_start(o) <= i  <=>  o*len < (i+1)*n  <=>  o <= ((i+1)*n - 1) / len;
// bin_end(o) > i     <=>  (o+1)*len > i*n   <=>  o >= floor(i*n / len).
CIUIC_HD Range bins_covering(std::int64_t i, std::int64_t len, std::int64_t n) {
  Range r;
  r.lo = (i * n) / len;
  const std::int64_t last = ((i + 1) * n - 1) / len;
  r.hi = last + 1 < n ? last + 1 : n;
  return r;
}

// Max over the window of output (oh, ow) of one plane; load(flat) returns the value
// at flat = ih*W + iw in the arithmetic type A. The first maximum in row-major order
// wins ties, and the first nan wins over numbers (the CPU reference's rule).
// Writes the winner's flat index to *index (-1 only for an empty window, which
// the op's checks rule out).
template <typename A, typename Load>
CIUIC_HD A window_max(Load load, std::int64_t H, std::int64_t W, std::int64_t oh, std::int64_t ow, std::int64_t k,
                      std::int64_t s, std::int64_t p, std::int64_t* index) {
  const std::int64_t h0 = oh * s - p, w0 = ow * s - p;
  const std::int64_t h1 = h0 + k < H ? h0 + k : H, w1 = w0 + k < W ? w0 + k : W;
  A best = A(0);
  std::int64_t best_i = -1;
  for (std::int64_t ih = h0 < 0 ? 0 : h0; ih < h1; ++ih)
    for (std::int64_t iw = w0 < 0 ? 0 : w0; iw < w1; ++iw) {
      const A v = load(ih * W + iw);
      const bool v_nan = v != v, best_nan = best != best;
      if (best_i < 0 || v > best || (v_nan && !best_nan)) {
        best = v;
        best_i = ih * W + iw;
      }
    }
  *index = best_i;
  return best;
}

// Gradient of input (ih, iw) of one plane of max pooling: the sum of gout over the
// outputs whose saved winner index is this element. index(o) and gout(o) read the
// plane's saved indices and output gradients at o = oh*OW + ow.
template <typename A, typename Index, typename Grad>
CIUIC_HD A max_pool_input_grad(Index index, Grad gout, std::int64_t W, std::int64_t OH, std::int64_t OW,
                               std::int64_t ih, std::int64_t iw, std::int64_t k, std::int64_t s, std::int64_t p) {
  const Range rh = windows_covering(ih, k, s, p, OH), rw = windows_covering(iw, k, s, p, OW);
  const std::int64_t flat = ih * W + iw;
  A sum = A(0);
  for (std::int64_t oh = rh.lo; oh < rh.hi; ++oh)
    for (std::int64_t ow = rw.lo; ow < rw.hi; ++ow)
      if (index(oh * OW + ow) == flat) sum += gout(oh * OW + ow);
  return sum;
}

// Mean over the adaptive bin of output (oh, ow) of one plane.
template <typename A, typename Load>
CIUIC_HD A adaptive_bin_mean(Load load, std::int64_t H, std::int64_t W, std::int64_t OH, std::int64_t OW,
                             std::int64_t oh, std::int64_t ow) {
  const std::int64_t h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
  const std::int64_t w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
  A sum = A(0);
  for (std::int64_t ih = h0; ih < h1; ++ih)
    for (std::int64_t iw = w0; iw < w1; ++iw) sum += load(ih * W + iw);
  return sum / static_cast<A>((h1 - h0) * (w1 - w0));
}

// Gradient of input (ih, iw) of one plane of adaptive average pooling: every bin
// holding it contributes gout / (its element count).
template <typename A, typename Grad>
CIUIC_HD A adaptive_input_grad(Grad gout, std::int64_t H, std::int64_t W, std::int64_t OH, std::int64_t OW,
                               std::int64_t ih, std::int64_t iw) {
  const Range rh = bins_covering(ih, H, OH), rw = bins_covering(iw, W, OW);
  A sum = A(0);
  for (std::int64_t oh = rh.lo; oh < rh.hi; ++oh) {
    const std::int64_t nh = bin_end(oh, H, OH) - bin_start(oh, H, OH);
    for (std::int64_t ow = rw.lo; ow < rw.hi; ++ow) {
      const std::int64_t nw = bin_end(ow, W, OW) - bin_start(ow, W, OW);
      sum += gout(oh * OW + ow) / static_cast<A>(nh * nw);
    }
  }
  return sum;
}

}  // namespace ciuic::kernels::pool
