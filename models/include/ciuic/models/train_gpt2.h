// The GPT-2 training job behind bench/train_gpt2 (and ./run.sh demo): options,
// the loop (AdamW with FP32 masters, cosine schedule with warm-up, gradient
// accumulation and clipping, FP16 dynamic loss scaling), validation and samples,
// and exact save / resume.
//
// One line per step:
//   step 12/50 | loss 5.4312 | norm 1.2100 | lr 6.00e-04 | scale 65536 | 31.2 ms | 525K tok/s | MFU 43% | mem 8.10 GiB
// ("scale" with fp16 only; a step whose gradients overflowed ends "| skipped (inf/nan)"),
// then a summary (median step time without the first step, tokens/s, MFU, peak memory)
// and, with --json, the same as JSON.
//
// Save / resume: --save PATH writes one safetensors file at the end (and every
// --save-every steps): the model ("model/<name>"), the optimizer's state and FP32
// masters ("optim/<group>/<index>/<buffer>"), and in its metadata the step, the
// optimizer's hyperparameters and step counts, the loss scaler, the RNG state and
// the data position. --resume PATH continues from it; the resumed run's losses are
// bit-identical to an uninterrupted run's (tested).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <ciuic/ciuic.h>
#include <ciuic/comm/communicator.h>

namespace ciuic::models {

// A bad command line: the message says which option and why (train_gpt2 prints it
// with the usage and exits with 2).
class UsageError : public ValueError {
 public:
  explicit UsageError(const std::string& msg) : ValueError(msg) {}
};

struct TrainOptions {
  std::string model = "tiny";     // d12 d24 d36 d48 tiny (ignored when --init is a file: the file's shape)
  std::string init = "random";    // random | llm.c model file | Hugging Face safetensors
  std::string data = "embedded";  // token_data.h: embedded | shard | glob | text file | comma list
  std::string val_data;           // empty: the last 10% of --data
  std::string tokenizer;          // llm.c tokenizer file (gpt2_tokenizer.bin) to print samples; empty: bytes
  std::int64_t batch = 8, seq = 64, steps = 50, grad_accum = 1;
  double lr = 6e-4;
  std::int64_t warmup = -1;       // -1: steps / 10
  double min_lr_ratio = 0.1;
  double weight_decay = 0.1, clip = 1.0, dropout = 0.0;
  std::string precision = "fp32";   // fp32 | fp16 | bf16
  std::string checkpoint = "none";  // none | blocks | selective | auto:<GiB>
  std::string device = "cpu";       // cpu | cuda | cuda:<i>
  std::uint64_t seed = 1337;
  std::string save, resume, json;
  std::int64_t save_every = 0, stop_at = 0;       // stop_at: end after this step (the schedule still spans --steps)
  std::int64_t val_every = 0, val_batches = 8;    // val_every 0: only at the end
  std::int64_t sample_every = 0, sample_tokens = 64;
  double peak_tflops = 0;          // MFU reference; 0: the card's dense FP16 peak when known
  bool quiet = false;              // no per-step lines
  bool help = false;
};

// Parses train_gpt2's arguments (without argv[0]); "--flag value" and "--flag=value".
// UsageError for unknown options, missing or malformed values, out-of-range values.
TrainOptions parse_train_args(const std::vector<std::string>& args);
std::string train_usage();

struct StepRecord {
  std::int64_t step = 0;
  double loss = 0, norm = 0, lr = 0, scale = 1, ms = 0, tokens_per_s = 0;
  bool skipped = false;
};

struct TrainResult {
  std::vector<StepRecord> steps;                          // the steps this run made
  std::vector<std::pair<std::int64_t, double>> val_loss;  // (step, loss)
  std::int64_t parameters = 0;
  double median_ms = 0, tokens_per_s = 0;
  double mfu = -1;                 // fraction of the peak; -1 when no peak is known
  double peak_memory_bytes = 0;
  std::string model_str;
};

// Runs the job, printing to out (nullptr: silent). Library errors propagate.
// Data parallel: with a communicator of size > 1 (train_gpt2 makes one from the
// environment ciuic-launch sets: Gloo for --device cpu, NCCL for cuda), the model
// is wrapped in comm::BucketedReducer (rank 0's weights broadcast, gradients
// averaged during backward, no_sync across gradient-accumulation micro-steps),
// rank r reads the r-th slice of every data window (DataLoader), and the printed
// losses are averaged over the ranks: the run equals one process on the combined
// batch of world x --batch rows. --batch is per rank. Only rank 0 prints and saves.
TrainResult train_gpt2(const TrainOptions& opts, std::FILE* out = stdout, comm::CommunicatorPtr comm = nullptr);

}  // namespace ciuic::models
