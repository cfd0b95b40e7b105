// ciuic-launch: starts the local ranks of a data-parallel job.
//
//   ciuic-launch --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P] PROGRAM ARGS...
//
// Every rank gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT (and, on one node without CIUIC_STORE_TOKEN, a fresh random token
// so that no stray process can join the store). Each line a rank prints comes out
// prefixed "[rank R] " on the launcher's stdout or stderr. When a rank fails (a
// non-zero exit or a signal), the launcher stops the others (SIGTERM, then SIGKILL
// after --grace seconds) and exits with that rank's status (128 + signal for a
// signal). SIGINT/SIGTERM to the launcher are passed on to every rank.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <string>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vector>

#include "../src/socket.h"

namespace {

volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

struct Child {
  int rank = 0;
  pid_t pid = -1;
  int out = -1, err = -1;
  std::string out_buf, err_buf;
  bool exited = false;
  int status = 0;
};

void usage(FILE* f) {
  std::fprintf(f,
               "usage: ciuic-launch --nproc-per-node N [--nnodes M] [--node-rank R] [--master-addr A]\n"
               "                    [--master-port P] [--grace SECONDS] [--] PROGRAM [ARGS...]\n"
               "Starts N local ranks of a job of N*M ranks with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,\n"
               "MASTER_ADDR and MASTER_PORT set; prefixes their output with the rank; when one fails, stops the\n"
               "others and exits non-zero. Defaults: --nnodes 1 --node-rank 0 --master-addr 127.0.0.1,\n"
               "--master-port a free port on one node (29500 with several), --grace 5.\n");
}

int parse_int(const char* opt, const char* v, int lo, int hi) {
  char* end = nullptr;
  long x = v ? std::strtol(v, &end, 10) : 0;
  if (!v || *end != '\0' || x < lo || x > hi) {
    std::fprintf(stderr, "ciuic-launch: %s '%s': expected an integer in [%d, %d]\n", opt, v ? v : "", lo, hi);
    std::exit(2);
  }
  return static_cast<int>(x);
}

std::string random_token() {
  unsigned char b[16] = {0};
  FILE* f = std::fopen("/dev/urandom", "rb");
  if (!f || std::fread(b, 1, sizeof(b), f) != sizeof(b)) {
    if (f) std::fclose(f);
    std::fprintf(stderr, "ciuic-launch: cannot read /dev/urandom for the store token\n");
    std::exit(1);
  }
  std::fclose(f);
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s += hex[c >> 4];
    s += hex[c & 15];
  }
  return s;
}

// Writes every complete line of buf to fd with the rank prefix (all of it at EOF).
void flush_lines(std::string& buf, FILE* to, int rank, bool eof) {
  std::size_t start = 0;
  for (;;) {
    std::size_t nl = buf.find('\n', start);
    if (nl == std::string::npos) break;
    std::fprintf(to, "[rank %d] %.*s\n", rank, static_cast<int>(nl - start), buf.data() + start);
    start = nl + 1;
  }
  buf.erase(0, start);
  if (eof && !buf.empty()) {
    std::fprintf(to, "[rank %d] %s\n", rank, buf.c_str());
    buf.clear();
  }
  std::fflush(to);
}

bool drain(int& fd, std::string& buf, FILE* to, int rank) {
  char tmp[8192];
  ssize_t k = ::read(fd, tmp, sizeof(tmp));
  if (k > 0) {
    buf.append(tmp, static_cast<std::size_t>(k));
    flush_lines(buf, to, rank, false);
    return true;
  }
  if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
    flush_lines(buf, to, rank, true);
    ::close(fd);
    fd = -1;
  }
  return false;
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string status_str(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + strsignal(WTERMSIG(status));
  return "stopped";
}

