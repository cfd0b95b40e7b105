// bench_amp: mixed-precision training of a GPT-shaped stack against FP32. For
// each variant, the training-step time (zero_grad + forward + backward +
// optimizer step), the memory at rest (weights, masters, optimizer state) and
// the allocator peak during a step, and for the loss-scaled FP16 variant the
// scaler's own cost per step (scale + unscale_ + update) as a share of the step.
//   bench_amp [--cuda] [--B n] [--T n] [--C n] [--layers n] [--heads n] [--vocab n]
//             [--repeats n] [--json PATH]
// Defaults: a small CPU-sized stack; on a GPU use --B 16 --T 1024 --C 768 (GPT-2
// 124M shapes). The GPU run needs the CUDA op kernels wired into the ops; until
// then it stops with the first op's NotImplementedError.
// On the CPU, f16/bf16 matmuls convert to f32 and back (there is no native f16
// GEMM), so the CPU step-time ratios say nothing about GPU speed-ups.
#include <chrono>
#include <iostream>
#include <sstream>
#include <string>

#include "ciuic/amp.h"
#include "ciuic/ciuic.h"
#include "ciuic/models/transformer.h"
#include "gpt_bench.h"
#include "timing.h"

using namespace ciuic;
using namespace ciuic::bench;

namespace {

enum class Variant { fp32, fp16_scaled, bf16 };

struct Result {
  std::string name;
  Timing t;
  std::size_t rest = 0, peak = 0;  // bytes
  double scaler_ms = 0;            // scale + unscale_ + update per step (fp16_scaled only)
  double scale_end = 0;
  int skipped = 0;
  double last_loss = 0;
};

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  GptArgs d;
  d.layers = 4;
  auto parsed = parse_gpt_args("bench_amp", argc, argv, d);
  if (!parsed) return 2;
  const GptArgs& a = *parsed;
  try {
    Device dev = a.cuda ? Device::cuda(0) : Device::cpu();
    check_device_usable(dev, "bench_amp");
    models::GPTConfig cfg = gpt_config(a);
    TokenBatch batch = token_batch(a, dev);
    const Tensor &idx = batch.idx, &tgt = batch.tgt;
    Allocator& alloc = allocator_for(dev);

    std::vector<Result> results;
    auto run = [&](Variant v, const std::string& name) {
      Generator init{2, 0};
      auto gpt = std::make_shared<models::GPT>(cfg, CheckpointPolicy::none(), &init);
      gpt->to(dev);
      if (v == Variant::fp16_scaled) gpt->to(DType::f16);
      if (v == Variant::bf16) gpt->to(DType::bf16);
      optim::AdamW opt(gpt->parameters(), optim::AdamWOptions(3e-4).weight_decay(0.1));
      amp::LossScaler scaler(amp::LossScalerOptions().enabled(v == Variant::fp16_scaled));
      Result r;
      r.name = name;
      double scaler_ms = 0;
      int steps = 0;
      auto step = [&] {
        opt.zero_grad();
        Tensor loss = gpt->loss(idx, tgt);  // f32 (cross_entropy of f16/bf16 logits is f32)
        auto t0 = std::chrono::steady_clock::now();
        Tensor scaled = scaler.scale(loss);
        scaler_ms += ms_since(t0);
        scaled.backward();
        t0 = std::chrono::steady_clock::now();
        scaler.unscale_(opt);
        scaler_ms += ms_since(t0);
        scaler.step(opt);
        t0 = std::chrono::steady_clock::now();
        scaler.update();
        scaler_ms += ms_since(t0);
        r.skipped += scaler.step_skipped() ? 1 : 0;
        r.last_loss = loss.item();
        ++steps;
      };
      step();  // warm-up: creates the optimizer state and masters
      opt.zero_grad();
      synchronize(dev);
      r.rest = alloc.stats().allocated_bytes;
      alloc.reset_peak();
      step();
      synchronize(dev);
      r.peak = alloc.stats().peak_allocated_bytes;
      scaler_ms = 0;
      steps = 0;
      r.skipped = 0;
      r.t = time_it(step, 1, a.repeats, dev);
      r.scaler_ms = scaler_ms / steps;
      r.scale_end = scaler.get_scale();
      results.push_back(r);
    };
    run(Variant::fp32, "fp32");
    run(Variant::fp16_scaled, "fp16 + fp32 masters + loss scaling");
    run(Variant::bf16, "bf16 + fp32 masters");

    const Result& base = results[0];
    std::vector<Row> rows;
    for (const Result& r : results) {
      Row row{r.name, r.t, {}};
      row.extra = {{"time ratio", fmt(r.t.median_ms / base.t.median_ms, 3)},
                   {"rest MiB", fmt(r.rest / 1048576.0)},
                   {"peak MiB", fmt(r.peak / 1048576.0)},
                   {"peak ratio", fmt(double(r.peak) / double(base.peak), 3)},
                   {"loss", fmt(r.last_loss, 4)}};
      const bool scaled = r.name.find("loss scaling") != std::string::npos;  // the other rows: "-"
      row.extra.push_back({"scaler ms", scaled ? fmt(r.scaler_ms, 3) : "-"});
      row.extra.push_back({"scaler %", scaled ? fmt(100.0 * r.scaler_ms / r.t.median_ms, 3) : "-"});
      row.extra.push_back({"scale", scaled ? fmt(r.scale_end, 0) : "-"});
      row.extra.push_back({"skipped", scaled ? std::to_string(r.skipped) : "-"});
      rows.push_back(row);
    }
    std::string title = "bench_amp on " + machine_description(dev) + ", " + today() + ": GPT stack " + a.shape_str() +
                        ", step = zero_grad + forward + backward + AdamW step, median of " +
                        std::to_string(a.repeats);
    print_table(title, rows);
    if (!a.json.empty()) write_json(a.json, "bench_amp", rows);
  } catch (const Error& e) {
    std::cerr << "bench_amp: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
