// safetensors reader and writer (format summary in ciuic/io.h).
//
// Reading validates the whole header against the size of the byte buffer before any
// tensor bytes are read: each range must hold exactly numel * dtype_size bytes, and the
// ranges, sorted by offset, must tile the buffer with no overlap, hole or trailing byte.
// Only then is storage allocated, so a corrupted header cannot trigger a huge allocation
// or a read past the end.
#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "ciuic/autograd.h"
#include "ciuic/io.h"

namespace ciuic {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host needs byte swapping here");

namespace {

// std::map objects: O(log n) per key, so a header of n tensors parses in O(n log n). (nlohmann's
// ordered_json searches its key vector linearly on every insert: quadratic, 29 s for 50,000
// tensors.) The header's key order, which breaks ties between empty tensors, is recorded
// while parsing instead.
using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;  // for writing: keeps the field order of the reference

constexpr std::uint64_t kMaxHeaderBytes = 100ull << 20;  // larger headers are refused as corrupt
// A valid header nests 3 deep: the object, an entry (or __metadata__), a shape / data_offsets.
// Parsing stops at the first value deeper than that, so no code ever recurses on a depth
// the file chooses (a JSON array nested 200,000 deep used to overflow the stack).
constexpr int kMaxHeaderDepth = 3;
constexpr std::size_t kSnippetChars = 80;                // JSON quoted in error messages

struct DTypeCode {
  const char* code;
  DType dtype;
};
constexpr DTypeCode kCodes[] = {{"F32", DType::f32}, {"F16", DType::f16}, {"BF16", DType::bf16},
                                {"F64", DType::f64}, {"I32", DType::i32}, {"I64", DType::i64},
                                {"U8", DType::u8},   {"BOOL", DType::boolean}};
constexpr const char* kSupportedCodes = "F32, F16, BF16, F64, I32, I64, U8, BOOL";
// Valid in the format, but without a ciuic dtype.
constexpr const char* kUnsupportedCodes[] = {"I8", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2",
                                             "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"};

const char* code_of(DType t) {
  for (const auto& c : kCodes)
    if (c.dtype == t) return c.code;
  detail::fail<DTypeError>("save_safetensors", "dtype ", static_cast<int>(t), " has no safetensors code");
}

std::optional<DType> dtype_of_code(const std::string& s) {
  for (const auto& c : kCodes)
    if (s == c.code) return c.dtype;
  return std::nullopt;
}

bool is_unsupported_code(const std::string& s) {
  for (const char* c : kUnsupportedCodes)
    if (s == c) return true;
  return false;
}

// One tensor of a validated header.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  std::uint64_t begin;  // bytes, relative to the start of the byte buffer
  std::uint64_t end;
};

struct Header {
  std::vector<Entry> entries;  // sorted by (begin, end), then header order
  Metadata metadata;
};

// Where bytes come from, for error messages: the operation and the file (or "<memory>").
struct Context {
  const char* op;
  const std::string& source;
};

template <typename... Args>
[[noreturn]] void corrupt(const Context& c, Args&&... args) {
  detail::fail<IOError>(c.op, "'", c.source, "': ", std::forward<Args>(args)...);
}

std::string snippet(const Json& v) {
  std::string s = v.dump();
  if (s.size() > kSnippetChars) s = s.substr(0, kSnippetChars) + "...";
  return s;
}

std::optional<std::uint64_t> as_u64(const Json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v.get<std::int64_t>());
  return std::nullopt;  // negative, fractional, or not a number
}

std::uint64_t read_le64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Checks the 8-byte length field against the total size; returns the header length N.
std::uint64_t check_prefix(const Context& c, const unsigned char* first8, std::uint64_t total) {
  if (total < 8)
    corrupt(c, "file is ", total, " bytes; expected at least 8 (the little-endian header length)");
  std::uint64_t n = read_le64(first8);
  if (n > kMaxHeaderBytes)
    corrupt(c, "header length field says ", n, " bytes; expected at most ", kMaxHeaderBytes,
            " (100 MiB): the file is corrupt or not safetensors");
  if (n > total - 8)
    corrupt(c, "header length field says ", n, " bytes but only ", total - 8,
            " bytes follow it; expected the header to fit in the file (truncated?)");
  return n;
}

