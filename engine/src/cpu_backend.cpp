// Host memory for the CPU caching allocator.
#include <cstdint>
#include <cstdlib>

#include "backends.h"

namespace ciuic {
namespace detail {
namespace {

// Cache-line (and AVX-512 vector) alignment, so kernels may use aligned loads.
constexpr std::size_t kAlign = 64;

// std::aligned_alloc wants the size to be a multiple of the alignment.
std::size_t padded(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

}  // namespace

void* CpuBackend::alloc(std::size_t bytes) {
  if (bytes == 0 || bytes > SIZE_MAX - kAlign) return nullptr;
  const std::size_t size = padded(bytes);
  // Reserve the bytes against the cap before allocating, so concurrent callers
  // can never overshoot it together.
  std::size_t held = held_.load();
  do {
    const std::size_t limit = limit_.load();
    if (limit != 0 && (held > limit || size > limit - held)) return nullptr;
  } while (!held_.compare_exchange_weak(held, held + size));

  void* p = std::aligned_alloc(kAlign, size);
  if (p == nullptr) held_.fetch_sub(size);
  return p;
}

void CpuBackend::free(void* p, std::size_t bytes) {
  if (p == nullptr) return;
  std::free(p);
  held_.fetch_sub(padded(bytes));
}

std::string CpuBackend::capacity() const {
  const std::size_t limit = limit_.load();
  return limit == 0 ? "no limit set" : "limit " + format_bytes(limit);
}

}  // namespace detail

std::unique_ptr<SegmentBackend> make_cpu_backend(std::size_t limit_bytes) {
  return std::make_unique<detail::CpuBackend>(limit_bytes);
}

}  // namespace ciuic
