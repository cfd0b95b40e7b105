#include "ciuic/models/train_gpt2.h"

#include "ciuic/backend_flags.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include <ciuic/allocator.h>
#include <ciuic/comm/reducer.h>
#include <ciuic/amp.h>
#include <ciuic/io.h>
#include <ciuic/optim.h>

#include "ciuic/models/gpt2.h"
#include "ciuic/models/gpt2_weights.h"
#include "ciuic/models/token_data.h"

namespace ciuic::models {

using json = nlohmann::json;

// ---------------------------------------------------------------- command line
std::string train_usage() {
  return R"(usage: train_gpt2 [options]
  --model NAME          d12 | d24 | d36 | d48 | tiny (default tiny; a file given to --init sets the shape)
  --init WHAT           random | an llm.c model file (.bin) | Hugging Face GPT-2 .safetensors (default random)
  --data SPEC           embedded | token shard | "glob*.bin" | text file | comma list (default embedded)
  --val-data SPEC       validation data (default: the last 10% of --data)
  --tokenizer PATH      llm.c tokenizer file to print samples of a GPT-2 vocabulary (default: bytes)
  --batch B             micro-batch rows (default 8)
  --seq T               sequence length (default 64)
  --steps N             optimizer steps (default 50)
  --grad-accum K        micro-batches per step (default 1)
  --lr LR               peak learning rate (default 6e-4), cosine decay after a linear warm-up
  --warmup N            warm-up steps (default steps/10)
  --min-lr-ratio R      final lr / peak lr (default 0.1)
  --weight-decay WD     AdamW decoupled decay on matrices (default 0.1)
  --clip C              gradient-norm clipping, 0 = off (default 1.0)
  --dropout P           dropout probability (default 0)
  --precision P         fp32 | fp16 (dynamic loss scaling) | bf16; FP32 master weights (default fp32)
  --checkpoint P        none | blocks | selective | auto:<GiB> (activation budget) (default none)
  --device D            cpu | cuda | cuda:<i> (default cpu)
  --seed S              initialisation, dropout and sampling seed (default 1337)
  --save PATH           save model, optimizer, masters, scaler, RNG and data position at the end
  --save-every N        also save to PATH every N steps
  --resume PATH         continue a saved run exactly
  --stop-at N           end after step N (the schedule still spans --steps)
  --val-every N         validation loss every N steps, and at the end (default: at the end)
  --val-batches N       validation batches (default 8)
  --sample-every M      print a generated sample every M steps (default: never)
  --sample-tokens N     length of the samples (default 64)
  --peak-tflops F       MFU reference in TFLOP/s (default: the card's dense FP16 peak when known)
  --json FILE           write the steps and the summary as JSON
  --quiet               no per-step lines
  --help                this text
)";
}

namespace {

[[noreturn]] void usage_fail(const std::string& msg) { throw UsageError("train_gpt2: " + msg); }

std::int64_t parse_int(const std::string& flag, const std::string& v, std::int64_t lo) {
  std::size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    usage_fail(flag + " expects an integer; got \"" + v + "\"");
  }
  if (used != v.size()) usage_fail(flag + " expects an integer; got \"" + v + "\"");
  if (x < lo) usage_fail(flag + " must be >= " + std::to_string(lo) + "; got " + v);
  return x;
}

double parse_double(const std::string& flag, const std::string& v, double lo) {
  std::size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    usage_fail(flag + " expects a number; got \"" + v + "\"");
  }
  if (used != v.size() || !std::isfinite(x)) usage_fail(flag + " expects a number; got \"" + v + "\"");
  if (x < lo) usage_fail(flag + " must be >= " + std::to_string(lo) + "; got " + v);
  return x;
}

CheckpointPolicy parse_checkpoint(const std::string& v) {
  if (v == "none") return CheckpointPolicy::none();
  if (v == "blocks") return CheckpointPolicy::every_block();
  if (v == "selective") return CheckpointPolicy::selective();
  if (v.rfind("auto:", 0) == 0) {
    double gib = parse_double("--checkpoint auto:<GiB>", v.substr(5), 0.0);
    if (gib <= 0) usage_fail("--checkpoint auto:<GiB> needs a positive budget; got \"" + v + "\"");
    return CheckpointPolicy::budget(static_cast<std::size_t>(gib * 1073741824.0));
  }
  usage_fail("--checkpoint expects none, blocks, selective or auto:<GiB>; got \"" + v + "\"");
}

