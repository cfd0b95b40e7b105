// Known-answer tests of the emulated build's CUB stand-in
// (kernels/emu/include/cub/cub.cuh): cub::DeviceRadixSort::SortPairs as CUB
// documents it, against std::stable_sort or hand-written answers.
#include <cub/cub.cuh>
#include <cuda_runtime.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <future>
#include <numeric>
#include <random>
#include <vector>

#include "ciuic_emu/engine.h"
#include "test_gate.h"

namespace {

void device_sync() { REQUIRE(cudaDeviceSynchronize() == cudaSuccess); }

// The documented two calls: the size query, then the sort on the default stream.
// `extra` bytes of temporary storage beyond what the query asked for, filled
// with `fill`; the storage comes back so tests can look at it.
template <typename K, typename V>
std::vector<unsigned char> sort_pairs(const std::vector<K>& keys, const std::vector<V>& values, std::vector<K>& keys_out,
                                      std::vector<V>& values_out, int begin_bit = 0,
                                      int end_bit = static_cast<int>(sizeof(K) * 8)) {
  std::size_t bytes = 0;
  REQUIRE(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys.data(), keys_out.data(), values.data(),
                                          values_out.data(), static_cast<int>(keys.size()), begin_bit,
                                          end_bit) == cudaSuccess);
  REQUIRE(bytes > 0);
  std::vector<unsigned char> temp(bytes, 0x5C);
  REQUIRE(cub::DeviceRadixSort::SortPairs(temp.data(), bytes, keys.data(), keys_out.data(), values.data(),
                                          values_out.data(), static_cast<int>(keys.size()), begin_bit, end_bit,
                                          cudaStream_t{nullptr}) == cudaSuccess);
  device_sync();
  return temp;
}

// The reference: std::stable_sort of (key, index) by the key bits [begin, end).
std::vector<int> ref_order(const std::vector<std::uint32_t>& keys, int begin, int end) {
  std::vector<int> idx(keys.size());
  std::iota(idx.begin(), idx.end(), 0);
  const std::uint64_t mask = ((std::uint64_t{1} << (end - begin)) - 1) << begin;
  std::stable_sort(idx.begin(), idx.end(), [&](int x, int y) { return (keys[x] & mask) < (keys[y] & mask); });
  return idx;
}

std::vector<int> iota_values(std::size_t n) {
  std::vector<int> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

}  // namespace

TEST_CASE("cub stand-in: a hand-written stable sort of pairs", "[emu]") {
  const std::vector<std::uint32_t> keys = {5, 1, 4, 1, 5, 9, 2, 6, 5, 3};
  const std::vector<int> values = iota_values(keys.size());
  std::vector<std::uint32_t> ko(keys.size());
  std::vector<int> vo(keys.size());
  sort_pairs(keys, values, ko, vo);
  CHECK(ko == std::vector<std::uint32_t>{1, 1, 2, 3, 4, 5, 5, 5, 6, 9});
  CHECK(vo == std::vector<int>{1, 3, 6, 9, 2, 0, 4, 8, 7, 5});  // equal keys keep their input order
}

TEST_CASE("cub stand-in: only the bits [begin_bit, end_bit) order the keys", "[emu]") {
  std::mt19937 rng(1234);
  std::vector<std::uint32_t> keys(3000);
  for (auto& k : keys) k = static_cast<std::uint32_t>(rng());
  const std::vector<int> values = iota_values(keys.size());
  for (auto [begin, end] : {std::pair{0, 32}, std::pair{0, 8}, std::pair{4, 12}, std::pair{3, 20}, std::pair{17, 32},
                            std::pair{31, 32}, std::pair{5, 5}}) {
    INFO("bits [" << begin << ", " << end << ")");
    std::vector<std::uint32_t> ko(keys.size());
    std::vector<int> vo(keys.size());
    sort_pairs(keys, values, ko, vo, begin, end);
    const std::vector<int> order = ref_order(keys, begin, end);
    CHECK(vo == order);
    std::vector<std::uint32_t> expect_keys;
    for (int i : order) expect_keys.push_back(keys[static_cast<std::size_t>(i)]);
    CHECK(ko == expect_keys);  // whole keys travel, the bits outside the range included
  }
  // By hand: keys equal in bits [0, 4) keep their input order whatever their high bits.
  const std::vector<std::uint32_t> k2 = {0x31, 0x12, 0x21, 0x02, 0x11};
  std::vector<std::uint32_t> ko(5);
  std::vector<int> vo(5);
  sort_pairs(k2, iota_values(5), ko, vo, 0, 4);
  CHECK(ko == std::vector<std::uint32_t>{0x31, 0x21, 0x11, 0x12, 0x02});
  CHECK(vo == std::vector<int>{0, 2, 4, 1, 3});
}

TEST_CASE("cub stand-in: signed, 8-bit and 64-bit keys; values of any trivially copyable type", "[emu]") {
  const std::vector<std::int32_t> keys = {3, -1, 0, -2147483647 - 1, 7, -1, 2147483647};
  std::vector<std::int32_t> ko(keys.size());
  std::vector<double> vo(keys.size());
  sort_pairs(keys, std::vector<double>{0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5}, ko, vo);
  CHECK(ko == std::vector<std::int32_t>{-2147483647 - 1, -1, -1, 0, 3, 7, 2147483647});
  CHECK(vo == std::vector<double>{3.5, 1.5, 5.5, 2.5, 0.5, 4.5, 6.5});

  const std::vector<std::uint8_t> k8 = {200, 3, 200, 0};
  std::vector<std::uint8_t> k8o(4);
  std::vector<int> v8o(4);
  sort_pairs(k8, iota_values(4), k8o, v8o);
  CHECK(k8o == std::vector<std::uint8_t>{0, 3, 200, 200});
  CHECK(v8o == std::vector<int>{3, 1, 0, 2});

  const std::vector<std::uint64_t> k64 = {1ull << 40, 5, 1ull << 63, 5};
  std::vector<std::uint64_t> k64o(4);
  std::vector<int> v64o(4);
  sort_pairs(k64, iota_values(4), k64o, v64o);
  CHECK(k64o == std::vector<std::uint64_t>{5, 5, 1ull << 40, 1ull << 63});
  CHECK(v64o == std::vector<int>{1, 3, 0, 2});
}

