// GPT-2: configs and names, training, f64 gradcheck, checkpointing, KV-cache
// generation against full forwards, llm.c and safetensors round trips and bad
// files, the training job's exact resume and its command line.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "ciuic/ciuic.h"
#include "ciuic/gradcheck.h"
#include "ciuic/io.h"
#include "ciuic/models/gpt2.h"
#include "ciuic/models/gpt2_weights.h"
#include "ciuic/models/token_data.h"
#include "ciuic/models/train_gpt2.h"
#include "temp_dir.h"
#include "test_util.h"

using namespace ciuic;
using models::GPT2;
using models::GPT2Config;

namespace {

namespace fs = std::filesystem;

GPT2Config small(std::int64_t layers = 2, std::int64_t vocab = 300, double dropout = 0.0) {
  GPT2Config c;
  c.vocab_size = vocab;  // padded to 384: the padding paths are exercised
  c.max_seq_len = 32;
  c.num_layers = layers;
  c.num_heads = 4;
  c.channels = 32;
  c.dropout = dropout;
  return c;
}

struct Batch {
  Tensor idx, tgt;
};
Batch tokens(std::int64_t B, std::int64_t T, std::int64_t V, std::uint64_t seed) {
  Generator g{seed, 0};
  Tensor u = rand({B, T + 1}, DType::f64, &g);
  Tensor ids = clamp(mul(u, static_cast<double>(V)), 0.0, static_cast<double>(V - 1)).to(DType::i64);
  return {ids.slice(1, 0, T).contiguous(), ids.slice(1, 1, T + 1).contiguous()};
}

// a's parameters (rounded through `via` when given) against b's, within tol.
void require_same_parameters(const GPT2& a, const GPT2& b, double tol = 0.0, DType via = DType::f32) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (std::size_t i = 0; i < pa.items().size(); ++i) {
    const auto& [name, ta] = pa.items()[i];
    const Tensor& tb = pb.at(name);
    INFO(name);
    REQUIRE(ta.shape() == tb.shape());
    auto va = ta.to(via).to_vector<float>(), vb = tb.to_vector<float>();
    double worst = 0;
    for (std::size_t j = 0; j < va.size(); ++j) worst = std::max(worst, std::fabs(double(va[j]) - double(vb[j])));
    CHECK(worst <= tol);
  }
}

}  // namespace

TEST_CASE("GPT-2 configs, padded vocabulary and Hugging Face parameter names", "[gpt2]") {
  CHECK(GPT2Config::d12().padded_vocab_size() == 50304);
  CHECK(GPT2Config::named("gpt2-medium").channels == 1024);
  CHECK(GPT2Config::named("d36").num_heads == 20);
  CHECK(GPT2Config::named("d48").num_layers == 48);
  CHECK(GPT2Config::tiny().padded_vocab_size() == 256);
  CHECK_THROWS_WITH_ALL(GPT2Config::named("d13"), ValueError, "d13", "d12, d24");
  GPT2Config bad = small();
  bad.num_heads = 5;
  CHECK_THROWS_WITH_ALL(std::make_shared<GPT2>(bad), ValueError, "channels 32", "num_heads 5");

  GPT2 m(small());
  auto names = m.named_parameters();
  for (const char* n : {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
                        "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias",
                        "transformer.h.1.attn.c_proj.weight", "transformer.h.1.ln_2.bias",
                        "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.bias", "transformer.ln_f.weight"})
    CHECK(names.contains(n));
  CHECK(names.size() == 4 + 2 * 12);
  CHECK(names.at("transformer.wte.weight").shape() == Shape{384, 32});
  CHECK(names.at("transformer.h.0.attn.c_attn.weight").shape() == Shape{96, 32});
  // Padded rows start at zero; logits cover the real vocabulary only.
  auto wte = names.at("transformer.wte.weight").narrow(0, 300, 84).to_vector<float>();
  CHECK(*std::max_element(wte.begin(), wte.end()) == 0.0f);
  Batch b = tokens(2, 8, 300, 1);
  CHECK(m.forward(b.idx).shape() == Shape{2, 8, 300});
  // Parameters: tied output layer counted once.
  const std::int64_t C = 32, L = 2;
  CHECK(m.num_parameters() == 384 * C + 32 * C + L * (12 * C * C + 13 * C) + 2 * C);
}

