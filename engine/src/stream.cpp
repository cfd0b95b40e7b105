// Streams, events and the per-thread current stream.
//
// CPU "streams" and "events" are trivial: work on the CPU has finished when the
// call that issued it returns, so they have null handles, recording is a no-op
// and a query is always true. CUDA ones check the device first, so a CPU-only
// build or machine gets a DeviceError naming the operation.
#include "ciuic/stream.h"

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "ciuic/error.h"
#include "ciuic/host_sync.h"

#ifdef CIUIC_WITH_CUDA
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#endif

namespace ciuic {
namespace {

#ifndef CIUIC_WITH_CUDA
// Reached only for a CUDA device in a build without CUDA, where
// check_device_usable always throws; the second throw keeps the compiler and
// any future change honest.
[[noreturn]] void no_cuda(const Device& d, const char* op) {
  check_device_usable(d, op);
  detail::fail<DeviceError>(op, "cannot use ", d, ": this build has no CUDA");
}
#else
cudaStream_t as_cuda(StreamHandle s) { return static_cast<cudaStream_t>(s); }

cudaEvent_t live_event(void* h, const char* op) {
  CIUIC_CHECK(h != nullptr, ValueError, op, "the event has been moved from");
  return static_cast<cudaEvent_t>(h);
}
#endif

// Destructors must not throw: a failure to destroy a handle leaks it at worst,
// and the error is cleared so that it is not blamed on a later call.
void destroy_stream(StreamHandle s) noexcept {
#ifdef CIUIC_WITH_CUDA
  if (s != nullptr && cudaStreamDestroy(as_cuda(s)) != cudaSuccess) (void)cudaGetLastError();
#else
  (void)s;
#endif
}

void destroy_event(void* e) noexcept {
#ifdef CIUIC_WITH_CUDA
  if (e != nullptr && cudaEventDestroy(static_cast<cudaEvent_t>(e)) != cudaSuccess)
    (void)cudaGetLastError();
#else
  (void)e;
#endif
}

#ifdef CIUIC_WITH_CUDA
// Stream::create hands out the streams of a per-device pool, round-robin, as
// PyTorch does. Pooled streams are never destroyed: the caching allocator's blocks
// and the GEMM workspace are keyed by the raw cudaStream_t, and a destroyed handle
// would either be recycled by the driver for a new stream (which would then reuse
// blocks and the workspace while the old stream's kernels may still run: a race)
// or strand them (a leak per stream). With a pool, such caches stay valid and are
// bounded by kStreamPoolSize per device. Created lazily, on first use of a device.
constexpr std::size_t kStreamPoolSize = 32;

struct StreamPool {
  std::once_flag once;
  std::array<cudaStream_t, kStreamPoolSize> streams{};
  std::atomic<std::size_t> next{0};
};

StreamPool& stream_pool(const Device& d) {
  static std::mutex mu;
  static auto* pools = new std::map<int, std::unique_ptr<StreamPool>>;  // never destroyed (see above)
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*pools)[d.index];
  if (!slot) slot = std::make_unique<StreamPool>();
  return *slot;
}

cudaStream_t pooled_stream(const Device& d) {
  StreamPool& pool = stream_pool(d);
  std::call_once(pool.once, [&] {
    DeviceGuard guard(d);  // a stream belongs to the device current at creation
    for (auto& s : pool.streams)
      // Non-blocking: no implicit synchronisation with the legacy default stream.
      CIUIC_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  });
  return pool.streams[pool.next.fetch_add(1) % kStreamPoolSize];
}
#endif

// This thread's current stream of each CUDA device, by device index; devices
// past the end have never been set and use the default stream (nullptr).
// Thread-local like the CUDA current device, so threads never race on it.
std::vector<StreamHandle>& current_streams() {
  thread_local std::vector<StreamHandle> streams;
  return streams;
}

// Assumes d.index was validated; used by StreamGuard's destructor, which must not throw.
void store_current_stream(const Device& d, StreamHandle s) noexcept {
  auto& streams = current_streams();
  if (static_cast<std::size_t>(d.index) < streams.size()) streams[d.index] = s;
}

}  // namespace

// ---- Stream -----------------------------------------------------------------

Stream Stream::default_stream(Device d) {
  check_device_usable(d, "Stream::default_stream");
  return Stream(nullptr, d, false);
}

Stream Stream::create(Device d) {
  if (d.is_cpu()) return Stream(nullptr, d, false);
  check_device_usable(d, "Stream::create");
#ifdef CIUIC_WITH_CUDA
  return Stream(pooled_stream(d), d, false);  // pooled: never destroyed, see stream_pool
#else
  no_cuda(d, "Stream::create");
#endif
}

Stream::~Stream() {
  if (owned_) destroy_stream(handle_);
}

Stream::Stream(Stream&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)),
      device_(o.device_),
      owned_(std::exchange(o.owned_, false)) {}

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    if (owned_) destroy_stream(handle_);
    handle_ = std::exchange(o.handle_, nullptr);
    device_ = o.device_;
    owned_ = std::exchange(o.owned_, false);
  }
  return *this;
}

