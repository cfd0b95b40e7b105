// GPT-2 data parallel: train_gpt2 on N Gloo ranks (started by ciuic-launch, as the
// other [dist] cases) equals one process on the combined batch of N x --batch rows.
#include <cmath>

#include "ciuic/ciuic.h"
#include "ciuic/models/train_gpt2.h"
#include "comm/dist_util.h"
#include "test_util.h"

using namespace ciuic;

TEST_CASE("train_gpt2 on N Gloo ranks equals one process on the combined batch", "[gpt2][dist]") {
  auto comm = dist::new_comm("gpt2");
  const int world = comm->size();
  models::TrainOptions o;
  o.model = "tiny";
  o.batch = 2;  // per rank
  o.seq = 32;
  o.steps = 4;
  o.grad_accum = 2;  // exercises no_sync
  o.lr = 1e-3;
  o.warmup = 1;
  o.val_batches = 1;
  o.quiet = true;
  auto dist_run = models::train_gpt2(o, nullptr, comm);

  models::TrainOptions one = o;
  one.batch = o.batch * world;
  auto ref = models::train_gpt2(one, nullptr);
  REQUIRE(dist_run.steps.size() == ref.steps.size());
  for (std::size_t i = 0; i < ref.steps.size(); ++i) {
    INFO("rank " << comm->rank() << " of " << world << ", step " << ref.steps[i].step << ": loss "
                 << dist_run.steps[i].loss << " vs " << ref.steps[i].loss << ", norm " << dist_run.steps[i].norm
                 << " vs " << ref.steps[i].norm);
    // Same data, same weights; only the order of float sums differs (per-rank means, then their average).
    CHECK(std::fabs(dist_run.steps[i].loss - ref.steps[i].loss) < 1e-4 * ref.steps[i].loss);
    CHECK(std::fabs(dist_run.steps[i].norm - ref.steps[i].norm) < 1e-3 * ref.steps[i].norm);
    CHECK(dist_run.steps[i].lr == ref.steps[i].lr);
  }
  REQUIRE(!dist_run.val_loss.empty());
  CHECK(std::fabs(dist_run.val_loss.back().second - ref.val_loss.back().second) < 1e-4 * ref.val_loss.back().second);
  CHECK(ref.steps.back().loss < ref.steps.front().loss);
}
