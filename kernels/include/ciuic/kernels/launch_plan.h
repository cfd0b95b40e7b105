// How the kernels partition their work: grid sizes, row-to-thread-group mapping,
// splits of long reductions, vector widths. Host-callable (and device-callable)
// so the CPU tests check the partitions cover every element exactly once.
//
// None of these depend on the device: the same sizes give the same partition,
// hence the same reduction tree and bit-identical results, on any GPU.
#pragma once

#include <cstdint>

#include "ciuic/macros.h"

namespace ciuic::kernels::plan {

CIUIC_HD constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
CIUIC_HD constexpr std::int64_t min64(std::int64_t a, std::int64_t b) { return a < b ? a : b; }
CIUIC_HD constexpr std::int64_t max64(std::int64_t a, std::int64_t b) { return a > b ? a : b; }

// Blocks for a grid-stride loop over n items with `block` threads each: at least 1,
// at most kMaxGrid (the loop covers the rest).
constexpr std::int64_t kMaxGrid = 65535LL * 32;
CIUIC_HD constexpr unsigned grid_blocks(std::int64_t n, std::int64_t block) {
  return static_cast<unsigned>(min64(max64(ceil_div(n, block), 1), kMaxGrid));
}

// ---- 16-byte vectors ----
// Elements per 16-byte vector for an element size in bytes (f32: 4, f16/bf16: 8, f64: 2).
CIUIC_HD constexpr int vec_width(int element_bytes) { return 16 / element_bytes; }

// A contiguous range of n elements processed as n / width full vectors followed by
// a scalar tail [tail_begin, n) of fewer than width elements.
struct VecSplit {
  std::int64_t vectors = 0;
  std::int64_t tail_begin = 0;
};
CIUIC_HD constexpr VecSplit vec_split(std::int64_t n, int width) {
  return VecSplit{n / width, (n / width) * width};
}

// ---- rows mapped to thread groups ----
// A row of length `len` is handled by one group of `threads` threads: a single warp
// (32) for short rows, so one block runs several rows, or a whole block for long
// ones. Threads stride over the row: thread t reads t, t + threads, ...
CIUIC_HD constexpr int row_group_threads(std::int64_t len) {
  return len <= 1024 ? 32 : (len <= 8192 ? 256 : 1024);
}
constexpr int kRowBlockThreads = 128;  // block size when rows are mapped to warps (4 rows per block)
CIUIC_HD constexpr int rows_per_block(int group_threads) {
  return group_threads == 32 ? kRowBlockThreads / 32 : 1;
}
// The __launch_bounds__ of a row kernel's warp-mode (warp = true) or block-mode
// instantiation: the most threads per block that mode is launched with. Warp mode
// launches kRowBlockThreads; bounding it by 1024 forced 64 registers per thread
// and the only register spills (f64 softmax, f32 fused residual + LayerNorm).
CIUIC_HD constexpr int row_threads_bound(bool warp) { return warp ? kRowBlockThreads : 1024; }

// ---- reductions over (outer, reduce, inner) of a contiguous input ----
// Output element (o, i) reduces in[(o * reduce + j) * inner + i] over j. There are
// cols = outer * inner outputs. Long reductions are split into `splits` chunks of
// `chunk` consecutive j (the last may be shorter, none is empty); each chunk gives a
// partial state, and a second pass merges a column's partials in split order.
//   rows mode (inner == 1): a warp (reduce <= 1024) or a block per (row, split)
//   cols mode (inner > 1): a thread per (split, column), looping over its chunk
struct ReducePlan {
  bool rows_mode = true;
  int group_threads = 32;   // rows mode: threads per (row, split)
  std::int64_t cols = 0;    // outer * inner outputs
  std::int64_t splits = 1;  // >= 1
  std::int64_t chunk = 0;   // j per split; splits * chunk >= reduce > (splits - 1) * chunk
};

constexpr std::int64_t kReduceTargetBlocks = 512;      // rows mode: aim for this many (row, split) blocks
constexpr std::int64_t kReduceMinRowChunk = 16384;     // rows mode: at least this many j per split
constexpr std::int64_t kReduceTargetThreads = 65536;   // cols mode: aim for this many (split, column) threads
constexpr std::int64_t kReduceMinColChunk = 64;        // cols mode: at least this many j per split

CIUIC_HD constexpr ReducePlan plan_reduce(std::int64_t outer, std::int64_t reduce, std::int64_t inner) {
  ReducePlan p;
  p.cols = outer * inner;
  p.rows_mode = inner == 1;
  p.group_threads = p.rows_mode ? row_group_threads(reduce) : 1;
  std::int64_t splits = 1;
  if (p.cols > 0 && reduce > 0) {
    if (p.rows_mode) {
      if (p.group_threads > 32)  // warp rows are short: never split
        splits = min64(ceil_div(kReduceTargetBlocks, p.cols), ceil_div(reduce, kReduceMinRowChunk));
    } else {
      splits = min64(ceil_div(kReduceTargetThreads, p.cols), ceil_div(reduce, kReduceMinColChunk));
    }
  }
  splits = max64(splits, 1);
  p.chunk = ceil_div(reduce, splits);
  p.splits = p.chunk == 0 ? 1 : ceil_div(reduce, p.chunk);  // drop splits that would be empty
  return p;
}

// [begin, end) of split s.
struct Range {
  std::int64_t begin = 0;
  std::int64_t end = 0;
};
CIUIC_HD constexpr Range split_range(std::int64_t reduce, std::int64_t chunk, std::int64_t s) {
  const std::int64_t b = min64(s * chunk, reduce);
  return Range{b, min64(b + chunk, reduce)};
}

// ---- layernorm weight/bias gradients: column sums over rows, in row chunks ----
// Rows [k * rows_per_chunk, (k + 1) * rows_per_chunk) form chunk k; a thread sums
// one column over one chunk, then a second pass adds the chunks in order.
struct ChunkPlan {
  std::int64_t chunks = 1;
  std::int64_t rows_per_chunk = 0;
};
constexpr std::int64_t kColumnSumTargetThreads = 131072;
constexpr std::int64_t kColumnSumMinRows = 16;
CIUIC_HD constexpr ChunkPlan plan_column_sum(std::int64_t rows, std::int64_t cols) {
  ChunkPlan p;
  if (rows <= 0 || cols <= 0) return p;
  std::int64_t want = max64(ceil_div(kColumnSumTargetThreads, cols), 1);
  std::int64_t chunks = max64(min64(want, ceil_div(rows, kColumnSumMinRows)), 1);
  p.rows_per_chunk = ceil_div(rows, chunks);
  p.chunks = ceil_div(rows, p.rows_per_chunk);
  return p;
}

// ---- embedding backward (deterministic): vocabulary rows owned by blocks ----
// Block (r, c) owns vocabulary rows [r * kEmbRowsPerBlock, ...) and columns
// [c * kEmbColsPerBlock, ...); it scans all indices in order and adds the matching
// gradient rows into shared accumulators, so each weight-gradient element is summed
// by one thread in index order, exactly like the CPU loop.
constexpr std::int64_t kEmbRowsPerBlock = 32;
constexpr std::int64_t kEmbColsPerBlock = 128;  // = threads per block
constexpr std::int64_t kEmbIndexTile = 1024;    // indices staged in shared memory per step

// Owner block row of vocabulary row v.
CIUIC_HD constexpr std::int64_t emb_owner(std::int64_t v) { return v / kEmbRowsPerBlock; }

}  // namespace ciuic::kernels::plan
