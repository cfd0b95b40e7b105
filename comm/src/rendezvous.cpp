#include "ciuic/comm/rendezvous.h"

#include <cctype>
#include <cstdlib>
#include <mutex>

namespace ciuic::comm {

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

namespace {

int parse_int(const EnvLookup& env, const std::string& name, std::optional<int> fallback, int lo, int hi) {
  auto v = env(name);
  if (!v || v->empty()) {
    CIUIC_CHECK(fallback.has_value(), ValueError, "rendezvous", name, " is not set; expected an integer in [", lo,
                ", ", hi, "]");
    return *fallback;
  }
  std::size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(*v, &used);
  } catch (...) {
    used = 0;
  }
  CIUIC_CHECK(used == v->size() && x >= lo && x <= hi, ValueError, "rendezvous", name, "='", *v,
              "'; expected an integer in [", lo, ", ", hi, "]");
  return static_cast<int>(x);
}

// Slurm's "2(x3),1" form of SLURM_TASKS_PER_NODE: the first node's count.
std::optional<int> first_count(const std::optional<std::string>& v) {
  if (!v || v->empty() || !std::isdigit(static_cast<unsigned char>((*v)[0]))) return std::nullopt;
  return std::atoi(v->c_str());
}

}  // namespace

std::string slurm_first_host(const std::string& nodelist) {
  CIUIC_CHECK(!nodelist.empty(), ValueError, "slurm_first_host", "empty node list");
  // The first entry ends at a comma outside brackets.
  std::size_t depth = 0, end = 0;
  for (; end < nodelist.size(); ++end) {
    char ch = nodelist[end];
    if (ch == '[') ++depth;
    if (ch == ']') --depth;
    if (ch == ',' && depth == 0) break;
  }
  std::string entry = nodelist.substr(0, end);
  std::size_t lb = entry.find('[');
  if (lb == std::string::npos) return entry;
  std::size_t rb = entry.find(']', lb);
  CIUIC_CHECK(rb != std::string::npos, ValueError, "slurm_first_host", "unbalanced '[' in '", nodelist, "'");
  std::string inside = entry.substr(lb + 1, rb - lb - 1);
  std::size_t stop = inside.find_first_of(",-");
  std::string first = inside.substr(0, stop);
  return entry.substr(0, lb) + first + entry.substr(rb + 1);
}

RendezvousInfo rendezvous_from_env(const EnvLookup& env) {
  RendezvousInfo r;
  constexpr int kMax = 1 << 20;
  if (env("RANK") || env("WORLD_SIZE")) {
    r.source = "env";
    r.world_size = parse_int(env, "WORLD_SIZE", std::nullopt, 1, kMax);
    r.rank = parse_int(env, "RANK", std::nullopt, 0, r.world_size - 1);
    r.local_rank = parse_int(env, "LOCAL_RANK", 0, 0, kMax);
    r.local_world_size = parse_int(env, "LOCAL_WORLD_SIZE", r.world_size == 1 ? 1 : r.local_rank + 1, 1, kMax);
    auto addr = env("MASTER_ADDR");
    if (addr && !addr->empty()) r.master_addr = *addr;
    else CIUIC_CHECK(r.world_size == 1 || env("CIUIC_INIT_METHOD"), ValueError, "rendezvous",
                     "RANK and WORLD_SIZE are set but MASTER_ADDR is not; expected the address of rank 0's host");
    r.master_port = parse_int(env, "MASTER_PORT", 29500, 1, 65535);
  } else if (env("SLURM_PROCID")) {
    r.source = "slurm";
    r.world_size = parse_int(env, "SLURM_NTASKS", std::nullopt, 1, kMax);
    r.rank = parse_int(env, "SLURM_PROCID", std::nullopt, 0, r.world_size - 1);
    r.local_rank = parse_int(env, "SLURM_LOCALID", 0, 0, kMax);
    auto per_node = env("SLURM_NTASKS_PER_NODE");
    std::optional<int> lws = per_node ? first_count(per_node) : first_count(env("SLURM_TASKS_PER_NODE"));
    r.local_world_size = lws.value_or(1);
    auto addr = env("MASTER_ADDR");
    if (addr && !addr->empty()) {
      r.master_addr = *addr;
    } else {
      auto nodes = env("SLURM_JOB_NODELIST");
      if (!nodes) nodes = env("SLURM_NODELIST");
      CIUIC_CHECK(nodes && !nodes->empty(), ValueError, "rendezvous",
                  "Slurm job without SLURM_JOB_NODELIST or MASTER_ADDR; expected one of them to find rank 0's node");
      r.master_addr = slurm_first_host(*nodes);
    }
    int job = parse_int(env, "SLURM_JOB_ID", 0, 0, 2147483647);
    r.master_port = parse_int(env, "MASTER_PORT", 20000 + job % 20000, 1, 65535);
  } else if (env("OMPI_COMM_WORLD_RANK")) {
    r.source = "openmpi";
    r.world_size = parse_int(env, "OMPI_COMM_WORLD_SIZE", std::nullopt, 1, kMax);
    r.rank = parse_int(env, "OMPI_COMM_WORLD_RANK", std::nullopt, 0, r.world_size - 1);
    r.local_rank = parse_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0, 0, kMax);
    r.local_world_size = parse_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", 1, 1, kMax);
    auto addr = env("MASTER_ADDR");
    CIUIC_CHECK((addr && !addr->empty()) || env("CIUIC_INIT_METHOD") || r.world_size == 1, ValueError, "rendezvous",
                "Open MPI job without MASTER_ADDR; expected `mpirun -x MASTER_ADDR=<rank 0's host> ...` "
                "(or CIUIC_INIT_METHOD=file:///shared/dir)");
    if (addr && !addr->empty()) r.master_addr = *addr;
    r.master_port = parse_int(env, "MASTER_PORT", 29500, 1, 65535);
  } else {
    r.source = "single";  // no launcher: one process, its store on any free loopback port
    r.master_port = 0;
  }
  CIUIC_CHECK(r.local_rank < r.local_world_size || r.source == "single", ValueError, "rendezvous", "local rank ",
              r.local_rank, " is not below the local world size ", r.local_world_size);
  if (auto m = env("CIUIC_INIT_METHOD"); m && !m->empty()) {
    CIUIC_CHECK(m->rfind("file://", 0) == 0 && m->size() > 7, ValueError, "rendezvous", "CIUIC_INIT_METHOD='", *m,
                "'; expected file:///path/to/a/shared/dir");
    r.store_file = m->substr(7);
  }
  if (auto t = env("CIUIC_STORE_TOKEN")) r.token = *t;
  return r;
}

StorePtr make_store(const RendezvousInfo& info, Milliseconds timeout, std::shared_ptr<TCPStoreServer>* server) {
  if (!info.store_file.empty()) return std::make_shared<FileStore>(info.store_file, timeout);
  int port = info.master_port;
  if (info.rank == 0) {
    auto s = std::make_shared<TCPStoreServer>(info.master_addr, info.master_port, info.token);
    port = s->port();  // differs from master_port only when that is 0 (any free port)
    if (server) *server = s;
  }
  return std::make_shared<TCPStore>(info.master_addr, port, timeout, info.token);
}

StorePtr process_store(Milliseconds timeout) {
  static std::mutex mu;
  static std::shared_ptr<TCPStoreServer> server;
  static StorePtr store;
  std::lock_guard<std::mutex> lock(mu);
  if (!store) store = make_store(rendezvous_from_env(), timeout, &server);
  return store;
}

}  // namespace ciuic::comm
