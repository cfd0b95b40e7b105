// The TCP store client.
#include <cstring>

#include "ciuic/comm/store.h"
#include "socket.h"
#include "store_protocol.h"

namespace ciuic::comm {

namespace {
// The largest reply a client accepts: a value of the server's default limit plus slack.
constexpr std::size_t kMaxReplyBytes = (16u << 20) + 4096;

std::string join_keys(const std::vector<std::string>& keys) {
  std::string j;
  for (std::size_t i = 0; i < keys.size(); ++i) j += (i ? "\n" : "") + keys[i];
  return j;
}
}  // namespace

TCPStore::TCPStore(const std::string& host, int port, Milliseconds timeout, const std::string& token)
    : host_(host), port_(port), timeout_(timeout) {
  CIUIC_CHECK(timeout.count() > 0, ValueError, "TCPStore", "timeout ", timeout.count(), " ms; expected > 0");
  CIUIC_CHECK(token.size() <= proto::kMaxTokenBytes, ValueError, "TCPStore", "token of ", token.size(),
              " bytes; expected at most ", proto::kMaxTokenBytes);
  auto d = net::deadline_after(timeout);
  fd_ = net::connect_retry(host, port, d, "TCPStore");
  try {
    auto f = proto::frame(proto::HELLO, "", token.data(), token.size());
    net::send_all(fd_, f.data(), f.size(), d, "TCPStore HELLO");
    char hdr[proto::kHeaderBytes];
    net::recv_all(fd_, hdr, sizeof(hdr), d, "TCPStore HELLO");
    proto::Header h = proto::decode_header(hdr);
    CIUIC_COMM_CHECK(h.magic == proto::kMagic && h.value_bytes <= 4096, CommError, "TCPStore",
                "the server at ", host, ":", port, " did not answer as a ciuic store; expected a store frame");
    std::string msg(h.value_bytes, '\0');
    net::recv_all(fd_, msg.data(), msg.size(), d, "TCPStore HELLO");
    CIUIC_COMM_CHECK(h.op == proto::OK, CommError, "TCPStore", "connecting to ", host, ":", port, " was refused: ", msg);
  } catch (const CommTimeout& e) {
    net::close_fd(fd_);
    ::ciuic::detail::fail<CommTimeout>("TCPStore", "the server at ", host, ":", port, " did not answer within ",
                              timeout.count(), " ms (", e.what(), ")");
  } catch (...) {
    net::close_fd(fd_);
    throw;
  }
}

TCPStore::~TCPStore() { net::close_fd(fd_); }

std::vector<char> TCPStore::request(std::uint8_t op, const std::string& key, const std::vector<char>& value,
                                    Milliseconds timeout, const char* what) {
  std::string where = std::string(proto::op_name(op)) + " '" + key + "' on store " + host_ + ":" + std::to_string(port_);
  CIUIC_COMM_CHECK(fd_ >= 0, CommError, "TCPStore", where,
              ": the connection was closed after an earlier failure; expected a fresh TCPStore");
  auto d = net::deadline_after(timeout);
  try {
    auto f = proto::frame(op, key, value.data(), value.size());
    net::send_all(fd_, f.data(), f.size(), d, what);
    char hdr[proto::kHeaderBytes];
    net::recv_all(fd_, hdr, sizeof(hdr), d, what);
    proto::Header h = proto::decode_header(hdr);
    if (h.magic != proto::kMagic || (h.op != proto::OK && h.op != proto::ERR) || h.value_bytes > kMaxReplyBytes)
      ::ciuic::detail::fail<CommError>("TCPStore", where, ": malformed reply from the server");
    std::vector<char> out(h.value_bytes);
    net::recv_all(fd_, out.data(), out.size(), d, what);
    if (h.op == proto::ERR) {
      net::close_fd(fd_);
      ::ciuic::detail::fail<CommError>("TCPStore", where, ": ", std::string(out.begin(), out.end()));
    }
    return out;
  } catch (const CommTimeout&) {
    net::close_fd(fd_);  // a late reply would be read as the answer to the next request
    ::ciuic::detail::fail<CommTimeout>("TCPStore", where, " timed out after ", timeout.count(),
                              " ms; expected every rank to reach this point (is a rank missing or stuck?)");
  } catch (const CommError& e) {
    net::close_fd(fd_);
    if (std::string(e.what()).rfind("TCPStore", 0) == 0) throw;
    ::ciuic::detail::fail<CommError>("TCPStore", where, ": ", e.what());
  }
}

void TCPStore::set(const std::string& key, const std::vector<char>& value) {
  request(proto::SET, key, value, timeout_, "TCPStore::set");
}

std::vector<char> TCPStore::get(const std::string& key) { return request(proto::GET, key, {}, timeout_, "TCPStore::get"); }

std::int64_t TCPStore::add(const std::string& key, std::int64_t delta) {
  std::vector<char> v(8);
  std::memcpy(v.data(), &delta, 8);
  auto r = request(proto::ADD, key, v, timeout_, "TCPStore::add");
  CIUIC_COMM_CHECK(r.size() == 8, CommError, "TCPStore::add", "reply of ", r.size(), " bytes; expected 8");
  std::int64_t out = 0;
  std::memcpy(&out, r.data(), 8);
  return out;
}

bool TCPStore::check(const std::string& key) {
  auto r = request(proto::CHECK, key, {}, timeout_, "TCPStore::check");
  return r.size() == 1 && r[0] == '1';
}

void TCPStore::wait(const std::vector<std::string>& keys, Milliseconds timeout) {
  if (keys.empty()) return;
  request(proto::WAIT, join_keys(keys), {}, timeout, "TCPStore::wait");
}

void TCPStore::del(const std::string& key) { request(proto::DEL, key, {}, timeout_, "TCPStore::del"); }

void PrefixStore::wait(const std::vector<std::string>& keys, Milliseconds timeout) {
  std::vector<std::string> full;
  for (const auto& k : keys) full.push_back(prefix_ + k);
  base_->wait(full, timeout);
}

void store_barrier(Store& store, const std::string& key, int count) {
  std::int64_t n = store.add(key + "/arrived", 1);
  if (n == count) store.set(key + "/done", std::string("1"));
  store.wait({key + "/done"});
}

}  // namespace ciuic::comm
