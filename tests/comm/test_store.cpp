// [comm] tests that need one process: the stores, rendezvous parsing, bucket
// assignment, backend availability, and ciuic-launch itself.
#include <arpa/inet.h>
#include <cstring>
#include <map>
#include <optional>
#include <sys/wait.h>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <netinet/in.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "dist_util.h"

using namespace ciuic;
using namespace ciuic::comm;
using namespace std::chrono_literals;

namespace {

// A raw client socket to the server (for sending garbage).
int raw_connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  return fd;
}

// Reads until the server closes the connection (or 5 s pass); returns what came.
std::string read_until_close(int fd) {
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string got;
  char buf[4096];
  for (;;) {
    ssize_t k = ::recv(fd, buf, sizeof(buf), 0);
    if (k <= 0) break;
    got.append(buf, static_cast<std::size_t>(k));
  }
  ::close(fd);
  return got;
}

std::string hello_frame(const std::string& token) {
  std::string f(13, '\0');
  std::uint32_t magic = 0x564B4943, klen = 0, vlen = static_cast<std::uint32_t>(token.size());
  std::memcpy(&f[0], &magic, 4);
  f[4] = 1;
  std::memcpy(&f[5], &klen, 4);
  std::memcpy(&f[9], &vlen, 4);
  return f + token;
}

EnvLookup env_of(std::map<std::string, std::string> m) {
  return [m](const std::string& k) -> std::optional<std::string> {
    auto it = m.find(k);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}

}  // namespace

TEST_CASE("TCP store: set, get, add, check, wait, del between clients", "[comm][store]") {
  TCPStoreServer server("127.0.0.1", 0);
  TCPStore a("127.0.0.1", server.port(), 5s), b("127.0.0.1", server.port(), 5s);
  a.set("k", std::string("value"));
  CHECK(b.get_string("k") == "value");
  CHECK(a.add("n", 2) == 2);
  CHECK(b.add("n", 3) == 5);
  CHECK(b.check("k"));
  CHECK_FALSE(b.check("missing"));
  // A GET that waits for a key another client sets later.
  std::thread t([&] {
    std::this_thread::sleep_for(100ms);
    TCPStore c("127.0.0.1", server.port(), 5s);
    c.set("late", std::string("here"));
  });
  CHECK(a.get_string("late") == "here");
  t.join();
  b.wait({"k", "late"});
  a.del("k");
  CHECK_FALSE(b.check("k"));
  // Binary values survive.
  std::vector<char> bin = {0, 1, '\n', static_cast<char>(255)};
  a.set("bin", bin);
  CHECK(b.get("bin") == bin);
}

TEST_CASE("TCP store: a missing key times out with a clear error", "[comm][store]") {
  TCPStoreServer server("127.0.0.1", 0);
  TCPStore a("127.0.0.1", server.port(), 300ms);
  auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH_ALL(a.get("never"), CommTimeout, "GET 'never'", "timed out after 300 ms");
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  TCPStore b("127.0.0.1", server.port(), 300ms);
  CHECK_THROWS_WITH_ALL(b.wait({"x", "y"}), CommTimeout, "timed out");
}

