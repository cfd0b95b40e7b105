// bench_checkpoint: for each checkpoint policy, the peak activation memory and
// the training-step time (forward + backward) of a GPT-shaped stack (embeddings,
// pre-LayerNorm blocks, tied output layer), both as ratios to no checkpointing
// measured in the same run.
//   bench_checkpoint [--cuda] [--B n] [--T n] [--C n] [--layers n] [--heads n] [--vocab n]
//                    [--repeats n] [--json PATH]
// Defaults: a small CPU-sized stack; on a GPU use --B 16 --T 1024 --C 768 (GPT-2 124M).
#include <iostream>
#include <sstream>
#include <string>

#include "ciuic/ciuic.h"
#include "ciuic/models/transformer.h"
#include "gpt_bench.h"
#include "timing.h"

using namespace ciuic;
using namespace ciuic::bench;

int main(int argc, char** argv) {
  auto parsed = parse_gpt_args("bench_checkpoint", argc, argv);
  if (!parsed) return 2;
  const GptArgs& a = *parsed;
  try {
    Device dev = a.cuda ? Device::cuda(0) : Device::cpu();
    check_device_usable(dev, "bench_checkpoint");
    models::GPTConfig cfg = gpt_config(a);
    TokenBatch batch = token_batch(a, dev);
    const Tensor &idx = batch.idx, &tgt = batch.tgt;
    Allocator& alloc = allocator_for(dev);

    // The "none" row's activation bytes, for the budget policy: half way to every-block.
    struct Result {
      std::string name;
      Timing t;
      std::size_t act;
      std::string plan;
    };
    std::vector<Result> results;
    auto run = [&](CheckpointPolicy p) {
      Generator init{2, 0};
      models::GPT gpt(cfg, p, &init);
      gpt.to(dev);
      std::size_t weights = 0;
      for (auto& t : gpt.parameters()) weights += static_cast<std::size_t>(t.numel()) * t.element_size();
      auto step = [&] {
        for (auto& t : gpt.parameters()) t.zero_grad();
        gpt.loss(idx, tgt).backward();
      };
      step();  // warm-up, and the budget policy plans here
      for (auto& t : gpt.parameters()) t.zero_grad();
      synchronize(dev);
      std::size_t base = alloc.stats().allocated_bytes;
      alloc.reset_peak();
      gpt.loss(idx, tgt).backward();
      synchronize(dev);
      std::size_t peak = alloc.stats().peak_allocated_bytes;
      // activations = peak above the resting state, less the gradients backward creates
      std::size_t act = peak > base + weights ? peak - base - weights : 0;
      Timing t = time_it(step, 1, a.repeats, dev);
      std::string plan = p.kind == CheckpointKind::budget ? gpt.blocks_runner().plan().str() : "";
      results.push_back({p.str(), t, act, plan});
    };
    run(CheckpointPolicy::none());
    run(CheckpointPolicy::every_block());
    int k = 1;
    while ((k + 1) * (k + 1) <= a.layers) ++k;
    run(CheckpointPolicy::every_kth(k));
    run(CheckpointPolicy::selective());
    run(CheckpointPolicy::budget((results[0].act + results[1].act) / 2));

    std::vector<Row> rows;
    for (auto& r : results)
      rows.push_back({r.name, r.t,
                      {{"act MiB", fmt(r.act / 1048576.0)},
                       {"mem ratio", fmt(double(r.act) / double(results[0].act), 3)},
                       {"time ratio", fmt(r.t.median_ms / results[0].t.median_ms, 3)}}});
    std::string title = "bench_checkpoint on " + machine_description(dev) + ", " + today() + ": GPT stack " + a.shape_str() + ", step = forward + backward, median of " +
                        std::to_string(a.repeats);
    print_table(title, rows);
    for (auto& r : results)
      if (!r.plan.empty()) std::cout << "budget plan: " << r.plan << "\n";
    if (!a.json.empty()) write_json(a.json, "bench_checkpoint", rows);
  } catch (const Error& e) {
    std::cerr << "bench_checkpoint: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
