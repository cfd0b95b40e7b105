// Devices, streams, events and the GPU caching allocator. The [cuda] cases skip
// without a GPU; the others check what a machine without one must report.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "ciuic/allocator.h"
#include "ciuic/device.h"
#include "ciuic/error.h"
#include "ciuic/stream.h"
#include "test_util.h"

#ifdef CIUIC_WITH_CUDA
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#endif

using namespace ciuic;

namespace {

// The reason check_device_usable gives on a machine without a usable GPU.
const char* no_gpu_reason() {
  return built_with_cuda() ? "no CUDA GPU is available" : "this build has no CUDA";
}

}  // namespace

TEST_CASE("device: without a GPU, CUDA requests throw a clear DeviceError", "[device]") {
  CHECK(cuda_available() == (cuda_device_count() > 0));
  if (cuda_available()) return;  // the [cuda] cases below cover this machine
  CHECK(cuda_device_count() == 0);
  CHECK_THROWS_WITH_ALL(cuda_allocator(0), DeviceError, "cuda_allocator", "cuda:0",
                        no_gpu_reason());
  CHECK_THROWS_WITH_ALL(allocator_for(Device::cuda(0)), DeviceError, "cuda:0");
  CHECK_THROWS_WITH_ALL(Stream::create(Device::cuda(0)), DeviceError, "Stream::create", "cuda:0",
                        no_gpu_reason());
  CHECK_THROWS_WITH_ALL(Stream::default_stream(), DeviceError, "Stream::default_stream");
  CHECK_THROWS_WITH_ALL(Event(Device::cuda(0)), DeviceError, "Event", "cuda:0");
  CHECK_THROWS_WITH_ALL(synchronize(Device::cuda(0)), DeviceError, "synchronize");
  CHECK_THROWS_WITH_ALL(DeviceGuard(Device::cuda(0)), DeviceError, "DeviceGuard");
  CHECK_THROWS_WITH_ALL(set_current_stream(Device::cuda(0), nullptr), DeviceError,
                        "set_current_stream");
  if (!built_with_cuda()) {
    CHECK_THROWS_WITH_ALL(check_device_usable(Device::cuda(0), "my_op"), DeviceError, "my_op",
                          "configure with -Dcuda=enabled");
  }
}

TEST_CASE("device: the CPU is always usable", "[device]") {
  check_device_usable(Device::cpu(), "op");
  { DeviceGuard guard(Device::cpu()); }
  synchronize(Device::cpu());
  CHECK(current_stream(Device::cpu()) == nullptr);
  set_current_stream(Device::cpu(), nullptr);
  CHECK_THROWS_AS(set_current_stream(Device::cpu(), reinterpret_cast<StreamHandle>(0x1)),
                  DeviceError);
  // CPU streams and events are trivial: all CPU work is done when a call returns.
  Stream s = Stream::create(Device::cpu());
  CHECK(s.handle() == nullptr);
  s.synchronize();
  { StreamGuard guard(s); CHECK(current_stream(Device::cpu()) == nullptr); }
  Event e(Device::cpu());
  e.record(nullptr);
  CHECK(e.query());
  e.synchronize();
  CHECK_THROWS_AS(e.elapsed_ms(e), DeviceError);
}

TEST_CASE("device: out-of-range GPU indices name the count", "[device]") {
  const int n = cuda_device_count();
  if (n == 0) return;
  CHECK_THROWS_WITH_ALL(check_device_usable(Device::cuda(n), "op"), DeviceError, "op",
                        "out of range");
  CHECK_THROWS_WITH_ALL(cuda_allocator(-1), DeviceError, "index -1 out of range");
}

#ifdef CIUIC_WITH_CUDA
// Runs without a GPU too: the checks only format statuses.
TEST_CASE("cuda_check: failures carry the call, place, code and description", "[cuda_check]") {
  CHECK_THROWS_WITH_ALL([] { CIUIC_CUDA_CHECK(cudaErrorInvalidValue); }(), CudaError,
                        "cudaErrorInvalidValue", "CUDA error 1", "test_cuda_alloc.cpp:",
                        "invalid argument");
  // Without a driver the runtime's initialisation error is sticky: nothing clears it.
  const bool clearable = cuda_available();
  if (clearable) CHECK(cudaGetLastError() == cudaSuccess);
  CHECK_THROWS_WITH_ALL([] { CIUIC_CUDA_CHECK(cudaSetDevice(100000)); }(), CudaError,
                        "cudaSetDevice(100000)");
  if (clearable) CHECK(cudaGetLastError() == cudaSuccess);  // the failure was cleared
  CHECK_THROWS_WITH_ALL([] { CIUIC_CUBLAS_CHECK(1); }(), CudaError, "cuBLAS error 1",
                        "CUBLAS_STATUS_NOT_INITIALIZED");
  CHECK_NOTHROW([] { CIUIC_CUBLAS_CHECK(0); }());
#ifdef CIUIC_WITH_CUDNN
  CHECK_THROWS_WITH_ALL([] { CIUIC_CUDNN_CHECK(2000); }(), CudaError, "cuDNN error 2000");
#endif
#ifdef CIUIC_WITH_NCCL
  CHECK_THROWS_WITH_ALL([] { CIUIC_NCCL_CHECK(4); }(), CudaError, "NCCL error 4");
#endif
}

