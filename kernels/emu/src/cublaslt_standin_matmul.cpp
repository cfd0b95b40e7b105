// cuBLASLt stand-in, part 2: cublasLtMatmulAlgoGetHeuristic and cublasLtMatmul.
//
//   D = epilogue(alpha * op(A) op(B) + beta * C)      (per batch entry)
//
// All matrices column-major. D and C are (m, n) = (rows(D), cols(D)); op(A) is
// (m, k): A is stored (m, k), or (k, m) with TRANSA = T; op(B) is (k, n): B is
// stored (k, n), or (n, k) with TRANSB = T. Epilogues: BIAS adds bias[i] (one value
// per row of D, broadcast over the columns), GELU applies the tanh approximation,
// *_AUX also stores the pre-GELU value (after bias) to an (m, n) matrix with its
// own leading dimension and batch stride.
//
// Numerics: f16/bf16/f32 inputs accumulate in f32, f64 in f64, one k order
// (0, 1, ..., k-1), no fused multiply-add; results are rounded once to D's type
// (round to nearest even). TF32 "fast" compute is computed in plain f32.
//
// The heuristic offers an algorithm only for CUBLASLT_EPILOGUE_DEFAULT: ciuic then
// runs every epilogue in its own gemm_epilogue_kernel, which the emulator is meant
// to exercise. cublasLtMatmul itself implements every epilogue above, so a change
// of that policy stays correct. The work runs in stream order through
// ciuic::emu::enqueue; everything it needs is captured by value at the call.
#include <cublasLt.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <tuple>
#include <vector>

#include "ciuic/half.h"
#include "ciuic_emu/engine.h"
#include "cublaslt_standin.h"

