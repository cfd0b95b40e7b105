// BucketedReducer: data-parallel training over any nn::Module, like PyTorch's
// DistributedDataParallel, driving any Communicator (Gloo or NCCL).
//
//   auto comm = comm::init_process_group(comm::Backend::gloo);   // ciuic-launch sets the env
//   comm::BucketedReducer ddp(model, comm);                      // broadcasts rank 0's weights
//   for (...) {
//     opt.zero_grad();
//     Tensor loss = mse_loss(ddp.forward(x_local), y_local);
//     loss.backward();        // bucket allreduces overlap with the rest of backward
//     opt.step();             // every rank holds the same averaged gradients
//   }
//
// What it does:
// - Construction checks that every rank has the same parameter and buffer names,
//   dtypes and shapes (ValueError naming the first difference and the ranks), then
//   broadcasts parameters and buffers from rank 0.
// - Parameters are grouped into buckets by (dtype, device), in reverse registration
//   order (gradients of the last layers are ready first), each bucket closed once it
//   reaches bucket_cap_bytes (the first one at first_bucket_cap_bytes, so the first
//   allreduce starts early). A bucket is one flat buffer; each parameter's .grad is
//   a view into it, so the model holds one copy of its gradients.
// - On each parameter's gradient-ready hook, its gradient is placed in its bucket
//   (copied when the tape allocated a fresh gradient tensor, which it does when
//   .grad was dropped or is accumulated out of place). When every parameter of a
//   bucket is ready, the bucket is divided by the world size and its asynchronous
//   allreduce(sum) starts at once - in bucket order, the same on every rank, since
//   bucket k waits for buckets < k. The hook of the last parameter waits for all
//   buckets, so backward() returns with averaged gradients.
// - After the first synchronized iteration, the buckets are rebuilt in the order
//   gradients actually became ready on rank 0 (broadcast, so every rank agrees).
// - no_sync(): backward accumulates locally without communicating (gradient
//   accumulation); the first backward after it reduces the accumulated sum.
//   A forward without a graph (NoGradGuard, evaluation) prepares nothing; a second
//   forward before any backward starts the iteration over.
// - A backward that left some parameter without a gradient is a ValueError naming
//   them at the next forward. The collectives that iteration started are waited for
//   first (on CUDA buckets: the current stream is ordered after them), so no later
//   write to a bucket races a collective still reading or writing it.
// - Devices: parameters may live on any device the communicator accepts
//   (Communicator::accepts: CPU for Gloo, the GPU for NCCL, and the emulated GPU
//   for Gloo in emulated builds). On CUDA buckets every bucket operation is
//   stream-ordered: a bucket's collective starts after the work queued before it on
//   the current stream, and backward() returns once every bucket's result is
//   ordered before later work on that stream (the host does not wait for it).
// - find_unused_parameters: forward() finds the parameters its output does not
//   depend on and marks them ready at once (zero gradient); parameters unused on
//   every rank keep an undefined .grad, so optimizers skip them. Without it, such
//   a parameter is a ValueError naming it at forward() (or at the next forward
//   when the graph was not given). A parameter marked ready twice in one iteration
//   is an AutogradError naming it.
// - fp16_compression: f32 buckets travel as f16 (half the bytes), averaged values
//   are converted back to f32. Pre-division keeps the sum in f16 range.
// - Mixed precision: reduced gradients are bit-identical on every rank, so the
//   loss scaler's inf/nan check gives the same answer everywhere and all ranks
//   skip a step together (an inf or nan on one rank reaches every rank's bucket).
// - Checkpoint segments: the segment's record fires the hooks of the parameters
//   used inside it once, after their final gradient; nothing else is needed.
//
// The reducer must outlive the backward passes it drives. Hooks stay registered
// on the parameters after it is destroyed but do nothing then.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "ciuic/comm/communicator.h"
#include "ciuic/nn/module.h"

namespace ciuic::comm {

struct ReducerOptions {
  std::size_t bucket_cap_bytes_ = 25u << 20;       // 25 MiB
  std::size_t first_bucket_cap_bytes_ = 1u << 20;  // 1 MiB
  bool find_unused_parameters_ = false;
  bool fp16_compression_ = false;
  bool broadcast_buffers_ = true;
  bool rebuild_buckets_ = true;

  ReducerOptions& bucket_cap_bytes(std::size_t v) { bucket_cap_bytes_ = v; return *this; }
  ReducerOptions& first_bucket_cap_bytes(std::size_t v) { first_bucket_cap_bytes_ = v; return *this; }
  ReducerOptions& find_unused_parameters(bool v = true) { find_unused_parameters_ = v; return *this; }
  ReducerOptions& fp16_compression(bool v = true) { fp16_compression_ = v; return *this; }
  ReducerOptions& broadcast_buffers(bool v) { broadcast_buffers_ = v; return *this; }
  ReducerOptions& rebuild_buckets(bool v) { rebuild_buckets_ = v; return *this; }
};

// The bucket assignment (pure; exposed for tests). Parameters are visited in
// `order`; each (dtype, device) group fills its own open bucket, which closes when
// it reaches its cap: first_cap for that group's first bucket, cap afterwards.
// Buckets come out in the order their first parameter appears in `order`.
struct BucketParam {
  DType dtype;
  Device device;
  std::size_t bytes;
};
std::vector<std::vector<int>> assign_buckets(const std::vector<BucketParam>& params, const std::vector<int>& order,
                                             std::size_t first_cap, std::size_t cap);

class BucketedReducer {
 public:
  BucketedReducer(std::shared_ptr<nn::Module> module, CommunicatorPtr comm, const ReducerOptions& options = {});
  ~BucketedReducer();
  BucketedReducer(const BucketedReducer&) = delete;
  BucketedReducer& operator=(const BucketedReducer&) = delete;

  // module->forward(x), then prepare_for_backward({output}).
  Tensor forward(const Tensor& x);
  // For modules with other forward signatures: call after the forward, with the
  // outputs the loss is computed from (used to find unused parameters).
  void prepare_for_backward(const std::vector<Tensor>& outputs);

  // While alive, backward passes accumulate gradients locally (no communication).
  class NoSync {
   public:
    explicit NoSync(BucketedReducer& r);
    ~NoSync();
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;
   private:
    BucketedReducer& r_;
    bool previous_;
  };
  NoSync no_sync() { return NoSync(*this); }

  // ---- introspection ----
  // Parameter names per bucket, in bucket (launch) order.
  std::vector<std::vector<std::string>> bucket_names() const;
  std::vector<std::size_t> bucket_bytes() const;
  bool buckets_rebuilt() const;
  // Synchronized iterations completed.
  std::int64_t iterations() const;
  // The last synchronized iteration's overlap, from the backend's Work times
  // (Gloo; all zero for backends without them): comm_ms is the time the bucket
  // allreduces ran, hidden_ms the part of it before the last gradient became
  // ready (hidden behind backward), tail_ms from that moment until every bucket
  // was reduced (what backward() waited for).
  struct Overlap {
    double comm_ms = 0, hidden_ms = 0, tail_ms = 0;
  };
  Overlap last_overlap() const;
  nn::Module& module() { return *module_; }
  Communicator& communicator() { return *comm_; }

  struct State;  // shared with the hooks (which hold it weakly)

 private:
  std::shared_ptr<nn::Module> module_;
  CommunicatorPtr comm_;
  std::shared_ptr<State> state_;
};

}  // namespace ciuic::comm
