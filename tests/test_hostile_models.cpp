// Hostile input to the model-level API: llm.c headers with absurd fields, generation
// arguments, optimizer and loss-scaler hyperparameters, index-taking ops. Each case is a
// clear ciuic::Error naming what was wrong, never a crash, a hang or a giant allocation.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <unistd.h>

#include "ciuic/amp.h"
#include "ciuic/ciuic.h"
#include "ciuic/models/gpt2.h"
#include "ciuic/models/gpt2_weights.h"
#include "ciuic/optim.h"
#include "test_util.h"

using namespace ciuic;
namespace fs = std::filesystem;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// An llm.c model file: the 256-int32 header with `fields` in front, then `payload` zero bytes.
std::string llmc_file(const std::string& name, std::vector<std::int32_t> fields, std::size_t payload) {
  const fs::path p = fs::temp_directory_path() / ("ciuic_hostile_" + name + "_" + std::to_string(::getpid()));
  fields.resize(256);
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(fields.data()), 1024);
  std::vector<char> pad(payload);
  f.write(pad.data(), static_cast<std::streamsize>(pad.size()));
  return p.string();
}

models::GPT2Config tiny() {
  models::GPT2Config c;
  c.vocab_size = 50;
  c.max_seq_len = 16;
  c.num_layers = 1;
  c.num_heads = 2;
  c.channels = 8;
  return c;
}

}  // namespace

