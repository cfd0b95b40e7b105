// The tile, mask, index and softmax arithmetic of the flash-attention kernels
// (src/flash_attn_fwd.cu, src/flash_attn_bwd.cu), as __host__ __device__
// functions: the CPU tests and the CPU emulation of the kernels' block schedule
// (tests/flash_attn_emulation.*) call exactly these.
//
// Problem: per batch entry bh (the flattened batch dims), q (Tq, D), k (Tk, D),
// v (Tk, Dv). Query rows are cut into tiles of BM rows, keys into tiles of BN;
// the last tile of each is ragged (fewer rows). Causal attention is top-left
// aligned as the CPU reference: query i sees keys j <= i, also when Tq != Tk.
//
// Softmax statistics are kept in log2 units: with c = scale * log2(e), a score
// is t = c * (q . k), the running row max m = max t and the running sum
// l = sum exp2(t - m). The per-row log-sum-exp stored for the backward is in
// natural units: lse = (m + log2(l)) * ln(2), so P = exp(scale * q.k - lse).
#pragma once

#include <cmath>
#include <cstdint>

#include "ciuic/dropout_mask.h"
#include "ciuic/macros.h"

namespace ciuic::kernels::flash {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---- tiles -----------------------------------------------------------------

// Tensor Core kernels (f16/bf16, D == Dv in {64, 128}): 4 warps, 64 query rows x
// 64 keys per tile in the forward, the dQ kernel and the dK/dV kernel alike; a
// warp owns 16 rows of its block's tile (query rows, or keys in dK/dV).
constexpr int kTcBM = 64, kTcBN = 64, kTcWarps = 4;
// SIMT kernels (f32, other head dims): forward and dQ take 16 query rows (4 warps x
// 4 rows) against 32-key tiles; dK/dV takes 16 keys against 32-query tiles.
constexpr int kSimtRows = 16, kSimtCols = 32, kSimtWarps = 4, kSimtRowsPerWarp = 4;

CIUIC_HD std::int64_t num_tiles(std::int64_t n, std::int64_t tile) { return (n + tile - 1) / tile; }

// Rows of tile t of an n-row dim cut in tiles of `tile` (the last one ragged).
CIUIC_HD std::int64_t tile_rows(std::int64_t t, std::int64_t n, std::int64_t tile) {
  const std::int64_t left = n - t * tile;
  return left < tile ? (left > 0 ? left : 0) : tile;
}

// ---- masks -----------------------------------------------------------------

// Key j is visible to query i (both in range).
CIUIC_HD bool key_visible(std::int64_t i, std::int64_t j, bool causal) { return !causal || j <= i; }

// Element (i, j) takes part: in range and visible.
CIUIC_HD bool score_live(std::int64_t i, std::int64_t j, std::int64_t Tq, std::int64_t Tk, bool causal) {
  return i < Tq && j < Tk && key_visible(i, j, causal);
}

// Keys visible to query i: [0, visible_keys(i)).
CIUIC_HD std::int64_t visible_keys(std::int64_t i, std::int64_t Tk, bool causal) {
  if (!causal) return Tk;
  return i + 1 < Tk ? i + 1 : Tk;
}

// Forward and dQ: query tile qt visits key tiles [0, kv_tile_end(qt)); later key
// tiles are invisible to every row of the tile (causal block skipping).
CIUIC_HD std::int64_t kv_tile_end(std::int64_t qt, std::int64_t BM, std::int64_t BN, std::int64_t Tq,
                                  std::int64_t Tk, bool causal) {
  if (!causal) return num_tiles(Tk, BN);
  std::int64_t last = (qt + 1) * BM;  // one past the tile's last row
  if (last > Tq) last = Tq;
  return num_tiles(visible_keys(last - 1, Tk, true), BN);
}

// dK/dV: key tile kt is seen by query tiles [q_tile_begin(kt), num_tiles(Tq, BM)).
// Causal: the first query that sees key kt*BN is row kt*BN; when that row is
// past Tq nobody sees the tile (begin = end: the block only writes zeros).
CIUIC_HD std::int64_t q_tile_begin(std::int64_t kt, std::int64_t BM, std::int64_t BN, std::int64_t Tq, bool causal) {
  if (!causal) return 0;
  return kt * BN < Tq ? (kt * BN) / BM : num_tiles(Tq, BM);
}

// Whether tile (qt, kt) has any element that is out of range or invisible, so the
// kernel must test elements one by one; other visited tiles are fully live.
CIUIC_HD bool tile_needs_mask(std::int64_t qt, std::int64_t kt, std::int64_t BM, std::int64_t BN, std::int64_t Tq,
                              std::int64_t Tk, bool causal) {
  if ((qt + 1) * BM > Tq || (kt + 1) * BN > Tk) return true;  // ragged
  return causal && (kt + 1) * BN - 1 > qt * BM;                 // the last key is beyond the first row
}

// ---- online softmax (log2 units) ------------------------------------------

// A running max that is still -inf (no live score yet) is used as 0 for the
// exponent reference, so exp2(-inf - ref) = 0 instead of nan.
CIUIC_HD float safe_ref(float m) { return m == -INFINITY ? 0.0f : m; }

// Factor that rescales l and the output accumulator when the max moves from
// m_old to m_new >= m_old.
CIUIC_HD float online_alpha(float m_old, float m_new) {
  using std::exp2;
  return exp2(m_old - safe_ref(m_new));
}

// Unnormalised probability of a score t (log2 units, -inf when masked).
CIUIC_HD float online_p(float t, float m) {
  using std::exp2;
  return exp2(t - safe_ref(m));
}

// The stored log-sum-exp (natural units); -inf for a row without live keys.
CIUIC_HD float lse_from_stats(float m, float l) {
  using std::log2;
  return l > 0 ? (m + log2(l)) * kLn2 : -INFINITY;
}

// 1 / l for the final output scaling; 0 for a row without live keys (output 0).
CIUIC_HD float inv_row_sum(float l) { return l > 0 ? 1.0f / l : 0.0f; }

// Backward: P from the score t (log2 units) and the row's lse (natural units).
CIUIC_HD float recompute_p(float t, float lse) {
  using std::exp2;
  return lse == -INFINITY ? 0.0f : exp2(t - lse * kLog2e);
}

// dS = P * (dP - delta), delta = rowsum(dO * O) (dP after the dropout mask).
CIUIC_HD float grad_score(float p, float dp, float delta) { return p * (dp - delta); }

// ---- dropout on the probabilities -----------------------------------------

// Attention dropout draws B*Tq*Tk numbers at generator state (seed, first);
// element (bh, i, j) uses counter first + (bh*Tq + i)*Tk + j, the row-major index
// of the (B, Tq, Tk) probability matrix. Masked (invisible) elements draw too,
// so the counter never depends on the mask.
CIUIC_HD std::uint64_t dropout_counter(std::uint64_t first, std::int64_t bh, std::int64_t i, std::int64_t j,
                                       std::int64_t Tq, std::int64_t Tk) {
  return first + static_cast<std::uint64_t>((bh * Tq + i) * Tk + j);
}

// The per-element rule of ciuic/dropout_mask.h on that counter.
CIUIC_HD bool dropout_keep_at(std::uint64_t seed, std::uint64_t first, std::uint32_t threshold, std::int64_t bh,
                              std::int64_t i, std::int64_t j, std::int64_t Tq, std::int64_t Tk) {
  return threshold == 0 || dropout_keep(seed, dropout_counter(first, bh, i, j, Tq, Tk), threshold);
}

// ---- shared-memory layout --------------------------------------------------

// Row pitch, in elements, of a 2-byte (f16/bf16) tile of `cols` columns: cols + 8,
// so consecutive rows start 16 bytes apart modulo 128: the 8 rows an 8x8
// matrix load (or eight 16-byte stores of one quarter warp) touches fall in 8
// different 16-byte bank groups (cols a multiple of 64: the pitch is an odd
// number of 16-byte chunks).
CIUIC_HD int half_pitch(int cols) { return cols + 8; }

// Row pitch, in floats, of an f32 tile read as float4 by lane pairs (row = lane/2,
// column chunk = lane%2 + 2e): cols + 8 puts rows 2 chunks apart modulo 8, so a
// quarter warp (4 rows x 2 chunks) touches 8 different bank groups.
CIUIC_HD int float_pitch(int cols) { return cols + 8; }

// 16-byte bank group (0..7) of element (row, col) in a tile of `pitch` elements of
// `elem_bytes` bytes; used by the tests to check the layouts are conflict-free.
CIUIC_HD int bank_group(int row, int col, int pitch, int elem_bytes) {
  return static_cast<int>(((static_cast<std::int64_t>(row) * pitch + col) * elem_bytes / 16) % 8);
}

}  // namespace ciuic::kernels::flash
