// Streams and events of the emulated device.
//
// Model: every stream is an in-order queue of Tasks drained by its own OS thread, so
// streams run concurrently with each other and with the host, as on a GPU. Progress
// is counted: a stream's n-th pushed task has run once completed >= n, and a Ticket
// (stream, n) names one point of one queue. Everything that waits (host
// synchronisation, a stream waiting for an event, the legacy stream's implicit
// barriers) waits for tickets, with condition variables, never by polling.
//
// Invariants:
// - Every push (and every read of another stream's progress that decides a push: the
//   legacy default stream's implicit ordering, cudaStreamWaitEvent, cudaEventRecord)
//   happens under one process-wide mutex, Table::order, so concurrent host threads
//   see one total order of submissions. A task only ever waits for tickets that were
//   pushed before it, so the waits form no cycle and streams cannot deadlock among
//   themselves.
//   Lock order: Table::order, then a Stream's or an Event's mutex; workers never
//   take Table::order.
// - The legacy default stream (nullptr, cudaStreamLegacy) has its own worker. A task
//   pushed onto it is preceded by a wait for the work already queued on every blocking
//   stream (created without cudaStreamNonBlocking, destroyed-but-draining ones
//   included); a task pushed onto a blocking stream is preceded by a wait for the
//   legacy stream's work queued so far. Non-blocking streams ignore the legacy stream.
// - cudaStreamPerThread is simplified to ONE more blocking stream, shared by all host
//   threads (a real per-thread default stream is blocking too, but one per thread).
// - Under a sticky error, user tasks are skipped and control tasks (event markers,
//   waits, stream-ordered frees) still run: queues always drain, so no wait hangs.
// - cudaStreamDestroy never blocks or joins: the worker drains what was queued and
//   exits on its own. Workers are detached from the start; the Stream object lives
//   as long as its worker or any Ticket needs it (shared_ptr). The Table is leaked on
//   purpose: at process exit idle workers sleep on condition variables that must never
//   be destroyed under them, and joining in a static destructor could hang on a stream
//   the program left blocked. A program that exits without synchronising may still have
//   a worker running its work during static destruction (as a GPU keeps running it):
//   whatever stream work touches should be leaked the same way.
// - Waiting from a worker thread (inside stream work) is refused with
//   cudaErrorNotPermitted instead of deadlocking, as CUDA forbids API calls there.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ciuic_emu/engine.h"
#include "runtime_internal.h"

namespace ciuic::emu::rt {
namespace {
thread_local const Stream* t_worker_of = nullptr;  // the stream whose worker this thread is
}  // namespace

class Stream {
 public:
  explicit Stream(bool blocking) : blocking_(blocking) {}
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Starts the detached worker; it owns a reference, so the Stream outlives it.
  static void start(const std::shared_ptr<Stream>& self) {
    std::thread([self] { self->run(); }).detach();
  }

  bool blocking() const { return blocking_; }

  std::uint64_t push(Task t) {
    std::uint64_t n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(t));
      n = ++pushed_;
    }
    has_work_.notify_one();
    return n;
  }

  // The ticket of the last task pushed so far, or 0 when every pushed task has run
  // (nothing to wait for).
  std::uint64_t pending_tail() const {
    std::lock_guard<std::mutex> lock(mu_);
    return completed_ < pushed_ ? pushed_ : 0;
  }

  bool reached(std::uint64_t n) const {
    std::lock_guard<std::mutex> lock(mu_);
    return completed_ >= n;
  }

  void wait_until(std::uint64_t n) const {
    std::unique_lock<std::mutex> lock(mu_);
    progressed_.wait(lock, [&] { return completed_ >= n; });
  }

  // After this the worker exits once the queue is empty.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    has_work_.notify_one();
  }

  bool finished() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_ && completed_ == pushed_;
  }

 private:
  void run() {
    t_worker_of = this;
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        has_work_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) break;  // stopping, and drained
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      execute(task);
      task = Task{};  // release captures (buffers, tickets) before reporting progress
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++completed_;
      }
      progressed_.notify_all();
    }
  }

  static void execute(Task& task) {
    if (!task.control && sticky_code() != cudaSuccess) return;  // skipped: the device has faulted
    try {
      task.fn();
    } catch (const std::exception& e) {
      set_sticky_error(cudaErrorLaunchFailure, e.what());
    } catch (...) {
      set_sticky_error(cudaErrorLaunchFailure, task.what + ": threw something that is not a std::exception");
    }
  }

  const bool blocking_;
  mutable std::mutex mu_;
  std::condition_variable has_work_;            // the worker waits for tasks or stop()
  mutable std::condition_variable progressed_;  // waiters wait for completed_ to grow
  std::deque<Task> queue_;
  std::uint64_t pushed_ = 0;     // tasks ever pushed
  std::uint64_t completed_ = 0;  // tasks run or skipped, always a prefix of the pushed ones
  bool stopping_ = false;
};

