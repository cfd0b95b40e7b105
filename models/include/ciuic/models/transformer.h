// A pre-LayerNorm transformer block (GPT-2 style) and a GPT-shaped stack:
// token + position embeddings, n blocks, a final LayerNorm and an output layer
// tied to the token embedding. Blocks run through a CheckpointedSequence, so
// any checkpoint policy applies to them.
#pragma once

#include <memory>

#include <ciuic/checkpoint.h>
#include <ciuic/ciuic.h>
#include <ciuic/nn.h>

namespace ciuic::models {

struct GPTConfig {
  std::int64_t vocab = 50304, max_seq = 1024, layers = 12, dim = 768, heads = 12;
  double dropout = 0.0;
};

class TransformerBlock : public nn::Module {
 public:
  TransformerBlock(std::int64_t dim, std::int64_t heads, double dropout = 0.0, Generator* gen = nullptr);
  // x (B, T, C) -> (B, T, C)
  Tensor forward(const Tensor& x) override;

  std::int64_t dim, heads;
  std::shared_ptr<nn::LayerNorm> ln1, ln2;
  std::shared_ptr<nn::Linear> qkv, proj, fc, fc2;
  std::shared_ptr<nn::Dropout> drop;
};

class GPT : public nn::Module {
 public:
  explicit GPT(const GPTConfig& cfg, CheckpointPolicy policy = CheckpointPolicy::none(), Generator* gen = nullptr);
  // idx (B, T) i64 -> logits (B, T, vocab)
  Tensor forward(const Tensor& idx) override;
  // Mean cross-entropy of next-token targets (B, T).
  Tensor loss(const Tensor& idx, const Tensor& targets);
  const CheckpointedSequence& blocks_runner() const { return *runner_; }

  GPTConfig cfg;
  std::shared_ptr<nn::Embedding> wte, wpe;
  std::vector<std::shared_ptr<TransformerBlock>> blocks;
  std::shared_ptr<nn::LayerNorm> ln_f;

 private:
  std::unique_ptr<CheckpointedSequence> runner_;
};

}  // namespace ciuic::models
