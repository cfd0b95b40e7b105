#include "ciuic/models/gpt2_weights.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include <ciuic/io.h>

namespace ciuic::models {

namespace {

constexpr std::int32_t kLlmcModelMagic = 20240326;
constexpr std::size_t kHeaderInts = 256;
constexpr std::size_t kHeaderBytes = kHeaderInts * sizeof(std::int32_t);

std::vector<char> read_file(const std::string& path, const char* op) {
  std::ifstream f(path, std::ios::binary);
  CIUIC_CHECK(f.good(), IOError, op, "cannot open \"", path, "\"");
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CIUIC_CHECK(!f.bad(), IOError, op, "read error in \"", path, "\"");
  return bytes;
}

// One llm.c tensor: its name in llm.c, and per layer (or once) our parameter name.
struct LlmcTensor {
  const char* llmc;
  const char* ours;  // with "{}" standing for "transformer.h.<i>." when per-layer
  bool per_layer;
};

// llm.c's order (train_gpt2.c, fill_in_parameter_sizes).
const LlmcTensor kLlmcOrder[] = {
    {"wte", "transformer.wte.weight", false},      {"wpe", "transformer.wpe.weight", false},
    {"ln1w", "ln_1.weight", true},                 {"ln1b", "ln_1.bias", true},
    {"qkvw", "attn.c_attn.weight", true},          {"qkvb", "attn.c_attn.bias", true},
    {"attprojw", "attn.c_proj.weight", true},      {"attprojb", "attn.c_proj.bias", true},
    {"ln2w", "ln_2.weight", true},                 {"ln2b", "ln_2.bias", true},
    {"fcw", "mlp.c_fc.weight", true},              {"fcb", "mlp.c_fc.bias", true},
    {"fcprojw", "mlp.c_proj.weight", true},        {"fcprojb", "mlp.c_proj.bias", true},
    {"lnfw", "transformer.ln_f.weight", false},    {"lnfb", "transformer.ln_f.bias", false},
};

std::string layer_name(std::int64_t i, const char* suffix) {
  return "transformer.h." + std::to_string(i) + "." + suffix;
}

// The shape of one tensor (one layer's slice for per-layer ones) in llm.c's file, whose
// wte has `vp` rows.
Shape llmc_shape(const GPT2Config& c, const std::string& llmc, std::int64_t vp) {
  const std::int64_t C = c.channels;
  if (llmc == "wte") return {vp, C};
  if (llmc == "wpe") return {c.max_seq_len, C};
  if (llmc == "qkvw") return {3 * C, C};
  if (llmc == "qkvb") return {3 * C};
  if (llmc == "attprojw") return {C, C};
  if (llmc == "fcw") return {4 * C, C};
  if (llmc == "fcb") return {4 * C};
  if (llmc == "fcprojw") return {C, 4 * C};
  return {C};  // layer norms, attprojb, fcprojb
}

struct LlmcHeader {
  GPT2Config cfg;
  int version = 0;
  std::int64_t padded = 0;
};

LlmcHeader parse_llmc_header(const std::vector<char>& bytes, const std::string& path) {
  const char* op = "load_llmc";
  CIUIC_CHECK(bytes.size() >= kHeaderBytes, IOError, op, "\"", path, "\" has ", bytes.size(),
              " bytes; an llm.c model file starts with a ", kHeaderBytes, "-byte header (256 x int32)");
  std::int32_t h[kHeaderInts];
  std::memcpy(h, bytes.data(), kHeaderBytes);
  CIUIC_CHECK(h[0] == kLlmcModelMagic, IOError, op, "\"", path, "\" has magic ", h[0], "; expected ", kLlmcModelMagic,
              " (an llm.c GPT-2 model file; token shards have 20240520)");
  CIUIC_CHECK(h[1] == 3 || h[1] == 5, IOError, op, "\"", path, "\" has version ", h[1],
              "; expected 3 (fp32) or 5 (bf16) (older llm.c files: re-export them with llm.c's train_gpt2.py)");
  LlmcHeader out;
  out.version = h[1];
  out.cfg.max_seq_len = h[2];
  out.cfg.vocab_size = h[3];
  out.cfg.num_layers = h[4];
  out.cfg.num_heads = h[5];
  out.cfg.channels = h[6];
  out.padded = h[7];
  const char* names[] = {"max_seq_len", "vocab_size", "num_layers", "num_heads", "channels", "padded_vocab_size"};
  for (int i = 2; i < 8; ++i)
    CIUIC_CHECK(h[i] > 0 && h[i] <= (1 << 24), IOError, op, "\"", path, "\" header field ", names[i - 2], " = ", h[i],
                " is out of range (1 .. 2^24)");
  CIUIC_CHECK(out.cfg.channels % out.cfg.num_heads == 0, IOError, op, "\"", path, "\" has channels ",
              out.cfg.channels, " not divisible by num_heads ", out.cfg.num_heads);
  CIUIC_CHECK(out.padded >= out.cfg.vocab_size, IOError, op, "\"", path, "\" has padded_vocab_size ", out.padded,
              " < vocab_size ", out.cfg.vocab_size);
  return out;
}

std::int64_t llmc_param_count(const GPT2Config& c, std::int64_t vp) {
  std::int64_t n = 0;
  for (const auto& t : kLlmcOrder) n += shape_numel(llmc_shape(c, t.llmc, vp)) * (t.per_layer ? c.num_layers : 1);
  return n;
}

void check_same_shape(const GPT2Config& file, const GPT2Config& model, const std::string& path, const char* op) {
  CIUIC_CHECK(file.max_seq_len == model.max_seq_len && file.vocab_size == model.vocab_size &&
                  file.num_layers == model.num_layers && file.num_heads == model.num_heads &&
                  file.channels == model.channels,
              ValueError, op, "\"", path, "\" holds a model of shape ", file.str(), "; the model is ", model.str());
}

// Copies src into the model's parameter `name` (conversion by copy_); for wte only
// the first V rows come from src and the padding rows become zero.
void assign(GPT2& model, const nn::StateDict& params, const std::string& name, const Tensor& src,
            const std::string& path, const char* op) {
  const Tensor* dst = params.find(name);
  CIUIC_CHECK(dst != nullptr, ValueError, op, "model has no parameter ", name);
  NoGradGuard ng;
  if (name == "transformer.wte.weight") {
    const std::int64_t V = model.config().vocab_size;
    CIUIC_CHECK(src.dim() == 2 && src.size(0) >= V && src.size(1) == dst->size(1), IOError, op, "\"", path, "\": ",
                name, " is ", shape_str(src.shape()), "; expected at least [", V, ", ", dst->size(1), "]");
    Tensor d = *dst;
    d.narrow(0, 0, V).copy_(src.narrow(0, 0, V));
    if (d.size(0) > V) d.narrow(0, V, d.size(0) - V).zero_();
    return;
  }
  CIUIC_CHECK(src.shape() == dst->shape(), IOError, op, "\"", path, "\": ", name, " is ", shape_str(src.shape()),
              "; expected ", shape_str(dst->shape()));
  Tensor d = *dst;
  d.copy_(src);
}

}  // namespace

bool is_llmc_model_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::int32_t magic = 0;
  if (!f.read(reinterpret_cast<char*>(&magic), sizeof magic)) return false;
  return magic == kLlmcModelMagic;
}