// A parsed header and its top-level keys in file order.
struct ParsedJson {
  Json json;
  std::vector<std::string> top_keys;
};

// nlohmann's DOM builder (linear: its callback parser rescans the parent object after every
// child, which is quadratic in the number of tensors) behind the checks a header needs: depth,
// duplicate keys, and the top-level keys in file order. Errors are thrown at once.
class HeaderSax {
 public:
  using Dom = nlohmann::detail::json_sax_dom_parser<Json>;
  HeaderSax(const Context& c, ParsedJson& out) : c_(c), out_(out), dom_(out.json) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(Json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(Json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(Json::number_float_t v, const Json::string_t& s) { return dom_.number_float(v, s); }
  bool string(Json::string_t& v) { return dom_.string(v); }
  bool binary(Json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) {
    open();
    keys_.emplace_back();
    return dom_.start_object(n);
  }
  bool key(Json::string_t& k) {
    if (!keys_.back().insert(k).second)
      corrupt(c_, "header has the key '", k, "' twice; expected unique names and fields");
    if (depth_ == 1) out_.top_keys.push_back(k);
    return dom_.key(k);
  }
  bool end_object() {
    --depth_;
    keys_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    open();
    return dom_.start_array(n);
  }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    corrupt(c_, "header is not valid JSON (", e.what(), "); expected a JSON object");
  }

 private:
  // depth_: the containers open around the one starting (0 for the header object itself).
  void open() {
    if (depth_ >= kMaxHeaderDepth)
      corrupt(c_, "header nests values more than ", kMaxHeaderDepth,
              " deep; expected {name: {dtype, shape: [..], data_offsets: [..]}}");
    ++depth_;
  }

  const Context& c_;
  ParsedJson& out_;
  Dom dom_;
  int depth_ = 0;
  std::vector<std::unordered_set<std::string>> keys_;  // one set per open object
};

// Parses JSON, reporting a duplicate key in any object (nlohmann would keep the last) and
// refusing what the reference implementation refuses: a first byte other than '{' (a UTF-8
// byte-order mark, leading blanks), NUL bytes (NUL padding), nesting deeper than a header has.
ParsedJson parse_json(const Context& c, std::string_view text) {
  if (text.empty() || text.front() != '{') {
    const bool bom = text.substr(0, 3) == "\xEF\xBB\xBF";
    char first[8] = "nothing";
    if (!text.empty()) std::snprintf(first, sizeof first, "0x%02X", static_cast<unsigned char>(text.front()));
    corrupt(c, "header starts with ", first, bom ? " (a UTF-8 byte-order mark)" : "",
            "; expected '{', the start of a JSON object");
  }
  if (auto nul = text.find('\0'); nul != std::string_view::npos)
    corrupt(c, "header has a NUL byte at offset ", nul, "; expected JSON padded with spaces only");
  ParsedJson out;
  HeaderSax sax(c, out);
  Json::sax_parse(text.begin(), text.end(), &sax);
  return out;
}

Metadata parse_metadata(const Context& c, const Json& v) {
  if (!v.is_object())
    corrupt(c, "'", kSafetensorsMetadataKey, "' is ", snippet(v), "; expected an object of string -> string");
  Metadata m;
  for (const auto& [k, s] : v.items()) {
    if (!s.is_string())
      corrupt(c, "'", kSafetensorsMetadataKey, "' entry '", k, "' is ", snippet(s), "; expected a string");
    m.emplace(k, s.get<std::string>());
  }
  return m;
}

Entry parse_entry(const Context& c, const std::string& name, const Json& v, std::uint64_t buffer_size) {
  if (!v.is_object())
    corrupt(c, "tensor '", name, "': entry is ", snippet(v),
            "; expected an object with dtype, shape and data_offsets");
  for (const auto& [k, unused] : v.items()) {
    (void)unused;
    if (k != "dtype" && k != "shape" && k != "data_offsets")
      corrupt(c, "tensor '", name, "': unknown field '", k, "'; expected only dtype, shape and data_offsets");
  }
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!v.contains(field)) corrupt(c, "tensor '", name, "': missing field '", field, "'");

