// The NCCL backend: CUDA tensors. Compiled in CUDA builds with NCCL; it has not
// run on a GPU yet (see the README's GPU verification section).
//
// Stream discipline: every collective runs on the communicator's own stream. Before
// it, an event recorded on the tensor's current (compute) stream makes the NCCL
// stream wait for the work that produced the tensor; after it, an event on the NCCL
// stream marks completion. Work::wait() makes the current stream wait for that event
// (the host does not block), as PyTorch's ProcessGroupNCCL does; with a timeout, the
// host polls the event and the communicator's asynchronous error, and aborts the
// communicator when the time is up, so a dead peer becomes an error, not a hang.
// The tensor's memory is record_stream'ed on the NCCL stream, so the caching
// allocator does not hand it out again before the collective is done.
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include <cuda_runtime.h>
#include <nccl.h>

#include "backends.h"
#include "ciuic/cuda_check.h"
#include "ciuic/stream.h"

namespace ciuic::comm::detail {

namespace {

ncclDataType_t nccl_dtype(const Tensor& t, const char* op) {
  switch (t.dtype()) {
    case DType::f32: return ncclFloat32;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    case DType::f64: return ncclFloat64;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8:
    case DType::boolean: return ncclUint8;
  }
  ::ciuic::detail::fail<DTypeError>(op, describe(t), ": no NCCL type for this dtype");
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  return ncclSum;
}

class NcclCommunicator;

class NcclWork : public Work {
 public:
  NcclWork(std::string d, Device dev, NcclCommunicator* owner, std::vector<Storage> keep)
      : description_(std::move(d)), end_(dev), owner_(owner), keep_(std::move(keep)) {}
  bool is_completed() override { return end_.query(); }
  void wait(Milliseconds timeout) override;
  const std::string& description() const override { return description_; }
  Event& end() { return end_; }

 private:
  std::string description_;
  Event end_;
  NcclCommunicator* owner_;
  std::vector<Storage> keep_;  // the tensors' memory stays alive until the Work is gone
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(StorePtr store, int rank, int size, const InitOptions& opts)
      : rank_(rank), size_(size), timeout_(opts.timeout), device_(Device::cuda(opts.device_index < 0 ? 0 : opts.device_index)) {
    check_device_usable(device_, "init nccl");
    DeviceGuard guard(device_);
    ncclUniqueId id;
    PrefixStore s("nccl", store);
    if (rank == 0) {
      CIUIC_NCCL_CHECK(ncclGetUniqueId(&id));
      s.set("unique_id", std::vector<char>(reinterpret_cast<char*>(&id), reinterpret_cast<char*>(&id) + sizeof(id)));
    }
    auto v = s.get("unique_id");
    CIUIC_COMM_CHECK(v.size() == sizeof(id), CommError, "init nccl", "the unique id from the store has ", v.size(),
                " bytes; expected ", sizeof(id));
    std::memcpy(&id, v.data(), sizeof(id));
    CIUIC_NCCL_CHECK(ncclCommInitRank(&comm_, size, id, rank));
    stream_ = Stream::create(device_);
  }

  ~NcclCommunicator() override {
    if (comm_) {
      // Destructors never throw: a failure here leaves the communicator to the process exit.
      if (aborted_) ncclCommAbort(comm_);
      else ncclCommDestroy(comm_);
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Backend backend() const override { return Backend::nccl; }
  Device device() const override { return device_; }
  Milliseconds timeout() const override { return timeout_; }

  WorkPtr allreduce(Tensor& t, ReduceOp op) override {
    check(t, "allreduce");
    CIUIC_CHECK(op != ReduceOp::avg || is_floating(t.dtype()), DTypeError, "allreduce", "avg of ", describe(t),
                "; expected a floating dtype");
    return launch(describe_op("allreduce", t, reduce_op_name(op)), {t}, [&](cudaStream_t s) {
      CIUIC_NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                                     nccl_dtype(t, "allreduce"), nccl_op(op), comm_, s));
    });
  }

  WorkPtr broadcast(Tensor& t, int root) override {
    check(t, "broadcast");
    CIUIC_CHECK(root >= 0 && root < size_, ValueError, "broadcast", "root ", root, "; expected 0..", size_ - 1);
    return launch(describe_op("broadcast", t), {t}, [&](cudaStream_t s) {
      CIUIC_NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                                     nccl_dtype(t, "broadcast"), root, comm_, s));
    });
  }

