// The emulated device itself: its profiles (the figures a program can query), the
// device-selection and query calls, and per-kernel function attributes.
//
// Invariants:
// - There is exactly one device, index 0. Any other index is cudaErrorInvalidDevice;
//   the calling thread's current device is therefore always 0 and needs no storage.
// - The profile is chosen by CIUIC_EMU_PROFILE, read once (empty or unset: sm_90).
//   An unknown name does not stop the process: every device call then fails
//   (cudaErrorInvalidValue; cudaGetDeviceCount reports cudaErrorNoDevice and 0 devices)
//   and one line on stderr names the known profiles. select_profile() overrides the
//   environment for tests.
// - Profiles are constant tables; profile() returns a reference into them, so a
//   reference taken before a select_profile() stays valid.
// - The dynamic shared-memory limit of a kernel, set with cudaFuncSetAttribute, is
//   never above the active profile's opt-in maximum when it is set (cudaErrorInvalidValue
//   otherwise, as a GPU refuses it). The static shared memory of a kernel is unknown
//   here, so unlike a GPU the check does not subtract it; the executor's launch-time
//   check sees the whole footprint.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "ciuic_emu/engine.h"
#include "runtime_internal.h"

namespace ciuic::emu {
namespace {

constexpr std::size_t KiB = 1024;
constexpr std::size_t GiB = KiB * KiB * KiB;

// Shared-memory figures are the documented ones per compute capability (the opt-in
// limit is the per-SM capacity minus the 1 KiB the hardware reserves per block).
constexpr DeviceProfile kProfiles[] = {
    {"sm_90", "emulated H100 (sm_90)", 9, 0, 132, 80 * GiB, 48 * KiB, 227 * KiB, 228 * KiB, 1024,
     {1024, 1024, 64}, {2147483647, 65535, 65535}, 32},
    {"sm_80", "emulated A100 (sm_80)", 8, 0, 108, 80 * GiB, 48 * KiB, 163 * KiB, 164 * KiB, 1024,
     {1024, 1024, 64}, {2147483647, 65535, 65535}, 32},
    {"sm_86", "emulated RTX A6000 (sm_86)", 8, 6, 84, 48 * GiB, 48 * KiB, 99 * KiB, 100 * KiB, 1024,
     {1024, 1024, 64}, {2147483647, 65535, 65535}, 32},
    {"sm_89", "emulated L40S (sm_89)", 8, 9, 142, 48 * GiB, 48 * KiB, 99 * KiB, 100 * KiB, 1024,
     {1024, 1024, 64}, {2147483647, 65535, 65535}, 32},
};
constexpr int kProfileCount = static_cast<int>(sizeof(kProfiles) / sizeof(kProfiles[0]));
constexpr int kUnknown = -1;     // a selection that named no profile
constexpr int kNoOverride = -2;  // select_profile(nullptr): the environment decides

int index_of(const char* name) {
  for (int i = 0; i < kProfileCount; ++i)
    if (std::strcmp(kProfiles[i].name, name) == 0) return i;
  return kUnknown;
}

struct Selection {
  std::atomic<int> override_index{kNoOverride};
  std::atomic<bool> env_warned{false};       // the line was printed for CIUIC_EMU_PROFILE (once per process)
  std::atomic<bool> override_warned{false};  // ... for the current select_profile() name
  std::mutex mu;                    // guards unknown_name
  std::string unknown_name;         // the name the current unknown selection used
  int env_index = 0;
  std::string env_name;
};

Selection& selection() {
  // Leaked on purpose: stream workers may ask for the profile during static destruction.
  static Selection* s = [] {
    auto* sel = new Selection;
    const char* env = std::getenv("CIUIC_EMU_PROFILE");
    if (env != nullptr && *env != '\0') {
      sel->env_name = env;
      sel->env_index = index_of(env);
    }
    return sel;
  }();
  return *s;
}

int current_index() {
  Selection& s = selection();
  const int o = s.override_index.load(std::memory_order_acquire);
  return o != kNoOverride ? o : s.env_index;
}

std::string known_names() {
  std::string out;
  for (int i = 0; i < kProfileCount; ++i) out += (i ? ", " : "") + std::string(kProfiles[i].name);
  return out;
}

int threads_per_sm(const DeviceProfile& p) { return p.major == 9 || (p.major == 8 && p.minor == 0) ? 2048 : 1536; }

struct FuncAttributes {
  std::mutex mu;
  std::unordered_map<const void*, std::size_t> max_dynamic_smem;
};

FuncAttributes& func_attributes() {
  static FuncAttributes* f = new FuncAttributes;  // leaked: read by launches on worker threads
  return *f;
}

}  // namespace

// ---- engine.h -----------------------------------------------------------------------

const DeviceProfile& profile() {
  const int i = current_index();
  return kProfiles[i >= 0 ? i : 0];
}

const DeviceProfile* profile_named(const char* name) {
  if (name == nullptr) return nullptr;
  const int i = index_of(name);
  return i >= 0 ? &kProfiles[i] : nullptr;
}

bool select_profile(const char* name) {
  Selection& s = selection();
  int i = kNoOverride;
  if (name != nullptr) {
    i = index_of(name);
    std::lock_guard<std::mutex> lock(s.mu);
    s.unknown_name = name;
  }
  s.override_warned.store(false, std::memory_order_relaxed);
  s.override_index.store(i, std::memory_order_release);
  return i != kUnknown;
}

std::size_t max_dynamic_smem(const void* fn) {
  FuncAttributes& f = func_attributes();
  std::lock_guard<std::mutex> lock(f.mu);
  const auto it = f.max_dynamic_smem.find(fn);
  return it == f.max_dynamic_smem.end() ? 0 : it->second;
}

namespace rt {

bool profile_usable() {
  Selection& s = selection();
  if (current_index() >= 0) return true;
  const bool from_env = s.override_index.load(std::memory_order_acquire) == kNoOverride;
  if (!(from_env ? s.env_warned : s.override_warned).exchange(true)) {
    std::string name;
    if (from_env) {
      name = s.env_name;
    } else {
      std::lock_guard<std::mutex> lock(s.mu);
      name = s.unknown_name;
    }
    std::fprintf(stderr,
                 "ciuic emulated device: CIUIC_EMU_PROFILE=\"%s\" names no known device profile (known: %s); "
                 "every CUDA runtime call fails\n",
                 name.c_str(), known_names().c_str());
    std::fflush(stderr);
  }
  return false;
}

}  // namespace rt
}  // namespace ciuic::emu