TEST_CASE("cub stand-in: the temporary storage protocol", "[emu]") {
  const std::vector<std::uint32_t> keys = {9, 8, 7, 6, 5};
  const std::vector<int> values = iota_values(5);
  std::vector<std::uint32_t> ko(5, 0);
  std::vector<int> vo(5, -1);
  std::size_t bytes = 0;
  REQUIRE(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys.data(), ko.data(), values.data(), vo.data(), 5) ==
          cudaSuccess);
  REQUIRE(bytes > 0);
  CHECK(ko == std::vector<std::uint32_t>(5, 0));  // a query touches nothing

  SECTION("too little storage is refused, nothing runs") {
    std::vector<unsigned char> temp(bytes);
    std::size_t less = bytes - 1;
    CHECK(cub::DeviceRadixSort::SortPairs(temp.data(), less, keys.data(), ko.data(), values.data(), vo.data(), 5) ==
          cudaErrorInvalidValue);
    device_sync();
    CHECK(ko == std::vector<std::uint32_t>(5, 0));
  }
  SECTION("the storage is scratch: overwritten, never read as input, nothing past it touched") {
    // 0x5C: a byte no key, value or count of this sort contains, so any left over
    // was never written.
    std::vector<unsigned char> temp(bytes + 64, 0x5C);
    std::size_t given = bytes;
    REQUIRE(cub::DeviceRadixSort::SortPairs(temp.data() + 1, given, keys.data(), ko.data(), values.data(), vo.data(),
                                            5, 0, 32) == cudaSuccess);  // a less aligned pointer is fine too
    device_sync();
    CHECK(ko == std::vector<std::uint32_t>{5, 6, 7, 8, 9});
    CHECK(vo == std::vector<int>{4, 3, 2, 1, 0});
    CHECK(std::count(temp.begin() + 1, temp.begin() + 1 + static_cast<std::ptrdiff_t>(bytes), 0x5C) == 0);
    CHECK(temp[0] == 0x5C);
    for (std::size_t i = bytes + 1; i < temp.size(); ++i) CHECK(temp[i] == 0x5C);
  }
  SECTION("bits outside the key, or begin > end, are refused") {
    std::vector<unsigned char> temp(bytes);
    for (auto [begin, end] : {std::pair{0, 33}, std::pair{-1, 8}, std::pair{9, 8}}) {
      INFO("bits [" << begin << ", " << end << ")");
      CHECK(cub::DeviceRadixSort::SortPairs(temp.data(), bytes, keys.data(), ko.data(), values.data(), vo.data(), 5,
                                            begin, end) == cudaErrorInvalidValue);
    }
  }
  SECTION("num_items == 0: a nonzero size, then a sort that does nothing") {
    std::size_t zero_bytes = 0;
    REQUIRE(cub::DeviceRadixSort::SortPairs(nullptr, zero_bytes, keys.data(), ko.data(), values.data(), vo.data(),
                                            0) == cudaSuccess);
    CHECK(zero_bytes > 0);
    std::vector<unsigned char> temp(zero_bytes);
    CHECK(cub::DeviceRadixSort::SortPairs(temp.data(), zero_bytes, keys.data(), ko.data(), values.data(), vo.data(),
                                          0) == cudaSuccess);
    device_sync();
    CHECK(ko == std::vector<std::uint32_t>(5, 0));
  }
  SECTION("a negative num_items is refused") {
    std::size_t b = 0;
    CHECK(cub::DeviceRadixSort::SortPairs(nullptr, b, keys.data(), ko.data(), values.data(), vo.data(), -1) ==
          cudaErrorInvalidValue);
  }
}

TEST_CASE("cub stand-in: SortPairs runs in stream order, after earlier work", "[emu]") {
  std::vector<std::uint32_t> keys = {0, 0, 0}, ko(3, 7);
  std::vector<int> values = iota_values(3), vo(3, 7);
  std::size_t bytes = 0;
  REQUIRE(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys.data(), ko.data(), values.data(), vo.data(), 3) ==
          cudaSuccess);
  std::vector<unsigned char> temp(bytes);
  // Earlier work on the stream holds it until the gate opens, then writes the keys.
  StreamGate gate;
  std::uint32_t* kp = keys.data();
  REQUIRE(gate.hold([kp] { kp[0] = 30, kp[1] = 10, kp[2] = 20; }) == cudaSuccess);
  REQUIRE(cub::DeviceRadixSort::SortPairs(temp.data(), bytes, keys.data(), ko.data(), values.data(), vo.data(), 3, 0,
                                          32, cudaStream_t{nullptr}) == cudaSuccess);
  CHECK(ko == std::vector<std::uint32_t>(3, 7));  // queued behind the gate, not sorted on the call
  gate.open();
  device_sync();
  CHECK(ko == std::vector<std::uint32_t>{10, 20, 30});
  CHECK(vo == std::vector<int>{1, 2, 0});
}
