// The NCCL backend: CUDA tensors. Compiled in CUDA builds with NCCL; it has not
// run on a GPU yet (see the README's GPU verification section).
//
// Stream discipline: every collective runs on the communicator's own stream (a
// dedicated one, comm_stream.h, never from Stream::create's pool). Before
// it, an event recorded on the tensor's current (compute) stream makes the NCCL
// stream wait for the work that produced the tensor; after it, an event on the NCCL
// stream marks completion. Work::wait() makes the current stream wait for that event
// (the host does not block), as PyTorch's ProcessGroupNCCL does; with a timeout, the
// host polls the event and the communicator's asynchronous error, and aborts the
// communicator when the time is up, so a dead peer becomes an error, not a hang.
// The tensor's memory is record_stream'ed on the NCCL stream, so the caching
// allocator does not hand it out again before the collective is done.
//
// Lifetimes: the NCCL handle, the stream and the abort state live in an NcclCore
// shared by the communicator and its Works, so a Work may outlive its communicator.
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include <cuda_runtime.h>
#include <nccl.h>

#include "backends.h"
#include "ciuic/cuda_check.h"
#include "ciuic/stream.h"
#include "comm_stream.h"

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

// What the communicator and its Works share (N8: a Work that outlives its
// communicator must still wait() safely): the NCCL communicator handle, the
// dedicated stream and the abort state. The last owner destroys the handle, so a
// Work never polls a destroyed ncclComm_t.
struct NcclCore {
  int rank, size;
  Device device;
  ncclComm_t comm = nullptr;
  std::atomic<bool> aborted{false};
  std::mutex mu;  // serialises abort and the async-error poll with each other
  std::unique_ptr<CommStream> stream;  // dedicated, never from Stream::create's pool (N7)

  NcclCore(int r, int n, Device d) : rank(r), size(n), device(d) {}
  NcclCore(const NcclCore&) = delete;
  NcclCore& operator=(const NcclCore&) = delete;

  // Destructors never throw: a failure here leaves the handle to the process exit.
  // An aborted communicator has no handle left (abort_communicator released it).
  ~NcclCore() {
    if (comm) ncclCommDestroy(comm);
  }

  void abort_communicator() {
    std::lock_guard<std::mutex> lock(mu);
    if (!aborted && comm) {
      aborted = true;
      ncclCommAbort(comm);
      comm = nullptr;
    }
  }

  // NCCL's asynchronous error (a peer died, a network failure); ncclSuccess once aborted.
  ncclResult_t async_error() {
    std::lock_guard<std::mutex> lock(mu);
    ncclResult_t async = ncclSuccess;
    if (comm) CIUIC_NCCL_CHECK(ncclCommGetAsyncError(comm, &async));
    return async;
  }

  // Host-side wait with a deadline: polls completion and NCCL's asynchronous error.
  void host_wait(const Event& end, const std::string& what, Milliseconds timeout) {
    CIUIC_COMM_CHECK(!aborted, CommError, "nccl", what, ": the NCCL communicator was aborted after an earlier failure");
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (end.query()) return;
      ncclResult_t async = async_error();
      if (async != ncclSuccess) {
        abort_communicator();
        ::ciuic::detail::fail<CommError>("nccl", what, " on rank ", rank, " failed: ", ncclGetErrorString(async),
                                         "; a peer rank probably died");
      }
      if (std::chrono::steady_clock::now() > deadline) {
        abort_communicator();
        ::ciuic::detail::fail<CommTimeout>("nccl", what, " on rank ", rank, " did not finish within ", timeout.count(),
                                           " ms; the communicator was aborted (a peer is stuck or dead)");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
};

class NcclWork : public Work {
 public:
  NcclWork(std::string d, std::shared_ptr<NcclCore> core, std::vector<Storage> keep)
      : description_(std::move(d)), end_(core->device), core_(std::move(core)), keep_(std::move(keep)) {}
  bool is_completed() override { return end_.query(); }
  void wait(Milliseconds timeout) override {
    if (timeout.count() > 0) core_->host_wait(end_, description_, timeout);
    DeviceGuard guard(core_->device);
    end_.wait_on(current_stream(core_->device));
  }
  const std::string& description() const override { return description_; }
  Event& end() { return end_; }

 private:
  std::string description_;
  Event end_;
  std::shared_ptr<NcclCore> core_;  // shared, not a raw pointer: the Work may outlive the communicator
  std::vector<Storage> keep_;       // the tensors' memory stays alive until the Work is gone
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(StorePtr store, int rank, int size, const InitOptions& opts)
      : timeout_(opts.timeout),
        core_(std::make_shared<NcclCore>(rank, size, Device::cuda(opts.device_index < 0 ? 0 : opts.device_index))) {
    const Device device = core_->device;
    check_device_usable(device, "init nccl");
    DeviceGuard guard(device);
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
    CIUIC_NCCL_CHECK(ncclCommInitRank(&core_->comm, size, id, rank));
    core_->stream = std::make_unique<CommStream>(device);
  }

  int rank() const override { return core_->rank; }
  int size() const override { return core_->size; }
  Backend backend() const override { return Backend::nccl; }
  Device device() const override { return core_->device; }
  Milliseconds timeout() const override { return timeout_; }
  StreamHandle communication_stream(const Device& d) const override {
    return d == core_->device ? core_->stream->handle() : nullptr;
  }

  WorkPtr allreduce(Tensor& t, ReduceOp op) override {
    check(t, "allreduce");
    CIUIC_CHECK(op != ReduceOp::avg || is_floating(t.dtype()), DTypeError, "allreduce", "avg of ", describe(t),
                "; expected a floating dtype");
    return launch(describe_op("allreduce", t, reduce_op_name(op)), {t}, [&](cudaStream_t s) {
      CIUIC_NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                                     nccl_dtype(t, "allreduce"), nccl_op(op), core_->comm, s));
    });
  }

