// Stand-in for <cub/cub.cuh> in the emulated build (kernels/emu/include comes
// first on the include path; the real CUB does not compile under g++). It has
// what ciuic calls: cub::DeviceRadixSort::SortPairs with the documented
// parameters
//   (d_temp_storage, temp_storage_bytes, d_keys_in, d_keys_out, d_values_in,
//    d_values_out, num_items, begin_bit = 0, end_bit = sizeof(KeyT) * 8, stream = 0)
// and CUB's two-call protocol: with d_temp_storage == nullptr it only writes the
// temporary storage size it needs (never 0) and returns; otherwise it sorts.
//
// Semantics, as CUB documents them: a stable sort of the (key, value) pairs by
// the key bits [begin_bit, end_bit) only; pairs whose keys differ only outside
// those bits keep their input order. Signed integer keys are ordered as numbers
// (their sign bit flipped, as CUB does). The sort is an LSD radix sort, 8 bits per
// pass, that ping-pongs between the output arrays and a keys + values double
// buffer in the temporary storage, which it first fills with 0xA5 bytes: code that
// reads the temporary storage, or shares it with other live data, sees garbage.
//
// The sort runs in stream order on the emulated device (ciuic::emu::enqueue): it
// returns at once and the stream's worker sorts after the work queued before it.
// Errors: cudaErrorInvalidValue for a negative num_items, bits outside
// 0 <= begin_bit <= end_bit <= 8 * sizeof(KeyT), temp_storage_bytes below the
// size the query reported, or a null array with num_items > 0.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "ciuic_emu/engine.h"

namespace cub {

namespace emu_detail {

constexpr std::size_t kAlign = 256;  // CUB aligns its temporary allocations to 256 bytes
constexpr int kDigitBits = 8;
constexpr std::size_t kBuckets = std::size_t{1} << kDigitBits;

constexpr std::size_t round_up(std::size_t b) { return (b + kAlign - 1) / kAlign * kAlign; }

// Layout of the temporary storage, from its first 256-aligned byte:
//   [keys double buffer, n keys][values double buffer, n values][histogram]
// each part rounded up to 256 bytes; kAlign - 1 bytes of slack in front let the
// caller's pointer be less aligned. 0 on size overflow.
template <typename KeyT, typename ValueT>
std::size_t temp_bytes(std::size_t n) {
  if (n > (SIZE_MAX / 4) / (sizeof(KeyT) + sizeof(ValueT))) return 0;
  return (kAlign - 1) + round_up(n * sizeof(KeyT)) + round_up(n * sizeof(ValueT)) +
         round_up(kBuckets * sizeof(std::size_t));
}

// The key as an unsigned integer whose order is the key's order.
template <typename KeyT>
auto ordered_bits(KeyT key) {
  using U = std::make_unsigned_t<KeyT>;
  U u;
  std::memcpy(&u, &key, sizeof(U));
  if constexpr (std::is_signed_v<KeyT>) u ^= static_cast<U>(U{1} << (8 * sizeof(U) - 1));
  return u;
}

// Runs on the stream's worker. n > 0; the arrays do not overlap.
template <typename KeyT, typename ValueT>
void lsd_sort(void* temp, std::size_t temp_size, const KeyT* keys_in, KeyT* keys_out, const ValueT* values_in,
              ValueT* values_out, std::size_t n, int begin_bit, int end_bit) {
  std::memset(temp, 0xA5, temp_size);
  const auto addr = reinterpret_cast<std::uintptr_t>(temp);
  auto* base = static_cast<unsigned char*>(temp) + (kAlign - addr % kAlign) % kAlign;
  auto* keys_alt = reinterpret_cast<KeyT*>(base);
  auto* values_alt = reinterpret_cast<ValueT*>(base + round_up(n * sizeof(KeyT)));
  auto* hist = reinterpret_cast<std::size_t*>(base + round_up(n * sizeof(KeyT)) + round_up(n * sizeof(ValueT)));

  const int passes = (end_bit - begin_bit + kDigitBits - 1) / kDigitBits;
  if (passes == 0) {  // no bits to compare: every key is equal, the order stays
    std::memcpy(keys_out, keys_in, n * sizeof(KeyT));
    std::memcpy(values_out, values_in, n * sizeof(ValueT));
    return;
  }
  const KeyT* ks = keys_in;
  const ValueT* vs = values_in;
  for (int pass = 0; pass < passes; ++pass) {
    // Passes alternate between the two buffers so that the last one lands in the output.
    const bool to_out = (passes - 1 - pass) % 2 == 0;
    KeyT* kd = to_out ? keys_out : keys_alt;
    ValueT* vd = to_out ? values_out : values_alt;
    const int shift = begin_bit + pass * kDigitBits;
    const int width = end_bit - shift < kDigitBits ? end_bit - shift : kDigitBits;
    const auto mask = static_cast<std::size_t>((1u << width) - 1u);
    auto digit = [&](KeyT k) { return static_cast<std::size_t>(ordered_bits(k) >> shift) & mask; };

    for (std::size_t b = 0; b < kBuckets; ++b) hist[b] = 0;
    for (std::size_t i = 0; i < n; ++i) ++hist[digit(ks[i])];
    std::size_t offset = 0;  // exclusive prefix sum: each bucket's first slot
    for (std::size_t b = 0; b < kBuckets; ++b) {
      const std::size_t count = hist[b];
      hist[b] = offset;
      offset += count;
    }
    for (std::size_t i = 0; i < n; ++i) {  // in input order: stable
      const std::size_t dst = hist[digit(ks[i])]++;
      kd[dst] = ks[i];
      vd[dst] = vs[i];
    }
    ks = kd;
    vs = vd;
  }
}

}  // namespace emu_detail

struct DeviceRadixSort {
  template <typename KeyT, typename ValueT, typename NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, std::size_t& temp_storage_bytes, const KeyT* d_keys_in,
                               KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out, NumItemsT num_items,
                               int begin_bit = 0, int end_bit = sizeof(KeyT) * 8, cudaStream_t stream = 0) {
    static_assert(std::is_integral_v<KeyT> && !std::is_same_v<KeyT, bool>,
                  "the emulated cub::DeviceRadixSort sorts integer keys only");
    static_assert(std::is_trivially_copyable_v<ValueT>, "radix sort values are copied as bytes");
    static_assert(std::is_integral_v<NumItemsT>, "num_items is an integer");
    if constexpr (std::is_signed_v<NumItemsT>) {
      if (num_items < 0) return cudaErrorInvalidValue;
    }
    const auto n = static_cast<std::size_t>(num_items);
    const std::size_t need = emu_detail::temp_bytes<KeyT, ValueT>(n);
    if (need == 0) return cudaErrorInvalidValue;
    if (d_temp_storage == nullptr) {  // the size query
      temp_storage_bytes = need;
      return cudaSuccess;
    }
    if (temp_storage_bytes < need) return cudaErrorInvalidValue;
    if (begin_bit < 0 || begin_bit > end_bit || end_bit > static_cast<int>(sizeof(KeyT) * 8))
      return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    if (!d_keys_in || !d_keys_out || !d_values_in || !d_values_out) return cudaErrorInvalidValue;
    const std::size_t temp_size = temp_storage_bytes;  // the caller's whole temporary storage is scratch
    return ciuic::emu::enqueue(
        stream,
        [=] {
          emu_detail::lsd_sort(d_temp_storage, temp_size, d_keys_in, d_keys_out, d_values_in, d_values_out, n,
                               begin_bit, end_bit);
        },
        "cub::DeviceRadixSort::SortPairs");
  }
};

}  // namespace cub
