#include "gpt_bench.h"

#include <iostream>
#include <sstream>

namespace ciuic::bench {

std::string GptArgs::shape_str() const {
  return "B=" + std::to_string(B) + " T=" + std::to_string(T) + " C=" + std::to_string(C) +
         " layers=" + std::to_string(layers) + " heads=" + std::to_string(heads) + " vocab=" + std::to_string(vocab);
}

std::optional<GptArgs> parse_gpt_args(const char* name, int argc, char** argv, GptArgs a) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw ValueError(std::string(name) + ": " + k + " needs a value");
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
      else throw ValueError(std::string(name) + ": unknown argument " + k);
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\nusage: " << name
                << " [--cuda] [--B n] [--T n] [--C n] [--layers n] [--heads n] [--vocab n] [--repeats n] "
                   "[--json PATH]\n";
      return std::nullopt;
    }
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
