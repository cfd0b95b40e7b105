// Memory of the emulated device: the allocation registry, allocation and release,
// copies and memsets.
//
// Invariants:
// - Device memory is host memory. Every allocation is exactly the size asked (so that
//   under AddressSanitizer an overrun is a heap-buffer-overflow), 256-byte aligned as
//   cudaMalloc's, and recorded in the registry with its kind until it is released; a
//   pointer that is in no live allocation is "pageable host memory" (or freed memory).
// - Fresh allocations are filled with 0xFF bytes (a NaN in every float format, -1 in
//   every integer one), so a kernel that reads memory nobody wrote sees garbage.
// - The device's capacity is the profile's global_mem_bytes: device allocations (and
//   stream-ordered frees that have not run yet) never sum above it; a request that
//   would is cudaErrorMemoryAllocation, as is one larger than the host's RAM (which
//   could not be backed). Pinned host memory does not count against the device.
// - cudaFree and cudaFreeHost synchronise the whole device first (a GPU does the
//   same), so work queued before the free never touches released memory; the
//   registry entry goes first, so a concurrent second free of the pointer fails.
// - Copies follow the documented host-synchronisation rules (see copy_2d): pageable
//   sources are staged before an async copy returns, copies into pageable memory and
//   host-to-host copies return finished, copies that involve only device or pinned
//   memory are truly asynchronous (pinned buffers are read when the stream gets there).
// - Every copy or memset range that starts inside a registered allocation must end
//   inside it (cudaErrorInvalidValue), as the driver checks ranges.
#include <unistd.h>

#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "ciuic_emu/engine.h"
#include "runtime_internal.h"

namespace ciuic::emu {
namespace {

constexpr std::align_val_t kAlignment{256};
constexpr unsigned char kPoison = 0xFF;

struct Registry {
  std::mutex mu;                                   // guards both members
  std::map<std::uintptr_t, Allocation> blocks;     // live allocations, keyed by base address
  std::size_t device_bytes = 0;                    // counted against the profile's capacity
};

Registry& registry() {
  static Registry* r = new Registry;  // leaked: stream-ordered frees may run at exit
  return *r;
}

std::size_t host_ram_bytes() {
  static const std::size_t ram = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page)
                                 : static_cast<std::size_t>(-1);
  }();
  return ram;
}

const char* kind_name(MemoryKind k) {
  switch (k) {
    case MemoryKind::device: return "device memory";
    case MemoryKind::pinned_host: return "pinned host memory (cudaHostAlloc)";
    case MemoryKind::mapped_host: return "mapped pinned host memory (cudaHostAllocMapped)";
    case MemoryKind::unregistered: break;
  }
  return "unregistered host memory";
}

bool is_host_kind(MemoryKind k) { return k == MemoryKind::pinned_host || k == MemoryKind::mapped_host; }

cudaError_t allocate(const char* api, void** out, std::size_t size, MemoryKind kind) {
  Registry& r = registry();
  const bool device = kind == MemoryKind::device;
  const std::size_t capacity = profile().global_mem_bytes;
  if (device) {
    std::lock_guard<std::mutex> lock(r.mu);
    if (size > capacity - r.device_bytes)
      return rt::fail(cudaErrorMemoryAllocation,
                      std::string(api) + ": " + std::to_string(size) + " bytes requested, " +
                          std::to_string(capacity - r.device_bytes) + " of " + std::to_string(capacity) +
                          " free on the emulated device");
    r.device_bytes += size;  // reserved now, so concurrent requests cannot both pass
  }
  void* p = size > host_ram_bytes() ? nullptr : ::operator new(size, kAlignment, std::nothrow);
  if (p == nullptr) {
    if (device) {
      std::lock_guard<std::mutex> lock(r.mu);
      r.device_bytes -= size;
    }
    return rt::fail(cudaErrorMemoryAllocation, std::string(api) + ": the host cannot back " +
                                                   std::to_string(size) + " bytes of emulated memory");
  }
  std::memset(p, kPoison, size);
  {
    std::lock_guard<std::mutex> lock(r.mu);
    r.blocks[reinterpret_cast<std::uintptr_t>(p)] = Allocation{p, size, kind};
  }
  *out = p;
  return cudaSuccess;
}

