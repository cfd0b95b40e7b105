// CUDA streams and events as move-only RAII handles, and a current stream per
// device. On a CPU-only build these types exist but creating one throws
// DeviceError; the CPU "stream" is the calling thread.
#pragma once

#include "ciuic/device.h"

namespace ciuic {

// An opaque cudaStream_t; nullptr is the legacy default stream.
using StreamHandle = void*;

class Stream {
 public:
  // The default (null) stream of device d; owns nothing.
  static Stream default_stream(Device d = Device::cuda(0));
  // A non-blocking stream on device d from a per-device pool of 32, handed out
  // round-robin (as PyTorch's stream pool): consecutive calls give different
  // streams, and after 32 calls they repeat. Pooled streams are never destroyed, so
  // the per-stream caches keyed by their handle (allocator blocks, GEMM workspace)
  // stay valid and bounded however many Stream objects come and go.
  static Stream create(Device d = Device::cuda(0));

  Stream() = default;
  ~Stream();
  Stream(Stream&& o) noexcept;
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  StreamHandle handle() const { return handle_; }
  Device device() const { return device_; }
  void synchronize() const;

  // A non-owning view of the same stream (for passing to APIs that keep it).
  Stream borrow() const { return Stream(handle_, device_, false); }

 private:
  Stream(StreamHandle h, Device d, bool owned) : handle_(h), device_(d), owned_(owned) {}
  StreamHandle handle_ = nullptr;
  Device device_ = Device::cuda(0);
  bool owned_ = false;
};

class Event {
 public:
  // timing: create an event that can measure elapsed time (cudaEventDefault)
  // rather than a cheaper cudaEventDisableTiming one.
  explicit Event(Device d = Device::cuda(0), bool timing = false);
  ~Event();
  Event(Event&& o) noexcept;
  Event& operator=(Event&& o) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void record(StreamHandle s);
  void synchronize() const;
  bool query() const;            // true when all recorded work has finished
  void wait_on(StreamHandle s) const;  // make s wait for this event
  float elapsed_ms(const Event& end) const;
  void* handle() const { return handle_; }

 private:
  void* handle_ = nullptr;  // cudaEvent_t
  Device device_;
};

// The stream that ops on device d launch on; the default stream until set.
StreamHandle current_stream(Device d);
void set_current_stream(Device d, StreamHandle s);

// Sets the current stream of its device for a scope.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& s);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  Device device_;
  StreamHandle previous_;
};

// Waits for all work on device d (cudaDeviceSynchronize); a no-op for the CPU.
void synchronize(Device d);

}  // namespace ciuic
