// Devices: the CPU, or one CUDA GPU by index.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

namespace ciuic {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;  // always 0 for the CPU

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device&) const = default;
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

// True when this build has CUDA and the machine has at least one usable GPU.
// Never throws: a missing driver or no device both mean "no".
bool cuda_available();
// Number of usable GPUs; 0 on a CPU-only build or machine.
int cuda_device_count();
// True when the library was compiled with CUDA support.
bool built_with_cuda();

// Throws DeviceError naming op when d is a CUDA device that this build or machine
// cannot serve (no CUDA in the build, no GPU, index out of range).
void check_device_usable(const Device& d, const char* op);

// Makes a CUDA device current for its scope and restores the previous one.
// A no-op for the CPU.
class DeviceGuard {
 public:
  explicit DeviceGuard(const Device& d);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;  // -1: nothing to restore
};

}  // namespace ciuic
