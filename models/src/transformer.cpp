#include "ciuic/models/transformer.h"

#include <cmath>

namespace ciuic::models {

TransformerBlock::TransformerBlock(std::int64_t dim_, std::int64_t heads_, double dropout, Generator* gen)
    : Module("TransformerBlock"), dim(dim_), heads(heads_) {
  CIUIC_CHECK(dim % heads == 0, ValueError, "TransformerBlock", "dim ", dim, " is not divisible by heads ", heads);
  ln1 = register_module("ln1", std::make_shared<nn::LayerNorm>(dim));
  qkv = register_module("qkv", std::make_shared<nn::Linear>(dim, 3 * dim, true, gen));
  proj = register_module("proj", std::make_shared<nn::Linear>(dim, dim, true, gen));
  ln2 = register_module("ln2", std::make_shared<nn::LayerNorm>(dim));
  fc = register_module("fc", std::make_shared<nn::Linear>(dim, 4 * dim, true, gen));
  fc2 = register_module("fc2", std::make_shared<nn::Linear>(4 * dim, dim, true, gen));
  drop = register_module("drop", std::make_shared<nn::Dropout>(dropout));
}

Tensor TransformerBlock::forward(const Tensor& x) {
  const std::int64_t B = x.size(0), T = x.size(1), C = dim, H = heads, D = dim / heads;
  Tensor qkv_out = qkv->forward(ln1->forward(x));  // (B, T, 3C)
  auto parts = split(qkv_out, C, 2);               // 3 x (B, T, C)
  auto heads_of = [&](const Tensor& t) { return t.view({B, T, H, D}).transpose(1, 2); };  // (B, H, T, D)
  Tensor y = scaled_dot_product_attention(heads_of(parts[0]), heads_of(parts[1]), heads_of(parts[2]), true);
  y = y.transpose(1, 2).reshape({B, T, C});
  Tensor h = add(x, drop->forward(proj->forward(y)));
  Tensor m = fc2->forward(gelu(fc->forward(ln2->forward(h)), GeluApprox::tanh));
  return add(h, drop->forward(m));
}

GPT::GPT(const GPTConfig& c, CheckpointPolicy policy, Generator* gen) : Module("GPT"), cfg(c) {
  wte = register_module("wte", std::make_shared<nn::Embedding>(cfg.vocab, cfg.dim, gen));
  wpe = register_module("wpe", std::make_shared<nn::Embedding>(cfg.max_seq, cfg.dim, gen));
  {
    // GPT-2's initialisation: N(0, 0.02) for embeddings.
    NoGradGuard ng;
    wte->weight.copy_(normal(wte->weight.shape(), 0.0, 0.02, DType::f32, gen));
    wpe->weight.copy_(normal(wpe->weight.shape(), 0.0, 0.02, DType::f32, gen));
  }
  std::vector<std::shared_ptr<nn::Module>> as_modules;
  auto h = register_module("h", std::make_shared<nn::Sequential>());  // names h.0.ln1.weight, ... as GPT-2's
  for (std::int64_t i = 0; i < cfg.layers; ++i) {
    auto b = std::make_shared<TransformerBlock>(cfg.dim, cfg.heads, cfg.dropout, gen);
    h->push_back(b);
    blocks.push_back(b);
    as_modules.push_back(b);
  }
  ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(cfg.dim));
  runner_ = std::make_unique<CheckpointedSequence>(as_modules, policy);
}

Tensor GPT::forward(const Tensor& idx) {
  const std::int64_t T = idx.size(1);
  CIUIC_CHECK(T <= cfg.max_seq, ShapeError, "GPT", "sequence length ", T, " exceeds max_seq ", cfg.max_seq);
  Tensor pos = arange(T, TensorOptions(DType::i64).device(idx.device()));
  Tensor x = add(wte->forward(idx), wpe->forward(pos));  // (B, T, C)
  x = runner_->forward(x);
  return linear(ln_f->forward(x), wte->weight);  // tied output layer: (B, T, vocab)
}

Tensor GPT::loss(const Tensor& idx, const Tensor& targets) { return cross_entropy(forward(idx), targets); }

}  // namespace ciuic::models
