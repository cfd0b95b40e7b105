// cuBLASLt GEMM behind a row-major interface (ciuic/kernels/gemm.h has the
// mapping, the resources and their lifetimes), plus ciuic's own epilogue kernel
// for k == 0 and for the epilogues cuBLASLt cannot fuse.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ciuic/cuda_check.h"
#include "ciuic/half.h"
#include "ciuic/kernels/gemm.h"
#include "dtype_dispatch.cuh"

namespace ciuic::kernels {

namespace {

constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;
constexpr std::size_t kMaxPlansPerDevice = 1024;  // beyond this the cache is cleared (shape churn guard)

std::string describe(const GemmProblem& p) {
  return ::ciuic::detail::concat("A/B ", dtype_name(p.ab_dtype), ", C ", dtype_name(p.c_dtype), ", m=", p.m,
                                 " n=", p.n, " k=", p.k, p.trans_a ? " trans_a" : "", p.trans_b ? " trans_b" : "",
                                 " lda=", p.lda, " ldb=", p.ldb, " ldc=", p.ldc, " batch=", p.batch,
                                 " epilogue=", epilogue_name(p.epilogue), p.allow_tf32 ? " tf32" : "");
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f64: return CUDA_R_64F;
    default: break;
  }
  ::ciuic::detail::fail<DTypeError>("gemm", "dtype ", dtype_name(t), " has no cuBLASLt type");
}

cublasLtEpilogue_t lt_epilogue(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::none: return CUBLASLT_EPILOGUE_DEFAULT;
    case GemmEpilogue::bias: return CUBLASLT_EPILOGUE_BIAS;
    case GemmEpilogue::gelu: return CUBLASLT_EPILOGUE_GELU;
    case GemmEpilogue::gelu_bias: return CUBLASLT_EPILOGUE_GELU_BIAS;
    case GemmEpilogue::gelu_aux: return CUBLASLT_EPILOGUE_GELU_AUX;
    case GemmEpilogue::gelu_aux_bias: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

// ---- ciuic's epilogue kernel ----

enum class CMode : int { keep, scale, zero };  // C as cuBLASLt left it / beta * C / 0 (k == 0, beta == 0)

template <typename T>
using acc_of = std::conditional_t<std::is_same_v<T, double>, double, float>;

// For every (b, i, j): v = C (mode), v += bias[j], aux = v, v = gelu(v), C = v.
template <typename T>
__global__ void gemm_epilogue_kernel(T* c, std::int64_t m, std::int64_t n, std::int64_t ldc, std::int64_t stride_c,
                                     std::int64_t total, CMode mode, acc_of<T> beta, const T* bias, bool gelu,
                                     T* aux, std::int64_t aux_ld, std::int64_t aux_stride) {
  using Acc = acc_of<T>;
  for (std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t j = idx % n, i = (idx / n) % m, b = idx / (n * m);
    T* cp = c + b * stride_c + i * ldc + j;
    Acc v = mode == CMode::zero ? Acc(0) : static_cast<Acc>(*cp);
    if (mode == CMode::scale) v = beta * v;
    if (bias) v += static_cast<Acc>(bias[j]);
    if (aux) aux[b * aux_stride + i * aux_ld + j] = T(v);
    if (gelu) v = gemm_gelu_tanh(v);
    *cp = T(v);
  }
}

void launch_epilogue(const GemmProblem& p, void* c, CMode mode, double beta, const void* bias, void* aux,
                     cudaStream_t s) {
  const std::int64_t total = p.batch * p.m * p.n;
  if (total == 0) return;
  const bool has_bias = epilogue_has_bias(p.epilogue), gelu = epilogue_has_gelu(p.epilogue),
             has_aux = epilogue_has_aux(p.epilogue);
  constexpr unsigned kBlock = 256;
  auto run = [&](auto tag) {
    using T = decltype(tag);
    gemm_epilogue_kernel<T><<<detail::grid_for(total, kBlock), kBlock, 0, s>>>(
        static_cast<T*>(c), p.m, p.n, p.ldc, p.stride_c, total, mode, static_cast<acc_of<T>>(beta),
        has_bias ? static_cast<const T*>(bias) : nullptr, gelu, has_aux ? static_cast<T*>(aux) : nullptr,
        p.aux_ld, p.aux_stride);
    CIUIC_CUDA_CHECK_LAUNCH();
  };
  switch (p.c_dtype) {
    case DType::f32: run(float{}); break;
    case DType::f64: run(double{}); break;
    case DType::f16: run(Half{}); break;
    case DType::bf16: run(BFloat16{}); break;
    default: ::ciuic::detail::fail<DTypeError>("gemm", "C dtype ", dtype_name(p.c_dtype), " unsupported");
  }
}

// ---- cached plans ----

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;  // cuBLAS A (= our B), B (= our A), C = D
  cublasLtMatmulAlgo_t algo{};
  std::size_t workspace = 0;
  bool fused = false;  // epilogue done by cuBLASLt; false: ciuic's kernel runs after a plain matmul
  bool fp64 = false;   // scale type f64 (alpha, beta passed as double)
};

void destroy_plan(Plan& pl) {
  // Destruction statuses are ignored: this also runs on cleanup after a failure.
  if (pl.desc) cublasLtMatmulDescDestroy(pl.desc);
  if (pl.la) cublasLtMatrixLayoutDestroy(pl.la);
  if (pl.lb) cublasLtMatrixLayoutDestroy(pl.lb);
  if (pl.lc) cublasLtMatrixLayoutDestroy(pl.lc);
  pl = Plan{};
}

struct DeviceState {
  std::mutex mu;
  cublasLtHandle_t handle = nullptr;
  std::unordered_map<cudaStream_t, void*> workspaces;
  std::unordered_map<GemmKey, Plan, GemmKeyHash> plans;
  std::unordered_set<GemmKey, GemmKeyHash> unsupported;  // no algorithm: the aligned fallback runs
};

struct Registry {
  std::mutex mu;
  std::map<int, std::unique_ptr<DeviceState>> devices;
};

// Never destroyed (see gemm.h): freeing CUDA resources during static destruction
// can run after the driver has shut down.
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

DeviceState& device_state(int device) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto& slot = r.devices[device];
  if (!slot) slot = std::make_unique<DeviceState>();
  return *slot;
}

