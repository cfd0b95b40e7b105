// safetensors save/load: bit-exact round trips, the byte layout against the spec, and
// a catalogue of corrupted inputs that must fail with IOError (never crash or over-read).
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <unistd.h>

#include "ciuic/ciuic.h"
#include "temp_dir.h"
#include "test_util.h"

using namespace ciuic;
namespace fs = std::filesystem;

namespace {

std::vector<unsigned char> raw(const Tensor& t) { return detail::host_bytes(t, t.dtype()); }

void check_same_tensors(const NamedTensors& got, const NamedTensors& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("tensor " << i << " '" << want[i].first << "'");
    CHECK(got[i].first == want[i].first);
    CHECK(got[i].second.dtype() == want[i].second.dtype());
    CHECK(got[i].second.shape() == want[i].second.shape());
    CHECK(got[i].second.is_contiguous());
    CHECK(got[i].second.device() == Device::cpu());
    CHECK(raw(got[i].second) == raw(want[i].second));  // bit-exact
  }
}

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// A file from a header text and a byte buffer, written by hand after the spec.
std::string make_file(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

std::string bytes_of(const void* p, std::size_t n) { return std::string(static_cast<const char*>(p), n); }

Tensor half_bits(const std::vector<std::uint16_t>& b, const Shape& s) {
  std::vector<Half> v;
  for (auto x : b) v.push_back(Half::from_bits(x));
  return from_vector(v, s);
}
Tensor bf16_bits(const std::vector<std::uint16_t>& b, const Shape& s) {
  std::vector<BFloat16> v;
  for (auto x : b) v.push_back(BFloat16::from_bits(x));
  return from_vector(v, s);
}
template <typename T, typename U>
Tensor from_bits(const std::vector<U>& b, const Shape& s) {
  static_assert(sizeof(T) == sizeof(U));
  std::vector<T> v(b.size());
  std::memcpy(v.data(), b.data(), b.size() * sizeof(U));
  return from_vector(v, s);
}

// One tensor of every dtype, with the awkward bit patterns.
NamedTensors every_dtype() {
  return {
      {"f32", from_bits<float>(std::vector<std::uint32_t>{0x3f800000u, 0x80000000u, 0x7f800000u, 0xff800000u,
                                                           0x7fc00001u, 0xffc12345u, 0x00000001u, 0x7f7fffffu},
                               {2, 4})},
      {"f16", half_bits({0x3c00, 0x8000, 0x7c00, 0xfc00, 0x7e01, 0xfe55, 0x0001, 0x7bff}, {4, 2})},
      {"bf16", bf16_bits({0x3f80, 0x8000, 0x7f80, 0xff80, 0x7fc1, 0xffc3, 0x0001, 0x7f7f}, {8})},
      {"f64", from_bits<double>(std::vector<std::uint64_t>{0x3ff0000000000000ull, 0x8000000000000000ull,
                                                           0x7ff0000000000000ull, 0x7ff8000000000123ull,
                                                           0x0000000000000001ull, 0xfff8000000000000ull},
                                {3, 2})},
      {"i32", from_vector<std::int32_t>({INT32_MIN, -1, 0, 1, INT32_MAX}, {5})},
      {"i64", from_vector<std::int64_t>({INT64_MIN, -1, 0, 1, INT64_MAX, 1ll << 53 | 1}, {2, 3})},
      {"u8", from_vector<std::uint8_t>({0, 1, 127, 128, 255}, {5})},
      {"bool", from_vector<std::uint8_t>({1, 0, 0, 1}, {2, 2}, DType::boolean)},
  };
}

// A valid file with a few tensors, for corruption.
std::string small_valid_file() {
  NamedTensors ts{{"w", from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3})},
                  {"b", from_vector<std::int64_t>({7, 8}, {2})},
                  {"mask", from_vector<std::uint8_t>({1, 0, 1}, {3}, DType::boolean)},
                  {"h", half_bits({0x3c00, 0x7e00}, {2})}};
  return serialize_safetensors(ts, {{"format", "pt"}});
}

}  // namespace

