// The Gloo backend: CPU tensors over Gloo's TCP transport (and, on the emulated
// GPU, CUDA tensors ordered on a stream as NCCL orders them: gloo_device.h).
//
// Gloo's collectives block the calling thread, so each communicator owns one
// worker thread that runs them in issue order (the order every rank issues them,
// which is what makes the ranks' collectives meet); callers get a Work at once.
// Reductions are ciuic's own element functions, so f16 and bf16 add in f32 and
// round once, like the CPU ops. Once a collective fails (a peer died or timed
// out), the communicator is broken: later collectives fail without running.
#include <condition_variable>
#include <csignal>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unistd.h>

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include "backends.h"
#include "ciuic/autograd.h"
#include "ciuic/half.h"
#include "ciuic/ops.h"
#include "comm_stream.h"
#include "gloo_device.h"
#include "work.h"

namespace ciuic::comm::detail {

namespace {

// Gloo's rendezvous reads and writes through ciuic's store.
class GlooStoreAdapter : public gloo::rendezvous::Store {
 public:
  explicit GlooStoreAdapter(StorePtr s) : s_(std::move(s)) {}
  void set(const std::string& key, const std::vector<char>& data) override { s_->set(key, data); }
  std::vector<char> get(const std::string& key) override { return s_->get(key); }
  void wait(const std::vector<std::string>& keys) override { s_->wait(keys); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    s_->wait(keys, timeout);
  }

 private:
  StorePtr s_;
};

template <typename T, typename Op>
void reduce_loop(void* out, const void* a, const void* b, size_t n, Op op) {
  T* o = static_cast<T*>(out);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  for (size_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
      o[i] = T(op(static_cast<float>(x[i]), static_cast<float>(y[i])));
    else
      o[i] = op(x[i], y[i]);
  }
}

template <typename T>
gloo::AllreduceOptions::Func reduce_fn_t(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg:
      return [](void* o, const void* a, const void* b, size_t n) { reduce_loop<T>(o, a, b, n, [](auto x, auto y) { return x + y; }); };
    case ReduceOp::max:
      return [](void* o, const void* a, const void* b, size_t n) { reduce_loop<T>(o, a, b, n, [](auto x, auto y) { return x < y ? y : x; }); };
    case ReduceOp::min:
      return [](void* o, const void* a, const void* b, size_t n) { reduce_loop<T>(o, a, b, n, [](auto x, auto y) { return y < x ? y : x; }); };
  }
  return {};
}

gloo::AllreduceOptions::Func reduce_fn(DType t, ReduceOp op) {
  switch (t) {
    case DType::f32: return reduce_fn_t<float>(op);
    case DType::f64: return reduce_fn_t<double>(op);
    case DType::f16: return reduce_fn_t<Half>(op);
    case DType::bf16: return reduce_fn_t<BFloat16>(op);
    case DType::i32: return reduce_fn_t<std::int32_t>(op);
    case DType::i64: return reduce_fn_t<std::int64_t>(op);
    case DType::u8:
    case DType::boolean: return reduce_fn_t<std::uint8_t>(op);
  }
  return {};
}

// Calls fn with a null pointer of an unsigned type of t's element size (Gloo's
// typed setters only use sizeof(T)).
template <typename Fn>
void with_element(DType t, Fn&& fn) {
  switch (dtype_size(t)) {
    case 1: fn(static_cast<std::uint8_t*>(nullptr)); break;
    case 2: fn(static_cast<std::uint16_t*>(nullptr)); break;
    case 4: fn(static_cast<std::uint32_t*>(nullptr)); break;
    default: fn(static_cast<std::uint64_t*>(nullptr)); break;
  }
}

class GlooCommunicator : public Communicator {
 public:
  GlooCommunicator(StorePtr store, int rank, int size, const InitOptions& opts, bool loopback)
      : rank_(rank), size_(size), timeout_(opts.timeout) {
    gloo::transport::tcp::attr attr;
    const char* env_host = std::getenv("CIUIC_GLOO_HOSTNAME");
    const char* env_iface = std::getenv("CIUIC_GLOO_IFNAME");
    if (!opts.gloo_iface.empty()) attr.iface = opts.gloo_iface;
    else if (env_iface && *env_iface) attr.iface = env_iface;
    else if (!opts.gloo_hostname.empty()) attr.hostname = opts.gloo_hostname;
    else if (env_host && *env_host) attr.hostname = env_host;
    else if (loopback) attr.hostname = "127.0.0.1";
    else {
      char name[256] = {0};
      ::gethostname(name, sizeof(name) - 1);
      attr.hostname = name;
    }
    std::string where = attr.iface.empty() ? "host " + attr.hostname : "interface " + attr.iface;
    try {
      auto dev = gloo::transport::tcp::CreateDevice(attr);
      auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
      ctx->setTimeout(opts.timeout);
      GlooStoreAdapter adapter(std::make_shared<PrefixStore>("gloo", store));
      ctx->connectFullMesh(adapter, dev);
      ctx_ = ctx;
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      ::ciuic::detail::fail<CommError>("init gloo", "rank ", rank, " of ", size, " could not connect over ", where,
                                       ": ", e.what());
    }
    // Gloo writes to its sockets without MSG_NOSIGNAL: a peer that died would kill
    // this process with SIGPIPE instead of failing the collective. Ignore SIGPIPE
    // unless the program installed its own handler.
    struct sigaction old{};
    if (sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) std::signal(SIGPIPE, SIG_IGN);
    worker_ = std::thread([this] { run(); });
  }

