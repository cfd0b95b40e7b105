#include "socket.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace ciuic::comm::net {

int ms_left(Deadline d) {
  auto left = std::chrono::duration_cast<Milliseconds>(d - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 1000000 ? 1000000 : static_cast<int>(left);
}

std::string errno_str(int err) { return "errno " + std::to_string(err) + " (" + std::strerror(err) + ")"; }

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

namespace {

struct AddrInfo {
  addrinfo* head = nullptr;
  ~AddrInfo() {
    if (head) freeaddrinfo(head);
  }
};

void resolve(const std::string& host, int port, bool passive, AddrInfo& out, const char* what) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &out.head);
  if (rc != 0)
    ::ciuic::detail::fail<CommError>(what, "cannot resolve '", host, "': ", gai_strerror(rc), "; expected a host name or IP address");
}

// Waits for fd to become readable/writable before the deadline.
void wait_fd(int fd, short events, Deadline d, const char* what, const char* doing) {
  for (;;) {
    pollfd p{fd, events, 0};
    int left = ms_left(d);
    int rc = ::poll(&p, 1, left);
    if (rc > 0) return;
    if (rc == 0) ::ciuic::detail::fail<CommTimeout>(what, "timed out while ", doing);
    if (errno != EINTR) ::ciuic::detail::fail<CommError>(what, "poll failed while ", doing, ": ", errno_str(errno));
  }
}

}  // namespace

int connect_retry(const std::string& host, int port, Deadline d, const char* what) {
  std::string last = "no address";
  for (int attempt = 0;; ++attempt) {
    AddrInfo ai;
    resolve(host, port, false, ai, what);
    for (addrinfo* a = ai.head; a; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
      if (fd < 0) {
        last = errno_str(errno);
        continue;
      }
      int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        int left = std::min(ms_left(d), 2000);
        rc = ::poll(&p, 1, left);
        int err = 0;
        socklen_t len = sizeof(err);
        if (rc > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
          rc = 0;
        } else {
          errno = rc == 0 ? ETIMEDOUT : (err ? err : errno);
          rc = -1;
        }
      }
      if (rc == 0) {
        int flags = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return fd;
      }
      last = errno_str(errno);
      ::close(fd);
    }
    if (ms_left(d) == 0)
      ::ciuic::detail::fail<CommTimeout>(what, "could not connect to ", host, ":", port, " before the timeout (", attempt + 1,
                                " attempts; last: ", last, "); expected the store server (rank 0) to listen there");
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50 * (attempt + 1), 500)));
  }
}

int listen_on(const std::string& host, int port, int* bound_port, const char* what) {
  AddrInfo ai;
  resolve(host, port, true, ai, what);
  std::string last = "no address";
  for (addrinfo* a = ai.head; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last = errno_str(errno);
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 512) == 0) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
      int p = ss.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port)
                                      : ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
      if (bound_port) *bound_port = p;
      return fd;
    }
    last = errno_str(errno);
    ::close(fd);
  }
  ::ciuic::detail::fail<CommError>(what, "cannot listen on ", host, ":", port, ": ", last,
                          "; expected a local address and a free port");
}

void send_all(int fd, const void* data, std::size_t n, Deadline d, const char* what) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    wait_fd(fd, POLLOUT, d, what, "sending");
    ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      ::ciuic::detail::fail<CommError>(what, "send failed: ", errno_str(errno), " (the peer closed the connection?)");
    }
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

void recv_all(int fd, void* data, std::size_t n, Deadline d, const char* what) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    wait_fd(fd, POLLIN, d, what, "waiting for a reply");
    ssize_t k = ::recv(fd, p, n, MSG_DONTWAIT);
    if (k == 0) ::ciuic::detail::fail<CommError>(what, "the peer closed the connection");
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      ::ciuic::detail::fail<CommError>(what, "recv failed: ", errno_str(errno));
    }
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

int free_port(const std::string& host) {
  int port = 0;
  int fd = listen_on(host, 0, &port, "free_port");
  ::close(fd);
  return port;
}

}  // namespace ciuic::comm::net
