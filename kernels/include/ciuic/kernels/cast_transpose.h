// Layout movers: contiguous casts between f32/f16/bf16, a tiled 2-D transpose,
// and the (B, X, Y, D) -> (B, Y, X, D) permute attention uses to go from
// (batch, time, heads, head_dim) to (batch, heads, time, head_dim) and back.
// The index arithmetic is here as CIUIC_HD functions, tested on the CPU.
#pragma once

#include <cstdint>

#include "ciuic/dtype.h"
#include "ciuic/macros.h"

namespace ciuic::kernels {

// dst[i] = cast(src[i]) for i in [0, n); dtypes f32, f16, bf16 (round to nearest
// even, as ciuic/half.h). Same dtype: a device-to-device memcpy. When src is 16-byte
// aligned and dst aligned to its share of the vector, each thread moves one
// 16-byte load of src (4 f32 or 8 f16/bf16); the tail (n mod that) and misaligned
// buffers take a scalar path. dst and src must not overlap.
void cast_contiguous(void* dst, DType dst_dtype, const void* src, DType src_dtype, std::int64_t n, void* stream);

// src: batch matrices of (rows, cols), row-major, contiguous; dst: batch matrices
// of (cols, rows), dst[b][c][r] = src[b][r][c]. Any dtype (moved as raw bytes of
// dtype_size). 32x32 tiles through shared memory padded to 33 columns, so the
// transposed reads hit 32 different banks. dst and src must not overlap.
void transpose_2d(void* dst, const void* src, DType dtype, std::int64_t batch, std::int64_t rows, std::int64_t cols,
                  void* stream);

// src contiguous (B, X, Y, D) -> dst contiguous (B, Y, X, D):
// dst[b][y][x][d] = src[b][x][y][d]. With (X, Y) = (T, H) this is
// (B, T, H, D) -> (B, H, T, D); with (X, Y) = (H, T) it goes back. Any dtype;
// rows of D elements move in the widest unit (16, 8, 4, 2 or 1 bytes) that the row
// size and both pointers allow. dst and src must not overlap.
void permute_swap12(void* dst, const void* src, DType dtype, std::int64_t B, std::int64_t X, std::int64_t Y,
                    std::int64_t D, void* stream);

// ---- index helpers shared with the kernels ----

// Offset in src (B, X, Y, D) of the element at linear index i of dst (B, Y, X, D).
CIUIC_HD std::int64_t swap12_src_offset(std::int64_t i, std::int64_t X, std::int64_t Y, std::int64_t D) {
  const std::int64_t d = i % D;
  std::int64_t r = i / D;
  const std::int64_t x = r % X;
  r /= X;
  const std::int64_t y = r % Y;
  const std::int64_t b = r / Y;
  return ((b * X + x) * Y + y) * D + d;
}

// The widest power-of-two unit (<= 16 bytes) dividing the row size in bytes and
// both addresses: rows of row_bytes at dst/src can be moved in units of it.
CIUIC_HD unsigned copy_unit_bytes(std::uint64_t row_bytes, std::uint64_t dst_addr, std::uint64_t src_addr) {
  const std::uint64_t all = row_bytes | dst_addr | src_addr;
  unsigned u = 16;
  while (u > 1 && (all % u) != 0) u /= 2;
  return u;
}

// Elements per 16-byte vector of the cast kernel: one 16-byte load of the source
// type (4 f32 or 8 f16/bf16).
CIUIC_HD int cast_vector_elems(std::size_t src_elem_size) { return static_cast<int>(16 / src_elem_size); }

}  // namespace ciuic::kernels
