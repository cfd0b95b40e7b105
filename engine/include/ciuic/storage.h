// Storage: a refcounted buffer on one device. Views share one Storage; its
// version counter counts in-place writes through any of them, which is how the
// tape notices a saved tensor that was changed before backward.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "ciuic/allocator.h"
#include "ciuic/device.h"

namespace ciuic {

struct StorageImpl {
  void* data = nullptr;
  std::size_t nbytes = 0;
  Device device;
  Allocator* allocator = nullptr;           // owns data when set
  std::function<void(void*)> deleter;       // external memory: called on release when set
  std::uint64_t version = 0;

  StorageImpl() = default;
  StorageImpl(const StorageImpl&) = delete;
  StorageImpl& operator=(const StorageImpl&) = delete;
  ~StorageImpl();
};

using Storage = std::shared_ptr<StorageImpl>;

// nbytes from the device's caching allocator, ordered on the device's current stream.
Storage make_storage(std::size_t nbytes, Device d);
// Wraps memory the caller owns; deleter (may be empty: not owned) runs on release.
Storage wrap_storage(void* data, std::size_t nbytes, Device d, std::function<void(void*)> deleter);

}  // namespace ciuic
