// Kernels that exercise the emulated device's executor, correct ones and ones that break
// CUDA's rules on purpose (tests/emu/test_emu_executor.cpp). Idiomatic CUDA: in the
// emulated build this file goes through kernels/emu/rewrite_cu.py like kernels/src/*.cu.
#include <cuda_runtime.h>

#include "executor_kernels.h"

namespace ciuic::emu_test {

namespace {

// out[blockIdx.x] = sum of in over the block's threads, through shared memory and barriers.
__global__ void block_sum_kernel(const float* in, float* out) {
  __shared__ float partial[256];
  const unsigned t = threadIdx.x;
  partial[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
    if (t < s) partial[t] += partial[t + s];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = partial[0];
}

// The same reduction with the barrier inside the loop's branch: threads that skip the
// branch never reach it (a divergent barrier).
__global__ void divergent_barrier_kernel(const float* in, float* out) {
  __shared__ float partial[256];
  const unsigned t = threadIdx.x;
  partial[t] = in[t];
  __syncthreads();
  if (t < 64) {
    partial[t] += partial[t + 64];
    __syncthreads();
  }
  if (t == 0) out[0] = partial[0];
}

// Two different barriers reached by the two halves of the block.
__global__ void mismatched_barrier_kernel(float* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.0f;
}

// Warp sums with each shuffle flavour; out[warp * 4 + k].
__global__ void warp_shuffle_kernel(const float* in, float* out) {
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const float v = in[threadIdx.x];
  float down = v, x = v;
  for (int o = 16; o > 0; o /= 2) down += __shfl_down_sync(0xffffffffu, down, o);
  for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
  const float from7 = __shfl_sync(0xffffffffu, v, 7);
  const float up = __shfl_up_sync(0xffffffffu, v, 1);
  const unsigned ballot = __ballot_sync(0xffffffffu, v > 0.0f);
  if (lane == 0) {
    out[warp * 5 + 0] = down;
    out[warp * 5 + 1] = x;
    out[warp * 5 + 2] = from7;
    out[warp * 5 + 4] = static_cast<float>(__popc(ballot));
  }
  if (lane == 5) out[warp * 5 + 3] = up;  // lane 4's value
}

// Lanes 0..15 shuffle with a mask that leaves them out: the caller is not in its mask.
__global__ void wrong_mask_kernel(const float* in, float* out) {
  float v = in[threadIdx.x];
  if (threadIdx.x < 16) v += __shfl_down_sync(0xffff0000u, v, 1);
  out[threadIdx.x] = v;
}

// Half of the warp returns before a full-mask shuffle: an exited lane in the mask.
__global__ void exited_lane_kernel(const float* in, float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, in[threadIdx.x], 1);
}

// A half-warp mask shuffle that reads outside its mask (lane 15 + 1 = 16).
__global__ void read_outside_mask_kernel(const float* in, float* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0x0000ffffu, in[threadIdx.x], threadIdx.x + 1);
}

// Thread 0 waits at a shuffle while the others wait at a barrier.
__global__ void deadlock_kernel(float* out) {
  if (threadIdx.x == 0) {
    out[0] = __shfl_sync(0x3u, 1.0f, 1);
  } else {
    __syncthreads();
  }
}

// A block reduction that forgot the barrier between writing and reading shared memory:
// the result depends on the thread order.
__global__ void missing_barrier_kernel(const float* in, float* out) {
  __shared__ float partial[64];
  const unsigned t = threadIdx.x;
  partial[t] = in[t];
  float s = 0;
  if (t == 0)
    for (int i = 0; i < 64; ++i) s += partial[i];
  if (t == 0) out[0] = s;
}

// Reads one element past a static shared array.
__global__ void shared_overrun_kernel(float* out) {
  __shared__ float tile[32];
  tile[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x + 1];
}

// Dynamic shared memory: out = reversed in (n = blockDim.x).
__global__ void dynamic_reverse_kernel(const float* in, float* out) {
  extern __shared__ __align__(128) unsigned char smem[];
  float* buf = reinterpret_cast<float*>(smem);
  buf[threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}

// A by-value parameter written by every thread: each thread owns its copy.
__global__ void param_copy_kernel(int base, int* out) {
  base += static_cast<int>(threadIdx.x);
  out[threadIdx.x] = base;
}

// Grid-wide atomics: every thread of every block adds 1.
__global__ void atomic_count_kernel(unsigned long long* count, float* fsum) {
  atomicAdd(count, 1ull);
  atomicAdd(fsum, 1.0f);
}

// gridDim / blockIdx over a 3-D grid: out[linear block] = linear block.
__global__ void grid_index_kernel(unsigned* out) {
  const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  if (threadIdx.x == 0 && threadIdx.y == 0) out[b] = b;
}

}  // namespace

cudaError_t launch_block_sum(const float* in, float* out, unsigned blocks, unsigned threads, cudaStream_t s) {
  block_sum_kernel<<<blocks, threads, 0, s>>>(in, out);
  return cudaGetLastError();
}
cudaError_t launch_divergent_barrier(const float* in, float* out) {
  divergent_barrier_kernel<<<1, 128>>>(in, out);
  return cudaGetLastError();
}
cudaError_t launch_mismatched_barrier(float* out) {
  mismatched_barrier_kernel<<<1, 64>>>(out);
  return cudaGetLastError();
}
cudaError_t launch_warp_shuffle(const float* in, float* out, unsigned threads) {
  warp_shuffle_kernel<<<1, threads>>>(in, out);
  return cudaGetLastError();
}
cudaError_t launch_wrong_mask(const float* in, float* out) {
  wrong_mask_kernel<<<1, 32>>>(in, out);
  return cudaGetLastError();
}
cudaError_t launch_exited_lane(const float* in, float* out) {
  exited_lane_kernel<<<1, 32>>>(in, out);
  return cudaGetLastError();
}
cudaError_t launch_read_outside_mask(const float* in, float* out) {
  read_outside_mask_kernel<<<1, 32>>>(in, out);
  return cudaGetLastError();
}
cudaError_t launch_deadlock(float* out) {
  deadlock_kernel<<<1, 32>>>(out);
  return cudaGetLastError();
}
cudaError_t launch_missing_barrier(const float* in, float* out) {
  missing_barrier_kernel<<<1, 64>>>(in, out);
  return cudaGetLastError();
}
cudaError_t launch_shared_overrun(float* out) {
  shared_overrun_kernel<<<1, 32>>>(out);
  return cudaGetLastError();
}
cudaError_t launch_dynamic_reverse(const float* in, float* out, unsigned n, std::size_t smem) {
  dynamic_reverse_kernel<<<1, n, smem>>>(in, out);
  return cudaGetLastError();
}
cudaError_t set_dynamic_reverse_limit(int bytes) {
  return cudaFuncSetAttribute(dynamic_reverse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}
cudaError_t launch_param_copy(int base, int* out, unsigned n) {
  param_copy_kernel<<<1, n>>>(base, out);
  return cudaGetLastError();
}
cudaError_t launch_atomic_count(unsigned long long* count, float* fsum, unsigned blocks, unsigned threads) {
  atomic_count_kernel<<<blocks, threads>>>(count, fsum);
  return cudaGetLastError();
}
cudaError_t launch_grid_index(unsigned* out, dim3 grid, dim3 block) {
  grid_index_kernel<<<grid, block>>>(out);
  return cudaGetLastError();
}

}  // namespace ciuic::emu_test
