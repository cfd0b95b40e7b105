// bench_allreduce: allreduce(sum) time and bandwidth from 1 KiB to 256 MiB, run as
// ranks under ciuic-launch:
//
//   ciuic-launch --nproc-per-node 4 build/bench/bench_allreduce [--backend gloo|nccl]
//                [--min-bytes 1024] [--max-bytes 268435456] [--repeats 5] [--json FILE]
//
// Bandwidths as nccl-tests computes them: algbw = bytes / time; busbw = algbw * 2(n-1)/n
// (the bytes each rank's link carries in a ring allreduce, comparable across n).
// Time: the median over repeats of the slowest rank's time for one allreduce (f32).
// Gloo moves CPU tensors (loopback TCP here); NCCL moves CUDA tensors on GPU LOCAL_RANK.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include <ciuic/ciuic.h>
#include <ciuic/comm/comm.h>
#include <ciuic/models/cli.h>

#include "timing.h"

using namespace ciuic;

int main(int argc, char** argv) {
  comm::Backend backend = comm::Backend::gloo;
  std::int64_t min_bytes = 1024, max_bytes = 256ll << 20;
  int repeats = 5;
  std::string json;
  cli::Parser p("bench_allreduce", "[--backend gloo|nccl] [--min-bytes N] [--max-bytes N] [--repeats N] [--json PATH]",
                argc, argv);
  while (p.next()) {
    if (p.is("--backend")) {
      const std::string b = p.text();
      if (!p.stop() && b != "gloo" && b != "nccl") return p.error("--backend '" + b + "'; expected gloo or nccl");
      backend = b == "nccl" ? comm::Backend::nccl : comm::Backend::gloo;
    } else if (p.is("--min-bytes")) min_bytes = p.integer<std::int64_t>(4, std::int64_t{1} << 40);
    else if (p.is("--max-bytes")) max_bytes = p.integer<std::int64_t>(4, std::int64_t{1} << 40);
    else if (p.is("--repeats")) repeats = p.integer(1, 1000000);
    else if (p.is("--json")) json = p.text();
    else return p.unknown();
  }
  if (p.stop()) return p.exit_code();
  try {
    auto c = comm::init_process_group(backend);
    const int n = c->size();
    Device dev = c->device();
    std::vector<bench::Row> rows;
    for (std::int64_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
      std::int64_t count = std::max<std::int64_t>(1, bytes / 4);
      Tensor t = full({count}, 1.0, TensorOptions(DType::f32).device(dev));
      int reps = bytes >= (64ll << 20) ? std::max(2, repeats / 2) : repeats;
      int inner = bytes <= (64 << 10) ? 20 : 1;  // small messages: average 20 calls per sample
      c->barrier()->wait();
      bench::Timing tm = bench::time_it(
          [&] {
            for (int k = 0; k < inner; ++k) c->allreduce(t)->wait();
            if (dev.is_cuda()) synchronize(dev);
          },
          1, reps);
      // The slowest rank's median (one allreduce).
      Tensor slow = full({1}, tm.median_ms / inner, TensorOptions(DType::f64).device(dev));
      c->allreduce(slow, comm::ReduceOp::max)->wait();
      double ms = slow.item();
      double algbw = static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
      double busbw = algbw * 2.0 * (n - 1) / n;
      bench::Row r;
      char name[64];
      std::snprintf(name, sizeof(name), "%lld B", static_cast<long long>(bytes));
      r.name = name;
      r.t = tm;
      r.t.median_ms = ms;
      r.t.min_ms /= inner;
      r.t.max_ms /= inner;
      char a[32], b[32];
      std::snprintf(a, sizeof(a), "%.4f", algbw);
      std::snprintf(b, sizeof(b), "%.4f", busbw);
      r.extra = {{"algbw GB/s", a}, {"busbw GB/s", b}};
      rows.push_back(r);
    }
    if (c->rank() == 0) {
      std::string title = std::string("allreduce(sum) f32, ") + comm::backend_name(backend) + ", " + std::to_string(n) +
                          " ranks, " + bench::machine_description(dev) + ", " + bench::today();
      bench::print_table(title, rows);
      if (!json.empty()) bench::write_json(json, title, rows);
    }
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_allreduce: %s\n", e.what());
    return 1;
  }
}
