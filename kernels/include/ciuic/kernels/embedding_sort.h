// The deterministic embedding backward by sorting (the host-testable parts).
//
// grad_weight[v, :] = sum over i with indices[i] == v of grad_out[i, :], each sum in
// index order (as the CPU loop, so f32 results are bit-identical). Steps:
//   1. key[i] = sort_key(indices[i], V) (bad indices get V, sorted last and skipped),
//      pos[i] = i;
//   2. a stable sort of (key, pos) by key over key_bits(V) bits: equal keys keep
//      their positions in index order (cub::DeviceRadixSort on the GPU);
//   3. each segment (a run of equal keys) is summed column by column in position
//      order (segment_column_sum) and written to its row; rows no index hits are 0.
// Cost: one sort of n keys plus n * C reads, about the atomic path's, instead of
// every block scanning all n indices.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "ciuic/dtype.h"
#include "ciuic/macros.h"

namespace ciuic::kernels::emb_sort {

// The sort key of index v: v for v in [0, V), V for an index out of range.
CIUIC_HD std::uint32_t sort_key(std::int64_t v, std::int64_t V) {
  return static_cast<std::uint32_t>(v >= 0 && v < V ? v : V);
}

// Bits a radix sort needs for keys in [0, V] (V < 2^32).
CIUIC_HD int key_bits(std::int64_t V) {
  int b = 1;
  while (b < 32 && (std::int64_t{1} << b) <= V) ++b;
  return b;
}

// Whether sorted position i starts a segment.
CIUIC_HD bool segment_start(const std::uint32_t* keys, std::int64_t i) { return i == 0 || keys[i] != keys[i - 1]; }

// One past the last position of the segment that starts at i.
CIUIC_HD std::int64_t segment_end(const std::uint32_t* keys, std::int64_t n, std::int64_t i) {
  const std::uint32_t k = keys[i];
  while (++i < n && keys[i] == k) {
  }
  return i;
}

// Column c of the sum of grad_out rows pos[b], ..., pos[e - 1], in that order, in the
// accumulation type A (f32 for f16/bf16/f32, f64 for f64), starting from 0 as the CPU.
template <typename A, typename T>
CIUIC_HD A segment_column_sum(const T* g, std::int64_t C, const std::int32_t* pos, std::int64_t b, std::int64_t e,
                              std::int64_t c) {
  A acc = A(0);
  for (std::int64_t k = b; k < e; ++k) acc += static_cast<A>(g[static_cast<std::int64_t>(pos[k]) * C + c]);
  return acc;
}

// The whole backward on the host with the same steps (std::stable_sort for the
// radix sort): the reference the GPU path is checked against. gw (V, C) is
// overwritten; g (n, C); idx (n).
template <typename T>
void backward_reference(T* gw, const T* g, const std::vector<std::int64_t>& idx, std::int64_t V, std::int64_t C) {
  using A = acc_t<T>;
  const auto n = static_cast<std::int64_t>(idx.size());
  std::vector<std::pair<std::uint32_t, std::int32_t>> kp(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    kp[static_cast<std::size_t>(i)] = {sort_key(idx[static_cast<std::size_t>(i)], V), static_cast<std::int32_t>(i)};
  std::stable_sort(kp.begin(), kp.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::uint32_t> keys(kp.size());
  std::vector<std::int32_t> pos(kp.size());
  for (std::size_t i = 0; i < kp.size(); ++i) {
    keys[i] = kp[i].first;
    pos[i] = kp[i].second;
  }
  std::fill(gw, gw + V * C, T(A(0)));
  for (std::int64_t i = 0; i < n; ++i) {
    if (!segment_start(keys.data(), i) || keys[static_cast<std::size_t>(i)] >= V) continue;
    const std::int64_t e = segment_end(keys.data(), n, i);
    const std::int64_t row = keys[static_cast<std::size_t>(i)];
    for (std::int64_t c = 0; c < C; ++c)
      gw[row * C + c] = T(segment_column_sum<A>(g, C, pos.data(), i, e, c));
  }
}

}  // namespace ciuic::kernels::emb_sort
