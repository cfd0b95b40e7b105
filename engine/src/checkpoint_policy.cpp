// Checkpoint policies over a sequence of blocks, and the memory-budget planner.
#include <algorithm>
#include <chrono>
#include <sstream>

#include "ciuic/autograd.h"
#include "ciuic/checkpoint.h"
#include "ciuic/nn/containers.h"
#include "ciuic/nn/layers.h"
#include "ciuic/nn/module.h"

namespace ciuic {

namespace {

// Activation bytes of a plan: every block output stays alive (it is the next
// block's input, or the result), blocks outside segments keep their saved
// tensors, and backward recomputes one segment at a time.
std::size_t plan_bytes(const CheckpointPlan& p, const std::vector<bool>& ckpt) {
  std::size_t total = 0, transient = 0;
  for (std::size_t i = 0; i < ckpt.size(); ++i) {
    total += p.output_bytes[i];
    if (ckpt[i]) transient = std::max(transient, p.saved_bytes[i]);
    else total += p.saved_bytes[i];
  }
  return total + transient;
}

double plan_ms(const CheckpointPlan& p, const std::vector<bool>& ckpt) {
  double ms = 0;
  for (std::size_t i = 0; i < ckpt.size(); ++i)
    if (ckpt[i]) ms += p.forward_ms[i];
  return ms;
}

std::string mib(std::size_t b) {
  std::ostringstream os;
  os.precision(2);
  os << std::fixed << static_cast<double>(b) / (1024.0 * 1024.0) << " MiB";
  return os.str();
}

Tensor run_block(const std::shared_ptr<nn::Module>& b, const Tensor& x) { return (*b)(x); }  // with its hooks

}  // namespace

std::string CheckpointPolicy::str() const {
  switch (kind) {
    case CheckpointKind::none: return "none";
    case CheckpointKind::every_block: return "every block";
    case CheckpointKind::every_kth: return "segments of " + std::to_string(k) + " blocks";
    case CheckpointKind::selective: return "selective";
    case CheckpointKind::budget: return "budget " + mib(budget_bytes);
  }
  return "?";
}

std::string CheckpointPlan::str() const {
  std::ostringstream os;
  os << "checkpointed blocks: [";
  for (std::size_t i = 0; i < checkpointed.size(); ++i) os << (checkpointed[i] ? "x" : ".");
  os << "], predicted activations " << mib(predicted_bytes) << ", recompute " << recompute_ms << " ms";
  return os.str();
}

CheckpointedSequence::CheckpointedSequence(std::vector<std::shared_ptr<nn::Module>> blocks, CheckpointPolicy policy)
    : Module("CheckpointedSequence"), blocks_(std::move(blocks)), policy_(policy) {
  CIUIC_CHECK(policy_.kind != CheckpointKind::every_kth || policy_.k >= 1, ValueError, "CheckpointedSequence",
              "k = ", policy_.k, "; expected k >= 1");
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    CIUIC_CHECK(blocks_[i] != nullptr, ValueError, "CheckpointedSequence", "block ", i, " is null");
    register_module(std::to_string(i), blocks_[i]);  // the same names as in a Sequential / ModuleList
  }
  plan_.checkpointed.assign(blocks_.size(), policy_.kind != CheckpointKind::none);
}

namespace {
template <typename C>
std::vector<std::shared_ptr<nn::Module>> blocks_of(const std::shared_ptr<C>& c) {
  CIUIC_CHECK(c != nullptr, ValueError, "CheckpointedSequence", "null container; expected a Sequential or ModuleList");
  std::vector<std::shared_ptr<nn::Module>> out;
  for (std::size_t i = 0; i < c->size(); ++i) out.push_back((*c)[i]);
  return out;
}
}  // namespace

CheckpointedSequence::CheckpointedSequence(const std::shared_ptr<nn::Sequential>& blocks, CheckpointPolicy policy)
    : CheckpointedSequence(blocks_of(blocks), policy) {}
CheckpointedSequence::CheckpointedSequence(const std::shared_ptr<nn::ModuleList>& blocks, CheckpointPolicy policy)
    : CheckpointedSequence(blocks_of(blocks), policy) {}

