// GEMM through cuBLASLt with a row-major interface.
//
//   C[b] = epilogue(alpha * op(A[b]) op(B[b]) + beta * C[b])     b in [0, batch)
//
// All matrices are row-major: element (i, j) of a matrix with leading dimension
// ld is at i * ld + j. op(A) is (m, k): A is stored (m, k) with lda >= k, or, with
// trans_a, stored (k, m) with lda >= m. op(B) is (k, n): B stored (k, n), ldb >= n,
// or with trans_b stored (n, k), ldb >= k. C is (m, n) with ldc >= n. Matrix b of
// a batch starts stride_x elements after matrix b - 1 (stride 0 for A or B: one
// matrix shared by the whole batch).
//
// Row-major -> cuBLAS column-major (to_col_major below). A row-major (r, c)
// matrix with leading dimension ld is, byte for byte, the column-major (c, r)
// matrix with the same ld: its transpose. So row-major C = op(A) op(B) is
// column-major C^T = op(B)^T op(A)^T, and cuBLASLt is asked for
//   m' = n, n' = m, k' = k, A' = B (op = trans_b, ld = ldb), B' = A (op = trans_a,
//   ld = lda), C' = C (ld = ldc),
// with A' stored column-major (n, k) or, transposed, (k, n), and B' stored (k, m)
// or (m, k). C' has n rows, so a cuBLASLt bias ("one value per row of D") is one
// value per *column* of the row-major C: bias[j] is added to C[i][j] for every i,
// which is the Linear-layer bias.
//
// Epilogues (applied after beta * C): bias (length n, dtype of C, shared by the
// batch), GELU with the tanh approximation (gemm_gelu_tanh), and GELU that also
// writes its input (the pre-GELU value, after bias) to an aux matrix of (m, n)
// with row stride aux_ld >= n and batch stride aux_stride, for the backward pass.
// When cuBLASLt has no fused kernel for a combination (an aux_ld or aux_stride
// that is not a multiple of 8, a type it refuses, ...) and for every f64 epilogue
// (so f64 keeps a double-precision tanh), ciuic runs the plain GEMM and then its
// own epilogue kernel: same results up to one extra rounding of C, one extra pass.
//
// Types: ab_dtype f16/bf16 with c_dtype the same or f32, f32 accumulation
// (CUBLAS_COMPUTE_32F); f32 with strict f32 (CUBLAS_COMPUTE_32F) or, opt-in,
// TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32); f64 (CUBLAS_COMPUTE_64F).
// alpha and beta are converted to the scale type (f32, or f64 for f64). beta == 0
// means C is not read (it may hold NaN). k == 0 gives C = beta * C (+ epilogue),
// i.e. zeros for beta == 0.
//
// Resources, per CUDA device (the current one at the call): a cuBLASLt handle
// created on first use; a 32 MiB workspace per (device, stream) pair, cudaMalloc'd
// on first use on that stream and reused for every later call on it (work on one
// stream is ordered, so reuse is safe; two streams never share one); a cache of
// descriptors + chosen algorithm keyed by GemmKey, so a repeated problem skips
// cublasLtMatmulAlgoGetHeuristic. All of these live until gemm_release_resources()
// or process exit (not freed at static destruction: the CUDA context may be gone).
// A mutex per device serialises the host side of each call (cache lookup, the
// per-call bias/aux pointers set on the cached descriptor, the enqueue), so gemm
// is thread-safe; the GPU work itself runs asynchronously on `stream`.
#pragma once

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "ciuic/dtype.h"
#include "ciuic/error.h"
#include "ciuic/macros.h"

namespace ciuic::kernels {

enum class GemmEpilogue : std::uint8_t { none, bias, gelu, gelu_bias, gelu_aux, gelu_aux_bias };

constexpr bool epilogue_has_bias(GemmEpilogue e) {
  return e == GemmEpilogue::bias || e == GemmEpilogue::gelu_bias || e == GemmEpilogue::gelu_aux_bias;
}
constexpr bool epilogue_has_gelu(GemmEpilogue e) {
  return e != GemmEpilogue::none && e != GemmEpilogue::bias;
}
constexpr bool epilogue_has_aux(GemmEpilogue e) {
  return e == GemmEpilogue::gelu_aux || e == GemmEpilogue::gelu_aux_bias;
}
constexpr const char* epilogue_name(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::none: return "none";
    case GemmEpilogue::bias: return "bias";
    case GemmEpilogue::gelu: return "gelu";
    case GemmEpilogue::gelu_bias: return "gelu_bias";
    case GemmEpilogue::gelu_aux: return "gelu_aux";
    case GemmEpilogue::gelu_aux_bias: return "gelu_aux_bias";
  }
  return "?";
}

