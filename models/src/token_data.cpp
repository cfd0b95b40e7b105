#include "ciuic/models/token_data.h"

#include <glob.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ciuic::models {

namespace detail {
extern const unsigned char kEmbeddedCorpusData[];
extern const std::size_t kEmbeddedCorpusSize;
}  // namespace detail

// ---------------------------------------------------------------- tokenizer
namespace {
// byte -> token and token -> byte, GPT-2's bytes_to_unicode order.
struct ByteTables {
  std::array<std::int64_t, 256> token_of{};
  std::array<int, 256> byte_of{};
  ByteTables() {
    std::vector<int> order;
    for (int b = '!'; b <= '~'; ++b) order.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) order.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) order.push_back(b);
    std::array<bool, 256> used{};
    for (int b : order) used[b] = true;
    for (int b = 0; b < 256; ++b)
      if (!used[b]) order.push_back(b);
    for (int t = 0; t < 256; ++t) {
      byte_of[t] = order[t];
      token_of[order[t]] = t;
    }
  }
};
const ByteTables& tables() {
  static const ByteTables t;
  return t;
}
}  // namespace

std::int64_t ByteTokenizer::token_of_byte(unsigned char b) { return tables().token_of[b]; }
int ByteTokenizer::byte_of_token(std::int64_t t) { return t >= 0 && t < 256 ? tables().byte_of[t] : -1; }

std::vector<std::uint16_t> ByteTokenizer::encode(const std::string& text) {
  std::vector<std::uint16_t> out(text.size());
  for (std::size_t i = 0; i < text.size(); ++i)
    out[i] = static_cast<std::uint16_t>(token_of_byte(static_cast<unsigned char>(text[i])));
  return out;
}

std::string ByteTokenizer::decode(const std::vector<std::int64_t>& tokens) {
  std::string out;
  for (std::int64_t t : tokens) {
    int b = byte_of_token(t);
    if (b >= 0) out.push_back(static_cast<char>(b));
    else if (t == kEndOfText) out += "<|endoftext|>";
    else out += "<|" + std::to_string(t) + "|>";
  }
  return out;
}

// ---------------------------------------------------------------- shards
namespace {
constexpr std::size_t kShardHeaderBytes = 256 * sizeof(std::int32_t);

std::int64_t check_shard(const std::string& path, std::ifstream& f) {
  const char* op = "read_token_shard";
  CIUIC_CHECK(f.good(), IOError, op, "cannot open \"", path, "\"");
  std::int32_t h[256] = {};
  f.read(reinterpret_cast<char*>(h), kShardHeaderBytes);
  const auto got = static_cast<std::size_t>(f.gcount());
  CIUIC_CHECK(got == kShardHeaderBytes, IOError, op, "\"", path, "\" has ", got,
              " bytes; an llm.c token shard starts with a 1024-byte header (256 x int32)");
  CIUIC_CHECK(h[0] == kTokenShardMagic, IOError, op, "\"", path, "\" has magic ", h[0], "; expected ",
              kTokenShardMagic, " (an llm.c token shard)");
  CIUIC_CHECK(h[1] == 1, IOError, op, "\"", path, "\" has version ", h[1], "; expected 1 (uint16 tokens)");
  CIUIC_CHECK(h[2] >= 0, IOError, op, "\"", path, "\" has a negative token count ", h[2]);
  const auto size = std::filesystem::file_size(path);
  const std::uint64_t expected = kShardHeaderBytes + 2ull * static_cast<std::uint64_t>(h[2]);
  CIUIC_CHECK(size == expected, IOError, op, "\"", path, "\" is ", size, " bytes; its header says ", h[2],
              " tokens, which is ", expected, " bytes (truncated or not a token shard)");
  return h[2];
}
}  // namespace

std::int64_t read_shard_header(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return check_shard(path, f);
}

std::vector<std::uint16_t> read_token_shard(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  const std::int64_t n = check_shard(path, f);
  std::vector<std::uint16_t> tokens(static_cast<std::size_t>(n));
  f.read(reinterpret_cast<char*>(tokens.data()), static_cast<std::streamsize>(2 * n));
  CIUIC_CHECK(f.gcount() == 2 * n, IOError, "read_token_shard", "short read in \"", path, "\"");
  return tokens;
}