using namespace ciuic::emu;

// ---- the CUDA runtime API ------------------------------------------------------------

cudaError_t CUDARTAPI cudaGetDeviceCount(int* count) {
  return rt::guarded("cudaGetDeviceCount", [&] {
    if (count == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaGetDeviceCount: count is null");
    if (const cudaError_t s = rt::sticky_code(); s != cudaSuccess) return s;
    if (!rt::profile_usable()) {
      *count = 0;
      return rt::fail(cudaErrorNoDevice, "CIUIC_EMU_PROFILE names no known device profile");
    }
    *count = 1;
    return cudaSuccess;
  });
}

cudaError_t CUDARTAPI cudaGetDevice(int* device) {
  return rt::guarded("cudaGetDevice", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (device == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaGetDevice: device is null");
    *device = 0;
    return cudaSuccess;
  });
}

cudaError_t CUDARTAPI cudaSetDevice(int device) {
  return rt::guarded("cudaSetDevice", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (device != 0)
      return rt::fail(cudaErrorInvalidDevice,
                      "cudaSetDevice(" + std::to_string(device) + "): the emulated machine has one device, 0");
    return cudaSuccess;
  });
}

cudaError_t CUDARTAPI cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  return rt::guarded("cudaGetDeviceProperties", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (prop == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaGetDeviceProperties: prop is null");
    if (device != 0)
      return rt::fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties: no device " + std::to_string(device));
    const DeviceProfile& p = profile();
    std::memset(prop, 0, sizeof(*prop));
    std::snprintf(prop->name, sizeof(prop->name), "%s", p.card);
    prop->major = p.major;
    prop->minor = p.minor;
    prop->multiProcessorCount = p.sm_count;
    prop->totalGlobalMem = p.global_mem_bytes;
    prop->sharedMemPerBlock = p.smem_per_block;
    prop->sharedMemPerBlockOptin = p.smem_per_block_optin;
    prop->sharedMemPerMultiprocessor = p.smem_per_sm;
    prop->maxThreadsPerBlock = p.max_threads_per_block;
    for (int i = 0; i < 3; ++i) {
      prop->maxThreadsDim[i] = p.max_block_dim[i];
      prop->maxGridSize[i] = p.max_grid_dim[i];
    }
    prop->warpSize = p.warp_size;
    // True of every emulated device (one address space for host and device memory):
    prop->unifiedAddressing = 1;
    prop->canMapHostMemory = 1;
    prop->concurrentKernels = 1;
    prop->maxThreadsPerMultiProcessor = threads_per_sm(p);
    return cudaSuccess;
  });
}

