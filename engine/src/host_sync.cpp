// Host-wait counters and deferred device errors (ciuic/host_sync.h), and the
// process-wide kernel settings (ciuic/backend_flags.h).
#include "ciuic/host_sync.h"
#include "ciuic/backend_flags.h"

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>

#include "ciuic/error.h"
#include "ciuic/stream.h"

#ifdef CIUIC_WITH_CUDA
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#endif

namespace ciuic {

namespace {

std::atomic<std::int64_t> g_d2h{0}, g_syncs{0}, g_items{0};
std::atomic<int> g_mode{static_cast<int>(ErrorChecks::deferred)};

// One slot per device: index 0 the CPU, 1 + i cuda:i.
constexpr int kMaxSlots = 65;
struct Slot {
  unsigned long long* claim = nullptr;         // CPU: &cpu_claim; CUDA: device memory
  kernels::DeviceErrorRecord* host = nullptr;  // what the host reads
  kernels::DeviceErrorRecord* dev = nullptr;   // the same record as the device addresses it
};
std::mutex g_mutex;  // slot creation, and CPU reports and checks
std::array<Slot, kMaxSlots> g_slots{};
unsigned long long g_cpu_claim = 0;
kernels::DeviceErrorRecord g_cpu_record{};

int slot_index(Device d) {
  if (d.is_cpu()) return 0;
  CIUIC_CHECK(d.index >= 0 && d.index + 1 < kMaxSlots, DeviceError, "device_error_slot", "device ", d.str(),
              "; expected a device index below ", kMaxSlots - 1);
  return d.index + 1;
}

// The slot of d, created on first use (CUDA: a device claim word and a mapped host record).
Slot& slot_of(Device d) {
  const int i = slot_index(d);
  std::lock_guard<std::mutex> lock(g_mutex);
  Slot& s = g_slots[static_cast<std::size_t>(i)];
  if (s.host) return s;
  if (d.is_cpu()) {
    s.claim = &g_cpu_claim;
    s.host = s.dev = &g_cpu_record;
    return s;
  }
#ifdef CIUIC_WITH_CUDA
  check_device_usable(d, "device_error_slot");
  DeviceGuard guard(d);
  void* claim = nullptr;
  void* host = nullptr;
  void* dev = nullptr;
  CIUIC_CUDA_CHECK(cudaMalloc(&claim, sizeof(unsigned long long)));
  CIUIC_CUDA_CHECK(cudaMemset(claim, 0, sizeof(unsigned long long)));
  CIUIC_CUDA_CHECK(cudaHostAlloc(&host, sizeof(kernels::DeviceErrorRecord), cudaHostAllocMapped | cudaHostAllocPortable));
  *static_cast<kernels::DeviceErrorRecord*>(host) = kernels::DeviceErrorRecord{};
  CIUIC_CUDA_CHECK(cudaHostGetDevicePointer(&dev, host, 0));
  CIUIC_CUDA_CHECK(cudaDeviceSynchronize());  // the memset is done before any kernel may claim
  s.claim = static_cast<unsigned long long*>(claim);
  s.host = static_cast<kernels::DeviceErrorRecord*>(host);
  s.dev = static_cast<kernels::DeviceErrorRecord*>(dev);
  // Never freed: one word and 32 bytes per device for the life of the process.
  return s;
#else
  detail::fail<DeviceError>("device_error_slot", "device ", d.str(), " needs a CUDA build");
#endif
}

[[noreturn]] void raise_recorded(Device d, const kernels::DeviceErrorRecord& r) {
  const std::string where = d.is_cpu() ? std::string() : " (found on " + d.str() + " by a kernel)";
  switch (static_cast<kernels::DeviceErrorCode>(r.code)) {
    case kernels::DeviceErrorCode::embedding_index:
      detail::fail<IndexError>("embedding", "index ", r.value, " out of range for a weight of ", r.bound, " rows (V = ",
                               r.bound, ", C = ", r.extra, ")", where, "; expected indices in [0, ", r.bound, ")");
    case kernels::DeviceErrorCode::cross_entropy_target:
      detail::fail<IndexError>("cross_entropy", "target ", r.value, " out of range for logits of ", r.bound,
                               " classes (C = ", r.bound, ")", where, "; expected targets in [0, ", r.bound,
                               ") or ignore_index ", r.extra);
    case kernels::DeviceErrorCode::clip_grad_nonfinite: {
      double total = 0, norm_type = 0;
      std::memcpy(&total, &r.value, sizeof total);
      std::memcpy(&norm_type, &r.extra, sizeof norm_type);
      detail::fail<ValueError>("clip_grad_norm_", "the total ", norm_type, "-norm of the gradients of ", r.bound,
                               " parameters is ", total, where,
                               "; expected a finite norm (error_if_nonfinite is set)");
    }
    default:
      detail::fail<Error>("check_device_errors", "unknown device error code ", r.code, " with value ", r.value,
                          where);
  }
}

}  // namespace

namespace {
std::atomic<bool> g_allow_tf32{false};
std::atomic<bool> g_det_embedding{true};
}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32 = allow; }
bool allow_tf32() { return g_allow_tf32.load(); }
void set_deterministic_embedding_backward(bool deterministic) { g_det_embedding = deterministic; }
bool deterministic_embedding_backward() { return g_det_embedding.load(); }

