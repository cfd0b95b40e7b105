// Training data for GPT-2: llm.c token shards, plain text through a byte-level
// tokenizer, and an embedded default corpus; a distributed batch loader.
//
// llm.c token shard (fineweb_train_000001.bin, tinyshakespeare_val.bin, ...):
//   header: 256 x int32 little-endian: [0] magic 20240520, [1] version 1, [2] token count N
//   then N uint16 tokens; the file is exactly 1024 + 2 N bytes.
//
// Byte-level tokenizer: every byte of the text is one token, numbered as GPT-2's
// byte-level BPE numbers its 256 base tokens (bytes_to_unicode order: the bytes
// '!'..'~', 0xA1..0xAC, 0xAE..0xFF are tokens 0..187, the others follow in byte
// order, so ' ' is 220 and '\n' is 198). Text tokenized this way is valid GPT-2
// input (unmerged), and a byte-vocabulary model (vocab 256) reads it directly.
//
// Data specs (one string, what train_gpt2 --data takes):
//   "embedded"               the corpus compiled into the library (the project's README and
//                            public headers: no download)
//   "path/to/file.bin"       an llm.c token shard (recognised by its magic)
//   "data/fineweb_train_*.bin"  a glob of shards, in sorted order
//   "notes.txt"              any other file: plain text, byte-tokenized
//   comma-separated lists of the above
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ciuic/ciuic.h>

namespace ciuic::models {

// ---- byte-level tokenizer ----
class ByteTokenizer {
 public:
  static constexpr std::int64_t kVocab = 256;
  static constexpr std::int64_t kEndOfText = 50256;  // GPT-2's <|endoftext|>
  static std::vector<std::uint16_t> encode(const std::string& text);
  // Tokens 0..255 back to bytes; <|endoftext|> and tokens of merged GPT-2 pieces (which
  // need GPT-2's vocabulary file) as "<|endoftext|>" / "<|id|>".
  static std::string decode(const std::vector<std::int64_t>& tokens);
  static std::int64_t token_of_byte(unsigned char b);
  static int byte_of_token(std::int64_t t);  // -1 for tokens >= 256
};

// ---- llm.c token shards ----
constexpr std::int32_t kTokenShardMagic = 20240520;
// Token count from the header; IOError for a missing file, bad magic/version, or a size
// that does not match the count.
std::int64_t read_shard_header(const std::string& path);
std::vector<std::uint16_t> read_token_shard(const std::string& path);
void write_token_shard(const std::string& path, const std::vector<std::uint16_t>& tokens);
bool is_token_shard(const std::string& path);
// The sorted files matching a glob pattern (a plain path matches itself); IOError when none.
std::vector<std::string> expand_glob(const std::string& pattern);

// ---- the embedded corpus ----
// The text compiled into the library (models/embedded_corpus.py lists its sources).
const std::string& embedded_corpus();

// ---- datasets ----
// Token ranges [begin, end) of sources, read lazily (one shard in memory at a time).
class TokenDataset {
 public:
  struct Segment {
    std::string path;                                  // a shard; empty for in-memory tokens
    std::shared_ptr<const std::vector<std::uint16_t>> tokens;  // in-memory text
    std::int64_t begin = 0, end = 0;
  };
  // Parses a data spec (above). IOError for unreadable or malformed files.
  static TokenDataset from_spec(const std::string& spec);
  // Splits off the last `fraction` of the tokens of the last segment as validation
  // (for data without a separate validation set): {train, val}.
  std::pair<TokenDataset, TokenDataset> split_tail(double fraction) const;

  const std::vector<Segment>& segments() const { return segments_; }
  std::int64_t num_tokens() const;
  // Largest token id (reads every segment): checks data against a vocabulary.
  std::int64_t max_token() const;
  // Tokens [begin, begin + n) of segment s (within it).
  std::vector<std::uint16_t> read(std::size_t s, std::int64_t begin, std::int64_t n) const;
  std::string describe() const;

  std::vector<Segment> segments_;
  std::string spec_;

 private:
  mutable std::size_t cached_ = static_cast<std::size_t>(-1);  // segment whose shard is in cache_
  mutable std::vector<std::uint16_t> cache_;
};

// llm.c's distributed loader. Every batch is B rows of T + 1 consecutive tokens
// (inputs and next-token targets). Rank r of `world` reads the r-th B*T-token slice of
// each world*B*T-token window, so the ranks' batches together are exactly the one-rank
// batch of world*B rows. At the end of a segment (when a full window no longer fits)
// it moves to the next, and after the last back to the first (an epoch).
class DataLoader {
 public:
  DataLoader(TokenDataset data, std::int64_t B, std::int64_t T, int rank = 0, int world = 1);
  struct Batch {
    Tensor idx, targets;  // (B, T) i64 on `device`
  };
  Batch next(Device device = Device::cpu());
  void reset();
  // Where the next batch starts (to resume a run exactly).
  struct Position {
    std::int64_t segment = 0, offset = 0, epoch = 0;
  };
  Position position() const { return pos_; }
  void set_position(const Position& p);
  const TokenDataset& data() const { return data_; }
  // Token ids must be below `vocab` (the model's vocabulary): next() throws ValueError
  // naming the token and the file otherwise.
  void set_vocab_limit(std::int64_t vocab) { vocab_limit_ = vocab; }

 private:
  bool fits(std::size_t s, std::int64_t offset) const;
  TokenDataset data_;
  std::int64_t B_, T_;
  int rank_, world_;
  Position pos_;
  std::int64_t vocab_limit_ = 65536;
};

}  // namespace ciuic::models
