// train_gpt2: trains GPT-2 (or the tiny byte-level GPT) with ciuic. The job itself
// lives in models/ (ciuic/models/train_gpt2.h); this is its command line.
//   train_gpt2 --help
// Under ciuic-launch (WORLD_SIZE > 1 in the environment) it trains data parallel:
// Gloo for --device cpu, NCCL for cuda; --batch is per rank.
// Exit codes: 0 done, 1 a runtime error (bad file, out of memory, ...), 2 a bad command line.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <ciuic/comm/communicator.h>

#include "ciuic/models/train_gpt2.h"

int main(int argc, char** argv) {
  using namespace ciuic;
  models::TrainOptions opts;
  try {
    opts = models::parse_train_args(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const models::UsageError& e) {
    std::fprintf(stderr, "%s\n\n%s", e.what(), models::train_usage().c_str());
    return 2;
  }
  if (opts.help) {
    std::fputs(models::train_usage().c_str(), stdout);
    return 0;
  }
  try {
    comm::CommunicatorPtr comm;
    const char* world = std::getenv("WORLD_SIZE");
    if (world && std::atoi(world) > 1)
      comm = comm::init_process_group(opts.device == "cpu" ? comm::Backend::gloo : comm::Backend::nccl);
    models::train_gpt2(opts, stdout, comm);
  } catch (const Error& e) {
    const std::string msg = e.what();
    std::fprintf(stderr, "%s%s\n", msg.rfind("train_gpt2", 0) == 0 ? "" : "train_gpt2: ", msg.c_str());
    return 1;
  }
  return 0;
}
