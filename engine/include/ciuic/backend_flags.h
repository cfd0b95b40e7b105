// Process-wide math settings of the GPU kernels (PyTorch's torch.backends flags).
// Each is read when an op launches; changing one affects later ops only.
#pragma once

#include <string>

namespace ciuic {

// What runs the CPU matmul/linear/conv GEMMs: "OpenBLAS, SkylakeX kernels", "CBLAS" or
// "built-in loops (no BLAS)". With OpenBLAS it names the kernels it picked and, when
// they are far below what the CPU supports (a VM hiding its CPU model), the
// OPENBLAS_CORETYPE to set before starting the program; the first CPU GEMM then also
// prints that advice once on stderr. Benchmarks print this line.
std::string cpu_blas_info();

// f32 matmul and linear on a GPU may use TF32 tensor cores (cuBLASLt
// CUBLAS_COMPUTE_32F_FAST_TF32: inputs rounded to 10 mantissa bits, f32
// accumulation). Off by default, as in PyTorch: f32 results are then strict f32.
// No effect on the CPU, f16/bf16 (always f32 accumulation) or f64.
void set_allow_tf32(bool allow);
bool allow_tf32();

// The embedding backward on a GPU: deterministic (default; token ids sorted, each
// vocabulary row summed by one thread in index order, bit-identical to the CPU for
// f32) or atomic (one atomicAdd per gradient element: summation order varies from
// run to run). The CPU is always deterministic.
void set_deterministic_embedding_backward(bool deterministic);
bool deterministic_embedding_backward();

}  // namespace ciuic