GPT2Config read_llmc_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CIUIC_CHECK(f.good(), IOError, "load_llmc", "cannot open \"", path, "\"");
  std::vector<char> head(kHeaderBytes);
  f.read(head.data(), static_cast<std::streamsize>(kHeaderBytes));
  head.resize(static_cast<std::size_t>(f.gcount()));
  return parse_llmc_header(head, path).cfg;
}

void load_llmc(GPT2& model, const std::string& path) {
  const char* op = "load_llmc";
  std::vector<char> bytes = read_file(path, op);
  LlmcHeader h = parse_llmc_header(bytes, path);
  check_same_shape(h.cfg, model.config(), path, op);
  const std::size_t elt = h.version == 3 ? 4 : 2;
  const std::int64_t n = llmc_param_count(h.cfg, h.padded);
  const std::size_t expected = kHeaderBytes + static_cast<std::size_t>(n) * elt;
  CIUIC_CHECK(bytes.size() == expected, IOError, op, "\"", path, "\" has ", bytes.size(), " bytes; a version ",
              h.version, " file of shape ", h.cfg.str(), " (padded vocab ", h.padded, ") has ", expected, " (", n,
              " parameters of ", elt, " bytes after the header)");
  const DType dt = h.version == 3 ? DType::f32 : DType::bf16;
  auto params = model.named_parameters();
  std::size_t offset = kHeaderBytes;
  for (const auto& t : kLlmcOrder) {
    Shape s = llmc_shape(h.cfg, t.llmc, h.padded);
    const std::size_t nbytes = static_cast<std::size_t>(shape_numel(s)) * elt;
    const std::int64_t reps = t.per_layer ? h.cfg.num_layers : 1;
    for (std::int64_t i = 0; i < reps; ++i) {
      Tensor src = from_blob(bytes.data() + offset, s, dt);
      assign(model, params, t.per_layer ? layer_name(i, t.ours) : std::string(t.ours), src, path, op);
      offset += nbytes;
    }
  }
}