Device parse_device(const std::string& v) {
  if (v == "cpu") return Device::cpu();
  if (v == "cuda") return Device::cuda(0);
  if (v.rfind("cuda:", 0) == 0) return Device::cuda(static_cast<int>(parse_int("--device cuda:<i>", v.substr(5), 0)));
  usage_fail("--device expects cpu, cuda or cuda:<i>; got \"" + v + "\"");
}

DType precision_dtype(const std::string& p) {
  if (p == "fp32") return DType::f32;
  if (p == "fp16") return DType::f16;
  if (p == "bf16") return DType::bf16;
  usage_fail("--precision expects fp32, fp16 or bf16; got \"" + p + "\"");
}

}  // namespace

TrainOptions parse_train_args(const std::vector<std::string>& args) {
  TrainOptions o;
  using Setter = std::function<void(const std::string&, const std::string&)>;
  std::map<std::string, Setter> with_value = {
      {"--model", [&](auto&, auto& v) { o.model = v; }},
      {"--init", [&](auto&, auto& v) { o.init = v; }},
      {"--data", [&](auto&, auto& v) { o.data = v; }},
      {"--val-data", [&](auto&, auto& v) { o.val_data = v; }},
      {"--tokenizer", [&](auto&, auto& v) { o.tokenizer = v; }},
      {"--batch", [&](auto& f, auto& v) { o.batch = parse_int(f, v, 1); }},
      {"--seq", [&](auto& f, auto& v) { o.seq = parse_int(f, v, 1); }},
      {"--steps", [&](auto& f, auto& v) { o.steps = parse_int(f, v, 1); }},
      {"--grad-accum", [&](auto& f, auto& v) { o.grad_accum = parse_int(f, v, 1); }},
      {"--lr", [&](auto& f, auto& v) { o.lr = parse_double(f, v, 0.0); }},
      {"--warmup", [&](auto& f, auto& v) { o.warmup = parse_int(f, v, 0); }},
      {"--min-lr-ratio", [&](auto& f, auto& v) { o.min_lr_ratio = parse_double(f, v, 0.0); }},
      {"--weight-decay", [&](auto& f, auto& v) { o.weight_decay = parse_double(f, v, 0.0); }},
      {"--clip", [&](auto& f, auto& v) { o.clip = parse_double(f, v, 0.0); }},
      {"--dropout", [&](auto& f, auto& v) { o.dropout = parse_double(f, v, 0.0); }},
      {"--precision", [&](auto&, auto& v) { o.precision = v; }},
      {"--checkpoint", [&](auto&, auto& v) { o.checkpoint = v; }},
      {"--device", [&](auto&, auto& v) { o.device = v; }},
      {"--seed", [&](auto& f, auto& v) { o.seed = static_cast<std::uint64_t>(parse_int(f, v, 0)); }},
      {"--save", [&](auto&, auto& v) { o.save = v; }},
      {"--save-every", [&](auto& f, auto& v) { o.save_every = parse_int(f, v, 0); }},
      {"--resume", [&](auto&, auto& v) { o.resume = v; }},
      {"--stop-at", [&](auto& f, auto& v) { o.stop_at = parse_int(f, v, 0); }},
      {"--val-every", [&](auto& f, auto& v) { o.val_every = parse_int(f, v, 0); }},
      {"--val-batches", [&](auto& f, auto& v) { o.val_batches = parse_int(f, v, 0); }},
      {"--sample-every", [&](auto& f, auto& v) { o.sample_every = parse_int(f, v, 0); }},
      {"--sample-tokens", [&](auto& f, auto& v) { o.sample_tokens = parse_int(f, v, 1); }},
      {"--peak-tflops", [&](auto& f, auto& v) { o.peak_tflops = parse_double(f, v, 0.0); }},
      {"--json", [&](auto&, auto& v) { o.json = v; }},
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i], value;
    bool has_value = false;
    if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    if (a == "--help" || a == "-h") {
      o.help = true;
      continue;
    }
    if (a == "--quiet") {
      if (has_value) usage_fail("--quiet takes no value");
      o.quiet = true;
      continue;
    }
    auto it = with_value.find(a);
    if (it == with_value.end()) usage_fail("unknown option \"" + args[i] + "\"");
    if (!has_value) {
      if (i + 1 >= args.size()) usage_fail(a + " needs a value");
      value = args[++i];
    }
    it->second(a, value);
  }
  // Values that need no file or device: check them now, so a bad flag fails before any work.
  try {
    GPT2Config::named(o.model);
  } catch (const ValueError& e) {
    usage_fail(std::string("--model: ") + e.what());
  }
  precision_dtype(o.precision);
  parse_checkpoint(o.checkpoint);
  parse_device(o.device);
  if (o.dropout >= 1.0) usage_fail("--dropout must be < 1");
  if (o.min_lr_ratio > 1.0) usage_fail("--min-lr-ratio must be <= 1");
  if (o.stop_at > o.steps) usage_fail("--stop-at " + std::to_string(o.stop_at) + " is after --steps " + std::to_string(o.steps));
  if (o.save_every > 0 && o.save.empty()) usage_fail("--save-every needs --save PATH");
  if (o.init.empty()) usage_fail("--init needs a value");
  return o;
}

