// bench_kernels: the CUDA kernels at GPT-2 124M training shapes (B = 16, T = 1024,
// C = 768, 12 heads, vocabulary padded to 50304), each against the ceiling measured
// in the same run:
//   bandwidth ceiling: a 256 MiB device-to-device cudaMemcpyAsync (GB/s, read + write);
//   compute ceiling:   an 8192^3 f16 GEMM through kernels::gemm (TFLOP/s).
// Memory-bound rows report GB/s for the bytes any implementation must move (each
// input read once, each output written once), and that as a fraction of the
// bandwidth ceiling; GEMMs report TFLOP/s (2 m n k) and the fraction of the compute
// ceiling. Rows go through the ops (layer_norm, softmax, gelu, cross_entropy, add,
// sum: what a model runs, allocation and dispatch included) except the GEMMs and the
// fused AdamW, which call their launchers. conv2d rows (ResNet-50 shapes, through cuDNN)
// report TFLOP/s too. Each time is the median of >= 20 runs
// after warm-up, bracketed by CUDA events on the current stream.
//
//   bench_kernels [--json PATH] [--torch PATH] [--repeats N]
// --json appends one JSON line per row to PATH. --torch reads the JSON lines that
// ../shared/baselines/torch_gpt2.py kernels writes (kind "kernel", name, ms: a mean
// over its iterations; bench/torch_conv.py appends the conv2d rows to the same file)
// and prints PyTorch's time next to ours, with torch/ciuic (> 1: ciuic is faster).
// Rows share the baseline's names where it has the same measurement. Needs a GPU:
// without one it says so and exits 1.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"
#include "ciuic/models/cli.h"
#include "timing.h"

#ifdef CIUIC_WITH_CUDA
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/gemm.h"
#include "ciuic/kernels/optim.h"
#endif

using namespace ciuic;
using namespace ciuic::bench;

namespace {

#ifdef CIUIC_WITH_CUDA

struct TorchRow {
  double ms = 0;
  std::string device;
};

// The value of "key": "..." in a JSON line, or "" (torch_gpt2.py writes flat objects).
std::string json_string(const std::string& line, const std::string& key) {
  const std::string k = "\"" + key + "\": \"";
  const std::size_t at = line.find(k);
  if (at == std::string::npos) return "";
  const std::size_t from = at + k.size(), to = line.find('"', from);
  return to == std::string::npos ? "" : line.substr(from, to - from);
}

// The number after "key": in a JSON line, or nan.
double json_number(const std::string& line, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const std::size_t at = line.find(k);
  if (at == std::string::npos) return NAN;
  const char* p = line.c_str() + at + k.size();
  char* end = nullptr;
  const double v = std::strtod(p, &end);
  return end == p ? NAN : v;
}

// name -> PyTorch kernel timing; a later line for the same name wins (the file is appended to).
std::map<std::string, TorchRow> read_torch(const std::string& path) {
  std::ifstream f(path);
  CIUIC_CHECK(f.good(), IOError, "bench_kernels", "cannot open the PyTorch baseline ", path,
              "; expected the JSON lines written by torch_gpt2.py kernels");
  std::map<std::string, TorchRow> rows;
  std::string line;
  while (std::getline(f, line)) {
    if (json_string(line, "kind") != "kernel") continue;
    const std::string name = json_string(line, "name");
    const double ms = json_number(line, "ms");
    if (!name.empty() && std::isfinite(ms)) rows[name] = TorchRow{ms, json_string(line, "device")};
  }
  return rows;
}

std::string fmt(double v, int precision) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(precision);
  os << v;
  return os.str();
}

const Device kGpu = Device::cuda(0);

struct Measured {
  std::string name;
  Timing t;
  double bytes = 0;  // memory-bound rows: the bytes any implementation must move
  double flops = 0;  // GEMMs
};

double gbps(const Measured& m) { return m.bytes / (m.t.median_ms * 1e6); }
double tflops(const Measured& m) { return m.flops / (m.t.median_ms * 1e9); }

TensorOptions on_gpu(DType dt) { return TensorOptions(dt).device(kGpu); }