TEST_CASE("the tiny GPT's loss falls on the embedded corpus", "[gpt2]") {
  GPT2Config c = GPT2Config::tiny();
  c.num_layers = 2;
  c.channels = 64;
  c.max_seq_len = 32;
  Generator init{7, 0};
  GPT2 m(c, &init);
  auto [train, val] = models::TokenDataset::from_spec("embedded").split_tail(0.1);
  models::DataLoader loader(train, 8, 32);
  optim::AdamW opt(m.parameters(), optim::AdamWOptions(3e-3).betas(0.9, 0.95).weight_decay(0.0));
  // The corpus is the project's own text, which changes with every commit: judge the mean of the last
  // ten steps, not one batch.
  double first = 0, tail = 0;
  const int steps = 100;
  for (int step = 0; step < steps; ++step) {
    auto batch = loader.next();
    opt.zero_grad();
    Tensor loss = m.loss(batch.idx, batch.targets);
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item();
    if (step >= steps - 10) tail += loss.item() / 10;
  }
  models::DataLoader vl(val, 8, 32);
  NoGradGuard ng;
  double val_loss = 0;
  for (int i = 0; i < 4; ++i) {
    auto vb = vl.next();
    val_loss += m.loss(vb.idx, vb.targets).item() / 4;
  }
  INFO("loss " << first << " -> " << tail << " (mean of the last 10 steps), val " << val_loss);
  CHECK(first > 5.0);          // ~ln 256 at initialisation
  CHECK(tail < first - 1.5);  // from ln 256 towards the bytes' unigram entropy
  CHECK(val_loss < first - 1.25);
}

TEST_CASE("gradcheck of a one-layer tiny GPT in f64", "[gpt2][gradcheck]") {
  GPT2Config c;
  c.vocab_size = 20;  // padded 128: the padding rows' gradient is zero on both sides
  c.max_seq_len = 5;
  c.num_layers = 1;
  c.num_heads = 2;
  c.channels = 8;
  c.dtype = DType::f64;
  Generator init{3, 0};
  GPT2 m(c, &init);
  {
    // Non-trivial LayerNorm gains and biases so that their gradients are tested too.
    NoGradGuard ng;
    Generator g{4, 0};
    for (auto entries = m.named_parameters(); auto& [name, p] : entries.items())
      if (p.dim() == 1) Tensor(p).copy_(add(p, normal(p.shape(), 0.0, 0.1, DType::f64, &g)));
  }
  Batch b = tokens(2, 5, 20, 5);
  std::vector<Tensor> params = m.parameters();
  auto res = gradcheck([&](const std::vector<Tensor>&) { return m.loss(b.idx, b.tgt); }, params,
                       GradcheckOptions{1e-6, 1e-7, 1e-5, 9});
  INFO(res.report);
  CHECK(res.ok);
}

TEST_CASE("GPT-2 gradients are identical with and without checkpointing", "[gpt2][checkpoint]") {
  auto grads = [](CheckpointPolicy p) {
    GPT2Config c = small(3, 300, /*dropout=*/0.1);
    c.checkpoint = p;
    Generator init{11, 0};
    GPT2 m(c, &init);
    Batch b = tokens(2, 16, 300, 3);
    manual_seed(99);  // the dropout masks
    m.loss(b.idx, b.tgt).backward();
    std::vector<std::vector<float>> out;
    for (const Tensor& t : m.parameters()) out.push_back(t.grad().to_vector<float>());
    return out;
  };
  auto ref = grads(CheckpointPolicy::none());
  for (auto p : {CheckpointPolicy::every_block(), CheckpointPolicy::selective(), CheckpointPolicy::every_kth(2)}) {
    INFO(p.str());
    CHECK(grads(p) == ref);
  }
}

