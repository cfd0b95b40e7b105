// Gloo over CUDA tensors on the emulated GPU (CIUIC_EMULATED_GPU), for
// gloo_communicator.cpp only.
//
// There device memory is host memory, so Gloo can move it; what must match NCCL is
// the ordering. A collective on CUDA tensors is issued like an NCCL one:
//   1. an event on the tensors' current stream, waited for by the communicator's own
//      stream (comm_stream.h): the collective sees everything queued before it;
//   2. the tensors' memory is record_stream'ed on that stream;
//   3. a host function on that stream (a StreamGate) holds the stream at the
//      collective's place: it tells the Gloo worker "the stream is here" and blocks
//      until the worker has run the collective, so later work on that stream waits
//      for it;
//   4. an end event on that stream, which Work::wait() makes the current stream wait
//      for (the host does not block, as with NCCL).
// The collective itself runs on the Gloo worker thread, in issue order among all the
// communicator's collectives (CPU ones included), so one thread drives the Gloo
// context. The worker waits for the gate before running it; the gate's host function
// makes no CUDA call (none is allowed inside one). This relies on the emulator
// running each stream's queue on its own OS thread: on a real GPU the host functions
// of all streams may share one driver thread, and a blocking one would stall them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "ciuic/stream.h"
#include "work.h"

#ifdef CIUIC_EMULATED_GPU
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#endif

namespace ciuic::comm::detail {

// The meeting point of a stream and the Gloo worker for one device collective.
// Shared by the task (worker side) and the host function (stream side); either may
// be the last owner. Compiled in every build (pure host code); only the emulated
// GPU's device collectives make one.
class StreamGate {
 public:
  // Stream side: the stream has reached the collective; hold it until released.
  void arrive_and_hold() {
    std::unique_lock<std::mutex> lock(mu_);
    reached_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
  }
  // Worker side: false when the stream did not get there within the timeout.
  bool wait_reached(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return reached_; });
  }
  // The collective is over (run, failed or skipped): the stream may go on. Idempotent;
  // a host function that arrives after it returns at once.
  void release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool reached_ = false, released_ = false;
};

// Releases a gate (if any) when it goes out of scope: every way out of the worker's
// handling of a task lets the stream go on.
struct GateRelease {
  StreamGate* gate;
  ~GateRelease() {
    if (gate) gate->release();
  }
};

// What the worker's wait for a gate's stream found.
struct StreamWait {
  bool reached = true;
  bool timed_out = false;  // else a device fault, when not reached
  std::string why;         // when not reached
};

#ifdef CIUIC_EMULATED_GPU

// The host function: owns one reference to the gate for as long as it runs.
inline void CUDART_CB stream_gate_host_fn(void* arg) {
  std::unique_ptr<std::shared_ptr<StreamGate>> gate(static_cast<std::shared_ptr<StreamGate>*>(arg));
  (*gate)->arrive_and_hold();
}

// The worker's wait for a gate. A device that faulted skips the user work of its
// streams (the gate's host function would never run, and its reference to the gate
// is lost with it), so the wait goes in slices and asks the stream for a fault
// between them.
inline StreamWait await_stream(StreamGate& gate, StreamHandle s, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (gate.wait_reached(std::chrono::milliseconds(50))) return {};
    const cudaError_t e = cudaStreamQuery(static_cast<cudaStream_t>(s));
    if (e == cudaErrorNotReady) (void)cudaGetLastError();  // an answer, not a failure: do not leave it as the last error
    else if (e != cudaSuccess)
      return {false, false, std::string("the device faulted before it could start (") + cudaGetErrorString(e) + ")"};
    if (std::chrono::steady_clock::now() > deadline)
      return {false, true, "the work queued before it on the tensor's stream did not finish within " +
                               std::to_string(timeout.count()) + " ms"};
  }
}

// Queues the gate's host function on s (step 3 above).
inline void hold_stream_at_gate(StreamHandle s, const std::shared_ptr<StreamGate>& gate) {
  auto* arg = new std::shared_ptr<StreamGate>(gate);
  cudaError_t e = cudaLaunchHostFunc(static_cast<cudaStream_t>(s), stream_gate_host_fn, arg);
  if (e != cudaSuccess) delete arg;  // never queued: the host function will not free it
  CIUIC_CUDA_CHECK(e);
}

// A CPU tensor over t's memory (t: contiguous, on the emulated GPU, whose memory is
// host memory), so that Gloo and ciuic's CPU ops (avg's division, reduce_scatter's
// copy) work on it from the worker thread without queueing anything on a stream.
// Non-owning: the task keeps t itself alive.
inline Tensor host_view(const Tensor& t) {
  if (t.device().is_cpu()) return t;
  return from_blob(t.data_ptr(), t.shape(), t.dtype());  // no deleter: does not own the memory
}

// The Work of a device collective: done (on the worker) and ordered (the end event).
class DeviceWork : public ThreadWork {
 public:
  DeviceWork(std::string description, Device d) : ThreadWork(std::move(description)), device_(d), end_(d) {}

  bool is_completed() override { return ThreadWork::is_completed() && end_.query(); }

  // Without a timeout the host does not block (NCCL's semantics), but a collective
  // that has already failed throws now; with one, the host waits for the worker,
  // rethrows its failure, then for the end event (is_completed() is true after it,
  // as after NCCL's host wait). Either way the current stream then waits for the end
  // event.
  void wait(Milliseconds timeout) override {
    if (timeout.count() > 0) {
      ThreadWork::wait(timeout);
      end_.synchronize();  // the gate was released when the worker finished: not long
    } else if (ThreadWork::is_completed()) {
      ThreadWork::wait(timeout);
    }
    DeviceGuard guard(device_);
    end_.wait_on(current_stream(device_));
  }

  Event& end() { return end_; }

 private:
  Device device_;
  Event end_;
};

#else

// Only CPU tensors get here, and no gate is ever made.
inline Tensor host_view(const Tensor& t) { return t; }
inline StreamWait await_stream(StreamGate&, StreamHandle, std::chrono::milliseconds) { return {}; }

#endif  // CIUIC_EMULATED_GPU

}  // namespace ciuic::comm::detail
