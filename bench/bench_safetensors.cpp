// bench_safetensors: the cost of a safetensors header as the number of tensors grows.
// A header of n one-element F32 tensors is parsed and validated (load of the metadata:
// the whole header, no tensor bytes) and loaded completely; the per-tensor cost at each
// n is compared with that at the smallest n of the same run (1.00 = linear time).
//   bench_safetensors [--json PATH] [--repeats N]
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"
#include "ciuic/io.h"
#include "ciuic/models/cli.h"
#include "timing.h"

using namespace ciuic;
using namespace ciuic::bench;

namespace {

// A valid file: n tensors "layers.<i>.weight" of F32 [1], in offset order.
std::string file_with(std::int64_t n) {
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  for (std::int64_t i = 0; i < n; ++i)
    header += ",\"layers." + std::to_string(i) + ".weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[" +
              std::to_string(4 * i) + "," + std::to_string(4 * i + 4) + "]}";
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int b = 0; b < 8; ++b) out[b] = static_cast<char>(static_cast<std::uint64_t>(header.size()) >> (8 * b));
  return out + header + std::string(static_cast<std::size_t>(4 * n), '\0');
}

std::string fmt2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json;
  int repeats = 5;
  cli::Parser p("bench_safetensors", "[--json PATH] [--repeats N]", argc, argv);
  while (p.next()) {
    if (p.is("--json")) json = p.text();
    else if (p.is("--repeats")) repeats = p.integer(1, 1000);
    else return p.unknown();
  }
  if (p.stop()) return p.exit_code();
  try {
    std::vector<Row> rows;
    double header_base = 0, load_base = 0;
    for (std::int64_t n : {20000, 50000, 100000}) {
      const std::string bytes = file_with(n);
      Timing h = time_it([&] { (void)deserialize_safetensors_metadata(bytes); }, 1, repeats);
      Timing l = time_it([&] { (void)deserialize_safetensors(bytes); }, 1, repeats);
      const double h_per = h.median_ms * 1e3 / static_cast<double>(n), l_per = l.median_ms * 1e3 / static_cast<double>(n);
      if (header_base == 0) header_base = h_per, load_base = l_per;
      rows.push_back({"header " + std::to_string(n), h, {{"us/tensor", fmt2(h_per)}, {"vs 20000", fmt2(h_per / header_base)}}});
      rows.push_back({"load " + std::to_string(n), l, {{"us/tensor", fmt2(l_per)}, {"vs 20000", fmt2(l_per / load_base)}}});
    }
    print_table("safetensors header parse and load, n tensors (" + machine_description(Device::cpu()) + ")", rows);
    if (!json.empty()) write_json(json, "bench_safetensors", rows);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_safetensors: %s\n", e.what());
    return 1;
  }
  return 0;
}