cudaError_t CUDARTAPI cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  return rt::guarded("cudaDeviceGetAttribute", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (value == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: value is null");
    if (device != 0)
      return rt::fail(cudaErrorInvalidDevice, "cudaDeviceGetAttribute: no device " + std::to_string(device));
    const DeviceProfile& p = profile();
    switch (attr) {
      case cudaDevAttrMaxThreadsPerBlock: *value = p.max_threads_per_block; return cudaSuccess;
      case cudaDevAttrMaxBlockDimX: *value = p.max_block_dim[0]; return cudaSuccess;
      case cudaDevAttrMaxBlockDimY: *value = p.max_block_dim[1]; return cudaSuccess;
      case cudaDevAttrMaxBlockDimZ: *value = p.max_block_dim[2]; return cudaSuccess;
      case cudaDevAttrMaxGridDimX: *value = p.max_grid_dim[0]; return cudaSuccess;
      case cudaDevAttrMaxGridDimY: *value = p.max_grid_dim[1]; return cudaSuccess;
      case cudaDevAttrMaxGridDimZ: *value = p.max_grid_dim[2]; return cudaSuccess;
      case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(p.smem_per_block); return cudaSuccess;
      case cudaDevAttrMaxSharedMemoryPerBlockOptin:
        *value = static_cast<int>(p.smem_per_block_optin);
        return cudaSuccess;
      case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = static_cast<int>(p.smem_per_sm); return cudaSuccess;
      case cudaDevAttrWarpSize: *value = p.warp_size; return cudaSuccess;
      case cudaDevAttrMultiProcessorCount: *value = p.sm_count; return cudaSuccess;
      case cudaDevAttrComputeCapabilityMajor: *value = p.major; return cudaSuccess;
      case cudaDevAttrComputeCapabilityMinor: *value = p.minor; return cudaSuccess;
      case cudaDevAttrMaxThreadsPerMultiProcessor: *value = threads_per_sm(p); return cudaSuccess;
      case cudaDevAttrUnifiedAddressing:
      case cudaDevAttrCanMapHostMemory:
      case cudaDevAttrConcurrentKernels: *value = 1; return cudaSuccess;
      default:
        // Not emulated rather than invented: the message says which one was asked.
        return rt::fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute " +
                                                   std::to_string(static_cast<int>(attr)) +
                                                   " is not emulated (kernels/emu/src/runtime_device.cpp)");
    }
  });
}

cudaError_t CUDARTAPI cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  return rt::guarded("cudaFuncSetAttribute", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (func == nullptr) return rt::fail(cudaErrorInvalidDeviceFunction, "cudaFuncSetAttribute: func is null");
    const DeviceProfile& p = profile();
    switch (attr) {
      case cudaFuncAttributeMaxDynamicSharedMemorySize: {
        if (value < 0 || static_cast<std::size_t>(value) > p.smem_per_block_optin)
          return rt::fail(cudaErrorInvalidValue,
                          "cudaFuncSetAttribute: " + std::to_string(value) +
                              " bytes of dynamic shared memory; " + p.name + " allows at most " +
                              std::to_string(p.smem_per_block_optin) + " per block");
        FuncAttributes& f = func_attributes();
        std::lock_guard<std::mutex> lock(f.mu);
        f.max_dynamic_smem[func] = static_cast<std::size_t>(value);
        return cudaSuccess;
      }
      case cudaFuncAttributePreferredSharedMemoryCarveout:
        if (value < -1 || value > 100)
          return rt::fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: carveout " + std::to_string(value) +
                                                     " is outside [-1, 100]");
        return cudaSuccess;  // a performance hint: nothing to emulate
      default:
        if (attr < 0 || attr >= cudaFuncAttributeMax)
          return rt::fail(cudaErrorInvalidValue,
                          "cudaFuncSetAttribute: unknown attribute " + std::to_string(static_cast<int>(attr)));
        return cudaSuccess;  // cluster attributes: accepted, no effect on the emulation
    }
  });
}

cudaError_t CUDARTAPI cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  return rt::guarded("cudaFuncGetAttributes", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (attr == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaFuncGetAttributes: attr is null");
    if (func == nullptr) return rt::fail(cudaErrorInvalidDeviceFunction, "cudaFuncGetAttributes: func is null");
    const DeviceProfile& p = profile();
    std::memset(attr, 0, sizeof(*attr));
    const std::size_t set = max_dynamic_smem(func);
    attr->maxDynamicSharedSizeBytes = static_cast<int>(set != 0 ? set : p.smem_per_block);
    attr->maxThreadsPerBlock = p.max_threads_per_block;
    attr->ptxVersion = attr->binaryVersion = p.major * 10 + p.minor;
    attr->preferredShmemCarveout = -1;
    return cudaSuccess;
  });
}

// Version queries answer without a device, as the real ones do. The "driver" is as
// new as the headers the program was compiled against.
cudaError_t CUDARTAPI cudaDriverGetVersion(int* driverVersion) {
  return rt::guarded("cudaDriverGetVersion", [&] {
    if (driverVersion == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaDriverGetVersion: null argument");
    *driverVersion = CUDART_VERSION;
    return cudaSuccess;
  });
}

cudaError_t CUDARTAPI cudaRuntimeGetVersion(int* runtimeVersion) {
  return rt::guarded("cudaRuntimeGetVersion", [&] {
    if (runtimeVersion == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaRuntimeGetVersion: null argument");
    *runtimeVersion = CUDART_VERSION;
    return cudaSuccess;
  });
}