// ---------------------------------------------------------------- the job
namespace {

// llm.c's tokenizer file: 256 x int32 header (magic 20240328, version 1 or 2, vocab size,
// [3] end-of-text token in version 2), then per token a uint8 length and its bytes.
std::vector<std::string> read_llmc_tokenizer(const std::string& path) {
  const char* op = "read_llmc_tokenizer";
  std::ifstream f(path, std::ios::binary);
  CIUIC_CHECK(f.good(), IOError, op, "cannot open \"", path, "\"");
  std::int32_t h[256] = {};
  f.read(reinterpret_cast<char*>(h), sizeof h);
  CIUIC_CHECK(f.gcount() == sizeof h && h[0] == 20240328 && (h[1] == 1 || h[1] == 2) && h[2] > 0, IOError, op, "\"",
              path, "\" is not an llm.c tokenizer file (magic 20240328, version 1 or 2)");
  std::vector<std::string> vocab(static_cast<std::size_t>(h[2]));
  for (auto& piece : vocab) {
    unsigned char len = 0;
    f.read(reinterpret_cast<char*>(&len), 1);
    piece.resize(len);
    f.read(piece.data(), len);
    CIUIC_CHECK(f.good(), IOError, op, "\"", path, "\" is truncated");
  }
  return vocab;
}

std::string decode(const std::vector<std::int64_t>& tokens, const std::vector<std::string>& vocab) {
  if (vocab.empty()) return ByteTokenizer::decode(tokens);
  std::string out;
  for (std::int64_t t : tokens) out += t >= 0 && t < static_cast<std::int64_t>(vocab.size()) ? vocab[t] : "<|?|>";
  return out;
}

std::string si(double v) {
  char buf[32];
  if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.1fK", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string mem_str(double bytes) {
  char buf[32];
  if (bytes >= 1073741824.0) std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / 1073741824.0);
  else std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
  return buf;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

Allocator& allocator_of(Device d) { return d.is_cuda() ? cuda_allocator(d.index) : cpu_allocator(); }

// What a saved run must share with the resuming one for the losses to continue exactly.
json run_signature(const TrainOptions& o, const GPT2Config& c, int world) {
  return {{"world", world}, {"num_layers", c.num_layers}, {"num_heads", c.num_heads}, {"channels", c.channels},
          {"vocab_size", c.vocab_size}, {"max_seq_len", c.max_seq_len}, {"precision", o.precision},
          {"batch", o.batch}, {"seq", o.seq}, {"grad_accum", o.grad_accum}};
}

constexpr const char* kStateKey = "ciuic.train_gpt2";

struct RunState {
  std::int64_t step = 0;  // steps done
  DataLoader::Position data;
};

void save_run(const std::string& path, const TrainOptions& o, const GPT2& model, const optim::Optimizer& opt,
              const amp::LossScaler& scaler, const RunState& st, int world) {
  NamedTensors tensors;
  for (auto entries = model.state_dict(); const auto& [name, t] : entries.items()) tensors.emplace_back("model/" + name, t);
  optim::OptimizerStateDict sd = opt.state_dict();
  json groups = json::array();
  for (std::size_t g = 0; g < sd.groups.size(); ++g) {
    json hp = json::object(), steps = json::array();
    for (const auto& [k, v] : sd.groups[g].hyperparameters.items()) hp[k] = v;
    for (std::size_t i = 0; i < sd.groups[g].params.size(); ++i) {
      const auto& ps = sd.groups[g].params[i];
      steps.push_back(ps.step);
      for (const auto& [b, t] : ps.buffers.items())
        tensors.emplace_back("optim/" + std::to_string(g) + "/" + std::to_string(i) + "/" + b, t);
    }
    groups.push_back({{"hyperparameters", hp}, {"steps", steps}});
  }
  amp::LossScalerState ss = scaler.state_dict();
  const Generator& gen = default_generator();
  json state = {{"format", "ciuic train_gpt2 run"},
                {"version", 1},
                {"step", st.step},
                {"signature", run_signature(o, model.config(), world)},
                {"optimizer", {{"name", sd.optimizer}, {"groups", groups}}},
                {"scaler", {{"scale", ss.scale}, {"growth_tracker", ss.growth_tracker},
                            {"overflow_streak", ss.overflow_streak}}},
                {"rng", {{"seed", gen.seed}, {"offset", gen.offset}}},
                {"data", {{"segment", st.data.segment}, {"offset", st.data.offset}, {"epoch", st.data.epoch}}}};
  save_safetensors(path, tensors, {{kStateKey, state.dump()}});
}

RunState load_run(const std::string& path, const TrainOptions& o, GPT2& model, optim::Optimizer& opt,
                  amp::LossScaler& scaler, int world) {
  const char* op = "train_gpt2 --resume";
  Metadata meta = load_safetensors_metadata(path);
  auto it = meta.find(kStateKey);
  CIUIC_CHECK(it != meta.end(), IOError, op, "\"", path, "\" is not a train_gpt2 save (no ", kStateKey,
              " metadata); to start from weights only, use --init");
  json state;
  try {
    state = json::parse(it->second);
  } catch (const std::exception& e) {
    detail::fail<IOError>(op, "\"", path, "\": unreadable run state: ", e.what());
  }
  try {
    CIUIC_CHECK(state.at("version").get<int>() == 1, IOError, op, "\"", path, "\" has run-state version ",
                state.at("version").dump(), "; expected 1");
    const json want = run_signature(o, model.config(), world), got = state.at("signature");
    CIUIC_CHECK(want == got, ValueError, op, "\"", path, "\" was saved by a run with ", got.dump(),
                "; this run has ", want.dump(), " (the model, precision, ranks, batch, seq and grad-accum must match)");
    std::map<std::string, Tensor> tensors;
    for (auto& [name, t] : load_safetensors(path)) tensors.emplace(name, t);
    nn::StateDict msd;
    for (auto entries = model.state_dict(); const auto& [name, t] : entries.items()) {
      auto f = tensors.find("model/" + name);
      CIUIC_CHECK(f != tensors.end(), IOError, op, "\"", path, "\" has no tensor model/", name);
      msd.insert(name, f->second);
    }
    model.load_state_dict(msd);
    optim::OptimizerStateDict sd;
    sd.optimizer = state.at("optimizer").at("name").get<std::string>();
    const auto& groups = state.at("optimizer").at("groups");
    for (std::size_t g = 0; g < groups.size(); ++g) {
      optim::OptimizerStateDict::Group grp;
      for (const auto& [k, v] : groups[g].at("hyperparameters").items()) grp.hyperparameters.insert(k, v.get<double>());
      const auto& steps = groups[g].at("steps");
      for (std::size_t i = 0; i < steps.size(); ++i) {
        optim::ParamState ps;
        ps.step = steps[i].get<std::int64_t>();
        const std::string prefix = "optim/" + std::to_string(g) + "/" + std::to_string(i) + "/";
        for (const auto& [name, t] : tensors)
          if (name.rfind(prefix, 0) == 0) ps.buffers.insert(name.substr(prefix.size()), t);
        grp.params.push_back(std::move(ps));
      }
      sd.groups.push_back(std::move(grp));
    }
    opt.load_state_dict(sd);
    amp::LossScalerState ss = scaler.state_dict();
    ss.scale = state.at("scaler").at("scale").get<double>();
    ss.growth_tracker = state.at("scaler").at("growth_tracker").get<std::int64_t>();
    ss.overflow_streak = state.at("scaler").at("overflow_streak").get<std::int64_t>();
    scaler.load_state_dict(ss);
    Generator& gen = default_generator();
    gen.seed = state.at("rng").at("seed").get<std::uint64_t>();
    gen.offset = state.at("rng").at("offset").get<std::uint64_t>();
    RunState st;
    st.step = state.at("step").get<std::int64_t>();
    st.data.segment = state.at("data").at("segment").get<std::int64_t>();
    st.data.offset = state.at("data").at("offset").get<std::int64_t>();
    st.data.epoch = state.at("data").at("epoch").get<std::int64_t>();
    return st;
  } catch (const json::exception& e) {
    detail::fail<IOError>(op, "\"", path, "\": malformed run state: ", e.what());
  }
}

// The mean of v over the ranks (v itself without a communicator).
double rank_mean(const comm::CommunicatorPtr& comm, double v) {
  if (!comm || comm->size() == 1) return v;
  Tensor t = full({1}, v, TensorOptions(DType::f64).device(comm->device()));
  comm->allreduce(t, comm::ReduceOp::sum)->wait();
  return t.item() / static_cast<double>(comm->size());
}

double evaluate(GPT2& model, DataLoader& loader, std::int64_t batches, Device dev) {
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  loader.reset();
  double total = 0;
  for (std::int64_t i = 0; i < batches; ++i) {
    auto b = loader.next(dev);
    total += model.loss(b.idx, b.targets).item();
  }
  model.train(was_training);
  return total / static_cast<double>(batches);
}

}  // namespace

