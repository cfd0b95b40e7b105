// nvcuda::wmma on the emulated device (kernels/emu/include precedes the toolkit's include
// folder, so `#include <mma.h>` in a rewritten .cu lands here). 16x16x16 tiles only, as
// ciuic's kernels use.
//
// Each lane holds the whole tile (num_elements == 256, x[] in row-major order of the
// tile), so a loop over x[] that applies the same operation to every element (the only
// element access CUDA's documentation permits, since the lane-to-element map is
// unspecified) stays valid. load_matrix_sync checks the 32-byte pointer alignment and
// the ldm rule (a multiple of 8 elements for 16-bit types, of 4 for float);
// mma_sync accumulates in f32 in a fixed k order; store_matrix_sync lets lane l write
// the elements e with e % 32 == l, so each element is written exactly once by the warp.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
void check_tile_pointer(const void* p, unsigned ldm, std::size_t elem_bytes, const char* what);
unsigned lane_in_warp();
inline float to_f32(float v) { return v; }
inline float to_f32(__half v) { return __half2float(v); }
inline float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
T from_f32(float v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
  else return __float2bfloat16_rn(v);
}
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulated wmma supports 16x16x16 tiles only");
  static constexpr int num_elements = 256;
  T x[256];  // row-major tile (row r, column c at x[r * 16 + c])
};

template <class Use, int M, int N, int K, class T, class Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const T& v) {
  for (int e = 0; e < 256; ++e) f.x[e] = v;
}
template <class Use, int M, int N, int K, class T, class Layout, class V>
  requires(!std::is_same_v<V, T>)
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& v) {
  for (int e = 0; e < 256; ++e) f.x[e] = static_cast<T>(v);
}

// matrix_a / matrix_b with their layout in the type: element (r, c) of the tile is at
// p[r * ldm + c] (row_major) or p[c * ldm + r] (col_major).
template <class Use, class T, class Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm) {
  static_assert(!std::is_same_v<Use, accumulator>, "an accumulator load names its layout");
  detail::check_tile_pointer(p, ldm, sizeof(T), "wmma::load_matrix_sync");
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      f.x[r * 16 + c] = std::is_same_v<Layout, row_major> ? p[r * ldm + c] : p[c * ldm + r];
}
template <class T>
void load_matrix_sync(fragment<accumulator, 16, 16, 16, T, void>& f, const T* p, unsigned ldm, layout_t l) {
  detail::check_tile_pointer(p, ldm, sizeof(T), "wmma::load_matrix_sync");
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.x[r * 16 + c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}

// d = a * b + c, f32 accumulation over k = 0..15 in order.
template <class T, class LA, class LB, class Acc>
void mma_sync(fragment<accumulator, 16, 16, 16, Acc, void>& d, const fragment<matrix_a, 16, 16, 16, T, LA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LB>& b, const fragment<accumulator, 16, 16, 16, Acc, void>& c) {
  // Every lane computes the whole tile, so the conversions are hoisted: a and b to f32 once,
  // then plain f32 products (the same k order, so the same roundings).
  float fa[256], fb[256], out[256];
  for (int e = 0; e < 256; ++e) {
    fa[e] = detail::to_f32(a.x[e]);
    fb[e] = detail::to_f32(b.x[e]);
    out[e] = detail::to_f32(c.x[e]);
  }
  for (int i = 0; i < 16; ++i)
    for (int k = 0; k < 16; ++k) {
      const float aik = fa[i * 16 + k];
      for (int j = 0; j < 16; ++j) out[i * 16 + j] += aik * fb[k * 16 + j];
    }
  for (int e = 0; e < 256; ++e) d.x[e] = detail::from_f32<Acc>(out[e]);
}

template <class T>
void store_matrix_sync(T* p, const fragment<accumulator, 16, 16, 16, T, void>& f, unsigned ldm, layout_t l) {
  detail::check_tile_pointer(p, ldm, sizeof(T), "wmma::store_matrix_sync");
  for (int e = static_cast<int>(detail::lane_in_warp()); e < 256; e += 32) {
    const int r = e / 16, c = e % 16;
    (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[e];
  }
}

}  // namespace nvcuda::wmma
