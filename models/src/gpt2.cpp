#include "ciuic/models/gpt2.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <tuple>

namespace ciuic::models {

// ---------------------------------------------------------------- config
void GPT2Config::validate() const {
  CIUIC_CHECK(vocab_size > 0, ValueError, "GPT2Config", "vocab_size ", vocab_size, " must be positive");
  CIUIC_CHECK(max_seq_len > 0, ValueError, "GPT2Config", "max_seq_len ", max_seq_len, " must be positive");
  CIUIC_CHECK(num_layers > 0, ValueError, "GPT2Config", "num_layers ", num_layers, " must be positive");
  CIUIC_CHECK(num_heads > 0 && channels > 0 && channels % num_heads == 0, ValueError, "GPT2Config", "channels ",
              channels, " must be a positive multiple of num_heads ", num_heads);
  CIUIC_CHECK(dropout >= 0.0 && dropout < 1.0, ValueError, "GPT2Config", "dropout ", dropout, " must be in [0, 1)");
  CIUIC_CHECK(dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16 || dtype == DType::f64, DTypeError,
              "GPT2Config", "dtype ", dtype_name(dtype), " is not a floating parameter dtype (f32, f16, bf16, f64)");
}

std::string GPT2Config::str() const {
  std::ostringstream os;
  os << "L=" << num_layers << " H=" << num_heads << " C=" << channels << " V=" << vocab_size << " (padded "
     << padded_vocab_size() << ") T=" << max_seq_len;
  return os.str();
}

namespace {
GPT2Config shape(std::int64_t L, std::int64_t H, std::int64_t C) {
  GPT2Config c;
  c.num_layers = L;
  c.num_heads = H;
  c.channels = C;
  return c;
}
}  // namespace

GPT2Config GPT2Config::d12() { return shape(12, 12, 768); }
GPT2Config GPT2Config::d24() { return shape(24, 16, 1024); }
GPT2Config GPT2Config::d36() { return shape(36, 20, 1280); }
GPT2Config GPT2Config::d48() { return shape(48, 25, 1600); }
GPT2Config GPT2Config::tiny() {
  GPT2Config c = shape(4, 4, 128);
  c.vocab_size = 256;
  c.max_seq_len = 256;
  return c;
}

GPT2Config GPT2Config::named(const std::string& name) {
  if (name == "d12" || name == "gpt2") return d12();
  if (name == "d24" || name == "gpt2-medium") return d24();
  if (name == "d36" || name == "gpt2-large") return d36();
  if (name == "d48" || name == "gpt2-xl") return d48();
  if (name == "tiny") return tiny();
  detail::fail<ValueError>("GPT2Config::named", "unknown model \"", name,
                           "\"; expected d12, d24, d36, d48, tiny (or gpt2, gpt2-medium, gpt2-large, gpt2-xl)");
}

// ---------------------------------------------------------------- modules
namespace {
// Overwrites a Linear's weight with N(0, std) and its bias with zeros.
void init_linear(nn::Linear& l, double std, Generator* gen) {
  NoGradGuard ng;
  l.weight.copy_(normal(l.weight.shape(), 0.0, std, DType::f32, gen));
  if (l.bias.defined()) l.bias.zero_();
}
}  // namespace

GPT2Attention::GPT2Attention(const GPT2Config& cfg, Generator* gen)
    : Module("GPT2Attention"), channels(cfg.channels), heads(cfg.num_heads) {
  c_attn = register_module("c_attn", std::make_shared<nn::Linear>(channels, 3 * channels, true, gen));
  c_proj = register_module("c_proj", std::make_shared<nn::Linear>(channels, channels, true, gen));
  resid_dropout = register_module("resid_dropout", std::make_shared<nn::Dropout>(cfg.dropout));
  init_linear(*c_attn, 0.02, gen);
  init_linear(*c_proj, 0.02 / std::sqrt(2.0 * static_cast<double>(cfg.num_layers)), gen);
}

Tensor GPT2Attention::forward(const Tensor& x) {
  const std::int64_t B = x.size(0), T = x.size(1), C = channels, H = heads, D = C / H;
  auto qkv = split(c_attn->forward(x), C, 2);  // 3 x (B, T, C): q, k, v as llm.c and Hugging Face order them
  auto heads_of = [&](const Tensor& t) { return t.view({B, T, H, D}).transpose(1, 2); };  // (B, H, T, D)
  Tensor y = scaled_dot_product_attention(heads_of(qkv[0]), heads_of(qkv[1]), heads_of(qkv[2]), true);
  y = y.transpose(1, 2).reshape({B, T, C});
  return resid_dropout->forward(c_proj->forward(y));
}

Tensor GPT2Attention::forward_cached(const Tensor& x, Tensor& k_cache, Tensor& v_cache, std::int64_t pos) {
  const std::int64_t B = x.size(0), Tn = x.size(1), C = channels, H = heads, D = C / H;
  auto qkv = split(c_attn->forward(x), C, 2);
  auto heads_of = [&](const Tensor& t) { return t.view({B, Tn, H, D}).transpose(1, 2); };  // (B, H, Tn, D)
  k_cache.narrow(2, pos, Tn).copy_(heads_of(qkv[1]));
  v_cache.narrow(2, pos, Tn).copy_(heads_of(qkv[2]));
  Tensor k = k_cache.narrow(2, 0, pos + Tn), v = v_cache.narrow(2, 0, pos + Tn);  // (B, H, pos + Tn, D)
  // A prompt (pos == 0) attends causally within itself; a single new token attends to everything before it.
  Tensor y = scaled_dot_product_attention(heads_of(qkv[0]), k, v, /*causal=*/Tn > 1);
  y = y.transpose(1, 2).reshape({B, Tn, C});
  return c_proj->forward(y);
}

GPT2MLP::GPT2MLP(const GPT2Config& cfg, Generator* gen) : Module("GPT2MLP"), fused(cfg.fused) {
  c_fc = register_module("c_fc", std::make_shared<nn::Linear>(cfg.channels, 4 * cfg.channels, true, gen));
  c_proj = register_module("c_proj", std::make_shared<nn::Linear>(4 * cfg.channels, cfg.channels, true, gen));
  dropout = register_module("dropout", std::make_shared<nn::Dropout>(cfg.dropout));
  init_linear(*c_fc, 0.02, gen);
  init_linear(*c_proj, 0.02 / std::sqrt(2.0 * static_cast<double>(cfg.num_layers)), gen);
}

Tensor GPT2MLP::forward(const Tensor& x) {
  Tensor a = fused ? linear_gelu(x, c_fc->weight, c_fc->bias, GeluApprox::tanh)
                   : gelu(c_fc->forward(x), GeluApprox::tanh);
  return dropout->forward(c_proj->forward(a));
}

GPT2Block::GPT2Block(const GPT2Config& cfg, Generator* gen) : Module("GPT2Block"), fused(cfg.fused) {
  ln_1 = register_module("ln_1", std::make_shared<nn::LayerNorm>(cfg.channels));
  attn = register_module("attn", std::make_shared<GPT2Attention>(cfg, gen));
  ln_2 = register_module("ln_2", std::make_shared<nn::LayerNorm>(cfg.channels));
  mlp = register_module("mlp", std::make_shared<GPT2MLP>(cfg, gen));
}

std::pair<Tensor, Tensor> GPT2Block::forward_parts(const Tensor& ln1, const Tensor& x) {
  // (ln_2(h), h) with h = x + attn(ln1), the operands in the unfused order.
  auto [ln2, h] = add_layer_norm(x, attn->forward(ln1), ln_2->weight, ln_2->bias, ln_2->eps);
  return {h, mlp->forward(ln2)};
}

Tensor GPT2Block::forward(const Tensor& x) {
  if (fused) {
    auto [h, m] = forward_parts(ln_1->forward(x), x);
    return add(h, m);
  }
  Tensor h = add(x, attn->forward(ln_1->forward(x)));
  return add(h, mlp->forward(ln_2->forward(h)));
}

Tensor GPT2Block::forward_cached(const Tensor& x, Tensor& k_cache, Tensor& v_cache, std::int64_t pos) {
  Tensor a = attn->forward_cached(ln_1->forward(x), k_cache, v_cache, pos);
  if (fused) {
    auto [ln2, h] = add_layer_norm(x, a, ln_2->weight, ln_2->bias, ln_2->eps);
    return add(h, mlp->forward(ln2));
  }
  Tensor h = add(x, a);
  return add(h, mlp->forward(ln_2->forward(h)));
}

GPT2Transformer::GPT2Transformer(const GPT2Config& cfg, Generator* gen) : Module("GPT2Transformer") {
  wte = register_module("wte", std::make_shared<nn::Embedding>(cfg.padded_vocab_size(), cfg.channels, gen));
  wpe = register_module("wpe", std::make_shared<nn::Embedding>(cfg.max_seq_len, cfg.channels, gen));
  drop = register_module("drop", std::make_shared<nn::Dropout>(cfg.dropout));
  h = register_module("h", std::make_shared<nn::Sequential>());
  for (std::int64_t i = 0; i < cfg.num_layers; ++i) blocks.push_back(h->push_back(std::make_shared<GPT2Block>(cfg, gen)));
  ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(cfg.channels));
  NoGradGuard ng;
  wte->weight.copy_(normal(wte->weight.shape(), 0.0, 0.02, DType::f32, gen));
  if (cfg.padded_vocab_size() > cfg.vocab_size)  // padding rows: never a target, zero as llm.c writes them
    wte->weight.narrow(0, cfg.vocab_size, cfg.padded_vocab_size() - cfg.vocab_size).zero_();
  wpe->weight.copy_(normal(wpe->weight.shape(), 0.0, 0.02, DType::f32, gen));
}

