// [emu] The emulated device's host-side CUDA runtime (kernels/emu/src/runtime_*.cpp):
// errors (per-thread last error, sticky error, names), device profiles and
// queries, the memory registry, streams (real asynchrony, legacy default-stream
// ordering), events, and the documented host-synchronisation rules of copies.
//
// Unfinished stream work is made observable with a Gate: a host function that
// blocks its stream until the test opens it. Waits use condition variables, and the
// only sleeps are delays that a missing dependency would expose (no timed assertions
// beyond the lower bound a sleep guarantees). Every test leaves the device clean:
// gates opened, streams synchronised and destroyed, the sticky error cleared.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ciuic_emu/engine.h"

using namespace ciuic::emu;

namespace {

// Blocks a stream, from the point where it is created, until open().
class Gate {
 public:
  explicit Gate(cudaStream_t s) : stream_(s) { REQUIRE(cudaLaunchHostFunc(s, &Gate::hold, this) == cudaSuccess); }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
  ~Gate() {
    open();
    if (cudaStreamSynchronize(stream_) != cudaSuccess) (void)cudaGetLastError();
  }
  void open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  static void CUDART_CB hold(void* self) {
    auto* g = static_cast<Gate*>(self);
    std::unique_lock<std::mutex> lock(g->mu_);
    g->cv_.wait(lock, [&] { return g->open_; });
  }
  cudaStream_t stream_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

struct Stream {
  explicit Stream(unsigned flags = cudaStreamDefault) { REQUIRE(cudaStreamCreateWithFlags(&s, flags) == cudaSuccess); }
  ~Stream() {
    if (cudaStreamSynchronize(s) != cudaSuccess || cudaStreamDestroy(s) != cudaSuccess) (void)cudaGetLastError();
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t s = nullptr;
};

struct DeviceBuffer {
  explicit DeviceBuffer(std::size_t n) : bytes(n) { REQUIRE(cudaMalloc(&p, n) == cudaSuccess); }
  ~DeviceBuffer() {
    if (cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  unsigned char* bytes_ptr() const { return static_cast<unsigned char*>(p); }
  void* p = nullptr;
  std::size_t bytes;
};

struct PinnedBuffer {
  explicit PinnedBuffer(std::size_t n, unsigned flags = cudaHostAllocDefault) {
    REQUIRE(cudaHostAlloc(&p, n, flags) == cudaSuccess);
  }
  ~PinnedBuffer() {
    if (cudaFreeHost(p) != cudaSuccess) (void)cudaGetLastError();
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  unsigned char* bytes_ptr() const { return static_cast<unsigned char*>(p); }
  void* p = nullptr;
};

// Restores the environment's profile and a clean device whatever a test did.
struct CleanDevice {
  ~CleanDevice() {
    select_profile(nullptr);
    (void)cudaDeviceReset();
    (void)cudaGetLastError();
  }
};

bool all_bytes(const void* p, std::size_t n, unsigned char v) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != v) return false;
  return true;
}

std::vector<unsigned char> read_back(const void* device, std::size_t n) {
  std::vector<unsigned char> out(n, 0);
  REQUIRE(cudaMemcpy(out.data(), device, n, cudaMemcpyDeviceToHost) == cudaSuccess);
  return out;
}

bool all_bytes(const std::vector<unsigned char>& v, unsigned char b) { return all_bytes(v.data(), v.size(), b); }

void CUDART_CB sleep_20ms(void*) { std::this_thread::sleep_for(std::chrono::milliseconds(20)); }
void CUDART_CB set_flag(void* flag) { static_cast<std::atomic<bool>*>(flag)->store(true); }

}  // namespace

TEST_CASE("emu runtime: every cudaError_t has its enumerator's name and a description", "[emu]") {
  int named = 0;
  for (int code = 0; code < 1100; ++code) {
    const std::string name = cudaGetErrorName(static_cast<cudaError_t>(code));
    const std::string text = cudaGetErrorString(static_cast<cudaError_t>(code));
    if (name == "unrecognized error code") {
      CHECK(text == "unrecognized error code");
      continue;
    }
    ++named;
    INFO("code " << code << " " << name);
    CHECK((name == "cudaSuccess" || name.rfind("cudaError", 0) == 0));
    CHECK_FALSE(text.empty());
  }
  CHECK(named == 133);  // cudaSuccess and the 132 error enumerators of the CUDA 13 headers
  CHECK(std::string(cudaGetErrorName(cudaSuccess)) == "cudaSuccess");
  CHECK(std::string(cudaGetErrorName(cudaErrorInvalidValue)) == "cudaErrorInvalidValue");
  CHECK(std::string(cudaGetErrorName(cudaErrorMemoryAllocation)) == "cudaErrorMemoryAllocation");
  CHECK(std::string(cudaGetErrorName(cudaErrorNotReady)) == "cudaErrorNotReady");
  CHECK(std::string(cudaGetErrorName(cudaErrorLaunchFailure)) == "cudaErrorLaunchFailure");
  CHECK(std::string(cudaGetErrorName(cudaErrorStreamCaptureWrongThread)) == "cudaErrorStreamCaptureWrongThread");
  CHECK(std::string(cudaGetErrorName(cudaErrorUnknown)) == "cudaErrorUnknown");
  CHECK(std::string(cudaGetErrorString(cudaSuccess)) == "no error");
  CHECK(std::string(cudaGetErrorString(cudaErrorInvalidValue)) == "invalid argument");
  CHECK(std::string(cudaGetErrorString(cudaErrorMemoryAllocation)) == "out of memory");
  CHECK(std::string(cudaGetErrorString(cudaErrorInvalidDevice)) == "invalid device ordinal");
  CHECK(std::string(cudaGetErrorString(cudaErrorLaunchFailure)) == "unspecified launch failure");
  CHECK(std::string(cudaGetErrorString(static_cast<cudaError_t>(123456))) == "unrecognized error code");
}

TEST_CASE("emu runtime: the last error is per host thread; Get clears it, Peek keeps it", "[emu]") {
  CleanDevice clean;
  REQUIRE(cudaGetLastError() == cudaSuccess);
  CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice);
  CHECK(cudaPeekAtLastError() == cudaErrorInvalidDevice);
  CHECK(cudaPeekAtLastError() == cudaErrorInvalidDevice);
  CHECK_FALSE(last_error_message().empty());
  cudaError_t other_thread = cudaErrorUnknown;
  std::thread([&] { other_thread = cudaPeekAtLastError(); }).join();
  CHECK(other_thread == cudaSuccess);
  CHECK(cudaGetLastError() == cudaErrorInvalidDevice);
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(last_error_message().empty());