class Bench {
 public:
  explicit Bench(int repeats) : repeats_(repeats) {}

  void add(const std::string& name, double bytes, double flops, const std::function<void()>& fn) {
    Measured m;
    m.name = name;
    m.bytes = bytes;
    m.flops = flops;
    m.t = time_it(fn, 5, repeats_, kGpu);
    std::cerr << "  " << name << ": " << fmt(m.t.median_ms, 4) << " ms\n";
    rows_.push_back(m);
  }
  const std::vector<Measured>& rows() const { return rows_; }

 private:
  int repeats_;
  std::vector<Measured> rows_;
};

void bench_copies(Bench& b) {
  const std::int64_t n = std::int64_t{1} << 28;  // 256 MiB of bytes
  Tensor x = zeros({n}, on_gpu(DType::u8)), y = zeros({n}, on_gpu(DType::u8));
  auto s = static_cast<cudaStream_t>(current_stream(kGpu));
  b.add("memcpy_d2d_256MiB", 2.0 * n, 0, [&] {
    CIUIC_CUDA_CHECK(cudaMemcpyAsync(y.data_ptr(), x.data_ptr(), static_cast<std::size_t>(n),
                                     cudaMemcpyDeviceToDevice, s));
  });
  b.add("copy_256MiB", 2.0 * n, 0, [&] { y.copy_(x); });  // Tensor::copy_ -> kernels::copy_cast
}

void bench_gemms(Bench& b) {
  struct Shape3 {
    std::int64_t m, k, n;
  };
  // (M, K) x (K, N): the compute ceiling first, then the MLP's two GEMMs at B * T = 16384 rows.
  for (const Shape3& s : {Shape3{8192, 8192, 8192}, Shape3{16384, 768, 3072}, Shape3{16384, 3072, 768}}) {
    Tensor A = randn({s.m, s.k}, on_gpu(DType::f16)), B = randn({s.k, s.n}, on_gpu(DType::f16));
    Tensor C = make_tensor({s.m, s.n}, DType::f16, kGpu);
    const std::string name =
        "gemm_fp16_" + std::to_string(s.m) + "x" + std::to_string(s.k) + "x" + std::to_string(s.n);
    b.add(name, 0, 2.0 * s.m * s.n * s.k, [&] {
      kernels::gemm(false, false, s.m, s.n, s.k, 1.0, A.data_ptr(), s.k, B.data_ptr(), s.n, 0.0, C.data_ptr(), s.n,
                    DType::f16, current_stream(kGpu));
    });
  }
}

void bench_nn_ops(Bench& b) {
  const std::int64_t N = 16 * 1024, C = 768;  // B * T rows of C channels
  const double h = 2;                          // bytes per f16
  {
    Tensor x = randn({N, C}, on_gpu(DType::f16));
    Tensor w = ones({C}, on_gpu(DType::f16)), bias = zeros({C}, on_gpu(DType::f16));
    b.add("layernorm_fwd_fp16_16384x768", 2 * h * N * C, 0, [&] { layer_norm(x, {C}, w, bias); });
    Tensor xg = x.clone().requires_grad_(true), g = randn({N, C}, on_gpu(DType::f16));
    // d/dx only (as the baseline's autograd.grad(ln(a), (a,), g)): read x, write y; read gy and x, write gx.
    b.add("layernorm_fwdbwd_fp16_16384x768", 5 * h * N * C, 0,
          [&] { ciuic::grad({layer_norm(xg, {C}, w, bias)}, {xg}, {g}); });
    b.add("gelu_fp16_16384x768", 2 * h * N * C, 0, [&] { gelu(x, GeluApprox::tanh); });
  }
  {
    Tensor s = randn({16 * 12, 1024, 1024}, on_gpu(DType::f16));
    b.add("softmax_fp16_192x1024x1024", 2 * h * static_cast<double>(s.numel()), 0, [&] { softmax(s, -1); });
  }
  {
    const std::int64_t rows = 8192, V = 50304;
    Tensor logits = randn({rows, V}, on_gpu(DType::f32)).requires_grad_(true);
    Tensor t = uniform({rows}, 0, 50257, DType::f64).to(DType::i64).to(kGpu);
    // Read the logits once, write their gradient once (4 bytes each).
    b.add("xent_fwdbwd_fp32_8192x50304", 8.0 * rows * V, 0, [&] { ciuic::grad({cross_entropy(logits, t)}, {logits}); });
  }
}

