// Client study (h): activation checkpointing (torch.utils.checkpoint), from the README alone. A stack of residual
// MLP blocks, run plainly, with checkpoint() around each block, and as a CheckpointedSequence: same loss, same
// gradients; the checkpointed model loads the plain model's state_dict (same parameter names).
#include <ciuic/ciuic.h>

#include <cstdio>

using namespace ciuic;

struct Block : nn::Module {
  std::shared_ptr<nn::LayerNorm> ln;
  std::shared_ptr<nn::Linear> fc1, fc2;
  Block() : Module("Block") {
    ln = register_module("ln", std::make_shared<nn::LayerNorm>(16));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(16, 64));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(64, 16));
  }
  Tensor forward(const Tensor& x) override { return x + (*fc2)(gelu((*fc1)((*ln)(x)))); }
};

int main() {
  try {
    manual_seed(0);
    auto blocks = std::make_shared<nn::ModuleList>();
    for (int i = 0; i < 4; ++i) blocks->push_back(std::make_shared<Block>());
    Tensor x = randn({8, 16}), target = randn({8, 16});

    // plain
    Tensor h = x;
    for (auto& b : *blocks) h = (*b)(h);
    Tensor loss = mse_loss(h, target);
    loss.backward();
    std::vector<Tensor> plain;
    for (auto& p : blocks->parameters()) plain.push_back(p.grad().clone());
    blocks->zero_grad();

    // torch.utils.checkpoint.checkpoint(block, h) around each block
    h = x;
    for (auto& b : *blocks) h = checkpoint([&](const Tensor& in) { return (*b)(in); }, h);
    Tensor loss2 = mse_loss(h, target);
    loss2.backward();
    auto ps = blocks->parameters();
    for (size_t i = 0; i < ps.size(); ++i)
      if (!allclose(ps[i].grad(), plain[i], 1e-5, 1e-6)) { std::fprintf(stderr, "checkpoint grad %zu differs\n", i); return 1; }
    blocks->zero_grad();

    // CheckpointedSequence over the ModuleList, segments of 2 blocks
    CheckpointedSequence stack(blocks, CheckpointPolicy::every_kth(2));
    Tensor loss3 = mse_loss(stack.forward(x), target);
    loss3.backward();
    for (size_t i = 0; i < ps.size(); ++i)
      if (!allclose(ps[i].grad(), plain[i], 1e-5, 1e-6)) { std::fprintf(stderr, "sequence grad %zu differs\n", i); return 1; }
    std::printf("loss %.6f %.6f %.6f\n", loss.item(), loss2.item(), loss3.item());
    if (loss.item() != loss2.item() || loss.item() != loss3.item()) return 1;

    // same parameter names as the plain ModuleList: a drop-in replacement
    auto names_plain = blocks->state_dict().keys();
    auto names_ckpt = stack.state_dict().keys();
    if (names_plain != names_ckpt) { std::fprintf(stderr, "state_dict keys differ\n"); return 1; }
    std::printf("%zu parameters, first %s\n", names_plain.size(), names_plain[0].c_str());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
