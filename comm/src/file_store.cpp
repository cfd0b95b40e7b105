// The shared-file store: one file per key (hex-encoded name) in a directory.
// Writers write "<file>.tmp.<pid>.<n>" and rename it into place (atomic on POSIX
// file systems, NFS included), so readers see a whole value or nothing. ADD holds
// an flock on "<file>.lock" for its read-modify-write.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sys/file.h>
#include <thread>
#include <unistd.h>

#include "ciuic/comm/store.h"
#include "socket.h"

namespace ciuic::comm {

namespace fs = std::filesystem;

namespace {
std::atomic<int> tmp_counter{0};

bool read_file(const std::string& path, std::vector<char>& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return true;
}

void write_atomic(const std::string& path, const std::vector<char>& value) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(tmp_counter++);
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    CIUIC_CHECK(f.good(), IOError, "FileStore::set", "cannot write ", tmp, ": ", net::errno_str(errno));
    f.write(value.data(), static_cast<std::streamsize>(value.size()));
    f.flush();
    CIUIC_CHECK(f.good(), IOError, "FileStore::set", "writing ", tmp, " failed: ", net::errno_str(errno));
  }
  CIUIC_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, IOError, "FileStore::set", "rename ", tmp, " -> ", path,
              " failed: ", net::errno_str(errno));
}
}  // namespace

FileStore::FileStore(const std::string& dir, Milliseconds timeout, StoreLimits limits)
    : dir_(dir), timeout_(timeout), limits_(limits) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  CIUIC_CHECK(fs::is_directory(dir), IOError, "FileStore", "cannot create or use the directory '", dir, "'",
              ec ? ": " + ec.message() : std::string(), "; expected a writable directory on a shared file system");
}

std::string FileStore::path_of(const std::string& key) const {
  CIUIC_CHECK(!key.empty() && key.size() <= limits_.max_key_bytes && key.size() <= 100, ValueError, "FileStore",
              "key of ", key.size(), " bytes; expected 1 to ", std::min<std::size_t>(limits_.max_key_bytes, 100));
  static const char* hex = "0123456789abcdef";
  std::string name = "k_";
  for (unsigned char ch : key) {
    name += hex[ch >> 4];
    name += hex[ch & 15];
  }
  return dir_ + "/" + name;
}

void FileStore::set(const std::string& key, const std::vector<char>& value) {
  CIUIC_CHECK(value.size() <= limits_.max_value_bytes, ValueError, "FileStore::set", "value of ", value.size(),
              " bytes for '", key, "' exceeds the limit of ", limits_.max_value_bytes);
  write_atomic(path_of(key), value);
}

std::vector<char> FileStore::get(const std::string& key) {
  wait({key});
  std::vector<char> out;
  CIUIC_CHECK(read_file(path_of(key), out), IOError, "FileStore::get", "'", key, "' vanished while reading");
  return out;
}

std::int64_t FileStore::add(const std::string& key, std::int64_t delta) {
  std::string path = path_of(key);
  std::string lock = path + ".lock";
  int fd = ::open(lock.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  CIUIC_CHECK(fd >= 0, IOError, "FileStore::add", "cannot open ", lock, ": ", net::errno_str(errno));
  if (::flock(fd, LOCK_EX) != 0) {
    int err = errno;
    ::close(fd);
    ::ciuic::detail::fail<IOError>("FileStore::add", "flock ", lock, " failed: ", net::errno_str(err));
  }
  std::int64_t cur = 0;
  std::vector<char> v;
  try {
    if (read_file(path, v)) {
      CIUIC_CHECK(v.size() == 8, ValueError, "FileStore::add", "'", key, "' holds a non-counter value of ", v.size(), " bytes");
      std::memcpy(&cur, v.data(), 8);
    }
    cur += delta;
    v.assign(8, 0);
    std::memcpy(v.data(), &cur, 8);
    write_atomic(path, v);
  } catch (...) {
    ::flock(fd, LOCK_UN);
    ::close(fd);
    throw;
  }
  ::flock(fd, LOCK_UN);
  ::close(fd);
  return cur;
}

bool FileStore::check(const std::string& key) { return fs::exists(path_of(key)); }

void FileStore::wait(const std::vector<std::string>& keys, Milliseconds timeout) {
  auto d = net::deadline_after(timeout);
  auto sleep = std::chrono::milliseconds(1);
  for (;;) {
    std::string missing;
    for (const auto& k : keys)
      if (!check(k)) missing += (missing.empty() ? "'" : ", '") + k + "'";
    if (missing.empty()) return;
    if (net::ms_left(d) == 0)
      ::ciuic::detail::fail<CommTimeout>("FileStore::wait", "keys ", missing, " did not appear in ", dir_, " within ",
                                timeout.count(), " ms; expected every rank to reach this point");
    std::this_thread::sleep_for(sleep);
    sleep = std::min(sleep * 2, std::chrono::milliseconds(50));
  }
}

void FileStore::del(const std::string& key) {
  std::error_code ec;
  fs::remove(path_of(key), ec);
}

}  // namespace ciuic::comm