void release(const Allocation& a) {
  ::operator delete(a.base, kAlignment);
  if (a.kind == MemoryKind::device) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    r.device_bytes -= a.size;
  }
}

// Removes the allocation that starts exactly at p if its kind is acceptable; else
// explains what p is. The bytes stay counted until release().
cudaError_t take(const char* api, void* p, bool want_host, Allocation* out) {
  Registry& r = registry();
  std::string why;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    const auto it = r.blocks.find(reinterpret_cast<std::uintptr_t>(p));
    if (it != r.blocks.end() && is_host_kind(it->second.kind) == want_host) {
      *out = it->second;
      r.blocks.erase(it);
      return cudaSuccess;
    }
    if (it != r.blocks.end())
      why = std::string("the pointer is ") + kind_name(it->second.kind) + "; free it with " +
            (want_host ? "cudaFree" : "cudaFreeHost");
  }
  if (why.empty())
    why = find_allocation(p).base != nullptr
              ? "the pointer is inside an allocation, not at its start"
              : "the pointer is not a live allocation of the emulated device (never allocated, or freed already)";
  return rt::fail(cudaErrorInvalidValue, std::string(api) + ": " + why);
}

void put_back(const Allocation& a) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.blocks[reinterpret_cast<std::uintptr_t>(a.base)] = a;
}

// What a call that did its work returns: cudaSuccess, or the sticky error.
cudaError_t sticky_or_success() { return rt::sticky_code(); }

// Releases an allocation taken from the registry after every queued piece of work
// has finished (as cudaFree does on a GPU). On a worker thread it cannot wait; the
// release then happens at once.
cudaError_t free_synchronously(const Allocation& a) {
  if (!rt::on_worker_thread()) (void)rt::wait_all();
  release(a);
  return sticky_or_success();
}

// extent = (rows - 1) * pitch + width, without overflow; false when it overflows.
bool span_of(std::size_t width, std::size_t height, std::size_t pitch, std::size_t* extent) {
  std::size_t rows_before_last = 0;
  if (__builtin_mul_overflow(height - 1, pitch, &rows_before_last)) return false;
  return !__builtin_add_overflow(rows_before_last, width, extent);
}

// A range [p, p + extent) that starts inside a live allocation must end inside it.
cudaError_t check_span(const char* api, const char* which, const void* p, std::size_t extent, Allocation* found) {
  *found = find_allocation(p);
  if (found->base == nullptr) return cudaSuccess;  // pageable host memory: nothing to check against
  const std::size_t offset = static_cast<const char*>(p) - static_cast<const char*>(found->base);
  if (extent > found->size - offset)
    return rt::fail(cudaErrorInvalidValue, std::string(api) + ": the " + which + " range of " +
                                               std::to_string(extent) + " bytes at offset " +
                                               std::to_string(offset) + " runs past the end of its " +
                                               std::to_string(found->size) + "-byte allocation");
  return cudaSuccess;
}

struct Rows {
  std::size_t width, height, dpitch, spitch;
};

void copy_rows(char* dst, const char* src, const Rows& r) {
  if (dst == src && r.dpitch == r.spitch) return;  // a self-copy: nothing to move
  for (std::size_t row = 0; row < r.height; ++row) std::memcpy(dst + row * r.dpitch, src + row * r.spitch, r.width);
}

