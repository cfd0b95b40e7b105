// Client study (g): GPT-2 from the README alone: the tiny config, a few training steps on a byte string,
// greedy generation from a prompt, weights saved and loaded (safetensors and llm.c), same generation after.
#include <ciuic/ciuic.h>
#include <ciuic/models/gpt2.h>
#include <ciuic/models/gpt2_weights.h>

#include <cstdio>
#include <filesystem>
#include <string>

using namespace ciuic;

static Tensor bytes_to_tensor(const std::string& s) {
  std::vector<int64_t> v(s.begin(), s.end());
  return tensor(v, DType::i64).view({1, -1});
}

int main() {
  try {
    manual_seed(0);
    auto cfg = models::GPT2Config::tiny();
    auto gpt = std::make_shared<models::GPT2>(cfg);
    std::printf("tiny GPT-2: %zu parameter tensors\n", gpt->parameters().size());

    // Overfit one sequence: "hello world, hello world, h..." (33 bytes) (targets are the inputs shifted by one).
    std::string text;
    while (text.size() < 33) text += "hello world, ";
    Tensor data = bytes_to_tensor(text.substr(0, 33));
    using namespace ciuic::indexing;
    Tensor idx = data.index({Slice(), Slice(0, 32)}), targets = data.index({Slice(), Slice(1, 33)});
    optim::AdamW opt(gpt->parameters(), optim::AdamWOptions(3e-3));  // 1e-2 plateaus at the unigram loss
    double first = 0, last = 0;
    for (int step = 0; step < 60; ++step) {
      opt.zero_grad();
      Tensor loss = gpt->loss(idx, targets);
      loss.backward();
      opt.step();
      if (step == 0) first = loss.item();
      last = loss.item();
    }
    std::printf("loss %.4f -> %.4f\n", first, last);
    if (!(last < 0.2)) return 1;

    // generate greedily from a prompt
    gpt->eval();
    const std::string p = "hello";
    std::vector<int64_t> prompt(p.begin(), p.end());  // generate takes and returns token ids, not tensors
    std::vector<int64_t> out = gpt->generate(prompt, /*max_new_tokens=*/12, /*temperature=*/0.0, /*top_k=*/0, /*seed=*/1);
    std::string gen(out.begin(), out.end());
    std::printf("generated: '%s'\n", gen.c_str());
    if (gen != text.substr(0, 17)) return 1;  // it memorised the text

    // save/load: safetensors state dict, and llm.c
    save_state_dict("client_study_gpt2.safetensors", gpt->state_dict().items());
    auto copy = std::make_shared<models::GPT2>(cfg);
    load_state_dict("client_study_gpt2.safetensors", copy->state_dict().items());
    copy->eval();
    auto out2 = copy->generate(prompt, 12, 0.0, 0, 1);
    models::save_llmc(*gpt, "client_study_gpt2.bin", 3);
    auto copy2 = models::gpt2_from_llmc("client_study_gpt2.bin");
    copy2->eval();
    auto out3 = copy2->generate(prompt, 12, 0.0, 0, 1);
    std::filesystem::remove("client_study_gpt2.safetensors");
    std::filesystem::remove("client_study_gpt2.bin");
    if (out != out2 || out != out3) { std::fprintf(stderr, "reloaded models generate differently\n"); return 1; }
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
