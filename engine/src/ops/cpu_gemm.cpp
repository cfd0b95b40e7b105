#include "cpu_gemm.h"

#include <climits>
#include <vector>

#ifdef CIUIC_WITH_CBLAS
#include <cblas.h>
#endif

namespace ciuic::detail {

namespace {

// Row i of C: beta * C[i, :], with beta == 0 writing zeros.
template <typename T>
void scale_row(T* c, std::int64_t n, T beta) {
  if (beta == T(0)) {
    for (std::int64_t j = 0; j < n; ++j) c[j] = T(0);
  } else if (beta != T(1)) {
    for (std::int64_t j = 0; j < n; ++j) c[j] *= beta;
  }
}

// Row by row over C. Row i of op(A) is made contiguous first (copied when trans_a).
// op(B) not transposed: i-p-j order, so the inner loop runs along a row of B and of C.
// op(B) transposed: column j of op(B) is row j of B, so each C[i, j] is a contiguous dot.
template <typename T>
void gemm_loop(const GemmArgs& g, T alpha, const T* a, const T* b, T beta, T* c) {
  std::vector<T> a_row(g.trans_a ? static_cast<std::size_t>(g.k) : 0);
  for (std::int64_t i = 0; i < g.m; ++i) {
    T* ci = c + i * g.ldc;
    scale_row(ci, g.n, beta);
    const T* ai = a + i * g.lda;
    if (g.trans_a) {
      for (std::int64_t p = 0; p < g.k; ++p) a_row[p] = a[p * g.lda + i];
      ai = a_row.data();
    }
    if (!g.trans_b) {
      for (std::int64_t p = 0; p < g.k; ++p) {
        const T aip = alpha * ai[p];
        const T* bp = b + p * g.ldb;
        for (std::int64_t j = 0; j < g.n; ++j) ci[j] += aip * bp[j];
      }
    } else {
      for (std::int64_t j = 0; j < g.n; ++j) {
        const T* bj = b + j * g.ldb;
        T acc = T(0);
        for (std::int64_t p = 0; p < g.k; ++p) acc += ai[p] * bj[p];
        ci[j] += alpha * acc;
      }
    }
  }
}

#ifdef CIUIC_WITH_CBLAS
bool fits_int(const GemmArgs& g) {
  for (std::int64_t v : {g.m, g.n, g.k, g.lda, g.ldb, g.ldc})
    if (v > INT_MAX) return false;
  return true;
}

// CBLAS wants leading dims >= 1 even when a matrix is empty or a vector.
int ld(std::int64_t v) { return static_cast<int>(v < 1 ? 1 : v); }

CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }
#endif

}  // namespace

void cpu_gemm_loop(const GemmArgs& g, float alpha, const float* a, const float* b, float beta, float* c) {
  gemm_loop(g, alpha, a, b, beta, c);
}
void cpu_gemm_loop(const GemmArgs& g, double alpha, const double* a, const double* b, double beta, double* c) {
  gemm_loop(g, alpha, a, b, beta, c);
}

void cpu_gemm(const GemmArgs& g, float alpha, const float* a, const float* b, float beta, float* c) {
  if (g.m == 0 || g.n == 0) return;
#ifdef CIUIC_WITH_CBLAS
  if (g.k > 0 && fits_int(g)) {
    cblas_sgemm(CblasRowMajor, tr(g.trans_a), tr(g.trans_b), static_cast<int>(g.m), static_cast<int>(g.n),
                static_cast<int>(g.k), alpha, a, ld(g.lda), b, ld(g.ldb), beta, c, ld(g.ldc));
    return;
  }
#endif
  gemm_loop(g, alpha, a, b, beta, c);
}

void cpu_gemm(const GemmArgs& g, double alpha, const double* a, const double* b, double beta, double* c) {
  if (g.m == 0 || g.n == 0) return;
#ifdef CIUIC_WITH_CBLAS
  if (g.k > 0 && fits_int(g)) {
    cblas_dgemm(CblasRowMajor, tr(g.trans_a), tr(g.trans_b), static_cast<int>(g.m), static_cast<int>(g.n),
                static_cast<int>(g.k), alpha, a, ld(g.lda), b, ld(g.ldb), beta, c, ld(g.ldc));
    return;
  }
#endif
  gemm_loop(g, alpha, a, b, beta, c);
}

bool cpu_gemm_has_cblas() {
#ifdef CIUIC_WITH_CBLAS
  return true;
#else
  return false;
#endif
}

}  // namespace ciuic::detail
