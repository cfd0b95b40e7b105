// Private to the cuBLASLt stand-in (cublaslt_standin.cpp: handles, descriptors,
// statuses; cublaslt_standin_matmul.cpp: heuristic and matmul). The emulated
// build links these instead of libcublasLt; the functions are the ones the real
// <cublasLt.h> declares, written from the cuBLASLt documentation.
//
// The header's descriptor handles point to "semi-opaque" structs of fixed size
// (cublasLtMatrixLayoutOpaque_t is uint64_t[8], the matmul descriptor
// uint64_t[32], ...) that a caller may also allocate itself and fill with
// cublasLt*Init. So each state below lives inside that storage (placement new),
// and a magic word tells a created descriptor from zeroed or foreign memory.
#pragma once

#include <cublasLt.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>

namespace ciuic::emu::lt {

// One matrix's memory layout. Column-major only (ORDER_COL): element (i, j) of
// batch entry b sits at b * stride + j * ld + i elements from the base pointer.
struct Layout {
  static constexpr std::uint32_t kMagic = 0x4c41594fu;  // "LAYO"
  std::uint32_t magic = kMagic;
  std::uint32_t type = CUDA_R_32F;          // cudaDataType
  std::int32_t order = CUBLASLT_ORDER_COL;
  std::int32_t batch = 1;                   // BATCH_COUNT
  std::uint64_t rows = 0, cols = 0;
  std::int64_t ld = 0;
  std::int64_t stride = 0;                  // STRIDED_BATCH_OFFSET, in elements
  std::int64_t plane_offset = 0;            // planar complex: unsupported unless 0
  std::uint32_t batch_mode = CUBLASLT_BATCH_MODE_STRIDED;
};

// The matmul operation. Attributes the stand-in does not model are refused at
// SetAttribute time (CUBLAS_STATUS_NOT_SUPPORTED) rather than silently ignored.
struct MatmulDesc {
  static constexpr std::uint32_t kMagic = 0x4d41544du;  // "MATM"
  std::uint32_t magic = kMagic;
  std::int32_t compute = CUBLAS_COMPUTE_32F;  // cublasComputeType_t
  std::int32_t scale = CUDA_R_32F;            // type of alpha and beta
  std::int32_t pointer_mode = CUBLASLT_POINTER_MODE_HOST;
  std::int32_t trans_a = CUBLAS_OP_N, trans_b = CUBLAS_OP_N, trans_c = CUBLAS_OP_N;
  std::int32_t fill_mode = CUBLAS_FILL_MODE_FULL;
  std::uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  std::int32_t bias_type = -1;                // -1: the type of D
  std::int32_t aux_type = -1;                 // -1: the type of D
  std::int32_t sm_count_target = 0;           // a scheduling hint: stored, unused
  const void* bias = nullptr;                 // rows(D) values per batch entry
  void* aux = nullptr;                        // pre-GELU matrix, rows(D) x cols(D)
  std::int64_t bias_stride = 0;               // elements between batch entries' bias
  std::int64_t aux_ld = 0, aux_stride = 0;    // in elements
  std::int64_t alpha_vector_stride = 0;       // only with vector pointer modes
};

struct Preference {
  static constexpr std::uint32_t kMagic = 0x50524546u;  // "PREF"
  std::uint32_t magic = kMagic;
  std::uint32_t search_mode = CUBLASLT_SEARCH_BEST_FIT;
  std::uint32_t reduction_mask = 0xffffffffu;
  std::uint32_t align_a = 256, align_b = 256, align_c = 256, align_d = 256;  // bytes
  float max_waves = 0.0f;
  std::uint64_t max_workspace = 0;  // bytes; the default allows none
  std::uint64_t impl_mask = ~std::uint64_t{0};
};

// What cublasLtMatmulAlgoGetHeuristic hands out inside cublasLtMatmulAlgo_t: the
// workspace the "algorithm" needs and the pointer alignments it was chosen for
// (cublasLtMatmul refuses pointers less aligned than that, as a GPU kernel
// picked for 16-byte vector loads would fault on them).
struct Algo {
  static constexpr std::uint32_t kMagic = 0x414c474fu;  // "ALGO"
  std::uint32_t magic = kMagic;
  std::uint32_t align_a = 1, align_b = 1, align_c = 1, align_d = 1;
  std::uint64_t workspace = 0;
};

static_assert(sizeof(Layout) <= sizeof(cublasLtMatrixLayoutOpaque_t));
static_assert(sizeof(MatmulDesc) <= sizeof(cublasLtMatmulDescOpaque_t));
static_assert(sizeof(Preference) <= sizeof(cublasLtMatmulPreferenceOpaque_t));
static_assert(sizeof(Algo) <= sizeof(cublasLtMatmulAlgo_t));
static_assert(alignof(Layout) <= alignof(std::uint64_t) && alignof(MatmulDesc) <= alignof(std::uint64_t));

// The state inside an opaque descriptor, or nullptr when `opaque` is null or was
// not initialised by this stand-in.
// Const storage (cublasLtMatmulAlgo_t passed as const) gives a const state.
template <typename State, typename Opaque>
auto* state_of(Opaque* opaque) {
  using S = std::conditional_t<std::is_const_v<Opaque>, const State, State>;
  if (opaque == nullptr) return static_cast<S*>(nullptr);
  std::uint32_t magic = 0;  // read as bytes: the storage may hold no State at all
  std::memcpy(&magic, opaque->data, sizeof(magic));
  return magic == State::kMagic ? std::launder(reinterpret_cast<S*>(opaque->data)) : static_cast<S*>(nullptr);
}

}  // namespace ciuic::emu::lt

// The handle. Stateless: the stand-in keeps no per-context caches.
struct cublasLtContext {
  static constexpr std::uint32_t kMagic = 0x434f4e54u;  // "CONT"
  std::uint32_t magic = kMagic;
};