  Entry e;
  e.name = name;
  const Json& dt = v["dtype"];
  if (!dt.is_string())
    corrupt(c, "tensor '", name, "': dtype is ", snippet(dt), "; expected a string, one of ", kSupportedCodes);
  const auto& code = dt.get_ref<const std::string&>();
  auto t = dtype_of_code(code);
  if (!t && is_unsupported_code(code))
    corrupt(c, "tensor '", name, "': dtype \"", code, "\" is valid safetensors but not supported by ciuic; expected one of ",
            kSupportedCodes);
  if (!t) corrupt(c, "tensor '", name, "': unknown dtype \"", code, "\"; expected one of ", kSupportedCodes);
  e.dtype = *t;

  const Json& sh = v["shape"];
  if (!sh.is_array()) corrupt(c, "tensor '", name, "': shape is ", snippet(sh), "; expected a list of non-negative integers");
  std::uint64_t numel = 1;
  bool overflow = false;
  for (const auto& d : sh) {
    auto n = as_u64(d);
    if (!n || *n > static_cast<std::uint64_t>(INT64_MAX))
      corrupt(c, "tensor '", name, "': shape ", snippet(sh), " has the dim ", snippet(d),
              "; expected a list of non-negative integers");
    e.shape.push_back(static_cast<std::int64_t>(*n));
    overflow = overflow || __builtin_mul_overflow(numel, *n, &numel);
  }

  const Json& off = v["data_offsets"];
  std::optional<std::uint64_t> b, en;
  if (off.is_array() && off.size() == 2) b = as_u64(off[0]), en = as_u64(off[1]);
  if (!b || !en)
    corrupt(c, "tensor '", name, "': data_offsets is ", snippet(off), "; expected [begin, end], non-negative integers");
  if (*b > *en || *en > buffer_size)
    corrupt(c, "tensor '", name, "': data_offsets [", *b, ", ", *en, "] out of range; expected begin <= end <= ",
            buffer_size, " (the size of the byte buffer)");
  e.begin = *b;
  e.end = *en;

  std::uint64_t bytes = 0;
  overflow = overflow || __builtin_mul_overflow(numel, static_cast<std::uint64_t>(dtype_size(e.dtype)), &bytes);
  if (overflow || bytes != e.end - e.begin)
    corrupt(c, "tensor '", name, "': data_offsets [", e.begin, ", ", e.end, "] hold ", e.end - e.begin,
            " bytes; expected ", overflow ? std::string("more than 2^64") : std::to_string(bytes), " for ", code,
            " shape ", shape_str(e.shape));
  return e;
}

