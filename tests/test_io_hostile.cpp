// safetensors against hostile files (issue 10): nesting depth, what the reference
// implementation rejects (NUL padding, a byte-order mark), files that are not regular,
// stale temporaries, a header of 100,000 tensors, and a structure-aware fuzz run.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "ciuic/ciuic.h"
#include "ciuic/io.h"
#include "temp_dir.h"
#include "test_util.h"

using namespace ciuic;
namespace fs = std::filesystem;

namespace {

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}
std::string file_of(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }
NamedTensors load(const std::string& bytes) { return deserialize_safetensors(bytes, Device::cpu(), "h.st"); }

// n empty F32 tensors "t<i>" (all at offset 0: the header order decides their order).
std::string many_empty_tensors(int n) {
  std::string h = "{";
  for (int i = 0; i < n; ++i)
    h += (i ? ",\"t" : "\"t") + std::to_string(n - 1 - i) + "\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]}";
  return h + "}";
}

}  // namespace

TEST_CASE("safetensors: deep nesting is refused without recursion", "[io][errors]") {
  const std::string deep_open(200000, '['), deep_close(200000, ']');
  const std::string deep = deep_open + "1" + deep_close;
  // In the metadata, in an entry, as a shape, as a whole entry, as deep objects.
  for (const std::string& header : std::vector<std::string>{
           "{\"__metadata__\":{\"k\":" + deep + "}}",
           "{\"t\":{\"dtype\":\"F32\",\"shape\":" + deep + ",\"data_offsets\":[0,4]}}",
        "{\"t\":{\"dtype\":" + deep + "}}", "{\"t\":" + deep + "}", "{\"__metadata__\":" + deep + "}",
        std::string("{\"t\":{\"a\":{\"b\":{\"c\":{}}}}}"), std::string("{\"t\":{\"shape\":[[1]]}}")}) {
    INFO(header.substr(0, 60));
    CHECK_THROWS_WITH_ALL(load(file_of(header, std::string(4, '\0'))), IOError, "h.st", "nests values more than 3 deep");
  }
  std::string objects;
  for (int i = 0; i < 150000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(150000, '}');
  CHECK_THROWS_WITH_ALL(load(file_of("{\"x\":" + objects + "}", "")), IOError, "nests");
  // Unclosed deep nesting is refused the same way (before the end of input is reached).
  CHECK_THROWS_WITH_ALL(load(file_of("{\"x\":" + deep_open, "")), IOError, "nests");
}

TEST_CASE("safetensors: NUL padding and a byte-order mark are refused, as the reference does", "[io][errors]") {
  const std::string ok = R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  const std::string data(4, '\0');
  REQUIRE(load(file_of(ok, data)).size() == 1);
  REQUIRE(load(file_of(ok + "   \n\t\r ", data)).size() == 1);  // JSON whitespace padding is fine
  CHECK_THROWS_WITH_ALL(load(file_of(ok + std::string(3, '\0'), data)), IOError, "h.st", "NUL byte at offset ",
                        "padded with spaces");
  CHECK_THROWS_WITH_ALL(load(file_of(ok + "  " + std::string(1, '\0') + " ", data)), IOError, "NUL byte");
  CHECK_THROWS_WITH_ALL(load(file_of("\xEF\xBB\xBF" + ok, data)), IOError, "0xEF", "byte-order mark", "expected '{'");
  CHECK_THROWS_WITH_ALL(load(file_of(" " + ok, data)), IOError, "0x20", "expected '{'");
  CHECK_THROWS_WITH_ALL(load(file_of("[" + ok + "]", data)), IOError, "0x5B");
  CHECK_THROWS_WITH_ALL(load(le64(0) + data), IOError, "starts with nothing");
  CHECK_THROWS_WITH_ALL(deserialize_safetensors_metadata(file_of(std::string(1, '\0') + ok, data)), IOError,
                        "deserialize_safetensors_metadata", "0x00");
}

TEST_CASE("safetensors: a FIFO or a directory is refused without blocking", "[io][errors]") {
  TempDir dir("io_hostile");
  const std::string fifo = dir.file("pipe.safetensors");
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  // A FIFO with no writer used to block in fopen forever.
  CHECK_THROWS_WITH_ALL(load_safetensors(fifo), IOError, "load_safetensors", fifo.c_str(), "a FIFO (named pipe)",
                        "expected a regular file");
  CHECK_THROWS_WITH_ALL(load_safetensors_metadata(fifo), IOError, "load_safetensors_metadata", "FIFO");
  CHECK_THROWS_WITH_ALL(load_state_dict(fifo, {}), IOError, "FIFO");
  CHECK_THROWS_WITH_ALL(load_safetensors(dir.path.string()), IOError, "a directory", "expected a regular file");
  CHECK_THROWS_WITH_ALL(load_safetensors("/dev/null"), IOError, "a character device");
}

TEST_CASE("safetensors: stale temporaries of killed saves are ignored and cleaned up", "[io]") {
  TempDir dir("io_hostile");
  const std::string path = dir.file("model.safetensors");
  // A pid that cannot be alive: above Linux's pid_max limit (2^22).
  const std::string dead = path + ".tmp.99999999.0", dead2 = path + ".tmp.99999998.17";
  const std::string live = path + ".tmp." + std::to_string(getppid()) + ".3";  // the parent is alive
  const std::string mine = path + ".tmp." + std::to_string(getpid()) + ".999";  // this process: maybe in use
  const std::string other = dir.file("other.safetensors.tmp.99999999.0");       // another file's temporary
  const std::string lookalike = path + ".tmp.99999999.x";                       // not the pattern
  for (const std::string& f : {dead, dead2, live, mine, other, lookalike}) std::ofstream(f) << "partial";
  NamedTensors ts{{"w", arange(4, DType::f32)}};
  save_safetensors(path, ts);
  CHECK(load_safetensors(path).size() == 1);  // the loader reads only the named file
  CHECK_FALSE(fs::exists(dead));
  CHECK_FALSE(fs::exists(dead2));
  CHECK(fs::exists(live));
  CHECK(fs::exists(mine));
  CHECK(fs::exists(other));
  CHECK(fs::exists(lookalike));
  // A temporary loaded by name is just a corrupt file.
  CHECK_THROWS_AS(load_safetensors(live), IOError);
}

TEST_CASE("safetensors: 100,000 tensors parse in linear time and keep header order", "[io]") {
  // Quadratic parsing took minutes here; linear takes a fraction of a second (bench_safetensors
  // measures it). Empty tensors all at offset 0 come back in header order.
  const int n = 100000;
  const std::string bytes = file_of(many_empty_tensors(n), "");
  auto t0 = std::chrono::steady_clock::now();
  NamedTensors ts = load(bytes);
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(ts.size() == static_cast<std::size_t>(n));
  CHECK(ts.front().first == "t99999");
  CHECK(ts[1].first == "t99998");
  CHECK(ts.back().first == "t0");
  CHECK(ts[500].second.shape() == Shape{0, 3});
  WARN("100,000-tensor header parsed and loaded in " << secs << " s");  // informational, not asserted
  // A duplicate among them is still found.
  std::string dup = many_empty_tensors(1000);
  dup.insert(dup.size() - 1, R"(,"t500":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})");
  CHECK_THROWS_WITH_ALL(load(file_of(dup, "")), IOError, "'t500' twice");
}

// Random structural mutations of valid files: every result loads consistently or is a
// ciuic::Error; nothing crashes, hangs or over-reads (ASan checks the last in CI).
TEST_CASE("safetensors: structure-aware fuzzing", "[io][fuzz]") {
  std::mt19937_64 rng(20261128);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  const NamedTensors base{{"w", from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3})},
                          {"b", from_vector<std::int64_t>({7, 8}, {2})},
                          {"m", from_vector<std::uint8_t>({1, 0, 1}, {3}, DType::boolean)},
                          {"e", zeros({0, 4})},
                          {"h", ones({2}, DType::f16)}};
  const std::string good = serialize_safetensors(base, {{"format", "pt"}});
  std::uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | static_cast<unsigned char>(good[static_cast<std::size_t>(i)]);
  const std::string header = good.substr(8, hlen), data = good.substr(8 + hlen);
  const char* numbers[] = {"18446744073709551615", "18446744073709551616", "9223372036854775807", "-1", "1e400",
                           "4294967296", "0", "1.5", "-0", "99999999999999999999999999", "\"3\"", "null", "[]", "{}"};
  const std::vector<std::string> tokens = {"[", "]", "{", "}", ",", ":", "\"", "\\", "\"__metadata__\"", "\"dtype\"",
                                           "\"F32\"", "\"shape\"", "\"data_offsets\"", "true", "\xEF\xBB\xBF",
                                           std::string(1, '\0')};
  int loaded = 0, rejected = 0;
  const int iters = 4000;
  for (int it = 0; it < iters; ++it) {
    std::string h = header, d = data;
    std::uint64_t len_field = 0;
    bool own_len = false;
    const int mutations = 1 + static_cast<int>(pick(3));
    for (int m = 0; m < mutations; ++m) {
      switch (pick(9)) {
        case 0: {  // a number replaced by an extreme one
          std::size_t at = h.find_first_of("0123456789", pick(h.size()));
          if (at == std::string::npos) break;
          std::size_t end = h.find_first_not_of("0123456789", at);
          h.replace(at, end - at, numbers[pick(std::size(numbers))]);
          break;
        }
        case 1: {  // a value wrapped in deep nesting
          std::size_t at = pick(h.size());
          const std::size_t depth = pick(2) ? 1 + pick(8) : 1000 + pick(200000);
          const bool arr = pick(2);
          std::string open, close;
          for (std::size_t k = 0; k < depth; ++k) open += arr ? "[" : "{\"k\":";
          close.assign(depth, arr ? ']' : '}');
          h.insert(at, open);
          if (pick(4)) h.insert(std::min(h.size(), at + open.size() + pick(40)), close);
          break;
        }
        case 2:  // a token inserted
          h.insert(pick(h.size() + 1), tokens[pick(tokens.size())]);
          break;
        case 3: {  // a whole entry duplicated or many entries appended (huge counts)
          const std::size_t copies = pick(2) ? 1 : 1 + pick(5000);
          std::string extra;
          for (std::size_t k = 0; k < copies; ++k)
            extra += ",\"x" + std::to_string(k) + "\":{\"dtype\":\"U8\",\"shape\":[" +
                     (pick(3) ? std::string("0") : std::string("4294967296,4294967296")) +
                     "],\"data_offsets\":[0,0]}";
          std::size_t close = h.rfind('}');
          if (close != std::string::npos) h.insert(close, extra);
          break;
        }
        case 4:  // a byte flipped
          if (!h.empty()) h[pick(h.size())] ^= static_cast<char>(1 << pick(8));
          break;
        case 5:  // a cut header or data
          if (pick(2)) h.resize(pick(h.size() + 1));
          else d.resize(pick(d.size() + 1));
          break;
        case 6:  // a lying length field
          own_len = true;
          len_field = pick(2) ? h.size() + pick(17) - 8 : (pick(2) ? ~0ull - pick(9) : pick(1ull << 40));
          break;
        case 7:  // padding: spaces, NULs, garbage
          h.append(1 + pick(8), " \0x\n"[pick(4)]);
          break;
        default:  // extra or missing data bytes
          if (pick(2)) d.append(1 + pick(16), 'z');
          else if (!d.empty()) d.pop_back();
          break;
      }
    }
    const std::string bytes = (own_len ? le64(len_field) : le64(h.size())) + h + d;
    try {
      NamedTensors ts = load(bytes);
      std::uint64_t total = 0;
      for (const auto& [name, t] : ts) total += static_cast<std::uint64_t>(t.numel()) * t.element_size();
      CHECK(total <= bytes.size());
      ++loaded;
    } catch (const Error&) {
      ++rejected;
    }
  }
  CHECK(loaded + rejected == iters);
  CHECK(rejected > iters / 2);
  CHECK(loaded > 0);
}