namespace {

struct Event {
  explicit Event(unsigned f) : flags(f) {}
  const unsigned flags;
  std::mutex mu;                 // guards everything below
  std::uint64_t recorded = 0;    // generation of the latest cudaEventRecord (0: never recorded)
  std::uint64_t completed = 0;   // the highest generation whose marker has run
  std::chrono::steady_clock::time_point stamp{};  // when generation `completed` ran
  Ticket where;                  // the latest record's place in its stream
};

struct Table {
  std::mutex order;  // see the header comment; guards every member below
  std::shared_ptr<Stream> legacy, per_thread;  // created on first use
  std::unordered_map<cudaStream_t, std::shared_ptr<Stream>> live;
  std::vector<std::shared_ptr<Stream>> draining;  // destroyed, possibly with work queued
  std::unordered_map<cudaEvent_t, std::shared_ptr<Event>> events;
};

Table& table() {
  static Table* t = new Table;  // leaked on purpose (see the header comment)
  return *t;
}

std::shared_ptr<Stream> new_stream(bool blocking) {
  auto s = std::make_shared<Stream>(blocking);
  Stream::start(s);
  return s;
}

bool is_legacy(cudaStream_t s) { return s == nullptr || s == cudaStreamLegacy; }

// The stream a handle names, or nullptr. Table::order held.
std::shared_ptr<Stream> resolve(Table& t, cudaStream_t s) {
  if (is_legacy(s)) {
    if (!t.legacy) t.legacy = new_stream(true);
    return t.legacy;
  }
  if (s == cudaStreamPerThread) {
    if (!t.per_thread) t.per_thread = new_stream(true);
    return t.per_thread;
  }
  const auto it = t.live.find(s);
  return it == t.live.end() ? nullptr : it->second;
}

// Every stream that may still have work, destroyed ones included. Table::order held.
std::vector<std::shared_ptr<Stream>> all_streams(Table& t) {
  std::erase_if(t.draining, [](const std::shared_ptr<Stream>& s) { return s->finished(); });
  std::vector<std::shared_ptr<Stream>> out(t.draining);
  if (t.legacy) out.push_back(t.legacy);
  if (t.per_thread) out.push_back(t.per_thread);
  for (const auto& [h, s] : t.live) out.push_back(s);
  return out;
}

// The points a new task on `target` must wait for under the legacy stream's rules.
// Table::order held.
std::vector<Ticket> implicit_dependencies(Table& t, const std::shared_ptr<Stream>& target) {
  std::vector<Ticket> deps;
  if (target == t.legacy) {
    for (auto& s : all_streams(t))
      if (s != target && s->blocking())
        if (const std::uint64_t n = s->pending_tail()) deps.push_back({s, n});
  } else if (target->blocking() && t.legacy) {
    if (const std::uint64_t n = t.legacy->pending_tail()) deps.push_back({t.legacy, n});
  }
  return deps;
}

Task wait_task(std::vector<Ticket> deps) {
  Task w;
  w.control = true;
  w.what = "stream wait";
  w.fn = [deps = std::move(deps)] {
    for (const Ticket& d : deps) d.stream->wait_until(d.n);
  };
  return w;
}

// Pushes task after its implicit dependencies. Table::order held.
Ticket push_ordered(Table& t, const std::shared_ptr<Stream>& target, Task task) {
  if (auto deps = implicit_dependencies(t, target); !deps.empty()) target->push(wait_task(std::move(deps)));
  return {target, target->push(std::move(task))};
}

// What "everything queued on s before now" means: for the legacy stream, its own work
// and, through its implicit barrier, the blocking streams' work. Table::order held.
std::vector<Ticket> sync_points(Table& t, const std::shared_ptr<Stream>& s) {
  std::vector<Ticket> points;
  if (const std::uint64_t n = s->pending_tail()) points.push_back({s, n});
  if (s == t.legacy)
    for (auto& d : implicit_dependencies(t, s)) points.push_back(std::move(d));
  return points;
}

cudaError_t wait_points(const std::vector<Ticket>& points, const char* api) {
  if (on_worker_thread())
    return fail(cudaErrorNotPermitted, std::string(api) + ": called from stream work (a host function or kernel), "
                                                          "where CUDA calls are not permitted");
  for (const Ticket& p : points) p.stream->wait_until(p.n);
  return sticky_code();
}

std::vector<Ticket> everything_queued() {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.order);
  std::vector<Ticket> points;
  for (auto& s : all_streams(t))
    if (const std::uint64_t n = s->pending_tail()) points.push_back({s, n});
  return points;
}

