// The caching allocator on the CPU: reuse, splitting, merging, statistics and the
// out-of-memory path. The GPU allocator runs the same code (test_cuda_alloc.cpp).
#include <atomic>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "ciuic/allocator.h"
#include "ciuic/error.h"
#include "test_util.h"

using namespace ciuic;

namespace {

constexpr std::size_t KiB = 1024;
constexpr std::size_t MiB = 1024 * KiB;

std::unique_ptr<Allocator> make_alloc(std::size_t limit = 0) {
  return make_caching_allocator(make_cpu_backend(limit));
}

char* as_bytes(void* p) { return static_cast<char*>(p); }

// A stand-in stream handle: the CPU allocator only uses handles as tags.
StreamHandle fake_stream(std::uintptr_t v) { return reinterpret_cast<StreamHandle>(v); }

}  // namespace

TEST_CASE("alloc: zero bytes gives nullptr and changes nothing", "[alloc]") {
  auto a = make_alloc();
  CHECK(a->allocate(0) == nullptr);
  a->deallocate(nullptr);  // the matching free is a no-op
  const AllocatorStats s = a->stats();
  CHECK(s.num_allocs == 0);
  CHECK(s.num_frees == 0);
  CHECK(s.reserved_bytes == 0);
  CHECK(s.num_segment_allocs == 0);
  CHECK(a->device() == Device::cpu());
}

TEST_CASE("alloc: sizes are rounded up to 512 bytes", "[alloc]") {
  auto a = make_alloc();
  void* p1 = a->allocate(1);
  CHECK(a->stats().allocated_bytes == 512);
  CHECK(a->stats().requested_bytes == 1);
  void* p2 = a->allocate(513);
  CHECK(a->stats().allocated_bytes == 512 + 1024);
  CHECK(a->stats().requested_bytes == 514);
  void* p3 = a->allocate(1024);
  CHECK(a->stats().allocated_bytes == 512 + 1024 + 1024);
  // Consecutive blocks of one segment: offsets follow the rounded sizes.
  CHECK(as_bytes(p2) == as_bytes(p1) + 512);
  CHECK(as_bytes(p3) == as_bytes(p2) + 1024);
  a->deallocate(p1);
  a->deallocate(p2);
  a->deallocate(p3);
  CHECK(a->stats().allocated_bytes == 0);
  CHECK(a->stats().requested_bytes == 0);
}

TEST_CASE("alloc: a freed block is reused for the same size", "[alloc]") {
  auto a = make_alloc();
  void* p = a->allocate(1000);
  a->deallocate(p);
  const AllocatorStats before = a->stats();
  void* q = a->allocate(1000);
  const AllocatorStats after = a->stats();
  CHECK(q == p);
  CHECK(after.num_cache_hits == before.num_cache_hits + 1);
  CHECK(after.num_segment_allocs == before.num_segment_allocs);
  CHECK(after.num_segment_allocs == 1);
  a->deallocate(q);
}

TEST_CASE("alloc: small requests split one 2 MiB segment", "[alloc]") {
  auto a = make_alloc();
  void* p1 = a->allocate(1000);
  void* p2 = a->allocate(3000);
  const AllocatorStats s = a->stats();
  CHECK(s.num_segment_allocs == 1);
  CHECK(s.reserved_bytes == 2 * MiB);
  CHECK(s.num_splits == 2);
  CHECK(s.allocated_bytes == 1024 + 3072);
  CHECK(as_bytes(p2) == as_bytes(p1) + 1024);
  a->deallocate(p1);
  a->deallocate(p2);
}

TEST_CASE("alloc: freed neighbours merge into one block", "[alloc]") {
  auto a = make_alloc();
  void* x = a->allocate(512 * KiB);
  void* y = a->allocate(512 * KiB);
  void* z = a->allocate(512 * KiB);  // keeps the segment's tail apart from x and y
  REQUIRE(a->stats().num_segment_allocs == 1);
  CHECK(as_bytes(y) == as_bytes(x) + 512 * KiB);
  // Free in an order that needs both merge directions.
  a->deallocate(y);
  a->deallocate(x);
  // Only the merged x+y block can hold 1 MiB inside this segment (its free tail is 512 KiB).
  void* m = a->allocate(1 * MiB);
  CHECK(m == x);
  CHECK(a->stats().num_segment_allocs == 1);
  a->deallocate(z);
  a->deallocate(m);
  // Everything merged back into one whole segment, which empty_cache can return.
  a->empty_cache();
  CHECK(a->stats().reserved_bytes == 0);
  CHECK(a->stats().num_segment_frees == 1);
}