CheckpointPlan CheckpointedSequence::make_plan(const Tensor& x, std::size_t budget) {
  CheckpointPlan p;
  const std::size_t n = blocks_.size();
  Allocator& alloc = allocator_for(x.device());
  {
    // Probe forward: records the graph to measure it, but must not disturb training:
    // the RNG stream is restored and module side effects are skipped (as in a recomputation).
    Generator saved_gen = default_generator();
    std::vector<Tensor> keep_alive;
    Tensor h = x;
    for (std::size_t i = 0; i < n; ++i) {
      synchronize(h.device());
      std::size_t before = alloc.stats().allocated_bytes;
      auto t0 = std::chrono::steady_clock::now();
      Tensor out = detail::probe_forward(blocks_[i], h);
      synchronize(out.device());
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::size_t after = alloc.stats().allocated_bytes;
      std::size_t out_bytes = static_cast<std::size_t>(out.numel()) * out.element_size();
      std::size_t held = after > before ? after - before : 0;
      p.output_bytes.push_back(out_bytes);
      p.saved_bytes.push_back(held > out_bytes ? held - out_bytes : 0);
      p.forward_ms.push_back(ms);
      keep_alive.push_back(out);
      h = out;
    }
    default_generator() = saved_gen;
  }
  std::vector<bool> all(n, true);
  const std::size_t minimum = plan_bytes(p, all);
  CIUIC_CHECK(budget >= minimum, ValueError, "checkpoint budget planner", "no plan fits a budget of ", mib(budget),
              " (", budget, " bytes); the smallest budget that fits checkpoints every block: ", mib(minimum), " (",
              minimum, " bytes)");
  std::vector<bool> best = all;
  double best_ms = plan_ms(p, all);
  if (n <= 20) {
    // Exact: every subset, least recomputation that fits.
    for (std::uint64_t mask = 0; mask < (std::uint64_t(1) << n); ++mask) {
      std::vector<bool> ck(n);
      for (std::size_t i = 0; i < n; ++i) ck[i] = (mask >> i) & 1;
      double ms = plan_ms(p, ck);
      if (ms < best_ms && plan_bytes(p, ck) <= budget) {
        best_ms = ms;
        best = ck;
      }
    }
  } else {
    // Greedy: un-checkpoint the blocks that save the most time per byte kept, while it fits.
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return p.forward_ms[a] * static_cast<double>(p.saved_bytes[b] + 1) >
             p.forward_ms[b] * static_cast<double>(p.saved_bytes[a] + 1);
    });
    for (std::size_t i : order) {
      best[i] = false;
      if (plan_bytes(p, best) > budget) best[i] = true;
    }
    best_ms = plan_ms(p, best);
  }
  p.checkpointed = best;
  p.predicted_bytes = plan_bytes(p, best);
  p.recompute_ms = best_ms;
  return p;
}

Tensor CheckpointedSequence::forward(const Tensor& x) {
  const std::size_t n = blocks_.size();
  Tensor h = x;
  switch (policy_.kind) {
    case CheckpointKind::none:
      for (auto& b : blocks_) h = run_block(b, h);
      return h;
    case CheckpointKind::every_block:
    case CheckpointKind::selective: {
      CheckpointOptions opts = policy_.kind == CheckpointKind::selective ? CheckpointOptions::selective()
                                                                          : CheckpointOptions{};
      for (auto& b : blocks_) h = checkpoint([b](const Tensor& in) { return run_block(b, in); }, h, opts);
      return h;
    }
    case CheckpointKind::every_kth: {
      // Chen et al.: segments of k consecutive blocks; only segment inputs stay alive.
      const std::size_t k = static_cast<std::size_t>(policy_.k);
      for (std::size_t s = 0; s < n; s += k) {
        std::vector<std::shared_ptr<nn::Module>> seg(blocks_.begin() + s, blocks_.begin() + std::min(n, s + k));
        h = checkpoint(
            [seg](const Tensor& in) {
              Tensor t = in;
              for (auto& b : seg) t = run_block(b, t);
              return t;
            },
            h);
      }
      return h;
    }
    case CheckpointKind::budget: {
      if (!planned_) {
        plan_ = make_plan(x, policy_.budget_bytes);
        planned_ = true;
      }
      for (std::size_t i = 0; i < n; ++i) {
        auto& b = blocks_[i];
        h = plan_.checkpointed[i] ? checkpoint([b](const Tensor& in) { return run_block(b, in); }, h) : run_block(b, h);
      }
      return h;
    }
  }
  return h;
}

}  // namespace ciuic
