// Multi-tensor norm, unscale + inf check, and scale (ciuic/kernels/multi_tensor.h).
// One block per chunk of kMultiTensorChunk elements; the chunk table travels in
// kernel parameters (multi_tensor_table.cuh).
#include <cuda_runtime.h>

#include <type_traits>

#include "ciuic/cuda_check.h"
#include "ciuic/half.h"
#include "ciuic/kernels/multi_tensor.h"
#include "ciuic/kernels/optim_math.h"
#include "multi_tensor_table.cuh"

namespace ciuic::kernels {

namespace {

// f32 / f16 / bf16 storage types for the dtypes these kernels accept.
template <typename F>
void dispatch_f32_f16_bf16(DType t, const char* op, const char* what, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f16: f(Half{}); return;
    case DType::bf16: f(BFloat16{}); return;
    default: break;
  }
  ::ciuic::detail::fail<DTypeError>(op, what, " has dtype ", dtype_name(t), "; expected f32, f16 or bf16");
}

template <typename T>
__device__ __forceinline__ float load_f32(const T* p) {
  return static_cast<float>(*p);
}
template <typename T>
__device__ __forceinline__ void store_f32(T* p, float v) {
  if constexpr (std::is_same_v<T, float>) *p = v;
  else *p = T(v);
}

void check_count(int count, const std::int64_t* numels, const char* op) {
  CIUIC_CHECK(count >= 0, ValueError, op, "count is ", count, "; expected >= 0");
  CIUIC_CHECK(count == 0 || numels != nullptr, ValueError, op, "numels is null for ", count, " tensors");
}

// ---- norm ----

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
  __device__ double operator()(double a, double b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return nan_propagating_max(a, b); }
};

// partials[block_offset + blockIdx.x] = sum of x^2 (l2) or max |x| (inf) over the
// block's chunk.
template <typename T, bool L2>
__global__ void __launch_bounds__(mt::kBlock)
    norm_partials_kernel(const __grid_constant__ mt::Table<1> t, float* partials) {
  const mt::ChunkRange r = mt::chunk_of_block(t);
  const T* x = static_cast<const T*>(t.ptr[0][r.slot]);
  float acc = 0.0f;
  for (std::int64_t i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) {
    const float v = load_f32(x + i);
    if constexpr (L2) acc = fma_rn(v, v, acc);
    else acc = nan_propagating_max(acc, fabsf(v));
  }
  float total;
  if constexpr (L2) total = mt::block_reduce(acc, SumOp{});
  else total = mt::block_reduce(acc, MaxOp{});
  if (threadIdx.x == 0) partials[t.block_offset + blockIdx.x] = total;
}

// One block: *out = sqrt(sum partials) (summed in f64) or max partials.
constexpr unsigned kFinalBlock = 1024;
template <bool L2>
__global__ void __launch_bounds__(kFinalBlock) norm_finalize_kernel(const float* partials, std::int64_t n,
                                                                     float* out) {
  if constexpr (L2) {
    double acc = 0.0;
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += static_cast<double>(partials[i]);
    acc = mt::block_reduce(acc, SumOp{});
    if (threadIdx.x == 0) *out = static_cast<float>(sqrt(acc));
  } else {
    float acc = 0.0f;
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) acc = nan_propagating_max(acc, partials[i]);
    acc = mt::block_reduce(acc, MaxOp{});
    if (threadIdx.x == 0) *out = acc;
  }
}

// ---- unscale ----

template <typename In, typename Out>
__global__ void __launch_bounds__(mt::kBlock)
    unscale_kernel(const __grid_constant__ mt::Table<2> t, const float* inv_scale, float* found_inf) {
  const mt::ChunkRange r = mt::chunk_of_block(t);
  const In* in = static_cast<const In*>(t.ptr[0][r.slot]);
  Out* out = static_cast<Out*>(t.ptr[1][r.slot]);
  const float s = *inv_scale;
  bool bad = false;
  for (std::int64_t i = r.begin + threadIdx.x; i < r.end; i += blockDim.x)
    bad |= !unscale_element(load_f32(in + i), s, out[i]);  // finiteness of the stored value
  // Every writer stores the same 1.0f, so concurrent stores need no atomics.
  if (bad) *found_inf = 1.0f;
}

// ---- scale ----

template <typename T>
__global__ void __launch_bounds__(mt::kBlock)
    scale_kernel(const __grid_constant__ mt::Table<1> t, const float* coef) {
  const mt::ChunkRange r = mt::chunk_of_block(t);
  T* x = static_cast<T*>(t.ptr[0][r.slot]);
  const float c = *coef;
  for (std::int64_t i = r.begin + threadIdx.x; i < r.end; i += blockDim.x)
    store_f32(x + i, fmul_rn(load_f32(x + i), c));
}