TrainResult train_gpt2(const TrainOptions& o, std::FILE* out, comm::CommunicatorPtr comm) {
  const bool distributed = comm && comm->size() > 1;
  const int rank = distributed ? comm->rank() : 0, world = distributed ? comm->size() : 1;
  if (rank != 0) out = nullptr;
  auto say = [&](const char* fmt, auto... args) {
    if (out) std::fprintf(out, fmt, args...);
  };
  const Device dev = parse_device(o.device);
  const DType dtype = precision_dtype(o.precision);
  manual_seed(o.seed);
  Generator init_gen{o.seed, 0};

  // ---- model
  GPT2Config cfg = GPT2Config::named(o.model);
  cfg.dropout = o.dropout;
  cfg.checkpoint = parse_checkpoint(o.checkpoint);
  cfg.dtype = dtype;
  std::shared_ptr<GPT2> model;
  std::string origin = "random init";
  if (o.init == "random") {
    model = std::make_shared<GPT2>(cfg, &init_gen);
  } else if (is_llmc_model_file(o.init)) {
    model = gpt2_from_llmc(o.init, cfg);
    origin = "llm.c file " + o.init;
  } else {
    CIUIC_CHECK(std::filesystem::exists(o.init), IOError, "train_gpt2", "--init \"", o.init,
                "\" is neither \"random\" nor an existing file");
    model = gpt2_from_hf_safetensors(o.init, cfg);
    origin = "safetensors " + o.init;
  }
  const GPT2Config& mc = model->config();
  CIUIC_CHECK(o.seq <= mc.max_seq_len, ValueError, "train_gpt2", "--seq ", o.seq, " exceeds the model's max_seq_len ",
              mc.max_seq_len);
  if (dev.is_cuda()) model->to(dev);
  model->train();

  // ---- data
  TokenDataset train_data = TokenDataset::from_spec(o.data), val_data;
  if (o.val_data.empty()) std::tie(train_data, val_data) = train_data.split_tail(0.1);
  else val_data = TokenDataset::from_spec(o.val_data);
  DataLoader loader(train_data, o.batch, o.seq, rank, world);
  loader.set_vocab_limit(mc.vocab_size);
  std::unique_ptr<DataLoader> val_loader;
  std::string no_validation;
  if (o.val_batches > 0) {
    try {
      val_loader = std::make_unique<DataLoader>(val_data, o.batch, o.seq, rank, world);
      val_loader->set_vocab_limit(mc.vocab_size);
    } catch (const ValueError& e) {
      // Too little held-out text for one batch (the embedded corpus at GPT-2 shapes): train without it, and say so.
      no_validation = e.what();
    }
  }
  std::vector<std::string> vocab;
  if (!o.tokenizer.empty()) vocab = read_llmc_tokenizer(o.tokenizer);

  // ---- optimizer: decay on matrices and embeddings, none on biases and LayerNorm gains
  std::vector<Tensor> decay, no_decay;
  for (auto entries = model->named_parameters(); const auto& [name, p] : entries.items()) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  optim::AdamW opt(decay, optim::AdamWOptions(o.lr).betas(0.9, 0.95).eps(1e-8).weight_decay(o.weight_decay));
  opt.add_param_group(no_decay).weight_decay = 0.0;
  const std::int64_t warmup = o.warmup >= 0 ? std::min(o.warmup, o.steps) : o.steps / 10;
  optim::CosineWithWarmup schedule(opt, warmup, o.steps, o.min_lr_ratio);
  amp::LossScaler scaler(amp::LossScalerOptions().enabled(dtype == DType::f16));

  // Data parallel: after the model is final (dtype, device), before any resume (every rank loads the same file).
  std::unique_ptr<comm::BucketedReducer> ddp;
  if (distributed) ddp = std::make_unique<comm::BucketedReducer>(model, comm);

  RunState st;
  if (!o.resume.empty()) {
    st = load_run(o.resume, o, *model, opt, scaler, world);
    loader.set_position(st.data);
    say("resumed %s at step %lld\n", o.resume.c_str(), static_cast<long long>(st.step));
  }
  const std::int64_t last = o.stop_at > 0 ? o.stop_at : o.steps;
  CIUIC_CHECK(st.step <= last, ValueError, "train_gpt2", "the saved run is at step ", st.step, "; nothing to do up to ",
              last);

  const std::int64_t tokens_per_step = o.batch * o.seq * o.grad_accum * world;
  const double flops_per_step = model->flops_per_token(o.seq) * static_cast<double>(tokens_per_step);
  double peak = o.peak_tflops * 1e12;
  if (peak == 0 && dev.is_cuda()) peak = 989.4e12;  // H100 / H200 SXM dense FP16/BF16 tensor-core peak
  TrainResult res;
  res.parameters = model->num_parameters();
  res.model_str = mc.str();
  say("GPT-2 %s, %lld parameters, %s, %s on %s, checkpoint %s\n", mc.str().c_str(),
      static_cast<long long>(res.parameters), origin.c_str(), o.precision.c_str(), dev.str().c_str(),
      mc.checkpoint.str().c_str());
  if (dev.is_cpu()) say("CPU GEMM: %s\n", cpu_blas_info().c_str());
  say("data: %s; val: %s\n", train_data.describe().c_str(), val_data.describe().c_str());
  if (!no_validation.empty()) say("no validation: %s\n", no_validation.c_str());
  if (distributed) say("data parallel: %d ranks (%s), --batch %lld per rank\n", world,
                       comm->backend() == comm::Backend::gloo ? "Gloo" : "NCCL", static_cast<long long>(o.batch));
  say("batch %lld x seq %lld x grad-accum %lld = %lld tokens/step, %lld steps, AdamW lr %.2e (warm-up %lld, cosine "
      "to %.2g x), wd %.2g, clip %.2g\n",
      static_cast<long long>(o.batch * world), static_cast<long long>(o.seq), static_cast<long long>(o.grad_accum),
      static_cast<long long>(tokens_per_step), static_cast<long long>(o.steps), o.lr, static_cast<long long>(warmup),
      o.min_lr_ratio, o.weight_decay, o.clip);

  auto validate = [&](std::int64_t step) {
    if (!val_loader) return;
    double v = rank_mean(comm, evaluate(*model, *val_loader, o.val_batches, dev));
    res.val_loss.emplace_back(step, v);
    say("val loss %.4f\n", v);
  };
  auto sample = [&](std::int64_t step) {
    if (!out) return;  // only the printing rank generates
    const std::int64_t prompt = mc.vocab_size > ByteTokenizer::kEndOfText ? ByteTokenizer::kEndOfText
                                                                           : ByteTokenizer::token_of_byte('\n');
    const std::int64_t n = std::min<std::int64_t>(o.sample_tokens, mc.max_seq_len - 1);
    auto toks = model->generate({prompt}, n, 1.0, 40, o.seed + static_cast<std::uint64_t>(step));
    toks.erase(toks.begin());
    say("generating:\n---\n%s\n---\n", decode(toks, vocab).c_str());
  };

  allocator_of(dev).reset_peak();
  std::vector<double> times;
  for (std::int64_t step = st.step + 1; step <= last; ++step) {
    auto t0 = std::chrono::steady_clock::now();
    schedule.set_step(step);  // lr of this step: warm-up from lr/warmup, then cosine
    opt.zero_grad(/*set_to_none=*/!ddp);  // data parallel: keep the gradients as views into the reducer's buckets
    Tensor loss_sum;  // on the device: read back once per step, not per micro-step
    for (std::int64_t micro = 0; micro < o.grad_accum; ++micro) {
      // Data parallel: only the last micro-step's backward communicates (the accumulated sum).
      std::optional<comm::BucketedReducer::NoSync> local;
      if (ddp && micro + 1 < o.grad_accum) local.emplace(*ddp);
      auto b = loader.next(dev);
      Tensor loss = model->loss(b.idx, b.targets);
      if (ddp) ddp->prepare_for_backward({loss});
      Tensor scaled = scaler.scale(o.grad_accum > 1 ? div(loss, static_cast<double>(o.grad_accum)) : loss);
      scaled.backward();
      loss_sum = loss_sum.defined() ? add(loss_sum, loss.detach()) : loss.detach();
    }
    scaler.unscale_(opt);
    // Nothing is read back until the whole step is queued: the norm, the scale, the skip
    // flag and the loss stay on the device and come back in one read below.
    Tensor norm = optim::clip_grad_norm_tensor_(opt, o.clip > 0 ? o.clip : optim::kInfNorm);
    Tensor scale = scaler.scale_tensor();
    scaler.step(opt);
    Tensor skipped = scaler.step_skipped_tensor();
    scaler.update();
    StepRecord r;
    r.step = step;
    r.lr = schedule.get_lr(0);
    Tensor loss_mean = div(loss_sum.to(DType::f64), static_cast<double>(o.grad_accum)).reshape({1});
    if (comm && comm->size() > 1) {  // the mean over ranks, on the device
      comm->allreduce(loss_mean, comm::ReduceOp::sum)->wait();
      loss_mean = div(loss_mean, static_cast<double>(comm->size()));
    }
    const std::vector<double> read =
        cat({loss_mean, norm.to(DType::f64).reshape({1}), scale.to(DType::f64).reshape({1}),
             skipped.to(DType::f64).reshape({1})})
            .to_vector<double>();  // the step's one host read
    r.loss = read[0];
    r.norm = read[1];
    r.scale = read[2];
    r.skipped = read[3] != 0.0;
    r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    r.tokens_per_s = static_cast<double>(tokens_per_step) / (r.ms / 1e3);
    times.push_back(r.ms);
    res.steps.push_back(r);
    st.step = step;
    if (!o.quiet && out) {
      std::string line = "step " + std::to_string(step) + "/" + std::to_string(o.steps);
      char buf[256];
      std::snprintf(buf, sizeof buf, " | loss %.4f | norm %.4f | lr %.2e", r.loss, r.norm, r.lr);
      line += buf;
      if (scaler.is_enabled()) {
        std::snprintf(buf, sizeof buf, " | scale %g", r.scale);
        line += buf;
      }
      std::snprintf(buf, sizeof buf, " | %.1f ms | %s tok/s", r.ms, si(r.tokens_per_s).c_str());
      line += buf;
      if (peak > 0) {
        std::snprintf(buf, sizeof buf, " | MFU %.0f%%", 100.0 * flops_per_step / (r.ms / 1e3) / peak);
        line += buf;
      } else {
        line += " | MFU n/a";
      }
      line += " | mem " + mem_str(static_cast<double>(allocator_of(dev).stats().peak_allocated_bytes));
      if (r.skipped) line += " | skipped (inf/nan)";
      std::fprintf(out, "%s\n", line.c_str());
      std::fflush(out);
    }
    if (o.val_every > 0 && step % o.val_every == 0 && step != last) validate(step);
    if (o.sample_every > 0 && step % o.sample_every == 0) sample(step);
    if (o.save_every > 0 && step % o.save_every == 0 && step != last && rank == 0) {
      st.data = loader.position();
      save_run(o.save, o, *model, opt, scaler, st, world);
    }
  }
  if (!res.steps.empty()) validate(st.step);
  st.data = loader.position();
  if (!o.save.empty() && rank == 0) {
    save_run(o.save, o, *model, opt, scaler, st, world);
    say("saved %s (step %lld)\n", o.save.c_str(), static_cast<long long>(st.step));
  }

  // ---- summary: the first step (allocations, planning) is left out of the median when there are others
  std::vector<double> steady(times.size() > 1 ? times.begin() + 1 : times.begin(), times.end());
  res.median_ms = median(steady);
  res.tokens_per_s = res.median_ms > 0 ? static_cast<double>(tokens_per_step) / (res.median_ms / 1e3) : 0;
  res.mfu = peak > 0 && res.median_ms > 0 ? flops_per_step / (res.median_ms / 1e3) / peak : -1;
  res.peak_memory_bytes = static_cast<double>(allocator_of(dev).stats().peak_allocated_bytes);
  if (!res.steps.empty()) {
    std::string mfu = res.mfu >= 0 ? std::to_string(static_cast<int>(std::lround(100 * res.mfu))) + "%" : "n/a";
    say("summary: %zu steps | loss %.4f -> %.4f | median %.1f ms/step | %s tok/s | MFU %s | peak mem %s\n",
        res.steps.size(), res.steps.front().loss, res.steps.back().loss, res.median_ms, si(res.tokens_per_s).c_str(),
        mfu.c_str(), mem_str(res.peak_memory_bytes).c_str());
  }
  if (!o.json.empty() && rank == 0) {
    json steps = json::array();
    for (const auto& r : res.steps)
      steps.push_back({{"step", r.step}, {"loss", r.loss}, {"norm", r.norm}, {"lr", r.lr}, {"scale", r.scale},
                       {"ms", r.ms}, {"tokens_per_s", r.tokens_per_s}, {"skipped", r.skipped}});
    json val = json::array();
    for (const auto& [s, v] : res.val_loss) val.push_back({{"step", s}, {"loss", v}});
    json j = {{"model", mc.str()}, {"parameters", res.parameters}, {"init", origin}, {"precision", o.precision},
              {"device", dev.str()}, {"checkpoint", mc.checkpoint.str()}, {"batch", o.batch}, {"seq", o.seq},
              {"grad_accum", o.grad_accum}, {"steps", steps}, {"val", val},
              {"summary", {{"median_ms", res.median_ms}, {"tokens_per_s", res.tokens_per_s},
                           {"mfu", res.mfu >= 0 ? json(res.mfu) : json(nullptr)},
                           {"peak_memory_bytes", res.peak_memory_bytes}}}};
    std::ofstream f(o.json);
    CIUIC_CHECK(f.good(), IOError, "train_gpt2", "cannot write --json \"", o.json, "\"");
    f << j.dump(2) << "\n";
  }
  return res;
}

}  // namespace ciuic::models