// Validates a header against the byte buffer that follows it (buffer_size bytes).
Header parse_header(const Context& c, std::string_view text, std::uint64_t buffer_size) {
  ParsedJson p = parse_json(c, text);
  const Json& j = p.json;
  if (!j.is_object()) corrupt(c, "header is a JSON ", j.type_name(), "; expected an object");
  Header h;
  h.entries.reserve(p.top_keys.size());
  for (const std::string& name : p.top_keys) {  // header order; each lookup O(log n)
    const Json& v = j.at(name);
    if (name == kSafetensorsMetadataKey)
      h.metadata = parse_metadata(c, v);
    else
      h.entries.push_back(parse_entry(c, name, v, buffer_size));
  }
  // Stable: empty tensors sharing an offset keep header order.
  std::stable_sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : h.entries) {
    if (e.begin < pos)
      corrupt(c, "tensor '", e.name, "': data_offsets [", e.begin, ", ", e.end, "] overlap tensor '", prev->name,
              "' at [", prev->begin, ", ", prev->end, "]; expected disjoint ranges");
    if (e.begin > pos)
      corrupt(c, "bytes [", pos, ", ", e.begin, ") of the byte buffer belong to no tensor (before tensor '", e.name,
              "'); expected the tensors to cover the buffer without holes");
    pos = e.end;
    prev = &e;
  }
  if (pos != buffer_size)
    corrupt(c, "the byte buffer has ", buffer_size, " bytes but the tensors cover only ", pos,
            "; expected the tensors to cover the buffer exactly");
  return h;
}

// Reads every entry through read_at(offset from the start of the buffer, bytes, dst).
template <typename ReadAt>
NamedTensors read_tensors(const Context& c, const Header& h, Device device, ReadAt&& read_at) {
  NamedTensors out;
  out.reserve(h.entries.size());
  for (const Entry& e : h.entries) {
    Tensor t = make_tensor(e.shape, e.dtype, Device::cpu());
    std::uint64_t n = e.end - e.begin;
    if (n > 0) read_at(e.begin, static_cast<std::size_t>(n), t.data_ptr());
    if (e.dtype == DType::boolean) {
      const auto* p = static_cast<const unsigned char*>(t.data_ptr());
      for (std::uint64_t i = 0; i < n; ++i)
        if (p[i] > 1)
          corrupt(c, "tensor '", e.name, "': BOOL element ", i, " is the byte ", static_cast<int>(p[i]),
                  "; expected 0 or 1");
    }
    out.emplace_back(e.name, device.is_cpu() ? t : t.to(device));
  }
  return out;
}

// ---- files ----

class File {
 public:
  File() = default;
  explicit File(std::FILE* f) : f_(f) {}
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File() { close(); }
  void reset(std::FILE* f) {
    close();
    f_ = f;
  }
  std::FILE* get() const { return f_; }
  int close() {  // 0 on success; errno holds the reason otherwise
    std::FILE* f = f_;
    f_ = nullptr;
    return f ? std::fclose(f) : 0;
  }

 private:
  std::FILE* f_ = nullptr;
};

struct OpenFile {
  File file;
  std::uint64_t size = 0;
};

std::string errno_str(int err) { return std::strerror(err); }

const char* file_kind(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "of an unknown kind";
}