// A row-major problem (see the top of this file). Sizes in elements.
struct GemmProblem {
  bool trans_a = false, trans_b = false;
  std::int64_t m = 0, n = 0, k = 0;
  std::int64_t lda = 0, ldb = 0, ldc = 0;
  std::int64_t batch = 1;
  std::int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  DType ab_dtype = DType::f32;
  DType c_dtype = DType::f32;
  bool allow_tf32 = false;  // f32 only: CUBLAS_COMPUTE_32F_FAST_TF32
  GemmEpilogue epilogue = GemmEpilogue::none;
  std::int64_t aux_ld = 0, aux_stride = 0;  // gelu_aux*: the pre-GELU matrix's row and batch strides
};

// A plain (m, n) = op(A) op(B) problem with tight leading dimensions (>= 1).
inline GemmProblem gemm_problem(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                                DType dtype) {
  GemmProblem p;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.m = m;
  p.n = n;
  p.k = k;
  auto at_least_1 = [](std::int64_t v) { return v > 1 ? v : std::int64_t{1}; };
  p.lda = at_least_1(trans_a ? m : k);
  p.ldb = at_least_1(trans_b ? k : n);
  p.ldc = at_least_1(n);
  p.ab_dtype = p.c_dtype = dtype;
  return p;
}

// Throws (ValueError / DTypeError, naming the sizes and dtypes) unless p is a
// problem gemm() serves. Host-only, no CUDA needed.
inline void validate_gemm(const GemmProblem& p) {
  constexpr const char* op = "gemm";
  CIUIC_CHECK(p.m >= 0 && p.n >= 0 && p.k >= 0 && p.batch >= 0, ValueError, op, "m=", p.m, " n=", p.n, " k=", p.k,
              " batch=", p.batch, "; expected all >= 0");
  constexpr std::int64_t kMax = 0x7fffffff;
  CIUIC_CHECK(p.m <= kMax && p.n <= kMax && p.k <= kMax && p.batch <= kMax, ValueError, op, "m=", p.m, " n=", p.n,
              " k=", p.k, " batch=", p.batch, "; expected each to fit in int32 (cuBLASLt limit)");
  const bool ab_half = p.ab_dtype == DType::f16 || p.ab_dtype == DType::bf16;
  const bool types_ok = (ab_half && (p.c_dtype == p.ab_dtype || p.c_dtype == DType::f32)) ||
                        (p.ab_dtype == DType::f32 && p.c_dtype == DType::f32) ||
                        (p.ab_dtype == DType::f64 && p.c_dtype == DType::f64);
  CIUIC_CHECK(types_ok, DTypeError, op, "A/B dtype ", dtype_name(p.ab_dtype), " with C dtype ",
              dtype_name(p.c_dtype),
              "; expected f16 or bf16 inputs with the same or f32 output, f32 with f32, or f64 with f64");
  CIUIC_CHECK(!p.allow_tf32 || p.ab_dtype == DType::f32, DTypeError, op, "allow_tf32 with A/B dtype ",
              dtype_name(p.ab_dtype), "; expected f32");
  // Leading dimensions: at least the stored row length (and >= 1, as cuBLASLt wants).
  const std::int64_t a_row = p.trans_a ? p.m : p.k, b_row = p.trans_b ? p.k : p.n;
  auto at_least = [](std::int64_t v) { return v > 1 ? v : 1; };
  CIUIC_CHECK(p.lda >= at_least(a_row), ValueError, op, "lda=", p.lda, " for A stored (", p.trans_a ? p.k : p.m,
              ", ", a_row, ")", p.trans_a ? " (trans_a)" : "", "; expected lda >= ", at_least(a_row));
  CIUIC_CHECK(p.ldb >= at_least(b_row), ValueError, op, "ldb=", p.ldb, " for B stored (", p.trans_b ? p.n : p.k,
              ", ", b_row, ")", p.trans_b ? " (trans_b)" : "", "; expected ldb >= ", at_least(b_row));
  CIUIC_CHECK(p.ldc >= at_least(p.n), ValueError, op, "ldc=", p.ldc, " for C (", p.m, ", ", p.n,
              "); expected ldc >= ", at_least(p.n));
  CIUIC_CHECK(p.stride_a >= 0 && p.stride_b >= 0 && p.stride_c >= 0, ValueError, op, "batch strides ", p.stride_a,
              ", ", p.stride_b, ", ", p.stride_c, "; expected >= 0");
  if (p.batch > 1 && p.m > 0 && p.n > 0) {
    const std::int64_t c_span = (p.m - 1) * p.ldc + p.n;  // elements one C matrix touches
    CIUIC_CHECK(p.stride_c >= c_span, ValueError, op, "stride_c=", p.stride_c, " for batch ", p.batch, " of C (",
                p.m, ", ", p.n, ") with ldc=", p.ldc, "; expected >= ", c_span, " (batch outputs must not overlap)");
  }
  if (epilogue_has_aux(p.epilogue)) {
    CIUIC_CHECK(p.aux_ld >= at_least(p.n), ValueError, op, "aux_ld=", p.aux_ld, " for the (", p.m, ", ", p.n,
                ") pre-GELU matrix; expected >= ", at_least(p.n));
    if (p.batch > 1 && p.m > 0 && p.n > 0) {
      const std::int64_t span = (p.m - 1) * p.aux_ld + p.n;
      CIUIC_CHECK(p.aux_stride >= span, ValueError, op, "aux_stride=", p.aux_stride, " for batch ", p.batch,
                  "; expected >= ", span);
    }
  }
}

