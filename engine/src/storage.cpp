#include "ciuic/storage.h"

#include "ciuic/stream.h"

namespace ciuic {

StorageImpl::~StorageImpl() {
  if (!data) return;
  try {
    if (allocator) allocator->deallocate(data);
    else if (deleter) deleter(data);
  } catch (...) {
    // A destructor must not throw; a failing free here means the allocator's own
    // state is already inconsistent, which its next allocate() will report.
  }
}

Storage make_storage(std::size_t nbytes, Device d) {
  auto s = std::make_shared<StorageImpl>();
  Allocator& a = allocator_for(d);
  s->data = a.allocate(nbytes, current_stream(d));
  s->nbytes = nbytes;
  s->device = d;
  s->allocator = nbytes ? &a : nullptr;
  return s;
}

Storage wrap_storage(void* data, std::size_t nbytes, Device d, std::function<void(void*)> deleter) {
  auto s = std::make_shared<StorageImpl>();
  s->data = data;
  s->nbytes = nbytes;
  s->device = d;
  s->deleter = std::move(deleter);
  return s;
}

}  // namespace ciuic