void write_token_shard(const std::string& path, const std::vector<std::uint16_t>& tokens) {
  CIUIC_CHECK(tokens.size() <= 0x7fffffffu, ValueError, "write_token_shard", tokens.size(),
              " tokens do not fit a shard's int32 count");
  std::int32_t h[256] = {};
  h[0] = kTokenShardMagic;
  h[1] = 1;
  h[2] = static_cast<std::int32_t>(tokens.size());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  CIUIC_CHECK(f.good(), IOError, "write_token_shard", "cannot write \"", path, "\"");
  f.write(reinterpret_cast<const char*>(h), kShardHeaderBytes);
  f.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(2 * tokens.size()));
  CIUIC_CHECK(f.good(), IOError, "write_token_shard", "write error on \"", path, "\"");
}

bool is_token_shard(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::int32_t magic = 0;
  if (!f.read(reinterpret_cast<char*>(&magic), sizeof magic)) return false;
  return magic == kTokenShardMagic;
}

std::vector<std::string> expand_glob(const std::string& pattern) {
  glob_t g{};
  int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0)
    for (std::size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  CIUIC_CHECK(!out.empty(), IOError, "expand_glob", "no file matches \"", pattern, "\"");
  std::sort(out.begin(), out.end());
  return out;
}

const std::string& embedded_corpus() {
  static const std::string text(reinterpret_cast<const char*>(detail::kEmbeddedCorpusData),
                                detail::kEmbeddedCorpusSize);
  return text;
}

// ---------------------------------------------------------------- dataset
TokenDataset TokenDataset::from_spec(const std::string& spec) {
  TokenDataset d;
  d.spec_ = spec;
  std::stringstream ss(spec);
  std::string part;
  while (std::getline(ss, part, ',')) {
    if (part.empty()) continue;
    if (part == "embedded") {
      auto tokens = std::make_shared<const std::vector<std::uint16_t>>(ByteTokenizer::encode(embedded_corpus()));
      d.segments_.push_back({"", tokens, 0, static_cast<std::int64_t>(tokens->size())});
      continue;
    }
    for (const std::string& path : expand_glob(part)) {
      CIUIC_CHECK(std::filesystem::is_regular_file(path), IOError, "TokenDataset", "\"", path, "\" is not a file");
      if (is_token_shard(path)) {
        d.segments_.push_back({path, nullptr, 0, read_shard_header(path)});
      } else {
        std::ifstream f(path, std::ios::binary);
        CIUIC_CHECK(f.good(), IOError, "TokenDataset", "cannot open \"", path, "\"");
        std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        auto tokens = std::make_shared<const std::vector<std::uint16_t>>(ByteTokenizer::encode(text));
        d.segments_.push_back({"", tokens, 0, static_cast<std::int64_t>(tokens->size())});
      }
    }
  }
  CIUIC_CHECK(!d.segments_.empty(), ValueError, "TokenDataset", "data spec \"", spec, "\" names no data");
  return d;
}

std::pair<TokenDataset, TokenDataset> TokenDataset::split_tail(double fraction) const {
  CIUIC_CHECK(fraction > 0.0 && fraction < 1.0, ValueError, "TokenDataset::split_tail", "fraction ", fraction,
              " must be in (0, 1)");
  TokenDataset train = *this, val;
  train.cached_ = val.cached_ = static_cast<std::size_t>(-1);
  train.cache_.clear();
  Segment& last = train.segments_.back();
  const std::int64_t n = last.end - last.begin;
  const std::int64_t cut = last.begin + static_cast<std::int64_t>(static_cast<double>(n) * (1.0 - fraction));
  Segment tail = last;
  tail.begin = cut;
  last.end = cut;
  val.segments_.push_back(tail);
  val.spec_ = spec_ + " (last " + std::to_string(static_cast<int>(fraction * 100)) + "%)";
  train.spec_ = spec_ + " (first " + std::to_string(static_cast<int>((1 - fraction) * 100 + 0.5)) + "%)";
  return {train, val};
}

std::int64_t TokenDataset::num_tokens() const {
  std::int64_t n = 0;
  for (const auto& s : segments_) n += s.end - s.begin;
  return n;
}

std::int64_t TokenDataset::max_token() const {
  std::int64_t m = 0;
  for (std::size_t s = 0; s < segments_.size(); ++s) {
    auto t = read(s, 0, segments_[s].end - segments_[s].begin);
    if (!t.empty()) m = std::max<std::int64_t>(m, *std::max_element(t.begin(), t.end()));
  }
  return m;
}

