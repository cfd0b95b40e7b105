// Checking CUDA, cuBLAS, cuDNN and NCCL status codes. CUDA builds only: .cpp
// files include this under #ifdef CIUIC_WITH_CUDA; .cu files may include it freely.
//
// Every failing status becomes a ciuic::CudaError whose message names the call
// text, file:line, the numeric code and the library's own description, e.g.
//   "cudaMalloc(&p, bytes): CUDA error 2 (cudaErrorMemoryAllocation: out of memory) at cuda_backend.cpp:31"
//
// The library macros take their status as an int so this header needs only
// <cuda_runtime.h>; the cuBLAS/cuDNN/NCCL headers are included by cuda_check.cpp
// alone. All four libraries use 0 for success.
#pragma once

#include <cuda_runtime.h>

namespace ciuic::detail {

// Each throws CudaError. throw_cuda_error also clears CUDA's per-thread
// last-error state, so a later CIUIC_CUDA_CHECK_LAUNCH() does not report the
// same (non-sticky) failure a second time.
[[noreturn]] void throw_cuda_error(int code, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(int status, const char* call, const char* file, int line);
[[noreturn]] void throw_cudnn_error(int status, const char* call, const char* file, int line);
[[noreturn]] void throw_nccl_error(int status, const char* call, const char* file, int line);

}  // namespace ciuic::detail

#define CIUIC_CUDA_CHECK(call)                                                          \
  do {                                                                                  \
    const cudaError_t ciuic_status_ = (call);                                           \
    if (ciuic_status_ != cudaSuccess)                                                   \
      ::ciuic::detail::throw_cuda_error(static_cast<int>(ciuic_status_), #call,         \
                                        __FILE__, __LINE__);                            \
  } while (0)

// After a kernel launch (<<<...>>> returns nothing): reports bad launch
// configurations and earlier asynchronous errors.
#define CIUIC_CUDA_CHECK_LAUNCH()                                                       \
  do {                                                                                  \
    const cudaError_t ciuic_status_ = cudaGetLastError();                               \
    if (ciuic_status_ != cudaSuccess)                                                   \
      ::ciuic::detail::throw_cuda_error(static_cast<int>(ciuic_status_), "kernel launch", \
                                        __FILE__, __LINE__);                            \
  } while (0)

#define CIUIC_CUBLAS_CHECK(call)                                                        \
  do {                                                                                  \
    const int ciuic_status_ = static_cast<int>(call);                                   \
    if (ciuic_status_ != 0)                                                             \
      ::ciuic::detail::throw_cublas_error(ciuic_status_, #call, __FILE__, __LINE__);    \
  } while (0)

#if defined(CIUIC_WITH_CUDNN)
#define CIUIC_CUDNN_CHECK(call)                                                         \
  do {                                                                                  \
    const int ciuic_status_ = static_cast<int>(call);                                   \
    if (ciuic_status_ != 0)                                                             \
      ::ciuic::detail::throw_cudnn_error(ciuic_status_, #call, __FILE__, __LINE__);     \
  } while (0)
#endif

#if defined(CIUIC_WITH_NCCL)
// Blocking communicators only: ncclInProgress (non-blocking mode) counts as a failure.
#define CIUIC_NCCL_CHECK(call)                                                          \
  do {                                                                                  \
    const int ciuic_status_ = static_cast<int>(call);                                   \
    if (ciuic_status_ != 0)                                                             \
      ::ciuic::detail::throw_nccl_error(ciuic_status_, #call, __FILE__, __LINE__);      \
  } while (0)
#endif