// Caller holds st.mu.
void* workspace_for(DeviceState& st, cudaStream_t s) {
  auto it = st.workspaces.find(s);
  if (it != st.workspaces.end()) return it->second;
  void* w = nullptr;
  CIUIC_CUDA_CHECK(cudaMalloc(&w, kWorkspaceBytes));
  st.workspaces.emplace(s, w);
  return w;
}

template <typename V>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const V& v) {
  CIUIC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(v)));
}
template <typename V>
void set_layout(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr, const V& v) {
  CIUIC_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, attr, &v, sizeof(v)));
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t t, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                   std::int64_t batch, std::int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  CIUIC_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, static_cast<std::uint64_t>(rows),
                                                static_cast<std::uint64_t>(cols), ld));
  if (batch > 1) {
    try {
      set_layout(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, static_cast<std::int32_t>(batch));
      set_layout(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, stride);
    } catch (...) {
      cublasLtMatrixLayoutDestroy(l);
      throw;
    }
  }
  return l;
}

// Sets the per-call pointers the fused epilogue reads (also used by the heuristic
// for alignment).
void set_epilogue_pointers(const Plan& pl, const GemmProblem& p, const void* bias, void* aux) {
  if (!pl.fused) return;
  if (epilogue_has_bias(p.epilogue)) set_desc(pl.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  if (epilogue_has_aux(p.epilogue)) set_desc(pl.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
}

// Builds descriptors and asks the heuristic for one algorithm. fused: put the
// epilogue into cuBLASLt. Returns false (nothing leaked) when no algorithm exists.
bool build_plan(DeviceState& st, const GemmKey& key, bool fused, const void* bias, void* aux, Plan& out) {
  const GemmProblem& p = key.p;
  const ColMajorGemm g = to_col_major(p);
  Plan pl;
  pl.fused = fused && p.epilogue != GemmEpilogue::none;
  pl.fp64 = p.ab_dtype == DType::f64;
  const cublasComputeType_t compute = pl.fp64        ? CUBLAS_COMPUTE_64F
                                      : p.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                     : CUBLAS_COMPUTE_32F;
  const cudaDataType_t scale = pl.fp64 ? CUDA_R_64F : CUDA_R_32F;
  const cudaDataType_t ab = cuda_type(p.ab_dtype), cd = cuda_type(p.c_dtype);
  cublasLtMatmulPreference_t pref = nullptr;
  try {
    CIUIC_CUBLAS_CHECK(cublasLtMatmulDescCreate(&pl.desc, compute, scale));
    set_desc(pl.desc, CUBLASLT_MATMUL_DESC_TRANSA, static_cast<std::int32_t>(g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N));
    set_desc(pl.desc, CUBLASLT_MATMUL_DESC_TRANSB, static_cast<std::int32_t>(g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N));
    if (pl.fused) {
      set_desc(pl.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<std::uint32_t>(lt_epilogue(p.epilogue)));
      if (epilogue_has_aux(p.epilogue)) {
        set_desc(pl.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, p.aux_ld);
        if (p.batch > 1) set_desc(pl.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, p.aux_stride);
      }
      set_epilogue_pointers(pl, p, bias, aux);
    }
    pl.la = make_layout(ab, g.a_rows, g.a_cols, g.lda, p.batch, g.stride_a);
    pl.lb = make_layout(ab, g.b_rows, g.b_cols, g.ldb, p.batch, g.stride_b);
    pl.lc = make_layout(cd, g.c_rows, g.c_cols, g.ldc, p.batch, g.stride_c);

    CIUIC_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const std::uint64_t ws = kWorkspaceBytes;
    CIUIC_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    // cuBLAS's A is our B and vice versa.
    const std::uint32_t al_a = key.align_b, al_b = key.align_a, al_c = key.align_c;
    CIUIC_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a)));
    CIUIC_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b)));
    CIUIC_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof(al_c)));
    CIUIC_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof(al_c)));

    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(st.handle, pl.desc, pl.la, pl.lb, pl.lc, pl.lc, pref, 1,
                                                             &result, &returned);
    cublasLtMatmulPreferenceDestroy(pref);
    pref = nullptr;
    if (hs == CUBLAS_STATUS_NOT_SUPPORTED || (hs == CUBLAS_STATUS_SUCCESS && returned == 0) ||
        (hs == CUBLAS_STATUS_INVALID_VALUE && pl.fused)) {
      destroy_plan(pl);
      return false;
    }
    CIUIC_CUBLAS_CHECK(hs);
    pl.algo = result.algo;
    pl.workspace = result.workspaceSize;
  } catch (...) {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    destroy_plan(pl);
    throw;
  }
  out = pl;
  return true;
}