TEST_CASE("safetensors: every dtype round trips bit-exact", "[io]") {
  NamedTensors ts = every_dtype();
  std::string bytes = serialize_safetensors(ts);
  check_same_tensors(deserialize_safetensors(bytes), ts);

  TempDir dir("io");
  std::string path = dir.file("all.safetensors");
  save_safetensors(path, ts);
  check_same_tensors(load_safetensors(path), ts);
  check_same_tensors(load_safetensors(path, Device::cpu()), ts);
  CHECK(dir.entries() == 1);  // no temporary left behind
  // The file is exactly the in-memory serialization.
  std::ifstream in(path, std::ios::binary);
  std::string on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(on_disk == bytes);
  CHECK(load_safetensors_metadata(path).empty());
}

TEST_CASE("safetensors: non-contiguous, scalar and empty tensors", "[io]") {
  Tensor base = arange(24, DType::f32).view({2, 3, 4});
  Tensor tr = base.transpose(0, 2);                 // [4, 3, 2], permuted strides
  Tensor stepped = base.slice(2, 1, 4, 2);          // [2, 3, 2], step 2
  Tensor expanded = from_vector<double>({1.5, -2}, {2, 1}).expand({2, 3});  // stride 0
  Tensor offset = arange(10, DType::i64).slice(0, 3, 7);                   // storage offset 3
  Tensor scalar = full({}, 3.25, DType::bf16);
  Tensor empty1 = empty({0}, DType::f32);
  Tensor empty2 = empty({3, 0, 2}, DType::i32);
  REQUIRE(!tr.is_contiguous());
  REQUIRE(!stepped.is_contiguous());
  REQUIRE(!expanded.is_contiguous());

  NamedTensors ts{{"empty_first", empty1}, {"tr", tr},   {"stepped", stepped}, {"expanded", expanded},
                  {"empty_mid", empty2},   {"offset", offset}, {"scalar", scalar}, {"empty_last", empty1}};
  NamedTensors back = deserialize_safetensors(serialize_safetensors(ts));
  check_same_tensors(back, ts);  // also the order, including empty tensors sharing an offset
  CHECK(back[1].second.to_vector<double>() == tr.to_vector<double>());
  CHECK(back[3].second.to_vector<double>() == std::vector<double>{1.5, 1.5, 1.5, -2, -2, -2});
  CHECK(back[5].second.to_vector<std::int64_t>() == std::vector<std::int64_t>{3, 4, 5, 6});
  CHECK(back[6].second.dim() == 0);
  CHECK(back[6].second.item() == 3.25);
  CHECK(back[4].second.shape() == Shape{3, 0, 2});

  // Nothing at all, and tensors that require grad (saved as data).
  CHECK(deserialize_safetensors(serialize_safetensors({})).empty());
  Tensor p = ones({2}).requires_grad_();
  auto one = deserialize_safetensors(serialize_safetensors({{"p", p}}));
  CHECK(!one[0].second.requires_grad());
  CHECK(one[0].second.to_vector<float>() == std::vector<float>{1, 1});
}

TEST_CASE("safetensors: metadata round trip", "[io]") {
  Metadata md{{"format", "pt"}, {"empty", ""}, {"utf8 \xc3\xa9\xe2\x82\xac", "quote \" backslash \\ newline \n"}};
  NamedTensors ts{{"x", ones({3})}, {"na\xc3\xafve/\"name\"", zeros({1}, DType::u8)}};
  std::string bytes = serialize_safetensors(ts, md);
  CHECK(deserialize_safetensors_metadata(bytes) == md);
  check_same_tensors(deserialize_safetensors(bytes), ts);

  TempDir dir("io");
  std::string path = dir.file("m.safetensors");
  save_safetensors(path, ts, md);
  CHECK(load_safetensors_metadata(path) == md);
  check_same_tensors(load_safetensors(path), ts);
}

