// GPT-2 data: the byte-level tokenizer, llm.c token shards and bad shards, globs,
// text files, the embedded corpus, and the distributed loader's rank slices.
#include <filesystem>
#include <fstream>

#include "ciuic/ciuic.h"
#include "ciuic/models/token_data.h"
#include "temp_dir.h"
#include "test_util.h"

using namespace ciuic;
using models::ByteTokenizer;
using models::DataLoader;
using models::TokenDataset;

namespace {
namespace fs = std::filesystem;
}  // namespace

TEST_CASE("byte-level tokenizer numbers bytes as GPT-2's base tokens", "[gpt2][data]") {
  CHECK(ByteTokenizer::token_of_byte(' ') == 220);   // GPT-2's "Ġ"
  CHECK(ByteTokenizer::token_of_byte('\n') == 198);  // "Ċ"
  CHECK(ByteTokenizer::token_of_byte('!') == 0);
  CHECK(ByteTokenizer::token_of_byte('A') == 32);
  CHECK(ByteTokenizer::token_of_byte(0) == 188);
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  auto t = ByteTokenizer::encode(all);
  std::vector<std::int64_t> ids(t.begin(), t.end()), sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 256; ++i) CHECK(sorted[i] == i);  // a permutation of 0..255
  CHECK(ByteTokenizer::decode(ids) == all);
  CHECK(ByteTokenizer::decode({50256, 7, 1000}) == "<|endoftext|>(<|1000|>");
}

TEST_CASE("llm.c token shards: round trip, globs, and bad shards", "[gpt2][data]") {
  TempDir dir("shards");
  std::vector<std::uint16_t> a(3000), b(2000);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<std::uint16_t>(i * 7 % 50257);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint16_t>(60000 + i % 100);
  models::write_token_shard(dir / "train_000001.bin", a);
  models::write_token_shard(dir / "train_000000.bin", b);
  CHECK(fs::file_size(dir / "train_000001.bin") == 1024 + 2 * 3000);
  CHECK(models::read_shard_header(dir / "train_000001.bin") == 3000);
  CHECK(models::read_token_shard(dir / "train_000001.bin") == a);
  auto files = models::expand_glob(dir / "train_*.bin");
  REQUIRE(files.size() == 2);
  CHECK(files[0].ends_with("train_000000.bin"));  // sorted
  auto ds = TokenDataset::from_spec(dir / "train_*.bin");
  CHECK(ds.num_tokens() == 5000);
  CHECK(ds.max_token() == 60099);
  CHECK(ds.read(1, 10, 3) == std::vector<std::uint16_t>{a[10], a[11], a[12]});
  CHECK_THROWS_WITH_ALL(models::expand_glob(dir / "val_*.bin"), IOError, "no file matches", "val_*.bin");

  auto write_raw = [&](const std::string& name, std::vector<std::int32_t> header, std::size_t extra_bytes) {
    header.resize(256);
    std::ofstream f(dir / name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(header.data()), 1024);
    std::vector<char> pad(extra_bytes);
    f.write(pad.data(), static_cast<std::streamsize>(pad.size()));
    return dir / name;
  };
  CHECK_THROWS_WITH_ALL(models::read_token_shard(write_raw("short.bin", {20240520, 1, 100}, 150)), IOError,
                        "short.bin", "1174 bytes", "100 tokens", "1224 bytes");
  CHECK_THROWS_WITH_ALL(models::read_token_shard(write_raw("ver.bin", {20240520, 2, 10}, 20)), IOError,
                        "version 2", "expected 1");
  CHECK_THROWS_WITH_ALL(models::read_shard_header(write_raw("magic.bin", {20240326, 3, 10}, 20)), IOError,
                        "magic 20240326", "20240520");
  {
    std::ofstream(dir / "tiny.bin", std::ios::binary) << "abc";
  }
  CHECK_THROWS_WITH_ALL(models::read_token_shard(dir / "tiny.bin"), IOError, "3 bytes", "1024-byte header");
  CHECK_THROWS_WITH_ALL(models::read_token_shard(dir / "none.bin"), IOError, "cannot open");
}

TEST_CASE("text files and the embedded corpus are byte-tokenized", "[gpt2][data]") {
  TempDir dir("text");
  std::ofstream(dir / "notes.txt") << "hello world\n";
  auto ds = TokenDataset::from_spec(dir / "notes.txt");
  REQUIRE(ds.num_tokens() == 12);
  CHECK(ds.read(0, 5, 1)[0] == 220);
  const std::string& corpus = models::embedded_corpus();
  CHECK(corpus.size() > 20000);
  CHECK(corpus.find("ciuic") != std::string::npos);
  auto emb = TokenDataset::from_spec("embedded");
  CHECK(emb.num_tokens() == static_cast<std::int64_t>(corpus.size()));
  auto [train, val] = emb.split_tail(0.1);
  CHECK(train.num_tokens() + val.num_tokens() == emb.num_tokens());
  CHECK(val.num_tokens() == emb.num_tokens() - static_cast<std::int64_t>(emb.num_tokens() * 0.9));
  auto both = TokenDataset::from_spec("embedded," + (dir / "notes.txt"));
  CHECK(both.segments().size() == 2);
  CHECK_THROWS_WITH_ALL(TokenDataset::from_spec(dir / "absent.txt"), IOError, "absent.txt");
}

TEST_CASE("distributed loader: the ranks' batches together are the one-rank batch", "[gpt2][data]") {
  TokenDataset ds;
  {
    TempDir dir("loader");
    std::vector<std::uint16_t> toks(1000);
    for (std::size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<std::uint16_t>(i);
    models::write_token_shard(dir / "a.bin", toks);
    ds = TokenDataset::from_spec(dir / "a.bin");
    DataLoader one(ds, 4, 8), r0(ds, 2, 8, 0, 2), r1(ds, 2, 8, 1, 2);
    for (int step = 0; step < 40; ++step) {  // past the end of the shard: wraps the same way
      auto full = one.next(), a = r0.next(), b = r1.next();
      CHECK(full.idx.to_vector<std::int64_t>() == cat({a.idx, b.idx}, 0).to_vector<std::int64_t>());
      CHECK(full.targets.to_vector<std::int64_t>() == cat({a.targets, b.targets}, 0).to_vector<std::int64_t>());
    }
    // Targets are the inputs shifted by one.
    DataLoader l(ds, 2, 8);
    auto x = l.next();
    CHECK(x.idx.to_vector<std::int64_t>()[1] == x.targets.to_vector<std::int64_t>()[0]);
    // Position: save and restore reproduces the stream.
    DataLoader p(ds, 2, 8);
    for (int i = 0; i < 70; ++i) p.next();
    auto pos = p.position();
    CHECK(pos.epoch == 1);
    auto expect = p.next().idx.to_vector<std::int64_t>();
    DataLoader q(ds, 2, 8);
    q.set_position(pos);
    CHECK(q.next().idx.to_vector<std::int64_t>() == expect);
    CHECK_THROWS_WITH_ALL(DataLoader(ds, 64, 16), ValueError, "1025 consecutive tokens");
    CHECK_THROWS_WITH_ALL(DataLoader(ds, 2, 8, 2, 2), ValueError, "rank 2");
  }
}