TEST_CASE("hostile: llm.c headers with absurd fields are IOErrors before any allocation", "[errors][gpt2]") {
  const std::int32_t M = 20240326, I32 = std::numeric_limits<std::int32_t>::max();
  struct Case {
    const char* name;
    std::vector<std::int32_t> h;
    const char* word;
  };
  const std::vector<Case> cases = {
      {"layers_huge", {M, 3, 1024, 50257, I32, 12, 768, 50304}, "num_layers"},
      {"channels_huge", {M, 3, 1024, 50257, 12, 12, I32 - 7, 50304}, "channels"},
      {"vocab_huge", {M, 3, 1024, I32, 12, 12, 768, I32}, "vocab"},
      {"seq_huge", {M, 3, I32, 50257, 12, 12, 768, 50304}, "max_seq_len"},
      {"layers_negative", {M, 3, 1024, 50257, -1, 12, 768, 50304}, "num_layers"},
      {"heads_zero", {M, 3, 1024, 50257, 12, 0, 768, 50304}, "num_heads"},
      {"heads_not_dividing", {M, 3, 1024, 50257, 12, 7, 768, 50304}, "num_heads"},
      {"padded_smaller", {M, 3, 1024, 50257, 12, 12, 768, 100}, "padded_vocab_size"},
      {"channels_zero", {M, 3, 1024, 50257, 12, 12, 0, 50304}, "channels"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const std::string path = llmc_file(c.name, c.h, 64);
    CHECK_THROWS_WITH_ALL(models::gpt2_from_llmc(path), IOError, c.word, c.name);
    fs::remove(path);
  }
}

TEST_CASE("hostile: generate() refuses bad arguments with ValueErrors naming them", "[errors][gpt2]") {
  Generator init{5, 0};
  models::GPT2 m(tiny(), &init);
  CHECK_THROWS_WITH_ALL(m.generate({}, 3, 1.0, 0, 1), ValueError, "generate", "prompt");
  CHECK_THROWS_WITH_ALL(m.generate({1, 2}, -1, 1.0, 0, 1), ValueError, "generate", "-1");
  CHECK_THROWS_WITH_ALL(m.generate({1, 2}, 100, 1.0, 0, 1), ValueError, "generate", "16");
  CHECK_THROWS_WITH_ALL(m.generate({1, 2}, INT64_MAX, 1.0, 0, 1), ValueError, "generate", "max_seq_len");
  CHECK_THROWS_WITH_ALL(m.generate({1, 2}, 3, INFINITY, 0, 1), ValueError, "generate", "temperature");
  CHECK_THROWS_WITH_ALL(m.generate({1, 2}, 3, -1.0, 0, 1), ValueError, "generate", "temperature");
  CHECK_THROWS_WITH_ALL(m.generate({1, 2}, 3, kNaN, 0, 1), ValueError, "generate", "temperature");
  CHECK_THROWS_WITH_ALL(m.generate({1, 2}, 3, 1.0, -2, 1), ValueError, "generate", "top_k");
  CHECK_THROWS_AS(m.generate({1, 50}, 3, 1.0, 0, 1), IndexError);
  CHECK_THROWS_AS(m.generate({-1}, 3, 1.0, 0, 1), IndexError);
  // top_k beyond the vocabulary means the whole vocabulary (PyTorch's topk would refuse; generate clamps).
  CHECK(m.generate({1, 2}, 3, 1.0, 1000, 1).size() == 5);
  CHECK(m.generate({1, 2}, 0, 1.0, 0, 1) == std::vector<std::int64_t>{1, 2});
}

TEST_CASE("hostile: optimizer and loss-scaler hyperparameters are validated", "[errors][optim]") {
  Tensor p = ones({3}).requires_grad_();
  CHECK_THROWS_WITH_ALL(optim::SGD({p}, -0.1), ValueError, "SGD", "lr");
  CHECK_THROWS_WITH_ALL(optim::SGD({p}, kNaN), ValueError, "SGD", "lr");
  CHECK_THROWS_WITH_ALL(optim::SGD({p}, 0.1, -0.5), ValueError, "SGD", "momentum");
  CHECK_THROWS_WITH_ALL(optim::SGD({p}, 0.1, 0.0, 0.0, -1.0), ValueError, "SGD", "weight_decay");
  CHECK_THROWS_WITH_ALL(optim::SGD({p}, 0.1, 0.0, 0.5, 0.0, true), ValueError, "SGD", "nesterov");
  CHECK_THROWS_WITH_ALL(optim::AdamW({p}, -1.0), ValueError, "AdamW", "lr");
  CHECK_THROWS_WITH_ALL(optim::AdamW({p}, 1e-3, {1.0, 0.999}), ValueError, "AdamW", "beta");
  CHECK_THROWS_WITH_ALL(optim::AdamW({p}, 1e-3, {0.9, -0.1}), ValueError, "AdamW", "beta");
  CHECK_THROWS_WITH_ALL(optim::AdamW({p}, 1e-3, {0.9, 0.999}, -1e-8), ValueError, "AdamW", "eps");
  CHECK_THROWS_WITH_ALL(optim::AdamW({p}, 1e-3, {0.9, 0.999}, 1e-8, kNaN), ValueError, "AdamW", "weight_decay");
  CHECK_THROWS_WITH_ALL(amp::LossScaler(amp::LossScalerOptions().init_scale(0)), ValueError, "LossScaler", "scale 0");
  CHECK_THROWS_WITH_ALL(amp::LossScaler(amp::LossScalerOptions().init_scale(kNaN)), ValueError, "LossScaler",
                        "scale nan");
  CHECK_THROWS_WITH_ALL(amp::LossScaler(amp::LossScalerOptions().growth_factor(1.0)), ValueError, "growth_factor");
  CHECK_THROWS_WITH_ALL(amp::LossScaler(amp::LossScalerOptions().backoff_factor(1.5)), ValueError, "backoff_factor");
  CHECK_THROWS_WITH_ALL(amp::LossScaler(amp::LossScalerOptions().growth_interval(0)), ValueError, "growth_interval");
}

TEST_CASE("hostile: out-of-range indices in index-taking ops are IndexErrors naming the op", "[errors]") {
  // embedding and cross_entropy check their indices in the kernel and raise at the next check
  // point of the device (README: deferred errors; the CPU behaves as a GPU): here to_vector().
  auto read = [](const Tensor& t) { (void)t.to_vector<double>(); };
  Tensor w = randn({5, 3});
  CHECK_THROWS_WITH_ALL(read(embedding(w, from_vector<std::int64_t>({1, 5}, {2}))), IndexError, "embedding",
                        "index 5");
  CHECK_THROWS_WITH_ALL(read(embedding(w, from_vector<std::int64_t>({-1}, {1}))), IndexError, "embedding",
                        "index -1");
  Tensor logits = randn({2, 4});
  CHECK_THROWS_WITH_ALL(read(cross_entropy(logits, from_vector<std::int64_t>({0, 4}, {2}))), IndexError,
                        "cross_entropy", "4");
  CHECK_THROWS_WITH_ALL(read(cross_entropy(logits, from_vector<std::int64_t>({-3, 0}, {2}))), IndexError,
                        "cross_entropy", "-3");
  // Every target ignored: NaN, as PyTorch's mean over zero elements.
  CHECK(std::isnan(cross_entropy(logits, from_vector<std::int64_t>({-100, -100}, {2})).item<double>()));
  CHECK_THROWS_WITH_ALL(read(gather(w, 0, from_vector<std::int64_t>({7}, {1, 1}))), IndexError, "gather", "7");
  CHECK_THROWS_WITH_ALL(topk(w, 4, 1), ValueError, "topk", "4");
  CHECK_THROWS_WITH_ALL(topk(w, -1, 1), ValueError, "topk", "-1");
  CHECK_THROWS_WITH_ALL(multinomial(from_vector<double>({0.5, -0.1}, {2}), 1), ValueError, "multinomial");
  CHECK_THROWS_WITH_ALL(multinomial(from_vector<double>({0.5, kNaN}, {2}), 1), ValueError, "multinomial");
  CHECK_THROWS_WITH_ALL(multinomial(from_vector<double>({0.0, 0.0}, {2}), 1), ValueError, "multinomial");
  CHECK_THROWS_WITH_ALL(multinomial(from_vector<double>({0.5, 0.5}, {2}), 3, false), ValueError, "multinomial");
}

TEST_CASE("hostile: module constructors refuse sizes no layer can have", "[errors][nn]") {
  CHECK_THROWS_WITH_ALL(nn::Linear(-1, 4), ValueError, "Linear", "-1");
  CHECK_THROWS_WITH_ALL(nn::Linear(4, -3), ValueError, "Linear", "-3");
  CHECK_THROWS_AS(nn::Linear(std::int64_t{1} << 40, std::int64_t{1} << 40), Error);  // 2^80 weights
  CHECK_THROWS_WITH_ALL(nn::Embedding(-5, 3), ValueError, "Embedding", "-5");
  CHECK_THROWS_WITH_ALL(nn::LayerNorm(-2), ValueError, "LayerNorm", "-2");
  CHECK_THROWS_WITH_ALL(nn::LayerNorm(4, -1.0), ValueError, "LayerNorm", "eps");
  CHECK_THROWS_WITH_ALL(nn::BatchNorm2d(0), ValueError, "BatchNorm2d", "0");
  CHECK_THROWS_WITH_ALL(nn::Dropout(1.5), ValueError, "Dropout", "1.5");
  CHECK_THROWS_WITH_ALL(nn::Dropout(-0.1), ValueError, "Dropout", "-0.1");
  CHECK_THROWS_WITH_ALL(nn::Conv2d(3, 4, 0), ValueError, "Conv2d", "kernel");
  CHECK_THROWS_WITH_ALL(nn::Conv2d(3, 4, 3, 0), ValueError, "Conv2d", "stride");
  CHECK_THROWS_WITH_ALL(nn::Conv2d(3, 4, 3, 1, -1), ValueError, "Conv2d", "padding");
  CHECK_THROWS_WITH_ALL(nn::Conv2d(3, 4, 3, 1, 0, 1, 2), ValueError, "Conv2d", "groups");
  CHECK_THROWS_WITH_ALL(nn::MaxPool2d(0), ValueError, "MaxPool2d", "kernel");
  // A layer given the wrong input names itself and both shapes.
  nn::Linear l(4, 2);
  CHECK_THROWS_WITH_ALL(l.forward(ones({3, 5})), ShapeError, "[3, 5]", "4");
  nn::LayerNorm ln(4);
  CHECK_THROWS_WITH_ALL(ln.forward(ones({3, 5})), ShapeError, "layer_norm", "[3, 5]");
  // load_state_dict: a wrong shape or dtype kind is refused before anything is copied.
  nn::Linear a(4, 2), b(4, 3);
  const std::vector<float> before = a.weight.to_vector<float>();
  CHECK_THROWS_WITH_ALL(a.load_state_dict(b.state_dict()), ShapeError, "weight", "[3, 4]", "[2, 4]");
  CHECK(a.weight.to_vector<float>() == before);
}
