// Shared by the benchmarks of GPT-shaped stacks (bench_checkpoint, bench_amp):
// their command line, the model config it describes, and a fixed token batch.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ciuic/models/transformer.h"

namespace ciuic::bench {

struct GptArgs {
  bool cuda = false;
  std::int64_t B = 4, T = 64, C = 128, layers = 12, heads = 4, vocab = 512;
  int repeats = 5;
  std::string json;
  // "B=4 T=64 C=128 layers=12 heads=4 vocab=512"
  std::string shape_str() const;
};

// Parses [--cuda] [--B n] [--T n] [--C n] [--layers n] [--heads n] [--vocab n] [--repeats n]
// [--json PATH] over `defaults`; on a bad argument prints why and the usage of `name`
// to stderr and returns nullopt (the caller exits with 2); --help prints the usage and exits with 0.
std::optional<GptArgs> parse_gpt_args(const char* name, int argc, char** argv, GptArgs defaults = {});

models::GPTConfig gpt_config(const GptArgs& a);

// Next-token batch: idx (B, T) and targets (B, T), i64 on device, from a fixed seed.
struct TokenBatch {
  Tensor idx, tgt;
};
TokenBatch token_batch(const GptArgs& a, Device device);

// v with prec digits after the point.
std::string fmt(double v, int prec = 2);

}  // namespace ciuic::bench