std::shared_ptr<GPT2> gpt2_from_llmc(const std::string& path, const GPT2Config& base) {
  GPT2Config f = read_llmc_config(path), c = base;
  c.max_seq_len = f.max_seq_len;
  c.vocab_size = f.vocab_size;
  c.num_layers = f.num_layers;
  c.num_heads = f.num_heads;
  c.channels = f.channels;
  auto model = std::make_shared<GPT2>(c);
  load_llmc(*model, path);
  return model;
}

void save_llmc(const GPT2& model, const std::string& path, int version) {
  const char* op = "save_llmc";
  CIUIC_CHECK(version == 3 || version == 5, ValueError, op, "version ", version, "; expected 3 (fp32) or 5 (bf16)");
  const GPT2Config& c = model.config();
  std::int32_t h[kHeaderInts] = {};
  h[0] = kLlmcModelMagic;
  h[1] = version;
  h[2] = static_cast<std::int32_t>(c.max_seq_len);
  h[3] = static_cast<std::int32_t>(c.vocab_size);
  h[4] = static_cast<std::int32_t>(c.num_layers);
  h[5] = static_cast<std::int32_t>(c.num_heads);
  h[6] = static_cast<std::int32_t>(c.channels);
  h[7] = static_cast<std::int32_t>(c.padded_vocab_size());
  const DType dt = version == 3 ? DType::f32 : DType::bf16;
  auto params = model.named_parameters();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    CIUIC_CHECK(f.good(), IOError, op, "cannot write \"", tmp, "\"");
    f.write(reinterpret_cast<const char*>(h), kHeaderBytes);
    for (const auto& t : kLlmcOrder) {
      const std::int64_t reps = t.per_layer ? c.num_layers : 1;
      for (std::int64_t i = 0; i < reps; ++i) {
        const std::string name = t.per_layer ? layer_name(i, t.ours) : std::string(t.ours);
        auto bytes = detail::host_bytes(params.at(name), dt);
        f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
      }
    }
    f.flush();
    CIUIC_CHECK(f.good(), IOError, op, "write error on \"", tmp, "\"");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  CIUIC_CHECK(!ec, IOError, op, "cannot rename \"", tmp, "\" to \"", path, "\": ", ec.message());
}

