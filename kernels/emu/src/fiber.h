// Fibers for emulated CUDA threads: Boost.Context's assembly context switch (about 9 ns,
// against about 430 ns for swapcontext, which makes a signal-mask system call) on stacks
// of our own. A fiber never moves to another OS thread (thread_locals, ASan's fake stacks
// and the block's state all assume it).
#pragma once

#include <boost/context/detail/fcontext.hpp>

#include <cstddef>
#include <vector>

namespace ciuic::emu {

namespace bctx = boost::context::detail;

// An mmap'd stack with a PROT_NONE guard page below it (an overflow faults instead of
// corrupting a neighbour); MAP_NORESERVE, so only the pages a kernel touches cost memory.
struct FiberStack {
  void* base = nullptr;        // the mapping, guard page included
  std::size_t mapped = 0;
  void* bottom = nullptr;      // lowest usable address
  std::size_t size = 0;        // usable bytes
  void* top() const { return static_cast<char*>(bottom) + size; }
};

// Stacks of the calling OS thread, reused across threads, blocks and launches.
FiberStack* acquire_stack();
void release_stack(FiberStack* s);

// The usable size: 256 KiB (512 KiB under AddressSanitizer, whose redzones grow frames).
// The Tensor Core attention kernels hold up to 16 whole-tile wmma fragments per thread
// (about 20 KiB), so this is several times what the largest kernel needs.
std::size_t fiber_stack_bytes();

// AddressSanitizer's fiber protocol: announce a switch to a stack before jumping, and
// finish it on the other side (no-ops in builds without ASan).
void asan_start_switch(void** fake_stack_save, const void* bottom, std::size_t size);
void asan_finish_switch(void* fake_stack_save, const void** old_bottom, std::size_t* old_size);

}  // namespace ciuic::emu
