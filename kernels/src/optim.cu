// Fused multi-tensor AdamW and SGD (ciuic/kernels/optim.h). Table depth 5:
// params, grads, state1, state2, model copies (null lists give null pointers);
// AdamW adds a sixth, the device step counts.
#include <cuda_runtime.h>

#include <array>
#include <type_traits>
#include <vector>

#include "ciuic/cuda_check.h"
#include "ciuic/half.h"
#include "ciuic/kernels/optim.h"
#include "multi_tensor_table.cuh"

namespace ciuic::kernels {

namespace {

constexpr int kDepth = 5;
enum Slot { kParam = 0, kGrad = 1, kState1 = 2, kState2 = 3, kCopy = 4 };

struct NoCopy {};  // tag: no model copy written

template <typename G>
__device__ __forceinline__ float grad_at(const void* g, std::int64_t i) {
  return static_cast<float>(static_cast<const G*>(g)[i]);
}

template <typename C>
__device__ __forceinline__ void write_copy(void* copy, std::int64_t i, float p) {
  if constexpr (!std::is_same_v<C, NoCopy>) static_cast<C*>(copy)[i] = C(p);
}

// Reads the skip flag once per block. A null flag never skips.
__device__ __forceinline__ bool step_skipped(const float* found_inf) {
  return found_inf != nullptr && *found_inf != 0.0f;
}

// AdamW tables carry a sixth list: the per-tensor device step counts (or nulls).
constexpr int kAdamDepth = 6;
constexpr int kStep = 5;

template <typename G, typename C, bool kDeviceStep>
__global__ void __launch_bounds__(mt::kBlock)
    adamw_kernel(const __grid_constant__ mt::Table<kAdamDepth> t, AdamWConsts c, AdamWHyper h,
                 const float* grad_scale, const float* found_inf) {
  if (step_skipped(found_inf)) return;
  const mt::ChunkRange r = mt::chunk_of_block(t);
  if constexpr (kDeviceStep) c = adamw_consts_at(h, *static_cast<const std::int64_t*>(t.ptr[kStep][r.slot]) + 1);
  float* p = static_cast<float*>(t.ptr[kParam][r.slot]);
  const void* g = t.ptr[kGrad][r.slot];
  float* m = static_cast<float*>(t.ptr[kState1][r.slot]);
  float* v = static_cast<float*>(t.ptr[kState2][r.slot]);
  void* copy = t.ptr[kCopy][r.slot];
  const float scale = grad_scale ? *grad_scale : 1.0f;
  for (std::int64_t i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) {
    float pi = p[i], mi = m[i], vi = v[i];
    adamw_update(pi, mi, vi, scaled_grad(grad_at<G>(g, i), scale), c);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
    write_copy<C>(copy, i, pi);
  }
}

template <typename G, typename C>
__global__ void __launch_bounds__(mt::kBlock)
    sgd_kernel(const __grid_constant__ mt::Table<kDepth> t, SgdConsts c, bool first_step, const float* grad_scale,
               const float* found_inf) {
  if (step_skipped(found_inf)) return;
  const mt::ChunkRange r = mt::chunk_of_block(t);
  float* p = static_cast<float*>(t.ptr[kParam][r.slot]);
  const void* g = t.ptr[kGrad][r.slot];
  float* buf = static_cast<float*>(t.ptr[kState1][r.slot]);
  void* copy = t.ptr[kCopy][r.slot];
  const float scale = grad_scale ? *grad_scale : 1.0f;
  for (std::int64_t i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) {
    float pi = p[i];
    float bi = c.has_momentum && !first_step ? buf[i] : 0.0f;
    sgd_update(pi, bi, scaled_grad(grad_at<G>(g, i), scale), c, first_step);
    p[i] = pi;
    if (c.has_momentum) buf[i] = bi;
    write_copy<C>(copy, i, pi);
  }
}

// Advances each tensor's device step count (one block per tensor) unless the step was skipped.
__global__ void advance_steps_kernel(const __grid_constant__ mt::Table<1> t, const float* found_inf) {
  if (threadIdx.x != 0 || step_skipped(found_inf)) return;
  const mt::ChunkRange r = mt::chunk_of_block(t);
  if (r.begin == 0) ++*static_cast<std::int64_t*>(t.ptr[0][r.slot]);
}

// Calls f(G{}, C{}) for the grad storage type and the copy type (NoCopy when absent).
template <typename F>
void dispatch_grad_copy(const FusedOptimTensors& t, const char* op, F&& f) {
  auto with_copy = [&](auto gtag) {
    if (t.model_copies == nullptr) return f(gtag, NoCopy{});
    switch (t.copy_dtype) {
      case DType::f16: return f(gtag, Half{});
      case DType::bf16: return f(gtag, BFloat16{});
      default: break;
    }
    ::ciuic::detail::fail<DTypeError>(op, "model copies have dtype ", dtype_name(t.copy_dtype),
                                      "; expected f16 or bf16");
  };
  switch (t.grad_dtype) {
    case DType::f32: return with_copy(float{});
    case DType::f16: return with_copy(Half{});
    case DType::bf16: return with_copy(BFloat16{});
    default: break;
  }
  ::ciuic::detail::fail<DTypeError>(op, "gradients have dtype ", dtype_name(t.grad_dtype),
                                    "; expected f32, f16 or bf16");
}

void check_lists(const FusedOptimTensors& t, const char* op, bool need_state1, bool need_state2) {
  CIUIC_CHECK(t.count >= 0, ValueError, op, "count is ", t.count, "; expected >= 0");
  if (t.count == 0) return;
  CIUIC_CHECK(t.numels && t.params && t.grads, ValueError, op,
              "numels, params and grads are required for ", t.count, " tensors");
  CIUIC_CHECK(!need_state1 || t.state1, ValueError, op, "state1 (", need_state2 ? "exp_avg" : "momentum buffers",
              ") is null; expected one f32 buffer per parameter");
  CIUIC_CHECK(!need_state2 || t.state2, ValueError, op,
              "state2 (exp_avg_sq) is null; expected one f32 buffer per parameter");
}

std::array<const void* const*, kDepth> lists_of(const FusedOptimTensors& t) {
  return {t.params, t.grads, t.state1, t.state2, t.model_copies};
}

}  // namespace

void fused_adamw(const FusedOptimTensors& t, const AdamWHyper& h, std::int64_t step, const float* grad_scale,
                 const float* found_inf, void* stream) {
  constexpr const char* op = "fused_adamw";
  const bool device_steps = t.steps != nullptr;
  const AdamWConsts c = adamw_consts(h, device_steps ? 1 : step);  // also validates h
  check_lists(t, op, true, true);
  auto s = static_cast<cudaStream_t>(stream);
  const std::array<const void* const*, kAdamDepth> lists{t.params, t.grads, t.state1, t.state2, t.model_copies,
                                                         t.steps};
  dispatch_grad_copy(t, op, [&](auto gtag, auto ctag) {
    using G = decltype(gtag);
    using C = decltype(ctag);
    mt::for_each_launch<kAdamDepth>(lists, t.numels, t.count, [&](const mt::Table<kAdamDepth>& tab,
                                                                  unsigned blocks) {
      if (device_steps) adamw_kernel<G, C, true><<<blocks, mt::kBlock, 0, s>>>(tab, c, h, grad_scale, found_inf);
      else adamw_kernel<G, C, false><<<blocks, mt::kBlock, 0, s>>>(tab, c, h, grad_scale, found_inf);
    });
  });
  if (!device_steps || t.count == 0) return;
  // After every update launch (they read the counts): one single-element "chunk" per tensor.
  std::vector<std::int64_t> ones(static_cast<std::size_t>(t.count), 1);
  for (int i = 0; i < t.count; ++i)
    CIUIC_CHECK(t.steps[i] != nullptr, ValueError, op, "steps[", i, "] is null; expected one i64 device scalar per "
                "tensor");
  mt::for_each_launch<1>({t.steps}, ones.data(), t.count, [&](const mt::Table<1>& tab, unsigned blocks) {
    advance_steps_kernel<<<blocks, 32, 0, s>>>(tab, found_inf);
  });
}

void fused_sgd(const FusedOptimTensors& t, const SgdHyper& h, bool first_step, const float* grad_scale,
               const float* found_inf, void* stream) {
  constexpr const char* op = "fused_sgd";
  const SgdConsts c = sgd_consts(h);
  check_lists(t, op, c.has_momentum, false);
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_grad_copy(t, op, [&](auto gtag, auto ctag) {
    using G = decltype(gtag);
    using C = decltype(ctag);
    mt::for_each_launch<kDepth>(lists_of(t), t.numels, t.count, [&](const mt::Table<kDepth>& tab, unsigned blocks) {
      sgd_kernel<G, C><<<blocks, mt::kBlock, 0, s>>>(tab, c, first_step, grad_scale, found_inf);
    });
  });
}

}  // namespace ciuic::kernels
