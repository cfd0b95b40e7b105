// Device discovery and the current-device guard. A CPU-only build compiles
// without any CUDA header; its answers are constant.
#include "ciuic/device.h"

#include "ciuic/error.h"

#ifdef CIUIC_WITH_CUDA
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#endif

namespace ciuic {

bool built_with_cuda() {
#ifdef CIUIC_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef CIUIC_WITH_CUDA
  // Asked once: the answer cannot change for the life of the process (the
  // runtime fixes its device list at initialisation). Thread-safe static init.
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      // No driver, no device, or a driver too old: all mean "no GPU". Clear
      // the error so it does not surface in an unrelated later check.
      (void)cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

void check_device_usable(const Device& d, const char* op) {
  if (d.is_cpu()) return;
  if (!built_with_cuda())
    detail::fail<DeviceError>(op, "cannot use ", d,
                              ": this build has no CUDA (configure with -Dcuda=enabled)");
  const int n = cuda_device_count();
  if (n == 0) detail::fail<DeviceError>(op, "cannot use ", d, ": no CUDA GPU is available");
  if (d.index < 0 || d.index >= n)
    detail::fail<DeviceError>(op, "cannot use ", d, ": index ", d.index, " out of range (", n,
                              n == 1 ? " GPU)" : " GPUs)");
}

DeviceGuard::DeviceGuard(const Device& d) {
  if (d.is_cpu()) return;
  check_device_usable(d, "DeviceGuard");
#ifdef CIUIC_WITH_CUDA
  int current = 0;
  CIUIC_CUDA_CHECK(cudaGetDevice(&current));
  if (current != d.index) {
    CIUIC_CUDA_CHECK(cudaSetDevice(d.index));
    previous_ = current;  // only after the switch succeeded: nothing to undo otherwise
  }
#endif
}

DeviceGuard::~DeviceGuard() {
#ifdef CIUIC_WITH_CUDA
  // A destructor must not throw; restoring a device that was current a moment
  // ago fails only if the context is already broken, which the next checked
  // call will report.
  if (previous_ >= 0 && cudaSetDevice(previous_) != cudaSuccess) (void)cudaGetLastError();
#endif
}

}  // namespace ciuic