TEST_CASE("alloc: large requests get segments rounded to 2 MiB", "[alloc]") {
  auto a = make_alloc();
  SECTION("a remainder of at most 1 MiB stays in the block") {
    void* p = a->allocate(3 * MiB);  // 4 MiB segment, 1 MiB left: not split
    CHECK(a->stats().reserved_bytes == 4 * MiB);
    CHECK(a->stats().allocated_bytes == 4 * MiB);
    CHECK(a->stats().num_splits == 0);
    a->deallocate(p);
  }
  SECTION("a larger remainder is split off and reused") {
    void* big = a->allocate(6 * MiB);
    CHECK(a->stats().reserved_bytes == 6 * MiB);
    a->deallocate(big);
    void* p = a->allocate(2 * MiB);
    CHECK(p == big);
    CHECK(a->stats().num_splits == 1);
    CHECK(a->stats().allocated_bytes == 2 * MiB);
    void* q = a->allocate(4 * MiB);  // the 4 MiB remainder
    CHECK(as_bytes(q) == as_bytes(big) + 2 * MiB);
    CHECK(a->stats().num_segment_allocs == 1);
    a->deallocate(p);
    a->deallocate(q);
  }
  SECTION("small and large pools do not share segments") {
    void* big = a->allocate(4 * MiB);
    a->deallocate(big);
    void* small = a->allocate(1000);  // from a new 2 MiB small-pool segment
    CHECK(a->stats().num_segment_allocs == 2);
    CHECK(a->stats().reserved_bytes == 6 * MiB);
    a->deallocate(small);
  }
}

TEST_CASE("alloc: statistics and reset_peak", "[alloc]") {
  auto a = make_alloc();
  void* p = a->allocate(100 * KiB);
  void* q = a->allocate(2 * MiB);
  AllocatorStats s = a->stats();
  CHECK(s.allocated_bytes == 100 * KiB + 2 * MiB);
  CHECK(s.requested_bytes == 100 * KiB + 2 * MiB);
  CHECK(s.reserved_bytes == 4 * MiB);
  CHECK(s.peak_allocated_bytes == s.allocated_bytes);
  CHECK(s.peak_reserved_bytes == 4 * MiB);
  CHECK(s.num_allocs == 2);
  CHECK(s.num_segment_allocs == 2);

  a->deallocate(q);
  s = a->stats();
  CHECK(s.allocated_bytes == 100 * KiB);
  CHECK(s.peak_allocated_bytes == 100 * KiB + 2 * MiB);  // the peak stays
  CHECK(s.num_frees == 1);

  a->reset_peak();
  s = a->stats();
  CHECK(s.peak_allocated_bytes == 100 * KiB);
  CHECK(s.peak_reserved_bytes == 4 * MiB);  // still reserved: q's segment is cached
  a->empty_cache();
  a->reset_peak();
  CHECK(a->stats().peak_reserved_bytes == 2 * MiB);

  const std::string text = a->stats().str();
  CHECK(text.find("allocated 100.00 KiB") != std::string::npos);
  CHECK(text.find("reserved 2.00 MiB") != std::string::npos);
  CHECK(text.find("2 allocs") != std::string::npos);
  a->deallocate(p);
}

TEST_CASE("alloc: empty_cache returns only fully free segments", "[alloc]") {
  auto a = make_alloc();
  void* small = a->allocate(1000);
  void* big1 = a->allocate(4 * MiB);
  void* big2 = a->allocate(8 * MiB);
  REQUIRE(a->stats().reserved_bytes == 14 * MiB);
  a->deallocate(big1);
  a->deallocate(big2);
  a->empty_cache();
  AllocatorStats s = a->stats();
  CHECK(s.reserved_bytes == 2 * MiB);  // the small segment still holds a live block
  CHECK(s.num_segment_frees == 2);
  CHECK(s.allocated_bytes == 1024);
  a->deallocate(small);
  a->empty_cache();
  CHECK(a->stats().reserved_bytes == 0);
  CHECK(a->stats().num_segment_frees == 3);
  // The allocator works as before afterwards.
  void* again = a->allocate(1000);
  CHECK(again != nullptr);
  a->deallocate(again);
}