// Every copy goes through here. blocking_call: cudaMemcpy (on the legacy stream,
// returns when done); otherwise an Async copy with the documented host behaviour:
//   pageable -> device             the source is staged on the calling thread, then async
//   device   -> pageable           returns when the copy is done
//   host     -> host (any kinds)   returns when the copy is done
//   everything else (device and pinned memory only): fully asynchronous
// Directions come from the registry (all memory is host memory; `kind` only has to be
// a valid cudaMemcpyKind), which is what cudaMemcpyDefault asks for anyway.
cudaError_t copy_2d(const char* api, void* dst, const void* src, Rows r, cudaMemcpyKind kind, cudaStream_t stream,
                    bool blocking_call) {
  if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
    return rt::fail(cudaErrorInvalidMemcpyDirection, std::string(api) + ": invalid cudaMemcpyKind " +
                                                         std::to_string(static_cast<int>(kind)));
  if (const cudaError_t e = rt::check_stream(stream, api); e != cudaSuccess) return e;
  if (r.width > r.dpitch || r.width > r.spitch)
    return rt::fail(cudaErrorInvalidPitchValue, std::string(api) + ": width " + std::to_string(r.width) +
                                                    " exceeds a pitch (dpitch " + std::to_string(r.dpitch) +
                                                    ", spitch " + std::to_string(r.spitch) + ")");
  if (r.width == 0 || r.height == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr)
    return rt::fail(cudaErrorInvalidValue, std::string(api) + ": null pointer for a copy of " +
                                               std::to_string(r.width * r.height) + " bytes");
  std::size_t dext = 0, sext = 0;
  if (!span_of(r.width, r.height, r.dpitch, &dext) || !span_of(r.width, r.height, r.spitch, &sext))
    return rt::fail(cudaErrorInvalidValue, std::string(api) + ": the copy's extent overflows");
  Allocation d, s;
  if (const cudaError_t e = check_span(api, "destination", dst, dext, &d); e != cudaSuccess) return e;
  if (const cudaError_t e = check_span(api, "source", src, sext, &s); e != cudaSuccess) return e;

  const bool src_device = s.kind == MemoryKind::device, dst_device = d.kind == MemoryKind::device;
  const bool src_pageable = s.kind == MemoryKind::unregistered, dst_pageable = d.kind == MemoryKind::unregistered;
  const bool stage = !blocking_call && src_pageable && dst_device;
  const bool wait = blocking_call || (!src_device && !dst_device) || (dst_pageable && src_device);

  rt::Task task;
  task.what = api;
  char* const out = static_cast<char*>(dst);
  if (stage) {
    // The source is read now, on the calling thread: the caller may reuse it at once.
    auto staged = std::make_shared<std::vector<char>>(r.width * r.height);
    copy_rows(staged->data(), static_cast<const char*>(src), Rows{r.width, r.height, r.width, r.spitch});
    task.fn = [out, staged, r] { copy_rows(out, staged->data(), Rows{r.width, r.height, r.dpitch, r.width}); };
  } else {
    const char* in = static_cast<const char*>(src);
    task.fn = [out, in, r] { copy_rows(out, in, r); };
  }
  rt::Ticket at;
  if (const cudaError_t e = rt::submit(blocking_call ? cudaStreamLegacy : stream, std::move(task), &at);
      e != cudaSuccess)
    return e;
  return wait ? rt::wait_host(at) : cudaSuccess;
}

// Memsets: the target must be registered memory (device or pinned; pageable host memory
// is not addressable by a GPU). blocking_call: cudaMemset, asynchronous on the legacy
// stream except into pinned host memory, as documented.
cudaError_t fill(const char* api, void* p, int value, std::size_t count, cudaStream_t stream, bool blocking_call) {
  if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
  if (const cudaError_t e = rt::check_stream(stream, api); e != cudaSuccess) return e;
  if (count == 0) return cudaSuccess;
  if (p == nullptr) return rt::fail(cudaErrorInvalidValue, std::string(api) + ": null pointer");
  Allocation a;
  if (const cudaError_t e = check_span(api, "target", p, count, &a); e != cudaSuccess) return e;
  if (a.base == nullptr)
    return rt::fail(cudaErrorInvalidValue, std::string(api) + ": the target is not device or pinned memory "
                                                              "(a GPU cannot address pageable host memory)");
  rt::Task task;
  task.what = api;
  const unsigned char byte = static_cast<unsigned char>(value);
  task.fn = [p, byte, count] { std::memset(p, byte, count); };
  rt::Ticket at;
  if (const cudaError_t e = rt::submit(blocking_call ? cudaStreamLegacy : stream, std::move(task), &at);
      e != cudaSuccess)
    return e;
  return blocking_call && is_host_kind(a.kind) ? rt::wait_host(at) : cudaSuccess;
}

}  // namespace

