// [comm][faults]: run as 3 ranks under ciuic-launch. The last rank misbehaves
// (dies in the middle of a step, or hangs); the others must fail with a clear
// error within the timeout instead of hanging. The misbehaving rank exits with
// status 0 so that the launcher lets the others report.
// [comm][dist] (run with the other [dist] cases): an iteration that did not finish.
// Models and data live on dist::dev() (the emulated GPU where Gloo moves its memory).
#include <chrono>
#include <thread>
#include <unistd.h>

#include "dist_util.h"

using namespace ciuic;
using namespace ciuic::comm;
using namespace std::chrono_literals;

namespace {
struct Net : nn::Module {
  std::shared_ptr<nn::Linear> a, b;
  Net() : Module("Net") {
    a = register_module("a", std::make_shared<nn::Linear>(64, 64));
    b = register_module("b", std::make_shared<nn::Linear>(64, 64));
  }
  Tensor forward(const Tensor& x) override { return b->forward(relu(a->forward(x))); }
};
}  // namespace

TEST_CASE("Faults: a rank that dies mid-step makes the others fail within the timeout", "[comm][faults][dies]") {
  const auto timeout = 4s;
  auto comm = dist::new_comm("dies", timeout);
  const int rank = comm->rank(), last = comm->size() - 1;
  REQUIRE(comm->size() >= 2);
  manual_seed(1);
  auto model = std::make_shared<Net>();
  model->to(dist::dev());
  BucketedReducer ddp(model, comm, ReducerOptions().first_bucket_cap_bytes(1024));
  Tensor x = dist::on_dev(randn({8, 64}));
  mse_loss(ddp.forward(x), x).backward();  // one good step
  Tensor out = ddp.forward(x);
  if (rank == last) ::_exit(0);  // dies between forward and backward: sockets close, nothing is reduced
  auto t0 = std::chrono::steady_clock::now();
  bool threw = false;
  try {
    mse_loss(out, x).backward();
    // On CUDA buckets backward() does not wait on the host (as with NCCL): the failure
    // surfaces at the next host-side collective, or when the next one is issued.
    comm->barrier()->wait();
  } catch (const CommError& e) {
    threw = true;
    std::string msg = e.what();
    WARN("rank " << rank << " got: " << msg);
    CHECK(msg.find("allreduce") != std::string::npos);
    CHECK((msg.find("died") != std::string::npos || msg.find("timeout") != std::string::npos ||
           msg.find("did not") != std::string::npos));
  }
  CHECK(threw);
  CHECK(std::chrono::steady_clock::now() - t0 < timeout + 6s);
}

TEST_CASE("Faults: a rank that hangs makes the others time out with a clear error", "[comm][faults][hangs]") {
  const auto timeout = 2s;
  auto comm = dist::new_comm("hangs", timeout);
  const int rank = comm->rank(), last = comm->size() - 1;
  Tensor t = full({1024}, 1.0, TensorOptions().device(dist::dev()));
  comm->allreduce(t)->wait();
  if (rank == last) {
    std::this_thread::sleep_for(timeout + 3s);  // stuck, connections open
    ::_exit(0);
  }
  auto t0 = std::chrono::steady_clock::now();
  try {
    comm->allreduce(t)->wait(timeout + 10s);  // a host wait on CUDA tensors too; Gloo's own timeout fires first
    FAIL("the allreduce without the hung rank returned");
  } catch (const CommError& e) {
    WARN("rank " << rank << " got: " << e.what());
  }
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= timeout - 200ms);
  CHECK(took < timeout + 4s);
  // Work::wait with its own, shorter timeout on a fresh collective of a broken communicator.
  CHECK_THROWS_AS(comm->allreduce(t)->wait(500ms), CommError);
}

// N6: the next iteration must not write into buckets that collectives of an
// unfinished one still use. Rank 1 joins the first bucket's allreduce late, so on the
// other ranks it is still in flight when the error is reported and the next backward
// runs; if the reducer dropped it, it would land on top of the new gradients.
TEST_CASE("Reducer: after an unfinished iteration, the next one waits for its collectives before reusing buckets", "[comm][dist]") {
  auto comm = dist::new_comm("unfinished");
  const int rank = comm->rank(), world = comm->size();
  manual_seed(2);
  auto model = std::make_shared<Net>();
  auto ref = std::make_shared<Net>();
  ref->load_state_dict(model->state_dict());
  model->to(dist::dev());
  BucketedReducer ddp(model, comm, ReducerOptions().first_bucket_cap_bytes(1024));
  REQUIRE(ddp.bucket_names().size() == 2);
  REQUIRE(ddp.bucket_names()[0] == std::vector<std::string>{"b.bias", "b.weight"});
  Generator gen(6);
  Tensor x = randn({2 * world, 64}, {}, &gen), y = randn({2 * world, 64}, {}, &gen);
  Tensor xs = dist::shard(x, rank, 2), ys = dist::shard(y, rank, 2);

  // The graph of `out` reaches every parameter, but backward runs through b alone:
  // b's bucket is complete and its allreduce starts; a's bucket never is.
  Tensor out = ddp.forward(xs);
  if (rank == 1) std::this_thread::sleep_for(500ms);
  mean(model->b->forward(xs)).backward();
  CHECK_THROWS_WITH_ALL(ddp.forward(xs), ValueError, "did not finish", "a.weight", "a.bias");

  for (int step = 0; step < 2; ++step) {
    model->zero_grad();
    mse_loss(ddp.forward(xs), ys).backward();
    ref->zero_grad();
    mse_loss(ref->forward(x), y).backward();
    auto params = model->named_parameters();
    for (const auto& [name, p] : params.items()) {
      INFO("step " << step << ", " << name << " on rank " << rank);
      REQUIRE(p.grad().defined());
      double worst = 0;
      CHECK(dist::close(p.grad(), ref->named_parameters().at(name).grad(), 1e-5, 1e-7, &worst));
    }
  }
}
