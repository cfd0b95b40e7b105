// Communicators in one process (world size 1), on the device under test:
// - [comm][gloo]: a Work outlives its communicator; communication streams are
//   dedicated (never from Stream::create's pool); Gloo on the emulated GPU orders
//   its collectives on streams (elsewhere it refuses CUDA tensors).
// - [comm][cuda][nccl]: the NCCL communicator (NCCL refuses two ranks on one GPU,
//   so multi-rank behaviour is covered by the same reducer's Gloo tests). Skips
//   without a GPU or without NCCL in the build; bench/gpu_check.sh runs it.
#include <algorithm>

#include "dist_util.h"

using namespace ciuic;
using namespace ciuic::comm;
using namespace ciuic::test;
using namespace std::chrono_literals;

namespace {

// A world of one over a fresh store (the server lives as long as the communicator).
CommunicatorPtr world_of_one(Backend b) {
  auto server = std::make_shared<TCPStoreServer>("127.0.0.1", 0);
  auto store = std::make_shared<TCPStore>("127.0.0.1", server->port(), 30s);
  auto c = make_communicator(b, store, 0, 1);
  c->keep_alive(server);
  return c;
}

// Where a communicator's collectives on the device under test can run: dut(), or
// the CPU where the communicator does not take tensors on it.
Device where(const Communicator& c) { return c.accepts(dut()) ? dut() : Device::cpu(); }

// Every stream Stream::create hands out on d: the pool's 32 (stream.h), visited twice.
std::vector<StreamHandle> pool_streams(Device d) {
  std::vector<StreamHandle> s;
  for (int i = 0; i < 64; ++i) s.push_back(Stream::create(d).handle());
  return s;
}

bool contains(const std::vector<StreamHandle>& v, StreamHandle h) {
  return std::find(v.begin(), v.end(), h) != v.end();
}

// N8: destroys the communicator while its Works are outstanding, then uses them.
// Under ASan a Work that kept a raw pointer to its communicator reports here.
void check_work_outlives(CommunicatorPtr c, Device d) {
  Tensor t = full({4096}, 3.0, TensorOptions().device(d));
  std::vector<WorkPtr> works;
  for (int k = 0; k < 4; ++k) works.push_back(c->allreduce(t, ReduceOp::avg));
  works.push_back(c->broadcast(t, 0));
  std::weak_ptr<Communicator> alive = c;
  c.reset();  // the last reference
  CHECK(alive.expired());
  for (auto& w : works) {
    INFO(w->description());
    w->wait();
    w->wait(10s);  // the host-side wait (NCCL: polls the communicator's error state)
    CHECK(w->is_completed());
  }
  CHECK(t.to_vector<float>()[4095] == 3.0f);
}

}  // namespace

#ifdef CIUIC_WITH_GLOO
TEST_CASE("Gloo: a Work outlives its communicator; wait() and is_completed() stay safe", "[comm][gloo]") {
  auto c = world_of_one(Backend::gloo);
  const Device d = where(*c);
  INFO("tensors on " << d);
  check_work_outlives(std::move(c), d);
}

TEST_CASE("Gloo: communication streams are dedicated, never from Stream::create's pool", "[comm][gloo][cuda]") {
  auto c1 = world_of_one(Backend::gloo);
  CHECK(c1->communication_stream(Device::cpu()) == nullptr);  // CPU collectives run on the host
  const Device d = dut();
  if (!c1->accepts(d) || d.is_cpu()) {
    // A real GPU's memory: Gloo refuses it, with what to use instead.
    if (d.is_cuda()) {
      Tensor g = zeros({4}, TensorOptions().device(d));
      CHECK_THROWS_WITH_ALL(c1->allreduce(g), DeviceError, "gloo", "expected a CPU tensor", "Backend::nccl");
    }
    return;
  }
  Tensor t = full({64}, 1.0, TensorOptions().device(d));
  c1->allreduce(t)->wait();
  const StreamHandle s1 = c1->communication_stream(d);
  REQUIRE(s1 != nullptr);
  CHECK(c1->communication_stream(d) == s1);  // one per communicator and device
  CHECK(s1 != current_stream(d));
  const auto pool = pool_streams(d);
  CHECK_FALSE(contains(pool, s1));
  // Two living communicators never share one; a destroyed one's stream is reused.
  auto c2 = world_of_one(Backend::gloo);
  const StreamHandle s2 = c2->communication_stream(d);
  CHECK(s2 != s1);
  CHECK_FALSE(contains(pool, s2));
  c1.reset();
  auto c3 = world_of_one(Backend::gloo);
  CHECK(c3->communication_stream(d) == s1);
  // A side stream of the user's is never the communication stream.
  Stream side = Stream::create(d);
  CHECK(side.handle() != s2);
  CHECK(side.handle() != c3->communication_stream(d));
}

