// One thread block on the emulated device: its CUDA threads (fibers), barrier and warp
// state, and shared memory. A block runs start to end on one OS thread (run_block);
// the collectives in scheduler.cpp reach it through that thread's t_block.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ciuic_emu/device.h"
#include "ciuic_emu/schedule.h"
#include "fiber.h"

namespace ciuic::emu {

// What every block of one launch shares (read-only while blocks run).
struct LaunchState {
  detail::LaunchConfig cfg;
  std::shared_ptr<const detail::ThreadBody> body;
  std::size_t smem_total_limit;  // static + dynamic bytes a block may use
  bool smem_opted_in;            // cudaFuncSetAttribute raised the dynamic limit
  std::uint64_t launch_index;    // for the random schedule's seed
  Schedule schedule;             // the thread order when the launch was made
};

// A launch's error, thrown out of the stream's work (the runtime makes it sticky).
struct KernelFault : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs block `linear` of the launch on the calling OS thread; throws KernelFault naming
// the kernel, the block, the thread and the source lines on any violation.
void run_block(const LaunchState& launch, std::uint64_t linear);

}  // namespace ciuic::emu
