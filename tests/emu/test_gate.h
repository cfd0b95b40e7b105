// A gate for the emulator's stream-order tests: work enqueued on a stream that blocks until
// the test opens the gate, so that what the test enqueues after it must wait in line.
// The destructor opens the gate on every path (a failed REQUIRE included), so the stream's
// worker never stays blocked.
#pragma once

#include <functional>
#include <future>

#include <cuda_runtime.h>

#include "ciuic_emu/engine.h"

class StreamGate {
 public:
  // Enqueues on the legacy default stream: wait for the gate, then `then()`.
  cudaError_t hold(std::function<void()> then) {
    std::shared_future<void> wait = wait_;
    return ciuic::emu::enqueue(
        nullptr,
        [wait, then = std::move(then)] {
          wait.wait();
          then();
        },
        "test gate");
  }
  void open() {
    if (!open_) gate_.set_value();
    open_ = true;
  }
  ~StreamGate() { open(); }

 private:
  std::promise<void> gate_;
  std::shared_future<void> wait_ = gate_.get_future().share();
  bool open_ = false;
};