__global__ void clip_coefficient_kernel(const float* total_norm, float max_norm, float eps, float* coef,
                                        DeviceErrorSlot errors, std::int64_t count, double norm_type) {
  const float total = *total_norm;
  *coef = clip_grad_coefficient(total, max_norm, eps);
  if (!is_finite_f32(total))
    report_device_error(errors, DeviceErrorCode::clip_grad_nonfinite,
                        __double_as_longlong(static_cast<double>(total)), count, __double_as_longlong(norm_type));
}

}  // namespace

void multi_tensor_norm(const void* const* tensors, DType dtype, const std::int64_t* numels, int count,
                       NormKind kind, float* out, void* workspace, std::size_t workspace_bytes, void* stream) {
  constexpr const char* op = "multi_tensor_norm";
  check_count(count, numels, op);
  CIUIC_CHECK(out != nullptr, ValueError, op, "out is null; expected a device pointer to one f32");
  const std::size_t need = multi_tensor_norm_workspace_bytes(numels, count);
  CIUIC_CHECK(workspace_bytes >= need && (need == 0 || workspace != nullptr), ValueError, op, "workspace of ",
              workspace_bytes, " bytes for ", count, " tensors; expected at least ", need, " bytes");
  auto s = static_cast<cudaStream_t>(stream);
  auto* partials = static_cast<float*>(workspace);
  const bool l2 = kind == NormKind::l2;
  dispatch_f32_f16_bf16(dtype, op, "tensors", [&](auto tag) {
    using T = decltype(tag);
    mt::for_each_launch<1>({tensors}, numels, count, [&](const mt::Table<1>& t, unsigned blocks) {
      if (l2) norm_partials_kernel<T, true><<<blocks, mt::kBlock, 0, s>>>(t, partials);
      else norm_partials_kernel<T, false><<<blocks, mt::kBlock, 0, s>>>(t, partials);
    });
  });
  const auto n = static_cast<std::int64_t>(need / sizeof(float));
  if (l2) norm_finalize_kernel<true><<<1, kFinalBlock, 0, s>>>(partials, n, out);
  else norm_finalize_kernel<false><<<1, kFinalBlock, 0, s>>>(partials, n, out);
  CIUIC_CUDA_CHECK_LAUNCH();
}

void multi_tensor_unscale(const void* const* in, DType in_dtype, void* const* out, DType out_dtype,
                          const std::int64_t* numels, int count, const float* inv_scale, float* found_inf,
                          void* stream) {
  constexpr const char* op = "multi_tensor_unscale";
  check_count(count, numels, op);
  CIUIC_CHECK(inv_scale != nullptr && found_inf != nullptr, ValueError, op,
              "inv_scale and found_inf must be device pointers to one f32 each");
  if (in_dtype != out_dtype) {
    for (int i = 0; i < count; ++i)
      CIUIC_CHECK(in[i] != out[i] || numels[i] == 0, ValueError, op, "tensor ", i,
                  " is unscaled in place but in dtype ", dtype_name(in_dtype), " differs from out dtype ",
                  dtype_name(out_dtype), "; expected equal dtypes for in-place use");
  }
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_f32_f16_bf16(in_dtype, op, "input", [&](auto in_tag) {
    using In = decltype(in_tag);
    dispatch_f32_f16_bf16(out_dtype, op, "output", [&](auto out_tag) {
      using Out = decltype(out_tag);
      mt::for_each_launch<2>({in, out}, numels, count, [&](const mt::Table<2>& t, unsigned blocks) {
        unscale_kernel<In, Out><<<blocks, mt::kBlock, 0, s>>>(t, inv_scale, found_inf);
      });
    });
  });
}

void multi_tensor_scale(void* const* tensors, DType dtype, const std::int64_t* numels, int count, const float* coef,
                        void* stream) {
  constexpr const char* op = "multi_tensor_scale";
  check_count(count, numels, op);
  CIUIC_CHECK(coef != nullptr, ValueError, op, "coef is null; expected a device pointer to one f32");
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_f32_f16_bf16(dtype, op, "tensors", [&](auto tag) {
    using T = decltype(tag);
    mt::for_each_launch<1>({tensors}, numels, count, [&](const mt::Table<1>& t, unsigned blocks) {
      scale_kernel<T><<<blocks, mt::kBlock, 0, s>>>(t, coef);
    });
  });
}

void clip_coefficient(const float* total_norm, float max_norm, float eps, float* coef, void* stream,
                      const DeviceErrorSlot& errors, std::int64_t tensor_count, double norm_type) {
  CIUIC_CHECK(max_norm >= 0.0f && eps >= 0.0f, ValueError, "clip_coefficient", "max_norm ", max_norm, ", eps ", eps,
              "; expected max_norm >= 0 and eps >= 0");
  CIUIC_CHECK(total_norm != nullptr && coef != nullptr, ValueError, "clip_coefficient",
              "total_norm and coef must be device pointers to one f32 each");
  clip_coefficient_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(total_norm, max_norm, eps, coef, errors,
                                                                           tensor_count, norm_type);
  CIUIC_CUDA_CHECK_LAUNCH();
}

}  // namespace ciuic::kernels
