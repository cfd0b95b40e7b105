// Fiber stacks and the sanitizer hooks of a switch (see fiber.h).
#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <new>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace ciuic::emu {

std::size_t fiber_stack_bytes() {
#if defined(__SANITIZE_ADDRESS__)
  return std::size_t{512} << 10;
#else
  return std::size_t{256} << 10;
#endif
}

namespace {

struct StackPool {
  std::vector<FiberStack*> free;
  ~StackPool() {
    for (FiberStack* s : free) {
      munmap(s->base, s->mapped);
      delete s;
    }
  }
};
thread_local StackPool t_pool;

}  // namespace

FiberStack* acquire_stack() {
  if (!t_pool.free.empty()) {
    FiberStack* s = t_pool.free.back();
    t_pool.free.pop_back();
#if defined(__SANITIZE_ADDRESS__)
    // A fiber abandoned mid-call (a block that failed while threads waited) never ran its
    // frames' epilogues, so their redzones stay poisoned in the shadow; the next fiber's frames
    // at those addresses would then be reported (a false stack-buffer-overflow). Start clean.
    __asan_unpoison_memory_region(s->bottom, s->size);
#endif
    return s;
  }
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t usable = fiber_stack_bytes();
  void* base = mmap(nullptr, usable + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) throw std::bad_alloc();
  mprotect(base, page, PROT_NONE);  // the guard page: stacks grow down into it
  auto* s = new FiberStack;
  s->base = base;
  s->mapped = usable + page;
  s->bottom = static_cast<char*>(base) + page;
  s->size = usable;
  return s;
}

void release_stack(FiberStack* s) {
  if (s != nullptr) t_pool.free.push_back(s);
}

void asan_start_switch(void** fake_stack_save, const void* bottom, std::size_t size) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}

void asan_finish_switch(void* fake_stack_save, const void** old_bottom, std::size_t* old_size) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(fake_stack_save, old_bottom, old_size);
#else
  (void)fake_stack_save, (void)old_bottom, (void)old_size;
#endif
}

}  // namespace ciuic::emu