// ---------------------------------------------------------------- GPT2
GPT2::GPT2(const GPT2Config& cfg, Generator* gen) : Module("GPT2"), cfg_(cfg) {
  cfg_.validate();
  transformer = register_module("transformer", std::make_shared<GPT2Transformer>(cfg_, gen));
  set_checkpoint(cfg_.checkpoint);
  if (cfg_.dtype != DType::f32) to(cfg_.dtype);
}

void GPT2::set_fused(bool fused) {
  cfg_.fused = fused;
  for (auto& b : transformer->blocks) {
    b->fused = fused;
    b->mlp->fused = fused;
  }
}

void GPT2::set_checkpoint(CheckpointPolicy policy) {
  cfg_.checkpoint = policy;
  std::vector<std::shared_ptr<nn::Module>> blocks(transformer->blocks.begin(), transformer->blocks.end());
  runner_ = std::make_unique<CheckpointedSequence>(blocks, policy);
}

Tensor GPT2::hidden(const Tensor& idx) {
  CIUIC_CHECK(idx.dim() == 2, ShapeError, "GPT2::forward", "idx is ", describe(idx), "; expected (B, T) token ids");
  const std::int64_t T = idx.size(1);
  CIUIC_CHECK(T >= 1 && T <= cfg_.max_seq_len, ShapeError, "GPT2::forward", "sequence length ", T,
              " is outside [1, max_seq_len = ", cfg_.max_seq_len, "]");
  Tensor pos = arange(T, TensorOptions(DType::i64).device(idx.device()));
  Tensor x = transformer->drop->forward(add(transformer->wte->forward(idx), transformer->wpe->forward(pos)));
  if (cfg_.checkpoint.kind == CheckpointKind::none || !grad_mode_enabled()) {
    if (cfg_.fused) {
      // As llm.c: block l's output add h + m is fused with the LayerNorm that reads it,
      // block l + 1's ln_1 (ln_f after the last block); ln carries that LayerNorm's output.
      const auto& bs = transformer->blocks;
      Tensor ln = bs[0]->ln_1->forward(x);
      for (std::size_t l = 0; l < bs.size(); ++l) {
        auto [h, m] = bs[l]->forward_parts(ln, x);
        const nn::LayerNorm& next = l + 1 < bs.size() ? *bs[l + 1]->ln_1 : *transformer->ln_f;
        std::tie(ln, x) = add_layer_norm(h, m, next.weight, next.bias, next.eps);
      }
      return ln;
    }
    for (auto& b : transformer->blocks) x = b->forward(x);
  } else {
    // Checkpoint segments are whole blocks (CheckpointedSequence: one tensor in, one
    // out, which the budget planner measures per block), so a block's output add
    // cannot be fused with the next block's ln_1 across a segment boundary: here each
    // fused block fuses only its inner add with ln_2 (GPT2Block::forward), its output
    // add and ln_1 / ln_f stay separate ops, and the segments are unchanged.
    x = runner_->forward(x);
  }
  return transformer->ln_f->forward(x);
}