TEST_CASE("TCP store: a server that never answers times out", "[comm][store]") {
  // Listens (the kernel completes the connection) but never reads or answers.
  int port = 0;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(::listen(fd, 16) == 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH_ALL(TCPStore("127.0.0.1", port, 400ms), CommTimeout, "did not answer within 400 ms");
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  ::close(fd);
  // Nobody listening at all: connecting retries until the timeout.
  int closed_port = port;
  CHECK_THROWS_WITH_ALL(TCPStore("127.0.0.1", closed_port, 300ms), CommTimeout, "could not connect");
}

TEST_CASE("TCP store: garbage, oversized messages and wrong tokens are refused; the server keeps serving", "[comm][store]") {
  StoreLimits lim;
  lim.max_key_bytes = 64;
  lim.max_value_bytes = 1024;
  TCPStoreServer server("127.0.0.1", 0, "s3cret", lim);
  // Garbage bytes.
  int fd = raw_connect(server.port());
  std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(::send(fd, junk.data(), junk.size(), 0) == static_cast<ssize_t>(junk.size()));
  CHECK(read_until_close(fd).find("malformed message") != std::string::npos);
  // A huge length in a well-formed header.
  fd = raw_connect(server.port());
  std::string big = hello_frame("s3cret");
  std::string hdr(13, '\0');
  std::uint32_t magic = 0x564B4943, klen = 0xFFFFFFF0u, vlen = 0;
  std::memcpy(&hdr[0], &magic, 4);
  hdr[4] = 2;
  std::memcpy(&hdr[5], &klen, 4);
  std::memcpy(&hdr[9], &vlen, 4);
  std::string msg = big + hdr;
  REQUIRE(::send(fd, msg.data(), msg.size(), 0) == static_cast<ssize_t>(msg.size()));
  CHECK(read_until_close(fd).find("exceeds the limit of 64") != std::string::npos);
  // A request before HELLO.
  fd = raw_connect(server.port());
  std::string noh = hdr;
  klen = 1;
  std::memcpy(&noh[5], &klen, 4);
  noh[4] = 3;
  noh += "k";
  REQUIRE(::send(fd, noh.data(), noh.size(), 0) == static_cast<ssize_t>(noh.size()));
  CHECK(read_until_close(fd).find("expected HELLO") != std::string::npos);
  // Wrong and missing tokens.
  CHECK_THROWS_WITH_ALL(TCPStore("127.0.0.1", server.port(), 2s, "guess"), CommError, "wrong or missing token");
  CHECK_THROWS_WITH_ALL(TCPStore("127.0.0.1", server.port(), 2s), CommError, "wrong or missing token");
  // An oversized value from an authenticated client is refused too.
  TCPStore ok("127.0.0.1", server.port(), 2s, "s3cret");
  CHECK_THROWS_WITH_ALL(ok.set("v", std::vector<char>(2000, 'x')), CommError, "exceeds the limit of 1024");
  // The server still works for a good client.
  TCPStore good("127.0.0.1", server.port(), 2s, "s3cret");
  good.set("a", std::string("b"));
  CHECK(good.get_string("a") == "b");
}

TEST_CASE("TCP store: listens only on the address it is given", "[comm][store]") {
  TCPStoreServer server("127.0.0.1", 0);
  CHECK(server.host() == "127.0.0.1");
  // 127.0.0.2 is loopback too, but not the bound address: nothing listens there.
  CHECK_THROWS_AS(TCPStore("127.0.0.2", server.port(), 300ms), CommTimeout);
}

TEST_CASE("File store: set, get, add across handles, timeout", "[comm][store]") {
  auto dir = std::filesystem::temp_directory_path() / ("ciuic_fs_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  FileStore a(dir.string(), 2s), b(dir.string(), 300ms);
  a.set("gloo/rank 0", std::string("addr"));
  CHECK(b.get_string("gloo/rank 0") == "addr");
  CHECK(a.add("c", 1) == 1);
  CHECK(b.add("c", 5) == 6);
  CHECK_THROWS_WITH_ALL(b.get("nope"), CommTimeout, "'nope'", "within 300 ms");
  store_barrier(a, "bar", 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("Rendezvous from torchrun-style, Slurm and Open MPI environments", "[comm][rendezvous]") {
  auto r = rendezvous_from_env(env_of({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "4"},
                                       {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "1234"}}));
  CHECK(r.source == "env");
  CHECK((r.rank == 3 && r.world_size == 8 && r.local_rank == 1 && r.local_world_size == 4));
  CHECK((r.master_addr == "10.0.0.1" && r.master_port == 1234));
  auto s = rendezvous_from_env(env_of({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "1"},
                                       {"SLURM_TASKS_PER_NODE", "4(x4)"}, {"SLURM_JOB_NODELIST", "gpu[03-06],cpu1"},
                                       {"SLURM_JOB_ID", "123456"}}));
  CHECK(s.source == "slurm");
  CHECK((s.rank == 5 && s.world_size == 16 && s.local_rank == 1 && s.local_world_size == 4));
  CHECK(s.master_addr == "gpu03");
  CHECK(s.master_port == 20000 + 123456 % 20000);
  auto o = rendezvous_from_env(env_of({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                                       {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                                       {"MASTER_ADDR", "node7"}, {"CIUIC_STORE_TOKEN", "t"}}));
  CHECK(o.source == "openmpi");
  CHECK((o.rank == 2 && o.world_size == 4 && o.master_addr == "node7" && o.master_port == 29500 && o.token == "t"));
  auto f = rendezvous_from_env(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"CIUIC_INIT_METHOD", "file:///shared/job1"}}));
  CHECK(f.store_file == "/shared/job1");

  CHECK_THROWS_WITH_ALL(rendezvous_from_env(env_of({{"RANK", "4"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "a"}})),
                        ValueError, "RANK='4'", "[0, 3]");
  CHECK_THROWS_WITH_ALL(rendezvous_from_env(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}})), ValueError, "MASTER_ADDR");
  CHECK_THROWS_WITH_ALL(rendezvous_from_env(env_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}})),
                        ValueError, "RANK='x'");
  CHECK_THROWS_WITH_ALL(rendezvous_from_env(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"},
                                                    {"MASTER_PORT", "70000"}})),
                        ValueError, "MASTER_PORT='70000'");
  CHECK_THROWS_WITH_ALL(rendezvous_from_env(env_of({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}})),
                        ValueError, "mpirun -x MASTER_ADDR");
  auto one = rendezvous_from_env(env_of({}));
  CHECK((one.source == "single" && one.rank == 0 && one.world_size == 1 && one.master_port == 0));
  std::shared_ptr<TCPStoreServer> srv;
  auto st = make_store(one, std::chrono::seconds(5), &srv);  // any free port
  REQUIRE(srv != nullptr);
  CHECK(srv->port() > 0);
  st->set("k", std::string("v"));
  CHECK(st->get_string("k") == "v");
  CHECK(slurm_first_host("n[003-004]") == "n003");
  CHECK(slurm_first_host("a[1-3,7],b") == "a1");
  CHECK(slurm_first_host("solo") == "solo");
  CHECK(slurm_first_host("x[9]-ib") == "x9-ib");
}