  // The executor's synchronous launch failures: reported once, not sticky.
  set_last_error(cudaErrorInvalidConfiguration, "kernel k: 2048 threads per block");
  CHECK(last_error_message() == "kernel k: 2048 threads per block");
  CHECK(cudaPeekAtLastError() == cudaErrorInvalidConfiguration);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(cudaGetLastError() == cudaSuccess);
  int device = -1;
  CHECK(cudaGetDevice(&device) == cudaSuccess);
  CHECK(device == 0);
}

TEST_CASE("emu runtime: one device with the active profile's figures", "[emu]") {
  CleanDevice clean;
  int count = 0;
  REQUIRE(cudaGetDeviceCount(&count) == cudaSuccess);
  CHECK(count == 1);
  CHECK(cudaSetDevice(0) == cudaSuccess);
  CHECK(cudaSetDevice(-1) == cudaErrorInvalidDevice);
  (void)cudaGetLastError();

  const DeviceProfile& p = profile();
  cudaDeviceProp prop{};
  REQUIRE(cudaGetDeviceProperties(&prop, 0) == cudaSuccess);
  CHECK(std::string(prop.name) == p.card);
  CHECK(prop.major == p.major);
  CHECK(prop.minor == p.minor);
  CHECK(prop.multiProcessorCount == p.sm_count);
  CHECK(prop.totalGlobalMem == p.global_mem_bytes);
  CHECK(prop.sharedMemPerBlock == 48 * 1024);
  CHECK(prop.sharedMemPerBlockOptin == p.smem_per_block_optin);
  CHECK(prop.sharedMemPerMultiprocessor == p.smem_per_sm);
  CHECK(prop.maxThreadsPerBlock == 1024);
  CHECK(prop.maxThreadsDim[2] == 64);
  CHECK(prop.maxGridSize[0] == 2147483647);
  CHECK(prop.maxGridSize[1] == 65535);
  CHECK(prop.warpSize == 32);
  CHECK(prop.l2CacheSize == 0);  // not emulated: zero
  CHECK(cudaGetDeviceProperties(&prop, 1) == cudaErrorInvalidDevice);
  (void)cudaGetLastError();

  const std::pair<cudaDeviceAttr, int> attrs[] = {
      {cudaDevAttrMaxSharedMemoryPerBlockOptin, static_cast<int>(p.smem_per_block_optin)},
      {cudaDevAttrMaxSharedMemoryPerBlock, 48 * 1024},
      {cudaDevAttrMultiProcessorCount, p.sm_count},
      {cudaDevAttrComputeCapabilityMajor, p.major},
      {cudaDevAttrComputeCapabilityMinor, p.minor},
      {cudaDevAttrMaxThreadsPerBlock, 1024},
      {cudaDevAttrMaxGridDimX, 2147483647},
      {cudaDevAttrMaxGridDimY, 65535},
      {cudaDevAttrMaxGridDimZ, 65535},
      {cudaDevAttrMaxBlockDimX, 1024},
      {cudaDevAttrMaxBlockDimY, 1024},
      {cudaDevAttrMaxBlockDimZ, 64},
      {cudaDevAttrWarpSize, 32},
  };
  for (const auto& [attr, want] : attrs) {
    INFO("attribute " << static_cast<int>(attr));
    int v = -1;
    CHECK(cudaDeviceGetAttribute(&v, attr, 0) == cudaSuccess);
    CHECK(v == want);
  }

  // The four profiles, independent of CIUIC_EMU_PROFILE.
  REQUIRE(profile_named("sm_90") != nullptr);
  CHECK(profile_named("sm_90")->smem_per_block_optin == 232448);
  CHECK(profile_named("sm_90")->sm_count == 132);
  CHECK(profile_named("sm_90")->global_mem_bytes == 80ull << 30);
  CHECK(std::string(profile_named("sm_90")->card) == "emulated H100 (sm_90)");
  CHECK(profile_named("sm_80")->smem_per_block_optin == 166912);
  CHECK(profile_named("sm_80")->sm_count == 108);
  CHECK(profile_named("sm_86")->smem_per_block_optin == 101376);
  CHECK(profile_named("sm_86")->sm_count == 84);
  CHECK(profile_named("sm_89")->smem_per_block_optin == 101376);
  CHECK(profile_named("sm_89")->sm_count == 142);
  CHECK(profile_named("sm_89")->smem_per_sm == 100 * 1024);
  CHECK(profile_named("sm_75") == nullptr);
}

TEST_CASE("emu runtime: cudaFuncSetAttribute refuses more than the profile's opt-in shared memory", "[emu]") {
  CleanDevice clean;
  static int kernel_a, kernel_b;  // stand-ins for two kernels' addresses
  CHECK(max_dynamic_smem(&kernel_b) == 0);  // never set
  for (const char* name : {"sm_90", "sm_80", "sm_86", "sm_89"}) {
    INFO("profile " << name);
    REQUIRE(select_profile(name));
    const int optin = static_cast<int>(profile().smem_per_block_optin);
    CHECK(optin == static_cast<int>(profile_named(name)->smem_per_block_optin));
    int v = 0;
    CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) == cudaSuccess);
    CHECK(v == optin);
    CHECK(cudaFuncSetAttribute(&kernel_a, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) == cudaSuccess);
    CHECK(max_dynamic_smem(&kernel_a) == static_cast<std::size_t>(optin));
    CHECK(cudaFuncSetAttribute(&kernel_a, cudaFuncAttributeMaxDynamicSharedMemorySize, optin + 1) ==
          cudaErrorInvalidValue);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    CHECK(max_dynamic_smem(&kernel_a) == static_cast<std::size_t>(optin));  // a refused value changes nothing
    CHECK(cudaFuncSetAttribute(&kernel_a, cudaFuncAttributeMaxDynamicSharedMemorySize, -1) == cudaErrorInvalidValue);
    (void)cudaGetLastError();
  }
  // 100 KiB (a flash-attention kernel's need) fits sm_80 and sm_90, not the 99 KiB parts.
  REQUIRE(select_profile("sm_86"));
  CHECK(cudaFuncSetAttribute(&kernel_b, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024) ==
        cudaErrorInvalidValue);
  (void)cudaGetLastError();
  REQUIRE(select_profile("sm_80"));
  CHECK(cudaFuncSetAttribute(&kernel_b, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024) == cudaSuccess);
  CHECK(max_dynamic_smem(&kernel_b) == 100 * 1024);
  CHECK(cudaFuncSetAttribute(nullptr, cudaFuncAttributeMaxDynamicSharedMemorySize, 0) ==
        cudaErrorInvalidDeviceFunction);
  (void)cudaGetLastError();
}