SyncCounts sync_counts() {
  SyncCounts c;
  c.d2h_copies = g_d2h.load();
  c.syncs = g_syncs.load();
  c.item_reads = g_items.load();
  return c;
}

void reset_sync_counts() {
  g_d2h = 0;
  g_syncs = 0;
  g_items = 0;
}

void set_error_checks(ErrorChecks mode) { g_mode = static_cast<int>(mode); }
ErrorChecks error_checks() { return static_cast<ErrorChecks>(g_mode.load()); }

void check_device_errors(Device d) {
  const int i = slot_index(d);
  kernels::DeviceErrorRecord r{};
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    Slot& s = g_slots[static_cast<std::size_t>(i)];
    if (!s.host) return;  // nothing ever launched with a slot on d
    volatile const std::int64_t* code = &s.host->code;
    if (*code == 0) return;
    r = *s.host;
    *s.host = kernels::DeviceErrorRecord{};
    if (d.is_cpu()) {
      *s.claim = 0;
    } else {
#ifdef CIUIC_WITH_CUDA
      // Free the claim for the next error; finished before any later launch can look at it.
      DeviceGuard guard(d);
      const auto stream = static_cast<cudaStream_t>(current_stream(d));
      CIUIC_CUDA_CHECK(cudaMemsetAsync(s.claim, 0, sizeof(unsigned long long), stream));
      CIUIC_CUDA_CHECK(cudaStreamSynchronize(stream));
#endif
    }
  }
  raise_recorded(d, r);
}

namespace detail {

kernels::DeviceErrorSlot device_error_slot(Device d) {
  Slot& s = slot_of(d);
  return kernels::DeviceErrorSlot{s.claim, s.dev};
}

void report_cpu_error(kernels::DeviceErrorCode code, std::int64_t value, std::int64_t bound, std::int64_t extra) {
  Slot& s = slot_of(Device::cpu());
  std::lock_guard<std::mutex> lock(g_mutex);
  kernels::report_device_error(kernels::DeviceErrorSlot{s.claim, s.dev}, code, value, bound, extra);
}

void after_checked_op(Device d) {
  if (error_checks() != ErrorChecks::immediate) return;
  if (d.is_cuda()) {
#ifdef CIUIC_WITH_CUDA
    DeviceGuard guard(d);
    count_sync();
    CIUIC_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(current_stream(d))));
#endif
  }
  check_device_errors(d);
}

void count_d2h_copy() { ++g_d2h; }
void count_sync() { ++g_syncs; }
void count_item_read() { ++g_items; }

}  // namespace detail

}  // namespace ciuic
