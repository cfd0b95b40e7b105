// [cuda][cnn] conv2d, the pooling ops and batch_norm on the device under test
// against their CPU references, forward and backward, in f32, f16 and bf16 (f64
// for a few): groups and depthwise, stride, padding, dilation, odd sizes, non-
// contiguous inputs, fresh random inputs. Outputs the ops allocate themselves are
// nan-poisoned through the caching allocator (a freed block full of nan is what the
// op's output reuses), the raw pooling launchers get nan-filled buffers. Also: the
// pooling kernels' per-element bodies (kernels/pool_math.h) against the CPU
// reference on the CPU, and the SmallCNN training a few steps on the device with
// the CPU's losses. Without a GPU the device under test is the CPU: every line of
// the comparisons still runs (the CPU against itself), and only what needs device
// pointers is skipped.
//
// Bounds, ||dut - cpu|| / ||cpu||: f32 1e-5 for pooling, 1e-4 for conv2d and batch_norm
// (strict FMA math, no TF32, but cuDNN may pick Winograd or FFT algorithms, and it
// reduces batch statistics in f32), f64 1e-10, f16 / bf16 1e-2 (both sides round f32
// sums; they differ in summation order). max_pool2d (and its gradient) must match exactly: the GPU sums a
// gradient's contributions in the CPU's order.
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"
#include "ciuic/cudnn.h"
#include "ciuic/kernels/pool_math.h"
#include "ciuic/models/cnn.h"
#include "test_util.h"

// The device under test: cuda(0) with a usable GPU (unless CIUIC_TEST_DEVICE=cpu), else the CPU.
#include "device_under_test.h"

#ifdef CIUIC_WITH_CUDA
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/pool.h"
#endif

using namespace ciuic;
using ciuic::test::dut;
using ciuic::test::dut_is_gpu;