TEST_CASE("Gloo on the device: a collective sees the work queued before it; later work sees its result", "[comm][gloo][cuda]") {
  auto c = world_of_one(Backend::gloo);
  const Device d = where(*c);
  INFO("tensors on " << d);
  // On a side stream (not the default one): many small kernels, then a collective
  // whose result (reduce_scatter of a world of one: out = in, copied by the Gloo
  // worker) is used at once by later kernels. Without the events, the worker would
  // copy `in` before the kernels ran, or the kernels would read `out` before the copy.
  Stream side = Stream::create(d);  // the CPU's: a null handle
  StreamGuard guard(side);
  Tensor in = zeros({1 << 16}, TensorOptions().device(d));
  Tensor out = full({1 << 16}, -1.0, TensorOptions().device(d));
  for (int k = 0; k < 20; ++k) in.add_(1.0);
  c->reduce_scatter(in, out)->wait();
  out.mul_(2.0);
  Tensor t = full({1 << 16}, 5.0, TensorOptions().device(d));
  c->allreduce(t, ReduceOp::avg)->wait();
  t.add_(1.0);
  auto o = out.to_vector<float>();
  CHECK(o.front() == 40.0f);
  CHECK(o.back() == 40.0f);
  CHECK(t.to_vector<float>()[100] == 6.0f);
  // Bad input is still refused at issue, naming the tensors and devices.
  if (d.is_cuda()) {
    Tensor host = zeros({64});
    CHECK_THROWS_WITH_ALL(c->allgather(host, out), DeviceError, "allgather", "cpu", "cuda");
  }
}
#endif

TEST_CASE("NCCL world of one: collectives and the reducer on a CUDA model", "[comm][cuda][nccl]") {
  CIUIC_REQUIRE_GPU();
  if (!backend_available(Backend::nccl)) {
    WARN("skipped: " << backend_unavailable_reason(Backend::nccl));
    return;
  }
  const Device gpu = Device::cuda(0);
  TCPStoreServer server("127.0.0.1", 0);
  auto store = std::make_shared<TCPStore>("127.0.0.1", server.port(), 30s);
  auto c = make_communicator(Backend::nccl, store, 0, 1);
  CHECK(c->device() == gpu);
  Generator gen(5);
  Tensor host = randn({1001}, {}, &gen);
  Tensor t = host.to(gpu);
  auto w = c->allreduce(t, ReduceOp::avg);
  w->wait(10s);
  CHECK(w->is_completed());
  CHECK(dist::equal(t, host));
  Tensor h16 = host.to(DType::f16), t16 = h16.to(gpu);
  c->allreduce(t16, ReduceOp::max)->wait();
  CHECK(dist::equal(t16, h16));
  Tensor out = zeros({1001}, TensorOptions().device(gpu));
  c->allgather(t, out)->wait();
  CHECK(dist::equal(out, host));
  Tensor rs = zeros({1001}, TensorOptions().device(gpu));
  c->reduce_scatter(t, rs)->wait();
  CHECK(dist::equal(rs, host));
  c->broadcast(t, 0)->wait();
  c->barrier()->wait();
  CHECK_THROWS_AS(c->allreduce(host), DeviceError);  // a CPU tensor

  // The reducer over a CUDA model: world size 1 gives the plain gradients.
  struct Net : nn::Module {
    std::shared_ptr<nn::Linear> a, b;
    Net() : Module("Net") {
      a = register_module("a", std::make_shared<nn::Linear>(32, 64));
      b = register_module("b", std::make_shared<nn::Linear>(64, 8));
    }
    Tensor forward(const Tensor& x) override { return b->forward(relu(a->forward(x))); }
  };
  manual_seed(3);
  auto model = std::make_shared<Net>();
  auto ref = std::make_shared<Net>();
  ref->load_state_dict(model->state_dict());
  model->to(gpu);
  BucketedReducer ddp(model, c, ReducerOptions().first_bucket_cap_bytes(1024).fp16_compression());
  Tensor x = randn({16, 32}, {}, &gen), y = randn({16, 8}, {}, &gen);
  for (int step = 0; step < 2; ++step) {
    model->zero_grad();
    mse_loss(ddp.forward(x.to(gpu)), y.to(gpu)).backward();
    ref->zero_grad();
    mse_loss(ref->forward(x), y).backward();
    auto params = model->named_parameters();
    for (const auto& [name, p] : params.items()) {
      INFO(name);
      REQUIRE(p.grad().defined());
      CHECK(p.grad().device() == gpu);
      CHECK(dist::close(p.grad(), ref->named_parameters().at(name).grad(), 2e-3, 1e-4));  // f16 on the wire
    }
  }
  CHECK(ddp.buckets_rebuilt());
}

TEST_CASE("NCCL: a Work outlives its communicator; wait() and its host-side poll stay safe", "[comm][cuda][nccl]") {
  CIUIC_REQUIRE_GPU();
  if (!backend_available(Backend::nccl)) {
    WARN("skipped: " << backend_unavailable_reason(Backend::nccl));
    return;
  }
  auto c = world_of_one(Backend::nccl);
  const Device gpu = Device::cuda(0);
  const StreamHandle s = c->communication_stream(gpu);
  CHECK(s != nullptr);
  CHECK_FALSE(contains(pool_streams(gpu), s));
  check_work_outlives(std::move(c), gpu);
}
