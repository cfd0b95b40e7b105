// The caching allocator, shared by every device (see allocator.h).
//
// Memory comes from a SegmentBackend in segments; each segment is a chain of
// blocks in address order that exactly tile it. A block is Live (handed out),
// Pending (freed, but waiting for events on other streams) or Free (in a pool).
//
// Sizes (all block sizes and offsets are multiples of kRound, so every pointer
// keeps the backend's alignment: 64 bytes on the CPU, 256 from cudaMalloc):
//   - requests are rounded up to a multiple of 512 bytes;
//   - requests of at most 1 MiB use the small pool, carved from 2 MiB segments;
//   - larger ones use the large pool, from segments of the request rounded up
//     to a multiple of 2 MiB (no 20 MiB over-allocation: simpler, and it keeps
//     reserved memory close to what is used);
//   - a block is split when the remainder is usable: any remainder in the
//     small pool, more than 1 MiB in the large pool (a smaller large-pool piece
//     could only ever serve a small request, which that pool never sees).
//
// Invariants, with the mutex held:
//   - every Free block is in exactly one pool, under its current size;
//   - no two Free blocks are neighbours (they are merged on release);
//   - all blocks of a segment carry the segment's stream, so merging never
//     mixes streams and a block is reused only by the stream it was made for;
//   - the first block of a segment (prev == nullptr) lives as long as the
//     segment: merging always keeps the lower-address block.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <list>
#include <mutex>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ciuic/allocator.h"
#include "ciuic/error.h"
#include "ciuic/stream.h"