namespace {

const Device kCpu = Device::cpu();
constexpr double kInf = std::numeric_limits<double>::infinity();
const DType kDtypes[] = {DType::f32, DType::f16, DType::bf16};

double tol(DType dt) {
  switch (dt) {
    case DType::f32: return 1e-5;
    case DType::f64: return 1e-10;
    default: return 1e-2;
  }
}
// conv2d and batch_norm in f32: cuDNN may pick Winograd or FFT convolutions (a few bits
// less than a direct sum) and reduces batch statistics in f32 where the CPU uses f64.
double lib_tol(DType dt) { return dt == DType::f32 ? 1e-4 : tol(dt); }

// Fresh random values in [lo, hi) (never all zeros), made on the CPU in dtype dt.
Tensor rnd(const Shape& s, DType dt, double lo = -2, double hi = 2) { return uniform(s, lo, hi, DType::f32).to(dt); }

// Fills the dut's allocator cache with nan: blocks of both pools (small requests up
// to 1 MiB come from 2 MiB segments, larger ones from the large pool) are allocated,
// set to nan and freed together, so the next outputs reuse poisoned memory.
void poison_cache() {
  std::vector<Tensor> blocks;
  for (std::int64_t bytes : {1 << 20, 1 << 20, 1 << 20, 1 << 20, 256 << 10, 256 << 10, 16 << 20}) {
#ifdef CIUIC_WITH_CUDA
    if (dut_is_gpu()) {
      // Bytes 0xFF: NaN in f32, f16, bf16 and f64. One memset, where a fill kernel over 20 MiB
      // would cost the emulated device a second per call.
      blocks.push_back(empty({bytes}, TensorOptions(DType::u8).device(dut())));
      CIUIC_CUDA_CHECK(cudaMemsetAsync(blocks.back().data_ptr(), 0xFF, static_cast<std::size_t>(bytes),
                                       static_cast<cudaStream_t>(current_stream(dut()))));
      continue;
    }
#endif
    blocks.push_back(full({bytes / 4}, std::nan(""), TensorOptions(DType::f32).device(dut())));
  }
}

std::vector<double> host(const Tensor& t) { return t.to(kCpu).to_vector<double>(); }

// ||got - ref|| / ||ref|| over finite reference values; inf when a non-finite value
// of either side is not matched exactly by the other (a poisoned output shows up).
double rel_err(const Tensor& got, const Tensor& ref) {
  const std::vector<double> g = host(got), r = host(ref);
  if (g.size() != r.size()) return kInf;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (!std::isfinite(r[i]) || !std::isfinite(g[i])) {
      if (!((std::isnan(r[i]) && std::isnan(g[i])) || r[i] == g[i])) return kInf;
      continue;
    }
    num += (g[i] - r[i]) * (g[i] - r[i]);
    den += r[i] * r[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

std::size_t mismatches(const Tensor& got, const Tensor& ref) {
  const std::vector<double> g = host(got), r = host(ref);
  if (g.size() != r.size()) return std::max<std::size_t>(g.size(), r.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i) bad += !(g[i] == r[i] || (std::isnan(g[i]) && std::isnan(r[i])));
  return bad;
}

void check_close(const Tensor& got, const Tensor& ref, double bound, const std::string& what) {
  INFO(what << ": got " << describe(got) << ", reference " << describe(ref));
  REQUIRE(got.defined() == ref.defined());
  if (!ref.defined()) return;
  CHECK(got.device() == dut());
  CHECK(got.shape() == ref.shape());
  CHECK(got.dtype() == ref.dtype());
  if (bound == 0) {
    CHECK(mismatches(got, ref) == 0);
  } else {
    const double e = rel_err(got, ref);
    INFO("relative error " << e << " (bound " << bound << ")");
    CHECK(e <= bound);
  }
}

using View = std::function<Tensor(const Tensor&)>;
struct In {
  Tensor base;  // on the CPU
  View view;    // taken on both sides (empty: the leaf itself)
  bool grad = true;
};
using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// op on CPU leaves and on their dut copies: outputs, then the gradients of <out, w>
// for one random w, input by input.
void check_op(const std::string& what, double bound, const std::vector<In>& ins, const OpFn& op, bool grads = true) {
  INFO(what << " on " << ciuic::test::dut_name());
  std::vector<Tensor> leaves[2];
  Tensor out[2];
  for (int side = 0; side < 2; ++side) {
    std::vector<Tensor> args;
    for (const In& in : ins) {
      Tensor leaf = side == 1 ? in.base.to(dut()).clone() : in.base.clone();
      if (grads && in.grad) leaf.requires_grad_(true);
      leaves[side].push_back(leaf);
      args.push_back(in.view ? in.view(leaf) : leaf);
    }
    if (side == 1) poison_cache();
    out[side] = op(args);
  }
  check_close(out[1], out[0].detach(), bound, what + " forward");
  if (!grads) return;
  Tensor w = rnd(out[0].shape(), out[0].dtype(), -1, 1);
  out[0].backward(w);
  poison_cache();
  out[1].backward(w.to(dut()));
  for (std::size_t i = 0; i < ins.size(); ++i) {
    if (!ins[i].grad) continue;
    check_close(leaves[1][i].grad(), leaves[0][i].grad(), bound, what + " grad of input " + std::to_string(i));
  }
}

// (N, C, H, W) stored as NHWC: a non-contiguous NCHW view.
Tensor nchw_of_nhwc(const Tensor& t) { return t.permute({0, 3, 1, 2}); }

Conv2dOptions conv_opts(std::int64_t sh, std::int64_t sw, std::int64_t ph, std::int64_t pw, std::int64_t dh,
                        std::int64_t dw, std::int64_t groups) {
  Conv2dOptions o;
  o.stride[0] = sh, o.stride[1] = sw, o.padding[0] = ph, o.padding[1] = pw;
  o.dilation[0] = dh, o.dilation[1] = dw, o.groups = groups;
  return o;
}

// Small integers (-2..2, truncated from uniform values), so that windows hold ties.
Tensor with_ties(const Shape& s, DType dt) { return rnd(s, DType::f32, -3, 3).to(DType::i32).to(dt); }

// A device under test without cuDNN (the emulated device; a CUDA build where Meson found no
// cuDNN): the op must refuse with NotImplementedError naming itself and cuDNN, and the test
// case ends there. True when it ended.
Tensor dut_ones(const Shape& s) { return ones(s, dut()); }

bool refused_without_cudnn(const char* op, const std::function<void()>& call) {
  if (!dut_is_gpu() || cudnn::available()) return false;
  WARN("no cuDNN in this build: " << op << " on " << ciuic::test::dut_name() << " must refuse, nothing more to test");
  CHECK_THROWS_WITH_ALL(call(), NotImplementedError, op, "cuDNN");
  return true;
}

}  // namespace

TEST_CASE("conv2d on the device under test matches the CPU (stride, padding, dilation, groups, depthwise)",
          "[cuda][cnn]") {
  if (refused_without_cudnn("conv2d", [] { conv2d(dut_ones({1, 1, 3, 3}), dut_ones({1, 1, 3, 3})); })) return;
  struct Case {
    const char* name;
    Shape x;  // N, Cin, H, W
    std::int64_t cout, kh, kw;
    Conv2dOptions o;
    bool bias, nhwc_input;
  };
  const std::vector<Case> cases = {
      {"3x3 pad 1", {2, 3, 8, 8}, 5, 3, 3, conv_opts(1, 1, 1, 1, 1, 1, 1), true, false},
      {"odd sizes, stride 2", {3, 5, 13, 7}, 7, 3, 3, conv_opts(2, 2, 1, 1, 1, 1, 1), true, false},
      {"rectangular kernel, mixed stride/pad", {1, 4, 11, 9}, 6, 2, 5, conv_opts(1, 3, 0, 2, 1, 1, 1), false, false},
      {"dilation 2", {2, 3, 12, 10}, 4, 3, 3, conv_opts(1, 1, 2, 2, 2, 2, 1), true, false},
      {"groups 2", {2, 6, 9, 9}, 4, 3, 3, conv_opts(1, 1, 1, 1, 1, 1, 2), true, false},
      {"depthwise", {2, 8, 10, 10}, 8, 3, 3, conv_opts(1, 1, 1, 1, 1, 1, 8), true, false},
      {"depthwise multiplier 2, stride 2", {1, 4, 9, 11}, 8, 3, 3, conv_opts(2, 2, 1, 1, 1, 1, 4), false, false},
      {"1x1", {4, 16, 5, 5}, 8, 1, 1, conv_opts(1, 1, 0, 0, 1, 1, 1), true, false},
      {"NHWC-strided input", {2, 3, 7, 9}, 4, 3, 3, conv_opts(1, 1, 1, 1, 1, 1, 1), true, true},
      {"batch 1, 1 channel", {1, 1, 17, 17}, 1, 5, 5, conv_opts(1, 1, 2, 2, 1, 1, 1), true, false},
  };
  for (DType dt : kDtypes)
    for (const Case& c : cases) {
      const std::int64_t cg = c.x[1] / c.o.groups;
      Tensor x = c.nhwc_input ? rnd({c.x[0], c.x[2], c.x[3], c.x[1]}, dt) : rnd(c.x, dt);
      Tensor w = rnd({c.cout, cg, c.kh, c.kw}, dt, -1, 1), b = rnd({c.cout}, dt);
      std::vector<In> ins = {{x, c.nhwc_input ? View(nchw_of_nhwc) : View()}, {w, {}}};
      if (c.bias) ins.push_back({b, {}});
      const Conv2dOptions o = c.o;
      check_op(std::string("conv2d ") + c.name + " " + dtype_name(dt), lib_tol(dt), ins,
               [o](const std::vector<Tensor>& a) { return conv2d(a[0], a[1], a.size() > 2 ? a[2] : Tensor(), o); });
    }
  // f64 once, and gradients wanted for the weight only / the input only.
  Tensor x = rnd({2, 4, 9, 8}, DType::f64), w = rnd({6, 2, 3, 3}, DType::f64);
  check_op("conv2d groups 2 f64", tol(DType::f64), {{x, {}}, {w, {}}},
           [](const std::vector<Tensor>& a) { return conv2d(a[0], a[1], Tensor(), conv_opts(2, 1, 1, 0, 1, 2, 2)); });
  const Tensor x32 = rnd({2, 3, 6, 6}, DType::f32), w32 = rnd({4, 3, 3, 3}, DType::f32);
  auto plain = [](const std::vector<Tensor>& a) { return conv2d(a[0], a[1]); };
  check_op("conv2d weight grad only", lib_tol(DType::f32), {{x32, {}, false}, {w32, {}}}, plain);
  check_op("conv2d input grad only", lib_tol(DType::f32), {{x32, {}}, {w32, {}, false}}, plain);
}

TEST_CASE("conv2d under autocast on the device under test runs f16 with f32 gradients", "[cuda][cnn]") {
  if (refused_without_cudnn("conv2d", [] {
        amp::AutocastGuard autocast(DType::f16);
        conv2d(dut_ones({1, 1, 3, 3}), dut_ones({1, 1, 3, 3}));
      }))
    return;
  Tensor x = rnd({2, 3, 8, 8}, DType::f32), w = rnd({4, 3, 3, 3}, DType::f32), b = rnd({4}, DType::f32);
  check_op("conv2d autocast f16", tol(DType::f16), {{x, {}}, {w, {}}, {b, {}}}, [](const std::vector<Tensor>& a) {
    amp::AutocastGuard autocast(DType::f16);
    Tensor y = conv2d(a[0], a[1], a[2], conv_opts(1, 1, 1, 1, 1, 1, 1));
    CHECK(y.dtype() == DType::f16);
    return y.to(DType::f32);
  });
}

TEST_CASE("max_pool2d on the device under test matches the CPU exactly, ties and nan included", "[cuda][cnn]") {
  struct Case {
    Shape x;
    std::int64_t k, s, p;
    bool strided;
  };
  const std::vector<Case> cases = {
      {{2, 3, 8, 8}, 2, 2, 0, false},   {{2, 3, 9, 7}, 3, 2, 1, false},  {{1, 5, 11, 13}, 3, 1, 1, false},
      {{3, 10, 10}, 2, 0, 1, false},    {{2, 4, 7, 9}, 3, 2, 1, true},   {{1, 1, 1, 1}, 1, 1, 0, false},
      {{2, 2, 15, 6}, 5, 3, 2, false},
  };
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64})
    for (const Case& c : cases) {
      Tensor x = c.strided ? with_ties({c.x[0], c.x[2], c.x[3], c.x[1]}, dt) : with_ties(c.x, dt);
      if (x.numel() > 4) {  // a nan inside a window must win over numbers
        x.view({-1}).narrow(0, 3, 1).fill_(std::nan(""));
      }
      const std::int64_t k = c.k, s = c.s, p = c.p;
      check_op("max_pool2d " + shape_str(c.x) + " k" + std::to_string(k) + " s" + std::to_string(s) + " p" +
                   std::to_string(p) + " " + dtype_name(dt),
               0, {{x, c.strided ? View(nchw_of_nhwc) : View()}},
               [k, s, p](const std::vector<Tensor>& a) { return max_pool2d(a[0], k, s, p); });
    }
}

