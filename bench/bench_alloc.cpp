// bench_alloc: what the caching allocator buys. For a mix of sizes, time
// allocate+free through the caching allocator against the raw backend
// (aligned_alloc on the CPU, cudaMalloc/cudaFree on a GPU), and the cost of
// creating a tensor. Ratios are raw / cached from the same run.
//   bench_alloc [--json PATH] [--cuda]
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "ciuic/ciuic.h"
#include "ciuic/models/cli.h"
#include "timing.h"

#ifdef CIUIC_WITH_CUDA
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#endif

using namespace ciuic;
using namespace ciuic::bench;

namespace {

constexpr int kOpsPerRun = 1000;
const std::size_t kSizes[] = {512, 4096, 65536, 1 << 20, 8 << 20};

void raw_cycle(Device d, std::size_t bytes) {
  for (int i = 0; i < kOpsPerRun; ++i) {
    if (d.is_cpu()) {
      void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
      // touch one byte so the allocation cannot be optimised away
      static_cast<volatile char*>(p)[0] = 1;
      std::free(p);
    } else {
#ifdef CIUIC_WITH_CUDA
      void* p = nullptr;
      CIUIC_CUDA_CHECK(cudaMalloc(&p, bytes));
      CIUIC_CUDA_CHECK(cudaFree(p));
#endif
    }
  }
}

void cached_cycle(Allocator& a, std::size_t bytes) {
  for (int i = 0; i < kOpsPerRun; ++i) a.deallocate(a.allocate(bytes, nullptr));
}

std::string per_op_us(const Timing& t) { return std::to_string(t.median_ms * 1000.0 / kOpsPerRun).substr(0, 7); }

}  // namespace

int main(int argc, char** argv) {
  std::string json;
  bool cuda = false;
  cli::Parser p("bench_alloc", "[--json PATH] [--cuda]", argc, argv);
  while (p.next()) {
    if (p.is("--json")) json = p.text();
    else if (p.is("--cuda")) cuda = true;
    else return p.unknown();
  }
  if (p.stop()) return p.exit_code();
  try {
    Device d = cuda ? Device::cuda(0) : Device::cpu();
    check_device_usable(d, "bench_alloc");
    Allocator& alloc = allocator_for(d);
    std::vector<Row> rows;
    for (std::size_t bytes : kSizes) {
      // Host timing on purpose: allocation is a host-side cost on both devices.
      Timing raw = time_it([&] { raw_cycle(d, bytes); }, 2, 9);
      Timing cached = time_it([&] { cached_cycle(alloc, bytes); }, 2, 9);
      std::string n = std::to_string(bytes) + " B";
      rows.push_back({"raw " + n, raw, {{"us/op", per_op_us(raw)}, {"raw/cached", "1.00"}}});
      rows.push_back({"cached " + n, cached,
                      {{"us/op", per_op_us(cached)}, {"raw/cached", std::to_string(raw.median_ms / cached.median_ms).substr(0, 6)}}});
    }
    Timing make = time_it([&] { for (int i = 0; i < kOpsPerRun; ++i) (void)empty({64, 64}, TensorOptions().device(d)); }, 2, 9);
    rows.push_back({"empty({64, 64}) tensor", make, {{"us/op", per_op_us(make)}, {"raw/cached", "-"}}});
    std::string title = "bench_alloc on " + machine_description(d) + ", " + today() + " (" +
                        std::to_string(kOpsPerRun) + " allocate+free per run, median of 9)";
    print_table(title, rows);
    std::cout << alloc.stats().str() << "\n";
    if (!json.empty()) write_json(json, "bench_alloc", rows);
  } catch (const Error& e) {
    std::cerr << "bench_alloc: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
