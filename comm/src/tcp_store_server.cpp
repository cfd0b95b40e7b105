// The TCP store server: one thread, poll() over the listening socket and every
// client; non-blocking I/O with per-connection buffers, so a slow, stalled or
// hostile client never blocks the others. GET and WAIT on missing keys park the
// connection until a SET or ADD provides the keys (the client owns the timeout).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ciuic/comm/store.h"
#include "socket.h"
#include "store_protocol.h"

namespace ciuic::comm {

namespace {

// Unauthenticated connections (no valid HELLO yet) are dropped after this long.
constexpr auto kHelloGrace = std::chrono::seconds(10);

struct Conn {
  int fd = -1;
  bool authed = false;
  bool closing = false;  // flush `out`, then close
  std::vector<char> in, out;
  std::chrono::steady_clock::time_point opened;
  // A parked GET or WAIT.
  std::uint8_t parked_op = 0;
  std::vector<std::string> parked_keys;
};

// Constant-time comparison: a wrong token's timing says nothing about the right one.
bool same_token(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

std::vector<std::string> split_keys(const std::string& joined) {
  std::vector<std::string> keys;
  std::size_t start = 0;
  for (;;) {
    std::size_t nl = joined.find('\n', start);
    keys.push_back(joined.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return keys;
}

}  // namespace

struct TCPStoreServer::State {
  std::string token;
  StoreLimits limits;
  std::map<std::string, std::vector<char>> kv;
  std::size_t total_bytes = 0;
  std::vector<Conn> conns;

  void reply(Conn& c, std::uint8_t op, const char* data, std::size_t n) {
    auto f = proto::frame(op, "", data, n);
    c.out.insert(c.out.end(), f.begin(), f.end());
  }
  void ok(Conn& c, const std::vector<char>& v) { reply(c, proto::OK, v.data(), v.size()); }
  void ok(Conn& c, const std::string& v) { reply(c, proto::OK, v.data(), v.size()); }
  // An error reply; the connection is closed once it is sent.
  void refuse(Conn& c, const std::string& msg) {
    std::string m = "store server: " + msg;
    reply(c, proto::ERR, m.data(), m.size());
    c.closing = true;
    c.in.clear();
  }

  bool store_value(Conn& c, const std::string& key, std::vector<char> value) {
    auto it = kv.find(key);
    std::size_t old = it == kv.end() ? 0 : it->first.size() + it->second.size();
    std::size_t now = key.size() + value.size();
    if (total_bytes - old + now > limits.max_total_bytes) {
      refuse(c, "store is full (" + std::to_string(total_bytes) + " of " + std::to_string(limits.max_total_bytes) +
                    " bytes used); cannot set '" + key + "'");
      return false;
    }
    total_bytes = total_bytes - old + now;
    kv[key] = std::move(value);
    return true;
  }

  // Answers a parked request when its keys exist now; returns true when answered.
  bool try_answer(Conn& c) {
    for (const auto& k : c.parked_keys)
      if (!kv.count(k)) return false;
    if (c.parked_op == proto::GET)
      ok(c, kv[c.parked_keys[0]]);
    else
      ok(c, std::string());
    c.parked_op = 0;
    c.parked_keys.clear();
    return true;
  }

  void handle(Conn& c, const proto::Header& h, std::string key, std::vector<char> value) {
    if (!c.authed) {
      if (h.op != proto::HELLO) return refuse(c, std::string("expected HELLO as the first message; got ") + proto::op_name(h.op));
      std::string presented(value.begin(), value.end());
      if (!token.empty() && !same_token(presented, token))
        return refuse(c, "wrong or missing token (CIUIC_STORE_TOKEN); connection refused");
      c.authed = true;
      return ok(c, std::string("ciuic-store-1"));
    }
    switch (h.op) {
      case proto::SET:
        if (store_value(c, key, std::move(value))) ok(c, std::string());
        return;
      case proto::GET:
      case proto::WAIT:
        c.parked_op = h.op;
        c.parked_keys = h.op == proto::GET ? std::vector<std::string>{key} : split_keys(key);
        try_answer(c);
        return;
      case proto::ADD: {
        if (value.size() != 8) return refuse(c, "ADD expects an 8-byte delta; got " + std::to_string(value.size()) + " bytes");
        std::int64_t delta = 0, cur = 0;
        std::memcpy(&delta, value.data(), 8);
        auto it = kv.find(key);
        if (it != kv.end()) {
          if (it->second.size() != 8) return refuse(c, "ADD on '" + key + "', which holds a non-counter value");
          std::memcpy(&cur, it->second.data(), 8);
        }
        cur += delta;
        std::vector<char> out(8);
        std::memcpy(out.data(), &cur, 8);
        if (store_value(c, key, out)) ok(c, out);
        return;
      }
      case proto::CHECK:
        return ok(c, std::string(kv.count(key) ? "1" : "0"));
      case proto::DEL: {
        auto it = kv.find(key);
        if (it != kv.end()) {
          total_bytes -= it->first.size() + it->second.size();
          kv.erase(it);
        }
        return ok(c, std::string());
      }
      case proto::HELLO:
        return refuse(c, "HELLO sent twice");
      default:
        return refuse(c, "unknown op " + std::to_string(h.op));
    }
  }

  // Parses every complete frame in c.in. Returns true when some key was written.
  bool parse(Conn& c) {
    bool wrote = false;
    while (!c.closing && c.parked_op == 0 && c.in.size() >= proto::kHeaderBytes) {
      proto::Header h = proto::decode_header(c.in.data());
      if (h.magic != proto::kMagic) return refuse(c, "malformed message (bad magic); expected a ciuic store frame"), wrote;
      std::size_t max_value = c.authed ? limits.max_value_bytes : proto::kMaxTokenBytes;
      if (h.key_bytes > limits.max_key_bytes)
        return refuse(c, "key of " + std::to_string(h.key_bytes) + " bytes exceeds the limit of " +
                             std::to_string(limits.max_key_bytes)), wrote;
      if (h.value_bytes > max_value)
        return refuse(c, "value of " + std::to_string(h.value_bytes) + " bytes exceeds the limit of " +
                             std::to_string(max_value)), wrote;
      std::size_t need = proto::kHeaderBytes + h.key_bytes + h.value_bytes;
      if (c.in.size() < need) break;
      std::string key(c.in.data() + proto::kHeaderBytes, h.key_bytes);
      std::vector<char> value(c.in.begin() + static_cast<std::ptrdiff_t>(proto::kHeaderBytes + h.key_bytes),
                              c.in.begin() + static_cast<std::ptrdiff_t>(need));
      c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(need));
      wrote = wrote || h.op == proto::SET || h.op == proto::ADD;
      handle(c, h, std::move(key), std::move(value));
    }
    return wrote;
  }
};

TCPStoreServer::TCPStoreServer(const std::string& host, int port, const std::string& token, StoreLimits limits)
    : host_(host), state_(std::make_unique<State>()) {
  state_->token = token;
  state_->limits = limits;
  listen_fd_ = net::listen_on(host, port, &port_, "TCPStoreServer");
  fcntl(listen_fd_, F_SETFL, fcntl(listen_fd_, F_GETFL) | O_NONBLOCK);
  if (::pipe2(wake_fd_, O_CLOEXEC) != 0) {
    net::close_fd(listen_fd_);
    ::ciuic::detail::fail<CommError>("TCPStoreServer", "pipe failed: ", net::errno_str(errno));
  }
  thread_ = std::thread([this] { serve(); });
}

TCPStoreServer::~TCPStoreServer() {
  char b = 1;
  if (::write(wake_fd_[1], &b, 1) < 0) { /* the loop also ends when the pipe closes */ }
  if (thread_.joinable()) thread_.join();
  for (auto& c : state_->conns) net::close_fd(c.fd);
  net::close_fd(listen_fd_);
  net::close_fd(wake_fd_[0]);
  net::close_fd(wake_fd_[1]);
}

void TCPStoreServer::serve() {
  State& s = *state_;
  std::vector<pollfd> fds;
  char buf[65536];
  for (;;) {
    fds.clear();
    fds.push_back({wake_fd_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (auto& c : s.conns) fds.push_back({c.fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
    int rc = ::poll(fds.data(), fds.size(), 1000);
    if (rc < 0 && errno != EINTR) return;  // nothing sensible left to do; clients time out
    if (fds[0].revents) return;
    if (fds[1].revents & POLLIN) {
      for (;;) {
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        if (s.conns.size() >= s.limits.max_connections) {
          ::close(fd);
          continue;
        }
        Conn c;
        c.fd = fd;
        c.opened = std::chrono::steady_clock::now();
        s.conns.push_back(std::move(c));
      }
    }
    bool wrote = false;
    // fds[i + 2] belongs to conns[i] for the connections that existed before this poll.
    std::size_t polled = fds.size() - 2;
    for (std::size_t i = 0; i < polled; ++i) {
      Conn& c = s.conns[i];
      short re = fds[i + 2].revents;
      if ((re & POLLIN) && !c.closing) {
        for (;;) {
          ssize_t k = ::recv(c.fd, buf, sizeof(buf), 0);
          if (k > 0) {
            c.in.insert(c.in.end(), buf, buf + k);
            if (c.in.size() > proto::kHeaderBytes + s.limits.max_key_bytes + s.limits.max_value_bytes) break;
            continue;
          }
          if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            c.closing = true;
            c.out.clear();
          }
          break;
        }
        wrote = s.parse(c) || wrote;
      } else if (re & (POLLHUP | POLLERR)) {
        c.closing = true;
        c.out.clear();
      }
      if (!c.out.empty()) {
        ssize_t k = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) c.out.erase(c.out.begin(), c.out.begin() + k);
        else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          c.out.clear();
          c.closing = true;
        }
      }
      if (!c.authed && !c.closing && std::chrono::steady_clock::now() - c.opened > kHelloGrace) {
        c.closing = true;
        c.out.clear();
      }
    }
    if (wrote) {
      for (auto& c : s.conns)
        if (c.parked_op && s.try_answer(c)) s.parse(c);  // frames queued behind the parked request
    }
    // Close connections that finished sending their last reply.
    for (auto& c : s.conns)
      if (c.closing && c.out.empty()) net::close_fd(c.fd);
    s.conns.erase(std::remove_if(s.conns.begin(), s.conns.end(), [](const Conn& c) { return c.fd < 0; }), s.conns.end());
  }
}

}  // namespace ciuic::comm
