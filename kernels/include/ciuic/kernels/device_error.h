// Deferred errors: a kernel that meets bad input (an embedding index or a
// cross-entropy target out of range) cannot throw. It records the first such
// event in a DeviceErrorSlot and carries on (writing nan for the bad rows); the
// engine raises the matching exception at its next check point (an explicit
// sync: item(), a copy to the CPU, synchronize(); see engine/device_errors.h).
// No host read-back happens inside the op, so a training step never stalls on it.
//
// Layout: `claim` is a device word (zeroed) that the first reporter wins with a
// compare-and-swap; only the winner writes `record`, which lives in host memory
// mapped into the device's address space (cudaHostAllocMapped), so the host
// reads it after a sync without any device-to-host copy. On the CPU both point
// at ordinary host memory and report_device_error is plain code.
#pragma once

#include <cstdint>

#include "ciuic/macros.h"

namespace ciuic::kernels {

enum class DeviceErrorCode : std::int64_t {
  none = 0,
  embedding_index = 1,      // value: the index; bound: V (rows of the weight); extra: C
  cross_entropy_target = 2,  // value: the target; bound: C (classes); extra: ignore_index
  clip_grad_nonfinite = 3    // value: the total norm's f64 bits; bound: tensor count; extra: norm_type's f64 bits
};

// Written once per error (by the winner of `claim`); read by the host after a sync.
struct DeviceErrorRecord {
  std::int64_t code;  // DeviceErrorCode; 0 while nothing has been reported
  std::int64_t value;
  std::int64_t bound;
  std::int64_t extra;
};

struct DeviceErrorSlot {
  unsigned long long* claim = nullptr;  // device memory (CUDA) or host memory (CPU), 0 = free
  DeviceErrorRecord* record = nullptr;  // mapped host memory (CUDA, device address) or host memory (CPU)
};

// Records (code, value, bound, extra) unless an error is already recorded: the
// first reporter wins; later ones are dropped (the host raises one error at a
// time, naming the first offending value it saw).
CIUIC_HD void report_device_error(const DeviceErrorSlot& slot, DeviceErrorCode code, std::int64_t value,
                                  std::int64_t bound, std::int64_t extra) {
  if (slot.claim == nullptr || slot.record == nullptr) return;
#if defined(__CUDA_ARCH__)
  if (atomicCAS(slot.claim, 0ull, 1ull) != 0ull) return;
  slot.record->value = value;
  slot.record->bound = bound;
  slot.record->extra = extra;
  __threadfence_system();  // the fields are visible to the host before the code that announces them
  *reinterpret_cast<volatile std::int64_t*>(&slot.record->code) = static_cast<std::int64_t>(code);
  __threadfence_system();
#else
  if (*slot.claim != 0) return;
  *slot.claim = 1;
  slot.record->value = value;
  slot.record->bound = bound;
  slot.record->extra = extra;
  slot.record->code = static_cast<std::int64_t>(code);
#endif
}

}  // namespace ciuic::kernels
