// [comm][cuda][nccl]: the NCCL communicator at world size 1 (NCCL refuses two ranks
// on one GPU, so multi-rank behaviour is covered by the same reducer's Gloo tests).
// Skips without a GPU or without NCCL in the build; bench/gpu_check.sh runs it.
#include "dist_util.h"

using namespace ciuic;
using namespace ciuic::comm;
using namespace std::chrono_literals;

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
