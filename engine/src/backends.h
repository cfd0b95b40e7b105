// Internal: the concrete segment backends, for allocator_registry.cpp (which
// owns the global allocators) and the tests' factory functions.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include "ciuic/allocator.h"

namespace ciuic::detail {

// 64-byte-aligned host memory with an optional cap on the bytes held at once.
// The cap may change while allocations run (set_cpu_memory_limit), so the
// counters are atomic; a lowered cap fails new segments until enough are freed.
class CpuBackend final : public SegmentBackend {
 public:
  explicit CpuBackend(std::size_t limit_bytes) : limit_(limit_bytes) {}
  void* alloc(std::size_t bytes) override;
  void free(void* p, std::size_t bytes) override;
  Device device() const override { return Device::cpu(); }
  std::string capacity() const override;
  void set_limit(std::size_t limit_bytes) { limit_.store(limit_bytes); }

 private:
  std::atomic<std::size_t> limit_;  // 0: no cap
  std::atomic<std::size_t> held_{0};
};

#ifdef CIUIC_WITH_CUDA
// cudaMalloc / cudaFree on one device.
std::unique_ptr<SegmentBackend> make_cuda_backend(int device_index);
#endif

}  // namespace ciuic::detail