void bench_elementwise(Bench& b) {
  const std::int64_t N = 16 * 1024, C4 = 4 * 768;  // the MLP's hidden activations
  for (DType dt : {DType::f32, DType::f16}) {
    const double e = static_cast<double>(dtype_size(dt));
    const std::string tag = dt == DType::f32 ? "fp32" : "fp16";
    Tensor x = randn({N, C4}, on_gpu(dt)), y = randn({N, C4}, on_gpu(dt));
    b.add("add_" + tag + "_16384x3072", 3 * e * N * C4, 0, [&] { add(x, y); });
    b.add("sum_" + tag + "_16384x3072", e * N * C4, 0, [&] { sum(x); });
  }
  Tensor g = randn({N, 768}, on_gpu(DType::f32));  // a bias gradient: sum over the rows
  b.add("sum_dim0_fp32_16384x768", 4.0 * N * 768, 0, [&] { sum(g, {0}); });
}

// Fused AdamW over GPT-2 124M's parameters (the baseline's list: wte, then per layer
// qkv, proj, fc, fc2), f32 master weights, f32 gradients, writing an f16 model copy.
void bench_adamw(Bench& b) {
  std::vector<std::int64_t> numels = {38597376};
  for (int l = 0; l < 12; ++l)
    for (std::int64_t n : {768 * 2304, 768 * 768, 768 * 3072, 3072 * 768}) numels.push_back(n);
  std::vector<Tensor> keep;
  std::vector<void*> params, m, v, copies;
  std::vector<const void*> grads;
  double total = 0;
  for (std::int64_t n : numels) {
    Tensor p = randn({n}, on_gpu(DType::f32)), g = mul(randn({n}, on_gpu(DType::f32)), 1e-3);
    Tensor s1 = zeros({n}, on_gpu(DType::f32)), s2 = zeros({n}, on_gpu(DType::f32));
    Tensor c = make_tensor({n}, DType::f16, kGpu);
    params.push_back(p.data_ptr());
    grads.push_back(g.data_ptr());
    m.push_back(s1.data_ptr());
    v.push_back(s2.data_ptr());
    copies.push_back(c.data_ptr());
    keep.insert(keep.end(), {p, g, s1, s2, c});
    total += static_cast<double>(n);
  }
  kernels::FusedOptimTensors t;
  t.count = static_cast<int>(numels.size());
  t.numels = numels.data();
  t.params = params.data();
  t.grads = grads.data();
  t.grad_dtype = DType::f32;
  t.state1 = m.data();
  t.state2 = v.data();
  t.model_copies = copies.data();
  t.copy_dtype = DType::f16;
  kernels::AdamWHyper hyper;
  hyper.lr = 1e-4;
  std::int64_t step = 0;
  // Per parameter: read p, g, m, v (4 x 4 bytes), write p, m, v (3 x 4) and the f16 copy (2).
  b.add("adamw_fused_fp32_124M", 30.0 * total, 0,
        [&] { kernels::fused_adamw(t, hyper, ++step, nullptr, nullptr, current_stream(kGpu)); });
}