  WorkPtr broadcast(Tensor& t, int root) override {
    check(t, "broadcast");
    CIUIC_CHECK(root >= 0 && root < size(), ValueError, "broadcast", "root ", root, "; expected 0..", size() - 1);
    return launch(describe_op("broadcast", t), {t}, [&](cudaStream_t s) {
      CIUIC_NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                                     nccl_dtype(t, "broadcast"), root, core_->comm, s));
    });
  }

  WorkPtr allgather(const Tensor& in, Tensor& out) override {
    check(in, "allgather");
    check(out, "allgather");
    CIUIC_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size(), ShapeError, "allgather", "input ",
                describe(in), ", output ", describe(out), "; expected an output of ", in.numel() * size(),
                " elements of the input's dtype");
    return launch(describe_op("allgather", in), {in, out}, [&](cudaStream_t s) {
      CIUIC_NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()),
                                     nccl_dtype(in, "allgather"), core_->comm, s));
    });
  }

  WorkPtr reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) override {
    check(in, "reduce_scatter");
    check(out, "reduce_scatter");
    CIUIC_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * size(), ShapeError, "reduce_scatter",
                "input ", describe(in), ", output ", describe(out), "; expected an input of ", out.numel() * size(),
                " elements of the output's dtype");
    return launch(describe_op("reduce_scatter", in, reduce_op_name(op)), {in, out}, [&](cudaStream_t s) {
      CIUIC_NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
                                         nccl_dtype(in, "reduce_scatter"), nccl_op(op), core_->comm, s));
    });
  }

  // NCCL has no barrier: a one-element allreduce, waited for on the host.
  WorkPtr barrier() override {
    Tensor one = zeros({1}, TensorOptions(DType::f32).device(device()));
    auto w = allreduce(one, ReduceOp::sum);
    static_cast<NcclWork*>(w.get())->end().synchronize();
    return w;
  }

 private:
  void check(const Tensor& t, const char* op) {
    check_tensor("nccl", op, t, DeviceType::CUDA);
    CIUIC_CHECK(t.device() == device(), DeviceError, op, describe(t), " given to the NCCL communicator of ",
                device().str(), "; expected a tensor on that GPU");
    CIUIC_COMM_CHECK(!core_->aborted, CommError, op, "the NCCL communicator was aborted after an earlier failure");
  }

  template <typename Fn>
  WorkPtr launch(std::string description, std::vector<Tensor> tensors, Fn&& call) {
    const Device dev = device();
    DeviceGuard guard(dev);
    cudaStream_t compute = static_cast<cudaStream_t>(current_stream(dev));
    cudaStream_t nccl = static_cast<cudaStream_t>(core_->stream->handle());
    Event ready(dev);
    ready.record(compute);
    ready.wait_on(nccl);
    std::vector<Storage> keep;
    for (const Tensor& t : tensors) {
      if (t.numel() > 0 && t.storage()->allocator) t.storage()->allocator->record_stream(t.storage()->data, nccl);
      keep.push_back(t.storage());
    }
    auto w = std::make_shared<NcclWork>(description + " on rank " + std::to_string(rank()) + " of " +
                                            std::to_string(size()) + " (nccl)",
                                        core_, std::move(keep));
    if (tensors.front().numel() > 0) call(nccl);
    w->end().record(nccl);
    return w;
  }

  Milliseconds timeout_;
  std::shared_ptr<NcclCore> core_;
};

}  // namespace

CommunicatorPtr make_nccl(StorePtr store, int rank, int size, const InitOptions& opts) {
  return std::make_shared<NcclCommunicator>(std::move(store), rank, size, opts);
}

}  // namespace ciuic::comm::detail
