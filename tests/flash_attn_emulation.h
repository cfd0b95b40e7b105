// A CPU emulation of the flash-attention kernels' block schedule
// (kernels/src/flash_attn_fwd.cu, flash_attn_bwd.cu, Tensor Core variant):
// plain loops over the same 64 x 64 tiles in the same order, with the same
// per-element functions of ciuic/kernels/flash_attn_math.h (masks, causal tile
// skipping, online-softmax update, lse, recomputed P, dropout counters), the
// same f32 statistics and the same rounding of P and dS to the input dtype
// before their products. The tests compare it with the CPU reference op, so the
// algorithm (not the CUDA code itself) is verified without a GPU.
//
// Buffers are contiguous f32: q (B, Tq, D), k (B, Tk, D), v (B, Tk, Dv),
// out / grad_out (B, Tq, Dv), lse (B, Tq); the f16/bf16 inputs are given already
// rounded. `round` rounds a value to the input dtype (identity for f32).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace ciuic::test {

struct EmuProblem {
  std::int64_t B = 1, Tq = 0, Tk = 0, D = 0, Dv = 0;
  bool causal = false;
  float scale = 1;
  double dropout_p = 0;
  std::uint64_t seed = 0, first = 0;
  std::function<float(float)> round = [](float x) { return x; };
  // The schedule: Tensor Core kernels by default (64 x 64 tiles everywhere, P and dS
  // rounded to the dtype); simt() switches to the SIMT kernels' tiles (forward and
  // dQ: 16 query rows x 32 keys; dK/dV: 16 keys x 32 query rows; P and dS in f32).
  std::int64_t bm = 64, bn = 64, dkdv_bm = 64, dkdv_bn = 64;
  bool round_p = true;
  void simt() {
    bm = 16;
    bn = 32;
    dkdv_bm = 32;
    dkdv_bn = 16;
    round_p = false;
  }
};

// Tiles visited, to check causal block skipping.
struct EmuCounts {
  std::int64_t fwd_tiles = 0, dkdv_tiles = 0, dq_tiles = 0, masked_tiles = 0;
};

void emulate_flash_forward(const EmuProblem& p, const std::vector<float>& q, const std::vector<float>& k,
                           const std::vector<float>& v, std::vector<float>& out, std::vector<float>& lse,
                           EmuCounts* counts = nullptr);

void emulate_flash_backward(const EmuProblem& p, const std::vector<float>& q, const std::vector<float>& k,
                            const std::vector<float>& v, const std::vector<float>& out,
                            const std::vector<float>& grad_out, const std::vector<float>& lse,
                            std::vector<float>& grad_q, std::vector<float>& grad_k, std::vector<float>& grad_v,
                            EmuCounts* counts = nullptr);

}  // namespace ciuic::test