TEST_CASE("avg_pool2d on the device under test matches the CPU (count_include_pad)", "[cuda][cnn]") {
  if (refused_without_cudnn("avg_pool2d", [] { avg_pool2d(dut_ones({1, 1, 4, 4}), 2); })) return;
  struct Case {
    Shape x;
    std::int64_t k, s, p;
    bool strided;
  };
  const std::vector<Case> cases = {
      {{2, 3, 8, 8}, 2, 2, 0, false}, {{2, 3, 9, 7}, 3, 2, 1, false}, {{1, 5, 11, 13}, 3, 1, 1, false},
      {{3, 10, 10}, 4, 0, 2, false},  {{2, 4, 7, 9}, 3, 2, 1, true},  {{2, 2, 15, 6}, 5, 3, 2, false},
  };
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64})
    for (const Case& c : cases) {
      Tensor x = c.strided ? rnd({c.x[0], c.x[2], c.x[3], c.x[1]}, dt) : rnd(c.x, dt);
      const std::int64_t k = c.k, s = c.s, p = c.p;
      check_op("avg_pool2d " + shape_str(c.x) + " k" + std::to_string(k) + " s" + std::to_string(s) + " p" +
                   std::to_string(p) + " " + dtype_name(dt),
               tol(dt), {{x, c.strided ? View(nchw_of_nhwc) : View()}},
               [k, s, p](const std::vector<Tensor>& a) { return avg_pool2d(a[0], k, s, p); });
    }
}