// Caller holds st.mu. The plan for key: cached, else built (fused epilogue first,
// then the plain matmul with ciuic's epilogue).
// nullptr when cuBLASLt offers no algorithm for key (gemm() then repacks).
Plan* plan_for(DeviceState& st, const GemmKey& key, const void* bias, void* aux) {
  auto it = st.plans.find(key);
  if (it != st.plans.end()) return &it->second;
  if (st.unsupported.count(key)) return nullptr;
  if (st.plans.size() >= kMaxPlansPerDevice) {
    for (auto& kv : st.plans) destroy_plan(kv.second);
    st.plans.clear();
    st.unsupported.clear();
  }
  const GemmProblem& p = key.p;
  // cuBLASLt wants the GELU aux leading dimension and batch stride in multiples of 8.
  const bool aux_ok = !epilogue_has_aux(p.epilogue) || (p.aux_ld % 8 == 0 && (p.batch <= 1 || p.aux_stride % 8 == 0));
  // f64 epilogues always run in ciuic's kernel (double tanh), whatever cuBLASLt offers.
  const bool try_fused = p.epilogue != GemmEpilogue::none && aux_ok && p.ab_dtype != DType::f64;
  Plan pl;
  bool ok = try_fused && build_plan(st, key, true, bias, aux, pl);
  if (!ok) ok = build_plan(st, key, false, bias, aux, pl);
  if (!ok) {  // remembered, so a repeated problem goes straight to the aligned fallback
    st.unsupported.insert(key);
    return nullptr;
  }
  return &st.plans.emplace(key, pl).first->second;
}