std::shared_ptr<Event> find_event(Table& t, cudaEvent_t e) {
  const auto it = t.events.find(e);
  return it == t.events.end() ? nullptr : it->second;
}

cudaError_t bad_stream(const char* api) {
  return fail(cudaErrorInvalidResourceHandle, std::string(api) + ": not a live stream of the emulated device");
}

cudaError_t bad_event(const char* api) {
  return fail(cudaErrorInvalidResourceHandle, std::string(api) + ": not a live event of the emulated device");
}

// Drains every queue (skipped work drains quickly under a sticky error) and drops the
// sticky error. On a worker thread it cannot wait, so it only drops the error.
void drain_and_forget() {
  if (!on_worker_thread())
    for (const Ticket& p : everything_queued()) p.stream->wait_until(p.n);
  forget_sticky_error();
}

}  // namespace

// ---- runtime_internal.h -------------------------------------------------------------

bool on_worker_thread() { return t_worker_of != nullptr; }

cudaError_t check_stream(cudaStream_t s, const char* api) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.order);
  return resolve(t, s) ? cudaSuccess : bad_stream(api);
}

cudaError_t submit(cudaStream_t s, Task task, Ticket* at) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.order);
  const std::shared_ptr<Stream> target = resolve(t, s);
  if (!target) return bad_stream(task.what.c_str());
  Ticket ticket = push_ordered(t, target, std::move(task));
  if (at) *at = std::move(ticket);
  return cudaSuccess;
}

cudaError_t wait_host(const Ticket& ticket) { return wait_points({ticket}, "synchronising copy"); }

cudaError_t wait_all() { return wait_points(everything_queued(), "cudaDeviceSynchronize"); }

}  // namespace ciuic::emu::rt

// ---- engine.h ---------------------------------------------------------------------------

namespace ciuic::emu {

cudaError_t enqueue(cudaStream_t stream, std::function<void()> work, const char* what) {
  return rt::guarded("enqueue", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    rt::Task task;
    task.fn = std::move(work);
    task.what = what ? what : "stream work";
    return rt::submit(stream, std::move(task));
  });
}

void clear_sticky_error() {
  try {
    rt::drain_and_forget();
  } catch (...) {
    rt::forget_sticky_error();  // a testing hook must not throw; only the drain could
  }
}

}  // namespace ciuic::emu

using namespace ciuic::emu;
using rt::guarded;

// ---- the CUDA runtime API: streams ---------------------------------------------------------

cudaError_t CUDARTAPI cudaStreamCreateWithPriority(cudaStream_t* pStream, unsigned int flags, int /*priority*/) {
  return guarded("cudaStreamCreate", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (pStream == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaStreamCreate: pStream is null");
    if ((flags & ~static_cast<unsigned>(cudaStreamNonBlocking)) != 0)
      return rt::fail(cudaErrorInvalidValue, "cudaStreamCreate: unknown flags " + std::to_string(flags));
    // Priorities only reorder work between streams on a GPU; every stream here has its
    // own thread, so there is nothing to reorder.
    std::shared_ptr<rt::Stream> s = rt::new_stream((flags & cudaStreamNonBlocking) == 0);
    const auto handle = reinterpret_cast<cudaStream_t>(s.get());
    rt::Table& t = rt::table();
    std::lock_guard<std::mutex> lock(t.order);
    t.live.emplace(handle, std::move(s));
    *pStream = handle;
    return cudaSuccess;
  });
}

cudaError_t CUDARTAPI cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int flags) {
  return cudaStreamCreateWithPriority(pStream, flags, 0);
}

cudaError_t CUDARTAPI cudaStreamCreate(cudaStream_t* pStream) { return cudaStreamCreateWithPriority(pStream, 0, 0); }

