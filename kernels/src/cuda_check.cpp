// The throwing half of cuda_check.h. Compiled only in CUDA builds; the only
// translation unit that needs the cuBLAS, cuDNN and NCCL headers for messages.
#include "ciuic/cuda_check.h"

#include <cublas_api.h>
#include <cuda_runtime.h>

#include <string>

#if defined(CIUIC_WITH_CUDNN)
#include <cudnn.h>
#endif
#if defined(CIUIC_WITH_NCCL)
#include <nccl.h>
#endif

#include "ciuic/error.h"

namespace ciuic::detail {
namespace {

// "<call>: <library> error <code> (<description>) at <file>:<line>"
[[noreturn]] void throw_library_error(const char* library, int code, const char* description,
                                      const char* call, const char* file, int line) {
  throw CudaError(concat(call, ": ", library, " error ", code, " (",
                         description ? description : "no description", ") at ", file, ":", line));
}

}  // namespace

void throw_cuda_error(int code, const char* call, const char* file, int line) {
  // The failing call also left its code as the thread's last error; reset it so
  // the next launch check reports only new failures. Sticky errors (a kernel
  // fault) survive this and will keep failing later calls, as they must.
  (void)cudaGetLastError();
  const auto err = static_cast<cudaError_t>(code);
  throw_library_error("CUDA", code,
                      concat(cudaGetErrorName(err), ": ", cudaGetErrorString(err)).c_str(),
                      call, file, line);
}

void throw_cublas_error(int status, const char* call, const char* file, int line) {
  const auto s = static_cast<cublasStatus_t>(status);
  throw_library_error("cuBLAS", status,
                      concat(cublasGetStatusName(s), ": ", cublasGetStatusString(s)).c_str(),
                      call, file, line);
}

void throw_cudnn_error(int status, const char* call, const char* file, int line) {
#if defined(CIUIC_WITH_CUDNN)
  std::string description = cudnnGetErrorString(static_cast<cudnnStatus_t>(status));
#if CUDNN_MAJOR >= 9
  // cuDNN 9 also keeps a message naming the failed check (empty when it has none).
  char last[512] = {0};
  cudnnGetLastErrorString(last, sizeof(last));
  if (last[0] != '\0') description += concat("; ", last);
#endif
  throw_library_error("cuDNN", status, description.c_str(), call, file, line);
#else
  throw_library_error("cuDNN", status, "this build has no cuDNN", call, file, line);
#endif
}

void throw_nccl_error(int status, const char* call, const char* file, int line) {
#if defined(CIUIC_WITH_NCCL)
  throw_library_error("NCCL", status, ncclGetErrorString(static_cast<ncclResult_t>(status)),
                      call, file, line);
#else
  throw_library_error("NCCL", status, "this build has no NCCL", call, file, line);
#endif
}

}  // namespace ciuic::detail