TEST_CASE("safetensors: byte layout follows the spec", "[io]") {
  NamedTensors ts{{"a", from_vector<float>({1.0f, -2.0f}, {2})}, {"b", from_vector<std::uint8_t>({1, 2, 3}, {3})}};
  std::string bytes = serialize_safetensors(ts, {{"k", "v"}});

  const std::string json =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})";
  std::string padded = json + std::string((8 - json.size() % 8) % 8, ' ');
  REQUIRE(padded.size() % 8 == 0);
  REQUIRE(bytes.size() == 8 + padded.size() + 11);
  // Header length: 8 bytes, unsigned little-endian.
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  CHECK(n == padded.size());
  CHECK(bytes.substr(0, 8) == le64(padded.size()));
  // JSON header, padded with spaces so the byte buffer starts 8-aligned.
  CHECK(bytes.substr(8, padded.size()) == padded);
  // Byte buffer: 1.0f, -2.0f little-endian, then the three u8.
  const unsigned char data[] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 1, 2, 3};
  CHECK(bytes.substr(8 + padded.size()) == bytes_of(data, sizeof data));

  // A file written by hand from the spec: keys not in offset order, metadata in the middle,
  // padding, a 0-dim tensor. Tensors come back in offset order.
  std::string hdr =
      R"({"z":{"dtype":"I32","shape":[],"data_offsets":[4,8]},"__metadata__":{"who":"hand"},)"
      R"( "y" : {"shape":[2],"data_offsets":[0,4],"dtype":"BF16"}}    )";
  const unsigned char buf[] = {0x80, 0x3f, 0x00, 0xc0, 0xfe, 0xff, 0xff, 0xff};  // bf16 1, -2; i32 -2
  std::string file = make_file(hdr, bytes_of(buf, sizeof buf));
  NamedTensors got = deserialize_safetensors(file);
  REQUIRE(got.size() == 2);
  CHECK(got[0].first == "y");
  CHECK(got[0].second.dtype() == DType::bf16);
  CHECK(got[0].second.to_vector<double>() == std::vector<double>{1, -2});
  CHECK(got[1].first == "z");
  CHECK(got[1].second.dim() == 0);
  CHECK(got[1].second.item<std::int32_t>() == -2);
  CHECK(deserialize_safetensors_metadata(file) == Metadata{{"who", "hand"}});
}