TEST_CASE("KV-cache decoding gives the full forward's logits at every position", "[gpt2]") {
  GPT2Config c = small(2, 300);
  Generator init{21, 0};
  GPT2 m(c, &init);
  Batch b = tokens(1, 20, 300, 8);
  Tensor full;
  {
    NoGradGuard ng;
    full = m.forward(b.idx);  // (1, 20, 300)
  }
  models::KVCache cache = m.make_cache(1);
  std::vector<Tensor> pieces{m.forward_cached(b.idx.narrow(1, 0, 6), cache)};  // a 6-token prompt, then one by one
  for (std::int64_t t = 6; t < 20; ++t) pieces.push_back(m.forward_cached(b.idx.narrow(1, t, 1), cache));
  CHECK(cache.length == 20);
  Tensor inc = cat(pieces, 1);
  auto a = full.to_vector<float>(), i = inc.to_vector<float>();
  REQUIRE(a.size() == i.size());
  double worst = 0;
  for (std::size_t k = 0; k < a.size(); ++k) worst = std::max(worst, std::fabs(double(a[k]) - double(i[k])));
  CHECK(worst < 1e-4);
  CHECK_THROWS_WITH_ALL(m.forward_cached(b.idx.narrow(1, 0, 2), cache), ValueError, "one token at a time");

  // Greedy generation equals argmax over repeated full forwards.
  std::vector<std::int64_t> prompt{5, 17, 42};
  auto greedy = m.generate(prompt, 10, 0.0, 0, 1);
  std::vector<std::int64_t> ref = prompt;
  for (int s = 0; s < 10; ++s) {
    NoGradGuard ng;
    Tensor logits = m.forward(from_vector(ref, {1, static_cast<std::int64_t>(ref.size())}));
    ref.push_back(argmax(logits.select(1, logits.size(1) - 1), -1).item<std::int64_t>());
  }
  CHECK(greedy == ref);
  // Sampling: reproducible by seed; top_k = 1 is greedy; tokens inside the vocabulary.
  auto s1 = m.generate(prompt, 12, 1.0, 40, 77), s2 = m.generate(prompt, 12, 1.0, 40, 77);
  CHECK(s1 == s2);
  CHECK(m.generate(prompt, 10, 0.7, 1, 5) == greedy);
  for (auto t : s1) CHECK((t >= 0 && t < 300));
  CHECK_THROWS_WITH_ALL(m.generate(prompt, 40, 1.0, 0, 1), ValueError, "max_seq_len 32");
  CHECK_THROWS_WITH_ALL(m.generate({}, 4, 1.0, 0, 1), ValueError, "prompt is empty");
  CHECK_THROWS_WITH_ALL(m.generate({300}, 4, 1.0, 0, 1), IndexError, "token 300");
}

TEST_CASE("sample_token: greedy, top-k and the temperature", "[gpt2]") {
  std::vector<float> logits{0.0f, 3.0f, 1.0f, 2.0f};
  CHECK(models::sample_token(logits, 0.0, 0, 0.9) == 1);
  CHECK(models::sample_token(logits, 1.0, 1, 0.99) == 1);
  // top_k = 2 keeps tokens 1 and 3: probabilities e^3 / (e^3 + e^2) and e^2 / (...).
  const double p1 = std::exp(3.0) / (std::exp(3.0) + std::exp(2.0));
  CHECK(models::sample_token(logits, 1.0, 2, p1 - 1e-6) == 1);
  CHECK(models::sample_token(logits, 1.0, 2, p1 + 1e-6) == 3);
  CHECK_THROWS_WITH_ALL(models::sample_token(logits, -1.0, 0, 0.5), ValueError, "temperature");
}