namespace ciuic {
namespace {

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * kKiB;
constexpr std::size_t kRound = 512;                 // granularity of every block
constexpr std::size_t kSmallRequest = 1 * kMiB;     // largest request of the small pool
constexpr std::size_t kSmallSegment = 2 * kMiB;     // segment size of the small pool
constexpr std::size_t kLargeSegmentRound = 2 * kMiB;
constexpr std::size_t kLargeSplitRemainder = 1 * kMiB;  // large pool splits above this
// No backend can serve more; refusing early keeps the rounding below from overflowing.
constexpr std::size_t kMaxRequest = std::size_t{1} << 60;

std::size_t round_up(std::size_t n, std::size_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

enum class BlockState { Live, Pending, Free };

struct Block {
  char* ptr = nullptr;
  std::size_t size = 0;
  StreamHandle stream = nullptr;  // the segment's stream
  bool small = false;             // which pool the segment belongs to
  Block* prev = nullptr;          // neighbours in the same segment, by address
  Block* next = nullptr;
  BlockState state = BlockState::Free;
  std::size_t requested = 0;          // Live: what the caller asked for
  std::vector<StreamHandle> used_by;  // Live: other streams named by record_stream
  int pending_events = 0;             // Pending: events still to complete

  bool whole_segment() const { return prev == nullptr && next == nullptr; }
};

// Orders free blocks by (stream, size, address), so that lower_bound on
// (stream, size) is the best fit for that stream.
struct BlockOrder {
  bool operator()(const Block* a, const Block* b) const {
    if (a->stream != b->stream) return std::less<StreamHandle>{}(a->stream, b->stream);
    if (a->size != b->size) return a->size < b->size;
    return std::less<char*>{}(a->ptr, b->ptr);
  }
};
using Pool = std::set<Block*, BlockOrder>;

// A block freed while other streams may still use it, and one event per such stream.
struct PendingEvent {
  Event event;
  Block* block;
};

class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(std::unique_ptr<SegmentBackend> backend)
      : backend_(std::move(backend)), device_(backend_->device()) {}
  ~CachingAllocator() override;

  void* allocate(std::size_t nbytes, StreamHandle stream) override;
  void deallocate(void* p) override;
  void record_stream(void* p, StreamHandle s) override;
  AllocatorStats stats() const override;
  void reset_peak() override;
  void empty_cache() override;
  Device device() const override { return device_; }

 private:
  // Everything below expects mutex_ to be held.
  Pool& pool(bool small) { return small ? small_pool_ : large_pool_; }
  Block* take_free(std::size_t size, bool small, StreamHandle stream);
  Block* new_segment(std::size_t bytes, bool small, StreamHandle stream);
  Block* grow(std::size_t nbytes, std::size_t size, bool small, StreamHandle stream);
  void split(Block* b, std::size_t size);
  void release(Block* b);
  void release_free_segments();
  void process_pending(bool wait);
  Block* live_block(void* p, const char* op) const;
  [[noreturn]] void throw_oom(std::size_t nbytes, std::size_t segment_bytes,
                             const char* note) const;

  std::unique_ptr<SegmentBackend> backend_;
  const Device device_;
  mutable std::mutex mutex_;
  Pool small_pool_;
  Pool large_pool_;
  std::unordered_map<void*, Block*> live_;   // by pointer: what deallocate accepts
  std::unordered_set<Block*> segments_;      // the first block of each segment
  std::list<PendingEvent> pending_;          // a list: entries finish in any order
  AllocatorStats stats_;
};

CachingAllocator::~CachingAllocator() {
  // Give pending blocks the chance to finish their streams' work before the
  // memory goes back; a failure here (a broken context) must not escape.
  try {
    process_pending(true);
  } catch (...) {
  }
  // Callers must not use blocks past the allocator's life (the global ones are
  // never destroyed), so every segment goes back, live blocks included.
  for (Block* head : segments_) {
    std::size_t bytes = 0;
    for (Block* b = head; b != nullptr;) {
      Block* next = b->next;
      bytes += b->size;
      if (b != head) delete b;
      b = next;
    }
    try {
      backend_->free(head->ptr, bytes);
    } catch (...) {
    }
    delete head;
  }
}

void* CachingAllocator::allocate(std::size_t nbytes, StreamHandle stream) {
  if (nbytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  if (nbytes > kMaxRequest) throw_oom(nbytes, 0, "more than any backend can hold");
  process_pending(false);

  const std::size_t size = round_up(nbytes, kRound);
  const bool small = size <= kSmallRequest;
  Block* b = take_free(size, small, stream);
  if (b != nullptr) {
    ++stats_.num_cache_hits;
  } else {
    b = grow(nbytes, size, small, stream);
  }
  split(b, size);

  live_.emplace(b->ptr, b);
  b->state = BlockState::Live;
  b->requested = nbytes;
  stats_.allocated_bytes += b->size;
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  stats_.requested_bytes += nbytes;
  ++stats_.num_allocs;
  return b->ptr;
}

void CachingAllocator::deallocate(void* p) {
  if (p == nullptr) return;  // what allocate(0) returns
  std::lock_guard<std::mutex> lock(mutex_);
  Block* b = live_block(p, "deallocate");

  // Events first: if recording one throws, nothing has changed yet.
  std::vector<Event> events;
  for (StreamHandle s : b->used_by) {
    events.emplace_back(device_);
    events.back().record(s);
  }

  live_.erase(b->ptr);
  stats_.allocated_bytes -= b->size;
  stats_.requested_bytes -= b->requested;
  ++stats_.num_frees;
  b->requested = 0;
  if (events.empty()) {
    release(b);
    return;
  }
  b->state = BlockState::Pending;
  b->pending_events = static_cast<int>(events.size());
  for (Event& e : events) pending_.push_back({std::move(e), b});
}

void CachingAllocator::record_stream(void* p, StreamHandle s) {
  if (p == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  Block* b = live_block(p, "record_stream");
  // The CPU has no streams; the block's own stream is ordered with itself.
  if (device_.is_cpu() || s == b->stream) return;
  if (std::find(b->used_by.begin(), b->used_by.end(), s) == b->used_by.end())
    b->used_by.push_back(s);
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_allocated_bytes = stats_.allocated_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  process_pending(false);
  release_free_segments();
}

Block* CachingAllocator::live_block(void* p, const char* op) const {
  const auto it = live_.find(p);
  CIUIC_CHECK(it != live_.end(), ValueError, op, "pointer ", p, " is not a live allocation of the ",
              device_, " allocator; expected a pointer it returned and that was not freed yet");
  return it->second;
}

// Removes and returns the smallest free block of the pool that fits and belongs
// to stream, or nullptr.
Block* CachingAllocator::take_free(std::size_t size, bool small, StreamHandle stream) {
  Pool& p = pool(small);
  Block key;
  key.stream = stream;
  key.size = size;
  const auto it = p.lower_bound(&key);  // key.ptr == nullptr sorts first among equal sizes
  if (it == p.end() || (*it)->stream != stream) return nullptr;
  Block* b = *it;
  p.erase(it);
  return b;
}

// A new segment as one block outside any pool, or nullptr when the backend has no memory.
Block* CachingAllocator::new_segment(std::size_t bytes, bool small, StreamHandle stream) {
  auto b = std::make_unique<Block>();  // before the backend call: nothing to undo if this throws
  void* p = backend_->alloc(bytes);
  if (p == nullptr) return nullptr;
  b->ptr = static_cast<char*>(p);
  b->size = bytes;
  b->stream = stream;
  b->small = small;
  segments_.insert(b.get());
  stats_.reserved_bytes += bytes;
  stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  ++stats_.num_segment_allocs;
  return b.release();
}

// Serves a request the pool could not: a new segment, and when the backend is
// out of memory, a second try after reclaiming everything the cache holds.
Block* CachingAllocator::grow(std::size_t nbytes, std::size_t size, bool small,
                              StreamHandle stream) {
  const std::size_t bytes = small ? kSmallSegment : round_up(size, kLargeSegmentRound);
  if (Block* b = new_segment(bytes, small, stream)) return b;
  ++stats_.num_ooms;

  // Blocks waiting on other streams are the cheapest memory to recover, and
  // one of them may fit as it is.
  process_pending(true);
  if (Block* b = take_free(size, small, stream)) {
    ++stats_.num_cache_hits;
    return b;
  }
  release_free_segments();
  if (Block* b = new_segment(bytes, small, stream)) return b;
  ++stats_.num_ooms;
  throw_oom(nbytes, bytes, "the cache was emptied and the request retried");
}

// Shrinks b to size when the remainder is worth keeping; the remainder goes to the pool.
void CachingAllocator::split(Block* b, std::size_t size) {
  const std::size_t rest = b->size - size;
  const bool worth_it = b->small ? rest >= kRound : rest > kLargeSplitRemainder;
  if (!worth_it) return;
  auto* r = new Block;
  r->ptr = b->ptr + size;
  r->size = rest;
  r->stream = b->stream;
  r->small = b->small;
  r->prev = b;
  r->next = b->next;
  if (r->next != nullptr) r->next->prev = r;
  b->next = r;
  b->size = size;
  pool(r->small).insert(r);
  ++stats_.num_splits;
}

// Makes b Free: merges it with free neighbours and puts the result in its pool.
void CachingAllocator::release(Block* b) {
  Pool& p = pool(b->small);
  b->state = BlockState::Free;
  b->used_by.clear();
  b->pending_events = 0;
  if (Block* n = b->next; n != nullptr && n->state == BlockState::Free) {
    p.erase(n);
    b->size += n->size;
    b->next = n->next;
    if (b->next != nullptr) b->next->prev = b;
    delete n;
  }
  if (Block* l = b->prev; l != nullptr && l->state == BlockState::Free) {
    p.erase(l);  // before its size, part of the pool's key, changes
    l->size += b->size;
    l->next = b->next;
    if (l->next != nullptr) l->next->prev = l;
    delete b;
    b = l;
  }
  p.insert(b);
}

// Returns every segment that is one free block to the backend.
void CachingAllocator::release_free_segments() {
  for (Pool* p : {&small_pool_, &large_pool_}) {
    for (auto it = p->begin(); it != p->end();) {
      Block* b = *it;
      if (!b->whole_segment()) {
        ++it;
        continue;
      }
      backend_->free(b->ptr, b->size);  // first: if it throws, the block is still pooled
      it = p->erase(it);
      segments_.erase(b);
      stats_.reserved_bytes -= b->size;
      ++stats_.num_segment_frees;
      delete b;
    }
  }
}

// Releases the pending blocks whose events have all completed; with wait, waits
// for all of them.
void CachingAllocator::process_pending(bool wait) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (wait) {
      it->event.synchronize();
    } else if (!it->event.query()) {
      ++it;
      continue;
    }
    Block* b = it->block;
    it = pending_.erase(it);
    if (--b->pending_events == 0) release(b);
  }
}

// segment_bytes: the segment the backend failed to provide (0: none was tried).
void CachingAllocator::throw_oom(std::size_t nbytes, std::size_t segment_bytes,
                                 const char* note) const {
  const std::string segment =
      segment_bytes == 0 ? "" : ", which needs a new segment of " + format_bytes(segment_bytes);
  const std::string capacity = backend_->capacity();
  detail::fail<OutOfMemory>("allocate", "out of memory on ", device_, ": requested ",
                            format_bytes(nbytes), " (", nbytes, " bytes)", segment, "; allocated ",
                            format_bytes(stats_.allocated_bytes), ", reserved ",
                            format_bytes(stats_.reserved_bytes), capacity.empty() ? "" : ", ",
                            capacity, " (", note, ")");
}

}  // namespace

std::string format_bytes(std::size_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < kKiB) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes) / kKiB;
  std::size_t unit = 0;
  while (v >= 1024.0 && unit + 1 < std::size(kUnits)) {
    v /= 1024.0;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", v, kUnits[unit]);
  return buf;
}

std::string AllocatorStats::str() const {
  return detail::concat(
      "allocated ", format_bytes(allocated_bytes), " (peak ", format_bytes(peak_allocated_bytes),
      "), reserved ", format_bytes(reserved_bytes), " (peak ", format_bytes(peak_reserved_bytes),
      "), requested ", format_bytes(requested_bytes), "; ", num_allocs, " allocs, ", num_frees,
      " frees, ", num_cache_hits, " cache hits, ", num_segment_allocs, " segment allocs, ",
      num_segment_frees, " segment frees, ", num_splits, " splits, ", num_ooms, " ooms");
}

std::unique_ptr<Allocator> make_caching_allocator(std::unique_ptr<SegmentBackend> backend) {
  CIUIC_CHECK(backend != nullptr, ValueError, "make_caching_allocator",
              "the backend is null; expected a SegmentBackend");
  return std::make_unique<CachingAllocator>(std::move(backend));
}

}  // namespace ciuic