cudaError_t CUDARTAPI cudaStreamDestroy(cudaStream_t stream) {
  return guarded("cudaStreamDestroy", [&] {
    if (!rt::profile_usable()) return rt::api_begin();
    rt::Table& t = rt::table();
    {
      std::lock_guard<std::mutex> lock(t.order);
      const auto it = t.live.find(stream);
      if (it == t.live.end()) return rt::bad_stream("cudaStreamDestroy");
      it->second->stop();
      t.draining.push_back(std::move(it->second));
      t.live.erase(it);
    }
    // Released even under a sticky error, which is still reported.
    return rt::sticky_code();
  });
}

cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t stream) {
  return guarded("cudaStreamSynchronize", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    std::vector<rt::Ticket> points;
    {
      rt::Table& t = rt::table();
      std::lock_guard<std::mutex> lock(t.order);
      const auto s = rt::resolve(t, stream);
      if (!s) return rt::bad_stream("cudaStreamSynchronize");
      points = rt::sync_points(t, s);
    }
    return rt::wait_points(points, "cudaStreamSynchronize");
  });
}

cudaError_t CUDARTAPI cudaStreamQuery(cudaStream_t stream) {
  return guarded("cudaStreamQuery", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    rt::Table& t = rt::table();
    std::lock_guard<std::mutex> lock(t.order);
    const auto s = rt::resolve(t, stream);
    if (!s) return rt::bad_stream("cudaStreamQuery");
    // "Not ready" is recorded as the last error, as the runtime does (callers clear it).
    return rt::sync_points(t, s).empty() ? cudaSuccess : rt::fail(cudaErrorNotReady);
  });
}

cudaError_t CUDARTAPI cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  return guarded("cudaStreamWaitEvent", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if ((flags & ~static_cast<unsigned>(cudaEventWaitExternal)) != 0)
      return rt::fail(cudaErrorInvalidValue, "cudaStreamWaitEvent: unknown flags " + std::to_string(flags));
    rt::Table& t = rt::table();
    std::lock_guard<std::mutex> lock(t.order);
    const auto s = rt::resolve(t, stream);
    if (!s) return rt::bad_stream("cudaStreamWaitEvent");
    const auto ev = rt::find_event(t, event);
    if (!ev) return rt::bad_event("cudaStreamWaitEvent");
    rt::Ticket latest;
    {
      std::lock_guard<std::mutex> elock(ev->mu);
      if (ev->recorded == 0) return cudaSuccess;  // never recorded: nothing to wait for (as documented)
      latest = ev->where;  // the record current now; later re-records do not move this wait
    }
    rt::push_ordered(t, s, rt::wait_task({std::move(latest)}));
    return cudaSuccess;
  });
}

cudaError_t CUDARTAPI cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* userData) {
  return guarded("cudaLaunchHostFunc", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (fn == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaLaunchHostFunc: fn is null");
    rt::Task task;
    task.fn = [fn, userData] { fn(userData); };
    task.what = "cudaLaunchHostFunc";
    return rt::submit(stream, std::move(task));
  });
}

// ---- the CUDA runtime API: device-wide ------------------------------------------------------

cudaError_t CUDARTAPI cudaDeviceSynchronize(void) {
  return guarded("cudaDeviceSynchronize", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    return rt::wait_all();
  });
}

// Lets queued work finish (skipped if the device has faulted), then forgets the sticky
// error and the calling thread's last error. Unlike a GPU's reset it frees nothing and
// keeps streams, events and function attributes: enough for a test to recover.
cudaError_t CUDARTAPI cudaDeviceReset(void) {
  return guarded("cudaDeviceReset", [&] {
    if (!rt::profile_usable()) return rt::api_begin();
    if (rt::on_worker_thread())
      return rt::fail(cudaErrorNotPermitted, "cudaDeviceReset: called from stream work");
    rt::drain_and_forget();
    (void)cudaGetLastError();
    return cudaSuccess;
  });
}

// ---- the CUDA runtime API: events -----------------------------------------------------------

cudaError_t CUDARTAPI cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  return guarded("cudaEventCreate", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (event == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaEventCreate: event is null");
    constexpr unsigned known = cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess;
    if ((flags & ~known) != 0 || ((flags & cudaEventInterprocess) && !(flags & cudaEventDisableTiming)))
      return rt::fail(cudaErrorInvalidValue, "cudaEventCreate: invalid flags " + std::to_string(flags));
    auto ev = std::make_shared<rt::Event>(flags);
    const auto handle = reinterpret_cast<cudaEvent_t>(ev.get());
    rt::Table& t = rt::table();
    std::lock_guard<std::mutex> lock(t.order);
    t.events.emplace(handle, std::move(ev));
    *event = handle;
    return cudaSuccess;
  });
}

cudaError_t CUDARTAPI cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

