// cuBLASLt stand-in, part 1: status names, the handle, and the layout, matmul and
// preference descriptors (create / init / destroy / set / get attribute). Part 2,
// the heuristic and the matmul itself, is cublaslt_standin_matmul.cpp.
//
// Attribute protocol, as the cuBLASLt documentation gives it: Set needs a non-null
// buffer of exactly the attribute's size (else CUBLAS_STATUS_INVALID_VALUE); Get
// with sizeInBytes == 0 reports the size needed through sizeWritten, otherwise the
// size must match exactly. Values are checked where cuBLASLt checks them: by the
// heuristic and the matmul, not at Set time.
#include <cublasLt.h>
#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <new>

#include "cublaslt_standin.h"

namespace {

using namespace ciuic::emu::lt;

// ---- statuses ----

struct StatusText {
  cublasStatus_t status;
  const char* name;
  const char* text;
};

// Descriptions paraphrase the cuBLAS documentation of cublasStatus_t.
constexpr StatusText kStatuses[] = {
    {CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS", "the operation completed successfully"},
    {CUBLAS_STATUS_NOT_INITIALIZED, "CUBLAS_STATUS_NOT_INITIALIZED", "the library (handle) was not initialized"},
    {CUBLAS_STATUS_ALLOC_FAILED, "CUBLAS_STATUS_ALLOC_FAILED", "resource allocation failed inside the library"},
    {CUBLAS_STATUS_INVALID_VALUE, "CUBLAS_STATUS_INVALID_VALUE",
     "an unsupported value or parameter was passed to the function"},
    {CUBLAS_STATUS_ARCH_MISMATCH, "CUBLAS_STATUS_ARCH_MISMATCH",
     "the function needs a feature absent from the device architecture"},
    {CUBLAS_STATUS_MAPPING_ERROR, "CUBLAS_STATUS_MAPPING_ERROR", "access to GPU memory space failed"},
    {CUBLAS_STATUS_EXECUTION_FAILED, "CUBLAS_STATUS_EXECUTION_FAILED", "the GPU program failed to execute"},
    {CUBLAS_STATUS_INTERNAL_ERROR, "CUBLAS_STATUS_INTERNAL_ERROR", "an internal cuBLAS operation failed"},
    {CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_STATUS_NOT_SUPPORTED", "the functionality requested is not supported"},
    {CUBLAS_STATUS_LICENSE_ERROR, "CUBLAS_STATUS_LICENSE_ERROR", "the functionality requested requires a license"},
};

const StatusText* find_status(cublasStatus_t s) {
  for (const StatusText& t : kStatuses)
    if (t.status == s) return &t;
  return nullptr;
}

// ---- attribute storage ----

// The bytes of one attribute inside a descriptor; size 0: the descriptor has no
// such attribute.
struct Slot {
  void* p = nullptr;
  std::size_t size = 0;
};
template <typename V>
Slot slot(V& field) {
  return {&field, sizeof(V)};
}

cublasStatus_t set_slot(Slot s, const void* buf, std::size_t size) {
  if (buf == nullptr || size != s.size) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(s.p, buf, size);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t get_slot(Slot s, void* buf, std::size_t size, std::size_t* written) {
  if (size == 0) {  // a size query
    if (written == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *written = s.size;
    return CUBLAS_STATUS_SUCCESS;
  }
  if (buf == nullptr || size != s.size) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(buf, s.p, size);
  if (written != nullptr) *written = size;
  return CUBLAS_STATUS_SUCCESS;
}

Slot layout_slot(Layout& l, cublasLtMatrixLayoutAttribute_t a) {
  switch (a) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: return slot(l.type);
    case CUBLASLT_MATRIX_LAYOUT_ORDER: return slot(l.order);
    case CUBLASLT_MATRIX_LAYOUT_ROWS: return slot(l.rows);
    case CUBLASLT_MATRIX_LAYOUT_COLS: return slot(l.cols);
    case CUBLASLT_MATRIX_LAYOUT_LD: return slot(l.ld);
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: return slot(l.batch);
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: return slot(l.stride);
    case CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET: return slot(l.plane_offset);
    case CUBLASLT_MATRIX_LAYOUT_BATCH_MODE: return slot(l.batch_mode);
  }
  return {};
}

// Only the attributes the stand-in implements; the others (fp8 scale pointers,
// amax, emulation descriptors, ...) have no slot and are refused as unsupported.
Slot desc_slot(MatmulDesc& d, cublasLtMatmulDescAttributes_t a) {
  switch (a) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: return slot(d.compute);
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: return slot(d.scale);
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: return slot(d.pointer_mode);
    case CUBLASLT_MATMUL_DESC_TRANSA: return slot(d.trans_a);
    case CUBLASLT_MATMUL_DESC_TRANSB: return slot(d.trans_b);
    case CUBLASLT_MATMUL_DESC_TRANSC: return slot(d.trans_c);
    case CUBLASLT_MATMUL_DESC_FILL_MODE: return slot(d.fill_mode);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return slot(d.epilogue);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return slot(d.bias);
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: return slot(d.bias_stride);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: return slot(d.aux);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: return slot(d.aux_ld);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE: return slot(d.aux_stride);
    case CUBLASLT_MATMUL_DESC_ALPHA_VECTOR_BATCH_STRIDE: return slot(d.alpha_vector_stride);
    case CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET: return slot(d.sm_count_target);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE: return slot(d.aux_type);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return slot(d.bias_type);
    default: return {};
  }
}

Slot pref_slot(Preference& p, cublasLtMatmulPreferenceAttributes_t a) {
  switch (a) {
    case CUBLASLT_MATMUL_PREF_SEARCH_MODE: return slot(p.search_mode);
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return slot(p.max_workspace);
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK: return slot(p.reduction_mask);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return slot(p.align_a);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return slot(p.align_b);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return slot(p.align_c);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return slot(p.align_d);
    case CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT: return slot(p.max_waves);
    case CUBLASLT_MATMUL_PREF_IMPL_MASK: return slot(p.impl_mask);
  }
  return {};
}

// ---- create / init / destroy, shared by the three descriptor kinds ----

template <typename State, typename Opaque>
cublasStatus_t init_in(Opaque* opaque, std::size_t size, State init) {
  if (opaque == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (size < sizeof(State)) return CUBLAS_STATUS_ALLOC_FAILED;  // as documented for *Init
  new (opaque->data) State(init);
  return CUBLAS_STATUS_SUCCESS;
}

template <typename State, typename Opaque>
cublasStatus_t create_new(Opaque** out, State init) {
  if (out == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *out = nullptr;
  auto* opaque = new (std::nothrow) Opaque{};
  if (opaque == nullptr) return CUBLAS_STATUS_ALLOC_FAILED;
  new (opaque->data) State(init);
  *out = opaque;
  return CUBLAS_STATUS_SUCCESS;
}

// Null is accepted (nothing to free). The magic is cleared first so a stale copy
// of the handle reads as uninitialised rather than as a live descriptor.
template <typename State, typename Opaque>
cublasStatus_t destroy(Opaque* opaque) {
  if (opaque == nullptr) return CUBLAS_STATUS_SUCCESS;
  State* s = state_of<State>(opaque);
  if (s == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  s->~State();
  std::memset(opaque->data, 0, sizeof(opaque->data));
  delete opaque;
  return CUBLAS_STATUS_SUCCESS;
}

// Set / Get through a slot function; an attribute without a slot is `missing`.
template <typename State, typename Opaque, typename Attr, typename SlotFn>
cublasStatus_t set_attr(Opaque* opaque, Attr a, const void* buf, std::size_t size, SlotFn slot_fn,
                        cublasStatus_t missing) {
  State* s = state_of<State>(opaque);
  if (s == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  const Slot sl = slot_fn(*s, a);
  return sl.size == 0 ? missing : set_slot(sl, buf, size);
}

template <typename State, typename Opaque, typename Attr, typename SlotFn>
cublasStatus_t get_attr(Opaque* opaque, Attr a, void* buf, std::size_t size, std::size_t* written, SlotFn slot_fn,
                        cublasStatus_t missing) {
  State* s = state_of<State>(opaque);
  if (s == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  const Slot sl = slot_fn(*s, a);
  return sl.size == 0 ? missing : get_slot(sl, buf, size, written);
}

Layout layout_init(cudaDataType type, std::uint64_t rows, std::uint64_t cols, std::int64_t ld) {
  Layout l;
  l.type = static_cast<std::uint32_t>(type);
  l.rows = rows;
  l.cols = cols;
  l.ld = ld;
  return l;
}

MatmulDesc desc_init(cublasComputeType_t compute, cudaDataType_t scale) {
  MatmulDesc d;
  d.compute = compute;
  d.scale = scale;
  return d;
}

}  // namespace

extern "C" {

const char* cublasGetStatusName(cublasStatus_t status) {
  const StatusText* t = find_status(status);
  return t ? t->name : "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t status) {
  const StatusText* t = find_status(status);
  return t ? t->text : "unknown cuBLAS status";
}

const char* cublasLtGetStatusName(cublasStatus_t status) { return cublasGetStatusName(status); }
const char* cublasLtGetStatusString(cublasStatus_t status) { return cublasGetStatusString(status); }

size_t cublasLtGetVersion(void) { return CUBLAS_VERSION; }
size_t cublasLtGetCudartVersion(void) { return CUDART_VERSION; }

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new (std::nothrow) cublasLtContext{};
  return *handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  if (handle == nullptr || handle->magic != cublasLtContext::kMagic) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->magic = 0;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

// ---- matrix layouts ----

cublasStatus_t cublasLtMatrixLayoutInit_internal(cublasLtMatrixLayout_t l, size_t size, cudaDataType type,
                                                 uint64_t rows, uint64_t cols, int64_t ld) {
  return init_in(l, size, layout_init(type, rows, cols, ld));
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
  return create_new(l, layout_init(type, rows, cols, ld));
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { return destroy<Layout>(l); }

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t size) {
  return set_attr<Layout>(l, attr, buf, size, layout_slot, CUBLAS_STATUS_INVALID_VALUE);
}

cublasStatus_t cublasLtMatrixLayoutGetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                void* buf, size_t size, size_t* written) {
  return get_attr<Layout>(l, attr, buf, size, written, layout_slot, CUBLAS_STATUS_INVALID_VALUE);
}

// ---- matmul descriptors ----

cublasStatus_t cublasLtMatmulDescInit_internal(cublasLtMatmulDesc_t d, size_t size, cublasComputeType_t compute,
                                               cudaDataType_t scale) {
  return init_in(d, size, desc_init(compute, scale));
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
  return create_new(d, desc_init(compute, scale));
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { return destroy<MatmulDesc>(d); }

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  return set_attr<MatmulDesc>(d, attr, buf, size, desc_slot, CUBLAS_STATUS_NOT_SUPPORTED);
}

cublasStatus_t cublasLtMatmulDescGetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, void* buf,
                                              size_t size, size_t* written) {
  return get_attr<MatmulDesc>(d, attr, buf, size, written, desc_slot, CUBLAS_STATUS_NOT_SUPPORTED);
}

// ---- heuristic preferences ----

cublasStatus_t cublasLtMatmulPreferenceInit_internal(cublasLtMatmulPreference_t p, size_t size) {
  return init_in(p, size, Preference{});
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) { return create_new(p, Preference{}); }

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { return destroy<Preference>(p); }

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t size) {
  return set_attr<Preference>(p, attr, buf, size, pref_slot, CUBLAS_STATUS_INVALID_VALUE);
}

cublasStatus_t cublasLtMatmulPreferenceGetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, void* buf, size_t size,
                                                    size_t* written) {
  return get_attr<Preference>(p, attr, buf, size, written, pref_slot, CUBLAS_STATUS_INVALID_VALUE);
}

}  // extern "C"