// conv2d through cuDNN at ResNet-50 shapes (batch 32, NCHW; the stem, the bottleneck
// 1x1 and 3x3 convolutions of each stage, a stride-2 3x3) and one depthwise 3x3, with
// the default cuDNN settings (heuristic algorithm choice, deterministic algorithms,
// no TF32). FLOPs 2 N Cout OH OW (Cin / groups) kh kw forward; forward+backward (input
// and weight gradients) counts 3x that. bench/torch_conv.py times the same rows in
// PyTorch (same names).
void bench_conv(Bench& b) {
  struct Conv {
    std::int64_t n, cin, hw, cout, k, s, p, groups;
    DType dt;
  };
  const std::vector<Conv> convs = {
      {32, 3, 224, 64, 7, 2, 3, 1, DType::f16},    {32, 64, 56, 64, 3, 1, 1, 1, DType::f16},
      {32, 256, 56, 64, 1, 1, 0, 1, DType::f16},   {32, 128, 56, 128, 3, 2, 1, 1, DType::f16},
      {32, 128, 28, 128, 3, 1, 1, 1, DType::f16},  {32, 256, 14, 256, 3, 1, 1, 1, DType::f16},
      {32, 512, 7, 512, 3, 1, 1, 1, DType::f16},   {32, 256, 28, 256, 3, 1, 1, 256, DType::f16},
      {32, 64, 56, 64, 3, 1, 1, 1, DType::bf16},   {32, 64, 56, 64, 3, 1, 1, 1, DType::f32},
  };
  for (const Conv& c : convs) {
    const std::string tag = c.dt == DType::f16 ? "fp16" : c.dt == DType::bf16 ? "bf16" : "fp32";
    const std::string shape = "N" + std::to_string(c.n) + "_C" + std::to_string(c.cin) + "x" + std::to_string(c.hw) +
                              "x" + std::to_string(c.hw) + "_K" + std::to_string(c.cout) + "x" + std::to_string(c.k) +
                              "x" + std::to_string(c.k) + "_s" + std::to_string(c.s) +
                              (c.groups > 1 ? "_g" + std::to_string(c.groups) : "");
    Conv2dOptions o;
    o.stride[0] = o.stride[1] = c.s;
    o.padding[0] = o.padding[1] = c.p;
    o.groups = c.groups;
    const std::int64_t out = (c.hw + 2 * c.p - c.k) / c.s + 1;
    const double flops = 2.0 * c.n * c.cout * out * out * (c.cin / c.groups) * c.k * c.k;
    Tensor x = randn({c.n, c.cin, c.hw, c.hw}, on_gpu(c.dt));
    Tensor w = mul(randn({c.cout, c.cin / c.groups, c.k, c.k}, on_gpu(c.dt)), 0.05);
    b.add("conv2d_fwd_" + tag + "_" + shape, 0, flops, [&] { conv2d(x, w, Tensor(), o); });
    Tensor xg = x.clone().requires_grad_(true), wg = w.clone().requires_grad_(true);
    Tensor g = randn({c.n, c.cout, out, out}, on_gpu(c.dt));
    b.add("conv2d_fwdbwd_" + tag + "_" + shape, 0, 3 * flops,
          [&] { ciuic::grad({conv2d(xg, wg, Tensor(), o)}, {xg, wg}, {g}); });
  }
}

// Causal flash attention, f16, 12 heads of 64: GPT-2 124M (B = 16, T = 1024) and a long
// context (B = 4, T = 4096), forward and forward + backward (gradients of q, k, v),
// as the baseline's sdpa rows. FLOPs count the matmuls a causal attention needs, half
// the square: forward 4 B H T^2 D / 2; backward 2.5x that (Q K^T recomputed, dV, dP,
// dQ, dK), so forward + backward 3.5x. Our dQ kernel recomputes Q K^T and dO V^T once
// more (for determinism); that work is not counted.
void bench_attention(Bench& b) {
  const std::int64_t H = 12, D = 64;
  for (auto [B, T] : {std::pair<std::int64_t, std::int64_t>{16, 1024}, {4, 4096}}) {
    const std::string shape = std::to_string(B) + "x" + std::to_string(H) + "x" + std::to_string(T) + "x" + std::to_string(D);
    const double fwd = 4.0 * B * H * static_cast<double>(T) * T * D / 2;
    Tensor q = randn({B, H, T, D}, on_gpu(DType::f16)).requires_grad_(true);
    Tensor k = randn({B, H, T, D}, on_gpu(DType::f16)).requires_grad_(true);
    Tensor v = randn({B, H, T, D}, on_gpu(DType::f16)).requires_grad_(true);
    Tensor go = randn({B, H, T, D}, on_gpu(DType::f16));
    {
      NoGradGuard ng;
      b.add("sdpa_causal_fwd_fp16_" + shape, 0, fwd, [&] { scaled_dot_product_attention(q, k, v, true); });
    }
    b.add("sdpa_causal_fwdbwd_fp16_" + shape, 0, 3.5 * fwd,
          [&] { ciuic::grad({scaled_dot_product_attention(q, k, v, true)}, {q, k, v}, {go}); });
  }
}