TEST_CASE("Bucket assignment: reverse order, caps, (dtype, device) groups", "[comm][buckets]") {
  // Six parameters: 400 B f32 each, one f64 of 800 B in the middle.
  std::vector<BucketParam> p(6, BucketParam{DType::f32, Device::cpu(), 400});
  p[2] = BucketParam{DType::f64, Device::cpu(), 800};
  std::vector<int> rev = {5, 4, 3, 2, 1, 0};
  // First cap 500 B: the first f32 bucket closes after two parameters; later ones at 1000 B.
  auto b = assign_buckets(p, rev, 500, 1000);
  REQUIRE(b.size() == 3);
  CHECK(b[0] == std::vector<int>{5, 4});
  CHECK(b[1] == std::vector<int>{3, 1, 0});  // 1200 B >= 1000 closes it
  CHECK(b[2] == std::vector<int>{2});        // the f64 group, first param at position 3
  // Huge caps: one bucket per dtype, ordered by first appearance.
  auto one = assign_buckets(p, rev, 1 << 20, 1 << 20);
  REQUIRE(one.size() == 2);
  CHECK(one[0] == std::vector<int>{5, 4, 3, 1, 0});
  CHECK(one[1] == std::vector<int>{2});
  // A different order (the rebuild) gives buckets in that order.
  auto re = assign_buckets(p, {0, 1, 2, 3, 4, 5}, 500, 1000);
  CHECK(re[0] == std::vector<int>{0, 1});
  CHECK_THROWS_AS(assign_buckets(p, {7}, 1, 1), IndexError);
  CHECK_THROWS_AS(assign_buckets(p, rev, 0, 1), ValueError);
}

TEST_CASE("Backends: what this build has, and a clear error for what it lacks", "[comm][backend]") {
#ifdef CIUIC_WITH_GLOO
  CHECK(backend_available(Backend::gloo));
#else
  CHECK_THROWS_WITH_ALL(init_process_group(Backend::gloo), NotImplementedError, "libgloo-dev", "-Dgloo=enabled");
#endif
  if (!backend_available(Backend::nccl)) {
    TCPStoreServer server("127.0.0.1", 0);
    auto store = std::make_shared<TCPStore>("127.0.0.1", server.port(), 2s);
    CHECK_THROWS_WITH_ALL(make_communicator(Backend::nccl, store, 0, 1), NotImplementedError, "backend nccl",
                          "NCCL");
  }
}