// ---- engine.h -----------------------------------------------------------------------

Allocation find_allocation(const void* p) {
  Registry& r = registry();
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.blocks.upper_bound(addr);  // the first allocation starting after p
  if (it == r.blocks.begin()) return {};
  --it;
  return addr - it->first < it->second.size ? it->second : Allocation{};
}

}  // namespace ciuic::emu

using namespace ciuic::emu;
using rt::guarded;

// ---- the CUDA runtime API: allocation -----------------------------------------------------

cudaError_t CUDARTAPI cudaMalloc(void** devPtr, size_t size) {
  return guarded("cudaMalloc", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (devPtr == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaMalloc: devPtr is null");
    *devPtr = nullptr;
    if (size == 0) return cudaSuccess;  // as the runtime: success, and a null pointer
    return allocate("cudaMalloc", devPtr, size, MemoryKind::device);
  });
}

// Stream-ordered allocation: the memory exists at once, which is a valid schedule of
// "available to work queued after this call on hStream".
cudaError_t CUDARTAPI cudaMallocAsync(void** devPtr, size_t size, cudaStream_t hStream) {
  return guarded("cudaMallocAsync", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (devPtr == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaMallocAsync: devPtr is null");
    if (const cudaError_t e = rt::check_stream(hStream, "cudaMallocAsync"); e != cudaSuccess) return e;
    *devPtr = nullptr;
    if (size == 0) return cudaSuccess;
    return allocate("cudaMallocAsync", devPtr, size, MemoryKind::device);
  });
}

cudaError_t CUDARTAPI cudaFree(void* devPtr) {
  return guarded("cudaFree", [&] {
    if (!rt::profile_usable()) return rt::api_begin();
    if (devPtr == nullptr) return sticky_or_success();
    Allocation a;
    if (const cudaError_t e = take("cudaFree", devPtr, false, &a); e != cudaSuccess) return e;
    return free_synchronously(a);  // released even under a sticky error, which is still reported
  });
}

// Stream-ordered free: the pointer leaves the registry now (a second free fails at
// once); the memory is released when hStream reaches this point, so work queued
// before it still may use it, and work queued after it on other streams without
// ordering touches freed memory (AddressSanitizer reports it), as on a GPU.
cudaError_t CUDARTAPI cudaFreeAsync(void* devPtr, cudaStream_t hStream) {
  return guarded("cudaFreeAsync", [&] {
    if (!rt::profile_usable()) return rt::api_begin();
    if (const cudaError_t e = rt::check_stream(hStream, "cudaFreeAsync"); e != cudaSuccess) return e;
    if (devPtr == nullptr) return sticky_or_success();
    Allocation a;
    if (const cudaError_t e = take("cudaFreeAsync", devPtr, false, &a); e != cudaSuccess) return e;
    rt::Task task;
    task.control = true;  // runs even under a sticky error: memory is always returned
    task.what = "cudaFreeAsync";
    task.fn = [a] { release(a); };
    if (const cudaError_t e = rt::submit(hStream, std::move(task)); e != cudaSuccess) {
      put_back(a);  // the stream was destroyed meanwhile: the pointer stays allocated
      return e;
    }
    return sticky_or_success();
  });
}

// All pinned memory is also mapped, as with unified addressing on a GPU;
// cudaHostAllocMapped only changes how the registry names it.
cudaError_t CUDARTAPI cudaHostAlloc(void** pHost, size_t size, unsigned int flags) {
  return guarded("cudaHostAlloc", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (pHost == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaHostAlloc: pHost is null");
    constexpr unsigned known = cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined;
    if ((flags & ~known) != 0)
      return rt::fail(cudaErrorInvalidValue, "cudaHostAlloc: unknown flags " + std::to_string(flags));
    *pHost = nullptr;
    if (size == 0) return cudaSuccess;
    return allocate("cudaHostAlloc", pHost, size,
                    (flags & cudaHostAllocMapped) ? MemoryKind::mapped_host : MemoryKind::pinned_host);
  });
}