// The cuBLASLt (column-major) view of a row-major problem, operands swapped.
struct ColMajorGemm {
  bool trans_a, trans_b;       // cuBLAS op of its A (= our B) and its B (= our A)
  std::int64_t m, n, k;        // m = our n, n = our m
  std::int64_t a_rows, a_cols, lda, stride_a;  // stored layout of its A = our B
  std::int64_t b_rows, b_cols, ldb, stride_b;  // stored layout of its B = our A
  std::int64_t c_rows, c_cols, ldc, stride_c;  // C as column-major (n, m)
};

inline ColMajorGemm to_col_major(const GemmProblem& p) {
  ColMajorGemm g{};
  g.trans_a = p.trans_b;
  g.trans_b = p.trans_a;
  g.m = p.n;
  g.n = p.m;
  g.k = p.k;
  // our B, row-major (k, n) [or (n, k) transposed] == column-major (n, k) [or (k, n)]
  g.a_rows = p.trans_b ? p.k : p.n;
  g.a_cols = p.trans_b ? p.n : p.k;
  g.lda = p.ldb;
  g.stride_a = p.stride_b;
  // our A, row-major (m, k) [or (k, m)] == column-major (k, m) [or (m, k)]
  g.b_rows = p.trans_a ? p.m : p.k;
  g.b_cols = p.trans_a ? p.k : p.m;
  g.ldb = p.lda;
  g.stride_b = p.stride_a;
  g.c_rows = p.n;
  g.c_cols = p.m;
  g.ldc = p.ldc;
  g.stride_c = p.stride_c;
  return g;
}

// Largest power of two <= 256 dividing the address (256 for null). cuBLASLt picks
// kernels by operand alignment, so it is part of the cache key.
inline std::uint32_t pointer_alignment(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al /= 2;
  return al;
}

// ---- aligned fallback ----
// Where cuBLASLt offers no algorithm for a problem (typically operands that are not
// 16-byte aligned: a row slice of an f16 matrix starts 2 bytes in), gemm() repacks
// the operands that are not aligned into fresh buffers whose base, leading dimension
// and batch stride are multiples of 16 bytes, runs the aligned problem and copies C
// (and the aux output) back. This is the host-side plan of that repacking.

