#include "timing.h"

#include "ciuic/backend_flags.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "ciuic/error.h"
#include "ciuic/stream.h"

#ifdef CIUIC_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace ciuic::bench {

Timing time_it(const std::function<void()>& fn, int warmup, int repeats, Device device) {
  CIUIC_CHECK(repeats > 0 && warmup >= 0, ValueError, "time_it", "repeats ", repeats, ", warmup ", warmup,
              "; expected repeats > 0 and warmup >= 0");
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  ms.reserve(repeats);
  if (device.is_cuda()) {
    StreamHandle s = current_stream(device);
    std::vector<Event> start, stop;
    for (int i = 0; i < repeats; ++i) {
      start.emplace_back(device, true);
      stop.emplace_back(device, true);
    }
    synchronize(device);
    for (int i = 0; i < repeats; ++i) {
      start[i].record(s);
      fn();
      stop[i].record(s);
    }
    for (int i = 0; i < repeats; ++i) {
      stop[i].synchronize();
      ms.push_back(start[i].elapsed_ms(stop[i]));
    }
  } else {
    for (int i = 0; i < repeats; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      fn();
      auto t1 = std::chrono::steady_clock::now();
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  Timing t;
  t.repeats = repeats;
  t.min_ms = sorted.front();
  t.max_ms = sorted.back();
  std::size_t n = sorted.size();
  t.median_ms = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  return t;
}

void print_table(const std::string& title, const std::vector<Row>& rows) {
  std::cout << "\n== " << title << " ==\n";
  std::cout << std::left << std::setw(44) << "name" << std::right << std::setw(12) << "median ms" << std::setw(12)
            << "min ms" << std::setw(12) << "max ms";
  if (!rows.empty())
    for (auto& [k, v] : rows.front().extra) std::cout << std::setw(14) << k;
  std::cout << "\n";
  for (const Row& r : rows) {
    std::cout << std::left << std::setw(44) << r.name << std::right << std::fixed << std::setprecision(4)
              << std::setw(12) << r.t.median_ms << std::setw(12) << r.t.min_ms << std::setw(12) << r.t.max_ms;
    for (auto& [k, v] : r.extra) std::cout << std::setw(14) << v;
    std::cout << "\n";
  }
  std::cout.unsetf(std::ios::fixed);
}

void write_json(const std::string& path, const std::string& title, const std::vector<Row>& rows) {
  std::ofstream f(path, std::ios::app);
  CIUIC_CHECK(f.good(), IOError, "write_json", "cannot open ", path, " for appending");
  for (const Row& r : rows) {
    f << "{\"bench\": \"" << title << "\", \"name\": \"" << r.name << "\", \"median_ms\": " << r.t.median_ms
      << ", \"min_ms\": " << r.t.min_ms << ", \"max_ms\": " << r.t.max_ms << ", \"repeats\": " << r.t.repeats;
    for (auto& [k, v] : r.extra) f << ", \"" << k << "\": \"" << v << "\"";
    f << "}\n";
  }
}

std::string today() {
  std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::gmtime(&now));
  return buf;
}

std::string machine_description(Device d) {
#ifdef CIUIC_WITH_CUDA
  if (d.is_cuda()) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, d.index) == cudaSuccess) return p.name;
  }
#endif
  // The CPU model and what runs its GEMMs (the BLAS kernels decide most CPU timings).
  std::ifstream f("/proc/cpuinfo");
  std::string line, model = d.str();
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  return model + ", " + cpu_blas_info();
}

}  // namespace ciuic::bench
