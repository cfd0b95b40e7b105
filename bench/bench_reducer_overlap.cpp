// bench_reducer_overlap: how much of the gradient allreduce the BucketedReducer
// hides behind backward, on an MLP stack, run as ranks under ciuic-launch:
//
//   ciuic-launch --nproc-per-node 2 build/bench/bench_reducer_overlap [--layers 8] [--width 512]
//                [--batch 64] [--repeats 10] [--bucket-mib 25] [--first-bucket-mib 1]
//
// Three medians per rank (then the slowest rank's):
//   backward        loss.backward() of the plain model (no reducer);
//   comm            the reducer's bucket allreduces alone, same sizes and order, back to back;
//   backward+ddp    loss.backward() of the same model wrapped by the reducer (it returns
//                   only when every bucket is reduced).
// Two measures of the fraction of communication hidden behind backward:
//   direct: from the Gloo worker's timestamps in each reducer iteration, the part of
//           the bucket allreduces' run time before the last gradient became ready,
//           divided by their whole run time (median over iterations; per rank, then
//           the smallest over ranks);
//   by difference: exposed = max(0, backward+ddp - backward), hidden = 1 - exposed / comm
//           (sensitive to noise on a shared machine; the hook work - copies into the
//           buckets, pre-division - counts as exposed).
#include <algorithm>
#include <cstdio>
#include <string>

#include <ciuic/ciuic.h>
#include <ciuic/comm/comm.h>
#include <ciuic/models/cli.h>

#include "timing.h"

using namespace ciuic;

namespace {
std::shared_ptr<nn::Sequential> make_stack(int layers, std::int64_t width) {
  std::vector<std::shared_ptr<nn::Module>> mods;
  for (int i = 0; i < layers; ++i) {
    mods.push_back(std::make_shared<nn::Linear>(width, width));
    mods.push_back(std::make_shared<nn::ReLU>());
  }
  return std::make_shared<nn::Sequential>(mods);
}

double slowest(comm::Communicator& c, double ms) {
  Tensor t = full({1}, ms, DType::f64);
  c.allreduce(t, comm::ReduceOp::max)->wait();
  return t.item();
}
}  // namespace

int main(int argc, char** argv) {
  int layers = 8, repeats = 10;
  std::int64_t width = 512, batch = 64;
  double bucket_mib = 25, first_mib = 1;
  cli::Parser p("bench_reducer_overlap", "[--layers N] [--width N] [--batch N] [--repeats N] [--bucket-mib X] "
                "[--first-bucket-mib X]", argc, argv);
  while (p.next()) {
    if (p.is("--layers")) layers = p.integer(1, 10000);
    else if (p.is("--width")) width = p.integer<std::int64_t>(1, std::int64_t{1} << 20);
    else if (p.is("--batch")) batch = p.integer<std::int64_t>(1, std::int64_t{1} << 20);
    else if (p.is("--repeats")) repeats = p.integer(1, 1000000);
    else if (p.is("--bucket-mib")) bucket_mib = p.real(0.0, 1e6);
    else if (p.is("--first-bucket-mib")) first_mib = p.real(0.0, 1e6);
    else return p.unknown();
  }
  if (p.stop()) return p.exit_code();
  try {
    auto c = comm::init_process_group(comm::Backend::gloo);
    const int rank = c->rank(), n = c->size();
    manual_seed(0);
    auto plain = make_stack(layers, width);
    auto wrapped = make_stack(layers, width);
    wrapped->load_state_dict(plain->state_dict());
    comm::BucketedReducer ddp(wrapped, c,
                              comm::ReducerOptions()
                                  .bucket_cap_bytes(static_cast<std::size_t>(bucket_mib * (1 << 20)))
                                  .first_bucket_cap_bytes(static_cast<std::size_t>(first_mib * (1 << 20))));
    Generator gen(1 + static_cast<std::uint64_t>(rank));
    Tensor x = randn({batch, width}, {}, &gen), y = randn({batch, width}, {}, &gen);

    // 1. Backward alone (a fresh forward each time, not timed).
    std::vector<double> bwd, ddp_bwd, direct, tails;
    auto one = [&](nn::Module& m, bool wrapped_model, std::vector<double>& out) {
      m.zero_grad();
      Tensor loss = mse_loss(wrapped_model ? ddp.forward(x) : m.forward(x), y);
      c->barrier()->wait();
      auto t0 = std::chrono::steady_clock::now();
      loss.backward();
      out.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    };
    for (int i = 0; i < 2; ++i) {  // warm-up (and the reducer's bucket rebuild)
      std::vector<double> sink;
      one(*plain, false, sink);
      one(*wrapped, true, sink);
    }
    for (int i = 0; i < repeats; ++i) {
      one(*plain, false, bwd);
      one(*wrapped, true, ddp_bwd);
      auto ov = ddp.last_overlap();
      direct.push_back(ov.comm_ms > 0 ? ov.hidden_ms / ov.comm_ms : 1.0);
      tails.push_back(ov.tail_ms);
    }
    // 2. The same bucket allreduces alone.
    std::vector<Tensor> buckets;
    for (auto b : ddp.bucket_bytes()) buckets.push_back(zeros({static_cast<std::int64_t>(b / 4)}));
    c->barrier()->wait();
    bench::Timing comm_t = bench::time_it(
        [&] {
          std::vector<comm::WorkPtr> w;
          for (auto& b : buckets) w.push_back(c->allreduce(b));
          for (auto& x : w) x->wait();
        },
        2, repeats);
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
    };
    double t_bwd = slowest(*c, median(bwd)), t_ddp = slowest(*c, median(ddp_bwd)),
           t_comm = slowest(*c, comm_t.median_ms);
    double exposed = std::max(0.0, t_ddp - t_bwd);
    double hidden_direct = -slowest(*c, -median(direct));  // the smallest over ranks
    double tail = slowest(*c, median(tails));
    double hidden = t_comm > 0 ? std::clamp(1.0 - exposed / t_comm, 0.0, 1.0) : 1.0;
    if (rank == 0) {
      std::size_t total = 0;
      for (auto b : ddp.bucket_bytes()) total += b;
      std::printf("\n== reducer overlap: MLP stack %d x Linear(%lld, %lld)+ReLU, batch %lld per rank, %d ranks (gloo), "
                  "%zu buckets, %.2f MiB of gradients, %s, %s ==\n",
                  layers, static_cast<long long>(width), static_cast<long long>(width), static_cast<long long>(batch), n,
                  ddp.bucket_bytes().size(), total / 1048576.0, bench::machine_description(Device::cpu()).c_str(),
                  bench::today().c_str());
      std::printf("%-34s %10.3f ms\n%-34s %10.3f ms\n%-34s %10.3f ms\n%-34s %10.3f ms\n%-34s %9.1f %%\n"
                  "%-34s %10.3f ms\n%-34s %9.1f %%\n",
                  "backward (no reducer)", t_bwd, "bucket allreduces alone", t_comm, "backward with reducer", t_ddp,
                  "exposed (by difference)", exposed, "hidden (by difference)", 100.0 * hidden,
                  "wait after the last gradient", tail, "hidden (direct, worker timestamps)", 100.0 * hidden_direct);
      std::printf("comm %s backward\n", t_comm < t_bwd ? "<" : ">=");
    }
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_reducer_overlap: %s\n", e.what());
    return 1;
  }
}
