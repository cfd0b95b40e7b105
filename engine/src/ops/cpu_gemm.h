// Internal: the CPU matrix product behind matmul and linear.
//
//   C (m x n) = alpha * op(A) op(B) + beta * C
//
// All matrices are row-major. op(A) is m x k: A itself with row stride lda
// (A[i*lda + p]) or, when trans_a, the transpose of a k x m matrix stored with row
// stride lda (A[p*lda + i]); likewise op(B) is k x n. C has row stride ldc. beta == 0
// overwrites C without reading it (nan/inf already in C do not leak through).
//
// cpu_gemm calls CBLAS when the build has it (CIUIC_WITH_CBLAS) and the sizes fit
// its int arguments, and the plain loop otherwise. cpu_gemm_loop is always built,
// so tests can check it in every configuration.
#pragma once

#include <cstdint>

namespace ciuic::detail {

struct GemmArgs {
  bool trans_a = false, trans_b = false;
  std::int64_t m = 0, n = 0, k = 0;
  std::int64_t lda = 0, ldb = 0, ldc = 0;
};

void cpu_gemm(const GemmArgs& g, float alpha, const float* a, const float* b, float beta, float* c);
void cpu_gemm(const GemmArgs& g, double alpha, const double* a, const double* b, double beta, double* c);

void cpu_gemm_loop(const GemmArgs& g, float alpha, const float* a, const float* b, float beta, float* c);
void cpu_gemm_loop(const GemmArgs& g, double alpha, const double* a, const double* b, double beta, double* c);

// True when cpu_gemm goes to CBLAS (for test output and benchmarks).
bool cpu_gemm_has_cblas();

}  // namespace ciuic::detail