namespace {

// Blocks a stream until released, with cudaLaunchHostFunc: a stream that
// provably has unfinished work, without any kernel. Releases on destruction so
// a failing test never leaves the stream stuck.
class StreamGate {
 public:
  explicit StreamGate(StreamHandle s) : stream_(static_cast<cudaStream_t>(s)) {
    CIUIC_CUDA_CHECK(cudaLaunchHostFunc(stream_, &StreamGate::wait, &open_));
  }
  // Waits for the stream so the host function never reads a dead flag.
  ~StreamGate() {
    open();
    if (cudaStreamSynchronize(stream_) != cudaSuccess) (void)cudaGetLastError();
  }
  void open() { open_.store(true); }

 private:
  static void CUDART_CB wait(void* flag) {
    while (!static_cast<std::atomic<bool>*>(flag)->load())
      std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  cudaStream_t stream_;
  std::atomic<bool> open_{false};
};

}  // namespace

TEST_CASE("cuda alloc: reuse, stats and empty_cache", "[cuda]") {
  CIUIC_REQUIRE_GPU();
  Allocator& a = cuda_allocator(0);
  CHECK(&allocator_for(Device::cuda(0)) == &a);
  CHECK(a.device() == Device::cuda(0));
  // Streams come from a pool that earlier tests used too: release every cached segment, so
  // that this stream's first block needs a new one.
  Stream s = Stream::create();
  a.empty_cache();
  const AllocatorStats s0 = a.stats();

  void* p = a.allocate(1000, s.handle());
  CHECK(reinterpret_cast<std::uintptr_t>(p) % 256 == 0);
  AllocatorStats s1 = a.stats();
  CHECK(s1.allocated_bytes == s0.allocated_bytes + 1024);
  CHECK(s1.requested_bytes == s0.requested_bytes + 1000);
  CHECK(s1.num_segment_allocs == s0.num_segment_allocs + 1);
  CHECK(s1.reserved_bytes == s0.reserved_bytes + 2 * 1024 * 1024);

  a.deallocate(p);
  void* q = a.allocate(1000, s.handle());
  CHECK(q == p);
  CHECK(a.stats().num_cache_hits == s1.num_cache_hits + 1);
  CHECK(a.stats().num_segment_allocs == s1.num_segment_allocs);
  a.deallocate(q);

  a.empty_cache();
  const AllocatorStats s2 = a.stats();
  CHECK(s2.allocated_bytes == s0.allocated_bytes);
  CHECK(s2.num_segment_frees > s1.num_segment_frees);
  CHECK(s2.reserved_bytes <= s0.reserved_bytes);
}

TEST_CASE("cuda alloc: a memcpy round trip through allocator memory", "[cuda]") {
  CIUIC_REQUIRE_GPU();
  Allocator& a = cuda_allocator(0);
  std::vector<float> in(100000), out(in.size(), 0.0f);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i) * 0.5f;
  const std::size_t bytes = in.size() * sizeof(float);
  void* d = a.allocate(bytes);
  CIUIC_CUDA_CHECK(cudaMemcpy(d, in.data(), bytes, cudaMemcpyHostToDevice));
  CIUIC_CUDA_CHECK(cudaMemcpy(out.data(), d, bytes, cudaMemcpyDeviceToHost));
  CHECK(out == in);
  a.deallocate(d);
}

TEST_CASE("cuda alloc: blocks belong to the stream they were allocated on", "[cuda]") {
  CIUIC_REQUIRE_GPU();
  Allocator& a = cuda_allocator(0);
  Stream s1 = Stream::create(), s2 = Stream::create();
  void* p = a.allocate(4096, s1.handle());
  a.deallocate(p);
  void* q = a.allocate(4096, s2.handle());
  CHECK(q != p);  // p is cached for s1 only
  void* r = a.allocate(4096, s1.handle());
  CHECK(r == p);
  a.deallocate(q);
  a.deallocate(r);
}

TEST_CASE("cuda alloc: record_stream delays reuse until the other stream is done", "[cuda]") {
  CIUIC_REQUIRE_GPU();
  Allocator& a = cuda_allocator(0);
  Stream s1 = Stream::create(), s2 = Stream::create();
  void* p = a.allocate(4096, s1.handle());
  {
    StreamGate gate(s2.handle());  // s2 now has unfinished work
    CIUIC_CUDA_CHECK(cudaMemsetAsync(p, 0, 4096, static_cast<cudaStream_t>(s2.handle())));
    a.record_stream(p, s2.handle());
    const std::size_t allocated = a.stats().allocated_bytes;
    a.deallocate(p);
    CHECK(a.stats().allocated_bytes == allocated - 4096);
    void* q = a.allocate(4096, s1.handle());
    CHECK(q != p);  // p waits for s2
    a.deallocate(q);
    gate.open();
    s2.synchronize();
  }
  void* r = a.allocate(4096, s1.handle());
  CHECK(r == p);  // the event completed: p is back in s1's pool
  a.deallocate(r);
  CHECK_THROWS_AS(a.record_stream(r, s2.handle()), ValueError);
}

