// Errors of the emulated CUDA runtime: the per-host-thread last error, the device's
// sticky error, and the names and descriptions of every cudaError_t.
//
// Invariants:
// - The last error is thread_local, as the real runtime keeps it per host thread:
//   every failing call overwrites it; cudaGetLastError returns and clears it,
//   cudaPeekAtLastError only returns it.
// - The sticky error is process-wide and write-once: the first set_sticky_error wins,
//   its message goes to stderr exactly once, and until clear_sticky_error() (or
//   cudaDeviceReset) every runtime call returns its code, cudaGetLastError included;
//   it cannot be cleared by reading it, as on a GPU after a kernel fault. Calls
//   refused because of it do not copy it into the thread's last error (it is reported
//   from the global state), so clearing it leaves no stale copies behind.
// - The state object is intentionally leaked (never destroyed): stream workers may
//   still read it while static destructors run at process exit.
// - Nothing here throws out of a cuda* function; the table lookups cannot fail.
#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "ciuic_emu/engine.h"
#include "runtime_internal.h"

namespace ciuic::emu {
namespace {

thread_local cudaError_t t_last_error = cudaSuccess;
thread_local std::string t_last_message;

struct StickyState {
  std::mutex mu;             // guards message and the write-once transition of code
  std::atomic<int> code{0};  // cudaSuccess when clear; read lock-free on every call
  std::string message;
};

StickyState& sticky() {
  static StickyState* s = new StickyState;  // leaked on purpose (see the header comment)
  return *s;
}

// Every enumerator of cudaError_t in the CUDA 13 headers (the names are the
// enumerators' own spelling), with a short description. The descriptions of the
// codes a program commonly meets are the phrases the real runtime prints.
// clang-format off
#define CIUIC_EMU_CUDA_ERRORS(X) \
  X(cudaSuccess, "no error") \
  X(cudaErrorInvalidValue, "invalid argument") \
  X(cudaErrorMemoryAllocation, "out of memory") \
  X(cudaErrorInitializationError, "initialization error") \
  X(cudaErrorCudartUnloading, "driver shutting down") \
  X(cudaErrorProfilerDisabled, "profiler disabled") \
  X(cudaErrorProfilerNotInitialized, "profiler not initialized") \
  X(cudaErrorProfilerAlreadyStarted, "profiler already started") \
  X(cudaErrorProfilerAlreadyStopped, "profiler already stopped") \
  X(cudaErrorInvalidConfiguration, "invalid configuration argument") \
  X(cudaErrorInvalidPitchValue, "invalid pitch argument") \
  X(cudaErrorInvalidSymbol, "invalid device symbol") \
  X(cudaErrorInvalidHostPointer, "invalid host pointer") \
  X(cudaErrorInvalidDevicePointer, "invalid device pointer") \
  X(cudaErrorInvalidTexture, "invalid texture") \
  X(cudaErrorInvalidTextureBinding, "invalid texture binding") \
  X(cudaErrorInvalidChannelDescriptor, "invalid channel descriptor") \
  X(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy") \
  X(cudaErrorAddressOfConstant, "address of constant") \
  X(cudaErrorTextureFetchFailed, "texture fetch failed") \
  X(cudaErrorTextureNotBound, "texture not bound") \
  X(cudaErrorSynchronizationError, "synchronization error") \
  X(cudaErrorInvalidFilterSetting, "invalid filter setting") \
  X(cudaErrorInvalidNormSetting, "invalid norm setting") \
  X(cudaErrorMixedDeviceExecution, "mixed device execution") \
  X(cudaErrorNotYetImplemented, "not yet implemented") \
  X(cudaErrorMemoryValueTooLarge, "memory value too large") \
  X(cudaErrorStubLibrary, "CUDA driver is a stub library") \
  X(cudaErrorInsufficientDriver, "CUDA driver version is insufficient for CUDA runtime version") \
  X(cudaErrorCallRequiresNewerDriver, "call requires newer driver") \
  X(cudaErrorInvalidSurface, "invalid surface") \
  X(cudaErrorDuplicateVariableName, "duplicate variable name") \
  X(cudaErrorDuplicateTextureName, "duplicate texture name") \
  X(cudaErrorDuplicateSurfaceName, "duplicate surface name") \
  X(cudaErrorDevicesUnavailable, "CUDA-capable device(s) is/are busy or unavailable") \
  X(cudaErrorIncompatibleDriverContext, "incompatible driver context") \
  X(cudaErrorMissingConfiguration, "__global__ function call is not configured") \
  X(cudaErrorPriorLaunchFailure, "unspecified launch failure in prior launch") \
  X(cudaErrorLaunchMaxDepthExceeded, "launch max depth exceeded") \
  X(cudaErrorLaunchFileScopedTex, "launch file scoped tex") \
  X(cudaErrorLaunchFileScopedSurf, "launch file scoped surf") \
  X(cudaErrorSyncDepthExceeded, "sync depth exceeded") \
  X(cudaErrorLaunchPendingCountExceeded, "launch pending count exceeded") \
  X(cudaErrorInvalidDeviceFunction, "invalid device function") \
  X(cudaErrorNoDevice, "no CUDA-capable device is detected") \
  X(cudaErrorInvalidDevice, "invalid device ordinal") \
  X(cudaErrorDeviceNotLicensed, "device not licensed") \
  X(cudaErrorSoftwareValidityNotEstablished, "software validity not established") \
  X(cudaErrorStartupFailure, "startup failure in cuda runtime") \
  X(cudaErrorInvalidKernelImage, "device kernel image is invalid") \
  X(cudaErrorDeviceUninitialized, "device uninitialized") \
  X(cudaErrorMapBufferObjectFailed, "map buffer object failed") \
  X(cudaErrorUnmapBufferObjectFailed, "unmap buffer object failed") \
  X(cudaErrorArrayIsMapped, "array is mapped") \
  X(cudaErrorAlreadyMapped, "already mapped") \
  X(cudaErrorNoKernelImageForDevice, "no kernel image is available for execution on the device") \
  X(cudaErrorAlreadyAcquired, "already acquired") \
  X(cudaErrorNotMapped, "not mapped") \
  X(cudaErrorNotMappedAsArray, "not mapped as array") \
  X(cudaErrorNotMappedAsPointer, "not mapped as pointer") \
  X(cudaErrorECCUncorrectable, "uncorrectable ECC error encountered") \
  X(cudaErrorUnsupportedLimit, "unsupported limit") \
  X(cudaErrorDeviceAlreadyInUse, "device already in use") \
  X(cudaErrorPeerAccessUnsupported, "peer access is not supported between these two devices") \
  X(cudaErrorInvalidPtx, "a PTX JIT compilation failed") \
  X(cudaErrorInvalidGraphicsContext, "invalid graphics context") \
  X(cudaErrorNvlinkUncorrectable, "uncorrectable NVLink error detected during the execution") \
  X(cudaErrorJitCompilerNotFound, "jit compiler not found") \
  X(cudaErrorUnsupportedPtxVersion, "the provided PTX was compiled with an unsupported toolchain") \
  X(cudaErrorJitCompilationDisabled, "jit compilation disabled") \
  X(cudaErrorUnsupportedExecAffinity, "unsupported exec affinity") \
  X(cudaErrorUnsupportedDevSideSync, "unsupported dev side sync") \
  X(cudaErrorContained, "contained") \
  X(cudaErrorInvalidSource, "invalid source") \
  X(cudaErrorFileNotFound, "file not found") \
  X(cudaErrorSharedObjectSymbolNotFound, "shared object symbol not found") \
  X(cudaErrorSharedObjectInitFailed, "shared object init failed") \
  X(cudaErrorOperatingSystem, "operating system") \
  X(cudaErrorInvalidResourceHandle, "invalid resource handle") \
  X(cudaErrorIllegalState, "illegal state") \
  X(cudaErrorLossyQuery, "lossy query") \
  X(cudaErrorSymbolNotFound, "named symbol not found") \
  X(cudaErrorNotReady, "device not ready") \
  X(cudaErrorIllegalAddress, "an illegal memory access was encountered") \
  X(cudaErrorLaunchOutOfResources, "too many resources requested for launch") \
  X(cudaErrorLaunchTimeout, "the launch timed out and was terminated") \
  X(cudaErrorLaunchIncompatibleTexturing, "launch incompatible texturing") \
  X(cudaErrorPeerAccessAlreadyEnabled, "peer access is already enabled") \
  X(cudaErrorPeerAccessNotEnabled, "peer access has not been enabled") \
  X(cudaErrorSetOnActiveProcess, "set on active process") \
  X(cudaErrorContextIsDestroyed, "context is destroyed") \
  X(cudaErrorAssert, "device-side assert triggered") \
  X(cudaErrorTooManyPeers, "peer mapping resources exhausted") \
  X(cudaErrorHostMemoryAlreadyRegistered, "host memory already registered") \
  X(cudaErrorHostMemoryNotRegistered, "host memory not registered") \
  X(cudaErrorHardwareStackError, "hardware stack error") \
  X(cudaErrorIllegalInstruction, "an illegal instruction was encountered") \
  X(cudaErrorMisalignedAddress, "misaligned address") \
  X(cudaErrorInvalidAddressSpace, "operation not supported on global/shared address space") \
  X(cudaErrorInvalidPc, "invalid program counter") \
  X(cudaErrorLaunchFailure, "unspecified launch failure") \
  X(cudaErrorCooperativeLaunchTooLarge, "too many blocks in cooperative launch") \
  X(cudaErrorTensorMemoryLeak, "tensor memory was not released before the kernel exited") \
  X(cudaErrorNotPermitted, "operation not permitted") \
  X(cudaErrorNotSupported, "operation not supported") \
  X(cudaErrorSystemNotReady, "system not ready") \
  X(cudaErrorSystemDriverMismatch, "system driver mismatch") \
  X(cudaErrorCompatNotSupportedOnDevice, "compat not supported on device") \
  X(cudaErrorMpsConnectionFailed, "MPS client failed to connect to the MPS control daemon or the MPS server") \
  X(cudaErrorMpsRpcFailure, "mps rpc failure") \
  X(cudaErrorMpsServerNotReady, "mps server not ready") \
  X(cudaErrorMpsMaxClientsReached, "mps max clients reached") \
  X(cudaErrorMpsMaxConnectionsReached, "mps max connections reached") \
  X(cudaErrorMpsClientTerminated, "mps client terminated") \
  X(cudaErrorCdpNotSupported, "CUDA dynamic parallelism is not supported by this device") \
  X(cudaErrorCdpVersionMismatch, "cdp version mismatch") \
  X(cudaErrorStreamCaptureUnsupported, "stream capture unsupported") \
  X(cudaErrorStreamCaptureInvalidated, "stream capture invalidated") \
  X(cudaErrorStreamCaptureMerge, "stream capture merge") \
  X(cudaErrorStreamCaptureUnmatched, "stream capture unmatched") \
  X(cudaErrorStreamCaptureUnjoined, "stream capture unjoined") \
  X(cudaErrorStreamCaptureIsolation, "stream capture isolation") \
  X(cudaErrorStreamCaptureImplicit, "stream capture implicit") \
  X(cudaErrorCapturedEvent, "captured event") \
  X(cudaErrorStreamCaptureWrongThread, "stream capture wrong thread") \
  X(cudaErrorTimeout, "wait operation timed out") \
  X(cudaErrorGraphExecUpdateFailure, "graph exec update failure") \
  X(cudaErrorExternalDevice, "external device") \
  X(cudaErrorInvalidClusterSize, "invalid cluster size") \
  X(cudaErrorFunctionNotLoaded, "function not loaded") \
  X(cudaErrorInvalidResourceType, "invalid resource type") \
  X(cudaErrorInvalidResourceConfiguration, "invalid resource configuration") \
  X(cudaErrorUnknown, "unknown error")
// clang-format on

struct ErrorText {
  cudaError_t code;
  const char* name;
  const char* text;
};

constexpr ErrorText kErrors[] = {
#define CIUIC_EMU_ERROR_ROW(code, text) {code, #code, text},
    CIUIC_EMU_CUDA_ERRORS(CIUIC_EMU_ERROR_ROW)
#undef CIUIC_EMU_ERROR_ROW
};

// The real runtime answers both queries with this for a code it does not know.
constexpr const char* kUnrecognized = "unrecognized error code";

const ErrorText* find_error(cudaError_t e) {
  for (const ErrorText& row : kErrors)
    if (row.code == e) return &row;
  return nullptr;
}

}  // namespace

// ---- engine.h ---------------------------------------------------------------------

void set_last_error(cudaError_t e, const std::string& message) {
  t_last_error = e;
  t_last_message = message;
}

std::string last_error_message() { return t_last_message; }

void set_sticky_error(cudaError_t e, const std::string& message) {
  if (e == cudaSuccess) return;
  StickyState& s = sticky();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.code.load(std::memory_order_relaxed) != cudaSuccess) return;  // the first fault wins
    s.message = message;
    s.code.store(e, std::memory_order_release);
  }
  std::fprintf(stderr, "ciuic emulated device: %s\n", message.c_str());
  std::fflush(stderr);
}