#ifdef CIUIC_WITH_GLOO
TEST_CASE("Gloo world of one: collectives are identities, errors name the tensor", "[comm][gloo]") {
  TCPStoreServer server("127.0.0.1", 0);
  auto store = std::make_shared<TCPStore>("127.0.0.1", server.port(), 10s);
  auto c = make_communicator(Backend::gloo, store, 0, 1);
  Tensor t = from_vector<float>({1, 2, 3}, {3});
  auto w = c->allreduce(t, ReduceOp::avg);
  w->wait();
  CHECK(w->is_completed());
  CHECK(t.to_vector<float>() == std::vector<float>{1, 2, 3});
  Tensor nc = zeros({3, 2}).t();
  CHECK_THROWS_WITH_ALL(c->allreduce(nc), ValueError, "not contiguous");
  Tensor i = from_vector<std::int64_t>({1}, {1});
  CHECK_THROWS_WITH_ALL(c->allreduce(i, ReduceOp::avg), DTypeError, "avg", "i64");
  Tensor out = zeros({2});
  CHECK_THROWS_WITH_ALL(c->allgather(t, out), ShapeError, "allgather", "3 elements");
}
#endif

TEST_CASE("ciuic-launch: prefixes output, stops the others when one rank fails, exits non-zero", "[comm][launch]") {
  const char* launch = std::getenv("CIUIC_LAUNCH");
  if (!launch) {
    WARN("CIUIC_LAUNCH not set (meson test sets it); skipped");
    return;
  }
  auto run = [](const std::string& cmd, std::string& out) {
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[512];
    while (std::fgets(buf, sizeof(buf), p)) out += buf;
    int st = ::pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  std::string out;
  int rc = run(std::string(launch) + " --nproc-per-node 3 sh -c 'echo hello from $RANK of $WORLD_SIZE' 2>&1", out);
  CHECK(rc == 0);
  CHECK(out.find("[rank 0] hello from 0 of 3") != std::string::npos);
  CHECK(out.find("[rank 2] hello from 2 of 3") != std::string::npos);
  // Rank 1 fails at once; the others would sleep for a minute.
  out.clear();
  auto t0 = std::chrono::steady_clock::now();
  rc = run(std::string(launch) + " --nproc-per-node 3 --grace 2 sh -c "
                                 "'if [ $RANK = 1 ]; then echo bye; exit 3; fi; sleep 60' 2>&1",
           out);
  CHECK(rc == 3);
  CHECK(std::chrono::steady_clock::now() - t0 < 20s);
  CHECK(out.find("rank 1") != std::string::npos);
  CHECK(out.find("stopping the other ranks") != std::string::npos);
  // Second node of two: global ranks 2 and 3 of 4, local ranks 0 and 1, the given store address.
  out.clear();
  rc = run(std::string(launch) + " --nproc-per-node 2 --nnodes 2 --node-rank 1 --master-addr 127.0.0.1 "
                                 "--master-port 12345 sh -c 'echo env $RANK $WORLD_SIZE $LOCAL_RANK $MASTER_PORT' 2>&1",
           out);
  CHECK(rc == 0);
  CHECK(out.find("[rank 2] env 2 4 0 12345") != std::string::npos);
  CHECK(out.find("[rank 3] env 3 4 1 12345") != std::string::npos);
  // SIGTERM to the launcher reaches every rank; it exits with 128 + 15.
  out.clear();
  t0 = std::chrono::steady_clock::now();
  rc = run("sh -c '" + std::string(launch) + " --nproc-per-node 2 --grace 2 sleep 60 & pid=$!; sleep 1; kill -TERM $pid; "
           "wait $pid' 2>&1",
           out);
  CHECK(rc == 128 + 15);
  CHECK(std::chrono::steady_clock::now() - t0 < 20s);
  CHECK(out.find("stopping every rank") != std::string::npos);
  // A missing program.
  out.clear();
  rc = run(std::string(launch) + " --nproc-per-node 1 /nonexistent/program 2>&1", out);
  CHECK(rc == 127);
  CHECK(run(std::string(launch) + " 2>&1", out) == 2);
}