TEST_CASE("cuda alloc: out of memory names the device and what is free", "[cuda]") {
  CIUIC_REQUIRE_GPU();
  Allocator& a = cuda_allocator(0);
  const std::uint64_t ooms = a.stats().num_ooms;
  CHECK_THROWS_WITH_ALL(a.allocate(std::size_t{1} << 50), OutOfMemory, "out of memory on cuda:0",
                        "requested 1.00 PiB", "GPU free");
  CHECK(a.stats().num_ooms == ooms + 2);
  void* p = a.allocate(1 << 20);
  CHECK(p != nullptr);
  a.deallocate(p);
}

TEST_CASE("cuda stream: create, events, timing, synchronize", "[cuda]") {
  CIUIC_REQUIRE_GPU();
  Stream s = Stream::create(Device::cuda(0));
  CHECK(s.handle() != nullptr);
  CHECK(s.device() == Device::cuda(0));
  Event start(Device::cuda(0), true), stop(Device::cuda(0), true);
  Allocator& a = cuda_allocator(0);
  const std::size_t bytes = 64 << 20;
  void* d = a.allocate(bytes, s.handle());
  start.record(s.handle());
  CIUIC_CUDA_CHECK(cudaMemsetAsync(d, 1, bytes, static_cast<cudaStream_t>(s.handle())));
  stop.record(s.handle());
  stop.synchronize();
  CHECK(start.query());
  CHECK(stop.query());
  CHECK(stop.elapsed_ms(stop) == 0.0f);
  CHECK(start.elapsed_ms(stop) >= 0.0f);
  a.deallocate(d);

  // wait_on orders another stream after the event.
  Stream other = Stream::create();
  stop.wait_on(other.handle());
  other.synchronize();
  s.synchronize();
  synchronize(Device::cuda(0));

  // A stream gated by a host function is observably unfinished.
  Event pending(Device::cuda(0));
  {
    StreamGate gate(s.handle());
    pending.record(s.handle());
    CHECK_FALSE(pending.query());
    CHECK(cudaGetLastError() == cudaSuccess);  // "not ready" leaves no error behind
    gate.open();
    pending.synchronize();
  }
  CHECK(pending.query());

  // Moves transfer ownership; non-timing events cannot time.
  Stream moved = std::move(s);
  CHECK(s.handle() == nullptr);
  CHECK(moved.handle() != nullptr);
  Stream borrowed = moved.borrow();
  CHECK(borrowed.handle() == moved.handle());
  Event e2 = std::move(pending);
  CHECK(e2.handle() != nullptr);
  CHECK_THROWS_AS(pending.record(nullptr), ValueError);
  CHECK_THROWS_AS(e2.elapsed_ms(e2), CudaError);

  Stream def = Stream::default_stream();
  CHECK(def.handle() == nullptr);
  def.synchronize();
}

TEST_CASE("cuda stream: StreamGuard sets and restores the current stream", "[cuda]") {
  CIUIC_REQUIRE_GPU();
  const Device d = Device::cuda(0);
  CHECK(current_stream(d) == nullptr);
  Stream s1 = Stream::create(d), s2 = Stream::create(d);
  {
    StreamGuard g1(s1);
    CHECK(current_stream(d) == s1.handle());
    {
      StreamGuard g2(s2);
      CHECK(current_stream(d) == s2.handle());
    }
    CHECK(current_stream(d) == s1.handle());
    // The current stream is per thread.
    StreamHandle seen = reinterpret_cast<StreamHandle>(0x1);
    std::thread([&] { seen = current_stream(d); }).join();
    CHECK(seen == nullptr);
  }
  CHECK(current_stream(d) == nullptr);
}

TEST_CASE("cuda device: DeviceGuard switches and restores the current device", "[cuda]") {
  CIUIC_REQUIRE_GPU();
  int before = -1;
  CIUIC_CUDA_CHECK(cudaGetDevice(&before));
  const int target = cuda_device_count() > 1 ? 1 : 0;
  {
    DeviceGuard guard(Device::cuda(target));
    int now = -1;
    CIUIC_CUDA_CHECK(cudaGetDevice(&now));
    CHECK(now == target);
  }
  int after = -1;
  CIUIC_CUDA_CHECK(cudaGetDevice(&after));
  CHECK(after == before);
}
#endif  // CIUIC_WITH_CUDA