TEST_CASE("adaptive_avg_pool2d on the device under test matches the CPU (even and uneven bins)", "[cuda][cnn]") {
  struct Case {
    Shape x;
    std::int64_t oh, ow;
    bool strided;
  };
  const std::vector<Case> cases = {
      {{2, 3, 8, 8}, 4, 4, false},   {{2, 6, 7, 9}, 1, 1, false}, {{2, 3, 7, 9}, 3, 4, false},
      {{1, 2, 5, 5}, 3, 3, false},   {{2, 3, 3, 3}, 5, 5, false}, {{4, 6, 12}, 4, 5, false},
      {{2, 4, 10, 6}, 5, 3, true},   {{2, 4, 11, 6}, 4, 3, true},
  };
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64})
    for (const Case& c : cases) {
      Tensor x = c.strided ? rnd({c.x[0], c.x[2], c.x[3], c.x[1]}, dt) : rnd(c.x, dt);
      const std::int64_t oh = c.oh, ow = c.ow;
      check_op("adaptive_avg_pool2d " + shape_str(c.x) + " -> " + std::to_string(oh) + "x" + std::to_string(ow) + " " +
                   dtype_name(dt),
               tol(dt), {{x, c.strided ? View(nchw_of_nhwc) : View()}},
               [oh, ow](const std::vector<Tensor>& a) { return adaptive_avg_pool2d(a[0], oh, ow); });
    }
}

