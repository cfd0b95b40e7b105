// Backend selection, init_process_group, and what every backend shares.
#include "ciuic/comm/communicator.h"

#include <mutex>

#include "backends.h"
#include "ciuic/comm/rendezvous.h"
#include "ciuic/comm/store.h"
#include "work.h"

namespace ciuic::comm {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::avg: return "avg";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
  }
  return "?";
}

const char* backend_name(Backend b) { return b == Backend::gloo ? "gloo" : "nccl"; }

std::string backend_unavailable_reason(Backend b) {
  if (b == Backend::gloo) {
#ifdef CIUIC_WITH_GLOO
    return "";
#else
    return "this build of ciuic has no Gloo backend (libgloo was not found at configure time): install libgloo-dev "
           "(Debian/Ubuntu) and reconfigure with -Dgloo=enabled";
#endif
  }
#if defined(CIUIC_WITH_NCCL) && defined(CIUIC_WITH_CUDA)
  return "";
#elif defined(CIUIC_EMULATED_GPU)
  return "this build of ciuic runs on the emulated GPU (-Dgpu_emulation=true), which has no NCCL: use "
         "Backend::gloo, which moves CUDA tensors there, ordered on streams as NCCL orders them";
#elif defined(CIUIC_WITH_CUDA)
  return "this build of ciuic has no NCCL backend (nccl.h / libnccl were not found next to CUDA or in the "
         "distribution's paths at configure time): install NCCL (libnccl-dev) and reconfigure with -Dnccl=enabled";
#else
  return "this build of ciuic has no NCCL backend: it was built without CUDA (-Dcuda=disabled or no nvcc); "
         "NCCL needs a CUDA build and libnccl";
#endif
}

bool backend_available(Backend b) { return backend_unavailable_reason(b).empty(); }

namespace {
[[maybe_unused]] bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}
}  // namespace

CommunicatorPtr make_communicator(Backend backend, StorePtr store, int rank, int size, const InitOptions& opts) {
  CIUIC_CHECK(size >= 1 && rank >= 0 && rank < size, ValueError, "make_communicator", "rank ", rank, " of world size ",
              size, "; expected 0 <= rank < size");
  CIUIC_CHECK(store != nullptr, ValueError, "make_communicator", "no store");
  std::string why = backend_unavailable_reason(backend);
  CIUIC_CHECK(why.empty(), NotImplementedError, "init_process_group", "backend ", backend_name(backend), ": ", why);
  (void)opts;
#ifdef CIUIC_WITH_GLOO
  if (backend == Backend::gloo) {
    bool loopback = true;
    if (const char* a = std::getenv("MASTER_ADDR")) loopback = is_loopback(a);
    return detail::make_gloo(store, rank, size, opts, loopback);
  }
#endif
#if defined(CIUIC_WITH_NCCL) && defined(CIUIC_WITH_CUDA)
  if (backend == Backend::nccl) return detail::make_nccl(store, rank, size, opts);
#endif
  ::ciuic::detail::fail<NotImplementedError>("init_process_group", "backend ", backend_name(backend), " is not available");
}

CommunicatorPtr init_process_group(Backend backend, const InitOptions& opts) {
  std::string why = backend_unavailable_reason(backend);
  CIUIC_CHECK(why.empty(), NotImplementedError, "init_process_group", "backend ", backend_name(backend), ": ", why);
  RendezvousInfo info = rendezvous_from_env();
  // One store per process: a second init_process_group (say Gloo for CPU tensors
  // next to NCCL for CUDA tensors) uses it under a fresh key prefix.
  static std::mutex mu;
  static int groups = 0;
  int group = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    group = groups++;
  }
  StorePtr base = process_store(opts.timeout);
  StorePtr store = std::make_shared<PrefixStore>("pg" + std::to_string(group), base);
  InitOptions o = opts;
  if (o.device_index < 0) o.device_index = info.local_rank;
  CommunicatorPtr c;
  if (backend == Backend::gloo) {
#ifdef CIUIC_WITH_GLOO
    c = detail::make_gloo(store, info.rank, info.world_size, o, is_loopback(info.master_addr));
#endif
  } else {
    c = make_communicator(backend, store, info.rank, info.world_size, o);
  }
  // Nobody returns before every rank has finished the rendezvous: rank 0 serves the
  // store, and a rank 0 that finished its work and exited would take it away.
  store_barrier(*store, "init/" + std::string(backend_name(backend)), info.world_size);
  c->keep_alive(base);
  return c;
}

bool any_rank(Communicator& comm, bool local) {
  Tensor flag = full({1}, local ? 1.0 : 0.0, TensorOptions(DType::u8).device(comm.device()));
  comm.allreduce(flag, ReduceOp::max)->wait();
  return flag.item() != 0.0;
}

namespace detail {

std::string describe_op(const char* op, const Tensor& t, const char* what) {
  std::string s = op;
  if (what) s += std::string("(") + what + ")";
  return s + " " + describe(t);
}

void check_tensor(const char* backend, const char* op, const Tensor& t, DeviceType want) {
  CIUIC_CHECK(t.defined(), ValueError, op, "undefined tensor");
  CIUIC_CHECK(t.device().type == want, DeviceError, op, describe(t), " given to the ", backend, " backend; expected a ",
              want == DeviceType::CPU ? "CPU" : "CUDA", " tensor");
  CIUIC_CHECK(t.is_contiguous(), ValueError, op, describe(t), " is not contiguous; expected a contiguous tensor "
              "(collectives work in place on its memory)");
}

}  // namespace detail

}  // namespace ciuic::comm
