// The Catch2 main of every test binary. In the emulated-device build it also prints, last,
// which kernel instantiations of the library ran: `emulated kernels launched: N of M`;
// with CIUIC_EMU_REQUIRE_COVERAGE=1 (./run.sh test-emulated's full run) the binary fails
// when N < M and lists the kernels no test launched.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#if defined(CIUIC_EMULATED_GPU)
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ciuic_emu/engine.h"
#endif

int main(int argc, char* argv[]) {
  int status = Catch::Session().run(argc, argv);
#if defined(CIUIC_EMULATED_GPU)
  const ciuic::emu::Coverage c = ciuic::emu::coverage();
  const char* require = std::getenv("CIUIC_EMU_REQUIRE_COVERAGE");
  if (require != nullptr && std::strcmp(require, "1") == 0 && c.launched < c.total) {
    std::printf("kernel instantiations no test launched on the emulated device:\n%s", c.missing.c_str());
    status = status == 0 ? 1 : status;
  }
  std::printf("emulated kernels launched: %zu of %zu\n", c.launched, c.total);
#endif
  return status;
}