Tensor GPT2::logits_of(const Tensor& h) {
  Tensor logits = linear(h, transformer->wte->weight);  // tied output layer: (B, T, Vp)
  if (cfg_.padded_vocab_size() != cfg_.vocab_size) logits = logits.narrow(-1, 0, cfg_.vocab_size);
  return logits;
}

Tensor GPT2::forward(const Tensor& idx) { return logits_of(hidden(idx)); }

Tensor GPT2::loss(const Tensor& idx, const Tensor& targets) {
  CIUIC_CHECK(targets.shape() == idx.shape(), ShapeError, "GPT2::loss", "targets ", describe(targets),
              " do not match idx ", describe(idx));
  return cross_entropy(forward(idx), targets);
}

KVCache GPT2::make_cache(std::int64_t batch) const {
  KVCache c;
  const Tensor& w = transformer->wte->weight;
  for (std::int64_t l = 0; l < cfg_.num_layers; ++l) {
    Shape s{batch, cfg_.num_heads, cfg_.max_seq_len, cfg_.head_dim()};
    c.k.push_back(zeros(s, TensorOptions(w.dtype()).device(w.device())));
    c.v.push_back(zeros(s, TensorOptions(w.dtype()).device(w.device())));
  }
  return c;
}

Tensor GPT2::forward_cached(const Tensor& idx, KVCache& cache) {
  CIUIC_CHECK(idx.dim() == 2, ShapeError, "GPT2::forward_cached", "idx is ", describe(idx), "; expected (B, Tn)");
  const std::int64_t Tn = idx.size(1), pos = cache.length;
  CIUIC_CHECK(static_cast<std::int64_t>(cache.k.size()) == cfg_.num_layers && cache.k[0].size(0) == idx.size(0),
              ValueError, "GPT2::forward_cached", "the cache was not made by make_cache(", idx.size(0), ") of this model");
  CIUIC_CHECK(Tn == 1 || pos == 0, ValueError, "GPT2::forward_cached", Tn,
              " tokens after ", pos, " cached ones; expected one token at a time after the prompt");
  CIUIC_CHECK(pos + Tn <= cfg_.max_seq_len, ValueError, "GPT2::forward_cached", "position ", pos + Tn,
              " exceeds max_seq_len ", cfg_.max_seq_len);
  NoGradGuard ng;
  Tensor p = arange(static_cast<double>(pos), static_cast<double>(pos + Tn), 1.0,
                    TensorOptions(DType::i64).device(idx.device()));
  Tensor x = add(transformer->wte->forward(idx), transformer->wpe->forward(p));
  for (std::int64_t l = 0; l < cfg_.num_layers; ++l)
    x = transformer->blocks[static_cast<std::size_t>(l)]->forward_cached(x, cache.k[l], cache.v[l], pos);
  cache.length = pos + Tn;
  return logits_of(transformer->ln_f->forward(x));
}

