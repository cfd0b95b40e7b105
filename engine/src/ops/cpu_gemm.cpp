#include "cpu_gemm.h"

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "ciuic/backend_flags.h"

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

#ifdef CIUIC_WITH_OPENBLAS
// OpenBLAS built for several CPUs (DYNAMIC_ARCH, as Debian's) picks its kernels from
// the CPUID family/model at load time. On a VM that reports a generic model ("Intel(R)
// Xeon(R) Processor") it falls back to its oldest x86-64 kernels (Prescott, SSE3),
// although the CPU has AVX2 or AVX-512: sgemm was 5-7x slower than with the SkylakeX
// kernels on such a machine (20-28 vs 138-150 GFLOP/s, one thread, n = 512). The
// choice cannot be changed after load; OPENBLAS_CORETYPE, set before the process
// starts, overrides it. The core a capable CPU should ask for, or null.
const char* better_openblas_core() {
  const char* core = openblas_get_corename();
  if (core == nullptr || std::getenv("OPENBLAS_CORETYPE") != nullptr) return nullptr;
  for (const char* weak : {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai", "Coppermine",
                           "Northwood", "Banias", "unknown", "Unknown"})
    if (std::strcmp(core, weak) == 0) {
      __builtin_cpu_init();
      if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
      if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
      return nullptr;
    }
  return nullptr;
}

// Once per process, at the first BLAS GEMM: a line on stderr when OpenBLAS runs kernels
// far below what the CPU supports (the one message the library prints by itself).
void warn_weak_openblas_core_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (const char* better = better_openblas_core())
      std::fprintf(stderr,
                   "ciuic: OpenBLAS picked its %s kernels on a CPU that supports %s (a VM hiding its CPU model?); "
                   "the CPU matmul runs several times faster with OPENBLAS_CORETYPE=%s set before the program "
                   "starts (./run.sh sets it)\n",
                   openblas_get_corename(), better, better);
  });
}
#endif

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
#ifdef CIUIC_WITH_OPENBLAS
    warn_weak_openblas_core_once();
#endif
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
#ifdef CIUIC_WITH_OPENBLAS
    warn_weak_openblas_core_once();
#endif
    cblas_dgemm(CblasRowMajor, tr(g.trans_a), tr(g.trans_b), static_cast<int>(g.m), static_cast<int>(g.n),
                static_cast<int>(g.k), alpha, a, ld(g.lda), b, ld(g.ldb), beta, c, ld(g.ldc));
    return;
  }
#endif
  gemm_loop(g, alpha, a, b, beta, c);
}

}  // namespace ciuic::detail

namespace ciuic {

std::string cpu_blas_info() {
#if defined(CIUIC_WITH_OPENBLAS)
  std::string s = std::string("OpenBLAS, ") + openblas_get_corename() + " kernels";
  if (const char* env = std::getenv("OPENBLAS_CORETYPE")) s += std::string(" (OPENBLAS_CORETYPE=") + env + ")";
  else if (const char* better = detail::better_openblas_core())
    s += std::string(" (this CPU supports ") + better + ": set OPENBLAS_CORETYPE=" + better + ")";
  return s;
#elif defined(CIUIC_WITH_CBLAS)
  return "CBLAS";
#else
  return "built-in loops (no BLAS)";
#endif
}

}  // namespace ciuic

namespace ciuic::detail {

bool cpu_gemm_has_cblas() {
#ifdef CIUIC_WITH_CBLAS
  return true;
#else
  return false;
#endif
}

}  // namespace ciuic::detail