namespace {

using namespace ciuic::emu::lt;

enum class Elem { f32, f64, f16, bf16 };

std::optional<Elem> elem_of(std::int64_t cuda_type) {
  switch (cuda_type) {
    case CUDA_R_32F: return Elem::f32;
    case CUDA_R_64F: return Elem::f64;
    case CUDA_R_16F: return Elem::f16;
    case CUDA_R_16BF: return Elem::bf16;
    default: return std::nullopt;
  }
}

std::int64_t elem_size(Elem t) { return t == Elem::f64 ? 8 : t == Elem::f32 ? 4 : 2; }

// Element `idx` of an array of type t, widened exactly to Acc (float or double).
template <typename Acc>
Acc load(Elem t, const void* p, std::int64_t idx) {
  switch (t) {
    case Elem::f32: return static_cast<Acc>(static_cast<const float*>(p)[idx]);
    case Elem::f64: return static_cast<Acc>(static_cast<const double*>(p)[idx]);
    case Elem::f16: return static_cast<Acc>(ciuic::f16_bits_to_f32(static_cast<const std::uint16_t*>(p)[idx]));
    case Elem::bf16: return static_cast<Acc>(ciuic::bf16_bits_to_f32(static_cast<const std::uint16_t*>(p)[idx]));
  }
  return Acc(0);
}

// Rounds v once to type t (nearest even). f16/bf16 only ever come with Acc = float.
template <typename Acc>
void store(Elem t, void* p, std::int64_t idx, Acc v) {
  switch (t) {
    case Elem::f32: static_cast<float*>(p)[idx] = static_cast<float>(v); break;
    case Elem::f64: static_cast<double*>(p)[idx] = static_cast<double>(v); break;
    case Elem::f16: static_cast<std::uint16_t*>(p)[idx] = ciuic::f32_to_f16_bits(static_cast<float>(v)); break;
    case Elem::bf16: static_cast<std::uint16_t*>(p)[idx] = ciuic::f32_to_bf16_bits(static_cast<float>(v)); break;
  }
}

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <typename Acc>
Acc gelu_tanh(Acc x) {
  const Acc u = Acc(0.7978845608028654) * (x + Acc(0.044715) * x * x * x);
  return Acc(0.5) * x * (Acc(1) + std::tanh(u));
}

// One operand after validation: element (i, j) of batch entry b is element
// b * stride + j * ld + i of p.
struct Mat {
  const void* p = nullptr;
  Elem t = Elem::f32;
  std::int64_t rows = 0, cols = 0, ld = 0, stride = 0;
};

// A whole matmul, validated, captured by value for the stream's worker.
struct Job {
  Mat a, b, c, d;  // c.p == nullptr when beta == 0 (C is then never read)
  bool trans_a = false, trans_b = false;
  std::int64_t m = 0, n = 0, k = 0, batch = 1;
  bool f64 = false;  // Acc = double (compute 64F), else float
  double alpha = 1, beta = 0;
  bool has_bias = false, gelu = false, has_aux = false;
  const void* bias = nullptr;
  Elem bias_t = Elem::f32;
  std::int64_t bias_stride = 0;
  void* aux = nullptr;
  Elem aux_t = Elem::f32;
  std::int64_t aux_ld = 0, aux_stride = 0;
  void* workspace = nullptr;
  std::size_t workspace_fill = 0;  // bytes the "algorithm" scribbles over
};

// The element one past the last one a layout can touch, or nullopt on overflow.
std::optional<std::int64_t> extent(std::int64_t rows, std::int64_t cols, std::int64_t ld, std::int64_t batch,
                                   std::int64_t stride) {
  if (rows == 0 || cols == 0 || batch == 0) return 0;
  std::int64_t a = 0, b = 0, end = 0;
  if (__builtin_mul_overflow(cols - 1, ld, &a) || __builtin_mul_overflow(batch - 1, stride, &b) ||
      __builtin_add_overflow(a, b, &end) || __builtin_add_overflow(end, rows, &end))
    return std::nullopt;
  return end;
}

cublasStatus_t check_layout(const Layout& l, Mat& out, std::int64_t& batch) {
  if (l.order != CUBLASLT_ORDER_COL || l.plane_offset != 0 || l.batch_mode != CUBLASLT_BATCH_MODE_STRIDED)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const auto t = elem_of(l.type);
  if (!t) return CUBLAS_STATUS_NOT_SUPPORTED;
  // "Usually only values that can be expressed as int32_t are supported."
  if (l.rows > INT32_MAX || l.cols > INT32_MAX) return CUBLAS_STATUS_NOT_SUPPORTED;
  const auto rows = static_cast<std::int64_t>(l.rows), cols = static_cast<std::int64_t>(l.cols);
  if (l.ld < rows || l.batch < 1 || l.stride < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (!extent(rows, cols, l.ld, l.batch, l.stride)) return CUBLAS_STATUS_INVALID_VALUE;
  out = Mat{nullptr, *t, rows, cols, l.ld, l.stride};
  batch = l.batch;
  return CUBLAS_STATUS_SUCCESS;
}

// The documented combinations the stand-in computes: (compute, scale, A = B, C = D)
//   32F or 32F_PEDANTIC, 32F: {32F, 32F}, {16F, 16F or 32F}, {16BF, 16BF or 32F};
//   32F_FAST_TF32 / _FAST_16F / _FAST_16BF, 32F: {32F, 32F} (computed in plain f32);
//   64F or 64F_PEDANTIC, 64F: {64F, 64F}.
bool types_supported(const MatmulDesc& d, const Job& j) {
  if (j.a.t != j.b.t || j.c.t != j.d.t) return false;
  switch (d.compute) {
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC: return d.scale == CUDA_R_64F && j.a.t == Elem::f64 && j.d.t == Elem::f64;
    case CUBLAS_COMPUTE_32F_FAST_TF32:
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF: return d.scale == CUDA_R_32F && j.a.t == Elem::f32 && j.d.t == Elem::f32;
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
      if (d.scale != CUDA_R_32F || j.a.t == Elem::f64) return false;
      return j.d.t == j.a.t || j.d.t == Elem::f32;
    default: return false;
  }
}

std::optional<bool> is_transposed(std::int32_t op) {
  if (op == CUBLAS_OP_N) return false;
  if (op == CUBLAS_OP_T || op == CUBLAS_OP_C) return true;  // real types: C is T
  return std::nullopt;
}

// Shapes, types and epilogue of one problem (no data pointers yet): what both
// the heuristic and the matmul check, with the statuses cuBLASLt documents.
cublasStatus_t plan(const MatmulDesc& d, const Layout& la, const Layout& lb, const Layout& lc, const Layout& ld,
                    Job& j) {
  std::int64_t batches[4];
  for (auto [l, m, bt] : {std::tuple{&la, &j.a, &batches[0]}, std::tuple{&lb, &j.b, &batches[1]},
                          std::tuple{&lc, &j.c, &batches[2]}, std::tuple{&ld, &j.d, &batches[3]}}) {
    if (const cublasStatus_t s = check_layout(*l, *m, *bt); s != CUBLAS_STATUS_SUCCESS) return s;
  }
  const auto ta = is_transposed(d.trans_a), tb = is_transposed(d.trans_b);
  if (!ta || !tb) return CUBLAS_STATUS_INVALID_VALUE;
  if (d.trans_c != CUBLAS_OP_N || d.fill_mode != CUBLAS_FILL_MODE_FULL ||
      d.pointer_mode != CUBLASLT_POINTER_MODE_HOST)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  j.trans_a = *ta;
  j.trans_b = *tb;
  j.m = j.d.rows;
  j.n = j.d.cols;
  j.k = j.trans_a ? j.a.rows : j.a.cols;
  const std::int64_t a_m = j.trans_a ? j.a.cols : j.a.rows;
  const std::int64_t b_k = j.trans_b ? j.b.cols : j.b.rows, b_n = j.trans_b ? j.b.rows : j.b.cols;
  if (a_m != j.m || b_k != j.k || b_n != j.n || j.c.rows != j.m || j.c.cols != j.n) return CUBLAS_STATUS_INVALID_VALUE;
  if (batches[0] != batches[3] || batches[1] != batches[3] || batches[2] != batches[3])
    return CUBLAS_STATUS_INVALID_VALUE;
  j.batch = batches[3];
  if (!types_supported(d, j)) return CUBLAS_STATUS_NOT_SUPPORTED;
  j.f64 = j.d.t == Elem::f64;

  switch (d.epilogue) {
    case CUBLASLT_EPILOGUE_DEFAULT: break;
    case CUBLASLT_EPILOGUE_BIAS: j.has_bias = true; break;
    case CUBLASLT_EPILOGUE_GELU: j.gelu = true; break;
    case CUBLASLT_EPILOGUE_GELU_BIAS: j.gelu = j.has_bias = true; break;
    case CUBLASLT_EPILOGUE_GELU_AUX: j.gelu = j.has_aux = true; break;
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS: j.gelu = j.has_aux = j.has_bias = true; break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;  // ReLU, gradients, BGRAD: not modelled
  }
  if (j.has_bias) {
    const auto t = d.bias_type == -1 ? j.d.t : elem_of(d.bias_type);
    if (!t || *t != j.d.t) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (d.bias_stride < 0) return CUBLAS_STATUS_INVALID_VALUE;
    j.bias_t = *t;
    j.bias_stride = d.bias_stride;
  }
  if (j.has_aux) {
    const auto t = d.aux_type == -1 ? j.d.t : elem_of(d.aux_type);
    if (!t || *t != j.d.t) return CUBLAS_STATUS_NOT_SUPPORTED;
    // Documented: the GELU aux ld is >= rows(D) and, like its batch stride, a multiple of 8.
    if (d.aux_ld < j.m || d.aux_ld % 8 != 0 || d.aux_stride < 0 || (j.batch > 1 && d.aux_stride % 8 != 0))
      return CUBLAS_STATUS_INVALID_VALUE;
    if (!extent(j.m, j.n, d.aux_ld, j.batch, d.aux_stride)) return CUBLAS_STATUS_INVALID_VALUE;
    j.aux_t = *t;
    j.aux_ld = d.aux_ld;
    j.aux_stride = d.aux_stride;
  }
  return CUBLAS_STATUS_SUCCESS;
}

// The four layouts' states, or nullptr for one that is null or foreign.
bool layouts(cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
             const Layout* out[4]) {
  out[0] = state_of<Layout>(a);
  out[1] = state_of<Layout>(b);
  out[2] = state_of<Layout>(c);
  out[3] = state_of<Layout>(d);
  return out[0] && out[1] && out[2] && out[3];
}

std::uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uint32_t al = 256;
  while (al > 1 && a % al != 0) al /= 2;
  return al;
}

// A data pointer's checks: naturally aligned for its type (a misaligned element is
// undefined behaviour on the host, a fault on a GPU) and at least as aligned as
// the algorithm was chosen for.
bool pointer_ok(const void* p, Elem t, std::uint32_t algo_align) {
  if (p == nullptr) return true;
  const std::uint32_t al = alignment_of(p);
  return al >= elem_size(t) && al >= std::min<std::uint32_t>(algo_align, 256);
}

// ---- the computation, on the stream's worker ----

template <typename Acc>
void run(const Job& j) {
  if (j.workspace_fill > 0) std::memset(j.workspace, 0xA5, j.workspace_fill);
  const Acc alpha = static_cast<Acc>(j.alpha), beta = static_cast<Acc>(j.beta);
  // op(A) as (m, k) with row i contiguous, op(B) as (n, k) with column j of op(B)
  // contiguous: the dot products below then walk both with stride 1, in k order.
  std::vector<Acc> opa(static_cast<std::size_t>(j.m * j.k)), opb(static_cast<std::size_t>(j.n * j.k));
  for (std::int64_t b = 0; b < j.batch; ++b) {
    for (std::int64_t i = 0; i < j.m; ++i)
      for (std::int64_t p = 0; p < j.k; ++p)
        opa[i * j.k + p] = load<Acc>(j.a.t, j.a.p, b * j.a.stride + (j.trans_a ? i * j.a.ld + p : p * j.a.ld + i));
    for (std::int64_t c = 0; c < j.n; ++c)
      for (std::int64_t p = 0; p < j.k; ++p)
        opb[c * j.k + p] = load<Acc>(j.b.t, j.b.p, b * j.b.stride + (j.trans_b ? p * j.b.ld + c : c * j.b.ld + p));
    for (std::int64_t c = 0; c < j.n; ++c) {
      for (std::int64_t i = 0; i < j.m; ++i) {
        Acc acc = 0;
        for (std::int64_t p = 0; p < j.k; ++p) acc += opa[i * j.k + p] * opb[c * j.k + p];
        Acc v = alpha * acc;
        // C is read before D is written at the same element: C == D (in place) is safe.
        if (j.c.p != nullptr) v += beta * load<Acc>(j.c.t, j.c.p, b * j.c.stride + c * j.c.ld + i);
        if (j.has_bias) v += load<Acc>(j.bias_t, j.bias, b * j.bias_stride + i);
        if (j.has_aux) store<Acc>(j.aux_t, j.aux, b * j.aux_stride + c * j.aux_ld + i, v);
        if (j.gelu) v = gelu_tanh(v);
        store<Acc>(j.d.t, const_cast<void*>(j.d.p), b * j.d.stride + c * j.d.ld + i, v);
      }
    }
  }
}

constexpr std::uint64_t kAlgoWorkspaceBytes = 4096;  // what the one "algorithm" asks for, at most

}  // namespace