  WorkPtr allgather(const Tensor& in, Tensor& out) override {
    check(in, "allgather");
    check(out, "allgather");
    CIUIC_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size_, ShapeError, "allgather", "input ",
                describe(in), ", output ", describe(out), "; expected an output of ", in.numel() * size_,
                " elements of the input's dtype");
    return launch(describe_op("allgather", in), {in, out}, [&](cudaStream_t s) {
      CIUIC_NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()),
                                     nccl_dtype(in, "allgather"), comm_, s));
    });
  }

  WorkPtr reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) override {
    check(in, "reduce_scatter");
    check(out, "reduce_scatter");
    CIUIC_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * size_, ShapeError, "reduce_scatter",
                "input ", describe(in), ", output ", describe(out), "; expected an input of ", out.numel() * size_,
                " elements of the output's dtype");
    return launch(describe_op("reduce_scatter", in, reduce_op_name(op)), {in, out}, [&](cudaStream_t s) {
      CIUIC_NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
                                         nccl_dtype(in, "reduce_scatter"), nccl_op(op), comm_, s));
    });
  }

  // NCCL has no barrier: a one-element allreduce, waited for on the host.
  WorkPtr barrier() override {
    Tensor one = zeros({1}, TensorOptions(DType::f32).device(device_));
    auto w = allreduce(one, ReduceOp::sum);
    static_cast<NcclWork*>(w.get())->end().synchronize();
    return w;
  }

  // Host-side wait with a deadline: polls completion and NCCL's asynchronous error.
  void host_wait(NcclWork& w, Milliseconds timeout) {
    CIUIC_COMM_CHECK(!aborted_, CommError, "nccl", w.description(),
                     ": the NCCL communicator was aborted after an earlier failure");
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (w.end().query()) return;
      ncclResult_t async = ncclSuccess;
      CIUIC_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
      if (async != ncclSuccess) {
        abort_communicator();
        ::ciuic::detail::fail<CommError>("nccl", w.description(), " on rank ", rank_, " failed: ",
                                         ncclGetErrorString(async), "; a peer rank probably died");
      }
      if (std::chrono::steady_clock::now() > deadline) {
        abort_communicator();
        ::ciuic::detail::fail<CommTimeout>("nccl", w.description(), " on rank ", rank_, " did not finish within ",
                                           timeout.count(), " ms; the communicator was aborted (a peer is stuck or dead)");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

 private:
  void check(const Tensor& t, const char* op) {
    check_tensor("nccl", op, t, DeviceType::CUDA);
    CIUIC_CHECK(t.device() == device_, DeviceError, op, describe(t), " given to the NCCL communicator of ",
                device_.str(), "; expected a tensor on that GPU");
    CIUIC_COMM_CHECK(!aborted_, CommError, op, "the NCCL communicator was aborted after an earlier failure");
  }

  template <typename Fn>
  WorkPtr launch(std::string description, std::vector<Tensor> tensors, Fn&& call) {
    DeviceGuard guard(device_);
    cudaStream_t compute = static_cast<cudaStream_t>(current_stream(device_));
    cudaStream_t nccl = static_cast<cudaStream_t>(stream_.handle());
    Event ready(device_);
    ready.record(compute);
    ready.wait_on(nccl);
    std::vector<Storage> keep;
    for (const Tensor& t : tensors) {
      if (t.numel() > 0 && t.storage()->allocator) t.storage()->allocator->record_stream(t.storage()->data, nccl);
      keep.push_back(t.storage());
    }
    auto w = std::make_shared<NcclWork>(description + " on rank " + std::to_string(rank_) + " of " +
                                            std::to_string(size_) + " (nccl)",
                                        device_, this, std::move(keep));
    if (tensors.front().numel() > 0) call(nccl);
    w->end().record(nccl);
    return w;
  }

  void abort_communicator() {
    if (!aborted_ && comm_) {
      aborted_ = true;
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
  }

  int rank_, size_;
  Milliseconds timeout_;
  Device device_;
  ncclComm_t comm_ = nullptr;
  Stream stream_;
  bool aborted_ = false;
};

void NcclWork::wait(Milliseconds timeout) {
  if (timeout.count() > 0) owner_->host_wait(*this, timeout);
  DeviceGuard guard(owner_->device());
  end_.wait_on(current_stream(owner_->device()));
}

}  // namespace

CommunicatorPtr make_nccl(StorePtr store, int rank, int size, const InitOptions& opts) {
  return std::make_shared<NcclCommunicator>(std::move(store), rank, size, opts);
}

}  // namespace ciuic::comm::detail