// Copies `o` (batch entries of rows x cols at ld / stride, es bytes per element)
// between its original layout at `orig` and the repacked one at `packed`.
void copy_operand(const GemmOperand& o, std::int64_t batch, std::size_t es, void* packed, const void* orig,
                  bool to_packed, cudaStream_t s) {
  const std::int64_t entries = o.stride == 0 ? 1 : batch;
  for (std::int64_t i = 0; i < entries; ++i) {
    auto* pk = static_cast<char*>(packed) + static_cast<std::size_t>(i * o.new_stride) * es;
    auto* og = static_cast<char*>(const_cast<void*>(orig)) + static_cast<std::size_t>(i * o.stride) * es;
    const auto width = static_cast<std::size_t>(o.cols) * es, rows = static_cast<std::size_t>(o.rows);
    if (to_packed)
      CIUIC_CUDA_CHECK(cudaMemcpy2DAsync(pk, static_cast<std::size_t>(o.new_ld) * es, og,
                                         static_cast<std::size_t>(o.ld) * es, width, rows, cudaMemcpyDeviceToDevice,
                                         s));
    else
      CIUIC_CUDA_CHECK(cudaMemcpy2DAsync(og, static_cast<std::size_t>(o.ld) * es, pk,
                                         static_cast<std::size_t>(o.new_ld) * es, width, rows,
                                         cudaMemcpyDeviceToDevice, s));
  }
}

std::size_t operand_bytes(const GemmOperand& o, std::int64_t batch, std::size_t es) {
  const std::int64_t entries = o.stride == 0 ? 1 : batch;
  return static_cast<std::size_t>((entries - 1) * o.new_stride + o.rows * o.new_ld) * es;
}

// Stream-ordered scratch buffers, freed on the stream (after the work that uses them).
struct Scratch {
  cudaStream_t s;
  std::vector<void*> ptrs;
  void* get(std::size_t bytes) {
    void* p = nullptr;
    CIUIC_CUDA_CHECK(cudaMallocAsync(&p, bytes > 0 ? bytes : 1, s));
    ptrs.push_back(p);
    return p;
  }
  ~Scratch() {
    for (void* p : ptrs)
      if (cudaFreeAsync(p, s) != cudaSuccess) (void)cudaGetLastError();
  }
};

cublasStatus_t run_matmul(DeviceState& st, const Plan& pl, double alpha, double beta, const void* a, const void* b,
                          void* c, void* ws, cudaStream_t s) {
  const float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  const void* pa = pl.fp64 ? static_cast<const void*>(&alpha) : &alpha_f;
  const void* pb = pl.fp64 ? static_cast<const void*>(&beta) : &beta_f;
  // cuBLAS A = our B, cuBLAS B = our A; C is read (beta != 0) and written in place.
  return cublasLtMatmul(st.handle, pl.desc, pa, b, pl.la, a, pl.lb, pb, c, pl.lc, c, pl.lc, &pl.algo, ws,
                        pl.workspace, s);
}


