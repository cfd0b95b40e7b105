// [comm][faults]: run as 3 ranks under ciuic-launch. The last rank misbehaves
// (dies in the middle of a step, or hangs); the others must fail with a clear
// error within the timeout instead of hanging. The misbehaving rank exits with
// status 0 so that the launcher lets the others report.
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
  BucketedReducer ddp(model, comm, ReducerOptions().first_bucket_cap_bytes(1024));
  Tensor x = randn({8, 64});
  mse_loss(ddp.forward(x), x).backward();  // one good step
  Tensor out = ddp.forward(x);
  if (rank == last) ::_exit(0);  // dies between forward and backward: sockets close, nothing is reduced
  auto t0 = std::chrono::steady_clock::now();
  bool threw = false;
  try {
    mse_loss(out, x).backward();
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
  Tensor t = full({1024}, 1.0);
  comm->allreduce(t)->wait();
  if (rank == last) {
    std::this_thread::sleep_for(timeout + 3s);  // stuck, connections open
    ::_exit(0);
  }
  auto t0 = std::chrono::steady_clock::now();
  try {
    comm->allreduce(t)->wait();
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
