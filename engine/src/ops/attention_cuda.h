// Internal to engine/src/ops: one scaled_dot_product_attention call's dims and
// dropout draw, shared by the CPU reference (attention.cpp) and the CUDA path
// (attention_cuda.cpp).
#pragma once

#include <cstdint>

#include "ciuic/tensor.h"

namespace ciuic::attn {

struct AttnDims {
  std::int64_t B = 1, Tq = 0, Tk = 0, D = 0, Dv = 0;  // B: the batch dims flattened
  bool causal = false;
};

// The dropout mask's generator state; threshold 0 (p == 0) keeps everything.
struct AttnDropout {
  double p = 0;
  std::uint64_t seed = 0, first = 0;
  std::uint32_t threshold = 0;
};

#ifdef CIUIC_WITH_CUDA
// The whole op on CUDA tensors (validated by the caller): forward through the
// flash kernels, the tape node, and the selective-checkpoint keep/replay of
// (out, lse).
Tensor attention_cuda(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const AttnDims& d,
                      double scale, const AttnDropout& drop);
#endif

}  // namespace ciuic::attn