cudaError_t CUDARTAPI cudaMallocHost(void** ptr, size_t size) { return cudaHostAlloc(ptr, size, cudaHostAllocDefault); }

cudaError_t CUDARTAPI cudaFreeHost(void* ptr) {
  return guarded("cudaFreeHost", [&] {
    if (!rt::profile_usable()) return rt::api_begin();
    if (ptr == nullptr) return sticky_or_success();
    Allocation a;
    if (const cudaError_t e = take("cudaFreeHost", ptr, true, &a); e != cudaSuccess) return e;
    return free_synchronously(a);  // a queued async copy may still read it
  });
}

// Unified addressing: the device address of pinned memory is its host address.
cudaError_t CUDARTAPI cudaHostGetDevicePointer(void** pDevice, void* pHost, unsigned int flags) {
  return guarded("cudaHostGetDevicePointer", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (pDevice == nullptr || flags != 0)
      return rt::fail(cudaErrorInvalidValue, "cudaHostGetDevicePointer: null pDevice or nonzero flags");
    if (!is_host_kind(find_allocation(pHost).kind))
      return rt::fail(cudaErrorInvalidValue,
                      "cudaHostGetDevicePointer: the pointer is not in memory from cudaHostAlloc");
    *pDevice = pHost;
    return cudaSuccess;
  });
}

cudaError_t CUDARTAPI cudaMemGetInfo(size_t* free, size_t* total) {
  return guarded("cudaMemGetInfo", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (free == nullptr || total == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaMemGetInfo: null argument");
    const std::size_t capacity = profile().global_mem_bytes;
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    *total = capacity;
    *free = r.device_bytes < capacity ? capacity - r.device_bytes : 0;
    return cudaSuccess;
  });
}

// ---- the CUDA runtime API: copies and memsets ------------------------------------------------

cudaError_t CUDARTAPI cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return guarded("cudaMemcpy", [&] {
    return copy_2d("cudaMemcpy", dst, src, Rows{count, 1, count, count}, kind, nullptr, true);
  });
}

cudaError_t CUDARTAPI cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                                      cudaStream_t stream) {
  return guarded("cudaMemcpyAsync", [&] {
    return copy_2d("cudaMemcpyAsync", dst, src, Rows{count, 1, count, count}, kind, stream, false);
  });
}

cudaError_t CUDARTAPI cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                                        size_t height, cudaMemcpyKind kind, cudaStream_t stream) {
  return guarded("cudaMemcpy2DAsync", [&] {
    return copy_2d("cudaMemcpy2DAsync", dst, src, Rows{width, height, dpitch, spitch}, kind, stream, false);
  });
}

cudaError_t CUDARTAPI cudaMemcpyPeerAsync(void* dst, int dstDevice, const void* src, int srcDevice, size_t count,
                                          cudaStream_t stream) {
  return guarded("cudaMemcpyPeerAsync", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (dstDevice != 0 || srcDevice != 0)
      return rt::fail(cudaErrorInvalidDevice, "cudaMemcpyPeerAsync: devices " + std::to_string(srcDevice) + " -> " +
                                                  std::to_string(dstDevice) + "; the emulated machine has only 0");
    return copy_2d("cudaMemcpyPeerAsync", dst, src, Rows{count, 1, count, count}, cudaMemcpyDeviceToDevice, stream,
                   false);
  });
}

cudaError_t CUDARTAPI cudaMemset(void* devPtr, int value, size_t count) {
  return guarded("cudaMemset", [&] { return fill("cudaMemset", devPtr, value, count, nullptr, true); });
}

cudaError_t CUDARTAPI cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream) {
  return guarded("cudaMemsetAsync", [&] { return fill("cudaMemsetAsync", devPtr, value, count, stream, false); });
}