// ld rounded up so that every row starts on a 16-byte boundary.
inline std::int64_t aligned_ld(std::int64_t ld, DType t) {
  const auto per = static_cast<std::int64_t>(16 / dtype_size(t));
  return (ld + per - 1) / per * per;
}

// A row-major operand of `rows` x `cols` stored with leading dimension ld and batch
// stride (0: shared by every batch entry).
struct GemmOperand {
  std::int64_t rows = 0, cols = 0, ld = 0, stride = 0;
  bool repack = false;        // copy into an aligned buffer
  std::int64_t new_ld = 0, new_stride = 0;
};

struct GemmRepackPlan {
  GemmProblem p;  // the aligned problem that runs instead
  GemmOperand a, b, c, aux;
  bool bias = false;  // copy the bias (n values) too
  bool any() const { return a.repack || b.repack || c.repack || aux.repack || bias; }
};

inline GemmRepackPlan gemm_repack_plan(const GemmProblem& p, const void* a, const void* b, const void* c,
                                       const void* bias, const void* aux) {
  GemmRepackPlan r;
  r.p = p;
  auto plan = [&](GemmOperand& o, const void* ptr, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                  std::int64_t stride, DType t, std::int64_t& p_ld, std::int64_t& p_stride) {
    const auto es = static_cast<std::int64_t>(dtype_size(t));
    o.rows = rows;
    o.cols = cols;
    o.ld = ld;
    o.stride = p.batch > 1 ? stride : 0;
    o.repack = pointer_alignment(ptr) < 16 || (ld * es) % 16 != 0 || (o.stride * es) % 16 != 0;
    o.new_ld = o.repack ? aligned_ld(ld, t) : ld;
    o.new_stride = o.repack ? (o.stride == 0 ? 0 : rows * o.new_ld) : o.stride;
    p_ld = o.new_ld;
    p_stride = o.new_stride;
  };
  plan(r.a, a, p.trans_a ? p.k : p.m, p.trans_a ? p.m : p.k, p.lda, p.stride_a, p.ab_dtype, r.p.lda, r.p.stride_a);
  plan(r.b, b, p.trans_b ? p.n : p.k, p.trans_b ? p.k : p.n, p.ldb, p.stride_b, p.ab_dtype, r.p.ldb, r.p.stride_b);
  plan(r.c, c, p.m, p.n, p.ldc, p.stride_c, p.c_dtype, r.p.ldc, r.p.stride_c);
  if (epilogue_has_aux(p.epilogue))
    plan(r.aux, aux, p.m, p.n, p.aux_ld, p.aux_stride, p.c_dtype, r.p.aux_ld, r.p.aux_stride);
  r.bias = epilogue_has_bias(p.epilogue) && pointer_alignment(bias) < 16;
  return r;
}

// Everything the cached descriptors and algorithm depend on.
struct GemmKey {
  int device = 0;
  GemmProblem p;
  std::uint32_t align_a = 256, align_b = 256, align_c = 256, align_bias = 256, align_aux = 256;

  bool operator==(const GemmKey& o) const {
    const GemmProblem& q = o.p;
    return device == o.device && p.trans_a == q.trans_a && p.trans_b == q.trans_b && p.m == q.m && p.n == q.n &&
           p.k == q.k && p.lda == q.lda && p.ldb == q.ldb && p.ldc == q.ldc && p.batch == q.batch &&
           p.stride_a == q.stride_a && p.stride_b == q.stride_b && p.stride_c == q.stride_c &&
           p.ab_dtype == q.ab_dtype && p.c_dtype == q.c_dtype && p.allow_tf32 == q.allow_tf32 &&
           p.epilogue == q.epilogue && p.aux_ld == q.aux_ld && p.aux_stride == q.aux_stride &&
           align_a == o.align_a && align_b == o.align_b && align_c == o.align_c && align_bias == o.align_bias &&
           align_aux == o.align_aux;
  }
};