// Opens without blocking (a FIFO with no writer would block a plain open forever), checks
// that the path is a regular file, and only then reads.
void open_for_read(const Context& c, OpenFile& of) {
  int fd = ::open(c.source.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) detail::fail<IOError>(c.op, "cannot open '", c.source, "': ", errno_str(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    detail::fail<IOError>(c.op, "cannot stat '", c.source, "': ", errno_str(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    detail::fail<IOError>(c.op, "'", c.source, "' is not a regular file but ", file_kind(st.st_mode),
                          "; expected a regular file");
  }
  const int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) (void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);  // plain blocking reads from here on
  std::FILE* f = fdopen(fd, "rb");
  if (!f) {
    const int err = errno;
    ::close(fd);
    detail::fail<IOError>(c.op, "cannot open '", c.source, "': ", errno_str(err));
  }
  of.file.reset(f);
  of.size = static_cast<std::uint64_t>(st.st_size);
}

void read_exact(const Context& c, std::FILE* f, std::uint64_t offset, std::size_t n, void* dst, const char* what) {
  if (fseeko(f, static_cast<off_t>(offset), SEEK_SET) != 0)
    detail::fail<IOError>(c.op, "'", c.source, "': cannot seek to byte ", offset, " (", what, "): ", errno_str(errno));
  std::size_t got = std::fread(dst, 1, n, f);
  if (got != n) {
    if (std::ferror(f))
      detail::fail<IOError>(c.op, "'", c.source, "': read error at byte ", offset, " (", what, "): ", errno_str(errno));
    corrupt(c, "file ended after ", offset + got, " bytes while reading ", what, "; expected ", n,
            " bytes there (was the file changed while loading?)");
  }
}

struct FileHeader {
  Header header;
  std::uint64_t data_start;  // file offset of the byte buffer
};

FileHeader read_file_header(const Context& c, std::FILE* f, std::uint64_t size) {
  unsigned char first8[8] = {};
  if (size >= 8) read_exact(c, f, 0, 8, first8, "the header length");
  std::uint64_t n = check_prefix(c, first8, size);
  std::string text(static_cast<std::size_t>(n), '\0');
  if (n > 0) read_exact(c, f, 8, text.size(), text.data(), "the header");
  return {parse_header(c, text, size - 8 - n), 8 + n};
}

// Validates the names and returns the length field and the padded JSON header.
std::string encode_header(const char* op, const NamedTensors& tensors, const Metadata& metadata) {
  std::set<std::string_view> seen;
  for (const auto& [name, t] : tensors) {
    CIUIC_CHECK(t.defined(), ValueError, op, "tensor '", name, "' is undefined; expected a defined tensor");
    CIUIC_CHECK(name != kSafetensorsMetadataKey, ValueError, op, "the name '", name,
                "' is reserved for metadata; expected another tensor name");
    CIUIC_CHECK(seen.insert(name).second, ValueError, op, "the name '", name,
                "' appears twice; expected unique tensor names");
  }
  // Written piece by piece in the given order (a JSON object built by insertion would be
  // sorted, or quadratic with nlohmann's ordered_json); each piece is one small JSON value.
  std::string text = "{";
  auto dump = [&](const OrderedJson& v) {
    try {
      return v.dump();
    } catch (const OrderedJson::exception& e) {  // invalid UTF-8 in a name or metadata string
      detail::fail<ValueError>(op, "cannot encode the header (", e.what(),
                               "); expected tensor names and metadata to be valid UTF-8");
    }
  };
  if (!metadata.empty()) {
    OrderedJson m = OrderedJson::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    text += dump(OrderedJson(kSafetensorsMetadataKey)) + ":" + dump(m);
  }
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    std::uint64_t bytes = static_cast<std::uint64_t>(t.numel()) * t.element_size();
    OrderedJson entry = OrderedJson::object();
    entry["dtype"] = code_of(t.dtype());
    entry["shape"] = t.shape();
    entry["data_offsets"] = {offset, offset + bytes};
    if (text.size() > 1) text += ",";
    text += dump(OrderedJson(name)) + ":" + dump(entry);
    offset += bytes;
  }
  text += "}";
  text.append((8 - text.size() % 8) % 8, ' ');  // 8 + N stays a multiple of 8
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(static_cast<std::uint64_t>(text.size()) >> (8 * i));
  return out + text;
}

// The byte buffer, one tensor at a time: sink(const void*, size_t) receives it in order.
template <typename Sink>
void write_data(const NamedTensors& tensors, Sink&& sink) {
  for (const auto& [name, t] : tensors) {
    if (t.numel() == 0) continue;
    std::vector<unsigned char> bytes = detail::host_bytes(t, t.dtype());
    if (t.dtype() == DType::boolean)
      for (auto& b : bytes) b = b != 0;
    sink(bytes.data(), bytes.size());
  }
}

// The name of save's temporary files for `final_path`: "<final_path>.tmp.<pid>.<n>".
std::string temp_prefix(const std::string& final_path) { return final_path + ".tmp."; }

// Removes temporaries of `final_path` left by saves that were killed: names of the exact
// pattern "<file name>.tmp.<pid>.<n>" whose process no longer exists. Temporaries of live
// processes (this one included: another thread may be saving) are left alone. Best effort:
// a directory that cannot be listed, or a file that cannot be removed, is skipped.
void remove_stale_temporaries(const std::string& final_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path target(final_path);
  const std::string prefix = temp_prefix(target.filename().string());
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  auto digits = [](std::string_view v) {
    return !v.empty() && v.size() <= 18 && v.find_first_not_of("0123456789") == std::string_view::npos;
  };
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string_view rest = std::string_view(name).substr(prefix.size());  // "<pid>.<n>"
    const std::size_t dot = rest.find('.');
    if (dot == std::string_view::npos || !digits(rest.substr(0, dot)) || !digits(rest.substr(dot + 1))) continue;
    const long long pid = std::stoll(std::string(rest.substr(0, dot)));
    if (pid <= 0 || pid > INT32_MAX || pid == static_cast<long long>(getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    std::error_code rm;
    if (it->is_regular_file(rm)) fs::remove(it->path(), rm);
  }
}

// A temporary file next to the final path; removed unless committed.
class TempFile {
 public:
  TempFile(const char* op, const std::string& final_path) : op_(op), final_(final_path) {
    static std::atomic<std::uint64_t> counter{0};
    path_ = temp_prefix(final_) + std::to_string(static_cast<long>(getpid())) + "." + std::to_string(counter++);
    std::FILE* f = std::fopen(path_.c_str(), "wbx");
    if (!f)
      detail::fail<IOError>(op_, "cannot create the temporary file '", path_, "' to save '", final_, "': ",
                            errno_str(errno));
    file_.reset(f);
    created_ = true;
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (created_ && !committed_) {
      file_.close();
      std::remove(path_.c_str());
    }
  }

  void write(const void* p, std::size_t n) {
    if (n > 0 && std::fwrite(p, 1, n, file_.get()) != n)
      detail::fail<IOError>(op_, "cannot write '", path_, "' (saving '", final_, "'): ", errno_str(errno));
  }

  // Flushes to disk and renames over the final path.
  void commit() {
    if (std::fflush(file_.get()) != 0 || fsync(fileno(file_.get())) != 0)
      detail::fail<IOError>(op_, "cannot flush '", path_, "' (saving '", final_, "'): ", errno_str(errno));
    if (file_.close() != 0)
      detail::fail<IOError>(op_, "cannot close '", path_, "' (saving '", final_, "'): ", errno_str(errno));
    if (std::rename(path_.c_str(), final_.c_str()) != 0)
      detail::fail<IOError>(op_, "cannot rename '", path_, "' to '", final_, "': ", errno_str(errno));
    committed_ = true;
  }

 private:
  const char* op_;
  std::string final_;
  std::string path_;
  File file_;
  bool created_ = false;
  bool committed_ = false;
};

}  // namespace

// ---- public API ----

std::string serialize_safetensors(const NamedTensors& tensors, const Metadata& metadata) {
  std::string out = encode_header("serialize_safetensors", tensors, metadata);
  write_data(tensors, [&](const void* p, std::size_t n) { out.append(static_cast<const char*>(p), n); });
  return out;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  const char* op = "save_safetensors";
  std::string header = encode_header(op, tensors, metadata);  // rejects bad arguments before touching the disk
  remove_stale_temporaries(path);
  TempFile tmp(op, path);
  tmp.write(header.data(), header.size());
  write_data(tensors, [&](const void* p, std::size_t n) { tmp.write(p, n); });
  tmp.commit();
}

NamedTensors deserialize_safetensors(std::string_view bytes, Device device, const std::string& source) {
  Context c{"deserialize_safetensors", source};
  check_device_usable(device, c.op);
  const auto* base = reinterpret_cast<const unsigned char*>(bytes.data());
  std::uint64_t n = check_prefix(c, base, bytes.size());
  std::uint64_t data_start = 8 + n;
  Header h = parse_header(c, bytes.substr(8, n), bytes.size() - data_start);
  return read_tensors(c, h, device, [&](std::uint64_t off, std::size_t len, void* dst) {
    std::memcpy(dst, base + data_start + off, len);  // parse_header checked off + len <= buffer size
  });
}

Metadata deserialize_safetensors_metadata(std::string_view bytes, const std::string& source) {
  Context c{"deserialize_safetensors_metadata", source};
  const auto* base = reinterpret_cast<const unsigned char*>(bytes.data());
  std::uint64_t n = check_prefix(c, base, bytes.size());
  return parse_header(c, bytes.substr(8, n), bytes.size() - 8 - n).metadata;
}

NamedTensors load_safetensors(const std::string& path, Device device) {
  Context c{"load_safetensors", path};
  check_device_usable(device, c.op);
  OpenFile of;
  open_for_read(c, of);
  FileHeader fh = read_file_header(c, of.file.get(), of.size);
  return read_tensors(c, fh.header, device, [&](std::uint64_t off, std::size_t len, void* dst) {
    read_exact(c, of.file.get(), fh.data_start + off, len, dst, "tensor data");
  });
}

Metadata load_safetensors_metadata(const std::string& path) {
  Context c{"load_safetensors_metadata", path};
  OpenFile of;
  open_for_read(c, of);
  return read_file_header(c, of.file.get(), of.size).header.metadata;
}

void save_state_dict(const std::string& path, const NamedTensors& state, const Metadata& metadata) {
  save_safetensors(path, state, metadata);
}

StateDictMismatch load_state_dict(const std::string& path, const NamedTensors& state, bool strict) {
  const char* op = "load_state_dict";
  NamedTensors loaded = load_safetensors(path);
  std::map<std::string_view, const Tensor*> in_file;
  for (const auto& [name, t] : loaded) in_file.emplace(name, &t);
  std::map<std::string_view, const Tensor*> in_state;
  for (const auto& [name, t] : state) {
    CIUIC_CHECK(t.defined(), ValueError, op, "state tensor '", name, "' is undefined; expected defined tensors");
    CIUIC_CHECK(in_state.emplace(name, &t).second, ValueError, op, "the state has the name '", name,
                "' twice; expected unique names");
  }

  StateDictMismatch r;
  for (const auto& [name, t] : state)
    if (!in_file.count(name)) r.missing.push_back(name);
  for (const auto& [name, t] : loaded)
    if (!in_state.count(name)) r.unexpected.push_back(name);
  if (strict && (!r.missing.empty() || !r.unexpected.empty())) {
    auto join = [](const std::vector<std::string>& v) {
      std::string s;
      for (std::size_t i = 0; i < v.size() && i < 20; ++i) s += (i ? ", " : "") + ("'" + v[i] + "'");
      if (v.size() > 20) s += ", ... (" + std::to_string(v.size()) + " in all)";
      return s.empty() ? std::string("none") : s;
    };
    detail::fail<ValueError>(op, "'", path, "' does not match the state: missing from the file: ", join(r.missing),
                             "; not in the state: ", join(r.unexpected),
                             "; expected the same names (or strict = false)");
  }
  // Check every shape before copying anything.
  for (const auto& [name, t] : state) {
    auto it = in_file.find(name);
    if (it == in_file.end()) continue;
    CIUIC_CHECK(it->second->shape() == t.shape(), ShapeError, op, "'", path, "': tensor '", name, "' is ",
                describe(*it->second), " in the file but ", describe(t), " in the state; expected equal shapes");
  }
  NoGradGuard no_grad;
  for (const auto& [name, t] : state) {
    auto it = in_file.find(name);
    if (it == in_file.end()) continue;
    Tensor dst = t;  // a handle onto the state's storage
    dst.copy_(*it->second);
  }
  return r;
}

}  // namespace ciuic
