// Timing for benchmark binaries: warm-up, then `repeats` timed runs; median,
// min and max. On a GPU each run is bracketed by CUDA events on the current
// stream (device time, no host sync inside the loop); on the CPU a steady clock.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ciuic/device.h"

namespace ciuic::bench {

struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  int repeats = 0;
};

Timing time_it(const std::function<void()>& fn, int warmup = 5, int repeats = 20, Device device = Device::cpu());

// One row of a benchmark table, printed aligned and optionally as JSON lines.
struct Row {
  std::string name;
  Timing t;
  std::vector<std::pair<std::string, std::string>> extra;  // e.g. {"GB/s", "812.3"}
};

void print_table(const std::string& title, const std::vector<Row>& rows);
// JSON lines: {"bench": title, "name": ..., "median_ms": ..., ...}
void write_json(const std::string& path, const std::string& title, const std::vector<Row>& rows);
// "2026-11-28" and a short description of the machine (CPU model or GPU name).
std::string today();
std::string machine_description(Device d);

}  // namespace ciuic::bench
