// Which kernel instantiations exist and which ran (engine.h: register_kernel, coverage).
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ciuic_emu/engine.h"

namespace ciuic::emu {
namespace {

struct Registry {
  std::mutex m;
  std::vector<std::unique_ptr<KernelRecord>> records;
};
// Constructed on first use: registrars run during static initialisation, in any order.
Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: read by the exit-time report
  return *r;
}

// GCC's name of the tag's member, "static const char* NS::kernel<T>(ARGS)::ciuic_emu_kernel_tag::name()
// [with T = float]", back to "NS::kernel<T>(ARGS) [with T = float]".
std::string kernel_name(const char* pretty) {
  std::string s = pretty;
  const std::string prefix = "static const char* ";
  if (s.rfind(prefix, 0) == 0) s.erase(0, prefix.size());
  const std::string tag = "::ciuic_emu_kernel_tag::name()";
  if (auto at = s.find(tag); at != std::string::npos) s.erase(at, tag.size());
  return s;
}

}  // namespace

KernelRecord* register_kernel(const char* pretty_name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.m);
  r.records.push_back(std::make_unique<KernelRecord>(KernelRecord{pretty_name, false}));
  return r.records.back().get();
}

Coverage coverage() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.m);
  Coverage c;
  c.total = r.records.size();
  for (const auto& k : r.records) {
    if (std::atomic_ref<bool>(k->launched).load(std::memory_order_relaxed)) ++c.launched;
    else c.missing += kernel_name(k->pretty_name) + "\n";
  }
  return c;
}

}  // namespace ciuic::emu