void Stream::synchronize() const {
  if (device_.is_cpu()) {
    check_device_errors(device_);
    return;
  }
  check_device_usable(device_, "Stream::synchronize");
#ifdef CIUIC_WITH_CUDA
  DeviceGuard guard(device_);  // the null stream means the current device's default stream
  detail::count_sync();
  CIUIC_CUDA_CHECK(cudaStreamSynchronize(as_cuda(handle_)));
  check_device_errors(device_);
#else
  no_cuda(device_, "Stream::synchronize");
#endif
}

// ---- Event ------------------------------------------------------------------

Event::Event(Device d, bool timing) : device_(d) {
  if (d.is_cpu()) return;
  check_device_usable(d, "Event");
#ifdef CIUIC_WITH_CUDA
  DeviceGuard guard(d);
  cudaEvent_t e = nullptr;
  CIUIC_CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  handle_ = e;
#else
  (void)timing;
  no_cuda(d, "Event");
#endif
}

Event::~Event() { destroy_event(handle_); }

Event::Event(Event&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)), device_(o.device_) {}

Event& Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    destroy_event(handle_);
    handle_ = std::exchange(o.handle_, nullptr);
    device_ = o.device_;
  }
  return *this;
}

void Event::record(StreamHandle s) {
  if (device_.is_cpu()) return;
#ifdef CIUIC_WITH_CUDA
  // An event must be recorded on a stream of its own device; the guard makes a
  // null s mean that device's default stream.
  DeviceGuard guard(device_);
  CIUIC_CUDA_CHECK(cudaEventRecord(live_event(handle_, "Event::record"), as_cuda(s)));
#else
  (void)s;
  no_cuda(device_, "Event::record");
#endif
}

void Event::synchronize() const {
  if (device_.is_cpu()) return;
#ifdef CIUIC_WITH_CUDA
  detail::count_sync();
  CIUIC_CUDA_CHECK(cudaEventSynchronize(live_event(handle_, "Event::synchronize")));
#else
  no_cuda(device_, "Event::synchronize");
#endif
}

bool Event::query() const {
  if (device_.is_cpu()) return true;
#ifdef CIUIC_WITH_CUDA
  const cudaError_t status = cudaEventQuery(live_event(handle_, "Event::query"));
  if (status == cudaSuccess) return true;
  if (status == cudaErrorNotReady) {
    // "Not ready" is an answer, not a failure, but the runtime still records
    // it as the last error; clear it so a later launch check is not fooled.
    (void)cudaGetLastError();
    return false;
  }
  CIUIC_CUDA_CHECK(status);
  return false;  // unreachable: the check above throws
#else
  no_cuda(device_, "Event::query");
#endif
}

void Event::wait_on(StreamHandle s) const {
  if (device_.is_cpu()) return;
#ifdef CIUIC_WITH_CUDA
  DeviceGuard guard(device_);  // a null s means this device's default stream
  CIUIC_CUDA_CHECK(cudaStreamWaitEvent(as_cuda(s), live_event(handle_, "Event::wait_on"), 0));
#else
  (void)s;
  no_cuda(device_, "Event::wait_on");
#endif
}

float Event::elapsed_ms(const Event& end) const {
  CIUIC_CHECK(device_.is_cuda() && end.device_.is_cuda(), DeviceError, "Event::elapsed_ms",
              "CPU events record no time; got ", device_, " and ", end.device_,
              "; expected two CUDA events created with timing=true");
#ifdef CIUIC_WITH_CUDA
  float ms = 0.0f;
  CIUIC_CUDA_CHECK(cudaEventElapsedTime(&ms, live_event(handle_, "Event::elapsed_ms"),
                                        live_event(end.handle_, "Event::elapsed_ms")));
  return ms;
#else
  no_cuda(device_, "Event::elapsed_ms");
#endif
}

// ---- current stream -----------------------------------------------------------

StreamHandle current_stream(Device d) {
  if (d.is_cpu()) return nullptr;
  if (d.index < 0) check_device_usable(d, "current_stream");  // throws: bad index
  const auto& streams = current_streams();
  return static_cast<std::size_t>(d.index) < streams.size() ? streams[d.index] : nullptr;
}

void set_current_stream(Device d, StreamHandle s) {
  if (d.is_cpu()) {
    CIUIC_CHECK(s == nullptr, DeviceError, "set_current_stream",
                "the CPU has no streams; got a non-null stream for cpu");
    return;
  }
  check_device_usable(d, "set_current_stream");
  auto& streams = current_streams();
  if (static_cast<std::size_t>(d.index) >= streams.size()) streams.resize(d.index + 1, nullptr);
  streams[d.index] = s;
}

StreamGuard::StreamGuard(const Stream& s) : device_(s.device()), previous_(current_stream(device_)) {
  set_current_stream(device_, s.handle());
}

StreamGuard::~StreamGuard() {
  if (device_.is_cuda()) store_current_stream(device_, previous_);
}

void synchronize(Device d) {
  if (d.is_cpu()) {
    check_device_errors(d);
    return;
  }
  check_device_usable(d, "synchronize");
#ifdef CIUIC_WITH_CUDA
  DeviceGuard guard(d);
  detail::count_sync();
  CIUIC_CUDA_CHECK(cudaDeviceSynchronize());
  check_device_errors(d);
#else
  no_cuda(d, "synchronize");
#endif
}

}  // namespace ciuic
