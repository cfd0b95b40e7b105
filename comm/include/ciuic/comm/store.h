// Key-value stores for the rendezvous: ranks exchange small blobs (the NCCL
// unique id, the Gloo addresses) before any collective exists.
//
// TCPStore: rank 0 serves, every rank (rank 0 included) is a client. The server
//   listens only on the address it is given, bounds key and value sizes, answers
//   a malformed or oversized message with an error and closes that connection
//   (the server keeps serving), and, with a token, refuses every client whose
//   first message does not carry it. Clients retry connecting until their
//   timeout, and every request has the same timeout.
// FileStore: one file per key in a directory on a shared file system (written
//   to a temporary name, then renamed: readers never see half a value).
//
// Wire protocol (TCP, little-endian): a frame is
//   u32 magic 'CIKV' | u8 op | u32 key bytes | u32 value bytes | key | value
// The first frame of a connection is HELLO whose value is the token ("" for none);
// the server answers every frame with OK (value: the result) or ERR (value: the
// message). Ops: HELLO, SET, GET (waits until the key exists), ADD (value: i64
// delta; result: the new i64), CHECK (result: "1"/"0"), WAIT (key: '\n'-joined
// keys), DEL.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ciuic/comm/communicator.h"

namespace ciuic::comm {

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::vector<char>& value) = 0;
  // Waits (up to timeout()) until key exists, then returns its value.
  virtual std::vector<char> get(const std::string& key) = 0;
  // Adds delta to the i64 counter at key (0 when new) and returns the result.
  virtual std::int64_t add(const std::string& key, std::int64_t delta) = 0;
  virtual bool check(const std::string& key) = 0;
  // Waits until every key exists; CommTimeout naming the missing keys otherwise.
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(const std::vector<std::string>& keys, Milliseconds timeout) = 0;
  virtual void del(const std::string& key) = 0;
  virtual Milliseconds timeout() const = 0;

  void set(const std::string& key, const std::string& value) { set(key, std::vector<char>(value.begin(), value.end())); }
  std::string get_string(const std::string& key) {
    auto v = get(key);
    return std::string(v.begin(), v.end());
  }
};
using StorePtr = std::shared_ptr<Store>;

struct StoreLimits {
  std::size_t max_key_bytes = 4096;
  std::size_t max_value_bytes = 16u << 20;   // 16 MiB per value
  std::size_t max_total_bytes = 256u << 20;  // all keys and values together
  std::size_t max_connections = 4096;
};

// The rank-0 side: a thread that serves the store until destroyed.
class TCPStoreServer {
 public:
  // host: the address to listen on (a numeric IP or a name resolving to one);
  // port 0 picks a free port (see port()). token: "" accepts every client.
  TCPStoreServer(const std::string& host, int port, const std::string& token = "", StoreLimits limits = {});
  ~TCPStoreServer();
  TCPStoreServer(const TCPStoreServer&) = delete;
  TCPStoreServer& operator=(const TCPStoreServer&) = delete;
  int port() const { return port_; }
  const std::string& host() const { return host_; }

 private:
  struct State;
  void serve();
  std::string host_;
  int port_ = 0;
  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};  // a pipe that stops the loop
  std::unique_ptr<State> state_;
  std::thread thread_;
};

// A client connection (one per rank; not thread-safe, as the rendezvous needs none).
class TCPStore : public Store {
 public:
  TCPStore(const std::string& host, int port, Milliseconds timeout = std::chrono::seconds(300),
           const std::string& token = "");
  ~TCPStore() override;

  void set(const std::string& key, const std::vector<char>& value) override;
  std::vector<char> get(const std::string& key) override;
  std::int64_t add(const std::string& key, std::int64_t delta) override;
  bool check(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, Milliseconds timeout) override;
  void del(const std::string& key) override;
  Milliseconds timeout() const override { return timeout_; }
  using Store::set;

 private:
  std::vector<char> request(std::uint8_t op, const std::string& key, const std::vector<char>& value,
                            Milliseconds timeout, const char* what);
  std::string host_;
  int port_;
  Milliseconds timeout_;
  int fd_ = -1;
};

class FileStore : public Store {
 public:
  // dir is created when missing. Every rank of a job must use the same dir, and
  // a fresh one per job (old keys would be read as this job's).
  explicit FileStore(const std::string& dir, Milliseconds timeout = std::chrono::seconds(300),
                     StoreLimits limits = {});
  void set(const std::string& key, const std::vector<char>& value) override;
  std::vector<char> get(const std::string& key) override;
  std::int64_t add(const std::string& key, std::int64_t delta) override;
  bool check(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, Milliseconds timeout) override;
  void del(const std::string& key) override;
  Milliseconds timeout() const override { return timeout_; }
  using Store::set;

 private:
  std::string path_of(const std::string& key) const;
  std::string dir_;
  Milliseconds timeout_;
  StoreLimits limits_;
};

// Every key prefixed with "prefix/" (separate namespaces on one store).
class PrefixStore : public Store {
 public:
  PrefixStore(std::string prefix, StorePtr base) : prefix_(std::move(prefix) + "/"), base_(std::move(base)) {}
  void set(const std::string& key, const std::vector<char>& value) override { base_->set(prefix_ + key, value); }
  std::vector<char> get(const std::string& key) override { return base_->get(prefix_ + key); }
  std::int64_t add(const std::string& key, std::int64_t delta) override { return base_->add(prefix_ + key, delta); }
  bool check(const std::string& key) override { return base_->check(prefix_ + key); }
  void wait(const std::vector<std::string>& keys) override { wait(keys, base_->timeout()); }
  void wait(const std::vector<std::string>& keys, Milliseconds timeout) override;
  void del(const std::string& key) override { base_->del(prefix_ + key); }
  Milliseconds timeout() const override { return base_->timeout(); }
  using Store::set;

 private:
  std::string prefix_;
  StorePtr base_;
};

// Waits until `count` ranks have called it with the same key (a store-level
// barrier, for before any communicator exists).
void store_barrier(Store& store, const std::string& key, int count);

}  // namespace ciuic::comm