std::string sticky_error_message() {
  StickyState& s = sticky();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.code.load(std::memory_order_relaxed) == cudaSuccess ? std::string() : s.message;
}

namespace rt {

cudaError_t fail(cudaError_t e, std::string message) {
  t_last_error = e;
  t_last_message = std::move(message);
  return e;
}

cudaError_t fail_noexcept(cudaError_t e, const char* api, const char* detail) noexcept {
  t_last_error = e;
  try {
    t_last_message = std::string(api) + ": " + detail;
  } catch (...) {
    t_last_message.clear();  // clear() never allocates
  }
  return e;
}

cudaError_t sticky_code() { return static_cast<cudaError_t>(sticky().code.load(std::memory_order_acquire)); }

// Clears without draining: clear_sticky_error (runtime_streams.cpp) drains first.
void forget_sticky_error() {
  StickyState& s = sticky();
  std::lock_guard<std::mutex> lock(s.mu);
  s.code.store(cudaSuccess, std::memory_order_release);
  s.message.clear();
}

cudaError_t api_begin() {
  if (const cudaError_t s = sticky_code(); s != cudaSuccess) return s;
  if (!profile_usable())
    return fail(cudaErrorInvalidValue, "CIUIC_EMU_PROFILE names no known device profile");
  return cudaSuccess;
}

}  // namespace rt
}  // namespace ciuic::emu

using namespace ciuic::emu;

// ---- the CUDA runtime API ------------------------------------------------------------
// The last-error queries do not go through api_begin: under an unknown profile they
// still report (and clear) the failure of the call before, so "call, then clear with
// cudaGetLastError" code keeps working; a sticky error wins over the thread's own.

cudaError_t CUDARTAPI cudaGetLastError(void) {
  if (const cudaError_t s = rt::sticky_code(); s != cudaSuccess) {
    t_last_error = cudaSuccess;
    t_last_message.clear();
    return s;
  }
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  t_last_message.clear();
  return e;
}

cudaError_t CUDARTAPI cudaPeekAtLastError(void) {
  if (const cudaError_t s = rt::sticky_code(); s != cudaSuccess) return s;
  return t_last_error;
}

const char* CUDARTAPI cudaGetErrorName(cudaError_t error) {
  const ErrorText* row = find_error(error);
  return row ? row->name : kUnrecognized;
}

const char* CUDARTAPI cudaGetErrorString(cudaError_t error) {
  const ErrorText* row = find_error(error);
  return row ? row->text : kUnrecognized;
}
