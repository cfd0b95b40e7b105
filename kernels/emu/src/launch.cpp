// Kernel launches on the emulated device: the configuration is checked on the calling
// host thread, as a GPU's launch checks it (a bad one sets the thread's last error and
// runs nothing); the grid then runs in stream order. The blocks of a grid are spread over
// the stream's worker and a pool of OS threads (CIUIC_EMU_BLOCK_THREADS, default 2), in
// whatever order those threads claim them, so inter-block races can show.
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <sstream>
#include <thread>

#include "block.h"

namespace ciuic::emu {

namespace {

Schedule schedule_from_env() {
  Schedule r;
  const char* env = std::getenv("CIUIC_EMU_ORDER");
  if (env == nullptr || std::strcmp(env, "forward") == 0) return r;
  if (std::strcmp(env, "reverse") == 0) {
    r.kind = Schedule::reverse;
  } else if (std::strncmp(env, "random", 6) == 0) {
    r.kind = Schedule::random;
    if (env[6] == ':') r.seed = std::strtoull(env + 7, nullptr, 10);
  } else {
    set_sticky_error(cudaErrorInvalidValue,
                     std::string("CIUIC_EMU_ORDER=") + env + ": expected forward, reverse, random or random:SEED");
  }
  return r;
}

std::mutex g_schedule_mutex;
Schedule& current_schedule() {
  static Schedule s = schedule_from_env();
  return s;
}

}  // namespace

Schedule schedule() {
  std::lock_guard<std::mutex> lock(g_schedule_mutex);
  return current_schedule();
}

void set_schedule(Schedule s) {
  std::lock_guard<std::mutex> lock(g_schedule_mutex);
  current_schedule() = s;
}

namespace {

// The blocks of one launch, claimed one at a time by the runners.
struct Grid {
  LaunchState launch;
  std::uint64_t total = 0;
  std::atomic<std::uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex m;
  std::condition_variable cv;
  std::uint64_t done = 0;  // claimed blocks finished (run or skipped after a failure)
  std::string error;

  // Claims and runs blocks until none is left. Every index is claimed exactly once and
  // counted in `done`, so the launcher's wait (done == total) ends whoever claims.
  void run_blocks() {
    for (;;) {
      const std::uint64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= total) return;
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          run_block(launch, i);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(m);
          if (!failed.exchange(true)) error = e.what();
        }
      }
      std::lock_guard<std::mutex> lock(m);
      if (++done == total) cv.notify_all();
    }
  }
};

// Helpers that join whichever grid is running. A helper that finds its grid finished
// returns at once; it holds the grid by shared_ptr, so a late one touches nothing freed.
class BlockPool {
 public:
  static BlockPool& get() {
    static BlockPool* p = new BlockPool();  // never destroyed: helpers may be mid-wait at exit
    return *p;
  }
  void help(const std::shared_ptr<Grid>& g, int helpers) {
    std::lock_guard<std::mutex> lock(m_);
    for (int i = 0; i < helpers; ++i) queue_.push_back(g);
    cv_.notify_all();
  }
  int size() const { return count_; }

 private:
  BlockPool() {
    int n = 1;
    if (const char* env = std::getenv("CIUIC_EMU_BLOCK_THREADS")) n = std::max(1, std::atoi(env)) - 1;
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); }).detach();
    threads_.shrink_to_fit();
    count_ = n;
  }
  void loop() {
    for (;;) {
      std::shared_ptr<Grid> g;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return !queue_.empty(); });
        g = std::move(queue_.front());
        queue_.pop_front();
      }
      g->run_blocks();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Grid>> queue_;
  std::vector<std::thread> threads_;
  int count_ = 0;
};

std::atomic<std::uint64_t> g_launches{0};

std::string dims(const dim3& d) {
  std::ostringstream o;
  o << '(' << d.x << ',' << d.y << ',' << d.z << ')';
  return o.str();
}

// The launch checks a GPU makes before running anything; "" when the launch is valid.
std::string config_error(const detail::LaunchConfig& c, const DeviceProfile& p, std::size_t dyn_limit,
                         cudaError_t& code) {
  const dim3 g = c.grid, b = c.block;
  const unsigned gd[3] = {g.x, g.y, g.z}, bd[3] = {b.x, b.y, b.z};
  code = cudaErrorInvalidConfiguration;
  for (int i = 0; i < 3; ++i) {
    if (gd[i] == 0 || gd[i] > static_cast<unsigned>(p.max_grid_dim[i]))
      return "grid " + dims(g) + " is outside the device's limits (1.." + std::to_string(p.max_grid_dim[0]) + ", 1.." +
             std::to_string(p.max_grid_dim[1]) + ", 1.." + std::to_string(p.max_grid_dim[2]) + ")";
    if (bd[i] == 0 || bd[i] > static_cast<unsigned>(p.max_block_dim[i]))
      return "block " + dims(b) + " is outside the device's limits (1.." + std::to_string(p.max_block_dim[0]) +
             ", 1.." + std::to_string(p.max_block_dim[1]) + ", 1.." + std::to_string(p.max_block_dim[2]) + ")";
  }
  if (static_cast<std::uint64_t>(b.x) * b.y * b.z > static_cast<std::uint64_t>(p.max_threads_per_block))
    return "block " + dims(b) + " has more than " + std::to_string(p.max_threads_per_block) + " threads";
  if (c.smem > dyn_limit) {
    code = cudaErrorInvalidValue;
    return std::to_string(c.smem) + " bytes of dynamic shared memory exceed the kernel's limit of " +
           std::to_string(dyn_limit) + " bytes (raise it with cudaFuncSetAttribute up to the device's " +
           std::to_string(p.smem_per_block_optin) + ")";
  }
  return "";
}

}  // namespace

namespace detail {

void submit(const LaunchConfig& cfg, std::shared_ptr<const ThreadBody> body) {
  const DeviceProfile& p = profile();
  const std::size_t attr = max_dynamic_smem(cfg.fn);
  const std::size_t dyn_limit = attr != 0 ? attr : p.smem_per_block;
  cudaError_t code = cudaSuccess;
  const std::string bad = config_error(cfg, p, dyn_limit, code);
  if (!bad.empty()) {
    set_last_error(code, std::string("kernel ") + cfg.name + " launched at " + cfg.at.file + ":" +
                             std::to_string(cfg.at.line) + ": " + bad);
    return;
  }
  auto grid = std::make_shared<Grid>();
  grid->launch = LaunchState{cfg, std::move(body), attr != 0 ? p.smem_per_block_optin : p.smem_per_block, attr != 0,
                             g_launches.fetch_add(1, std::memory_order_relaxed), schedule()};
  grid->total = static_cast<std::uint64_t>(cfg.grid.x) * cfg.grid.y * cfg.grid.z;
  const cudaError_t e = enqueue(
      cfg.stream,
      [grid] {
        BlockPool& pool = BlockPool::get();
        if (grid->total > 1 && pool.size() > 0)
          pool.help(grid, static_cast<int>(std::min<std::uint64_t>(grid->total - 1, static_cast<std::uint64_t>(pool.size()))));
        grid->run_blocks();
        std::unique_lock<std::mutex> lock(grid->m);
        grid->cv.wait(lock, [&] { return grid->done == grid->total; });
        if (grid->failed) throw KernelFault(grid->error);
      },
      cfg.name);
  if (e != cudaSuccess)
    set_last_error(e, std::string("kernel ") + cfg.name + " launched at " + cfg.at.file + ":" +
                          std::to_string(cfg.at.line) + ": the stream refused the launch");
}

}  // namespace detail

}  // namespace ciuic::emu