TEST_CASE("safetensors: corrupted inputs are IOErrors naming what was expected", "[io]") {
  const std::string f32x2 = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data8(8, '\0');
  auto load = [](const std::string& bytes) { return deserialize_safetensors(bytes, Device::cpu(), "bad.st"); };
  REQUIRE(load(make_file(f32x2, data8)).size() == 1);  // the baseline is valid

  // Too short for the length field; length beyond the file or absurd.
  CHECK_THROWS_WITH_ALL(load(""), IOError, "deserialize_safetensors", "'bad.st'", "0 bytes", "at least 8");
  CHECK_THROWS_WITH_ALL(load(std::string(7, '\x10')), IOError, "7 bytes", "at least 8");
  CHECK_THROWS_WITH_ALL(load(le64(1000) + "{}"), IOError, "1000", "only 2 bytes follow", "truncated");
  CHECK_THROWS_WITH_ALL(load(le64(200ull << 20) + std::string(64, ' ')), IOError, "100 MiB");
  CHECK_THROWS_WITH_ALL(load(le64(~0ull) + "{}"), IOError, "100 MiB");

  // Truncated at several points of a real file.
  std::string good = small_valid_file();
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(good[static_cast<std::size_t>(i)]);
  for (std::size_t cut : {std::size_t{0}, std::size_t{5}, std::size_t{8}, std::size_t{20}, std::size_t(8 + header_len - 1)}) {
    INFO("cut at " << cut);
    CHECK_THROWS_WITH_ALL(load(good.substr(0, cut)), IOError, "'bad.st'");
  }
  for (std::size_t cut : {std::size_t(8 + header_len), std::size_t(8 + header_len + 3), good.size() - 1}) {
    INFO("cut in the data at " << cut);
    CHECK_THROWS_WITH_ALL(load(good.substr(0, cut)), IOError, "'bad.st'", "data_offsets", "out of range",
                          "expected begin <= end <=");
  }

  // JSON that is invalid, or valid but not a header.
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"F32",)", data8)), IOError, "not valid JSON");
  CHECK_THROWS_WITH_ALL(load(make_file("", "")), IOError, "header starts with nothing", "expected '{'");
  CHECK_THROWS_WITH_ALL(load(make_file("[1, 2]", "")), IOError, "starts with 0x5B", "expected '{'");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t": 5})", "")), IOError, "tensor 't'", "expected an object with dtype");
  CHECK_THROWS_WITH_ALL(load(make_file("{\"t\xff\": 5}", "")), IOError, "not valid JSON");  // not UTF-8

  // dtype.
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", data8)), IOError,
                        "tensor 't'", "unknown dtype \"F33\"", "expected one of F32");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"I16","shape":[4],"data_offsets":[0,8]}})", data8)), IOError,
                        "\"I16\"", "not supported by ciuic");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", data8)), IOError,
                        "dtype is 4", "expected a string");

  // shape.
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8)), IOError,
                        "tensor 't'", "[-2]", "non-negative integers");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", data8)), IOError,
                        "non-negative integers");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", data8)), IOError,
                        "shape is \"2\"", "non-negative integers");
  CHECK_THROWS_WITH_ALL(
      load(make_file(R"({"t":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}})", data8)), IOError,
      "non-negative integers");
  CHECK_THROWS_WITH_ALL(  // numel * 4 overflows 64 bits
      load(make_file(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data8)),
      IOError, "more than 2^64");

  // data_offsets.
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", data8)), IOError,
                        "tensor 't'", "[0, 16] out of range", "end <= 8");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data8)), IOError,
                        "[8, 0] out of range", "begin <= end");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8)), IOError,
                        "data_offsets is [0]", "expected [begin, end]");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[-1,8]}})", data8)),
                        IOError, "expected [begin, end]");
  CHECK_THROWS_WITH_ALL(
      load(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})", data8)), IOError,
      "out of range");
  // Size mismatch: 3 f32 need 12 bytes.
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8)), IOError,
                        "tensor 't'", "hold 8 bytes", "expected 12", "F32 shape [3]");
  // Overlap, hole, trailing bytes.
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                       data8)),
                        IOError, "tensor 'b'", "overlap tensor 'a'", "disjoint");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                       R"("b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})",
                                       data8)),
                        IOError, "bytes [4, 6)", "tensor 'b'", "without holes");
  CHECK_THROWS_WITH_ALL(load(make_file(f32x2, data8 + "xy")), IOError, "10 bytes", "cover only 8",
                        "cover the buffer exactly");
  CHECK_THROWS_WITH_ALL(load(make_file("{}", "x")), IOError, "cover only 0");

  // Duplicates, unknown or missing fields, bad metadata, bad bools.
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                       R"("t":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                                       data8)),
                        IOError, "key 't' twice");
  CHECK_THROWS_WITH_ALL(
      load(make_file(R"({"t":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data8)), IOError,
      "key 'dtype' twice");
  CHECK_THROWS_WITH_ALL(
      load(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", data8)), IOError,
      "tensor 't'", "unknown field 'extra'");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", data8)), IOError,
                        "tensor 't'", "missing field 'shape'");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"__metadata__":{"k":1}})", "")), IOError, "'__metadata__' entry 'k'",
                        "expected a string");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"__metadata__":[]})", "")), IOError, "expected an object of string");
  CHECK_THROWS_WITH_ALL(load(make_file(R"({"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", "\x01\x02")),
                        IOError, "tensor 'm'", "BOOL element 1 is the byte 2", "expected 0 or 1");

  // Metadata readers validate the same way.
  CHECK_THROWS_WITH_ALL(deserialize_safetensors_metadata(make_file(f32x2, data8 + "x"), "m.st"), IOError,
                        "deserialize_safetensors_metadata", "'m.st'", "cover only 8");
}

TEST_CASE("safetensors: file errors name the path", "[io]") {
  TempDir dir("io");
  std::string missing = dir.file("does_not_exist.safetensors");
  CHECK_THROWS_WITH_ALL(load_safetensors(missing), IOError, "load_safetensors", missing.c_str(),
                        "No such file or directory");
  CHECK_THROWS_WITH_ALL(load_safetensors_metadata(missing), IOError, missing.c_str(), "No such file or directory");
  CHECK_THROWS_WITH_ALL(load_safetensors(dir.path.string()), IOError, "not a regular file");

  // Corrupted files on disk: truncated data, header length past the end, bad JSON.
  std::string good = small_valid_file();
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::string p = dir.file(name);
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  };
  std::string p1 = write("truncated.safetensors", good.substr(0, good.size() - 3));
  CHECK_THROWS_WITH_ALL(load_safetensors(p1), IOError, "load_safetensors", p1.c_str(), "out of range");
  std::string p2 = write("short.safetensors", good.substr(0, 4));
  CHECK_THROWS_WITH_ALL(load_safetensors(p2), IOError, p2.c_str(), "4 bytes", "at least 8");
  std::string p3 = write("len.safetensors", le64(4096) + "{}");
  CHECK_THROWS_WITH_ALL(load_safetensors(p3), IOError, p3.c_str(), "4096");
  CHECK_THROWS_WITH_ALL(load_safetensors_metadata(p3), IOError, "load_safetensors_metadata", p3.c_str(), "4096");
  std::string p4 = write("json.safetensors", make_file("{nope}", ""));
  CHECK_THROWS_WITH_ALL(load_safetensors(p4), IOError, p4.c_str(), "not valid JSON");
  std::string p5 = write("good.safetensors", good);
  CHECK(load_safetensors(p5).size() == 4);
  CHECK(load_safetensors_metadata(p5) == Metadata{{"format", "pt"}});
  if (!cuda_available())  // the device is checked before the file is read
    CHECK_THROWS_AS(load_safetensors(p5, Device::cuda(0)), DeviceError);
}

