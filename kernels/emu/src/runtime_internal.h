// What the emulated CUDA runtime's own files (runtime_*.cpp) share with each other.
// Nothing outside kernels/emu/src/runtime_*.cpp includes this; the executor talks to
// the runtime through ciuic_emu/engine.h only.
//
// Shape of the runtime:
//   runtime_errors.cpp   per-thread last error, the device's sticky error, error names
//   runtime_device.cpp   device profiles, device queries, function attributes
//   runtime_memory.cpp   the allocation registry, malloc/free, copies and memsets
//   runtime_streams.cpp  streams (one worker thread each), events, synchronisation
//
// Every cuda* entry point that touches the device starts with api_begin() (sticky
// error, unknown profile) and reports a failure through fail(), which records it as
// the calling thread's last error, as the real runtime does. No entry point throws:
// each runs its body inside guarded(). (The last-error queries, error names and
// version queries need no device and skip api_begin.)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <string>

namespace ciuic::emu::rt {

// ---- errors (runtime_errors.cpp) -------------------------------------------------
// Records e (and a message for last_error_message()) as the calling thread's last
// error and returns e, so a failing path reads `return fail(cudaErrorInvalidValue, ...)`.
cudaError_t fail(cudaError_t e, std::string message = {});
// The sticky error's code, cudaSuccess when there is none. Lock-free; read on every call.
cudaError_t sticky_code();
// The guard at the top of every entry point that touches the device: the sticky
// error if there is one (returned, not recorded: cudaGetLastError reports it from
// the global state), else cudaErrorInvalidValue when the profile is unknown (recorded
// as the last error, with the profile message printed once), else cudaSuccess.
cudaError_t api_begin();
// Drops the sticky error at once, without draining the streams (clear_sticky_error and
// cudaDeviceReset drain first, then call this).
void forget_sticky_error();

// As fail(), for catch blocks: never throws (if building the message "api: detail"
// runs out of memory, the error is recorded without it).
cudaError_t fail_noexcept(cudaError_t e, const char* api, const char* detail) noexcept;

// The body of every entry point runs inside guarded(): no exception crosses the C API.
// Host memory exhaustion inside the runtime is reported as cudaErrorMemoryAllocation,
// anything else as cudaErrorUnknown, each recorded as the last error with its reason.
template <class Body>
cudaError_t guarded(const char* api, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail_noexcept(cudaErrorMemoryAllocation, api, "host memory exhausted inside the emulated runtime");
  } catch (const std::exception& e) {
    return fail_noexcept(cudaErrorUnknown, api, e.what());
  } catch (...) {
    return fail_noexcept(cudaErrorUnknown, api, "a non-standard exception inside the emulated runtime");
  }
}

// ---- device (runtime_device.cpp) ---------------------------------------------------
// False while the selected profile name is unknown. Prints the one stderr line naming
// the known profiles the first time it answers false for a given selection.
bool profile_usable();

// ---- streams (runtime_streams.cpp) --------------------------------------------------
class Stream;

// A point in one stream's queue: "the n-th task ever pushed onto this stream".
// Holding the shared_ptr keeps the stream's bookkeeping alive after cudaStreamDestroy,
// so a wait on a destroyed stream's last work stays valid.
struct Ticket {
  std::shared_ptr<Stream> stream;
  std::uint64_t n = 0;
};

// A unit of stream work. User work (copies, memsets, kernels, host functions) is
// skipped while a sticky error exists; control work (event markers, cross-stream
// waits, stream-ordered frees) always runs, so every wait still ends and memory is
// still released.
struct Task {
  std::function<void()> fn;
  std::string what;  // names the work in the sticky error when it throws something odd
  bool control = false;
};

// Appends a task to a stream's queue (nullptr / cudaStreamLegacy: the legacy default
// stream, with its implicit ordering against blocking streams). Validates the handle
// (cudaErrorInvalidResourceHandle, recorded as the last error). Does not check the
// sticky error: callers have done api_begin() already. *at receives the task's place.
cudaError_t submit(cudaStream_t s, Task task, Ticket* at = nullptr);
// cudaSuccess if s names a live stream (or a default stream), else records and returns
// cudaErrorInvalidResourceHandle. A later submit can still fail if another thread
// destroys the stream in between; callers that must undo work check submit's result.
cudaError_t check_stream(cudaStream_t s, const char* api);
// Blocks the calling host thread until the ticket's task has run (or been skipped).
// Refused with cudaErrorNotPermitted on a stream worker thread, where waiting could
// deadlock (a real host function must not call CUDA either). Returns the sticky
// error if one exists afterwards, else cudaSuccess.
cudaError_t wait_host(const Ticket& t);
// Waits for everything queued so far on every stream, destroyed-but-draining ones
// included (refused on a worker thread as above). Returns the sticky error or cudaSuccess.
cudaError_t wait_all();
// True on a stream worker thread (inside stream work).
bool on_worker_thread();

}  // namespace ciuic::emu::rt
