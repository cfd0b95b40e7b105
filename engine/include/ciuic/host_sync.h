// Host synchronisation: what makes the host wait for a device, counted; and the
// deferred errors that ops raise at those points instead of reading back.
//
// A training step should never stall the GPU (and must later be capturable in a
// CUDA graph), so ops do not read device values back. Checks that need the data
// (an embedding index or a cross-entropy target out of range) are made by the
// kernels, which record the first offending value in a per-device error slot and
// go on (the bad rows become nan). The error is raised, with the op and the
// offending value in its message, at the next check point of that device:
//   - Tensor::item(), a copy to the CPU (to(cpu), to_vector), synchronize(d),
//     Stream::synchronize() (the host has waited, so every earlier kernel is done);
//   - amp::LossScaler::update() (raises what is already visible without waiting);
//   - at once, after the op, in ErrorChecks::immediate mode (a debug mode: on a
//     GPU each checked op then synchronises its stream).
// The CPU behaves the same way (its ops record into a host slot), so code and tests
// see one semantics on both devices.
#pragma once

#include <cstdint>

#include "ciuic/device.h"
#include "ciuic/kernels/device_error.h"

namespace ciuic {

// Process-wide counters of host waits (all devices, all threads).
struct SyncCounts {
  std::int64_t d2h_copies = 0;  // device-to-host copies (item(), to(cpu), to_vector of a GPU tensor)
  std::int64_t syncs = 0;       // explicit waits: synchronize(d), Stream/Event::synchronize, immediate checks (GPU)
  std::int64_t item_reads = 0;  // Tensor::item() calls on any device (on the CPU the only host "read-back")
};
SyncCounts sync_counts();
void reset_sync_counts();

enum class ErrorChecks { deferred, immediate };
// Default deferred. Process-wide.
void set_error_checks(ErrorChecks mode);
ErrorChecks error_checks();

// Raises (and clears) the error recorded for device d, if any. The caller must
// have waited for d's work (this function does not synchronise): the check points
// above call it after their wait. IndexError for the ops here.
void check_device_errors(Device d);

namespace detail {
// The slot an op passes to its kernel (or, on the CPU, to report_device_error).
kernels::DeviceErrorSlot device_error_slot(Device d);
// A CPU op's report (thread-safe): the first error since the last check wins.
void report_cpu_error(kernels::DeviceErrorCode code, std::int64_t value, std::int64_t bound, std::int64_t extra);
// Called by an op after launching a checked kernel on d: in immediate mode waits
// for d's current stream and raises the error now; otherwise nothing.
void after_checked_op(Device d);
void count_d2h_copy();
void count_sync();
void count_item_read();
}  // namespace detail

}  // namespace ciuic
