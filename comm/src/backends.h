// Backend factories (each in its own file; compiled only when the library exists).
#pragma once

#include "ciuic/comm/communicator.h"
#include "ciuic/comm/store.h"

namespace ciuic::comm::detail {

#ifdef CIUIC_WITH_GLOO
CommunicatorPtr make_gloo(StorePtr store, int rank, int size, const InitOptions& opts, bool store_is_loopback);
#endif
#if defined(CIUIC_WITH_NCCL) && defined(CIUIC_WITH_CUDA)
CommunicatorPtr make_nccl(StorePtr store, int rank, int size, const InitOptions& opts);
#endif

// "allreduce(sum) f32[1024] on cpu"
std::string describe_op(const char* op, const Tensor& t, const char* detail = nullptr);
// Checks a tensor handed to a collective (defined, contiguous, on the backend's device type).
void check_tensor(const char* backend, const char* op, const Tensor& t, DeviceType want);

}  // namespace ciuic::comm::detail