TEST_CASE("alloc: out of memory frees the cache and retries once", "[alloc]") {
  auto a = make_alloc(4 * MiB);
  void* small = a->allocate(1 * MiB);    // a 2 MiB small segment
  void* big = a->allocate(3 * MiB / 2);  // a 2 MiB large segment: the limit is reached
  REQUIRE(a->stats().reserved_bytes == 4 * MiB);
  a->deallocate(small);  // cached, still held from the backend

  // Fits only once the cached small segment goes back.
  void* big2 = a->allocate(3 * MiB / 2);
  AllocatorStats s = a->stats();
  CHECK(big2 != nullptr);
  CHECK(s.num_ooms == 1);
  CHECK(s.num_segment_frees == 1);
  CHECK(s.reserved_bytes == 4 * MiB);

  // Beyond the limit even with an empty cache.
  CHECK_THROWS_WITH_ALL(a->allocate(3 * MiB), OutOfMemory, "allocate: out of memory on cpu",
                        "requested 3.00 MiB", "3145728 bytes", "allocated 4.00 MiB",
                        "reserved 4.00 MiB", "limit 4.00 MiB");
  CHECK(a->stats().num_ooms == 3);  // the failed first try and the failed retry
  CHECK(a->stats().num_allocs == 3);

  // Still usable, and the freed memory serves new requests.
  a->deallocate(big);
  void* again = a->allocate(3 * MiB / 2);
  CHECK(again == big);
  CHECK(a->stats().allocated_bytes == 4 * MiB);
  a->deallocate(again);
  a->deallocate(big2);
  a->empty_cache();
  CHECK(a->stats().reserved_bytes == 0);
  void* huge = a->allocate(4 * MiB);  // the whole limit, now that nothing is held
  CHECK(huge != nullptr);
  a->deallocate(huge);
}

TEST_CASE("alloc: absurd requests fail cleanly", "[alloc]") {
  auto a = make_alloc();
  const std::string max_bytes = std::to_string(SIZE_MAX) + " bytes";
  CHECK_THROWS_WITH_ALL(a->allocate(SIZE_MAX), OutOfMemory, "out of memory on cpu",
                        max_bytes.c_str());
  CHECK(a->stats().reserved_bytes == 0);
  void* p = a->allocate(10);
  CHECK(p != nullptr);
  a->deallocate(p);
}

TEST_CASE("alloc: foreign and double frees throw ValueError", "[alloc]") {
  auto a = make_alloc();
  int on_stack = 0;
  CHECK_THROWS_WITH_ALL(a->deallocate(&on_stack), ValueError, "deallocate",
                        "is not a live allocation of the cpu allocator");
  void* p = a->allocate(4096);
  CHECK_THROWS_AS(a->deallocate(as_bytes(p) + 512), ValueError);  // inside, not the start
  CHECK_THROWS_AS(a->record_stream(&on_stack, nullptr), ValueError);
  a->deallocate(p);
  CHECK_THROWS_WITH_ALL(a->deallocate(p), ValueError, "deallocate");
  // Nothing was corrupted: the stats balance and the block is reused.
  CHECK(a->stats().allocated_bytes == 0);
  CHECK(a->stats().num_frees == 1);
  CHECK(a->allocate(4096) == p);
  a->deallocate(p);
  CHECK_THROWS_AS(make_caching_allocator(nullptr), ValueError);
}

TEST_CASE("alloc: blocks are reused only by their own stream", "[alloc]") {
  auto a = make_alloc();
  const StreamHandle s1 = fake_stream(0x10), s2 = fake_stream(0x20);
  void* p = a->allocate(1000, s1);
  a->deallocate(p);
  void* q = a->allocate(1000, s2);
  CHECK(q != p);
  CHECK(a->stats().num_segment_allocs == 2);
  void* r = a->allocate(1000, s1);
  CHECK(r == p);
  // record_stream is a no-op on the CPU: the block is reusable at once.
  a->record_stream(r, s2);
  a->deallocate(r);
  CHECK(a->allocate(1000, s1) == p);
  a->deallocate(p);
  a->deallocate(q);
}