std::int64_t sample_token(const std::vector<float>& logits, double temperature, std::int64_t top_k, double u) {
  CIUIC_CHECK(!logits.empty(), ValueError, "sample_token", "no logits");
  CIUIC_CHECK(temperature >= 0.0, ValueError, "sample_token", "temperature ", temperature, " must be >= 0");
  CIUIC_CHECK(top_k >= 0, ValueError, "sample_token", "top_k ", top_k, " must be >= 0");
  if (temperature == 0.0)
    return std::max_element(logits.begin(), logits.end()) - logits.begin();  // first maximum, like argmax
  std::vector<std::int64_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::int64_t k = top_k == 0 ? static_cast<std::int64_t>(logits.size())
                              : std::min<std::int64_t>(top_k, static_cast<std::int64_t>(logits.size()));
  // Largest first; ties by index so that the draw is reproducible.
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](std::int64_t a, std::int64_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  std::vector<double> p(static_cast<std::size_t>(k));
  const double top = logits[order[0]] / temperature;
  double total = 0;
  for (std::int64_t i = 0; i < k; ++i) total += p[i] = std::exp(logits[order[i]] / temperature - top);
  double target = u * total, acc = 0;
  for (std::int64_t i = 0; i < k; ++i) {
    acc += p[i];
    if (target < acc) return order[i];
  }
  return order[k - 1];
}