double now_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  int nproc = -1, nnodes = 1, node_rank = 0, port = -1, grace = 5;
  std::string addr = "127.0.0.1";
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ciuic-launch: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--nproc-per-node" || a == "--nproc_per_node") nproc = parse_int("--nproc-per-node", value("--nproc-per-node"), 1, 4096);
    else if (a == "--nnodes") nnodes = parse_int("--nnodes", value("--nnodes"), 1, 1 << 20);
    else if (a == "--node-rank" || a == "--node_rank") node_rank = parse_int("--node-rank", value("--node-rank"), 0, 1 << 20);
    else if (a == "--master-addr" || a == "--master_addr") addr = value("--master-addr");
    else if (a == "--master-port" || a == "--master_port") port = parse_int("--master-port", value("--master-port"), 1, 65535);
    else if (a == "--grace") grace = parse_int("--grace", value("--grace"), 0, 3600);
    else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (a == "--") {
      ++i;
      break;
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "ciuic-launch: unknown option %s\n", a.c_str());
      usage(stderr);
      return 2;
    } else {
      break;
    }
  }
  if (nproc < 1 || i >= argc) {
    usage(stderr);
    return 2;
  }
  if (node_rank >= nnodes) {
    std::fprintf(stderr, "ciuic-launch: --node-rank %d is not below --nnodes %d\n", node_rank, nnodes);
    return 2;
  }
  if (port < 0) {
    if (nnodes > 1) port = 29500;
    else {
      try {
        port = ciuic::comm::net::free_port(addr);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "ciuic-launch: %s\n", e.what());
        return 1;
      }
    }
  }
  const char* token_env = std::getenv("CIUIC_STORE_TOKEN");
  std::string token = token_env ? token_env : (nnodes == 1 ? random_token() : "");
  if (nnodes > 1 && !token_env)
    std::fprintf(stderr, "ciuic-launch: note: CIUIC_STORE_TOKEN is not set; any host that reaches %s:%d could join "
                         "the store. Export the same secret on every node.\n", addr.c_str(), port);

  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const int world = nproc * nnodes;
  std::vector<Child> kids(static_cast<std::size_t>(nproc));
  for (int local = 0; local < nproc; ++local) {
    Child& c = kids[static_cast<std::size_t>(local)];
    c.rank = node_rank * nproc + local;
    int po[2], pe[2];
    if (::pipe2(po, O_CLOEXEC) != 0 || ::pipe2(pe, O_CLOEXEC) != 0) {
      std::perror("ciuic-launch: pipe");
      return 1;
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("ciuic-launch: fork");
      return 1;
    }
    if (pid == 0) {
      ::setpgid(0, 0);
      ::dup2(po[1], 1);
      ::dup2(pe[1], 2);
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      signal(SIGPIPE, SIG_DFL);
      setenv("RANK", std::to_string(c.rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("GROUP_RANK", std::to_string(node_rank).c_str(), 1);
      setenv("MASTER_ADDR", addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      if (!token.empty()) setenv("CIUIC_STORE_TOKEN", token.c_str(), 1);
      // N ranks on one machine: one BLAS/OpenMP thread each unless asked otherwise.
      if (nproc > 1) {
        setenv("OMP_NUM_THREADS", "1", 0);
        setenv("OPENBLAS_NUM_THREADS", "1", 0);
      }
      ::execvp(argv[i], argv + i);
      std::fprintf(stderr, "ciuic-launch: cannot run %s: %s\n", argv[i], std::strerror(errno));
      ::_exit(127);
    }
    ::setpgid(pid, pid);
    ::close(po[1]);
    ::close(pe[1]);
    c.pid = pid;
    c.out = po[0];
    c.err = pe[0];
  }

  int result = 0;
  int failed_rank = -1;
  double stop_sent = -1;
  bool killed = false;
  auto stop_all = [&](int sig) {
    for (auto& c : kids)
      if (!c.exited) ::kill(-c.pid, sig);
  };
  for (;;) {
    if (g_signal && stop_sent < 0) {
      std::fprintf(stderr, "[ciuic-launch] %s received; stopping every rank\n", strsignal(g_signal));
      stop_all(SIGTERM);
      stop_sent = now_s();
      if (result == 0) result = 128 + g_signal;
    }
    std::vector<pollfd> fds;
    std::vector<std::pair<Child*, bool>> who;
    for (auto& c : kids) {
      if (c.out >= 0) {
        fds.push_back({c.out, POLLIN, 0});
        who.push_back({&c, true});
      }
      if (c.err >= 0) {
        fds.push_back({c.err, POLLIN, 0});
        who.push_back({&c, false});
      }
    }
    if (!fds.empty()) {
      int rc = ::poll(fds.data(), fds.size(), 100);
      if (rc > 0)
        for (std::size_t k = 0; k < fds.size(); ++k)
          if (fds[k].revents) {
            Child* c = who[k].first;
            if (who[k].second) drain(c->out, c->out_buf, stdout, c->rank);
            else drain(c->err, c->err_buf, stderr, c->rank);
          }
    } else {
      ::usleep(20000);
    }
    bool all_done = true;
    for (auto& c : kids) {
      if (!c.exited) {
        int st = 0;
        pid_t r = ::waitpid(c.pid, &st, WNOHANG);
        if (r == c.pid) {
          c.exited = true;
          c.status = st;
          bool failed = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
          if (failed && failed_rank < 0 && stop_sent < 0) {
            failed_rank = c.rank;
            result = exit_code(st);
            std::fprintf(stderr, "[ciuic-launch] rank %d (pid %d) %s; stopping the other ranks\n", c.rank,
                         static_cast<int>(c.pid), status_str(st).c_str());
            stop_all(SIGTERM);
            stop_sent = now_s();
          } else if (failed && result == 0) {
            result = exit_code(st);
          }
        }
      }
      all_done = all_done && c.exited && c.out < 0 && c.err < 0;
    }
    if (stop_sent >= 0 && !killed && now_s() - stop_sent > grace) {
      stop_all(SIGKILL);
      killed = true;
    }
    if (all_done) break;
    // A rank that exited but left a grandchild holding the pipe open: stop reading after the grace period.
    bool all_exited = true;
    for (auto& c : kids) all_exited = all_exited && c.exited;
    if (all_exited && stop_sent >= 0 && now_s() - stop_sent > grace + 1) break;
  }
  if (failed_rank >= 0)
    std::fprintf(stderr, "[ciuic-launch] job failed: rank %d failed first (exit status %d)\n", failed_rank, result);
  return result;
}