TEST_CASE("llm.c model files: fp32 and bf16 round trips, header, bad files", "[gpt2][io]") {
  TempDir dir("llmc");
  Generator init{31, 0};
  GPT2 m(small(2, 300), &init);
  const std::string f32 = dir / "model.bin", bf16 = dir / "model_bf16.bin";
  models::save_llmc(m, f32, 3);
  models::save_llmc(m, bf16, 5);
  const std::int64_t n = m.num_parameters();
  CHECK(fs::file_size(f32) == 1024 + 4 * static_cast<std::uintmax_t>(n));
  CHECK(fs::file_size(bf16) == 1024 + 2 * static_cast<std::uintmax_t>(n));
  {
    std::ifstream f(f32, std::ios::binary);
    std::int32_t h[8];
    f.read(reinterpret_cast<char*>(h), sizeof h);
    CHECK(std::vector<std::int32_t>(h, h + 8) == std::vector<std::int32_t>{20240326, 3, 32, 300, 2, 4, 32, 384});
    // The first tensor is wte (Vp, C) row-major, then wpe: check wpe's first value.
    f.seekg(1024 + 4 * 384 * 32);
    float wpe0 = 0;
    f.read(reinterpret_cast<char*>(&wpe0), 4);
    CHECK(wpe0 == m.transformer->wpe->weight.to_vector<float>()[0]);
    // The third is ln1w of both layers, the fifth qkvw of layer 0 (3C, C) as our (out, in).
    f.seekg(1024 + 4 * (384 * 32 + 32 * 32 + 2 * 32 + 2 * 32));
    std::vector<float> qkv(96 * 32);
    f.read(reinterpret_cast<char*>(qkv.data()), 4 * qkv.size());
    CHECK(qkv == m.transformer->blocks[0]->attn->c_attn->weight.to_vector<float>());
  }
  auto back = models::gpt2_from_llmc(f32);
  CHECK(back->config().str() == m.config().str());
  require_same_parameters(m, *back);
  auto back16 = models::gpt2_from_llmc(bf16);
  require_same_parameters(m, *back16, 0.0, DType::bf16);  // exactly the bf16-rounded weights
  {
    GPT2 round(small(2, 300));
    {
      NoGradGuard ng;
      Tensor(round.transformer->ln_f->weight).zero_();  // must be overwritten
    }
    models::load_llmc(round, f32);
    require_same_parameters(m, round);
  }

  // Bad files.
  auto write_bytes = [&](const std::string& name, std::vector<char> bytes) {
    std::ofstream(dir / name, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return dir / name;
  };
  std::ifstream in(f32, std::ios::binary);
  std::vector<char> good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THROWS_WITH_ALL(models::gpt2_from_llmc(dir / "missing.bin"), IOError, "cannot open", "missing.bin");
  auto truncated = good;
  truncated.resize(good.size() - 8);
  CHECK_THROWS_WITH_ALL(models::load_llmc(*back, write_bytes("trunc.bin", truncated)), IOError, "trunc.bin",
                        "bytes", "version 3");
  auto bad_magic = good;
  bad_magic[0] = 1;
  CHECK_THROWS_WITH_ALL(models::gpt2_from_llmc(write_bytes("magic.bin", bad_magic)), IOError, "magic", "20240326");
  auto bad_version = good;
  bad_version[4] = 2;
  CHECK_THROWS_WITH_ALL(models::gpt2_from_llmc(write_bytes("version.bin", bad_version)), IOError, "version 2",
                        "3 (fp32) or 5 (bf16)");
  CHECK_THROWS_WITH_ALL(models::gpt2_from_llmc(write_bytes("short.bin", std::vector<char>(100))), IOError,
                        "100 bytes", "header");
  GPT2 other(small(3, 300));
  CHECK_THROWS_WITH_ALL(models::load_llmc(other, f32), ValueError, "L=2", "L=3");
  CHECK_THROWS_WITH_ALL(models::save_llmc(m, dir / "x.bin", 4), ValueError, "version 4");
}

TEST_CASE("Hugging Face safetensors: Conv1D layout round trip, unprefixed names, bad files", "[gpt2][io]") {
  TempDir dir("hf");
  Generator init{41, 0};
  GPT2 m(small(2, 300), &init);
  const std::string path = dir / "model.safetensors";
  models::save_hf_safetensors(m, path);
  auto file = load_safetensors(path);
  std::map<std::string, Tensor> byname(file.begin(), file.end());
  REQUIRE(byname.count("transformer.h.0.attn.c_attn.weight"));
  CHECK(byname["transformer.h.0.attn.c_attn.weight"].shape() == Shape{32, 96});  // Conv1D: (in, out)
  CHECK(byname["transformer.h.1.mlp.c_proj.weight"].shape() == Shape{128, 32});
  CHECK(byname["transformer.wte.weight"].shape() == Shape{300, 32});  // unpadded
  CHECK(load_safetensors_metadata(path).at("n_head") == "4");
  auto back = models::gpt2_from_hf_safetensors(path);
  CHECK(back->config().str() == m.config().str());
  require_same_parameters(m, *back);

  // The hub's layout: no "transformer." prefix, causal-mask buffers, f16 values, heads from config.json.
  NamedTensors hub;
  for (auto& [name, t] : file) {
    hub.emplace_back(name.substr(12), t.to(DType::f16));
    if (name.ends_with("ln_1.weight"))
      hub.emplace_back(name.substr(12, name.find("ln_1") - 12) + "attn.bias", ones({1, 1, 32, 32}));
  }
  fs::create_directories(dir.path / "hub");
  save_safetensors(dir / "hub/model.safetensors", hub);
  CHECK_THROWS_WITH_ALL(models::gpt2_from_hf_safetensors(dir / "hub/model.safetensors"), IOError,
                        "number of heads", "config.json");
  std::ofstream(dir / "hub/config.json") << R"({"n_head": 4, "n_layer": 2})";
  auto hub_model = models::gpt2_from_hf_safetensors(dir / "hub/model.safetensors");
  require_same_parameters(m, *hub_model, 1e-3);

  // Missing and unexpected tensors.
  NamedTensors missing(file.begin(), file.end());
  missing.erase(std::remove_if(missing.begin(), missing.end(),
                               [](auto& p) { return p.first == "transformer.h.1.mlp.c_fc.bias"; }),
                missing.end());
  save_safetensors(dir / "missing.safetensors", missing, {{"n_head", "4"}});
  CHECK_THROWS_WITH_ALL(models::gpt2_from_hf_safetensors(dir / "missing.safetensors"), IOError,
                        "no tensor h.1.mlp.c_fc.bias");
  NamedTensors extra(file.begin(), file.end());
  extra.emplace_back("transformer.h.0.attn.q_proj.weight", zeros({2, 2}));
  save_safetensors(dir / "extra.safetensors", extra, {{"n_head", "4"}});
  CHECK_THROWS_WITH_ALL(models::gpt2_from_hf_safetensors(dir / "extra.safetensors"), IOError,
                        "unexpected tensor h.0.attn.q_proj.weight");
  NamedTensors wrong(file.begin(), file.end());
  for (auto& [name, t] : wrong)
    if (name == "transformer.h.0.attn.c_proj.weight") t = zeros({32, 33});
  save_safetensors(dir / "wrong.safetensors", wrong, {{"n_head", "4"}});
  CHECK_THROWS_WITH_ALL(models::gpt2_from_hf_safetensors(dir / "wrong.safetensors"), IOError,
                        "attn.c_proj.weight", "[33, 32]", "[32, 32]");
  std::ofstream(dir / "garbage.safetensors") << "not a safetensors file";
  CHECK_THROWS_AS(models::gpt2_from_hf_safetensors(dir / "garbage.safetensors"), IOError);
}

namespace {
models::TrainOptions job(const std::string& precision) {
  models::TrainOptions o;
  o.model = "tiny";
  o.batch = 2;
  o.seq = 32;
  o.steps = 6;
  o.dropout = 0.1;  // the RNG state must resume too
  o.lr = 1e-3;
  o.warmup = 2;
  o.precision = precision;
  o.val_batches = 1;
  o.quiet = true;
  return o;
}
}  // namespace

TEST_CASE("train_gpt2: a resumed run reproduces the uninterrupted run bit for bit", "[gpt2][train]") {
  for (const char* precision : {"fp32", "fp16"}) {
    INFO(precision);
    TempDir dir(std::string("resume_") + precision);
    auto full = models::train_gpt2(job(precision), nullptr);
    REQUIRE(full.steps.size() == 6);
    auto first = job(precision);
    first.stop_at = 3;
    first.save = dir / "run.safetensors";
    auto a = models::train_gpt2(first, nullptr);
    REQUIRE(a.steps.size() == 3);
    auto second = job(precision);
    second.resume = dir / "run.safetensors";
    second.save = dir / "end.safetensors";
    auto b = models::train_gpt2(second, nullptr);
    REQUIRE(b.steps.size() == 3);
    for (int i = 0; i < 3; ++i) {
      CHECK(a.steps[i].loss == full.steps[i].loss);
      CHECK(b.steps[i].step == full.steps[3 + i].step);
      CHECK(b.steps[i].loss == full.steps[3 + i].loss);  // exact
      CHECK(b.steps[i].norm == full.steps[3 + i].norm);
      CHECK(b.steps[i].lr == full.steps[3 + i].lr);
      CHECK(b.steps[i].scale == full.steps[3 + i].scale);
    }
    CHECK(b.val_loss.back().second == full.val_loss.back().second);
    // A save resumed with another batch size is refused.
    auto other = job(precision);
    other.batch = 3;
    other.resume = dir / "run.safetensors";
    CHECK_THROWS_WITH_ALL(models::train_gpt2(other, nullptr), ValueError, "\"batch\":2", "\"batch\":3");
  }
}

TEST_CASE("train_gpt2: grad accumulation, checkpointing, bf16 and JSON output", "[gpt2][train]") {
  TempDir dir("opts");
  auto o = job("bf16");
  o.steps = 3;
  o.grad_accum = 2;
  o.checkpoint = "blocks";
  o.json = dir / "run.json";
  auto r = models::train_gpt2(o, nullptr);
  REQUIRE(r.steps.size() == 3);
  for (auto& s : r.steps) CHECK(std::isfinite(s.loss));
  std::ifstream f(o.json);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(text.find("\"tokens_per_s\"") != std::string::npos);
  CHECK(text.find("\"median_ms\"") != std::string::npos);
  // Starting from a saved llm.c file: the shape comes from the file.
  GPT2Config c = small(1, 256);
  c.max_seq_len = 64;
  GPT2 m(c);
  models::save_llmc(m, dir / "init.bin");
  auto from_file = job("fp32");
  from_file.init = dir / "init.bin";
  from_file.steps = 1;
  auto r2 = models::train_gpt2(from_file, nullptr);
  CHECK(r2.parameters == m.num_parameters());
  models::save_hf_safetensors(m, dir / "init.safetensors");
  from_file.init = dir / "init.safetensors";
  CHECK(models::train_gpt2(from_file, nullptr).parameters == m.num_parameters());
  // The other checkpoint policies train too.
  for (const char* policy : {"selective", "auto:1"}) {
    auto p = job("fp32");
    p.steps = 2;
    p.checkpoint = policy;
    auto rp = models::train_gpt2(p, nullptr);
    INFO(policy);
    CHECK(rp.steps.size() == 2);
  }
  // Data whose tokens exceed the vocabulary is refused with the token and file named.
  std::vector<std::uint16_t> toks(4000, 1000);
  models::write_token_shard(dir / "big.bin", toks);
  auto big = job("fp32");
  big.data = dir / "big.bin";
  CHECK_THROWS_WITH_ALL(models::train_gpt2(big, nullptr), ValueError, "token 1000", "big.bin", "[0, 256)");
  // Held-out text too short for one batch: the run trains without validation and says so.
  {
    std::ofstream t(dir / "short.txt");
    for (int i = 0; i < 100; ++i) t << "the quick brown fox ";  // 2000 bytes: 1800 train, 200 validation
  }
  auto short_val = job("fp32");
  short_val.data = dir / "short.txt";
  short_val.seq = 128;
  short_val.steps = 1;
  auto rs = models::train_gpt2(short_val, nullptr);
  CHECK(rs.steps.size() == 1);
  CHECK(rs.val_loss.empty());
  auto missing = job("fp32");
  missing.init = dir / "nope.bin";
  CHECK_THROWS_WITH_ALL(models::train_gpt2(missing, nullptr), IOError, "nope.bin");
}

TEST_CASE("train_gpt2 command line: every option parses, bad ones are usage errors", "[gpt2][train]") {
  auto o = models::parse_train_args({"--model", "d12", "--init=random", "--batch", "16", "--seq=1024", "--steps",
                                     "50", "--grad-accum", "2", "--lr", "6e-4", "--weight-decay", "0.1", "--clip",
                                     "1.0", "--precision", "fp16", "--checkpoint", "auto:8", "--device", "cuda",
                                     "--seed", "42", "--save", "a", "--resume", "b", "--json", "c", "--quiet"});
  CHECK(o.model == "d12");
  CHECK(o.batch == 16);
  CHECK(o.seq == 1024);
  CHECK(o.grad_accum == 2);
  CHECK(o.precision == "fp16");
  CHECK(o.checkpoint == "auto:8");
  CHECK(o.seed == 42);
  CHECK(o.quiet);
  using models::UsageError;
  CHECK_THROWS_WITH_ALL(models::parse_train_args({"--bogus"}), UsageError, "unknown option \"--bogus\"");
  CHECK_THROWS_WITH_ALL(models::parse_train_args({"--batch"}), UsageError, "--batch needs a value");
  CHECK_THROWS_WITH_ALL(models::parse_train_args({"--batch", "x"}), UsageError, "--batch expects an integer");
  CHECK_THROWS_WITH_ALL(models::parse_train_args({"--batch", "0"}), UsageError, "--batch must be >= 1");
  CHECK_THROWS_WITH_ALL(models::parse_train_args({"--lr", "1e-3x"}), UsageError, "--lr expects a number");
  CHECK_THROWS_WITH_ALL(models::parse_train_args({"--precision", "fp8"}), UsageError, "fp32, fp16 or bf16");
  CHECK_THROWS_WITH_ALL(models::parse_train_args({"--checkpoint", "auto:x"}), UsageError, "auto:<GiB>");
  CHECK_THROWS_WITH_ALL(models::parse_train_args({"--checkpoint", "some"}), UsageError, "none, blocks");
  CHECK_THROWS_WITH_ALL(models::parse_train_args({"--device", "tpu"}), UsageError, "cpu, cuda");
  CHECK_THROWS_WITH_ALL(models::parse_train_args({"--model", "d7"}), UsageError, "d7");
  CHECK_THROWS_WITH_ALL(models::parse_train_args({"--steps", "5", "--stop-at", "9"}), UsageError, "--stop-at 9");
  CHECK_THROWS_WITH_ALL(models::parse_train_args({"--save-every", "5"}), UsageError, "--save PATH");
  CHECK(models::train_usage().find("--checkpoint") != std::string::npos);
}

TEST_CASE("train_gpt2: an fp16 step whose gradients overflow is skipped and marked", "[gpt2][train]") {
  TempDir dir("skip");
  // Embeddings of magnitude ~100: the loss-scaled gradient through the tied output layer overflows f16.
  GPT2Config c = small(1, 256);
  c.max_seq_len = 64;
  GPT2 m(c);
  {
    NoGradGuard ng;
    Tensor w = m.transformer->wte->weight;
    w.copy_(mul(w, 5000.0));
  }
  models::save_llmc(m, dir / "big.bin");
  auto o = job("fp16");
  o.init = dir / "big.bin";
  o.steps = 2;
  o.quiet = false;
  std::FILE* log = std::fopen((dir / "log.txt").c_str(), "w+");
  REQUIRE(log != nullptr);
  auto r = models::train_gpt2(o, log);
  std::fclose(log);
  REQUIRE(r.steps.size() == 2);
  CHECK(r.steps[0].skipped);
  CHECK(r.steps[0].scale == 65536.0);
  CHECK(r.steps[1].scale == 32768.0);  // backed off after the overflow
  std::ifstream f(dir / "log.txt");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  INFO(text);
  CHECK(text.find("step 1/2 | loss") != std::string::npos);
  CHECK(text.find("| scale 65536 |") != std::string::npos);
  CHECK(text.find("| skipped (inf/nan)") != std::string::npos);
  CHECK(text.find("summary: 2 steps") != std::string::npos);
}

TEST_CASE("train_gpt2: a step reads nothing back before it is fully queued, then one read", "[gpt2][train][host_sync]") {
  // The norm, the loss scale, the skip flag and the loss stay on the device until the
  // step's optimizer update is queued and come back in one read (to_vector: on a GPU
  // one device-to-host copy, on the CPU not counted). So the reads counted per step
  // are the same for 2 and for 5 steps: none come from item() in the loop.
  auto reads_for = [](std::int64_t steps, const std::string& precision) {
    auto o = job(precision);
    o.steps = steps;
    o.val_batches = 0;
    o.val_every = 0;
    o.sample_every = 0;
    reset_sync_counts();
    auto r = models::train_gpt2(o, nullptr);
    REQUIRE(r.steps.size() == static_cast<std::size_t>(steps));
    const SyncCounts c = sync_counts();
    return c.item_reads + c.d2h_copies + c.syncs;
  };
  for (const char* precision : {"fp32", "fp16"}) {
    INFO(precision);
    CHECK(reads_for(5, precision) == reads_for(2, precision));
  }
}