std::vector<std::int64_t> GPT2::generate(const std::vector<std::int64_t>& prompt, const GenerateOptions& opts) {
  CIUIC_CHECK(!prompt.empty(), ValueError, "GPT2::generate", "the prompt is empty; give at least one token");
  CIUIC_CHECK(opts.max_new_tokens >= 0, ValueError, "GPT2::generate", "max_new_tokens ", opts.max_new_tokens,
              " must be >= 0");
  // Compared without forming prompt + new tokens (max_new_tokens may be near INT64_MAX).
  const std::int64_t plen = static_cast<std::int64_t>(prompt.size());
  CIUIC_CHECK(plen <= cfg_.max_seq_len && opts.max_new_tokens <= cfg_.max_seq_len - plen, ValueError,
              "GPT2::generate", "prompt (", plen, ") + ", opts.max_new_tokens, " new tokens exceed max_seq_len ",
              cfg_.max_seq_len);
  // Checked here too (sample_token checks them per token) so that nothing runs before the error.
  CIUIC_CHECK(opts.temperature >= 0.0 && std::isfinite(opts.temperature), ValueError, "GPT2::generate",
              "temperature ", opts.temperature, "; expected a finite value >= 0 (0: greedy)");
  CIUIC_CHECK(opts.top_k >= 0, ValueError, "GPT2::generate", "top_k ", opts.top_k,
              "; expected >= 0 (0: the whole vocabulary)");
  for (std::int64_t t : prompt)
    CIUIC_CHECK(t >= 0 && t < cfg_.vocab_size, IndexError, "GPT2::generate", "prompt token ", t,
                " is outside the vocabulary [0, ", cfg_.vocab_size, ")");
  const bool was_training = is_training();
  eval();
  std::vector<std::int64_t> out = prompt;
  Generator gen{opts.seed, 0};
  const Device dev = transformer->wte->weight.device();
  try {
    KVCache cache = make_cache(1);
    Tensor next = from_vector(prompt, {1, static_cast<std::int64_t>(prompt.size())}).to(dev);
    for (std::int64_t i = 0; i < opts.max_new_tokens; ++i) {
      Tensor logits = forward_cached(next, cache);  // (1, Tn, V)
      std::vector<float> last = logits.select(1, logits.size(1) - 1).to_vector<float>();
      double u = opts.temperature == 0.0 ? 0.0 : rand({1}, TensorOptions(DType::f64), &gen).item();
      std::int64_t tok = sample_token(last, opts.temperature, opts.top_k, u);
      out.push_back(tok);
      next = from_vector(std::vector<std::int64_t>{tok}, {1, 1}).to(dev);
    }
  } catch (...) {
    train(was_training);
    throw;
  }
  train(was_training);
  return out;
}

std::vector<std::int64_t> GPT2::generate(const std::vector<std::int64_t>& prompt, std::int64_t max_new_tokens,
                                         double temperature, std::int64_t top_k, std::uint64_t seed) {
  GenerateOptions o;
  o.max_new_tokens = max_new_tokens;
  o.temperature = temperature;
  o.top_k = top_k;
  o.seed = seed;
  return generate(prompt, o);
}

std::int64_t GPT2::num_parameters(bool non_embedding) const {
  std::int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  if (non_embedding) n -= transformer->wte->weight.numel() + transformer->wpe->weight.numel();
  return n;
}

double GPT2::flops_per_token(std::int64_t T) const {
  const double L = static_cast<double>(cfg_.num_layers), C = static_cast<double>(cfg_.channels);
  const double N = static_cast<double>(num_parameters(true)) + static_cast<double>(cfg_.padded_vocab_size()) * C;
  return 6.0 * N + 12.0 * L * C * static_cast<double>(T);
}

}  // namespace ciuic::models