// cuBLASLt offers no algorithm for p as laid out: run it on 16-byte aligned copies
// of the operands that are not (gemm_repack_plan), then copy C and aux back.
void gemm_aligned_fallback(const GemmProblem& p, double alpha, const void* a, const void* b, double beta, void* c,
                           const void* bias, void* aux, cudaStream_t s) {
  const GemmRepackPlan r = gemm_repack_plan(p, a, b, c, bias, aux);
  CIUIC_CHECK(r.any(), NotImplementedError, "gemm", "cuBLASLt offers no algorithm for ", describe(p),
              " (alignments A ", pointer_alignment(a), ", B ", pointer_alignment(b), ", C ", pointer_alignment(c),
              " bytes), and every operand is already 16-byte aligned");
  const std::size_t es_ab = dtype_size(p.ab_dtype), es_c = dtype_size(p.c_dtype);
  Scratch scratch{s, {}};
  const void* a2 = a;
  const void* b2 = b;
  const void* bias2 = bias;
  void* c2 = c;
  void* aux2 = aux;
  if (r.a.repack) {
    void* buf = scratch.get(operand_bytes(r.a, p.batch, es_ab));
    copy_operand(r.a, p.batch, es_ab, buf, a, true, s);
    a2 = buf;
  }
  if (r.b.repack) {
    void* buf = scratch.get(operand_bytes(r.b, p.batch, es_ab));
    copy_operand(r.b, p.batch, es_ab, buf, b, true, s);
    b2 = buf;
  }
  if (r.c.repack) {
    c2 = scratch.get(operand_bytes(r.c, p.batch, es_c));
    if (beta != 0.0) copy_operand(r.c, p.batch, es_c, c2, c, true, s);  // C is read
  }
  if (r.aux.repack) aux2 = scratch.get(operand_bytes(r.aux, p.batch, es_c));
  if (r.bias) {
    void* buf = scratch.get(static_cast<std::size_t>(p.n) * es_c);
    CIUIC_CUDA_CHECK(cudaMemcpyAsync(buf, bias, static_cast<std::size_t>(p.n) * es_c, cudaMemcpyDeviceToDevice, s));
    bias2 = buf;
  }
  gemm(r.p, alpha, a2, b2, beta, c2, bias2, aux2, s);  // aligned now: a plan exists or it throws
  if (r.c.repack) copy_operand(r.c, p.batch, es_c, c2, c, false, s);
  if (r.aux.repack) copy_operand(r.aux, p.batch, es_c, aux2, aux, false, s);
}

// Runs a planned gemm (caller holds st.mu).
void run_planned(DeviceState& st, const GemmKey& key, Plan& pl, const GemmProblem& p, double alpha, const void* a,
                 const void* b, double beta, void* c, const void* bias, void* aux, void* ws, cudaStream_t s) {
  set_epilogue_pointers(pl, p, bias, aux);
  cublasStatus_t status = run_matmul(st, pl, alpha, beta, a, b, c, ws, s);
  if (status != CUBLAS_STATUS_SUCCESS && pl.fused &&
      (status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_INVALID_VALUE)) {
    // The heuristic accepted a fused epilogue the matmul then refused (nothing was
    // enqueued): fall back to the plain matmul + ciuic's epilogue for good.
    Plan plain;
    const bool ok = build_plan(st, key, false, bias, aux, plain);
    CIUIC_CHECK(ok, NotImplementedError, "gemm", "cuBLASLt offers no algorithm for ", describe(p));
    destroy_plan(pl);
    pl = plain;
    status = run_matmul(st, pl, alpha, beta, a, b, c, ws, s);
  }
  CIUIC_CUBLAS_CHECK(status);
  if (!pl.fused && p.epilogue != GemmEpilogue::none) launch_epilogue(p, c, CMode::keep, beta, bias, aux, s);
}

}  // namespace

