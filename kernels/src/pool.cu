// Max pooling with indices and uneven adaptive average pooling (see pool.h).
// One thread per output element (forwards) or per input element (backwards),
// grid-stride loops; the bodies are pool_math.h's, shared with the CPU tests.
#include "ciuic/kernels/pool.h"

#include <climits>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/pool_math.h"
#include "kernel_common.cuh"

namespace ciuic::kernels {

namespace {

constexpr unsigned kBlock = 256;

template <typename T>
__global__ void max_pool_fwd_kernel(const T* __restrict__ x, T* __restrict__ out, std::int32_t* __restrict__ index,
                                    PoolShape g, std::int64_t n) {
  using A = acc_t<T>;
  for (std::int64_t o = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; o < n;
       o += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t ow = o % g.OW, oh = (o / g.OW) % g.OH, pl = o / (g.OW * g.OH);
    const T* plane = x + pl * g.H * g.W;
    std::int64_t best = -1;
    const A v = pool::window_max<A>([plane](std::int64_t f) { return kc::load(plane + f); }, g.H, g.W, oh, ow, g.k,
                                    g.s, g.p, &best);
    out[o] = kc::from_acc<T>(v);
    index[o] = static_cast<std::int32_t>(best);
  }
}

template <typename T>
__global__ void max_pool_bwd_kernel(const T* __restrict__ gout, const std::int32_t* __restrict__ index,
                                    T* __restrict__ gx, PoolShape g, std::int64_t n) {
  using A = acc_t<T>;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t iw = i % g.W, ih = (i / g.W) % g.H, pl = i / (g.W * g.H);
    const std::int32_t* idx = index + pl * g.OH * g.OW;
    const T* gp = gout + pl * g.OH * g.OW;
    const A v = pool::max_pool_input_grad<A>([idx](std::int64_t o) { return static_cast<std::int64_t>(idx[o]); },
                                             [gp](std::int64_t o) { return kc::load(gp + o); }, g.W, g.OH, g.OW, ih,
                                             iw, g.k, g.s, g.p);
    gx[i] = kc::from_acc<T>(v);
  }
}

template <typename T>
__global__ void adaptive_fwd_kernel(const T* __restrict__ x, T* __restrict__ out, PoolShape g, std::int64_t n) {
  using A = acc_t<T>;
  for (std::int64_t o = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; o < n;
       o += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t ow = o % g.OW, oh = (o / g.OW) % g.OH, pl = o / (g.OW * g.OH);
    const T* plane = x + pl * g.H * g.W;
    out[o] = kc::from_acc<T>(pool::adaptive_bin_mean<A>([plane](std::int64_t f) { return kc::load(plane + f); }, g.H,
                                                        g.W, g.OH, g.OW, oh, ow));
  }
}

template <typename T>
__global__ void adaptive_bwd_kernel(const T* __restrict__ gout, T* __restrict__ gx, PoolShape g, std::int64_t n) {
  using A = acc_t<T>;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t iw = i % g.W, ih = (i / g.W) % g.H, pl = i / (g.W * g.H);
    const T* gp = gout + pl * g.OH * g.OW;
    gx[i] = kc::from_acc<T>(
        pool::adaptive_input_grad<A>([gp](std::int64_t o) { return kc::load(gp + o); }, g.H, g.W, g.OH, g.OW, ih, iw));
  }
}

void check_shape(const char* op, const PoolShape& g, bool window) {
  CIUIC_CHECK(g.planes >= 0 && g.H >= 1 && g.W >= 1 && g.OH >= 1 && g.OW >= 1, ValueError, op, "planes ", g.planes,
              ", input ", g.H, "x", g.W, ", output ", g.OH, "x", g.OW, "; expected planes >= 0 and sizes >= 1");
  CIUIC_CHECK(g.H * g.W <= INT_MAX, NotImplementedError, op, "plane of ", g.H, "x", g.W,
              " elements; expected at most 2^31 - 1 (winner indices are i32)");
  if (window)
    CIUIC_CHECK(g.k >= 1 && g.s >= 1 && g.p >= 0 && g.p <= g.k / 2, ValueError, op, "kernel ", g.k, ", stride ", g.s,
                ", padding ", g.p, "; expected kernel, stride >= 1 and 0 <= padding <= kernel/2");
}

template <typename K, typename... Args>
void launch(K kernel, std::int64_t n, void* stream, Args... args) {
  if (n == 0) return;
  kernel<<<plan::grid_blocks(n, kBlock), kBlock, 0, kc::as_stream(stream)>>>(args..., n);
  CIUIC_CUDA_CHECK_LAUNCH();
}

}  // namespace

void max_pool2d_forward(const void* x, void* out, std::int32_t* index, DType dtype, const PoolShape& g, void* stream) {
  check_shape("max_pool2d", g, true);
  kc::dispatch_float(dtype, "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    launch(max_pool_fwd_kernel<T>, g.planes * g.OH * g.OW, stream, static_cast<const T*>(x), static_cast<T*>(out),
           index, g);
  });
}

void max_pool2d_backward(const void* grad_out, const std::int32_t* index, void* grad_x, DType dtype,
                         const PoolShape& g, void* stream) {
  check_shape("max_pool2d backward", g, true);
  kc::dispatch_float(dtype, "max_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    launch(max_pool_bwd_kernel<T>, g.planes * g.H * g.W, stream, static_cast<const T*>(grad_out), index,
           static_cast<T*>(grad_x), g);
  });
}

void adaptive_avg_pool2d_forward(const void* x, void* out, DType dtype, const PoolShape& g, void* stream) {
  check_shape("adaptive_avg_pool2d", g, false);
  kc::dispatch_float(dtype, "adaptive_avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    launch(adaptive_fwd_kernel<T>, g.planes * g.OH * g.OW, stream, static_cast<const T*>(x), static_cast<T*>(out), g);
  });
}

void adaptive_avg_pool2d_backward(const void* grad_out, void* grad_x, DType dtype, const PoolShape& g, void* stream) {
  check_shape("adaptive_avg_pool2d backward", g, false);
  kc::dispatch_float(dtype, "adaptive_avg_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    launch(adaptive_bwd_kernel<T>, g.planes * g.H * g.W, stream, static_cast<const T*>(grad_out),
           static_cast<T*>(grad_x), g);
  });
}

}  // namespace ciuic::kernels
