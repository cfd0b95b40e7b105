// Launchers of tests/emu/executor_kernels.cu (emulated build only): each launches one
// kernel on the emulated device and returns cudaGetLastError() of the launch.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace ciuic::emu_test {

cudaError_t launch_block_sum(const float* in, float* out, unsigned blocks, unsigned threads, cudaStream_t s);
cudaError_t launch_divergent_barrier(const float* in, float* out);
cudaError_t launch_mismatched_barrier(float* out);
cudaError_t launch_warp_shuffle(const float* in, float* out, unsigned threads);
cudaError_t launch_wrong_mask(const float* in, float* out);
cudaError_t launch_exited_lane(const float* in, float* out);
cudaError_t launch_read_outside_mask(const float* in, float* out);
cudaError_t launch_deadlock(float* out);
cudaError_t launch_missing_barrier(const float* in, float* out);
cudaError_t launch_shared_overrun(float* out);
cudaError_t launch_dynamic_reverse(const float* in, float* out, unsigned n, std::size_t smem);
cudaError_t set_dynamic_reverse_limit(int bytes);
cudaError_t launch_param_copy(int base, int* out, unsigned n);
cudaError_t launch_atomic_count(unsigned long long* count, float* fsum, unsigned blocks, unsigned threads);
cudaError_t launch_grid_index(unsigned* out, dim3 grid, dim3 block);

}  // namespace ciuic::emu_test