TEST_CASE("safetensors: bad saves are refused and leave no partial file", "[io]") {
  TempDir dir("io");
  std::string path = dir.file("keep.safetensors");
  NamedTensors old{{"old", ones({2})}};
  save_safetensors(path, old);

  CHECK_THROWS_WITH_ALL(save_safetensors(path, {{"a", ones({1})}, {"a", zeros({1})}}), ValueError,
                        "save_safetensors", "'a' appears twice");
  CHECK_THROWS_WITH_ALL(save_safetensors(path, {{"u", Tensor()}}), ValueError, "'u' is undefined");
  CHECK_THROWS_WITH_ALL(save_safetensors(path, {{"__metadata__", ones({1})}}), ValueError, "reserved");
  CHECK_THROWS_WITH_ALL(save_safetensors(path, {{"bad\xff", ones({1})}}), ValueError, "valid UTF-8");
  CHECK_THROWS_WITH_ALL(serialize_safetensors({{"x", ones({1})}}, {{"k", "\xc3"}}), ValueError,
                        "serialize_safetensors", "valid UTF-8");
  check_same_tensors(load_safetensors(path), old);  // untouched

  // The rename fails (the target is a non-empty directory): the temporary is removed.
  fs::create_directories(dir.path / "adir" / "inner");
  std::string adir = dir.file("adir");
  CHECK_THROWS_WITH_ALL(save_safetensors(adir, {{"x", ones({3})}}), IOError, "save_safetensors", adir.c_str());
  CHECK(fs::is_directory(adir));
  // A directory that does not exist.
  std::string nowhere = dir.file("no/such/dir/x.safetensors");
  CHECK_THROWS_WITH_ALL(save_safetensors(nowhere, {{"x", ones({3})}}), IOError, nowhere.c_str(),
                        "No such file or directory");
  CHECK(dir.entries() == 2);  // keep.safetensors and adir: no temporaries

  // Overwriting replaces the whole file.
  NamedTensors fresh{{"new", arange(3)}};
  save_safetensors(path, fresh);
  check_same_tensors(load_safetensors(path), fresh);
  CHECK(dir.entries() == 2);
}

TEST_CASE("safetensors: random corruption never crashes", "[io]") {
  std::string good = small_valid_file();
  std::mt19937 rng(12345);
  int loaded = 0, rejected = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string bad = good;
    int kind = static_cast<int>(rng() % 4);
    if (kind == 0) {
      bad.resize(rng() % bad.size());  // truncation
    } else {
      int flips = 1 + static_cast<int>(rng() % 4);
      for (int i = 0; i < flips; ++i) {
        // Mostly the length field and the header, where the parsing happens.
        std::size_t limit = kind == 1 ? 8 : kind == 2 ? bad.size() - 16 : bad.size();
        std::size_t at = rng() % limit;
        if (kind == 1 || rng() % 2)
          bad[at] = static_cast<char>(bad[at] ^ (1 << (rng() % 8)));
        else
          bad[at] = static_cast<char>(rng() % 256);
      }
    }
    try {
      NamedTensors ts = deserialize_safetensors(bad);
      for (const auto& [name, t] : ts) CHECK(t.numel() * static_cast<std::int64_t>(t.element_size()) <= static_cast<std::int64_t>(bad.size()));
      ++loaded;
    } catch (const Error&) {
      ++rejected;
    }
  }
  CHECK(loaded + rejected == 2000);
  CHECK(rejected > 1000);
  CHECK(loaded > 0);  // flips inside tensor data still load
}

