#include "ciuic/random.h"

namespace ciuic {

Generator& default_generator() {
  static thread_local Generator g;
  return g;
}

void manual_seed(std::uint64_t seed) { default_generator() = Generator{seed, 0}; }

}  // namespace ciuic
