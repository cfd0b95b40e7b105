// Helpers for the [comm] tests that run as ranks under ciuic-launch.
#pragma once

#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include <ciuic/ciuic.h>
#include <ciuic/comm/comm.h>

#include "device_under_test.h"
#include "test_util.h"

namespace dist {

// The job's store (rank 0 serves it), shared by every test case of this process.
inline ciuic::comm::StorePtr job_store() { return ciuic::comm::process_store(std::chrono::seconds(60)); }

inline int env_rank() { return ciuic::comm::rendezvous_from_env().rank; }
inline int env_world() { return ciuic::comm::rendezvous_from_env().world_size; }

// A fresh Gloo communicator over the job store, under its own key prefix.
inline ciuic::comm::CommunicatorPtr new_comm(const std::string& name,
                                             std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  auto info = ciuic::comm::rendezvous_from_env();
  ciuic::comm::InitOptions o;
  o.timeout = timeout;
  auto store = std::make_shared<ciuic::comm::PrefixStore>(name, job_store());
  return ciuic::comm::make_communicator(ciuic::comm::Backend::gloo, store, info.rank, info.world_size, o);
}

// One communicator for the ordinary test cases of this process.
inline ciuic::comm::Communicator& world() {
  static ciuic::comm::CommunicatorPtr c = new_comm("world");
  return *c;
}

// Where the [dist] tests put models and data: the device under test when the Gloo
// communicator moves its tensors (the CPU; in a build on the emulated GPU, that GPU,
// whose memory is host memory: the reducer's stream-ordered CUDA path then runs
// with Gloo underneath, each stream on its own thread), else the CPU (Gloo refuses
// a real GPU's memory; test_nccl.cpp covers NCCL).
inline ciuic::Device dev() {
  static const ciuic::Device d = world().accepts(ciuic::test::dut()) ? ciuic::test::dut() : ciuic::Device::cpu();
  return d;
}

// A copy of t on dev() (never t itself, so the reference keeps its own data).
inline ciuic::Tensor on_dev(const ciuic::Tensor& t) {
  return t.device() == dev() ? t.detach().clone() : t.detach().to(dev());
}

// Rows [rank * per, (rank + 1) * per) of x, on dev().
inline ciuic::Tensor shard(const ciuic::Tensor& x, int rank, std::int64_t per) {
  return on_dev(x.narrow(0, rank * per, per).contiguous());
}

// True on every rank when every rank's t is bit-identical to rank 0's.
inline bool same_on_every_rank(ciuic::comm::Communicator& c, const ciuic::Tensor& t) {
  ciuic::Tensor mine = t.contiguous().clone();
  ciuic::Tensor r0 = mine.clone();
  c.broadcast(r0, 0)->wait();
  auto a = mine.to_vector<double>();
  auto b = r0.to_vector<double>();
  bool same = a.size() == b.size();
  for (std::size_t i = 0; same && i < a.size(); ++i)
    same = (a[i] == b[i]) || (a[i] != a[i] && b[i] != b[i]);
  return !ciuic::comm::any_rank(c, !same);
}

// max |a - b| / (atol + rtol |b|) <= 1 elementwise.
inline bool close(const ciuic::Tensor& a, const ciuic::Tensor& b, double rtol, double atol, double* worst = nullptr) {
  auto x = a.to_vector<double>();
  auto y = b.to_vector<double>();
  if (x.size() != y.size()) return false;
  double w = 0;
  for (std::size_t i = 0; i < x.size(); ++i) w = std::max(w, std::abs(x[i] - y[i]) / (atol + rtol * std::abs(y[i])));
  if (worst) *worst = w;
  return w <= 1.0;
}

inline bool equal(const ciuic::Tensor& a, const ciuic::Tensor& b) {
  return a.to_vector<double>() == b.to_vector<double>();
}

}  // namespace dist
