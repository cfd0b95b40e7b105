// Communicator: collectives over the ranks of one job, on Tensors.
//
// Every collective is asynchronous: it returns a Work handle at once and runs in
// the order it was issued (the same order on every rank; a collective issued in a
// different order on two ranks deadlocks until the timeout). Backends:
//   - Gloo (CPU tensors): TCP between the ranks; one worker thread per
//     communicator runs the collectives in issue order. In a build on the emulated
//     GPU (CIUIC_EMULATED_GPU), whose device memory is host memory, Gloo also takes
//     CUDA tensors and orders them on a stream exactly as NCCL does (below).
//   - NCCL (CUDA tensors): the collectives run on the communicator's own stream,
//     which first waits (an event) for the work already queued on the tensor's
//     current stream; Work::wait() makes the current stream wait for the result.
// A communicator's stream is its own: never one of Stream::create's pool, so a
// user's side stream can never be the stream communication runs on.
// The bucketed reducer (reducer.h) sees only this interface.
//
// Tensors are reduced in place and must stay alive and unchanged until wait()
// returns. Non-contiguous tensors are not accepted (ValueError): pass contiguous
// buffers, as the reducer does.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ciuic/error.h"
#include "ciuic/stream.h"
#include "ciuic/tensor.h"

namespace ciuic::comm {

// A collective failed: a peer died or closed its connection, a message was
// malformed, the store refused us. The message names the op, the rank and the
// backend's own description.
class CommError : public Error {
 public:
  explicit CommError(const std::string& msg) : Error(msg) {}
};
// A collective or a store request did not finish within its timeout.
class CommTimeout : public CommError {
 public:
  explicit CommTimeout(const std::string& msg) : CommError(msg) {}
};

}  // namespace ciuic::comm

// CIUIC_CHECK for the comm error kinds (CommError, CommTimeout).
#define CIUIC_COMM_CHECK(cond, Kind, op, ...)                                   \
  do {                                                                          \
    if (!(cond)) ::ciuic::detail::fail<::ciuic::comm::Kind>(op, __VA_ARGS__);   \
  } while (0)

namespace ciuic::comm {

enum class ReduceOp { sum, avg, max, min };
const char* reduce_op_name(ReduceOp op);

enum class Backend { gloo, nccl };
const char* backend_name(Backend b);

using Milliseconds = std::chrono::milliseconds;

// When a collective ran (steady clock): filled by backends that know (Gloo's
// worker thread); valid stays false otherwise (NCCL runs on the device).
struct WorkTimes {
  std::chrono::steady_clock::time_point start, end;
  bool valid = false;
};

// The handle of one asynchronous collective. It owns what it needs (never a raw
// pointer to its communicator): a Work may outlive the communicator that made it, and
// wait() / is_completed() on it stay safe (a collective still queued when its
// communicator is destroyed runs or fails first: destruction drains the queue).
class Work {
 public:
  // After completion: when the collective started and finished running.
  virtual WorkTimes times() { return {}; }
  virtual ~Work() = default;
  // True once the collective has finished (successfully or not); never blocks.
  virtual bool is_completed() = 0;
  // CPU tensors: blocks until the collective finishes and rethrows its error
  // (CommError). With a timeout (> 0), throws CommTimeout naming the op when it has
  // not finished by then (the collective itself keeps its own backend timeout).
  // CUDA tensors (NCCL, Gloo on the emulated GPU): without a timeout the host does
  // not block: wait() returns once the result is ordered before later work on the
  // current stream (it throws at once if the collective has already failed); with a
  // timeout the host waits for the collective and reports its failure, as above.
  virtual void wait(Milliseconds timeout = Milliseconds(0)) = 0;
  // The collective, for messages: "allreduce(sum) f32[1024] on cpu".
  virtual const std::string& description() const = 0;
};
using WorkPtr = std::shared_ptr<Work>;

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual Backend backend() const = 0;
  // Where this communicator's own small tensors live (CPU for Gloo, its GPU for
  // NCCL): the reducer puts its control messages there.
  virtual Device device() const = 0;
  // Whether collectives take tensors on d: the device type of device() (Gloo also
  // takes CUDA tensors on the emulated GPU).
  virtual bool accepts(const Device& d) const { return d.type == device().type; }
  // The stream that collectives on tensors of d run on: dedicated to this
  // communicator while it lives, never a stream of Stream::create's pool (nullptr
  // for CPU tensors, which run on the host). May create it (a CUDA device).
  virtual StreamHandle communication_stream(const Device& d) const {
    (void)d;
    return nullptr;
  }
  // The timeout of every collective (set at construction).
  virtual Milliseconds timeout() const = 0;

  // t <- op over every rank's t (avg: sum / size, floating dtypes only).
  virtual WorkPtr allreduce(Tensor& t, ReduceOp op = ReduceOp::sum) = 0;
  // t <- root's t.
  virtual WorkPtr broadcast(Tensor& t, int root = 0) = 0;
  // out (size * n elements, rank-major) <- every rank's in (n elements).
  virtual WorkPtr allgather(const Tensor& in, Tensor& out) = 0;
  // out (n elements) <- this rank's n-element chunk of op over every rank's in (size * n).
  virtual WorkPtr reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op = ReduceOp::sum) = 0;
  virtual WorkPtr barrier() = 0;

  // Keeps x alive as long as this communicator (init_process_group: rank 0's store server).
  void keep_alive(std::shared_ptr<void> x) { keep_.push_back(std::move(x)); }

 private:
  std::vector<std::shared_ptr<void>> keep_;
};
using CommunicatorPtr = std::shared_ptr<Communicator>;

// Which backends this build has, and why not when it has not.
bool backend_available(Backend b);
std::string backend_unavailable_reason(Backend b);  // "" when available

struct InitOptions {
  Milliseconds timeout = std::chrono::seconds(300);  // collectives and the store
  int device_index = -1;  // NCCL: the GPU; -1 = LOCAL_RANK (0 for make_communicator)
  // Gloo: the address this rank's TCP transport listens on, found by name or by
  // interface (CIUIC_GLOO_HOSTNAME / CIUIC_GLOO_IFNAME in the environment). Default:
  // 127.0.0.1 when the store is on a loopback address, else this host's name.
  std::string gloo_hostname, gloo_iface;
};

class Store;

// The communicator of every rank over an explicit store (each rank passes a client
// of the same store; the keys used are under "<backend>/").
CommunicatorPtr make_communicator(Backend backend, std::shared_ptr<Store> store, int rank, int size,
                                  const InitOptions& opts = {});

// Like torch.distributed.init_process_group: reads the rendezvous from the
// environment (rendezvous.h), starts or joins the store, and connects the ranks.
// Throws NotImplementedError naming what is missing (e.g. "built without Gloo:
// install libgloo-dev and reconfigure with -Dgloo=enabled") when this build lacks
// the backend.
CommunicatorPtr init_process_group(Backend backend, const InitOptions& opts = {});

// ---- helpers over any communicator ----
// True on every rank when `local` is true on any rank (a one-byte allreduce(max)).
bool any_rank(Communicator& comm, bool local);

}  // namespace ciuic::comm