void gemm(const GemmProblem& p, double alpha, const void* a, const void* b, double beta, void* c, const void* bias,
          void* aux, void* stream) {
  validate_gemm(p);
  if (p.m == 0 || p.n == 0 || p.batch == 0) return;
  CIUIC_CHECK(c != nullptr, ValueError, "gemm", "C is null for ", describe(p));
  CIUIC_CHECK(!epilogue_has_bias(p.epilogue) || bias != nullptr, ValueError, "gemm", "epilogue ",
              epilogue_name(p.epilogue), " needs a bias pointer (", p.n, " values of ", dtype_name(p.c_dtype), ")");
  CIUIC_CHECK(!epilogue_has_aux(p.epilogue) || aux != nullptr, ValueError, "gemm", "epilogue ",
              epilogue_name(p.epilogue), " needs an aux pointer for the pre-GELU (", p.m, ", ", p.n, ") matrix");
  auto s = static_cast<cudaStream_t>(stream);
  if (p.k == 0) {  // op(A) op(B) is all zeros: only beta * C and the epilogue remain
    launch_epilogue(p, c, beta == 0.0 ? CMode::zero : CMode::scale, beta, bias, aux, s);
    return;
  }
  CIUIC_CHECK(a != nullptr && b != nullptr, ValueError, "gemm", "A or B is null for ", describe(p));
  int device = 0;
  CIUIC_CUDA_CHECK(cudaGetDevice(&device));
  DeviceState& st = device_state(device);
  {
    std::unique_lock<std::mutex> lock(st.mu);
    if (!st.handle) CIUIC_CUBLAS_CHECK(cublasLtCreate(&st.handle));
    void* ws = workspace_for(st, s);
    const GemmKey key = make_gemm_key(device, p, a, b, c, bias, aux);
    if (Plan* pl = plan_for(st, key, bias, aux)) {
      run_planned(st, key, *pl, p, alpha, a, b, beta, c, bias, aux, ws, s);
      return;
    }
  }
  gemm_aligned_fallback(p, alpha, a, b, beta, c, bias, aux, s);
}

void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha, const void* a,
          std::int64_t lda, const void* b, std::int64_t ldb, double beta, void* c, std::int64_t ldc, DType dtype,
          void* stream) {
  GemmProblem p = gemm_problem(trans_a, trans_b, m, n, k, dtype);
  p.lda = lda;
  p.ldb = ldb;
  p.ldc = ldc;
  gemm(p, alpha, a, b, beta, c, nullptr, nullptr, stream);
}

void gemm_batched(const GemmProblem& p, double alpha, const void* const* a, const void* const* b, double beta,
                  void* const* c, int count, const void* bias, void* const* aux, void* stream) {
  CIUIC_CHECK(p.batch == 1, ValueError, "gemm_batched", "problem batch is ", p.batch,
              "; expected 1 (the pointer arrays give the batch)");
  CIUIC_CHECK(count >= 0, ValueError, "gemm_batched", "count is ", count, "; expected >= 0");
  CIUIC_CHECK(!epilogue_has_aux(p.epilogue) || aux != nullptr, ValueError, "gemm_batched", "epilogue ",
              epilogue_name(p.epilogue), " needs an array of aux pointers");
  for (int i = 0; i < count; ++i)
    gemm(p, alpha, a[i], b[i], beta, c[i], bias, epilogue_has_aux(p.epilogue) ? aux[i] : nullptr, stream);
}

std::size_t gemm_cached_plans() {
  int device = 0;
  CIUIC_CUDA_CHECK(cudaGetDevice(&device));
  DeviceState& st = device_state(device);
  std::lock_guard<std::mutex> lock(st.mu);
  return st.plans.size();
}

std::size_t gemm_cached_workspaces() {
  int device = 0;
  CIUIC_CUDA_CHECK(cudaGetDevice(&device));
  DeviceState& st = device_state(device);
  std::lock_guard<std::mutex> lock(st.mu);
  return st.workspaces.size();
}

void gemm_release_resources() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  int previous = 0;
  CIUIC_CUDA_CHECK(cudaGetDevice(&previous));
  for (auto& [device, st] : r.devices) {
    std::lock_guard<std::mutex> dlock(st->mu);
    CIUIC_CUDA_CHECK(cudaSetDevice(device));
    CIUIC_CUDA_CHECK(cudaDeviceSynchronize());
    for (auto& kv : st->plans) destroy_plan(kv.second);
    st->plans.clear();
    st->unsupported.clear();
    for (auto& kv : st->workspaces) CIUIC_CUDA_CHECK(cudaFree(kv.second));
    st->workspaces.clear();
    if (st->handle) CIUIC_CUBLAS_CHECK(cublasLtDestroy(st->handle));
    st->handle = nullptr;
  }
  CIUIC_CUDA_CHECK(cudaSetDevice(previous));
}

}  // namespace ciuic::kernels