  // Runs (or fails) every queued collective first: a Work may outlive the
  // communicator, and its wait() must find it finished. A device collective's gate
  // is released whatever happens, so no stream stays held.
  ~GlooCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Backend backend() const override { return Backend::gloo; }
  Device device() const override { return Device::cpu(); }
  Milliseconds timeout() const override { return timeout_; }
  bool accepts(const Device& d) const override {
#ifdef CIUIC_EMULATED_GPU
    return d.is_cpu() || d.is_cuda();
#else
    return d.is_cpu();
#endif
  }
#ifdef CIUIC_EMULATED_GPU
  StreamHandle communication_stream(const Device& d) const override {
    if (!d.is_cuda()) return nullptr;
    std::lock_guard<std::mutex> lock(streams_mu_);
    auto& s = streams_[d.index];
    if (!s) s = std::make_unique<CommStream>(d);
    return s->handle();
  }
#endif

  WorkPtr allreduce(Tensor& t, ReduceOp op) override {
    check("allreduce", t);
    CIUIC_CHECK(op != ReduceOp::avg || is_floating(t.dtype()), DTypeError, "allreduce",
                "avg of ", describe(t), "; expected a floating dtype");
    Tensor buf = host_view(t);
    return enqueue(describe_op("allreduce", t, reduce_op_name(op)), {t}, [this, buf, op](std::uint32_t tag) {
      if (buf.numel() > 0) {
        gloo::AllreduceOptions o(ctx_);
        with_element(buf.dtype(), [&](auto* ty) {
          using T = std::remove_pointer_t<decltype(ty)>;
          o.setOutput<T>(static_cast<T*>(buf.data_ptr()), static_cast<size_t>(buf.numel()));
        });
        o.setReduceFunction(reduce_fn(buf.dtype(), op));
        o.setTag(tag);
        o.setTimeout(timeout_);
        gloo::allreduce(o);
      }
      if (op == ReduceOp::avg) {
        NoGradGuard ng;
        Tensor(buf).copy_(div(buf, static_cast<double>(size_)));
      }
    });
  }

  WorkPtr broadcast(Tensor& t, int root) override {
    check("broadcast", t);
    CIUIC_CHECK(root >= 0 && root < size_, ValueError, "broadcast", "root ", root, "; expected 0..", size_ - 1);
    Tensor buf = host_view(t);
    return enqueue(describe_op("broadcast", t), {t}, [this, buf, root](std::uint32_t tag) {
      if (buf.numel() == 0) return;
      gloo::BroadcastOptions o(ctx_);
      with_element(buf.dtype(), [&](auto* ty) {
        using T = std::remove_pointer_t<decltype(ty)>;
        o.setOutput<T>(static_cast<T*>(buf.data_ptr()), static_cast<size_t>(buf.numel()));
      });
      o.setRoot(root);
      o.setTag(tag);
      o.setTimeout(timeout_);
      gloo::broadcast(o);
    });
  }

  WorkPtr allgather(const Tensor& in, Tensor& out) override {
    check("allgather", in, out);
    CIUIC_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size_, ShapeError, "allgather", "input ",
                describe(in), ", output ", describe(out), "; expected an output of ", in.numel() * size_,
                " elements (world size ", size_, " x input) of the input's dtype");
    Tensor a = host_view(in), b = host_view(out);
    return enqueue(describe_op("allgather", in), {in, out}, [this, a, b](std::uint32_t tag) {
      if (a.numel() == 0) return;
      gloo::AllgatherOptions o(ctx_);
      with_element(a.dtype(), [&](auto* ty) {
        using T = std::remove_pointer_t<decltype(ty)>;
        o.setInput<T>(static_cast<T*>(a.data_ptr()), static_cast<size_t>(a.numel()));
        o.setOutput<T>(static_cast<T*>(b.data_ptr()), static_cast<size_t>(b.numel()));
      });
      o.setTag(tag);
      o.setTimeout(timeout_);
      gloo::allgather(o);
    });
  }

