// Device memory for a GPU's caching allocator: cudaMalloc / cudaFree.
// CUDA builds only; in a CPU-only build this translation unit is empty.
#ifdef CIUIC_WITH_CUDA

#include <cuda_runtime.h>

#include "backends.h"
#include "ciuic/cuda_check.h"
#include "ciuic/error.h"

namespace ciuic::detail {
namespace {

class CudaBackend final : public SegmentBackend {
 public:
  explicit CudaBackend(int index) : device_(Device::cuda(index)) {}

  void* alloc(std::size_t bytes) override {
    DeviceGuard guard(device_);  // cudaMalloc allocates on the current device
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, bytes);
    if (status == cudaErrorMemoryAllocation) {
      // An ordinary out-of-memory: not sticky, so clear it and let the caching
      // layer free its cache and retry.
      (void)cudaGetLastError();
      return nullptr;
    }
    CIUIC_CUDA_CHECK(status);
    return p;
  }

  void free(void* p, std::size_t /*bytes*/) override {
    DeviceGuard guard(device_);
    CIUIC_CUDA_CHECK(cudaFree(p));
  }

  Device device() const override { return device_; }

  std::string capacity() const override {
    std::size_t free_bytes = 0, total_bytes = 0;
    try {
      DeviceGuard guard(device_);
      CIUIC_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    } catch (const Error&) {
      return {};  // only decorates an error message; do not replace that error
    }
    return "GPU free " + format_bytes(free_bytes) + " of " + format_bytes(total_bytes);
  }

 private:
  Device device_;
};

}  // namespace

std::unique_ptr<SegmentBackend> make_cuda_backend(int device_index) {
  return std::make_unique<CudaBackend>(device_index);
}

}  // namespace ciuic::detail

#endif  // CIUIC_WITH_CUDA