TEST_CASE("alloc: every pointer is 64-byte aligned", "[alloc]") {
  auto a = make_alloc();
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> size(1, 3 * MiB);
  std::vector<void*> live;
  for (int i = 0; i < 200; ++i) {
    void* p = a->allocate(size(rng));
    CHECK(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
    live.push_back(p);
    if (i % 3 == 2) {
      a->deallocate(live.front());
      live.erase(live.begin());
    }
  }
  for (void* p : live) a->deallocate(p);
  CHECK(a->stats().allocated_bytes == 0);

  auto backend = make_cpu_backend();
  for (std::size_t n : {1, 63, 64, 100, 4097}) {
    void* p = backend->alloc(n);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
    backend->free(p, n);
  }
}

TEST_CASE("alloc: the CPU backend respects its limit", "[alloc]") {
  auto backend = make_cpu_backend(1 * MiB);
  CHECK(backend->device() == Device::cpu());
  CHECK(backend->capacity() == "limit 1.00 MiB");
  void* p = backend->alloc(768 * KiB);
  REQUIRE(p != nullptr);
  CHECK(backend->alloc(512 * KiB) == nullptr);
  void* q = backend->alloc(256 * KiB);  // exactly up to the limit
  CHECK(q != nullptr);
  backend->free(p, 768 * KiB);
  backend->free(q, 256 * KiB);
  void* r = backend->alloc(1 * MiB);
  CHECK(r != nullptr);
  backend->free(r, 1 * MiB);
  CHECK(make_cpu_backend()->capacity() == "no limit set");
}

TEST_CASE("alloc: concurrent allocations from several threads", "[alloc]") {
  auto a = make_alloc();
  constexpr int kThreads = 4;
  std::atomic<int> corrupted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      std::uniform_int_distribution<std::size_t> size(1, 2 * MiB);
      std::vector<std::pair<unsigned char*, std::size_t>> live;
      const auto tag = static_cast<unsigned char>(t + 1);
      auto release_one = [&](std::size_t i) {
        auto [p, n] = live[i];
        // Another thread writing into our block would show up here.
        if (p[0] != tag || p[n - 1] != tag) corrupted.fetch_add(1);
        a->deallocate(p);
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      };
      for (int i = 0; i < 2000; ++i) {
        if (live.size() < 16 && (live.empty() || rng() % 2 == 0)) {
          const std::size_t n = size(rng);
          auto* p = static_cast<unsigned char*>(a->allocate(n));
          p[0] = tag;
          p[n - 1] = tag;
          live.emplace_back(p, n);
        } else {
          release_one(rng() % live.size());
        }
      }
      while (!live.empty()) release_one(live.size() - 1);
    });
  }
  for (auto& th : threads) th.join();
  const AllocatorStats s = a->stats();
  CHECK(corrupted.load() == 0);
  CHECK(s.allocated_bytes == 0);
  CHECK(s.requested_bytes == 0);
  CHECK(s.num_allocs == s.num_frees);
  a->empty_cache();
  CHECK(a->stats().reserved_bytes == 0);
}

TEST_CASE("alloc: the global CPU allocator", "[alloc]") {
  Allocator& a = cpu_allocator();
  CHECK(&allocator_for(Device::cpu()) == &a);
  CHECK(a.device() == Device::cpu());
  void* p = a.allocate(12345);
  CHECK(p != nullptr);
  std::memset(p, 0xab, 12345);
  a.deallocate(p);

  set_cpu_memory_limit(1);  // every new segment now fails
  CHECK_THROWS_WITH_ALL(a.allocate(64 * MiB), OutOfMemory, "out of memory on cpu",
                        "limit 1 B");
  set_cpu_memory_limit(0);
  void* q = a.allocate(64 * MiB);
  CHECK(q != nullptr);
  a.deallocate(q);
}

TEST_CASE("alloc: format_bytes", "[alloc]") {
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(1023) == "1023 B");
  CHECK(format_bytes(1024) == "1.00 KiB");
  CHECK(format_bytes(3 * MiB / 2) == "1.50 MiB");
  CHECK(format_bytes(std::size_t{5} << 30) == "5.00 GiB");
}
