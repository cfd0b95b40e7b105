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
#include "timing.h"

using namespace ciuic;
using namespace ciuic::bench;

namespace {

struct Args {
  bool cuda = false;
  std::int64_t B = 4, T = 64, C = 128, layers = 12, heads = 4, vocab = 512;
  int repeats = 5;
  std::string json;
};

std::string fmt(double v, int prec = 2) {
  std::ostringstream os;
  os.precision(prec);
  os << std::fixed << v;
  return os.str();
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw ValueError("bench_checkpoint: " + k + " needs a value");
      return argv[++i];
    };
    try {
      if (k == "--cuda") a.cuda = true;
      else if (k == "--B") a.B = std::stoll(next());
      else if (k == "--T") a.T = std::stoll(next());
      else if (k == "--C") a.C = std::stoll(next());
      else if (k == "--layers") a.layers = std::stoll(next());
      else if (k == "--heads") a.heads = std::stoll(next());
      else if (k == "--vocab") a.vocab = std::stoll(next());
      else if (k == "--repeats") a.repeats = std::stoi(next());
      else if (k == "--json") a.json = next();
      else throw ValueError("bench_checkpoint: unknown argument " + k);
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\nusage: bench_checkpoint [--cuda] [--B n] [--T n] [--C n] [--layers n] [--heads n] "
                   "[--vocab n] [--repeats n] [--json PATH]\n";
      return 2;
    }
  }
  try {
    Device dev = a.cuda ? Device::cuda(0) : Device::cpu();
    check_device_usable(dev, "bench_checkpoint");
    models::GPTConfig cfg;
    cfg.vocab = a.vocab;
    cfg.max_seq = a.T;
    cfg.layers = a.layers;
    cfg.dim = a.C;
    cfg.heads = a.heads;
    Generator data_gen{1, 0};
    Tensor ids = clamp(mul(rand({a.B, a.T + 1}, DType::f64, &data_gen), double(a.vocab)), 0.0, double(a.vocab - 1))
                     .to(DType::i64).to(dev);
    Tensor idx = ids.slice(1, 0, a.T).contiguous(), tgt = ids.slice(1, 1, a.T + 1).contiguous();
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
    std::string title = "bench_checkpoint on " + machine_description(dev) + ", " + today() + ": GPT stack B=" +
                        std::to_string(a.B) + " T=" + std::to_string(a.T) + " C=" + std::to_string(a.C) +
                        " layers=" + std::to_string(a.layers) + " heads=" + std::to_string(a.heads) +
                        " vocab=" + std::to_string(a.vocab) + ", step = forward + backward, median of " +
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
