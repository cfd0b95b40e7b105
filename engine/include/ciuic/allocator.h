// Memory allocators. One caching allocator serves both devices: it carves
// requests out of large segments obtained from a backend (cudaMalloc on a GPU,
// 64-byte-aligned host memory on the CPU), splits and merges blocks, and reuses
// freed blocks without returning them to the backend until empty_cache().
// Because the CPU uses the same code, its reuse, splitting, statistics and
// out-of-memory path are all tested without a GPU.
//
// Stream ordering (CUDA): a block freed on stream s is reusable at once by
// later work on s. If other streams used it (record_stream), the block waits
// for events recorded on those streams before it returns to the pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "ciuic/device.h"
#include "ciuic/stream.h"

namespace ciuic {

struct AllocatorStats {
  std::size_t allocated_bytes = 0;       // bytes in live blocks (rounded sizes)
  std::size_t reserved_bytes = 0;        // bytes held from the backend (segments)
  std::size_t peak_allocated_bytes = 0;  // max allocated_bytes since the last reset_peak()
  std::size_t peak_reserved_bytes = 0;
  std::size_t requested_bytes = 0;       // bytes callers asked for, live
  std::uint64_t num_allocs = 0;          // successful allocate() calls
  std::uint64_t num_frees = 0;
  std::uint64_t num_cache_hits = 0;      // allocations served from cached blocks
  std::uint64_t num_segment_allocs = 0;  // backend allocations (cudaMalloc / aligned_alloc)
  std::uint64_t num_segment_frees = 0;
  std::uint64_t num_splits = 0;
  std::uint64_t num_ooms = 0;            // backend failures (each may be followed by a retry)
  std::string str() const;
};

// Where segments come from. Implementations return nullptr on failure (never throw
// for an ordinary out-of-memory) so the caching layer can free its cache and retry.
class SegmentBackend {
 public:
  virtual ~SegmentBackend() = default;
  virtual void* alloc(std::size_t bytes) = 0;
  virtual void free(void* p, std::size_t bytes) = 0;
  virtual Device device() const = 0;
  // For out-of-memory messages: what bounds this backend ("limit 4.00 MiB",
  // "GPU free 1.00 GiB of 80.00 GiB"); empty when there is nothing to say.
  virtual std::string capacity() const { return {}; }
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns memory for nbytes (nbytes == 0 gives a unique non-null pointer-free block: nullptr).
  // Throws OutOfMemory naming the request and the stats after freeing the cache and retrying once.
  virtual void* allocate(std::size_t nbytes, StreamHandle stream = nullptr) = 0;
  virtual void deallocate(void* p) = 0;
  // Marks p as used by stream s (CUDA): its reuse waits for work queued on s so far.
  virtual void record_stream(void* p, StreamHandle s) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
  // Returns every fully free segment to the backend.
  virtual void empty_cache() = 0;
  virtual Device device() const = 0;
};

// The caching allocator of each device. The CPU one exists in every build; a
// CUDA one throws DeviceError when the device is not usable.
Allocator& cpu_allocator();
Allocator& cuda_allocator(int device_index);
Allocator& allocator_for(const Device& d);

// A caching allocator over any backend (tests use this with a limited CPU backend).
std::unique_ptr<Allocator> make_caching_allocator(std::unique_ptr<SegmentBackend> backend);

// A CPU backend of 64-byte-aligned memory; limit_bytes > 0 caps the bytes it holds
// at once, to simulate running out of memory.
std::unique_ptr<SegmentBackend> make_cpu_backend(std::size_t limit_bytes = 0);

// Caps the bytes the global CPU allocator's backend may hold (0: no cap).
void set_cpu_memory_limit(std::size_t limit_bytes);

// A byte count for people: "512 B", "1.50 MiB", "2.00 GiB".
std::string format_bytes(std::size_t bytes);

}  // namespace ciuic