TEST_CASE("batch_norm on the device under test matches the CPU: training, running stats, eval", "[cuda][cnn]") {
  if (refused_without_cudnn("batch_norm", [] {
        Tensor c = dut_ones({2});
        batch_norm(dut_ones({3, 2}), c, c, c, c, true);
      }))
    return;
  struct Case {
    Shape x;
    bool affine, strided;
  };
  const std::vector<Case> cases = {
      {{4, 3, 5, 7}, true, false}, {{8, 5}, true, false}, {{3, 4, 9}, false, false}, {{2, 6, 4, 5}, true, true},
      {{1, 2, 1, 3}, true, false},
  };
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64})
    for (const Case& c : cases)
      for (bool training : {true, false}) {
        const std::int64_t C = c.x[1];
        Shape stored = c.x;
        if (c.strided) stored = {c.x[0], c.x[2], c.x[3], c.x[1]};
        Tensor x = add(rnd(stored, dt), 0.5);  // a non-zero mean
        Tensor w = rnd({C}, dt, 0.5, 1.5), b = rnd({C}, dt);
        Tensor rm = rnd({C}, dt, -0.5, 0.5), rv = rnd({C}, dt, 0.5, 2);
        Tensor rm_cpu = rm.clone(), rv_cpu = rv.clone(), rm_dut = rm.to(dut()).clone(), rv_dut = rv.to(dut()).clone();
        const std::string what = std::string("batch_norm ") + shape_str(c.x) + (training ? " training " : " eval ") +
                                 (c.affine ? "affine " : "") + dtype_name(dt);
        std::vector<In> ins = {{x, c.strided ? View(nchw_of_nhwc) : View()}};
        if (c.affine) ins.push_back({w, {}}), ins.push_back({b, {}});
        int call = 0;  // check_op runs the CPU side first, then the dut: each updates its own running stats
        check_op(what, lib_tol(dt), ins, [&](const std::vector<Tensor>& a) {
          Tensor& rmean = call == 0 ? rm_cpu : rm_dut;
          Tensor& rvar = call++ == 0 ? rv_cpu : rv_dut;
          return batch_norm(a[0], rmean, rvar, c.affine ? a[1] : Tensor(), c.affine ? a[2] : Tensor(), training, 0.1,
                            1e-5);
        });
        check_close(rm_dut, rm_cpu, lib_tol(dt), what + " running_mean");
        check_close(rv_dut, rv_cpu, lib_tol(dt), what + " running_var");
      }
}

TEST_CASE("the SmallCNN trains on the device under test with the CPU's losses", "[cuda][cnn][models]") {
  if (refused_without_cudnn("conv2d", [] { conv2d(dut_ones({1, 1, 3, 3}), dut_ones({1, 1, 3, 3})); })) return;
  for (DType dt : kDtypes) {
    INFO("dtype " << dtype_name(dt) << " on " << ciuic::test::dut_name());
    models::CNNConfig cfg;
    auto data = models::make_square_images(cfg, 64, 11);
    std::vector<double> losses[2];
    for (int side = 0; side < 2; ++side) {
      const Device d = side == 0 ? kCpu : dut();
      Generator init{7, 0};
      models::SmallCNN net(cfg, &init);
      net.to(d, dt);
      optim::SGD opt(net.parameters(), optim::SGDOptions(0.05).momentum(0.9));
      net.train();
      Tensor images = data.images.to(d, dt), labels = data.labels.to(d);
      for (int step = 0; step < 5; ++step) {
        const std::int64_t start = (step * 16) % 64;
        opt.zero_grad();
        Tensor loss = cross_entropy(net.forward(images.narrow(0, start, 16)), labels.narrow(0, start, 16));
        loss.backward();
        opt.step();
        losses[side].push_back(loss.to(DType::f64).item());
      }
      net.eval();
      NoGradGuard ng;
      losses[side].push_back(cross_entropy(net.forward(images), labels).to(DType::f64).item());  // eval path
    }
    const double bound = dt == DType::f32 ? 1e-4 : dt == DType::f16 ? 2e-2 : 5e-2;
    for (std::size_t i = 0; i < losses[0].size(); ++i) {
      INFO("step " << i << ": cpu " << losses[0][i] << ", dut " << losses[1][i]);
      CHECK(std::isfinite(losses[1][i]));
      CHECK(std::abs(losses[1][i] - losses[0][i]) <= bound * std::max(1.0, std::abs(losses[0][i])));
    }
  }
}