// ---------------------------------------------------------------- Hugging Face
namespace {

bool is_conv1d(const std::string& suffix) {
  return suffix == "attn.c_attn.weight" || suffix == "attn.c_proj.weight" || suffix == "mlp.c_fc.weight" ||
         suffix == "mlp.c_proj.weight";
}

const char* kLayerSuffixes[] = {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                                "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                                "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};

struct HFFile {
  std::map<std::string, Tensor> tensors;  // names without "transformer.", buffers dropped
  GPT2Config cfg;
};

std::int64_t default_heads(std::int64_t C) {
  switch (C) {
    case 768: return 12;
    case 1024: return 16;
    case 1280: return 20;
    case 1600: return 25;
    default: return 0;
  }
}

HFFile read_hf(const std::string& path) {
  const char* op = "load_hf_safetensors";
  HFFile out;
  NamedTensors all = load_safetensors(path);  // IOError for malformed files
  Metadata meta = load_safetensors_metadata(path);
  for (auto& [raw, t] : all) {
    std::string name = raw.rfind("transformer.", 0) == 0 ? raw.substr(12) : raw;
    const bool mask_buffer = name.size() > 10 && (name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias"));
    if (mask_buffer || name == "lm_head.weight") continue;  // causal-mask buffers and the tied output layer
    CIUIC_CHECK(is_floating(t.dtype()), IOError, op, "\"", path, "\": ", raw, " is ", dtype_name(t.dtype()),
                "; expected a floating tensor");
    out.tensors.emplace(name, t);
  }
  auto need = [&](const std::string& name) -> const Tensor& {
    auto it = out.tensors.find(name);
    CIUIC_CHECK(it != out.tensors.end(), IOError, op, "\"", path, "\" has no tensor ", name,
                " (nor transformer.", name, "); expected a Hugging Face GPT-2 checkpoint");
    return it->second;
  };
  const Tensor& wte = need("wte.weight");
  const Tensor& wpe = need("wpe.weight");
  CIUIC_CHECK(wte.dim() == 2 && wpe.dim() == 2 && wte.size(1) == wpe.size(1), IOError, op, "\"", path,
              "\": wte ", shape_str(wte.shape()), " and wpe ", shape_str(wpe.shape()),
              " are not (V, C) and (maxT, C)");
  GPT2Config& c = out.cfg;
  c.vocab_size = wte.size(0);
  c.channels = wte.size(1);
  c.max_seq_len = wpe.size(0);
  std::int64_t L = 0;
  while (out.tensors.count("h." + std::to_string(L) + ".ln_1.weight")) ++L;
  CIUIC_CHECK(L > 0, IOError, op, "\"", path, "\" has no layer h.0.*; expected a Hugging Face GPT-2 checkpoint");
  c.num_layers = L;
  std::int64_t heads = 0;
  if (auto it = meta.find("n_head"); it != meta.end()) heads = std::atoll(it->second.c_str());
  if (heads == 0) {
    auto cfg_json = std::filesystem::path(path).parent_path() / "config.json";
    if (std::filesystem::exists(cfg_json)) {
      try {
        std::ifstream f(cfg_json);
        auto j = nlohmann::json::parse(f);
        if (j.contains("n_head")) heads = j["n_head"].get<std::int64_t>();
      } catch (const std::exception& e) {
        detail::fail<IOError>(op, "cannot read n_head from \"", cfg_json.string(), "\": ", e.what());
      }
    }
  }
  if (heads == 0) heads = default_heads(c.channels);
  CIUIC_CHECK(heads > 0 && c.channels % heads == 0, IOError, op, "\"", path, "\": the number of heads for C = ",
              c.channels, " is unknown (no n_head in its metadata or a config.json beside it)");
  c.num_heads = heads;
  // Every expected tensor present, nothing unknown.
  std::set<std::string> expected{"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"};
  for (std::int64_t i = 0; i < L; ++i)
    for (const char* s : kLayerSuffixes) expected.insert("h." + std::to_string(i) + "." + s);
  for (const auto& e : expected) need(e);
  for (const auto& [name, t] : out.tensors)
    CIUIC_CHECK(expected.count(name), IOError, op, "\"", path, "\" has an unexpected tensor ", name,
                " for a GPT-2 of ", L, " layers");
  return out;
}

void assign_hf(GPT2& model, const HFFile& file, const std::string& path) {
  const char* op = "load_hf_safetensors";
  check_same_shape(file.cfg, model.config(), path, op);
  auto params = model.named_parameters();
  for (const auto& [name, t] : file.tensors) {
    const std::size_t dot = name.find('.', 2);
    const std::string suffix = name.rfind("h.", 0) == 0 ? name.substr(dot + 1) : name;
    assign(model, params, "transformer." + name, is_conv1d(suffix) ? t.t() : t, path, op);
  }
}

}  // namespace

GPT2Config read_hf_config(const std::string& path) { return read_hf(path).cfg; }

void load_hf_safetensors(GPT2& model, const std::string& path) { assign_hf(model, read_hf(path), path); }

std::shared_ptr<GPT2> gpt2_from_hf_safetensors(const std::string& path, const GPT2Config& base) {
  HFFile file = read_hf(path);
  GPT2Config c = base;
  c.max_seq_len = file.cfg.max_seq_len;
  c.vocab_size = file.cfg.vocab_size;
  c.num_layers = file.cfg.num_layers;
  c.num_heads = file.cfg.num_heads;
  c.channels = file.cfg.channels;
  auto model = std::make_shared<GPT2>(c);
  assign_hf(*model, file, path);
  return model;
}

void save_hf_safetensors(const GPT2& model, const std::string& path) {
  const GPT2Config& c = model.config();
  NamedTensors out;
  for (auto entries = model.named_parameters(); const auto& [name, p] : entries.items()) {
    Tensor t = p.detach().to(Device::cpu(), DType::f32);
    const std::string rel = name.substr(12);  // without "transformer."
    const std::string suffix = rel.rfind("h.", 0) == 0 ? rel.substr(rel.find('.', 2) + 1) : rel;
    if (rel == "wte.weight") t = t.narrow(0, 0, c.vocab_size);
    if (is_conv1d(suffix)) t = t.t();
    out.emplace_back(name, t.contiguous());
  }
  save_safetensors(path, out, {{"format", "pt"}, {"n_head", std::to_string(c.num_heads)}});
}

}  // namespace ciuic::models
