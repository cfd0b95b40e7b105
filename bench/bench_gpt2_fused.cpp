// bench_gpt2_fused: GPT-2 training-step time with the fused ops (GPT2Config::fused:
// linear_gelu in the MLP, add_layer_norm for the residual adds) against the same
// model with them off, in one run. Step = zero_grad + forward + backward + AdamW
// step. The two variants alternate round by round (one model, set_fused switches),
// so a change in machine load hits both; each round times one step of each, and
// the table gives the median over the rounds and the ratio to the unfused step.
//   bench_gpt2_fused [--cuda] [--B n] [--T n] [--C n] [--layers n] [--heads n] [--vocab n]
//                    [--repeats n] [--json PATH]
// Defaults: the tiny GPT-2 (4 layers, 4 heads, 128 channels, 256 tokens) at B=4
// T=64; on a GPU use --B 16 --T 1024 --C 768 --layers 12 --heads 12 --vocab 50257
// (GPT-2 124M). On the CPU the fused ops run the compositions' own code, so the
// ratio there measures only the bookkeeping saved (fewer tape nodes, one tensor
// fewer per add); the fused kernels only exist on a GPU.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"
#include "ciuic/models/gpt2.h"
#include "gpt_bench.h"
#include "timing.h"

using namespace ciuic;
using namespace ciuic::bench;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  GptArgs d;
  d.layers = 4;
  d.vocab = 256;
  d.repeats = 9;
  auto parsed = parse_gpt_args("bench_gpt2_fused", argc, argv, d);
  if (!parsed) return 2;
  const GptArgs& a = *parsed;
  try {
    Device dev = a.cuda ? Device::cuda(0) : Device::cpu();
    check_device_usable(dev, "bench_gpt2_fused");
    models::GPT2Config cfg;
    cfg.vocab_size = a.vocab;
    cfg.max_seq_len = a.T;
    cfg.num_layers = a.layers;
    cfg.num_heads = a.heads;
    cfg.channels = a.C;
    cfg.validate();
    TokenBatch batch = token_batch(a, dev);
    Generator init{2, 0};
    models::GPT2 gpt(cfg, &init);
    gpt.to(dev);
    optim::AdamW opt(gpt.parameters(), optim::AdamWOptions(3e-4).weight_decay(0.1));
    double last_loss[2] = {0, 0};
    auto step = [&](bool fused) {
      gpt.set_fused(fused);
      opt.zero_grad();
      Tensor loss = gpt.loss(batch.idx, batch.tgt);
      loss.backward();
      opt.step();
      last_loss[fused ? 1 : 0] = loss.item();
    };
    for (int w = 0; w < 2; ++w) {  // warm-up: optimizer state, allocator cache, cuBLASLt plans
      step(false);
      step(true);
    }
    std::vector<double> ms[2];
    for (int r = 0; r < a.repeats; ++r)
      for (bool fused : {false, true}) ms[fused ? 1 : 0].push_back(time_it([&] { step(fused); }, 0, 1, dev).median_ms);

    std::vector<Row> rows;
    const double base = median(ms[0]);
    for (bool fused : {false, true}) {
      const auto& v = ms[fused ? 1 : 0];
      Timing t;
      t.median_ms = median(v);
      t.min_ms = *std::min_element(v.begin(), v.end());
      t.max_ms = *std::max_element(v.begin(), v.end());
      t.repeats = static_cast<int>(v.size());
      rows.push_back({fused ? "fused (linear_gelu, add_layer_norm)" : "unfused",
                      t,
                      {{"ratio", fmt(t.median_ms / base, 3)}, {"last loss", fmt(last_loss[fused ? 1 : 0], 4)}}});
    }
    std::string title = "bench_gpt2_fused on " + machine_description(dev) + ", " + today() + ": GPT-2 " +
                        a.shape_str() + ", step = zero_grad + forward + backward + AdamW step, median of " +
                        std::to_string(a.repeats) + " alternating rounds";
    print_table(title, rows);
    if (!a.json.empty()) write_json(a.json, "bench_gpt2_fused", rows);
  } catch (const Error& e) {
    std::cerr << "bench_gpt2_fused: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