  // Gloo 0.5 has no new-style reduce-scatter: allreduce a copy, keep this rank's
  // chunk (twice the traffic of a ring reduce-scatter; NCCL calls ncclReduceScatter).
  WorkPtr reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) override {
    check("reduce_scatter", in, out);
    CIUIC_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * size_, ShapeError, "reduce_scatter",
                "input ", describe(in), ", output ", describe(out), "; expected an input of ", out.numel() * size_,
                " elements (world size ", size_, " x output) of the output's dtype");
    CIUIC_CHECK(op != ReduceOp::avg || is_floating(in.dtype()), DTypeError, "reduce_scatter", "avg of ", describe(in),
                "; expected a floating dtype");
    Tensor a = host_view(in), b = host_view(out);
    return enqueue(describe_op("reduce_scatter", in, reduce_op_name(op)), {in, out}, [this, a, b, op](std::uint32_t tag) {
      if (b.numel() == 0) return;
      Tensor tmp = a.clone();
      gloo::AllreduceOptions o(ctx_);
      with_element(tmp.dtype(), [&](auto* ty) {
        using T = std::remove_pointer_t<decltype(ty)>;
        o.setOutput<T>(static_cast<T*>(tmp.data_ptr()), static_cast<size_t>(tmp.numel()));
      });
      o.setReduceFunction(reduce_fn(tmp.dtype(), op));
      o.setTag(tag);
      o.setTimeout(timeout_);
      gloo::allreduce(o);
      NoGradGuard ng;
      Tensor chunk = tmp.view({-1}).narrow(0, rank_ * b.numel(), b.numel());
      if (op == ReduceOp::avg) chunk = div(chunk, static_cast<double>(size_));
      Tensor(b).view({-1}).copy_(chunk);
    });
  }

  WorkPtr barrier() override {
    return enqueue("barrier", {}, [this](std::uint32_t tag) {
      gloo::BarrierOptions o(ctx_);
      o.setTag(tag);
      o.setTimeout(timeout_);
      gloo::barrier(o);
    });
  }

 private:
  struct Task {
    std::shared_ptr<ThreadWork> work;
    std::function<void(std::uint32_t)> fn;  // works on host memory (host_view)
    std::uint32_t tag = 0;
    std::shared_ptr<StreamGate> gate;  // device collectives: where their stream waits
    StreamHandle stream = nullptr;     // device collectives: the stream the gate is on
    std::vector<Tensor> keep;          // the collective's tensors: fn's host views may not own their memory
  };

  // A tensor handed to a collective: a contiguous CPU tensor; on the emulated GPU, a
  // CUDA tensor as well (its memory is host memory; see gloo_device.h).
  void check(const char* op, const Tensor& t) const {
#ifdef CIUIC_EMULATED_GPU
    check_tensor("gloo", op, t, t.defined() && t.device().is_cuda() ? DeviceType::CUDA : DeviceType::CPU);
#else
    CIUIC_CHECK(!t.defined() || t.device().is_cpu(), DeviceError, op, describe(t), " given to the gloo backend, "
                "which moves host memory only; expected a CPU tensor (Backend::nccl moves CUDA tensors)");
    check_tensor("gloo", op, t, DeviceType::CPU);
#endif
  }
  void check(const char* op, const Tensor& in, const Tensor& out) const {
    check(op, in);
    check(op, out);
    CIUIC_CHECK(in.device() == out.device(), DeviceError, op, "input ", describe(in), ", output ", describe(out),
                "; expected both on one device");
  }

  std::string full_description(const std::string& d) const {
    return d + " on rank " + std::to_string(rank_) + " of " + std::to_string(size_) + " (gloo)";
  }

  // Queues fn for the worker; `tensors` are the collective's (empty for a barrier).
  WorkPtr enqueue(const std::string& description, std::vector<Tensor> tensors, std::function<void(std::uint32_t)> fn) {
#ifdef CIUIC_EMULATED_GPU
    if (!tensors.empty() && tensors.front().device().is_cuda())
      return enqueue_on_stream(full_description(description), std::move(tensors), std::move(fn));
#endif
    auto w = std::make_shared<ThreadWork>(full_description(description));
    push(Task{w, std::move(fn), 0, nullptr, nullptr, std::move(tensors)});
    return w;
  }

  void push(Task task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      CIUIC_COMM_CHECK(!stop_, CommError, "gloo", "communicator is shutting down");
      task.tag = next_tag_++;
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

#ifdef CIUIC_EMULATED_GPU
  // Steps 1-4 of gloo_device.h. One issuer at a time: the gates must sit on the
  // stream in the order their tasks sit in the worker's queue, or the worker would
  // wait for a gate that is queued behind a later one.
  WorkPtr enqueue_on_stream(std::string what, std::vector<Tensor> tensors, std::function<void(std::uint32_t)> fn) {
    std::lock_guard<std::mutex> issue(issue_mu_);
    {
      // As NCCL's async error: a device collective on a broken communicator is refused
      // at once (its Work's wait() would not block to report it).
      std::lock_guard<std::mutex> lock(mu_);
      CIUIC_COMM_CHECK(!stop_, CommError, "gloo", "communicator is shutting down");
      CIUIC_COMM_CHECK(!broken_, CommError, "gloo", what, ": not issued, an earlier collective failed (",
                       broken_reason_, ")");
    }
    const Device dev = tensors.front().device();
    DeviceGuard guard(dev);
    StreamHandle cs = communication_stream(dev);
    Event ready(dev);
    ready.record(current_stream(dev));
    ready.wait_on(cs);
    for (const Tensor& t : tensors)
      if (t.numel() > 0 && t.storage()->allocator) t.storage()->allocator->record_stream(t.storage()->data, cs);
    auto w = std::make_shared<DeviceWork>(what, dev);
    auto gate = std::make_shared<StreamGate>();
    hold_stream_at_gate(cs, gate);
    try {
      w->end().record(cs);
      push(Task{w, std::move(fn), 0, gate, cs, std::move(tensors)});
    } catch (...) {
      gate->release();  // never reaches the worker: let the stream go on
      throw;
    }
    return w;
  }
#endif

  void set_broken(const std::string& reason) {
    std::lock_guard<std::mutex> lock(mu_);
    broken_ = true;
    broken_reason_ = reason;
  }

  void run() {
    for (;;) {
      Task task;
      bool broken = false;
      std::string broken_reason;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
        broken = broken_;
        broken_reason = broken_reason_;
      }
      GateRelease release{task.gate.get()};  // after finish() below, whatever happens
      std::exception_ptr err;
      StreamWait at_gate;
      if (broken) {
        err = std::make_exception_ptr(CommError(task.work->description() + ": not run, an earlier collective failed (" +
                                                broken_reason + ")"));
      } else if (task.gate && !(at_gate = await_stream(*task.gate, task.stream, timeout_)).reached) {
        // This rank cannot take part: its peers will time out, and the ranks' sequences
        // of collectives no longer match.
        std::string full = task.work->description() + " did not start: " + at_gate.why;
        set_broken(full);
        err = at_gate.timed_out ? std::make_exception_ptr(CommTimeout(full)) : std::make_exception_ptr(CommError(full));
      } else {
        try {
          task.work->started();
          task.fn(task.tag);
        } catch (const Error&) {
          err = std::current_exception();
        } catch (const std::exception& e) {
          std::string msg = e.what();
          bool timed_out = msg.find("imed out") != std::string::npos || msg.find("imeout") != std::string::npos;
          std::string full = task.work->description() + " failed: " + msg +
                             (timed_out ? "; a peer rank did not take part within the timeout (stuck or dead)"
                                        : "; a peer rank died or closed its connection");
          set_broken(full);
          err = timed_out ? std::make_exception_ptr(CommTimeout(full)) : std::make_exception_ptr(CommError(full));
        }
      }
      task.work->finish(err);
    }
  }

  int rank_, size_;
  Milliseconds timeout_;
  std::shared_ptr<gloo::Context> ctx_;
  std::mutex mu_;  // guards the queue, stop_, next_tag_ and broken_
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool stop_ = false;
  std::uint32_t next_tag_ = 1;
  bool broken_ = false;  // set by the worker after a collective failed; later ones are not run
  std::string broken_reason_;
#ifdef CIUIC_EMULATED_GPU
  std::mutex issue_mu_;  // device collectives: queue order == stream order
  mutable std::mutex streams_mu_;
  mutable std::map<int, std::unique_ptr<CommStream>> streams_;  // by device index, made on first use
#endif
  std::thread worker_;  // last: started after everything it uses, joined before it goes
};

}  // namespace

CommunicatorPtr make_gloo(StorePtr store, int rank, int size, const InitOptions& opts, bool store_is_loopback) {
  return std::make_shared<GlooCommunicator>(std::move(store), rank, size, opts, store_is_loopback);
}

}  // namespace ciuic::comm::detail