TEST_CASE("state dict: save and load into existing tensors", "[io]") {
  TempDir dir("io");
  std::string path = dir.file("model.safetensors");
  Tensor w = randn({3, 2}), b = randn({2}, DType::f64);
  save_state_dict(path, {{"layer.weight", w}, {"layer.bias", b}}, {{"epoch", "3"}});
  CHECK(load_safetensors_metadata(path) == Metadata{{"epoch", "3"}});

  // Parameters of a "model": leaves requiring grad; the state holds handles onto them.
  Tensor pw = zeros({3, 2}).requires_grad_(), pb = zeros({2}, DType::f32).requires_grad_();
  NamedTensors state{{"layer.weight", pw}, {"layer.bias", pb}};
  auto r = load_state_dict(path, state);
  CHECK(r.missing.empty());
  CHECK(r.unexpected.empty());
  CHECK(pw.to_vector<float>() == w.to_vector<float>());
  CHECK(pb.to_vector<float>() == b.to_vector<float>());  // converted f64 -> f32
  CHECK(pw.requires_grad());
  CHECK(pw.is_leaf());

  // A view of a larger storage is written in place.
  Tensor big = zeros({4, 3});
  NamedTensors viewed{{"layer.weight", big.slice(0, 1, 4).slice(1, 0, 2)}, {"layer.bias", zeros({2})}};
  load_state_dict(path, viewed);
  CHECK(big.slice(0, 1, 4).slice(1, 0, 2).to_vector<float>() == w.to_vector<float>());
  CHECK(big.select(0, 0).to_vector<float>() == std::vector<float>{0, 0, 0});

  // Mismatched names: strict refuses and copies nothing; non-strict reports.
  Tensor other = zeros({3, 2});
  NamedTensors partial{{"layer.weight", other}, {"extra", zeros({1})}};
  CHECK_THROWS_WITH_ALL(load_state_dict(path, partial), ValueError, "load_state_dict", "missing from the file: 'extra'",
                        "not in the state: 'layer.bias'");
  CHECK(other.to_vector<float>() == std::vector<float>(6, 0.0f));
  auto r2 = load_state_dict(path, partial, /*strict=*/false);
  CHECK(r2.missing == std::vector<std::string>{"extra"});
  CHECK(r2.unexpected == std::vector<std::string>{"layer.bias"});
  CHECK(other.to_vector<float>() == w.to_vector<float>());

  // Shape mismatch: nothing copied.
  Tensor wrong = zeros({2, 3}), bias = zeros({2});
  CHECK_THROWS_WITH_ALL(load_state_dict(path, {{"layer.weight", wrong}, {"layer.bias", bias}}), ShapeError,
                        "tensor 'layer.weight'", "f32[3, 2]", "f32[2, 3]", "equal shapes");
  CHECK(bias.to_vector<float>() == std::vector<float>{0, 0});
  CHECK_THROWS_WITH_ALL(load_state_dict(dir.file("nope"), state), IOError, "No such file");
}

TEST_CASE("safetensors: CUDA tensors are saved from and loaded to the GPU", "[io][cuda]") {
  CIUIC_REQUIRE_GPU();
  NamedTensors host = every_dtype();
  NamedTensors on_gpu;
  for (const auto& [name, t] : host) on_gpu.emplace_back(name, t.to(Device::cuda(0)));
  Tensor tr = arange(12, DType::f32).view({3, 4}).to(Device::cuda(0)).t();  // non-contiguous on the GPU
  on_gpu.emplace_back("tr", tr);
  host.emplace_back("tr", tr.to(Device::cpu()));
  std::string bytes = serialize_safetensors(on_gpu);
  CHECK(bytes == serialize_safetensors(host));
  NamedTensors back = deserialize_safetensors(bytes, Device::cuda(0));
  REQUIRE(back.size() == host.size());
  for (std::size_t i = 0; i < back.size(); ++i) {
    CHECK(back[i].second.device() == Device::cuda(0));
    CHECK(raw(back[i].second) == raw(host[i].second));
  }
  TempDir dir("io");
  save_safetensors(dir.file("g.safetensors"), on_gpu);
  NamedTensors loaded = load_safetensors(dir.file("g.safetensors"), Device::cuda(0));
  CHECK(loaded.back().second.device() == Device::cuda(0));
  CHECK(raw(loaded.back().second) == raw(host.back().second));
}