TEST_CASE("emu runtime: an unknown profile makes every call fail, and never exits", "[emu]") {
  CleanDevice clean;
  CHECK_FALSE(select_profile("sm_12"));
  int count = -1;
  CHECK(cudaGetDeviceCount(&count) == cudaErrorNoDevice);
  CHECK(count == 0);
  CHECK(cudaGetLastError() == cudaErrorNoDevice);
  void* p = nullptr;
  CHECK(cudaMalloc(&p, 16) == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  cudaStream_t s = nullptr;
  CHECK(cudaStreamCreate(&s) == cudaErrorInvalidValue);
  CHECK(cudaDeviceSynchronize() == cudaErrorInvalidValue);
  CHECK(enqueue(nullptr, [] {}, "work") == cudaErrorInvalidValue);
  CHECK(std::string(profile().name) == "sm_90");  // figures stay readable
  (void)cudaGetLastError();
  CHECK(select_profile(nullptr));
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
}

TEST_CASE("emu runtime: the memory registry classifies pointers and refuses bad frees", "[emu]") {
  CleanDevice clean;
  std::size_t free0 = 0, total = 0;
  REQUIRE(cudaMemGetInfo(&free0, &total) == cudaSuccess);
  CHECK(total == profile().global_mem_bytes);

  void* d = nullptr;
  REQUIRE(cudaMalloc(&d, 1000) == cudaSuccess);
  CHECK(reinterpret_cast<std::uintptr_t>(d) % 256 == 0);
  CHECK(all_bytes(read_back(d, 1000), 0xFF));  // fresh memory is poison, not zeros
  std::size_t free1 = 0;
  REQUIRE(cudaMemGetInfo(&free1, &total) == cudaSuccess);
  CHECK(free0 - free1 == 1000);

  const Allocation a = find_allocation(static_cast<char*>(d) + 999);
  CHECK(a.base == d);
  CHECK(a.size == 1000);
  CHECK(a.kind == MemoryKind::device);
  CHECK(find_allocation(static_cast<char*>(d) + 1000).kind == MemoryKind::unregistered);
  int on_stack = 0;
  CHECK(find_allocation(&on_stack).kind == MemoryKind::unregistered);

  void* h = nullptr;
  REQUIRE(cudaHostAlloc(&h, 64, cudaHostAllocMapped | cudaHostAllocPortable) == cudaSuccess);
  CHECK(find_allocation(h).kind == MemoryKind::mapped_host);
  void* hd = nullptr;
  CHECK(cudaHostGetDevicePointer(&hd, h, 0) == cudaSuccess);
  CHECK(hd == h);
  CHECK(cudaHostGetDevicePointer(&hd, &on_stack, 0) == cudaErrorInvalidValue);
  (void)cudaGetLastError();
  void* pinned = nullptr;
  REQUIRE(cudaMallocHost(&pinned, 32) == cudaSuccess);
  CHECK(find_allocation(pinned).kind == MemoryKind::pinned_host);

  CHECK(cudaFree(&on_stack) == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(cudaFree(static_cast<char*>(d) + 8) == cudaErrorInvalidValue);  // inside, not at the start
  CHECK(cudaFree(h) == cudaErrorInvalidValue);                          // pinned: cudaFreeHost
  CHECK(cudaFreeHost(d) == cudaErrorInvalidValue);                      // device: cudaFree
  CHECK(last_error_message().find("cudaFree") != std::string::npos);
  (void)cudaGetLastError();
  CHECK(cudaFree(nullptr) == cudaSuccess);
  CHECK(cudaFree(d) == cudaSuccess);
  CHECK(cudaFree(d) == cudaErrorInvalidValue);  // double free
  CHECK(cudaFreeHost(h) == cudaSuccess);
  CHECK(cudaFreeHost(pinned) == cudaSuccess);
  (void)cudaGetLastError();
  std::size_t free2 = 0;
  REQUIRE(cudaMemGetInfo(&free2, &total) == cudaSuccess);
  CHECK(free2 == free0);

  void* z = &on_stack;
  CHECK(cudaMalloc(&z, 0) == cudaSuccess);
  CHECK(z == nullptr);
  void* huge = nullptr;
  CHECK(cudaMalloc(&huge, total + 1) == cudaErrorMemoryAllocation);
  CHECK(cudaPeekAtLastError() == cudaErrorMemoryAllocation);
  CHECK(cudaGetLastError() == cudaErrorMemoryAllocation);  // not sticky
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(cudaMalloc(&huge, std::size_t{1} << 50) == cudaErrorMemoryAllocation);
  (void)cudaGetLastError();
  CHECK(cudaMalloc(nullptr, 8) == cudaErrorInvalidValue);
  (void)cudaGetLastError();
}

TEST_CASE("emu runtime: copies and memsets check their ranges, pointers, kinds and pitches", "[emu]") {
  CleanDevice clean;
  DeviceBuffer d(256), e(256);
  std::vector<unsigned char> host(512, 0);
  int on_stack = 0;
  CHECK(cudaMemset(d.p, 0, 257) == cudaErrorInvalidValue);  // past the end of the allocation
  CHECK(cudaMemsetAsync(d.bytes_ptr() + 200, 0, 57, nullptr) == cudaErrorInvalidValue);
  CHECK(cudaMemsetAsync(&on_stack, 0, 4, nullptr) == cudaErrorInvalidValue);  // pageable host memory
  CHECK(cudaMemsetAsync(nullptr, 0, 4, nullptr) == cudaErrorInvalidValue);
  CHECK(cudaMemsetAsync(nullptr, 0, 0, nullptr) == cudaSuccess);
  CHECK(cudaMemcpy(host.data(), d.p, 300, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  CHECK(cudaMemcpyAsync(d.bytes_ptr() + 1, host.data(), 256, cudaMemcpyHostToDevice, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(cudaMemcpy(nullptr, d.p, 4, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(host.data(), d.p, 4, static_cast<cudaMemcpyKind>(7)) == cudaErrorInvalidMemcpyDirection);
  CHECK(cudaMemcpy2DAsync(d.p, 16, host.data(), 32, 17, 4, cudaMemcpyHostToDevice, nullptr) ==
        cudaErrorInvalidPitchValue);
  CHECK(cudaMemcpy2DAsync(d.p, 32, host.data(), 16, 17, 4, cudaMemcpyHostToDevice, nullptr) ==
        cudaErrorInvalidPitchValue);
  CHECK(cudaMemcpy2DAsync(d.p, 64, host.data(), 64, 16, 5, cudaMemcpyHostToDevice, nullptr) ==
        cudaErrorInvalidValue);  // 4 * 64 + 16 bytes do not fit 256
  CHECK(cudaMemcpyPeerAsync(d.p, 1, e.p, 0, 16, nullptr) == cudaErrorInvalidDevice);
  CHECK(cudaMemcpyAsync(d.p, e.p, 16, cudaMemcpyDeviceToDevice, reinterpret_cast<cudaStream_t>(&on_stack)) ==
        cudaErrorInvalidResourceHandle);
  CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle);
  CHECK(cudaMemcpy(host.data(), d.p, 0, cudaMemcpyDeviceToHost) == cudaSuccess);

  // A 2D copy moves width bytes per row and leaves the pitch padding alone.
  for (int i = 0; i < 64; ++i) host[static_cast<std::size_t>(i)] = static_cast<unsigned char>(i);
  REQUIRE(cudaMemset(d.p, 0xAB, 256) == cudaSuccess);
  REQUIRE(cudaMemcpy2DAsync(d.p, 32, host.data(), 16, 8, 4, cudaMemcpyHostToDevice, nullptr) == cudaSuccess);
  const std::vector<unsigned char> got = read_back(d.p, 256);
  for (std::size_t row = 0; row < 4; ++row)
    for (std::size_t col = 0; col < 32; ++col) {
      INFO("row " << row << " col " << col);
      CHECK(got[row * 32 + col] == (col < 8 ? static_cast<unsigned char>(row * 16 + col) : 0xAB));
    }
  CHECK(got[128] == 0xAB);
  // Peer copy on the one device, and cudaMemcpyDefault inferring directions.
  REQUIRE(cudaMemcpyPeerAsync(e.p, 0, d.p, 0, 256, nullptr) == cudaSuccess);
  std::vector<unsigned char> back(256, 0);
  REQUIRE(cudaMemcpy(back.data(), e.p, 256, cudaMemcpyDefault) == cudaSuccess);
  CHECK(back == got);
  (void)cudaGetLastError();
}

TEST_CASE("emu runtime: stream work runs asynchronously and in order", "[emu]") {
  CleanDevice clean;
  Stream s;
  DeviceBuffer d(4096);
  PinnedBuffer out(4096);
  std::atomic<bool> after_memset{false};
  {
    Gate gate(s.s);
    REQUIRE(cudaMemsetAsync(d.p, 3, 4096, s.s) == cudaSuccess);
    REQUIRE(cudaMemcpyAsync(out.p, d.p, 4096, cudaMemcpyDeviceToHost, s.s) == cudaSuccess);
    REQUIRE(cudaLaunchHostFunc(s.s, &set_flag, &after_memset) == cudaSuccess);
    CHECK(cudaStreamQuery(s.s) == cudaErrorNotReady);
    CHECK(cudaGetLastError() == cudaErrorNotReady);  // recorded, as by the real runtime
    CHECK_FALSE(after_memset.load());
    CHECK(all_bytes(d.p, 4096, 0xFF));  // nothing ran yet: the gate holds the stream
    gate.open();
    REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
  }
  CHECK(after_memset.load());
  CHECK(all_bytes(out.p, 4096, 3));
  CHECK(cudaStreamQuery(s.s) == cudaSuccess);

  // Work from several host threads on their own streams, chained through events.
  // Catch2 assertions are not thread-safe: the threads count failed calls instead.
  constexpr int kThreads = 4, kSteps = 50;
  std::vector<std::atomic<int>> counters(kThreads);
  std::atomic<int> failed_calls{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&counters, &failed_calls, t] {
      auto ok = [&](cudaError_t e) {
        if (e != cudaSuccess) failed_calls.fetch_add(1);
      };
      std::atomic<int>& counter = counters[static_cast<std::size_t>(t)];
      cudaStream_t st = nullptr;
      cudaEvent_t ev = nullptr;
      ok(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
      ok(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
      for (int i = 0; i < kSteps; ++i) {
        // Counts only when every earlier step of this stream has run: in-order execution.
        ok(enqueue(st, [&counter, i] {
          if (counter.load() == i) counter.fetch_add(1);
        }, "step"));
        ok(cudaEventRecord(ev, st));
        ok(cudaStreamWaitEvent(nullptr, ev, 0));
      }
      ok(cudaEventSynchronize(ev));
      ok(cudaEventDestroy(ev));
      ok(cudaStreamDestroy(st));
    });
  for (auto& th : threads) th.join();
  CHECK(failed_calls.load() == 0);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  for (int t = 0; t < kThreads; ++t) CHECK(counters[static_cast<std::size_t>(t)].load() == kSteps);
}

TEST_CASE("emu runtime: a stream waiting on an event sees the other stream's writes", "[emu]") {
  CleanDevice clean;
  Stream producer, consumer;
  DeviceBuffer x(1024), y(1024);
  cudaEvent_t done = nullptr;
  REQUIRE(cudaEventCreate(&done) == cudaSuccess);
  // The producer's worker sleeps first, so a consumer that did not wait would copy poison.
  REQUIRE(cudaLaunchHostFunc(producer.s, &sleep_20ms, nullptr) == cudaSuccess);
  REQUIRE(cudaMemsetAsync(x.p, 7, 1024, producer.s) == cudaSuccess);
  REQUIRE(cudaEventRecord(done, producer.s) == cudaSuccess);
  REQUIRE(cudaStreamWaitEvent(consumer.s, done, 0) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(y.p, x.p, 1024, cudaMemcpyDeviceToDevice, consumer.s) == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(consumer.s) == cudaSuccess);
  CHECK(all_bytes(read_back(y.p, 1024), 7));
  CHECK(cudaEventQuery(done) == cudaSuccess);

  // The wait binds the record current at the call: re-recording on an idle stream
  // afterwards does not release the waiter early.
  std::atomic<bool> consumer_ran{false};
  {
    Gate gate(producer.s);
    REQUIRE(cudaEventRecord(done, producer.s) == cudaSuccess);
    CHECK(cudaEventQuery(done) == cudaErrorNotReady);
    (void)cudaGetLastError();
    REQUIRE(cudaStreamWaitEvent(consumer.s, done, 0) == cudaSuccess);
    REQUIRE(cudaLaunchHostFunc(consumer.s, &set_flag, &consumer_ran) == cudaSuccess);
    Stream idle;
    REQUIRE(cudaEventRecord(done, idle.s) == cudaSuccess);
    REQUIRE(cudaEventSynchronize(done) == cudaSuccess);  // the latest record, on the idle stream
    CHECK(cudaStreamQuery(consumer.s) == cudaErrorNotReady);
    (void)cudaGetLastError();
    CHECK_FALSE(consumer_ran.load());
    gate.open();
    REQUIRE(cudaStreamSynchronize(consumer.s) == cudaSuccess);
    CHECK(consumer_ran.load());
  }
  REQUIRE(cudaEventDestroy(done) == cudaSuccess);
}

TEST_CASE("emu runtime: events follow the documented query, synchronize and timing rules", "[emu]") {
  CleanDevice clean;
  Stream s;
  cudaEvent_t start = nullptr, stop = nullptr, untimed = nullptr, fresh = nullptr;
  REQUIRE(cudaEventCreateWithFlags(&start, cudaEventDefault) == cudaSuccess);
  REQUIRE(cudaEventCreateWithFlags(&stop, cudaEventBlockingSync) == cudaSuccess);
  REQUIRE(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming) == cudaSuccess);
  REQUIRE(cudaEventCreate(&fresh) == cudaSuccess);
  cudaEvent_t bad = nullptr;
  CHECK(cudaEventCreateWithFlags(&bad, 0x80) == cudaErrorInvalidValue);
  CHECK(cudaEventCreateWithFlags(&bad, cudaEventInterprocess) == cudaErrorInvalidValue);
  (void)cudaGetLastError();

  // Never recorded: complete, nothing to wait for, no time.
  CHECK(cudaEventQuery(fresh) == cudaSuccess);
  CHECK(cudaEventSynchronize(fresh) == cudaSuccess);
  CHECK(cudaStreamWaitEvent(s.s, fresh, 0) == cudaSuccess);
  float ms = -1;
  CHECK(cudaEventElapsedTime(&ms, fresh, fresh) == cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();

  {
    Gate gate(s.s);
    REQUIRE(cudaEventRecord(start, s.s) == cudaSuccess);
    CHECK(cudaEventElapsedTime(&ms, start, start) == cudaErrorNotReady);
    (void)cudaGetLastError();
  }
  REQUIRE(cudaLaunchHostFunc(s.s, &sleep_20ms, nullptr) == cudaSuccess);
  REQUIRE(cudaEventRecord(stop, s.s) == cudaSuccess);
  REQUIRE(cudaEventRecord(untimed, s.s) == cudaSuccess);
  REQUIRE(cudaEventSynchronize(stop) == cudaSuccess);
  CHECK(cudaEventQuery(stop) == cudaSuccess);
  REQUIRE(cudaEventElapsedTime(&ms, start, stop) == cudaSuccess);
  CHECK(ms >= 19.0f);  // the 20 ms sleep lies between the two records
  REQUIRE(cudaEventElapsedTime(&ms, stop, stop) == cudaSuccess);
  CHECK(ms == 0.0f);
  REQUIRE(cudaEventSynchronize(untimed) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, start, untimed) == cudaErrorInvalidResourceHandle);
  CHECK(cudaEventElapsedTime(&ms, untimed, stop) == cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();

  for (cudaEvent_t e : {start, stop, untimed, fresh}) CHECK(cudaEventDestroy(e) == cudaSuccess);
  CHECK(cudaEventDestroy(start) == cudaErrorInvalidResourceHandle);
  CHECK(cudaEventQuery(start) == cudaErrorInvalidResourceHandle);
  CHECK(cudaEventRecord(start, s.s) == cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();
}

TEST_CASE("emu runtime: the legacy default stream orders against blocking streams only", "[emu]") {
  CleanDevice clean;
  DeviceBuffer x(512), y(512);
  SECTION("legacy work waits for earlier work on a blocking stream") {
    Stream blocking;
    Gate gate(blocking.s);
    REQUIRE(cudaMemsetAsync(x.p, 1, 512, blocking.s) == cudaSuccess);
    REQUIRE(cudaMemcpyAsync(y.p, x.p, 512, cudaMemcpyDeviceToDevice, nullptr) == cudaSuccess);
    CHECK(cudaStreamQuery(nullptr) == cudaErrorNotReady);  // the legacy stream inherits the wait
    (void)cudaGetLastError();
    gate.open();
    REQUIRE(cudaStreamSynchronize(cudaStreamLegacy) == cudaSuccess);
    CHECK(all_bytes(read_back(y.p, 512), 1));
  }
  SECTION("blocking-stream work waits for earlier legacy work") {
    Stream blocking;
    Gate gate(nullptr);
    REQUIRE(cudaMemsetAsync(x.p, 2, 512, nullptr) == cudaSuccess);
    REQUIRE(cudaMemcpyAsync(y.p, x.p, 512, cudaMemcpyDeviceToDevice, blocking.s) == cudaSuccess);
    CHECK(cudaStreamQuery(blocking.s) == cudaErrorNotReady);
    (void)cudaGetLastError();
    gate.open();
    REQUIRE(cudaStreamSynchronize(blocking.s) == cudaSuccess);
    CHECK(all_bytes(read_back(y.p, 512), 2));
  }
  SECTION("a non-blocking stream ignores the legacy stream, both ways") {
    Stream independent(cudaStreamNonBlocking);
    std::atomic<bool> ran{false};
    {
      Gate gate(nullptr);
      REQUIRE(cudaLaunchHostFunc(independent.s, &set_flag, &ran) == cudaSuccess);
      REQUIRE(cudaStreamSynchronize(independent.s) == cudaSuccess);  // would hang behind the gate if ordered
      CHECK(ran.load());
    }
    Gate gate(independent.s);
    REQUIRE(cudaMemsetAsync(x.p, 4, 512, independent.s) == cudaSuccess);
    // A synchronous cudaMemcpy orders only with the legacy stream: it reads x before
    // the gated memset, as a GPU would.
    CHECK(all_bytes(read_back(x.p, 512), 0xFF));
    gate.open();
    REQUIRE(cudaStreamSynchronize(independent.s) == cudaSuccess);
    CHECK(all_bytes(read_back(x.p, 512), 4));
  }
  SECTION("cudaMemcpy waits for blocking streams; cudaMemset is asynchronous") {
    Stream blocking;
    Gate gate(blocking.s);
    REQUIRE(cudaMemsetAsync(x.p, 5, 512, blocking.s) == cudaSuccess);
    REQUIRE(cudaMemset(y.p, 6, 512) == cudaSuccess);  // returns although it must wait behind the gate
    std::thread opener([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      gate.open();
    });
    CHECK(all_bytes(read_back(x.p, 512), 5));  // cudaMemcpy returned only after the gated memset
    CHECK(all_bytes(read_back(y.p, 512), 6));
    opener.join();
  }
  SECTION("cudaStreamPerThread is a blocking stream") {
    Gate gate(nullptr);
    REQUIRE(cudaMemsetAsync(x.p, 8, 512, nullptr) == cudaSuccess);
    REQUIRE(cudaMemcpyAsync(y.p, x.p, 512, cudaMemcpyDeviceToDevice, cudaStreamPerThread) == cudaSuccess);
    CHECK(cudaStreamQuery(cudaStreamPerThread) == cudaErrorNotReady);
    (void)cudaGetLastError();
    gate.open();
    REQUIRE(cudaStreamSynchronize(cudaStreamPerThread) == cudaSuccess);
    CHECK(all_bytes(read_back(y.p, 512), 8));
  }
}

TEST_CASE("emu runtime: async copies from pageable memory are staged, from pinned memory are not", "[emu]") {
  CleanDevice clean;
  Stream s;
  DeviceBuffer d(256);
  SECTION("pageable host to device: the source is read before the call returns") {
    std::vector<unsigned char> src(256, 1);
    {
      Gate gate(s.s);
      REQUIRE(cudaMemcpyAsync(d.p, src.data(), 256, cudaMemcpyHostToDevice, s.s) == cudaSuccess);
      std::fill(src.begin(), src.end(), 2);  // reused at once: legal for pageable memory
    }
    CHECK(all_bytes(read_back(d.p, 256), 1));
  }
  SECTION("pinned host to device: the source is read when the stream gets there") {
    PinnedBuffer src(256);
    std::memset(src.p, 1, 256);
    {
      Gate gate(s.s);
      REQUIRE(cudaMemcpyAsync(d.p, src.p, 256, cudaMemcpyHostToDevice, s.s) == cudaSuccess);
      std::memset(src.p, 2, 256);  // a program bug on a GPU too: the copy sees the new bytes
    }
    CHECK(all_bytes(read_back(d.p, 256), 2));
  }
  SECTION("device to pageable host: returns with the copy done") {
    REQUIRE(cudaLaunchHostFunc(s.s, &sleep_20ms, nullptr) == cudaSuccess);
    REQUIRE(cudaMemsetAsync(d.p, 9, 256, s.s) == cudaSuccess);
    std::vector<unsigned char> dst(256, 0);
    REQUIRE(cudaMemcpyAsync(dst.data(), d.p, 256, cudaMemcpyDeviceToHost, s.s) == cudaSuccess);
    CHECK(all_bytes(dst, 9));  // no synchronisation needed
  }
  SECTION("device to pinned host: asynchronous") {
    PinnedBuffer dst(256);
    std::memset(dst.p, 0, 256);
    REQUIRE(cudaMemsetAsync(d.p, 9, 256, s.s) == cudaSuccess);
    {
      Gate gate(s.s);
      REQUIRE(cudaMemcpyAsync(dst.p, d.p, 256, cudaMemcpyDeviceToHost, s.s) == cudaSuccess);
      CHECK(all_bytes(dst.p, 256, 0));
      CHECK(cudaStreamQuery(s.s) == cudaErrorNotReady);
      (void)cudaGetLastError();
    }
    CHECK(all_bytes(dst.p, 256, 9));
  }
  SECTION("host to host: synchronous") {
    PinnedBuffer dst(256);
    std::vector<unsigned char> src(256, 5);
    REQUIRE(cudaLaunchHostFunc(s.s, &sleep_20ms, nullptr) == cudaSuccess);
    REQUIRE(cudaMemcpyAsync(dst.p, src.data(), 256, cudaMemcpyHostToHost, s.s) == cudaSuccess);
    CHECK(all_bytes(dst.p, 256, 5));
  }
}

TEST_CASE("emu runtime: stream-ordered allocation and release", "[emu]") {
  CleanDevice clean;
  Stream s;
  std::size_t free0 = 0, total = 0, free1 = 0;
  REQUIRE(cudaMemGetInfo(&free0, &total) == cudaSuccess);
  void* p = nullptr;
  REQUIRE(cudaMallocAsync(&p, 4096, s.s) == cudaSuccess);
  REQUIRE(cudaMemsetAsync(p, 1, 4096, s.s) == cudaSuccess);
  {
    Gate gate(s.s);
    REQUIRE(cudaFreeAsync(p, s.s) == cudaSuccess);
    CHECK(cudaFree(p) == cudaErrorInvalidValue);  // already handed back, in stream order
    (void)cudaGetLastError();
    REQUIRE(cudaMemGetInfo(&free1, &total) == cudaSuccess);
    CHECK(free1 == free0 - 4096);  // released only when the stream gets there
  }
  REQUIRE(cudaStreamSynchronize(s.s) == cudaSuccess);
  REQUIRE(cudaMemGetInfo(&free1, &total) == cudaSuccess);
  CHECK(free1 == free0);
  CHECK(cudaFreeAsync(nullptr, s.s) == cudaSuccess);

  // cudaFree synchronises the device first: queued work never touches freed memory.
  REQUIRE(cudaMalloc(&p, 4096) == cudaSuccess);
  std::atomic<bool> memset_done{false};
  Gate gate(s.s);
  REQUIRE(cudaMemsetAsync(p, 1, 4096, s.s) == cudaSuccess);
  REQUIRE(cudaLaunchHostFunc(s.s, &set_flag, &memset_done) == cudaSuccess);
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    gate.open();
  });
  CHECK(cudaFree(p) == cudaSuccess);
  CHECK(memset_done.load());
  opener.join();
}

TEST_CASE("emu runtime: a fault in stream work is sticky until cleared, and later work is skipped", "[emu]") {
  CleanDevice clean;
  Stream s;
  std::atomic<bool> later_ran{false};
  {
    Gate gate(s.s);
    REQUIRE(enqueue(s.s, [] { throw std::runtime_error("kernel k: thread (3,0,0) of block (1,0,0) faulted"); },
                    "kernel k") == cudaSuccess);
    REQUIRE(enqueue(s.s, [&] { later_ran = true; }, "kernel later") == cudaSuccess);
    gate.open();
    CHECK(cudaStreamSynchronize(s.s) == cudaErrorLaunchFailure);
  }
  CHECK(sticky_error_message() == "kernel k: thread (3,0,0) of block (1,0,0) faulted");
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure);  // reading it does not clear it
  CHECK(cudaPeekAtLastError() == cudaErrorLaunchFailure);
  void* p = nullptr;
  CHECK(cudaMalloc(&p, 16) == cudaErrorLaunchFailure);
  CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure);
  CHECK(enqueue(s.s, [&] { later_ran = true; }, "kernel refused") == cudaErrorLaunchFailure);
  int device = -1;
  CHECK(cudaGetDevice(&device) == cudaErrorLaunchFailure);
  // The first fault wins.
  set_sticky_error(cudaErrorIllegalAddress, "a second fault");
  CHECK(cudaPeekAtLastError() == cudaErrorLaunchFailure);

  clear_sticky_error();
  CHECK(sticky_error_message().empty());
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
  CHECK_FALSE(later_ran.load());  // skipped, not run late

  // cudaDeviceReset recovers too; a worker's non-standard exception is a fault as well.
  REQUIRE(enqueue(s.s, [] { throw 42; }, "kernel odd") == cudaSuccess);
  CHECK(cudaStreamSynchronize(s.s) == cudaErrorLaunchFailure);
  CHECK(sticky_error_message().find("kernel odd") != std::string::npos);
  CHECK(cudaDeviceReset() == cudaSuccess);
  CHECK(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaMalloc(&p, 16) == cudaSuccess);
  CHECK(cudaFree(p) == cudaSuccess);
}

TEST_CASE("emu runtime: stream lifetime, bad handles and CUDA calls inside stream work", "[emu]") {
  CleanDevice clean;
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreate(&s) == cudaSuccess);
  std::atomic<bool> ran{false};
  auto gate = std::make_unique<Gate>(s);
  REQUIRE(cudaLaunchHostFunc(s, &set_flag, &ran) == cudaSuccess);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);  // returns at once; queued work still runs
  CHECK_FALSE(ran.load());
  CHECK(cudaStreamDestroy(s) == cudaErrorInvalidResourceHandle);
  CHECK(cudaMemsetAsync(nullptr, 0, 0, s) == cudaErrorInvalidResourceHandle);
  CHECK(cudaLaunchHostFunc(s, &set_flag, &ran) == cudaErrorInvalidResourceHandle);
  CHECK(enqueue(s, [] {}, "work") == cudaErrorInvalidResourceHandle);
  CHECK(cudaStreamDestroy(nullptr) == cudaErrorInvalidResourceHandle);
  CHECK(cudaStreamDestroy(cudaStreamLegacy) == cudaErrorInvalidResourceHandle);
  CHECK(cudaStreamCreateWithFlags(&s, 0x40) == cudaErrorInvalidValue);
  (void)cudaGetLastError();
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    gate->open();
  });
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);  // covers the destroyed stream's work
  CHECK(ran.load());
  opener.join();
  gate.reset();  // its stream is gone: its synchronize fails and is cleared
  (void)cudaGetLastError();

  // Waiting from inside stream work would deadlock: refused, as CUDA forbids it.
  Stream t;
  cudaError_t inside = cudaSuccess;
  REQUIRE(enqueue(t.s, [&] { inside = cudaStreamSynchronize(t.s); }, "host work") == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(t.s) == cudaSuccess);
  CHECK(inside == cudaErrorNotPermitted);
  cudaStream_t priority = nullptr;
  REQUIRE(cudaStreamCreateWithPriority(&priority, cudaStreamNonBlocking, -1) == cudaSuccess);
  CHECK(cudaStreamDestroy(priority) == cudaSuccess);
}
