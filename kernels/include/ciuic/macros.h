// Portability macros shared by host-only and CUDA translation units.
#pragma once

#if defined(__CUDACC__)
#define CIUIC_HD __host__ __device__ __forceinline__
#define CIUIC_DEVICE __device__ __forceinline__
#else
#define CIUIC_HD inline
#define CIUIC_DEVICE inline
#endif