// A pending record still completes after the destroy (its marker holds the event).
cudaError_t CUDARTAPI cudaEventDestroy(cudaEvent_t event) {
  return guarded("cudaEventDestroy", [&] {
    if (!rt::profile_usable()) return rt::api_begin();
    {
      rt::Table& t = rt::table();
      std::lock_guard<std::mutex> lock(t.order);
      if (t.events.erase(event) == 0) return rt::bad_event("cudaEventDestroy");
    }
    return rt::sticky_code();  // released even under a sticky error, which is still reported
  });
}

cudaError_t CUDARTAPI cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  return guarded("cudaEventRecord", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    rt::Table& t = rt::table();
    std::lock_guard<std::mutex> lock(t.order);
    const auto ev = rt::find_event(t, event);
    if (!ev) return rt::bad_event("cudaEventRecord");
    const auto s = rt::resolve(t, stream);
    if (!s) return rt::bad_stream("cudaEventRecord");
    std::uint64_t generation;
    {
      std::lock_guard<std::mutex> elock(ev->mu);
      generation = ++ev->recorded;  // from now on the event is incomplete until this marker runs
    }
    rt::Task marker;
    marker.control = true;
    marker.what = "cudaEventRecord";
    marker.fn = [ev, generation] {
      const auto now = std::chrono::steady_clock::now();
      std::lock_guard<std::mutex> elock(ev->mu);
      // Records on different streams may complete out of order; an older one must
      // not overwrite a newer one's completion or timestamp.
      if (generation > ev->completed) {
        ev->completed = generation;
        ev->stamp = now;
      }
    };
    rt::Ticket at = rt::push_ordered(t, s, std::move(marker));
    std::lock_guard<std::mutex> elock(ev->mu);
    ev->where = std::move(at);
    return cudaSuccess;
  });
}

cudaError_t CUDARTAPI cudaEventQuery(cudaEvent_t event) {
  return guarded("cudaEventQuery", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    std::shared_ptr<rt::Event> ev;
    {
      rt::Table& t = rt::table();
      std::lock_guard<std::mutex> lock(t.order);
      ev = rt::find_event(t, event);
    }
    if (!ev) return rt::bad_event("cudaEventQuery");
    std::lock_guard<std::mutex> elock(ev->mu);
    // Never recorded counts as complete (documented). "Not ready" is recorded as the
    // last error, as the runtime does.
    return ev->completed == ev->recorded ? cudaSuccess : rt::fail(cudaErrorNotReady);
  });
}

cudaError_t CUDARTAPI cudaEventSynchronize(cudaEvent_t event) {
  return guarded("cudaEventSynchronize", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    rt::Ticket latest;
    {
      rt::Table& t = rt::table();
      std::lock_guard<std::mutex> lock(t.order);
      const auto ev = rt::find_event(t, event);
      if (!ev) return rt::bad_event("cudaEventSynchronize");
      std::lock_guard<std::mutex> elock(ev->mu);
      if (ev->recorded == 0) return cudaSuccess;
      latest = ev->where;
    }
    return rt::wait_points({latest}, "cudaEventSynchronize");
  });
}

cudaError_t CUDARTAPI cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  return guarded("cudaEventElapsedTime", [&] {
    if (const cudaError_t e = rt::api_begin(); e != cudaSuccess) return e;
    if (ms == nullptr) return rt::fail(cudaErrorInvalidValue, "cudaEventElapsedTime: ms is null");
    std::shared_ptr<rt::Event> a, b;
    {
      rt::Table& t = rt::table();
      std::lock_guard<std::mutex> lock(t.order);
      a = rt::find_event(t, start);
      b = rt::find_event(t, end);
    }
    if (!a || !b) return rt::bad_event("cudaEventElapsedTime");
    if ((a->flags | b->flags) & cudaEventDisableTiming)
      return rt::fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event was created with "
                                                      "cudaEventDisableTiming");
    // Both events locked together (std::lock avoids lock-order inversion); start and
    // end may be the same event.
    std::unique_lock<std::mutex> la(a->mu, std::defer_lock), lb(b->mu, std::defer_lock);
    if (a == b) la.lock(); else std::lock(la, lb);
    if (a->recorded == 0 || b->recorded == 0)
      return rt::fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event was never recorded");
    if (a->completed != a->recorded || b->completed != b->recorded) return rt::fail(cudaErrorNotReady);
    *ms = std::chrono::duration<float, std::milli>(b->stamp - a->stamp).count();
    return cudaSuccess;
  });
}
