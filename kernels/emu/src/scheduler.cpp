// Executes one thread block: every CUDA thread is a fiber; the scheduler resumes the
// runnable ones in the schedule's order until each waits (at __syncthreads or a warp
// collective) or exits, then releases what can be released, and repeats.
//
// Rules enforced (each violation is a KernelFault naming kernel, block, thread, lines):
//   __syncthreads: completes when every live (not exited) thread of the block has arrived,
//     as PTX's bar.sync counts; arrivals from different statements are a divergent barrier.
//   warp collectives (__shfl*_sync, __ballot/any/all_sync, __syncwarp): the caller must be
//     in its mask; every lane of the mask must exist, be live, and arrive at a collective
//     of the same kind, mask and width; a shuffle may read only lanes of the mask.
//   no runnable thread while some wait: a deadlock, listing who waits where.
//   shared memory: static + dynamic bytes within the launch's limit.
#include <algorithm>
#include <cstring>
#include <new>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>

#include "block.h"

// The built-in variables (device.h).
thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace ciuic::emu {
namespace {

enum class TState : std::uint8_t { not_started, ready, running, at_barrier, at_warp, exited };

struct EmuThread {
  TState state = TState::not_started;
  uint3 tid{};
  int linear = 0;
  bctx::fcontext_t ctx = nullptr;  // where the fiber resumes
  FiberStack* stack = nullptr;
  void* fake_stack = nullptr;      // ASan's fake stack of this fiber while it is switched out
  SourceSite site{};       // where it waits
  // The warp collective it waits in.
  detail::WarpOp op{};
  unsigned mask = 0;
  int arg = 0, width = 32;
  std::uint64_t value = 0, result = 0;
};

// The lanes of one warp as bit masks (bit j: lane j), so that a collective's arrival is O(1).
struct WarpLanes {
  unsigned existing = 0;  // lanes the block has (a partial last warp has fewer than 32)
  unsigned waiting = 0;   // lanes waiting in a collective
  unsigned exited = 0;    // lanes whose thread has returned
};

struct SharedAlloc {
  const void* key;
  void* ptr;
  std::size_t bytes;
};

constexpr unsigned char kSharedPoison = 0xFF;  // NaN in every float format, -1 in integers

struct Block {
  const LaunchState& launch;
  uint3 bid{};
  std::vector<EmuThread> threads;
  int live = 0;
  int arrivals = 0;  // threads waiting at __syncthreads
  std::vector<WarpLanes> warps;            // per warp: which lanes wait in a collective, which exited
  std::vector<int> runnable;               // this round's threads, in schedule order
  std::size_t round_pos = 0;               // the entry of `runnable` running now
  std::vector<SharedAlloc> shared;
  std::size_t static_bytes = 0;
  void* dynamic = nullptr;
  std::string error;                // the first violation
  EmuThread* current = nullptr;
  bctx::fcontext_t sched_ctx = nullptr;
  void* sched_fake_stack = nullptr;
  const void* sched_bottom = nullptr;  // the OS thread's stack, for ASan's switch back
  std::size_t sched_size = 0;

  // The thread and warp vectors come from the OS thread's spares (a block's setup is per
  // launch x block: zero-filling fresh vectors every time was a tenth of the emulator's time).
  explicit Block(const LaunchState& l);
  ~Block();
};

struct SpareVectors {
  std::vector<EmuThread> threads;
  std::vector<WarpLanes> warps;
  std::vector<int> runnable;
};
thread_local SpareVectors t_spare;

Block::Block(const LaunchState& l) : launch(l) {
  threads.swap(t_spare.threads);
  warps.swap(t_spare.warps);
  runnable.swap(t_spare.runnable);
}

Block::~Block() {
  for (auto& s : shared) ::operator delete(s.ptr, std::align_val_t(128));
  if (dynamic) ::operator delete(dynamic, std::align_val_t(128));
  for (auto& t : threads) release_stack(t.stack);
  threads.swap(t_spare.threads);
  warps.swap(t_spare.warps);
  runnable.swap(t_spare.runnable);
}

thread_local Block* t_block = nullptr;

std::string where(const SourceSite& s) {
  std::ostringstream o;
  o << s.file << ':' << s.line;
  return o.str();
}

std::string thread_name(const uint3& t) {
  std::ostringstream o;
  o << "thread (" << t.x << ',' << t.y << ',' << t.z << ')';
  return o.str();
}

const char* op_name(detail::WarpOp op) {
  switch (op) {
    case detail::WarpOp::sync: return "__syncwarp";
    case detail::WarpOp::shfl_idx: return "__shfl_sync";
    case detail::WarpOp::shfl_up: return "__shfl_up_sync";
    case detail::WarpOp::shfl_down: return "__shfl_down_sync";
    case detail::WarpOp::shfl_xor: return "__shfl_xor_sync";
    case detail::WarpOp::ballot: return "__ballot_sync";
    case detail::WarpOp::any: return "__any_sync";
    case detail::WarpOp::all: return "__all_sync";
  }
  return "?";
}

// A violation found by a CUDA thread: thrown inside its fiber, caught at the fiber's
// entry, recorded as the block's error.
[[noreturn]] void fault(const std::string& msg) { throw KernelFault(msg); }

Block& require_block(const char* what) {
  if (t_block == nullptr || t_block->current == nullptr)
    throw KernelFault(std::string(what) + " called outside a kernel running on the emulated device");
  return *t_block;
}

// ---- Switching ------------------------------------------------------------------------------

void set_builtins(const Block& b, const EmuThread& t) {
  threadIdx = t.tid;
  blockIdx = b.bid;
  blockDim = b.launch.cfg.block;
  gridDim = b.launch.cfg.grid;
}

void check_exit_against_warp(Block& b, const EmuThread& gone);

// Runs CUDA threads on this fiber: the one it was started for and then, while each exits
// without waiting, the round's next threads that have not started, so a kernel without
// barriers or collectives costs one fiber per block round, not one per thread. A thread that
// waits keeps the fiber (and its stack) until it exits.
[[noreturn]] void fiber_entry(bctx::transfer_t from) {
  Block& b = *t_block;
  EmuThread* t = static_cast<EmuThread*>(from.data);
  b.sched_ctx = from.fctx;
  asan_finish_switch(nullptr, &b.sched_bottom, &b.sched_size);
  for (;;) {
    try {
      b.launch.body->run();
    } catch (const std::exception& e) {
      if (b.error.empty()) b.error = thread_name(t->tid) + ": " + e.what();
    } catch (...) {
      if (b.error.empty()) b.error = thread_name(t->tid) + ": a non-standard exception";
    }
    t->state = TState::exited;
    b.warps[static_cast<std::size_t>(t->linear / 32)].exited |= 1u << (t->linear % 32);
    --b.live;
    if (b.error.empty()) check_exit_against_warp(b, *t);
    if (!b.error.empty() || b.round_pos + 1 >= b.runnable.size()) break;
    EmuThread& next = b.threads[static_cast<std::size_t>(b.runnable[b.round_pos + 1])];
    if (next.state != TState::not_started) break;  // a waiting thread: the scheduler resumes it
    ++b.round_pos;
    next.stack = t->stack;  // the fiber's stack moves on with it
    t->stack = nullptr;
    next.state = TState::running;
    b.current = &next;
    set_builtins(b, next);
    t = &next;
  }
  asan_start_switch(nullptr, b.sched_bottom, b.sched_size);  // this fiber's fake stack dies
  bctx::jump_fcontext(b.sched_ctx, nullptr);
  __builtin_unreachable();  // the scheduler never resumes an exited fiber
}

// From a CUDA thread: back to the scheduler until released.
void wait_in_fiber(Block& b) {
  EmuThread& t = *b.current;
  asan_start_switch(&t.fake_stack, b.sched_bottom, b.sched_size);
  bctx::transfer_t back = bctx::jump_fcontext(b.sched_ctx, nullptr);
  b.sched_ctx = back.fctx;
  asan_finish_switch(t.fake_stack, &b.sched_bottom, &b.sched_size);
}

// From the scheduler: run thread t until it waits or exits.
void resume(Block& b, EmuThread& t) {
  if (t.state == TState::not_started) {
    t.stack = acquire_stack();
    t.ctx = bctx::make_fcontext(t.stack->top(), t.stack->size, fiber_entry);
  }
  t.state = TState::running;
  b.current = &t;
  set_builtins(b, t);
  asan_start_switch(&b.sched_fake_stack, t.stack->bottom, t.stack->size);
  bctx::transfer_t back = bctx::jump_fcontext(t.ctx, &t);
  asan_finish_switch(b.sched_fake_stack, nullptr, nullptr);
  EmuThread& last = *b.current;  // the fiber may have gone on to later threads of the round
  b.current = nullptr;
  last.ctx = back.fctx;
  if (last.state == TState::exited) {  // its stack serves the next fiber
    release_stack(last.stack);
    last.stack = nullptr;
  }
}

// ---- Barrier and warp rules -----------------------------------------------------------

void release_barrier(Block& b) {
  const EmuThread* first = nullptr;
  for (auto& t : b.threads) {
    if (t.state != TState::at_barrier) continue;
    if (first == nullptr) {
      first = &t;
    } else if (t.site.line != first->site.line || std::strcmp(t.site.file, first->site.file) != 0) {
      b.error = "divergent __syncthreads: " + thread_name(first->tid) + " waits at " + where(first->site) + " but " +
                thread_name(t.tid) + " at " + where(t.site) +
                " (every live thread of the block must reach the same barrier)";
      return;
    }
  }
  // Threads that exited without reaching this barrier: PTX's bar.sync then completes on the
  // live threads, but CUDA's rule is that a __syncthreads is reached by every thread of the
  // block (one in a branch some threads skip is undefined), so this is a divergent barrier.
  if (first != nullptr && b.live < static_cast<int>(b.threads.size())) {
    const EmuThread* gone = nullptr;
    for (const auto& t : b.threads)
      if (t.state == TState::exited) {
        gone = &t;
        break;
      }
    b.error = "divergent __syncthreads: " + thread_name(first->tid) + " waits at " + where(first->site) + " but " +
              std::to_string(b.threads.size() - static_cast<std::size_t>(b.live)) + " threads of the block (" +
              thread_name(gone->tid) + " first) exited without reaching it";
    return;
  }
  for (auto& t : b.threads)
    if (t.state == TState::at_barrier) t.state = TState::ready;
  b.arrivals = 0;
}

std::string describe_waits(const Block& b) {
  std::ostringstream o;
  int shown = 0;
  for (const auto& t : b.threads) {
    if (t.state != TState::at_barrier && t.state != TState::at_warp) continue;
    if (shown++ == 8) {
      o << "; ...";
      break;
    }
    o << (shown > 1 ? "; " : "") << thread_name(t.tid) << " waits at "
      << (t.state == TState::at_barrier ? "__syncthreads" : op_name(t.op)) << " (" << where(t.site) << ")";
    if (t.state == TState::at_warp) o << " mask 0x" << std::hex << t.mask << std::dec;
  }
  return o.str();
}

// A lane exited: any lane of its warp that waits on a mask naming it can never complete.
void check_exit_against_warp(Block& b, const EmuThread& gone) {
  if (b.warps[static_cast<std::size_t>(gone.linear / 32)].waiting == 0) return;
  const int lane = gone.linear % 32, base = gone.linear - lane;
  for (int j = 0; j < 32 && base + j < static_cast<int>(b.threads.size()); ++j) {
    const EmuThread& w = b.threads[base + j];
    if (w.state == TState::at_warp && (w.mask >> lane & 1u)) {
      b.error = thread_name(gone.tid) + " exited while " + thread_name(w.tid) + " waits for it in " + op_name(w.op) +
                " (" + where(w.site) + ") with mask 0x" + [&] {
                  std::ostringstream o;
                  o << std::hex << w.mask;
                  return o.str();
                }();
      return;
    }
  }
}

std::uint64_t shuffle_source(detail::WarpOp op, int lane, int arg, int width) {
  const int seg = lane & ~(width - 1), pos = lane & (width - 1);
  switch (op) {
    case detail::WarpOp::shfl_idx: return static_cast<std::uint64_t>(seg + (arg & (width - 1)));
    case detail::WarpOp::shfl_up: return static_cast<std::uint64_t>(pos - arg < 0 ? lane : lane - arg);
    case detail::WarpOp::shfl_down: return static_cast<std::uint64_t>(pos + arg >= width ? lane : lane + arg);
    case detail::WarpOp::shfl_xor: {
      const int src = lane ^ arg;
      return static_cast<std::uint64_t>(src >= seg + width || src > 31 ? lane : src);
    }
    default: return static_cast<std::uint64_t>(lane);
  }
}

// Every lane of the mask has arrived: check that they all execute this collective (once per
// collective, not per arrival), compute each lane's result and release the others.
void complete_warp(Block& b, int base, EmuThread& self) {
  const unsigned mask = self.mask;
  for (int j = 0; j < 32; ++j) {
    if (!(mask >> j & 1u)) continue;
    const EmuThread& t = b.threads[base + j];
    if (t.op != self.op || t.mask != mask || t.width != self.width) {
      std::ostringstream o;
      o << op_name(self.op) << " at " << where(self.site) << ": lane " << self.linear % 32 << " (mask 0x" << std::hex
        << mask << ") meets lane " << std::dec << j << " waiting in " << op_name(t.op) << " at " << where(t.site)
        << " with mask 0x" << std::hex << t.mask << std::dec << " width " << t.width
        << ": the lanes of a mask must execute the same collective";
      fault(o.str());
    }
  }
  b.warps[static_cast<std::size_t>(base / 32)].waiting &= ~mask;
  unsigned ballot = 0;
  for (int j = 0; j < 32; ++j)
    if ((mask >> j & 1u) && b.threads[base + j].value != 0) ballot |= 1u << j;
  for (int j = 0; j < 32; ++j) {
    if (!(mask >> j & 1u)) continue;
    EmuThread& t = b.threads[base + j];
    switch (self.op) {
      case detail::WarpOp::sync: t.result = 0; break;
      case detail::WarpOp::ballot: t.result = ballot; break;
      case detail::WarpOp::any: t.result = ballot != 0; break;
      case detail::WarpOp::all: t.result = ballot == mask; break;
      default: {
        const std::uint64_t src = shuffle_source(self.op, j, t.arg, t.width);
        if (!(mask >> src & 1u)) {
          std::ostringstream o;
          o << op_name(self.op) << " at " << where(t.site) << ": lane " << j << " reads lane " << src
            << ", which is not in the mask 0x" << std::hex << mask << " (its value is undefined on a GPU)";
          fault(o.str());
        }
        t.result = b.threads[base + static_cast<int>(src)].value;
      }
    }
    if (&t != &self) t.state = TState::ready;
  }
}

}  // namespace

namespace detail {

void syncthreads(SourceSite at) {
  Block& b = require_block("__syncthreads");
  EmuThread& t = *b.current;
  t.state = TState::at_barrier;
  t.site = at;
  ++b.arrivals;
  wait_in_fiber(b);
}

std::uint64_t warp_collective(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width, SourceSite at) {
  Block& b = require_block(op_name(op));
  EmuThread& self = *b.current;
  const int lane = self.linear % 32, base = self.linear - lane;
  // Built only on a violation: a shuffle is the emulator's hottest call.
  auto who = [&] {
    std::ostringstream o;
    o << op_name(op) << " at " << where(at) << ": lane " << lane << " of warp " << self.linear / 32 << " ";
    return o.str();
  };
  auto hex = [](unsigned m) {
    std::ostringstream h;
    h << "0x" << std::hex << m;
    return h.str();
  };
  if (!(mask >> lane & 1u)) fault(who() + "is not in its own mask " + hex(mask));
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    fault(who() + "passes width " + std::to_string(width) + "; expected a power of two from 1 to 32");
  WarpLanes& w = b.warps[static_cast<std::size_t>(self.linear / 32)];
  if (const unsigned missing = mask & ~w.existing; missing != 0)
    fault(who() + "names lane " + std::to_string(__builtin_ctz(missing)) + " in mask " + hex(mask) +
          ", which does not exist (the block has " + std::to_string(b.threads.size()) + " threads)");
  if (const unsigned gone = mask & w.exited; gone != 0)
    fault(who() + "names lane " + std::to_string(__builtin_ctz(gone)) + " in mask " + hex(mask) + ", which has exited");
  // Lanes already waiting agreed with the first of them when they arrived; comparing with
  // that one is enough here (complete_warp checks every lane once more).
  if (const unsigned others = mask & w.waiting; others != 0) {
    const int j = __builtin_ctz(others);
    const EmuThread& other = b.threads[base + j];
    if (other.op != op || other.mask != mask || other.width != width)
      fault(who() + "(mask " + hex(mask) + ") meets lane " + std::to_string(j) + " waiting in " + op_name(other.op) +
            " at " + where(other.site) + " with mask " + hex(other.mask) +
            ": the lanes of a mask must execute the same collective");
  }
  self.op = op;
  self.mask = mask;
  self.value = value;
  self.arg = arg;
  self.width = width;
  self.site = at;
  if (((w.waiting | 1u << lane) & mask) == mask) {
    complete_warp(b, base, self);
    return self.result;
  }
  self.state = TState::at_warp;
  w.waiting |= 1u << lane;
  wait_in_fiber(b);
  return self.result;
}

void* block_shared(const void* key, std::size_t bytes, std::size_t align, SourceSite at) {
  Block& b = require_block("a __shared__ declaration");
  for (const auto& s : b.shared)
    if (s.key == key) return s.ptr;
  b.static_bytes += bytes;
  const std::size_t used = b.static_bytes + b.launch.cfg.smem;
  if (used > b.launch.smem_total_limit)
    fault("__shared__ declaration at " + where(at) + " brings the block to " + std::to_string(b.static_bytes) +
          " bytes of static + " + std::to_string(b.launch.cfg.smem) + " bytes of dynamic shared memory; the limit is " +
          std::to_string(b.launch.smem_total_limit) + " bytes" +
          (b.launch.smem_opted_in ? " (the device's opt-in maximum)"
                                  : " (48 KiB without cudaFuncAttributeMaxDynamicSharedMemorySize)"));
  if (align > 128) fault("__shared__ declaration at " + where(at) + " asks for alignment above 128 bytes");
  void* p = ::operator new(bytes, std::align_val_t(128));
  std::memset(p, kSharedPoison, bytes);
  b.shared.push_back({key, p, bytes});
  return p;
}

void* block_dynamic_shared(std::size_t align) {
  Block& b = require_block("extern __shared__");
  (void)align;  // 128 >= any alignment device.h lets through
  return b.dynamic;
}

}  // namespace detail

void run_block(const LaunchState& launch, std::uint64_t linear) {
  const dim3 g = launch.cfg.grid, bd = launch.cfg.block;
  Block b(launch);
  b.bid = {static_cast<unsigned>(linear % g.x), static_cast<unsigned>(linear / g.x % g.y),
           static_cast<unsigned>(linear / (static_cast<std::uint64_t>(g.x) * g.y))};
  const int n = static_cast<int>(bd.x * bd.y * bd.z);
  if (b.threads.size() < static_cast<std::size_t>(n)) b.threads.resize(static_cast<std::size_t>(n));
  b.threads.erase(b.threads.begin() + n, b.threads.end());  // no reallocation: size only shrinks
  {
    uint3 tid{0, 0, 0};
    for (int i = 0; i < n; ++i) {
      EmuThread& t = b.threads[static_cast<std::size_t>(i)];
      t.state = TState::not_started;
      t.linear = i;
      t.tid = tid;
      t.ctx = nullptr;
      t.stack = nullptr;
      t.fake_stack = nullptr;
      if (++tid.x == bd.x) {
        tid.x = 0;
        if (++tid.y == bd.y) tid.y = 0, ++tid.z;
      }
    }
  }
  b.warps.assign(static_cast<std::size_t>((n + 31) / 32), WarpLanes{});
  for (std::size_t w = 0; w < b.warps.size(); ++w) {
    const int lanes = std::min(32, n - static_cast<int>(w) * 32);
    b.warps[w].existing = lanes == 32 ? ~0u : (1u << lanes) - 1;
  }
  b.live = n;
  b.dynamic = ::operator new(launch.cfg.smem, std::align_val_t(128));
  std::memset(b.dynamic, kSharedPoison, launch.cfg.smem);

  Block* const outer = t_block;
  t_block = &b;
  struct Restore {
    Block* outer;
    ~Restore() { t_block = outer; }
  } restore{outer};

  const Schedule& sched = launch.schedule;
  // Seeded per launch and block; built only for the random schedule (its state is 2.5 KB).
  std::optional<std::mt19937_64> rng;
  if (sched.kind == Schedule::random)
    rng.emplace(sched.seed ^ (launch.launch_index * 0x9E3779B97F4A7C15ull) ^ (linear * 0xBF58476D1CE4E5B9ull));
  std::vector<int>& runnable = b.runnable;
  runnable.reserve(static_cast<std::size_t>(n));
  for (;;) {
    runnable.clear();
    for (int i = 0; i < n; ++i) {
      const TState s = b.threads[static_cast<std::size_t>(i)].state;
      if (s == TState::not_started || s == TState::ready) runnable.push_back(i);
    }
    if (runnable.empty()) {
      if (b.live == 0) break;
      if (b.arrivals == b.live) {
        release_barrier(b);
        if (!b.error.empty()) break;
        continue;
      }
      b.error = "deadlock: no thread can run; " + describe_waits(b);
      break;
    }
    if (sched.kind == Schedule::reverse) std::reverse(runnable.begin(), runnable.end());
    else if (sched.kind == Schedule::random) std::shuffle(runnable.begin(), runnable.end(), *rng);
    // The fibers advance round_pos themselves when they run several threads in a row.
    for (b.round_pos = 0; b.round_pos < runnable.size(); ++b.round_pos) {
      EmuThread& t = b.threads[static_cast<std::size_t>(runnable[b.round_pos])];
      if (t.state != TState::not_started && t.state != TState::ready) continue;  // released earlier this round
      resume(b, t);
      if (!b.error.empty()) break;
    }
    if (!b.error.empty()) break;
  }
  if (!b.error.empty()) {
    std::ostringstream o;
    o << "kernel " << launch.cfg.name << " (launched at " << where(launch.cfg.at) << ", grid (" << g.x << ',' << g.y
      << ',' << g.z << "), block (" << bd.x << ',' << bd.y << ',' << bd.z << ")): block (" << b.bid.x << ','
      << b.bid.y << ',' << b.bid.z << "): " << b.error;
    throw KernelFault(o.str());
  }
}

}  // namespace ciuic::emu

// wmma's hooks (mma.h).
namespace nvcuda::wmma::detail {

void check_tile_pointer(const void* p, unsigned ldm, std::size_t elem_bytes, const char* what) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  if (addr % 32 != 0) {
    std::ostringstream o;
    o << what << ": pointer " << p << " is not 32-byte aligned (CUDA requires it)";
    throw ciuic::emu::KernelFault(o.str());
  }
  const unsigned multiple = elem_bytes == 2 ? 8 : 4;
  if (ldm % multiple != 0) {
    std::ostringstream o;
    o << what << ": ldm " << ldm << " is not a multiple of " << multiple << " elements (CUDA requires it)";
    throw ciuic::emu::KernelFault(o.str());
  }
}

unsigned lane_in_warp() {
  if (ciuic::emu::t_block == nullptr || ciuic::emu::t_block->current == nullptr)
    throw ciuic::emu::KernelFault("wmma called outside a kernel running on the emulated device");
  return static_cast<unsigned>(ciuic::emu::t_block->current->linear % 32);
}

}  // namespace nvcuda::wmma::detail