TEST_CASE("cuDNN settings and the algorithm cache", "[cuda][cnn]") {
#ifdef CIUIC_WITH_CUDNN
  CHECK(cudnn::available());
  CHECK(cudnn::version() >= 8000);
#else
  CHECK_FALSE(cudnn::available());
  CHECK(cudnn::version() == 0);
#endif
  CHECK(cudnn::deterministic());
  CHECK_FALSE(cudnn::benchmark());
  CHECK_FALSE(cudnn::allow_tf32());
  Tensor x = rnd({2, 3, 9, 9}, DType::f32), w = rnd({4, 3, 3, 3}, DType::f32);
  const Tensor ref = conv2d(x, w, Tensor(), conv_opts(1, 1, 1, 1, 1, 1, 1));
  cudnn::clear_algorithm_cache();
  CHECK(cudnn::cached_algorithms() == 0);
  const bool convolves = !dut_is_gpu() || cudnn::available();  // the device under test has a conv2d
  if (convolves) {
    cudnn::set_benchmark(true);  // timed choice on the real buffers: same results
    Tensor y = conv2d(x.to(dut()), w.to(dut()), Tensor(), conv_opts(1, 1, 1, 1, 1, 1, 1));
    cudnn::set_benchmark(false);
    check_close(y, ref, lib_tol(DType::f32), "conv2d with cudnn benchmark");
  }
  if (dut_is_gpu() && cudnn::available()) CHECK(cudnn::cached_algorithms() >= 1);
  if (dut_is_gpu() && convolves) {  // on a side stream: the handle and the workspace follow the current stream
    Stream side = Stream::create(dut());
    Tensor xd = x.to(dut()), wd = w.to(dut());
    synchronize(dut());
    Tensor ys;
    {
      StreamGuard guard(side);
      Tensor xs = xd.requires_grad_(true);
      ys = conv2d(xs, wd, Tensor(), conv_opts(1, 1, 1, 1, 1, 1, 1));
      ys.backward(ones(ys.shape(), TensorOptions(DType::f32).device(dut())));
    }
    side.synchronize();
    check_close(ys.detach(), ref, lib_tol(DType::f32), "conv2d on a side stream");
  }
  cudnn::clear_algorithm_cache();
  CHECK(cudnn::cached_algorithms() == 0);
  if (dut_is_gpu() && !cudnn::available()) {  // a CUDA build without cuDNN says so
    CHECK_THROWS_WITH_ALL(conv2d(x.to(dut()), w.to(dut())), NotImplementedError, "conv2d", "cuDNN");
    CHECK_THROWS_WITH_ALL(avg_pool2d(x.to(dut()), 2), NotImplementedError, "avg_pool2d", "cuDNN");
    Tensor c = dut_ones({3});
    CHECK_THROWS_WITH_ALL(batch_norm(x.to(dut()), c, c, c, c, true), NotImplementedError, "batch_norm", "cuDNN");
  }
}

// ---- the pooling kernels' bodies, run on the CPU ----

TEST_CASE("pool_math: window and bin ranges cover exactly the outputs that hold an input", "[cnn]") {
  namespace pm = kernels::pool;
  for (std::int64_t len = 1; len <= 13; ++len)
    for (std::int64_t k = 1; k <= 5; ++k)
      for (std::int64_t s = 1; s <= 4; ++s)
        for (std::int64_t p = 0; p <= k / 2; ++p) {
          const std::int64_t e = len + 2 * p - k;
          if (e < 0) continue;
          const std::int64_t n = e / s + 1;
          for (std::int64_t i = 0; i < len; ++i) {
            const pm::Range r = pm::windows_covering(i, k, s, p, n);
            for (std::int64_t o = 0; o < n; ++o) {
              const bool holds = o * s - p <= i && i < o * s - p + k;
              INFO("len " << len << " k " << k << " s " << s << " p " << p << " i " << i << " o " << o);
              CHECK(holds == (o >= r.lo && o < r.hi));
            }
          }
        }
  for (std::int64_t len = 1; len <= 17; ++len)
    for (std::int64_t n = 1; n <= 17; ++n)
      for (std::int64_t i = 0; i < len; ++i) {
        const pm::Range r = pm::bins_covering(i, len, n);
        for (std::int64_t o = 0; o < n; ++o) {
          const bool holds = pm::bin_start(o, len, n) <= i && i < pm::bin_end(o, len, n);
          INFO("len " << len << " n " << n << " i " << i << " o " << o);
          CHECK(holds == (o >= r.lo && o < r.hi));
        }
      }
}

