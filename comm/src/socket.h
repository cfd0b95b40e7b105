// Small POSIX socket helpers with deadlines, for the store and the launcher.
// Every failure is a CommError (CommTimeout past the deadline) naming `what`.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "ciuic/comm/communicator.h"

namespace ciuic::comm::net {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline deadline_after(Milliseconds ms) { return Clock::now() + ms; }
// Milliseconds left until d (0 when past), capped for poll().
int ms_left(Deadline d);

// Connects to host:port, retrying refused connections until the deadline
// (the server may not be up yet). Returns a blocking socket with TCP_NODELAY.
int connect_retry(const std::string& host, int port, Deadline d, const char* what);
// A listening socket bound to host:port only (port 0: a free port, returned in *bound_port).
int listen_on(const std::string& host, int port, int* bound_port, const char* what);
// Send / receive exactly n bytes before the deadline.
void send_all(int fd, const void* data, std::size_t n, Deadline d, const char* what);
void recv_all(int fd, void* data, std::size_t n, Deadline d, const char* what);
void close_fd(int& fd);
// "errno 111 (Connection refused)"
std::string errno_str(int err);
// A free TCP port on host (bound, then released: a small race remains, which the
// callers accept for tests and the launcher's default).
int free_port(const std::string& host = "127.0.0.1");

}  // namespace ciuic::comm::net
