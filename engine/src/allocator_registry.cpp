// The process-wide allocators: one for the CPU, one per GPU, created on first use.
//
// They are deliberately never destroyed: static tensors (and other statics
// holding storage) may be released after any destructor of this file would
// run, and a leaked allocator is still valid then. The OS reclaims the memory.
#include <atomic>
#include <memory>
#include <mutex>

#include "backends.h"
#include "ciuic/allocator.h"
#include "ciuic/error.h"

namespace ciuic {
namespace {

struct CpuGlobals {
  detail::CpuBackend* backend;  // owned by allocator; kept for set_cpu_memory_limit
  Allocator* allocator;
};

CpuGlobals& cpu_globals() {
  static CpuGlobals globals = [] {
    auto backend = std::make_unique<detail::CpuBackend>(0);
    detail::CpuBackend* raw = backend.get();
    return CpuGlobals{raw, make_caching_allocator(std::move(backend)).release()};
  }();
  return globals;
}

#ifdef CIUIC_WITH_CUDA
// One slot per GPU; a slot is written once, under the mutex, and read without it.
struct CudaSlots {
  std::mutex mutex;
  std::unique_ptr<std::atomic<Allocator*>[]> slots;
};

CudaSlots& cuda_slots() {
  static CudaSlots* s = [] {
    auto* slots = new CudaSlots;
    const int n = cuda_device_count();
    slots->slots = std::make_unique<std::atomic<Allocator*>[]>(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) slots->slots[i].store(nullptr);
    return slots;
  }();
  return *s;
}
#endif

}  // namespace

Allocator& cpu_allocator() { return *cpu_globals().allocator; }

void set_cpu_memory_limit(std::size_t limit_bytes) { cpu_globals().backend->set_limit(limit_bytes); }

Allocator& cuda_allocator(int device_index) {
  const Device d = Device::cuda(device_index);
  check_device_usable(d, "cuda_allocator");
#ifdef CIUIC_WITH_CUDA
  CudaSlots& s = cuda_slots();
  std::atomic<Allocator*>& slot = s.slots[device_index];
  if (Allocator* a = slot.load(std::memory_order_acquire)) return *a;
  std::lock_guard<std::mutex> lock(s.mutex);
  if (Allocator* a = slot.load(std::memory_order_relaxed)) return *a;  // another thread won
  Allocator* a = make_caching_allocator(detail::make_cuda_backend(device_index)).release();
  slot.store(a, std::memory_order_release);
  return *a;
#else
  // check_device_usable has thrown already: this build has no CUDA.
  detail::fail<DeviceError>("cuda_allocator", "cannot use ", d, ": this build has no CUDA");
#endif
}

Allocator& allocator_for(const Device& d) {
  return d.is_cpu() ? cpu_allocator() : cuda_allocator(d.index);
}

}  // namespace ciuic
