// Dedicated communication streams (CUDA builds): the stream a communicator's
// collectives on one device run on.
//
// Never a stream of Stream::create's pool (engine/src/stream.cpp hands those out
// round-robin to anyone): a user's side stream from the pool could otherwise be the
// very stream the collectives run on, and compute would silently serialize behind
// communication. These streams are created here and handed to communicators only.
//
// Invariants:
// - A living communicator holds at most one lease per device, and two living
//   communicators never share a stream (a collective blocked on a peer would stall
//   the other communicator's collectives).
// - Streams are never destroyed: the caching allocator keys blocks and
//   record_stream events by the raw handle, and a destroyed handle recycled by the
//   driver would alias another stream. A destroyed communicator returns its stream
//   to the free list, so the number of streams is bounded by the number of
//   communicators alive at once. Work queued on a returned stream still runs before
//   anything its next holder queues (a stream is in order).
// Header-only: shared by nccl_communicator.cpp and gloo_communicator.cpp.
#pragma once

#ifdef CIUIC_WITH_CUDA

#include <map>
#include <mutex>
#include <vector>

#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/device.h"
#include "ciuic/stream.h"

namespace ciuic::comm::detail {

struct CommStreamRegistry {
  std::mutex mu;
  std::map<int, std::vector<StreamHandle>> free;  // by device index
};

// Never destroyed (see above); inline, so one registry per process.
inline CommStreamRegistry& comm_stream_registry() {
  static auto* r = new CommStreamRegistry;
  return *r;
}

// One communicator's stream on one device, for the communicator's lifetime.
class CommStream {
 public:
  explicit CommStream(Device d) : device_(d) {
    check_device_usable(d, "communication stream");
    CommStreamRegistry& r = comm_stream_registry();
    std::lock_guard<std::mutex> lock(r.mu);
    auto& free = r.free[d.index];
    if (!free.empty()) {
      handle_ = free.back();
      free.pop_back();
      return;
    }
    DeviceGuard guard(d);  // a stream belongs to the device current at creation
    cudaStream_t s = nullptr;
    // Non-blocking: no implicit synchronisation with the legacy default stream.
    CIUIC_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    handle_ = s;
  }

  ~CommStream() {
    CommStreamRegistry& r = comm_stream_registry();
    std::lock_guard<std::mutex> lock(r.mu);
    r.free[device_.index].push_back(handle_);
  }

  CommStream(const CommStream&) = delete;
  CommStream& operator=(const CommStream&) = delete;

  StreamHandle handle() const { return handle_; }
  Device device() const { return device_; }

 private:
  Device device_;
  StreamHandle handle_ = nullptr;
};

}  // namespace ciuic::comm::detail

#endif  // CIUIC_WITH_CUDA
