// The order in which the emulated device runs the threads of a block between barriers.
// Chosen by CIUIC_EMU_ORDER ("forward", the default; "reverse"; "random" or "random:SEED":
// a seeded permutation per block, launch and round); tests may switch it at run time to
// check that a kernel's output does not depend on it.
#pragma once

#include <cstdint>

namespace ciuic::emu {

struct Schedule {
  enum Kind { forward, reverse, random } kind = forward;
  std::uint64_t seed = 1;
};

Schedule schedule();
// Launches enqueued after the call use `s` (blocks already running keep theirs).
void set_schedule(Schedule s);

}  // namespace ciuic::emu
