// GPT-2 (Radford et al. 2019) as Hugging Face and llm.c define it: token and
// learned position embeddings, pre-LayerNorm blocks (causal self-attention, a
// 4x MLP with GELU in its tanh form), a final LayerNorm, and an output layer
// tied to the token embedding. The token embedding has padded_vocab_size rows
// (vocab_size rounded up to a multiple of 128, as llm.c pads it); the padded rows
// start at zero and the logits cover the real vocabulary only.
//
// Parameter names are Hugging Face GPT2LMHeadModel's, one to one:
//   transformer.wte.weight (Vp, C)          transformer.wpe.weight (maxT, C)
//   transformer.h.<i>.ln_1.{weight,bias}    transformer.h.<i>.attn.c_attn.{weight,bias}  (3C, C), (3C)
//   transformer.h.<i>.attn.c_proj.*  (C, C) transformer.h.<i>.ln_2.{weight,bias}
//   transformer.h.<i>.mlp.c_fc.*  (4C, C)   transformer.h.<i>.mlp.c_proj.*  (C, 4C)
//   transformer.ln_f.{weight,bias}
// The only differences are layouts: our Linear weights are (out, in) where
// Hugging Face's Conv1D stores (in, out), and wte has Vp rows where Hugging Face
// has V; lm_head.weight is not a separate tensor (it is transformer.wte.weight).
// gpt2_weights.h converts in both directions.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ciuic/checkpoint.h>
#include <ciuic/ciuic.h>
#include <ciuic/nn.h>

namespace ciuic::models {

struct GPT2Config {
  std::int64_t vocab_size = 50257;
  std::int64_t max_seq_len = 1024;
  std::int64_t num_layers = 12;
  std::int64_t num_heads = 12;
  std::int64_t channels = 768;
  double dropout = 0.0;                                  // after attention, MLP and embeddings (training only)
  CheckpointPolicy checkpoint = CheckpointPolicy::none();  // over the blocks, during training forwards
  DType dtype = DType::f32;                              // parameter precision: f32, f16 or bf16
  // Fused ops (ops.h): the MLP's c_fc + GELU as linear_gelu (on CUDA one GEMM with the
  // GELU epilogue) and every residual add fused with the LayerNorm that reads it
  // (add_layer_norm: ln_2 in each block; the block's output add with the next block's
  // ln_1, and the last one with ln_f). Same parameters, names, loss and gradients as
  // the unfused model (bit-identical on the CPU); false runs the unfused ops.
  bool fused = true;

  // vocab_size rounded up to a multiple of 128.
  std::int64_t padded_vocab_size() const { return (vocab_size + 127) / 128 * 128; }
  std::int64_t head_dim() const { return channels / num_heads; }
  // ValueError naming the field when the shape cannot be built.
  void validate() const;
  // "d12: L=12 H=12 C=768 V=50257 (padded 50304) T=1024"
  std::string str() const;

  // GPT-2 124M, 350M, 774M, 1558M (llm.c's d12 .. d48, Hugging Face gpt2 .. gpt2-xl).
  static GPT2Config d12();
  static GPT2Config d24();
  static GPT2Config d36();
  static GPT2Config d48();
  // A CPU-sized model over the byte vocabulary (256 tokens, see token_data.h):
  // 4 layers, 4 heads, 128 channels, 256 positions.
  static GPT2Config tiny();
  // By name: d12 d24 d36 d48 tiny, or gpt2 gpt2-medium gpt2-large gpt2-xl; ValueError otherwise.
  static GPT2Config named(const std::string& name);
};

class GPT2Attention : public nn::Module {
 public:
  GPT2Attention(const GPT2Config& cfg, Generator* gen);
  // x (B, T, C) -> (B, T, C), causal.
  Tensor forward(const Tensor& x) override;
  // New tokens x (B, Tn, C) at positions [pos, pos + Tn) with the keys and values of
  // [0, pos) in k_cache / v_cache (B, H, maxT, D), which receive those of the new tokens.
  Tensor forward_cached(const Tensor& x, Tensor& k_cache, Tensor& v_cache, std::int64_t pos);