int run(const std::string& json, const std::string& torch_path, int repeats) {
  std::map<std::string, TorchRow> torch;
  if (!torch_path.empty()) torch = read_torch(torch_path);
  const std::string gpu_name = machine_description(kGpu);
  std::cerr << "bench_kernels on " << gpu_name << " (" << today() << "), median of " << repeats << " runs\n";

  Bench b(repeats);
  bench_copies(b);
  bench_gemms(b);
  bench_nn_ops(b);
  bench_elementwise(b);
  bench_adamw(b);
  bench_conv(b);
  bench_attention(b);
  synchronize(kGpu);

  const double bw_ceiling = gbps(b.rows().front());  // memcpy_d2d_256MiB
  double flop_ceiling = 0;
  for (const Measured& m : b.rows())
    if (m.name == "gemm_fp16_8192x8192x8192") flop_ceiling = tflops(m);

  std::vector<Row> table;
  for (const Measured& m : b.rows()) {
    Row r;
    r.name = m.name;
    r.t = m.t;
    const bool compute = m.flops > 0;
    const double rate = compute ? tflops(m) : gbps(m);
    const double ceiling = compute ? flop_ceiling : bw_ceiling;
    r.extra.push_back({"rate", fmt(rate, 1)});
    r.extra.push_back({"unit", compute ? "TFLOP/s" : "GB/s"});
    r.extra.push_back({"of_ceiling", ceiling > 0 ? fmt(rate / ceiling, 3) : "-"});
    auto it = torch.find(m.name);
    const bool has = it != torch.end();
    r.extra.push_back({"torch_ms", has ? fmt(it->second.ms, 4) : "-"});
    r.extra.push_back({"torch/ciuic", has ? fmt(it->second.ms / m.t.median_ms, 2) : "-"});
    table.push_back(r);
  }
  const std::string title = "bench_kernels " + gpu_name + " " + today();
  print_table(title, table);
  std::cout << "ceilings (this run): " << fmt(bw_ceiling, 1) << " GB/s device-to-device memcpy, "
            << fmt(flop_ceiling, 1) << " TFLOP/s f16 GEMM 8192^3\n";
  if (!torch.empty()) {
    std::cout << "torch_ms: torch_gpt2.py kernels (" << torch_path
              << "), a mean over its iterations; ours are medians. Its AdamW writes no f16 copy (28 vs 30 bytes per "
                 "parameter).\n";
    for (const auto& [name, row] : torch)
      if (row.device != gpu_name) {
        std::cout << "note: the PyTorch numbers come from '" << row.device << "', this run from '" << gpu_name
                  << "'\n";
        break;
      }
  }
  if (!json.empty()) write_json(json, title, table);
  return 0;
}

#endif  // CIUIC_WITH_CUDA

}  // namespace

int main(int argc, char** argv) {
  std::string json, torch;
  int repeats = 20;
  cli::Parser p("bench_kernels", "[--json PATH] [--torch PATH] [--repeats N (>= 20)]", argc, argv);
  while (p.next()) {
    if (p.is("--json")) json = p.text();
    else if (p.is("--torch")) torch = p.text();
    else if (p.is("--repeats")) repeats = p.integer(20, 1000000);
    else return p.unknown();
  }
  if (p.stop()) return p.exit_code();
  if (!cuda_available()) {
    std::cerr << "bench_kernels: no usable CUDA GPU (this build has CUDA: " << (built_with_cuda() ? "yes" : "no")
              << "); it times CUDA kernels only, so there is nothing to measure here\n";
    return 1;
  }
#ifdef CIUIC_WITH_CUDA
  try {
    return run(json, torch, repeats);
  } catch (const Error& e) {
    std::cerr << "bench_kernels: " << e.what() << "\n";
    return 1;
  }
#else
  return 1;
#endif
}
