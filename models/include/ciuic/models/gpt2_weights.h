// GPT-2 weights in the two formats users start from.
//
// llm.c's model file (gpt2_124M.bin, gpt2_124M_bf16.bin, and what llm.c's trainer writes):
//   header: 256 x int32 little-endian: [0] magic 20240326, [1] version (3: fp32, 5: bf16),
//           [2] max_seq_len, [3] vocab_size, [4] num_layers, [5] num_heads, [6] channels,
//           [7] padded_vocab_size, the rest 0
//   then the 16 tensors back to back in llm.c's order, each layer-stacked one holding
//   all L layers: wte (Vp, C), wpe (maxT, C), ln1w (L, C), ln1b (L, C), qkvw (L, 3C, C),
//   qkvb (L, 3C), attprojw (L, C, C), attprojb (L, C), ln2w (L, C), ln2b (L, C),
//   fcw (L, 4C, C), fcb (L, 4C), fcprojw (L, C, 4C), fcprojb (L, C), lnfw (C), lnfb (C)
//   in fp32 (version 3) or bf16 (version 5). Weights are (out, in), as ours.
//
// Hugging Face GPT-2 safetensors (model.safetensors of gpt2 .. gpt2-xl): the names of
// gpt2.h with or without the "transformer." prefix; Conv1D weights stored (in, out);
// wte (V, C) unpadded; the attention-mask buffers "h.<i>.attn.bias" / "attn.masked_bias"
// and a tied "lm_head.weight" are accepted and ignored. Any float dtype (F32, F16, BF16).
// The number of heads is not in the tensors: it comes from the file's metadata
// ("n_head", written by save_hf_safetensors), else a config.json beside the file
// ("n_head"), else GPT-2's own (12, 16, 20, 25 heads for C = 768, 1024, 1280, 1600).
//
// Every reader validates sizes, shapes and header fields before copying, and a bad
// file is an IOError naming the file and what was expected.
#pragma once

#include <memory>
#include <string>

#include "ciuic/models/gpt2.h"

namespace ciuic::models {

// ---- llm.c ----
// The config in the header (dtype, dropout and checkpoint left at their defaults).
GPT2Config read_llmc_config(const std::string& path);
// Copies the file's weights into model (converting to its dtype and device); the file's
// shape must be the model's (ValueError naming both otherwise).
void load_llmc(GPT2& model, const std::string& path);
// A new model of the file's shape with its weights; `base` supplies dtype, dropout and
// checkpoint policy (its shape fields are replaced by the file's).
std::shared_ptr<GPT2> gpt2_from_llmc(const std::string& path, const GPT2Config& base = {});
// Writes version 3 (fp32) or 5 (bf16; ValueError for other versions).
void save_llmc(const GPT2& model, const std::string& path, int version = 3);

// ---- Hugging Face safetensors ----
GPT2Config read_hf_config(const std::string& path);
void load_hf_safetensors(GPT2& model, const std::string& path);
std::shared_ptr<GPT2> gpt2_from_hf_safetensors(const std::string& path, const GPT2Config& base = {});
// Names with the "transformer." prefix, Conv1D layout, wte cut to V rows, f32, metadata
// {"format": "pt", "n_head": H}: loadable by transformers' GPT2LMHeadModel.from_pretrained.
void save_hf_safetensors(const GPT2& model, const std::string& path);

// True when the file starts with llm.c's model magic (to pick a loader by content).
bool is_llmc_model_file(const std::string& path);

}  // namespace ciuic::models