TEST_CASE("pool_math: the kernel bodies reproduce the CPU pooling ops and their gradients", "[cnn]") {
  namespace pm = kernels::pool;
  struct Case {
    std::int64_t H, W, k, s, p, OH2, OW2;  // window; adaptive output
  };
  for (const Case& c : {Case{8, 8, 2, 2, 0, 3, 3}, Case{9, 7, 3, 2, 1, 4, 3}, Case{5, 11, 3, 1, 1, 7, 2},
                        Case{6, 6, 4, 3, 2, 6, 6}}) {
    Tensor x = with_ties({2, 3, c.H, c.W}, DType::f64);
    x.view({-1}).narrow(0, 5, 1).fill_(std::nan(""));
    Tensor xl = x.clone().requires_grad_(true);
    Tensor y = max_pool2d(xl, c.k, c.s, c.p);
    const std::int64_t OH = y.size(2), OW = y.size(3), planes = 6;
    Tensor gy = rnd(y.shape(), DType::f64);
    y.backward(gy);
    const std::vector<double> xv = x.to_vector<double>(), yv = y.detach().to_vector<double>();
    const std::vector<double> gyv = gy.to_vector<double>(), gxv = xl.grad().to_vector<double>();
    std::vector<std::int64_t> idx(static_cast<std::size_t>(planes * OH * OW));
    std::size_t bad = 0;
    for (std::int64_t pl = 0; pl < planes; ++pl)
      for (std::int64_t oh = 0; oh < OH; ++oh)
        for (std::int64_t ow = 0; ow < OW; ++ow) {
          const double* plane = xv.data() + pl * c.H * c.W;
          const std::int64_t o = (pl * OH + oh) * OW + ow;
          const double v = pm::window_max<double>([&](std::int64_t f) { return plane[f]; }, c.H, c.W, oh, ow, c.k, c.s,
                                                  c.p, &idx[static_cast<std::size_t>(o)]);
          bad += !(v == yv[o] || (std::isnan(v) && std::isnan(yv[o])));
        }
    CHECK(bad == 0);
    for (std::int64_t pl = 0; pl < planes; ++pl)
      for (std::int64_t ih = 0; ih < c.H; ++ih)
        for (std::int64_t iw = 0; iw < c.W; ++iw) {
          const std::int64_t* pi = idx.data() + pl * OH * OW;
          const double* pg = gyv.data() + pl * OH * OW;
          const double g = pm::max_pool_input_grad<double>([&](std::int64_t o) { return pi[o]; },
                                                           [&](std::int64_t o) { return pg[o]; }, c.W, OH, OW, ih, iw,
                                                           c.k, c.s, c.p);
          bad += g != gxv[static_cast<std::size_t>((pl * c.H + ih) * c.W + iw)];
        }
    CHECK(bad == 0);
    // adaptive (uneven bins for most cases)
    Tensor xa = rnd({2, 3, c.H, c.W}, DType::f64).requires_grad_(true);
    Tensor ya = adaptive_avg_pool2d(xa, c.OH2, c.OW2);
    Tensor ga = rnd(ya.shape(), DType::f64);
    ya.backward(ga);
    const std::vector<double> xav = xa.detach().to_vector<double>(), yav = ya.detach().to_vector<double>();
    const std::vector<double> gav = ga.to_vector<double>(), gxa = xa.grad().to_vector<double>();
    double worst = 0;
    for (std::int64_t pl = 0; pl < planes; ++pl) {
      const double* plane = xav.data() + pl * c.H * c.W;
      const double* pg = gav.data() + pl * c.OH2 * c.OW2;
      for (std::int64_t oh = 0; oh < c.OH2; ++oh)
        for (std::int64_t ow = 0; ow < c.OW2; ++ow) {
          const double v = pm::adaptive_bin_mean<double>([&](std::int64_t f) { return plane[f]; }, c.H, c.W, c.OH2,
                                                         c.OW2, oh, ow);
          worst = std::max(worst, std::abs(v - yav[static_cast<std::size_t>((pl * c.OH2 + oh) * c.OW2 + ow)]));
        }
      for (std::int64_t ih = 0; ih < c.H; ++ih)
        for (std::int64_t iw = 0; iw < c.W; ++iw) {
          const double g = pm::adaptive_input_grad<double>([&](std::int64_t o) { return pg[o]; }, c.H, c.W, c.OH2,
                                                           c.OW2, ih, iw);
          worst = std::max(worst, std::abs(g - gxa[static_cast<std::size_t>((pl * c.H + ih) * c.W + iw)]));
        }
    }
    CHECK(worst <= 1e-12);
  }
}