inline GemmKey make_gemm_key(int device, const GemmProblem& p, const void* a, const void* b, const void* c,
                             const void* bias, const void* aux) {
  GemmKey k;
  k.device = device;
  k.p = p;
  if (!epilogue_has_aux(p.epilogue)) k.p.aux_ld = k.p.aux_stride = 0;  // irrelevant fields never split the cache
  if (p.batch <= 1) k.p.stride_a = k.p.stride_b = k.p.stride_c = k.p.aux_stride = 0;
  k.align_a = pointer_alignment(a);
  k.align_b = pointer_alignment(b);
  k.align_c = pointer_alignment(c);
  k.align_bias = epilogue_has_bias(p.epilogue) ? pointer_alignment(bias) : 256;
  k.align_aux = epilogue_has_aux(p.epilogue) ? pointer_alignment(aux) : 256;
  return k;
}

struct GemmKeyHash {
  std::size_t operator()(const GemmKey& k) const {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the fields
    auto mix = [&h](std::uint64_t v) {
      for (int i = 0; i < 8; ++i) {
        h ^= (v >> (8 * i)) & 0xffu;
        h *= 1099511628211ull;
      }
    };
    const GemmProblem& p = k.p;
    mix(static_cast<std::uint64_t>(k.device));
    mix((p.trans_a ? 1u : 0u) | (p.trans_b ? 2u : 0u) | (p.allow_tf32 ? 4u : 0u) |
        (static_cast<std::uint64_t>(p.ab_dtype) << 8) | (static_cast<std::uint64_t>(p.c_dtype) << 16) |
        (static_cast<std::uint64_t>(p.epilogue) << 24));
    for (std::int64_t v : {p.m, p.n, p.k, p.lda, p.ldb, p.ldc, p.batch, p.stride_a, p.stride_b, p.stride_c, p.aux_ld,
                           p.aux_stride})
      mix(static_cast<std::uint64_t>(v));
    mix(k.align_a | (static_cast<std::uint64_t>(k.align_b) << 16) | (static_cast<std::uint64_t>(k.align_c) << 32));
    mix(k.align_bias | (static_cast<std::uint64_t>(k.align_aux) << 16));
    return static_cast<std::size_t>(h);
  }
};

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// The fallback epilogue kernel and the CPU reference both use it.
// T: float or double.
template <typename T>
CIUIC_HD T gemm_gelu_tanh(T x) {
  const T k0 = T(0.7978845608028654), k1 = T(0.044715);
  const T u = k0 * (x + k1 * x * x * x);
  T th;
  if constexpr (sizeof(T) == 4) th = ::tanhf(u);
  else th = ::tanh(u);
  return T(0.5) * x * (T(1) + th);
}

// ---- launchers (kernels/src/gemm.cu; CUDA builds only) ----

// The problem p (validated), on the current device, enqueued on `stream`.
// a, b, c: device pointers to element 0 of batch 0. bias: n values of c_dtype
// (epilogues with bias), aux: the pre-GELU output (gelu_aux*), else ignored.
// Throws ValueError/DTypeError for bad problems, NotImplementedError when cuBLASLt
// offers no algorithm, CudaError for CUDA/cuBLAS failures.
void gemm(const GemmProblem& p, double alpha, const void* a, const void* b, double beta, void* c,
          const void* bias, void* aux, void* stream);

// Convenience: C (m, n) = alpha op(A) op(B) + beta C, one matrix, no epilogue.
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha, const void* a,
          std::int64_t lda, const void* b, std::int64_t ldb, double beta, void* c, std::int64_t ldc, DType dtype,
          void* stream);

// Pointer-array batch: for i in [0, count): the problem p (batch must be 1) on
// a[i], b[i], c[i] (host arrays of device pointers). One cuBLASLt call per matrix,
// all sharing one cached plan when the pointers' alignments agree.
void gemm_batched(const GemmProblem& p, double alpha, const void* const* a, const void* const* b, double beta,
                  void* const* c, int count, const void* bias, void* const* aux, void* stream);

// Number of cached plans on the current device (for tests and diagnostics).
std::size_t gemm_cached_plans();
// Number of per-stream workspaces on the current device (one per stream that ran a
// gemm; bounded because Stream::create pools its streams).
std::size_t gemm_cached_workspaces();

// Synchronises every device that has gemm resources, then frees the workspaces,
// cached descriptors and handles. No gemm may run concurrently; later calls
// re-create what they need.
void gemm_release_resources();

}  // namespace ciuic::kernels
