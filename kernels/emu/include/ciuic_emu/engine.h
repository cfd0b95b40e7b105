// The emulated CUDA device's internal interface: what the kernel executor
// (launch.h, scheduler.cpp) and the host runtime (runtime_*.cpp: memory, streams,
// events, errors, device profiles) ask of each other. Not part of ciuic's API;
// only kernels/emu/ includes it.
//
// Model: one emulated device (cuda:0). Device memory is host memory. Every stream
// is an in-order queue drained by its own OS thread, so work on different streams
// and the host really run concurrently. A kernel launch validates its configuration
// on the calling host thread (synchronous errors, as cudaGetLastError reports them
// on a GPU), then enqueues the grid's execution on its stream.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <string>

namespace ciuic::emu {

// ---- Device profiles (runtime_device.cpp) --------------------------------------
// Chosen once per process by CIUIC_EMU_PROFILE: "sm_90" (default: H100/H200),
// "sm_80" (A100), "sm_86" (RTX A6000 / 3090: 99 KiB opt-in shared memory), "sm_89"
// (L40S, also 99 KiB). An unknown name makes every runtime call fail with a message
// naming the known ones (the library never exits); profile() then answers with
// sm_90's figures so that no caller reads garbage.
struct DeviceProfile {
  const char* name;                   // "sm_90"
  const char* card;                   // "emulated H100 (sm_90)"
  int major, minor;                   // compute capability
  int sm_count;
  std::size_t global_mem_bytes;       // what cudaMemGetInfo reports as total
  std::size_t smem_per_block;         // 48 KiB: the limit without the opt-in attribute
  std::size_t smem_per_block_optin;   // cudaDevAttrMaxSharedMemoryPerBlockOptin
  std::size_t smem_per_sm;
  int max_threads_per_block;          // 1024
  int max_block_dim[3];               // 1024, 1024, 64
  int max_grid_dim[3];                // 2^31-1, 65535, 65535
  int warp_size;                      // 32
};
const DeviceProfile& profile();
// The built-in profile of that name ("sm_90", "sm_80", "sm_86", "sm_89"), or nullptr.
// Does not read the environment (tests use it to know each profile's figures).
const DeviceProfile* profile_named(const char* name);
// Testing hook: act from now on as if CIUIC_EMU_PROFILE were `name` (nullptr: the
// environment's choice again). An unknown name selects the unknown-profile state
// (every runtime call fails) and returns false. Call it with no work queued.
bool select_profile(const char* name);

// ---- Streams (runtime_streams.cpp) -----------------------------------------------------
// Appends work to the stream's queue (nullptr / cudaStreamLegacy: the legacy default
// stream, with its ordering against blocking streams; cudaStreamPerThread: one more
// blocking stream, shared by all host threads). Returns at once; the stream's worker
// runs `work` after everything queued before it on that stream. `what` names the work
// in error messages ("kernel foo"). If `work` throws, the exception's what() becomes
// the device's sticky error (set_sticky_error(cudaErrorLaunchFailure, ...)); work still
// queued behind a sticky error is skipped, not run. On failure nothing is queued: the
// sticky error, cudaErrorInvalidValue (unknown profile) or
// cudaErrorInvalidResourceHandle (not a live stream; recorded as the last error).
cudaError_t enqueue(cudaStream_t stream, std::function<void()> work, const char* what);

// ---- Errors (runtime_errors.cpp) -------------------------------------------------------
// A launch's synchronous failure (bad configuration): returned by the calling host
// thread's next cudaGetLastError / cudaPeekAtLastError, as on a GPU. Not sticky.
void set_last_error(cudaError_t e, const std::string& message);
// The message that came with the calling thread's last error (set_last_error's, or the
// runtime's own explanation of a refused call), "" when there is none. Cleared with
// the error by cudaGetLastError.
std::string last_error_message();
// An asynchronous fault inside a kernel (a barrier divergence, a deadlock, an
// exception in a thread): printed to stderr once with the message, then returned
// by every later runtime call of every thread (as a GPU's sticky errors are) until
// clear_sticky_error(). The message names the kernel and the source lines.
void set_sticky_error(cudaError_t e, const std::string& message);
// The message of the current sticky error, or "" when there is none.
std::string sticky_error_message();
// Testing hook: forget the sticky error (a real device would need a new context).
// Waits first for the queues to drain (work behind the fault is skipped quickly), so
// nothing queued before the fault runs after it; on a stream worker it only forgets.
// cudaDeviceReset does the same and also clears the calling thread's last error.
void clear_sticky_error();

// ---- Memory registry (runtime_memory.cpp) ------------------------------------------
// Every cudaMalloc / cudaMallocAsync / cudaHostAlloc allocation, so pointers can be
// classified (a kernel argument that points at pageable host memory is a bug on a GPU).
enum class MemoryKind { unregistered, device, pinned_host, mapped_host };
struct Allocation {
  void* base = nullptr;  // start of the allocation holding the pointer
  std::size_t size = 0;  // its exact size in bytes
  MemoryKind kind = MemoryKind::unregistered;
};
// The live allocation that contains p (base <= p < base + size), or an unregistered
// Allocation{} (pageable host memory, or memory already freed).
Allocation find_allocation(const void* p);

// ---- Function attributes (runtime_device.cpp) ----------------------------------------------
// The dynamic shared-memory limit set for a kernel with
// cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, v) (0 when never
// set: then the launch limit is profile().smem_per_block minus the static shared memory).
std::size_t max_dynamic_smem(const void* fn);

// ---- Kernel coverage (scheduler.cpp) ----------------------------------------------------
// Every instantiated __global__ function registers itself at static-initialisation time
// (the rewriter puts a registrar at the top of each kernel body; see device.h), with its
// pretty name; each execution of the body marks it launched. The test binary prints
// `emulated kernels launched: N of M` at exit and a test fails when N < M.
struct KernelRecord {
  const char* pretty_name;  // GCC's __PRETTY_FUNCTION__ of the instantiation
  bool launched;            // written with std::atomic_ref (relaxed)
};
KernelRecord* register_kernel(const char* pretty_name);
struct Coverage {
  std::size_t launched = 0, total = 0;
  std::string missing;  // the instantiations never launched, one per line
};
Coverage coverage();

}  // namespace ciuic::emu
