// A Work completed by another thread (the Gloo worker): a flag, an error, a condvar.
#pragma once

#include <condition_variable>
#include <exception>
#include <mutex>

#include "ciuic/comm/communicator.h"

namespace ciuic::comm::detail {

class ThreadWork : public Work {
 public:
  explicit ThreadWork(std::string description) : description_(std::move(description)) {}

  bool is_completed() override {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }

  void wait(Milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (timeout.count() > 0) {
      if (!cv_.wait_for(lock, timeout, [&] { return done_; }))
        ::ciuic::detail::fail<CommTimeout>("Work::wait", description_, " did not finish within ", timeout.count(),
                                           " ms; expected every rank to issue the same collectives in the same order");
    } else {
      cv_.wait(lock, [&] { return done_; });
    }
    if (error_) std::rethrow_exception(error_);
  }

  const std::string& description() const override { return description_; }

  WorkTimes times() override {
    std::lock_guard<std::mutex> lock(mu_);
    return times_;
  }

  void started() {
    std::lock_guard<std::mutex> lock(mu_);
    times_.start = std::chrono::steady_clock::now();
  }

  void finish(std::exception_ptr error = nullptr) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      times_.end = std::chrono::steady_clock::now();
      times_.valid = times_.start.time_since_epoch().count() != 0;
      done_ = true;
      error_ = error;
    }
    cv_.notify_all();
  }

 private:
  std::string description_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
  WorkTimes times_;
};

// A Work that is already complete (world size 1, empty tensors).
class DoneWork : public Work {
 public:
  explicit DoneWork(std::string d) : description_(std::move(d)) {}
  bool is_completed() override { return true; }
  void wait(Milliseconds) override {}
  const std::string& description() const override { return description_; }

 private:
  std::string description_;
};

}  // namespace ciuic::comm::detail
