// Device side of the multi-tensor launches (see ciuic/kernels/multi_tensor.h):
// the by-value table a kernel receives, a helper that fills and launches one
// table per planned launch, and a deterministic block reduction.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstdint>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/multi_tensor.h"

namespace ciuic::kernels::mt {

constexpr unsigned kBlock = 512;  // threads per block; each block walks one chunk

// Everything one launch needs about its tensors, passed as a kernel parameter.
// ptr[d][s]: pointer list d, slot s (void*: the kernel casts per its dtypes).
template <int Depth>
struct Table {
  static constexpr int kMaxTensors = multi_tensor_max_tensors(Depth);
  void* ptr[Depth][kMaxTensors];
  std::int64_t numel[kMaxTensors];
  std::int32_t block_chunk[kMultiTensorMaxBlocks];
  std::uint8_t block_slot[kMultiTensorMaxBlocks];
  std::int64_t block_offset;  // global chunk index of this launch's block 0
};
static_assert(multi_tensor_max_tensors(1) <= 255 && multi_tensor_max_tensors(2) <= 255, "slot fits a byte");
static_assert(sizeof(Table<1>) <= 3600 && sizeof(Table<2>) <= 3600 && sizeof(Table<3>) <= 3600 &&
                  sizeof(Table<4>) <= 3600 && sizeof(Table<5>) <= 3600 && sizeof(Table<6>) <= 3600,
              "tables leave room for the other kernel arguments within 4 KiB");

// The element range [begin, end) of this block's chunk, and its slot.
struct ChunkRange {
  int slot;
  std::int64_t begin, end;
};

template <int Depth>
__device__ __forceinline__ ChunkRange chunk_of_block(const Table<Depth>& t) {
  const int slot = t.block_slot[blockIdx.x];
  const std::int64_t begin = static_cast<std::int64_t>(t.block_chunk[blockIdx.x]) * kMultiTensorChunk;
  std::int64_t end = begin + kMultiTensorChunk;
  if (end > t.numel[slot]) end = t.numel[slot];
  return {slot, begin, end};
}

// Plans the launches over lists[0..Depth) (host arrays of device pointers, each of
// `count` entries) and calls launch(table, nblocks) once per planned launch.
// Null lists (lists[d] == nullptr) give null pointers in the table.
template <int Depth, typename Launch>
void for_each_launch(const std::array<const void* const*, Depth>& lists, const std::int64_t* numels, int count,
                     Launch&& launch) {
  auto plan = plan_multi_tensor(numels, count, kMultiTensorChunk, Table<Depth>::kMaxTensors,
                                kMultiTensorMaxBlocks);
  for (const MultiTensorLaunch& l : plan) {
    Table<Depth> t{};
    for (std::size_t s = 0; s < l.tensors.size(); ++s) {
      const int i = l.tensors[s];
      for (int d = 0; d < Depth; ++d) t.ptr[d][s] = lists[d] ? const_cast<void*>(lists[d][i]) : nullptr;
      t.numel[s] = numels[i];
    }
    for (std::size_t b = 0; b < l.block_slot.size(); ++b) {
      t.block_slot[b] = static_cast<std::uint8_t>(l.block_slot[b]);
      t.block_chunk[b] = l.block_chunk[b];
    }
    t.block_offset = l.block_offset;
    launch(t, static_cast<unsigned>(l.block_slot.size()));
    CIUIC_CUDA_CHECK_LAUNCH();
  }
}

// Block-wide reduction with a fixed combination order (warp shuffles by fixed
// offsets, then warp results in warp order), hence deterministic. Every thread
// must call it; the result is valid in thread 0. blockDim.x must be a multiple of
// 32 and at most 1024.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, Op op) {
  __shared__ T warp_vals[32];
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int off = 16; off > 0; off /= 2) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
  if (lane == 0) warp_vals[warp] = v;
  __syncthreads();
  const unsigned nwarps = blockDim.x / 32;
  if (warp == 0) {
    v = lane < nwarps ? warp_vals[lane] : warp_vals[0];
    // Lanes past nwarps hold a copy of warp 0's value; shuffling only from lanes
    // < width keeps them out of the result.
    for (unsigned width = 1; width < nwarps; width *= 2) {
      T other = __shfl_down_sync(0xffffffffu, v, width);
      if (lane + width < nwarps && (lane % (2 * width)) == 0) v = op(v, other);
    }
  }
  __syncthreads();  // warp_vals may be reused by a second call
  return v;
}

}  // namespace ciuic::kernels::mt