TEST_CASE("pooling launchers write every output over nan-poisoned buffers", "[cuda][cnn]") {
  // Host-side setup and the CPU references run everywhere; the launches need a GPU.
  const std::int64_t planes = 5, H = 9, W = 7, k = 3, s = 2, p = 1, OH = 5, OW = 4, AH = 4, AW = 3;
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    INFO(dtype_name(dt));
    Tensor x = with_ties({planes, H, W}, dt);
    Tensor ref = max_pool2d(x, k, s, p);
    Tensor aref = adaptive_avg_pool2d(x, AH, AW);
    REQUIRE(ref.shape() == Shape{planes, OH, OW});
    Tensor out = full({planes, OH, OW}, std::nan(""), TensorOptions(dt).device(dut()));
    Tensor idx = full({planes, OH, OW}, -7, TensorOptions(DType::i32).device(dut()));
    Tensor aout = full({planes, AH, AW}, std::nan(""), TensorOptions(dt).device(dut()));
    Tensor gx = full({planes, H, W}, std::nan(""), TensorOptions(dt).device(dut()));
    Tensor xd = x.to(dut());
#ifdef CIUIC_WITH_CUDA
    kernels::PoolShape g;
    g.planes = planes, g.H = H, g.W = W, g.OH = OH, g.OW = OW, g.k = k, g.s = s, g.p = p;
    kernels::PoolShape ga = g;
    ga.OH = AH, ga.OW = AW;
    CIUIC_DUT_GPU_ONLY(kernels::max_pool2d_forward(xd.data_ptr(), out.data_ptr(),
                                                   static_cast<std::int32_t*>(idx.data_ptr()), dt, g,
                                                   ciuic::test::dut_stream()));
    CIUIC_DUT_GPU_ONLY(kernels::adaptive_avg_pool2d_forward(xd.data_ptr(), aout.data_ptr(), dt, ga,
                                                            ciuic::test::dut_stream()));
    Tensor gout = full({planes, OH, OW}, 1.0, TensorOptions(dt).device(dut()));
    CIUIC_DUT_GPU_ONLY(kernels::max_pool2d_backward(gout.data_ptr(), static_cast<const std::int32_t*>(idx.data_ptr()),
                                                    gx.data_ptr(), dt, g, ciuic::test::dut_stream()));
#endif
    CHECK_ON_GPU(mismatches(out, ref) == 0);
    CHECK_ON_GPU(host(idx) != std::vector<double>(static_cast<std::size_t>(planes * OH * OW), -7.0));
    CHECK_ON_GPU(rel_err(aout, aref) <= tol(dt));
    const std::vector<double> gxv = host(gx);
    std::size_t nans = 0;
    for (double v : gxv) nans += std::isnan(v);
    CHECK_ON_GPU(nans == 0);  // every input gradient was written
  }
}

TEST_CASE("adaptive_avg_pool2d with even bins is the plain average pooling cuDNN runs for it", "[cnn]") {
  // pool_cudnn.cpp maps even bins (H % OH == 0, W % OW == 0) to a window = stride = (H/OH, W/OW)
  // pooling without padding; for square windows the CPU's avg_pool2d states the same, values
  // and gradients.
  for (DType dt : {DType::f64, DType::f32})
    for (std::int64_t k : {1, 2, 3, 4}) {
      INFO("k " << k << " " << dtype_name(dt));
      Tensor x = rnd({2, 3, 4 * k, 3 * k}, dt);
      Tensor xa = x.clone().requires_grad_(true), xb = x.clone().requires_grad_(true);
      Tensor a = adaptive_avg_pool2d(xa, 4, 3), b = avg_pool2d(xb, k, k, 0);
      CHECK(rel_err(a, b) <= tol(dt));
      Tensor g = rnd(a.shape(), dt);
      a.backward(g);
      b.backward(g);
      CHECK(rel_err(xa.grad(), xb.grad()) <= tol(dt));
    }
}