std::vector<std::uint16_t> TokenDataset::read(std::size_t s, std::int64_t begin, std::int64_t n) const {
  const Segment& seg = segments_.at(s);
  CIUIC_CHECK(begin >= 0 && n >= 0 && seg.begin + begin + n <= seg.end, IndexError, "TokenDataset::read", "tokens [",
              begin, ", ", begin + n, ") of a segment of ", seg.end - seg.begin);
  const std::vector<std::uint16_t>* src = seg.tokens.get();
  if (!src) {
    if (cached_ != s) {
      cache_ = read_token_shard(seg.path);
      cached_ = s;
    }
    src = &cache_;
  }
  auto first = src->begin() + seg.begin + begin;
  return std::vector<std::uint16_t>(first, first + n);
}

std::string TokenDataset::describe() const {
  std::ostringstream os;
  os << spec_ << ": " << num_tokens() << " tokens in " << segments_.size() << " segment"
     << (segments_.size() == 1 ? "" : "s");
  return os.str();
}

// ---------------------------------------------------------------- loader
DataLoader::DataLoader(TokenDataset data, std::int64_t B, std::int64_t T, int rank, int world)
    : data_(std::move(data)), B_(B), T_(T), rank_(rank), world_(world) {
  CIUIC_CHECK(B > 0 && T > 0, ValueError, "DataLoader", "batch ", B, " and sequence length ", T, " must be positive");
  CIUIC_CHECK(world >= 1 && rank >= 0 && rank < world, ValueError, "DataLoader", "rank ", rank,
              " is outside [0, world size ", world, ")");
  bool any = false;
  for (std::size_t s = 0; s < data_.segments().size(); ++s) any = any || fits(s, 0);
  CIUIC_CHECK(any, ValueError, "DataLoader", data_.describe(), "; one batch needs ", world * B * T + 1,
              " consecutive tokens (world ", world, " x B ", B, " x T ", T, " + 1) in one file");
  reset();
}

bool DataLoader::fits(std::size_t s, std::int64_t offset) const {
  const auto& seg = data_.segments()[s];
  return offset + world_ * B_ * T_ + 1 <= seg.end - seg.begin;
}

void DataLoader::reset() {
  pos_ = {};
  while (!fits(static_cast<std::size_t>(pos_.segment), 0)) ++pos_.segment;
}

void DataLoader::set_position(const Position& p) {
  CIUIC_CHECK(p.segment >= 0 && static_cast<std::size_t>(p.segment) < data_.segments().size() && p.offset >= 0,
              ValueError, "DataLoader::set_position", "segment ", p.segment, " offset ", p.offset,
              " is outside the data (", data_.segments().size(), " segments)");
  pos_ = p;
}

DataLoader::Batch DataLoader::next(Device device) {
  const std::size_t n_seg = data_.segments().size();
  std::size_t guard = 0;
  while (!fits(static_cast<std::size_t>(pos_.segment), pos_.offset)) {
    pos_.offset = 0;
    if (static_cast<std::size_t>(++pos_.segment) == n_seg) {
      pos_.segment = 0;
      ++pos_.epoch;
    }
    CIUIC_CHECK(++guard <= 2 * n_seg, ValueError, "DataLoader::next", "no segment holds a full batch");
  }
  auto tok = data_.read(static_cast<std::size_t>(pos_.segment), pos_.offset + rank_ * B_ * T_, B_ * T_ + 1);
  std::vector<std::int64_t> x(static_cast<std::size_t>(B_ * T_)), y(x.size());
  for (std::size_t i = 0; i < tok.size(); ++i) {
    const auto& seg = data_.segments()[static_cast<std::size_t>(pos_.segment)];
    CIUIC_CHECK(tok[i] < vocab_limit_, ValueError, "DataLoader::next", "token ", tok[i], " in ",
                seg.path.empty() ? std::string("the text data") : "\"" + seg.path + "\"",
                " is outside the model's vocabulary [0, ", vocab_limit_, ")");
  }
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = tok[i];
    y[i] = tok[i + 1];
  }
  pos_.offset += world_ * B_ * T_;
  return {from_vector(x, {B_, T_}).to(device), from_vector(y, {B_, T_}).to(device)};
}

}  // namespace ciuic::models