extern "C" {

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t preference, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int* returned) {
  if (returned != nullptr) *returned = 0;
  if (handle == nullptr || handle->magic != cublasLtContext::kMagic) return CUBLAS_STATUS_NOT_INITIALIZED;
  const MatmulDesc* md = state_of<MatmulDesc>(desc);
  const Preference* pref = state_of<Preference>(preference);
  const Layout* l[4];
  if (!md || !pref || !layouts(a, b, c, d, l) || requested <= 0 || results == nullptr || returned == nullptr)
    return CUBLAS_STATUS_INVALID_VALUE;
  for (std::uint32_t al : {pref->align_a, pref->align_b, pref->align_c, pref->align_d})
    if (al == 0 || (al & (al - 1)) != 0) return CUBLAS_STATUS_INVALID_VALUE;
  // The problem without its epilogue must be valid; then the emulator's policy (see
  // the top of this file) declines every epilogue but the default, whatever its
  // attributes hold.
  MatmulDesc plain = *md;
  plain.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  Job j;
  if (const cublasStatus_t s = plan(plain, *l[0], *l[1], *l[2], *l[3], j); s != CUBLAS_STATUS_SUCCESS) return s;
  if (md->epilogue != CUBLASLT_EPILOGUE_DEFAULT || pref->search_mode != CUBLASLT_SEARCH_BEST_FIT)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  Algo algo;
  algo.align_a = pref->align_a;
  algo.align_b = pref->align_b;
  algo.align_c = pref->align_c;
  algo.align_d = pref->align_d;
  algo.workspace = std::min(pref->max_workspace, kAlgoWorkspaceBytes);
  cublasLtMatmulHeuristicResult_t& r = results[0];
  r = cublasLtMatmulHeuristicResult_t{};
  new (r.algo.data) Algo(algo);
  r.workspaceSize = static_cast<std::size_t>(algo.workspace);
  r.state = CUBLAS_STATUS_SUCCESS;
  r.wavesCount = 1.0f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t a, const void* B, cublasLtMatrixLayout_t b, const void* beta,
                              const void* C, cublasLtMatrixLayout_t c, void* D, cublasLtMatrixLayout_t d,
                              const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
  if (handle == nullptr || handle->magic != cublasLtContext::kMagic) return CUBLAS_STATUS_NOT_INITIALIZED;
  const MatmulDesc* md = state_of<MatmulDesc>(desc);
  const Layout* l[4];
  if (!md || !layouts(a, b, c, d, l) || alpha == nullptr || beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  // No algo: cuBLASLt runs its own heuristic with default preferences (no workspace).
  Algo al;
  if (algo != nullptr) {
    const Algo* given = state_of<Algo>(algo);
    if (!given) return CUBLAS_STATUS_INVALID_VALUE;
    al = *given;
  }
  if (workspace_bytes < al.workspace || (al.workspace > 0 && workspace == nullptr)) return CUBLAS_STATUS_INVALID_VALUE;

  Job j;
  if (const cublasStatus_t s = plan(*md, *l[0], *l[1], *l[2], *l[3], j); s != CUBLAS_STATUS_SUCCESS) return s;
  // Host pointer mode: alpha and beta are read now, in the scale type.
  if (j.f64) {
    std::memcpy(&j.alpha, alpha, sizeof(double));
    std::memcpy(&j.beta, beta, sizeof(double));
  } else {
    float af = 0, bf = 0;
    std::memcpy(&af, alpha, sizeof(float));
    std::memcpy(&bf, beta, sizeof(float));
    j.alpha = af;
    j.beta = bf;
  }
  if (j.m == 0 || j.n == 0 || j.batch == 0) return CUBLAS_STATUS_SUCCESS;
  // In place (C == D) needs the same layout for both.
  if (C != nullptr && C == D && (l[2]->ld != l[3]->ld || l[2]->stride != l[3]->stride || j.c.t != j.d.t))
    return CUBLAS_STATUS_INVALID_VALUE;
  j.a.p = A;
  j.b.p = B;
  j.c.p = j.beta != 0 ? C : nullptr;  // beta == 0: C is not read (it may hold NaN)
  j.d.p = D;
  j.bias = md->bias;
  j.aux = md->aux;
  if (D == nullptr || (j.k > 0 && (A == nullptr || B == nullptr)) || (j.beta != 0 && C == nullptr) ||
      (j.has_bias && j.bias == nullptr) || (j.has_aux && j.aux == nullptr))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (!pointer_ok(A, j.a.t, al.align_a) || !pointer_ok(B, j.b.t, al.align_b) ||
      !pointer_ok(j.c.p, j.c.t, al.align_c) || !pointer_ok(D, j.d.t, al.align_d) ||
      (j.has_bias && !pointer_ok(j.bias, j.bias_t, 1)) || (j.has_aux && !pointer_ok(j.aux, j.aux_t, 1)))
    return CUBLAS_STATUS_INVALID_VALUE;
  j.workspace = workspace;
  j.workspace_fill = static_cast<std::size_t>(al.workspace);

  const cudaError_t e = ciuic::emu::enqueue(
      stream, [j] { j.f64 ? run<double>(j) : run<float>(j); }, "cublasLtMatmul");
  return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // extern "C"
