// Recompute-on-backward checkpoint segments, native to the tape.
//
// checkpoint(fn, inputs) runs fn without recording anything inside it and
// records ONE node: the segment. The node keeps only the segment's inputs (and
// the outside tensors fn used: parameters, captured activations). When backward
// reaches it, it re-runs fn on a nested tape with the forward's RNG and
// registered thread-local state (e.g. autocast) restored, backpropagates the
// incoming gradients through that nested tape, returns the inputs' gradients,
// and drops the recomputed activations at once.
//
// Because every outside tensor is an input of the segment node, a parameter
// used inside a segment gets its gradient from the segment node like from any
// other op: its gradient-ready hook fires once, after its final gradient.
//
// Selective checkpointing additionally keeps the outputs of chosen expensive ops
// (matmul, linear, attention by default) from the forward and replays them
// during the recomputation, which then only recomputes the cheap ops.
#pragma once

#include <any>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ciuic/nn/module.h"
#include "ciuic/tensor.h"

namespace ciuic {

namespace nn {
class Sequential;
class ModuleList;
}  // namespace nn

using SegmentFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

struct CheckpointOptions {
  // Ops whose outputs are kept and replayed; empty: recompute everything.
  std::set<std::string> keep_ops;
  std::string name = "checkpoint";  // names the segment in errors
  static CheckpointOptions selective() { return {{"matmul", "linear", "attention"}, "selective checkpoint"}; }
};

std::vector<Tensor> checkpoint(const SegmentFn& fn, const std::vector<Tensor>& inputs,
                               const CheckpointOptions& opts = {});
Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x, const CheckpointOptions& opts = {});

// True while a segment re-runs during backward. Ops with side effects on module
// state (batch_norm's running statistics) skip them then: the forward already did.
bool checkpoint_recomputing();

// Thread-local state that a recomputation must see exactly as the forward did.
// save() is called at segment forward, restore() before its recomputation (and
// again with the backward-time value afterwards).
struct RecomputeState {
  std::function<std::any()> save;
  std::function<void(const std::any&)> restore;
};
void register_recompute_state(const std::string& name, RecomputeState state);

namespace selective {
// For ops that selective checkpointing may keep. In a segment's forward, keep()
// stores the op's results (when op is in the segment's keep set); in its
// recomputation, replay() hands them back in the same order (nullptr when the op
// must compute). The stored tensors are detached; the op records its node as usual.
std::optional<std::vector<Tensor>> replay(const char* op);
void keep(const char* op, const std::vector<Tensor>& results);
}  // namespace selective

// ---- policies over a sequence of blocks ----
enum class CheckpointKind { none, every_block, every_kth, selective, budget };

struct CheckpointPolicy {
  CheckpointKind kind = CheckpointKind::none;
  int k = 1;                        // every_kth: checkpoint blocks 0, k, 2k, ... (Chen et al.: k ~ sqrt(n))
  std::size_t budget_bytes = 0;     // budget: activation bytes allowed

  static CheckpointPolicy none() { return {}; }
  static CheckpointPolicy every_block() { return {CheckpointKind::every_block}; }
  static CheckpointPolicy every_kth(int k) { return {CheckpointKind::every_kth, k}; }
  static CheckpointPolicy selective() { return {CheckpointKind::selective}; }
  static CheckpointPolicy budget(std::size_t bytes) { return {CheckpointKind::budget, 1, bytes}; }
  std::string str() const;
};

// What the budget planner measured and chose.
struct CheckpointPlan {
  std::vector<bool> checkpointed;          // per block
  std::vector<std::size_t> saved_bytes;    // per block: bytes its graph holds beyond its output
  std::vector<std::size_t> output_bytes;   // per block
  std::vector<double> forward_ms;          // per block: measured forward time (the recompute cost)
  std::size_t predicted_bytes = 0;         // activation bytes of the chosen plan
  double recompute_ms = 0;                 // forward time re-spent in backward
  std::string str() const;
};

// Runs x through blocks under a policy. For the budget policy the first forward
// measures each block once on its input and plans; later calls reuse the plan.
// A Module: the blocks are its children "0", "1", ... (as in the Sequential or
// ModuleList it was built from), so parameters(), state_dict(), to() and train()
// reach them and a checkpointed model is a drop-in replacement for the plain one.
class CheckpointedSequence : public nn::Module {
 public:
  CheckpointedSequence(std::vector<std::shared_ptr<nn::Module>> blocks, CheckpointPolicy policy);
  CheckpointedSequence(const std::shared_ptr<nn::Sequential>& blocks, CheckpointPolicy policy);
  CheckpointedSequence(const std::shared_ptr<nn::ModuleList>& blocks, CheckpointPolicy policy);
  Tensor forward(const Tensor& x) override;
  std::size_t size() const { return blocks_.size(); }
  const CheckpointPolicy& policy() const { return policy_; }
  const CheckpointPlan& plan() const { return plan_; }
  // Measures blocks on x and chooses the segments for budget_bytes; throws ValueError
  // naming the smallest budget that would fit when none does.
  CheckpointPlan make_plan(const Tensor& x, std::size_t budget_bytes);

 private:
  std::vector<std::shared_ptr<nn::Module>> blocks_;
  CheckpointPolicy policy_;
  CheckpointPlan plan_;
  bool planned_ = false;
};

namespace detail {
// Runs block on x with module side effects off (as in a recomputation): the budget
// planner's measuring forward.
Tensor probe_forward(const std::shared_ptr<nn::Module>& block, const Tensor& x);
}  // namespace detail

}  // namespace ciuic