  std::int64_t channels, heads;
  std::shared_ptr<nn::Linear> c_attn, c_proj;
  std::shared_ptr<nn::Dropout> resid_dropout;
};

class GPT2MLP : public nn::Module {
 public:
  GPT2MLP(const GPT2Config& cfg, Generator* gen);
  Tensor forward(const Tensor& x) override;  // (B, T, C) -> (B, T, C)
  std::shared_ptr<nn::Linear> c_fc, c_proj;
  std::shared_ptr<nn::Dropout> dropout;
  bool fused = true;  // c_fc + GELU(tanh) as linear_gelu
};

class GPT2Block : public nn::Module {
 public:
  GPT2Block(const GPT2Config& cfg, Generator* gen);
  Tensor forward(const Tensor& x) override;  // (B, T, C) -> (B, T, C)
  Tensor forward_cached(const Tensor& x, Tensor& k_cache, Tensor& v_cache, std::int64_t pos);
  // The fused body without the final add, for a loop that fuses that add with the
  // next LayerNorm: ln1 = ln_1(x) (computed by the caller), x the residual stream
  // (B, T, C). Returns (h, m) with h = x + attn(ln1) (fused with ln_2) and
  // m = mlp(ln_2(h)); the block's output is h + m.
  std::pair<Tensor, Tensor> forward_parts(const Tensor& ln1, const Tensor& x);
  bool fused = true;  // ln_2 through add_layer_norm
  std::shared_ptr<nn::LayerNorm> ln_1, ln_2;
  std::shared_ptr<GPT2Attention> attn;
  std::shared_ptr<GPT2MLP> mlp;
};

// The "transformer" child: embeddings, blocks, final LayerNorm.
class GPT2Transformer : public nn::Module {
 public:
  GPT2Transformer(const GPT2Config& cfg, Generator* gen);
  std::shared_ptr<nn::Embedding> wte, wpe;
  std::shared_ptr<nn::Sequential> h;  // GPT2Block, registered "0", "1", ...
  std::shared_ptr<nn::LayerNorm> ln_f;
  std::shared_ptr<nn::Dropout> drop;
  std::vector<std::shared_ptr<GPT2Block>> blocks;
};

// Keys and values of every layer for incremental decoding: (B, H, maxT, D) each,
// valid in [0, length).
struct KVCache {
  std::vector<Tensor> k, v;
  std::int64_t length = 0;
};

struct GenerateOptions {
  std::int64_t max_new_tokens = 64;
  double temperature = 1.0;   // 0: greedy (argmax)
  std::int64_t top_k = 0;     // 0: the whole vocabulary
  std::uint64_t seed = 1337;  // of the sampling; the default generator is not touched
};

class GPT2 : public nn::Module {
 public:
  // Random initialisation as GPT-2's: N(0, 0.02) weights and embeddings, the
  // residual projections (c_proj) N(0, 0.02 / sqrt(2 L)), zero biases, unit
  // LayerNorm gains, zero padded vocabulary rows; then converted to cfg.dtype.
  explicit GPT2(const GPT2Config& cfg, Generator* gen = nullptr);

  // idx (B, T) integer -> logits (B, T, vocab_size) (a view into the padded (B, T, Vp) logits).
  Tensor forward(const Tensor& idx) override;
  // Mean next-token cross-entropy against targets (B, T), in f32 (f64 for an f64 model).
  Tensor loss(const Tensor& idx, const Tensor& targets);

  // An empty cache for batch B on the model's device and dtype.
  KVCache make_cache(std::int64_t batch) const;
  // Logits (B, Tn, vocab_size) of the new tokens idx (B, Tn) that follow cache.length
  // earlier ones, appending their keys and values to the cache: each token costs O(T).
  // No autograd (runs under NoGradGuard), dropout off. Tn > 1 needs an empty cache
  // (the prompt); after it, one token at a time.
  Tensor forward_cached(const Tensor& idx, KVCache& cache);

  // The prompt followed by max_new_tokens sampled tokens (top-k, temperature; greedy
  // at temperature 0), decoded with a KV cache. The prompt must be non-empty and
  // prompt + new tokens at most max_seq_len (ValueError otherwise).
  std::vector<std::int64_t> generate(const std::vector<std::int64_t>& prompt, const GenerateOptions& opts);
  std::vector<std::int64_t> generate(const std::vector<std::int64_t>& prompt, std::int64_t max_new_tokens,
                                     double temperature, std::int64_t top_k, std::uint64_t seed);

  // Parameter count (the tied embedding once); non_embedding excludes wte and wpe.
  std::int64_t num_parameters(bool non_embedding = false) const;
  // Training FLOPs per token of a forward + backward at sequence length T:
  // 6 N (N the non-embedding parameters plus the tied output layer) + 12 L C T (attention).
  double flops_per_token(std::int64_t T) const;

  const GPT2Config& config() const { return cfg_; }
  // Changes the checkpoint policy of later forwards.
  void set_checkpoint(CheckpointPolicy policy);
  // Switches later forwards between the fused and the unfused ops (GPT2Config::fused).
  void set_fused(bool fused);

  std::shared_ptr<GPT2Transformer> transformer;

 private:
  Tensor hidden(const Tensor& idx);  // (B, T) -> ln_f output (B, T, C)
  Tensor logits_of(const Tensor& h);  // (B, T, C) -> (B, T, V)

  GPT2Config cfg_;
  std::unique_ptr<CheckpointedSequence> runner_;
};

// Picks the next token from logits over the vocabulary (host values): argmax at
// temperature 0, else a draw from softmax(logits / temperature) restricted to the
// top_k largest (all when top_k is 0) with uniform u in [0, 1).
std::int64_t sample_token(const std::vector<float>& logits, double temperature, std::int64_t top_k, double u);

}  // namespace ciuic::models
