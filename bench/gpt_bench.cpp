#include "gpt_bench.h"

#include <cstdlib>
#include <iostream>
#include <sstream>

#include "ciuic/models/cli.h"

namespace ciuic::bench {

std::string GptArgs::shape_str() const {
  return "B=" + std::to_string(B) + " T=" + std::to_string(T) + " C=" + std::to_string(C) +
         " layers=" + std::to_string(layers) + " heads=" + std::to_string(heads) + " vocab=" + std::to_string(vocab);
}

std::optional<GptArgs> parse_gpt_args(const char* name, int argc, char** argv, GptArgs a) {
  cli::Parser p(name, "[--cuda] [--B n] [--T n] [--C n] [--layers n] [--heads n] [--vocab n] [--repeats n] "
                "[--json PATH]", argc, argv);
  constexpr std::int64_t kMax = std::int64_t{1} << 40;  // sizes beyond are refused by the engine anyway
  while (p.next()) {
    if (p.is("--cuda")) a.cuda = true;
    else if (p.is("--B")) a.B = p.integer<std::int64_t>(1, kMax);
    else if (p.is("--T")) a.T = p.integer<std::int64_t>(1, kMax);
    else if (p.is("--C")) a.C = p.integer<std::int64_t>(1, kMax);
    else if (p.is("--layers")) a.layers = p.integer<std::int64_t>(1, 100000);
    else if (p.is("--heads")) a.heads = p.integer<std::int64_t>(1, kMax);
    else if (p.is("--vocab")) a.vocab = p.integer<std::int64_t>(1, kMax);
    else if (p.is("--repeats")) a.repeats = p.integer(1, 1000000);
    else if (p.is("--json")) a.json = p.text();
    else p.unknown();
  }
  if (p.stop()) {
    if (p.exit_code() == 0) std::exit(0);  // --help (a program-level helper: the usage went to stdout)
    return std::nullopt;
  }
  return a;
}

models::GPTConfig gpt_config(const GptArgs& a) {
  models::GPTConfig cfg;
  cfg.vocab = a.vocab;
  cfg.max_seq = a.T;
  cfg.layers = a.layers;
  cfg.dim = a.C;
  cfg.heads = a.heads;
  return cfg;
}

TokenBatch token_batch(const GptArgs& a, Device device) {
  Generator gen{1, 0};
  Tensor ids = clamp(mul(rand({a.B, a.T + 1}, DType::f64, &gen), double(a.vocab)), 0.0, double(a.vocab - 1))
                   .to(DType::i64)
                   .to(device);
  return {ids.slice(1, 0, a.T).contiguous(), ids.slice(1, 1, a.T + 1).contiguous()};
}

std::string fmt(double v, int prec) {
  std::ostringstream os;
  os.precision(prec);
  os << std::fixed << v;
  return os.str();
}

}  // namespace ciuic::bench
