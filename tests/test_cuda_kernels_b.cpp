// [cuda] GEMM (cuBLASLt), fused optimizers, multi-tensor norm / unscale / scale,
// casts, transpose and the attention permute, each against a CPU reference.
// Outputs are poisoned with NaN before every run. Without a GPU the CPU is the
// device under test: the launchers are skipped (CIUIC_DUT_GPU_ONLY) and the checks
// of their outputs are evaluated but not asserted (CHECK_ON_GPU), while the setup,
// the references and the host-side validation run. CPU-only builds compile none of it.
#include "device_under_test.h"
#include "test_util.h"

#if defined(CIUIC_WITH_CUDA)

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>

#include "ciuic/device.h"
#include "ciuic/kernels/cast_transpose.h"
#include "ciuic/kernels/gemm.h"
#include "ciuic/kernels/multi_tensor.h"
#include "ciuic/kernels/optim.h"
#include "ciuic/random.h"
#include "ciuic/stream.h"
#include "ciuic/tensor.h"

using namespace ciuic;
using namespace ciuic::kernels;
using ciuic::test::dut;
using ciuic::test::large_n;
using ciuic::test::dut_is_gpu;

namespace {

// The device under test (device_under_test.h): cuda:0, or the CPU without a GPU,
// where the launchers are skipped and everything else runs.
void* stream() { return ciuic::test::dut_stream(); }
void gpu_sync() { ciuic::test::dut_sync(); }

Tensor gpu_uniform(const Shape& s, DType dt, double lo, double hi, std::uint64_t seed) {
  Generator g{seed, 0};
  return uniform(s, lo, hi, TensorOptions(dt).device(dut()), &g);
}
Tensor gpu_full(const Shape& s, DType dt, double v) { return full(s, v, TensorOptions(dt).device(dut())); }

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

// Bitwise equality of two f32 vectors, reporting the first difference.
void check_bits_equal(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  REQUIRE(a.size() == b.size());
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0 && bad++ == 0) first = i;
  INFO(what << ": " << bad << " of " << a.size() << " differ; first at " << first << ": "
            << (bad ? a[first] : 0.f) << " vs " << (bad ? b[first] : 0.f));
  CHECK_ON_GPU(bad == 0);
}

// ||x - ref||_F / ||ref||_F (absolute when ref is all zeros); NaN anywhere -> inf.
double rel_frobenius(const std::vector<double>& x, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) return INFINITY;
    num += (x[i] - ref[i]) * (x[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// ---- GEMM reference ----

struct GemmCase {
  DType dt;
  bool tf32;
  double tol;
  const char* name;
};
// TF32: 10 mantissa bits per operand. A CPU simulation over these shapes (50
// draws each) gave worst relative Frobenius errors of 3e-4 (k >= 7) to 7e-4
// (1x1x1) with round-to-nearest operands and 7e-4 to 1.4e-3 if the hardware
// truncates, so 5e-4 would be flaky; 2e-3 still fails anything f16-like.
const GemmCase kGemmCases[] = {
    {DType::f32, false, 1e-5, "f32"},   {DType::f32, true, 2e-3, "tf32"}, {DType::f16, false, 1e-2, "f16"},
    {DType::bf16, false, 1e-2, "bf16"}, {DType::f64, false, 1e-12, "f64"},
};

// Row-major reference for one matrix of problem p on host doubles (inputs already
// rounded to their dtype). C is (m, ldc) and is updated as gemm would.
void ref_gemm(const GemmProblem& p, double alpha, const double* A, const double* B, double beta, double* C,
              const double* bias, double* aux) {
  for (std::int64_t i = 0; i < p.m; ++i)
    for (std::int64_t j = 0; j < p.n; ++j) {
      double acc = 0;
      for (std::int64_t l = 0; l < p.k; ++l) {
        const double a = p.trans_a ? A[l * p.lda + i] : A[i * p.lda + l];
        const double b = p.trans_b ? B[j * p.ldb + l] : B[l * p.ldb + j];
        acc += a * b;
      }
      double& c = C[i * p.ldc + j];
      double v = alpha * acc + (beta == 0 ? 0.0 : beta * c);
      if (epilogue_has_bias(p.epilogue)) v += bias[j];
      if (epilogue_has_aux(p.epilogue)) aux[i * p.aux_ld + j] = v;
      if (epilogue_has_gelu(p.epilogue)) v = gemm_gelu_tanh(v);
      c = v;
    }
}

// Only the (m, n) window of each row of C (ldc may pad) enters the error.
std::vector<double> window(const std::vector<double>& c, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                           std::int64_t batch = 1, std::int64_t stride = 0) {
  std::vector<double> out;
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j) out.push_back(c[static_cast<std::size_t>(b * stride + i * ld + j)]);
  return out;
}

// Runs p once on the GPU (A, B uniform; C poisoned when beta == 0, else uniform)
// against ref_gemm. Returns the relative errors of C and of the aux output (0
// without one).
struct GemmErr {
  double c, aux;
};
GemmErr run_gemm_errors(GemmProblem p, double alpha, double beta, std::uint64_t seed) {
  const std::int64_t a_rows = p.trans_a ? p.k : p.m, b_rows = p.trans_b ? p.n : p.k;
  const std::int64_t batch = p.batch;
  const std::int64_t a_elems = (batch > 1 ? (batch - 1) * p.stride_a : 0) + a_rows * p.lda;
  const std::int64_t b_elems = (batch > 1 ? (batch - 1) * p.stride_b : 0) + b_rows * p.ldb;
  const std::int64_t c_elems = (batch > 1 ? (batch - 1) * p.stride_c : 0) + p.m * p.ldc;
  const std::int64_t aux_elems =
      epilogue_has_aux(p.epilogue) ? (batch > 1 ? (batch - 1) * p.aux_stride : 0) + p.m * p.aux_ld : 1;
  Tensor A = gpu_uniform({std::max<std::int64_t>(a_elems, 1)}, p.ab_dtype, -1, 1, seed);
  Tensor B = gpu_uniform({std::max<std::int64_t>(b_elems, 1)}, p.ab_dtype, -1, 1, seed + 1);
  Tensor C = beta == 0 ? gpu_full({c_elems}, p.c_dtype, NAN) : gpu_uniform({c_elems}, p.c_dtype, -1, 1, seed + 2);
  Tensor bias = gpu_uniform({std::max<std::int64_t>(p.n, 1)}, p.c_dtype, -1, 1, seed + 3);
  Tensor aux = gpu_full({aux_elems}, p.c_dtype, NAN);
  std::vector<double> a = vals(A), b = vals(B), c = vals(C), bs = vals(bias), ax(static_cast<std::size_t>(aux_elems));
  CIUIC_DUT_GPU_ONLY(gemm(p, alpha, A.data_ptr(), B.data_ptr(), beta, C.data_ptr(), bias.data_ptr(), aux.data_ptr(), stream()));
  gpu_sync();
  for (std::int64_t i = 0; i < batch; ++i) {
    GemmProblem one = p;
    one.batch = 1;
    ref_gemm(one, alpha, a.data() + i * p.stride_a, b.data() + i * p.stride_b, beta, c.data() + i * p.stride_c,
             bs.data(), ax.data() + i * p.aux_stride);
  }
  const double err = rel_frobenius(window(vals(C), p.m, p.n, p.ldc, batch, p.stride_c),
                                   window(c, p.m, p.n, p.ldc, batch, p.stride_c));
  double aux_err = 0;
  if (epilogue_has_aux(p.epilogue))
    aux_err = rel_frobenius(window(vals(aux), p.m, p.n, p.aux_ld, batch, p.aux_stride),
                            window(ax, p.m, p.n, p.aux_ld, batch, p.aux_stride));
  return {err, aux_err};
}

double run_gemm_case(const GemmProblem& p, double alpha, double beta, std::uint64_t seed) {
  return run_gemm_errors(p, alpha, beta, seed).c;
}

}  // namespace

TEST_CASE("gemm matches a double-precision loop on odd sizes, all transposes and dtypes", "[cuda][gemm]") {
  INFO("device under test: " << ciuic::test::dut_name());
  const std::int64_t shapes[][3] = {{1, 1, 1}, {7, 33, 129}, {129, 7, 33}, {33, 129, 7},
                                    {1, 129, 33}, {129, 1, 7}, {33, 33, 1}};
  std::uint64_t seed = 100;
  for (const GemmCase& gc : kGemmCases)
    for (const auto& s : shapes)
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          GemmProblem p = gemm_problem(ta, tb, s[0], s[1], s[2], gc.dt);
          p.allow_tf32 = gc.tf32;
          INFO(gc.name << " m=" << s[0] << " n=" << s[1] << " k=" << s[2] << " ta=" << ta << " tb=" << tb);
          CHECK_ON_GPU(run_gemm_case(p, 1.0, 0.0, seed += 7) <= gc.tol);
        }
}

TEST_CASE("gemm: alpha, beta, padded leading dims, f16/bf16 in with f32 out", "[cuda][gemm]") {
  INFO("device under test: " << ciuic::test::dut_name());
  for (const GemmCase& gc : kGemmCases) {
    GemmProblem p = gemm_problem(true, false, 33, 7, 129, gc.dt);
    p.allow_tf32 = gc.tf32;
    p.lda += 3;
    p.ldb += 5;
    p.ldc += 2;
    INFO(gc.name);
    CHECK_ON_GPU(run_gemm_case(p, 0.5, -1.5, 11) <= gc.tol);
    CHECK_ON_GPU(run_gemm_case(p, -2.0, 1.0, 12) <= gc.tol);
  }
  for (DType dt : {DType::f16, DType::bf16}) {
    GemmProblem p = gemm_problem(false, true, 129, 33, 7, dt);
    p.c_dtype = DType::f32;
    INFO(dtype_name(dt) << " -> f32");
    CHECK_ON_GPU(run_gemm_case(p, 1.0, 0.0, 13) <= 1e-2);
    CHECK_ON_GPU(run_gemm_case(p, 1.0, 1.0, 14) <= 1e-2);
  }
}

TEST_CASE("gemm: strided batches (incl. a broadcast operand) and pointer-array batches", "[cuda][gemm]") {
  INFO("device under test: " << ciuic::test::dut_name());
  for (const GemmCase& gc : kGemmCases) {
    INFO(gc.name);
    GemmProblem p = gemm_problem(false, false, 7, 33, 129, gc.dt);
    p.allow_tf32 = gc.tf32;
    p.batch = 3;
    p.stride_a = 7 * 129 + 5;
    p.stride_b = 129 * 33 + 1;
    p.stride_c = 7 * 33 + 9;
    CHECK_ON_GPU(run_gemm_case(p, 1.0, 0.0, 21) <= gc.tol);
    p.trans_a = p.trans_b = true;
    p.lda = 7;
    p.ldb = 129;
    CHECK_ON_GPU(run_gemm_case(p, 1.0, 0.5, 22) <= gc.tol);
    // stride_b == 0: one B shared by every batch entry (x @ W).
    GemmProblem shared = gemm_problem(false, true, 33, 7, 129, gc.dt);
    shared.allow_tf32 = gc.tf32;
    shared.batch = 4;
    shared.stride_a = 33 * 129;
    shared.stride_b = 0;
    shared.stride_c = 33 * 7;
    CHECK_ON_GPU(run_gemm_case(shared, 1.0, 0.0, 23) <= gc.tol);
  }
  // Pointer arrays: three separately allocated problems.
  GemmProblem p = gemm_problem(false, true, 7, 33, 129, DType::f32);
  std::vector<Tensor> as, bs, cs;
  std::vector<const void*> pa, pb;
  std::vector<void*> pc;
  for (int i = 0; i < 3; ++i) {
    as.push_back(gpu_uniform({7, 129}, DType::f32, -1, 1, 30 + i));
    bs.push_back(gpu_uniform({33, 129}, DType::f32, -1, 1, 40 + i));
    cs.push_back(gpu_full({7, 33}, DType::f32, NAN));
    pa.push_back(as.back().data_ptr());
    pb.push_back(bs.back().data_ptr());
    pc.push_back(cs.back().data_ptr());
  }
  CIUIC_DUT_GPU_ONLY(gemm_batched(p, 1.0, pa.data(), pb.data(), 0.0, pc.data(), 3, nullptr, nullptr, stream()));
  gpu_sync();
  for (int i = 0; i < 3; ++i) {
    std::vector<double> a = vals(as[i]), b = vals(bs[i]), ref(7 * 33, 0.0);
    ref_gemm(p, 1.0, a.data(), b.data(), 0.0, ref.data(), nullptr, nullptr);
    CHECK_ON_GPU(rel_frobenius(vals(cs[i]), ref) <= 1e-5);
  }
}

TEST_CASE("gemm epilogues: bias, GELU, GELU with the pre-activation aux output", "[cuda][gemm]") {
  INFO("device under test: " << ciuic::test::dut_name());
  const GemmEpilogue eps[] = {GemmEpilogue::bias, GemmEpilogue::gelu, GemmEpilogue::gelu_bias,
                              GemmEpilogue::gelu_aux, GemmEpilogue::gelu_aux_bias};
  for (const GemmCase& gc : kGemmCases)
    for (GemmEpilogue e : eps)
      for (std::int64_t aux_ld : {40, 37}) {  // 40: cuBLASLt-fusable (multiple of 8); 37: ciuic's fallback
        if (!epilogue_has_aux(e) && aux_ld != 40) continue;
        GemmProblem p = gemm_problem(false, true, 33, 35, 129, gc.dt);
        p.allow_tf32 = gc.tf32;
        p.epilogue = e;
        p.aux_ld = aux_ld;
        INFO(gc.name << " epilogue " << epilogue_name(e) << " aux_ld " << aux_ld);
        // cuBLASLt does not document how it evaluates tanh inside its GELU: allow a
        // fast tanh (~5e-4 relative) on the activated output of the f32 paths. The
        // pre-GELU aux output keeps the plain GEMM bound.
        const double gelu_tol = epilogue_has_gelu(e) ? std::max(gc.tol, 1e-3) : gc.tol;
        GemmProblem batched = p;
        batched.batch = 2;
        batched.stride_a = 33 * 129;
        batched.stride_b = 35 * 129;
        batched.stride_c = 33 * 35;
        batched.aux_stride = 33 * aux_ld;
        const GemmErr errs[] = {run_gemm_errors(p, 1.0, 0.0, 50), run_gemm_errors(p, 0.75, 1.0, 51),
                                run_gemm_errors(batched, 1.0, 0.0, 52)};
        for (const GemmErr& er : errs) {
          CHECK_ON_GPU(er.c <= gelu_tol);
          CHECK_ON_GPU(er.aux <= gc.tol);
        }
      }
}

TEST_CASE("gemm: k == 0 gives beta * C (zeros over NaN for beta 0); plans are cached", "[cuda][gemm]") {
  INFO("device under test: " << ciuic::test::dut_name());
  for (const GemmCase& gc : kGemmCases) {
    INFO(gc.name);
    GemmProblem p = gemm_problem(false, false, 7, 33, 0, gc.dt);
    Tensor C = gpu_full({7, 33}, gc.dt, NAN);
    CIUIC_DUT_GPU_ONLY(gemm(p, 1.0, nullptr, nullptr, 0.0, C.data_ptr(), nullptr, nullptr, stream()));
    gpu_sync();
    for (double v : vals(C)) CHECK_ON_GPU(v == 0.0);
    Tensor C2 = gpu_full({7, 33}, gc.dt, 1.5);
    CIUIC_DUT_GPU_ONLY(gemm(p, 1.0, nullptr, nullptr, 2.0, C2.data_ptr(), nullptr, nullptr, stream()));
    gpu_sync();
    for (double v : vals(C2)) CHECK_ON_GPU(v == 3.0);
    p.epilogue = GemmEpilogue::bias;
    Tensor bias = gpu_uniform({33}, gc.dt, -1, 1, 60);
    CIUIC_DUT_GPU_ONLY(gemm(p, 1.0, nullptr, nullptr, 0.0, C.data_ptr(), bias.data_ptr(), nullptr, stream()));
    gpu_sync();
    auto bv = vals(bias), cv = vals(C);
    for (std::size_t i = 0; i < cv.size(); ++i) CHECK_ON_GPU(cv[i] == bv[i % 33]);
  }
  // A repeated problem reuses its plan.
  GemmProblem p = gemm_problem(false, false, 17, 19, 23, DType::f32);
  Tensor A = gpu_uniform({17, 23}, DType::f32, -1, 1, 70), B = gpu_uniform({23, 19}, DType::f32, -1, 1, 71);
  Tensor C = gpu_full({17, 19}, DType::f32, NAN);
  CIUIC_DUT_GPU_ONLY(gemm(p, 1.0, A.data_ptr(), B.data_ptr(), 0.0, C.data_ptr(), nullptr, nullptr, stream()));
  if (dut_is_gpu()) {  // the plan cache lives on the device
    const std::size_t plans = gemm_cached_plans();
    for (int i = 0; i < 3; ++i) gemm(p, 1.0, A.data_ptr(), B.data_ptr(), 0.0, C.data_ptr(), nullptr, nullptr, stream());
    gpu_sync();
    CHECK(gemm_cached_plans() == plans);
  }
  // Bad problems fail on the host with the sizes in the message.
  GemmProblem bad = p;
  bad.lda = 3;
  CHECK_THROWS_WITH_ALL(gemm(bad, 1.0, A.data_ptr(), B.data_ptr(), 0.0, C.data_ptr(), nullptr, nullptr, stream()),
                        ValueError, "lda=3");
}

// ---- optimizers ----

namespace {

// A set of parameters with their state on both sides.
struct OptimFixture {
  std::vector<std::int64_t> numels;
  std::vector<Tensor> p, g, m, v, copy;  // GPU
  std::vector<std::vector<float>> hp, hm, hv;  // CPU mirrors
  std::vector<void*> pp, pm, pv, pcopy;
  std::vector<const void*> pg;
  DType grad_dtype;

  OptimFixture(const std::vector<std::int64_t>& sizes, DType gd, DType copy_dt) : numels(sizes), grad_dtype(gd) {
    std::uint64_t seed = 1000;
    for (std::int64_t n : sizes) {
      p.push_back(gpu_uniform({n}, DType::f32, -1, 1, seed++));
      g.push_back(gpu_full({n}, gd, 0.0));
      m.push_back(gpu_full({n}, DType::f32, 0.0));
      v.push_back(gpu_full({n}, DType::f32, 0.0));
      copy.push_back(gpu_full({n}, copy_dt, NAN));
      hp.push_back(p.back().to_vector<float>());
      hm.emplace_back(static_cast<std::size_t>(n), 0.0f);
      hv.emplace_back(static_cast<std::size_t>(n), 0.0f);
      pp.push_back(p.back().data_ptr());
      pg.push_back(g.back().data_ptr());
      pm.push_back(m.back().data_ptr());
      pv.push_back(v.back().data_ptr());
      pcopy.push_back(copy.back().data_ptr());
    }
  }
  FusedOptimTensors tensors(bool with_copy, DType copy_dt) const {
    FusedOptimTensors t;
    t.count = static_cast<int>(numels.size());
    t.numels = numels.data();
    t.params = pp.data();
    t.grads = pg.data();
    t.grad_dtype = grad_dtype;
    t.state1 = pm.data();
    t.state2 = pv.data();
    t.model_copies = with_copy ? pcopy.data() : nullptr;
    t.copy_dtype = copy_dt;
    return t;
  }
  // New gradients for every tensor; returns them as the f32 values the kernel reads.
  std::vector<std::vector<float>> new_grads(std::uint64_t seed, double scale) {
    std::vector<std::vector<float>> out;
    for (std::size_t i = 0; i < g.size(); ++i) {
      Generator gen{seed + i, 0};
      g[i].copy_(uniform({numels[i]}, -scale, scale, TensorOptions(grad_dtype).device(dut()), &gen));
      out.push_back(g[i].to_vector<float>());
    }
    return out;
  }
  void check_against_host(bool check_m, bool check_v) const {
    for (std::size_t i = 0; i < p.size(); ++i) {
      INFO("tensor " << i << " of " << numels[i] << " elements");
      check_bits_equal(p[i].to_vector<float>(), hp[i], "params");
      if (check_m) check_bits_equal(m[i].to_vector<float>(), hm[i], "state1");
      if (check_v) check_bits_equal(v[i].to_vector<float>(), hv[i], "state2");
    }
  }
  void check_copies(DType copy_dt) const {
    for (std::size_t i = 0; i < p.size(); ++i) {
      std::vector<double> got = vals(copy[i]);
      std::size_t bad = 0;
      for (std::size_t j = 0; j < got.size(); ++j) {
        const float want = copy_dt == DType::f16 ? static_cast<float>(Half(hp[i][j]))
                                                 : static_cast<float>(BFloat16(hp[i][j]));
        if (!(got[j] == static_cast<double>(want))) ++bad;
      }
      INFO("model copy of tensor " << i);
      CHECK_ON_GPU(bad == 0);
    }
  }
};

// Odd sizes around the chunk boundaries, and enough tensors to need several tables.
std::vector<std::int64_t> optim_sizes(bool big) {
  std::vector<std::int64_t> s = {1, 7, kMultiTensorChunk - 1, kMultiTensorChunk, kMultiTensorChunk + 1, 0, 100003};
  for (int i = 0; i < 45; ++i) s.push_back(13 * i + 3);
  if (big) s.push_back(kMultiTensorMaxBlocks * kMultiTensorChunk + 5);  // more chunks than one launch holds
  return s;
}

}  // namespace

TEST_CASE("fused AdamW matches the CPU math bit for bit, writes model copies, skips on found_inf",
          "[cuda][optim]") {
  INFO("device under test: " << ciuic::test::dut_name());
  struct Case {
    DType grad;
    bool copy;
    DType copy_dt;
    bool big;
  };
  const Case cases[] = {{DType::f32, false, DType::f16, true},
                        {DType::f16, true, DType::f16, false},
                        {DType::bf16, true, DType::bf16, false},
                        {DType::f32, true, DType::bf16, false}};
  for (const Case& cs : cases) {
    INFO("grads " << dtype_name(cs.grad) << ", copy " << (cs.copy ? dtype_name(cs.copy_dt) : "none"));
    OptimFixture fx(optim_sizes(cs.big), cs.grad, cs.copy_dt);
    AdamWHyper h;
    h.lr = 1e-2;
    h.weight_decay = 0.05;
    Tensor scale = gpu_full({1}, DType::f32, 0.5);
    Tensor found = gpu_full({1}, DType::f32, 0.0);
    for (std::int64_t step = 1; step <= 3; ++step) {
      auto grads = fx.new_grads(500 + 10 * static_cast<std::uint64_t>(step), 2.0);
      CIUIC_DUT_GPU_ONLY(fused_adamw(fx.tensors(cs.copy, cs.copy_dt), h, step, static_cast<const float*>(scale.data_ptr()),
                  static_cast<const float*>(found.data_ptr()), stream()));
      const AdamWConsts c = adamw_consts(h, step);
      for (std::size_t i = 0; i < grads.size(); ++i)
        for (std::size_t j = 0; j < grads[i].size(); ++j)
          adamw_update(fx.hp[i][j], fx.hm[i][j], fx.hv[i][j], scaled_grad(grads[i][j], 0.5f), c);
      gpu_sync();
    }
    fx.check_against_host(true, true);
    if (cs.copy) fx.check_copies(cs.copy_dt);
    // found_inf set: a step with wild gradients must leave every buffer bit-identical.
    std::vector<std::vector<float>> p0, m0, v0;
    std::vector<std::vector<double>> c0;
    for (std::size_t i = 0; i < fx.p.size(); ++i) {
      p0.push_back(fx.p[i].to_vector<float>());
      m0.push_back(fx.m[i].to_vector<float>());
      v0.push_back(fx.v[i].to_vector<float>());
      c0.push_back(vals(fx.copy[i]));
    }
    fx.new_grads(999, 1e4);
    found.fill_(1.0);
    CIUIC_DUT_GPU_ONLY(fused_adamw(fx.tensors(cs.copy, cs.copy_dt), h, 4, static_cast<const float*>(scale.data_ptr()),
                static_cast<const float*>(found.data_ptr()), stream()));
    gpu_sync();
    for (std::size_t i = 0; i < fx.p.size(); ++i) {
      check_bits_equal(fx.p[i].to_vector<float>(), p0[i], "params after skipped step");
      check_bits_equal(fx.m[i].to_vector<float>(), m0[i], "exp_avg after skipped step");
      check_bits_equal(fx.v[i].to_vector<float>(), v0[i], "exp_avg_sq after skipped step");
      auto c = vals(fx.copy[i]);
      bool same = c.size() == c0[i].size();
      for (std::size_t j = 0; same && j < c.size(); ++j)
        same = (std::isnan(c[j]) && std::isnan(c0[i][j])) || c[j] == c0[i][j];
      CHECK_ON_GPU(same);
    }
  }
}

TEST_CASE("fused SGD (momentum, nesterov, weight decay, no momentum) matches the CPU math", "[cuda][optim]") {
  INFO("device under test: " << ciuic::test::dut_name());
  SgdHyper hs[3];
  hs[0].lr = 0.1;
  hs[0].momentum = 0.9;
  hs[0].dampening = 0.1;
  hs[0].weight_decay = 1e-3;
  hs[1] = hs[0];
  hs[1].dampening = 0.0;
  hs[1].nesterov = true;
  hs[2].lr = 0.05;  // plain SGD: no buffers at all
  hs[2].weight_decay = 0.01;
  for (const SgdHyper& h : hs)
    for (DType gd : {DType::f32, DType::f16}) {
      INFO("momentum " << h.momentum << " nesterov " << h.nesterov << " grads " << dtype_name(gd));
      OptimFixture fx(optim_sizes(false), gd, DType::f16);
      FusedOptimTensors t = fx.tensors(true, DType::f16);
      t.state2 = nullptr;
      if (h.momentum == 0) t.state1 = nullptr;
      for (int step = 1; step <= 3; ++step) {
        auto grads = fx.new_grads(700 + 10 * static_cast<std::uint64_t>(step), 1.0);
        CIUIC_DUT_GPU_ONLY(fused_sgd(t, h, step == 1, nullptr, nullptr, stream()));
        const SgdConsts c = sgd_consts(h);
        for (std::size_t i = 0; i < grads.size(); ++i)
          for (std::size_t j = 0; j < grads[i].size(); ++j)
            sgd_update(fx.hp[i][j], fx.hm[i][j], grads[i][j], c, step == 1);
        gpu_sync();
      }
      fx.check_against_host(h.momentum != 0, false);
      fx.check_copies(DType::f16);
    }
  // Missing buffers are reported on the host.
  OptimFixture fx({5}, DType::f32, DType::f16);
  FusedOptimTensors t = fx.tensors(false, DType::f16);
  t.state1 = nullptr;
  CHECK_THROWS_WITH_ALL(fused_sgd(t, hs[0], true, nullptr, nullptr, stream()), ValueError, "momentum buffers");
}

// ---- multi-tensor norm / unscale / scale ----

TEST_CASE("multi_tensor_norm: L2 and inf norms vs CPU, deterministic, NaN-propagating", "[cuda][multi_tensor]") {
  INFO("device under test: " << ciuic::test::dut_name());
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    INFO(dtype_name(dt));
    std::vector<std::int64_t> sizes = optim_sizes(dt == DType::f32);
    std::vector<Tensor> ts;
    std::vector<const void*> ptrs;
    double sq = 0, mx = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      ts.push_back(gpu_uniform({sizes[i]}, dt, -3, 3, 2000 + i));
      ptrs.push_back(ts.back().data_ptr());
      for (double x : vals(ts.back())) {
        sq += x * x;
        mx = std::max(mx, std::fabs(x));
      }
    }
    const int count = static_cast<int>(sizes.size());
    const std::size_t ws_bytes = multi_tensor_norm_workspace_bytes(sizes.data(), count);
    Tensor ws = gpu_full({static_cast<std::int64_t>(ws_bytes / 4 + 1)}, DType::f32, NAN);
    Tensor out = gpu_full({2}, DType::f32, NAN);
    auto* o = static_cast<float*>(out.data_ptr());
    CIUIC_DUT_GPU_ONLY(multi_tensor_norm(ptrs.data(), dt, sizes.data(), count, NormKind::l2, o, ws.data_ptr(), ws_bytes, stream()));
    CIUIC_DUT_GPU_ONLY(multi_tensor_norm(ptrs.data(), dt, sizes.data(), count, NormKind::inf, o + 1, ws.data_ptr(), ws_bytes, stream()));
    gpu_sync();
    auto r = out.to_vector<float>();
    CHECK_ON_GPU(r[0] == Approx(std::sqrt(sq)).epsilon(1e-5));
    CHECK_ON_GPU(r[1] == static_cast<float>(mx));
    // Same inputs, same bits.
    for (int rep = 0; rep < 3; ++rep) {
      out.fill_(NAN);
      CIUIC_DUT_GPU_ONLY(multi_tensor_norm(ptrs.data(), dt, sizes.data(), count, NormKind::l2, o, ws.data_ptr(), ws_bytes, stream()));
      gpu_sync();
      CHECK_ON_GPU(out.to_vector<float>()[0] == r[0]);
    }
    // A NaN in one tensor makes both norms NaN.
    ts[3].slice(0, 17, 18).fill_(NAN);
    CIUIC_DUT_GPU_ONLY(multi_tensor_norm(ptrs.data(), dt, sizes.data(), count, NormKind::l2, o, ws.data_ptr(), ws_bytes, stream()));
    CIUIC_DUT_GPU_ONLY(multi_tensor_norm(ptrs.data(), dt, sizes.data(), count, NormKind::inf, o + 1, ws.data_ptr(), ws_bytes, stream()));
    gpu_sync();
    auto rn = out.to_vector<float>();
    CHECK_ON_GPU(std::isnan(rn[0]));
    CHECK_ON_GPU(std::isnan(rn[1]));
    CHECK_THROWS_WITH_ALL(multi_tensor_norm(ptrs.data(), dt, sizes.data(), count, NormKind::l2, o, ws.data_ptr(),
                                            ws_bytes - 4, stream()),
                          ValueError, "workspace");
  }
  // Empty list: 0.
  Tensor out = gpu_full({1}, DType::f32, NAN);
  CIUIC_DUT_GPU_ONLY(multi_tensor_norm(nullptr, DType::f32, nullptr, 0, NormKind::l2, static_cast<float*>(out.data_ptr()), nullptr, 0,
                    stream()));
  gpu_sync();
  CHECK_ON_GPU(out.item() == 0.0);
}

TEST_CASE("multi_tensor_unscale: exact products, found_inf set by an injected inf and never cleared",
          "[cuda][multi_tensor]") {
  INFO("device under test: " << ciuic::test::dut_name());
  const float inv = 1.0f / 1024.0f;
  for (DType in_dt : {DType::f16, DType::bf16, DType::f32}) {
    INFO(dtype_name(in_dt));
    std::vector<std::int64_t> sizes = optim_sizes(false);
    const int count = static_cast<int>(sizes.size());
    std::vector<Tensor> in, out;
    std::vector<const void*> pin;
    std::vector<void*> pout;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      in.push_back(gpu_uniform({sizes[i]}, in_dt, -4096, 4096, 3000 + i));
      out.push_back(gpu_full({sizes[i]}, DType::f32, NAN));
      pin.push_back(in.back().data_ptr());
      pout.push_back(out.back().data_ptr());
    }
    Tensor inv_t = gpu_full({1}, DType::f32, inv);
    Tensor found = gpu_full({1}, DType::f32, 0.0);
    const auto* ps = static_cast<const float*>(inv_t.data_ptr());
    auto* pf = static_cast<float*>(found.data_ptr());
    CIUIC_DUT_GPU_ONLY(multi_tensor_unscale(pin.data(), in_dt, pout.data(), DType::f32, sizes.data(), count, ps, pf, stream()));
    gpu_sync();
    CHECK_ON_GPU(found.item() == 0.0);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      auto src = in[i].to_vector<float>();
      std::vector<float> want(src.size());
      for (std::size_t j = 0; j < src.size(); ++j) want[j] = scaled_grad(src[j], inv);
      check_bits_equal(out[i].to_vector<float>(), want, "unscaled");
    }
    // One inf in the 5th tensor (chunk 1 of a chunk + 1 tensor): flag raised.
    in[4].slice(0, kMultiTensorChunk, kMultiTensorChunk + 1).fill_(INFINITY);
    CIUIC_DUT_GPU_ONLY(multi_tensor_unscale(pin.data(), in_dt, pout.data(), DType::f32, sizes.data(), count, ps, pf, stream()));
    gpu_sync();
    CHECK_ON_GPU(found.item() == 1.0);
    // Finite again: the kernel does not clear the flag.
    in[4].slice(0, kMultiTensorChunk, kMultiTensorChunk + 1).fill_(1.0);
    CIUIC_DUT_GPU_ONLY(multi_tensor_unscale(pin.data(), in_dt, pout.data(), DType::f32, sizes.data(), count, ps, pf, stream()));
    gpu_sync();
    CHECK_ON_GPU(found.item() == 1.0);
    // In place (same dtype) and NaN detection.
    found.fill_(0.0);
    in[1].slice(0, 3, 4).fill_(NAN);
    std::vector<void*> inplace(pin.size());
    for (std::size_t i = 0; i < pin.size(); ++i) inplace[i] = const_cast<void*>(pin[i]);
    auto before = in[0].to_vector<float>();
    CIUIC_DUT_GPU_ONLY(multi_tensor_unscale(pin.data(), in_dt, inplace.data(), in_dt, sizes.data(), count, ps, pf, stream()));
    gpu_sync();
    CHECK_ON_GPU(found.item() == 1.0);
    auto after = in[0].to_vector<float>();
    for (std::size_t j = 0; j < after.size(); ++j) {
      const float w = scaled_grad(before[j], inv);
      const float want = in_dt == DType::f16    ? static_cast<float>(Half(w))
                         : in_dt == DType::bf16 ? static_cast<float>(BFloat16(w))
                                                : w;
      CHECK_ON_GPU(after[j] == want);
    }
  }
}

TEST_CASE("clip_coefficient + multi_tensor_scale clip the global norm on the device", "[cuda][multi_tensor]") {
  INFO("device under test: " << ciuic::test::dut_name());
  for (DType dt : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dt));
    std::vector<std::int64_t> sizes = {3, kMultiTensorChunk + 1, 0, 1001};
    std::vector<Tensor> ts;
    std::vector<void*> ptrs;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      ts.push_back(gpu_uniform({sizes[i]}, dt, -1, 1, 4000 + i));
      ptrs.push_back(ts.back().data_ptr());
    }
    std::vector<std::vector<float>> before;
    for (auto& t : ts) before.push_back(t.to_vector<float>());
    const std::size_t wsb = multi_tensor_norm_workspace_bytes(sizes.data(), 4);
    Tensor ws = empty({static_cast<std::int64_t>(wsb / 4)}, TensorOptions(DType::f32).device(dut()));
    Tensor norm = gpu_full({1}, DType::f32, NAN), coef = gpu_full({1}, DType::f32, NAN);
    auto* pn = static_cast<float*>(norm.data_ptr());
    auto* pc = static_cast<float*>(coef.data_ptr());
    CIUIC_DUT_GPU_ONLY(multi_tensor_norm(ptrs.data(), dt, sizes.data(), 4, NormKind::l2, pn, ws.data_ptr(), wsb, stream()));
    CIUIC_DUT_GPU_ONLY(clip_coefficient(pn, 1.0f, 1e-6f, pc, stream()));
    CIUIC_DUT_GPU_ONLY(multi_tensor_scale(ptrs.data(), dt, sizes.data(), 4, pc, stream()));
    gpu_sync();
    const float n = static_cast<float>(norm.item()), c = static_cast<float>(coef.item());
    CHECK_ON_GPU(c == clip_coefficient_value(n, 1.0f, 1e-6f));
    CHECK_ON_GPU(c < 1.0f);
    for (std::size_t i = 0; i < ts.size(); ++i) {
      auto got = ts[i].to_vector<float>();
      for (std::size_t j = 0; j < got.size(); ++j) {
        const float w = scaled_grad(before[i][j], c);
        CHECK_ON_GPU(got[j] == (dt == DType::f32 ? w : static_cast<float>(BFloat16(w))));
      }
    }
  }
}

// ---- casts, transpose, permute ----

TEST_CASE("cast_contiguous: every f32/f16/bf16 pair, vector and scalar paths, vs CPU rounding", "[cuda][layout]") {
  INFO("device under test: " << ciuic::test::dut_name());
  const DType types[] = {DType::f32, DType::f16, DType::bf16};
  for (DType from : types)
    for (DType to : types)
      for (std::int64_t n : std::vector<std::int64_t>{0, 1, 7, 8, 9, 33, large_n()})
        for (std::int64_t offset : {0, 1}) {  // offset 1 element: misaligned, all scalar
          INFO(dtype_name(from) << " -> " << dtype_name(to) << " n=" << n << " offset " << offset);
          Tensor src = gpu_uniform({n + 1}, from, -70000, 70000, 5000 + static_cast<std::uint64_t>(n));
          Tensor dst = gpu_full({n + 1}, to, NAN);
          auto* s = static_cast<const char*>(src.data_ptr()) + offset * static_cast<std::int64_t>(dtype_size(from));
          auto* d = static_cast<char*>(dst.data_ptr()) + offset * static_cast<std::int64_t>(dtype_size(to));
          CIUIC_DUT_GPU_ONLY(cast_contiguous(d, to, s, from, n, stream()));
          gpu_sync();
          auto got = vals(dst.slice(0, offset, offset + n));
          auto want = vals(src.slice(0, offset, offset + n).to(Device::cpu()).to(to));
          std::size_t bad = 0;
          for (std::size_t i = 0; i < got.size(); ++i)
            if (!(got[i] == want[i])) ++bad;  // values beyond 65504 become inf in f16 on both sides
          CHECK_ON_GPU(bad == 0);
          if (offset == 0) CHECK_ON_GPU(std::isnan(vals(dst).back()));  // element n is past the cast: untouched
        }
  CHECK_THROWS_AS(cast_contiguous(nullptr, DType::i32, nullptr, DType::f32, 4, stream()), DTypeError);
}

TEST_CASE("transpose_2d on odd shapes and batches matches the CPU transpose", "[cuda][layout]") {
  INFO("device under test: " << ciuic::test::dut_name());
  const std::int64_t shapes[][2] = {{1, 1}, {1, 33}, {33, 1}, {31, 33}, {64, 65}, {129, 7}, {32, 32}};
  for (DType dt : {DType::f32, DType::f16, DType::f64, DType::i32})
    for (const auto& s : shapes)
      for (std::int64_t batch : {1, 3}) {
        INFO(dtype_name(dt) << " " << s[0] << "x" << s[1] << " batch " << batch);
        Tensor cpu = arange(0.0, static_cast<double>(batch * s[0] * s[1]), 1.0, DType::f64).to(dt)
                         .reshape({batch, s[0], s[1]});
        Tensor src = cpu.to(dut());
        Tensor dst = gpu_full({batch, s[1], s[0]}, dt, dt == DType::i32 ? -1 : NAN);
        CIUIC_DUT_GPU_ONLY(transpose_2d(dst.data_ptr(), src.data_ptr(), dt, batch, s[0], s[1], stream()));
        gpu_sync();
        CHECK_ON_GPU(vals(dst) == vals(cpu.transpose(1, 2).contiguous()));
      }
}

TEST_CASE("permute_swap12: (B, T, H, D) -> (B, H, T, D) and back, every copy unit", "[cuda][layout]") {
  INFO("device under test: " << ciuic::test::dut_name());
  const std::int64_t B = 2, T = 7, H = 3;
  for (DType dt : {DType::f32, DType::f16})
    for (std::int64_t D : {1, 3, 8, 64, 5})
      for (std::int64_t offset : {0, 1}) {
        INFO(dtype_name(dt) << " D=" << D << " offset " << offset);
        const std::int64_t n = B * T * H * D;
        Tensor src = gpu_uniform({n + 1}, dt, -1, 1, 6000 + static_cast<std::uint64_t>(D));
        Tensor mid = gpu_full({n + 1}, dt, NAN), back = gpu_full({n + 1}, dt, NAN);
        const std::int64_t es = static_cast<std::int64_t>(dtype_size(dt));
        auto at = [&](const Tensor& t) { return static_cast<char*>(t.data_ptr()) + offset * es; };
        CIUIC_DUT_GPU_ONLY(permute_swap12(at(mid), at(src), dt, B, T, H, D, stream()));
        CIUIC_DUT_GPU_ONLY(permute_swap12(at(back), at(mid), dt, B, H, T, D, stream()));
        gpu_sync();
        Tensor s4 = src.slice(0, offset, offset + n).reshape({B, T, H, D});
        CHECK_ON_GPU(vals(mid.slice(0, offset, offset + n)) == vals(s4.permute({0, 2, 1, 3}).contiguous()));
        CHECK_ON_GPU(vals(back.slice(0, offset, offset + n)) == vals(s4));
      }
}

// ---- review cases: unaligned operands, f16 in / f32 out with epilogues, f16 unscale overflow ----

namespace {
// Runs p with A, B, C, bias and aux each starting `off` elements into its buffer
// (off = 1: 2-byte aligned f16 pointers, like a row slice of an f16 matrix).
GemmErr run_gemm_offset(const GemmProblem& p, std::int64_t off, double beta, std::uint64_t seed) {
  const std::int64_t a_rows = p.trans_a ? p.k : p.m, b_rows = p.trans_b ? p.n : p.k;
  const std::int64_t batch = p.batch;
  const std::int64_t a_elems = (batch > 1 ? (batch - 1) * p.stride_a : 0) + a_rows * p.lda;
  const std::int64_t b_elems = (batch > 1 ? (batch - 1) * p.stride_b : 0) + b_rows * p.ldb;
  const std::int64_t c_elems = (batch > 1 ? (batch - 1) * p.stride_c : 0) + p.m * p.ldc;
  const bool has_aux = epilogue_has_aux(p.epilogue);
  const std::int64_t aux_elems = has_aux ? (batch > 1 ? (batch - 1) * p.aux_stride : 0) + p.m * p.aux_ld : 1;
  Tensor A = gpu_uniform({a_elems + off}, p.ab_dtype, -1, 1, seed);
  Tensor B = gpu_uniform({b_elems + off}, p.ab_dtype, -1, 1, seed + 1);
  Tensor C = beta == 0 ? gpu_full({c_elems + off}, p.c_dtype, NAN) : gpu_uniform({c_elems + off}, p.c_dtype, -1, 1, seed + 2);
  Tensor bias = gpu_uniform({p.n + off}, p.c_dtype, -1, 1, seed + 3);
  Tensor aux = gpu_full({aux_elems + off}, p.c_dtype, NAN);
  auto at = [off](const Tensor& t) { return t.slice(0, off, t.numel()); };
  std::vector<double> a = vals(at(A)), b = vals(at(B)), c = vals(at(C)), bs = vals(at(bias));
  std::vector<double> ax(static_cast<std::size_t>(aux_elems));
  auto ptr = [off](const Tensor& t) {
    return static_cast<void*>(static_cast<char*>(t.data_ptr()) + off * static_cast<std::int64_t>(t.element_size()));
  };
  CIUIC_DUT_GPU_ONLY(gemm(p, 1.0, ptr(A), ptr(B), beta, ptr(C), ptr(bias), has_aux ? ptr(aux) : nullptr, stream()));
  gpu_sync();
  for (std::int64_t i = 0; i < batch; ++i) {
    GemmProblem one = p;
    one.batch = 1;
    ref_gemm(one, 1.0, a.data() + i * p.stride_a, b.data() + i * p.stride_b, beta, c.data() + i * p.stride_c,
             bs.data(), ax.data() + i * p.aux_stride);
  }
  GemmErr e{rel_frobenius(window(vals(at(C)), p.m, p.n, p.ldc, batch, p.stride_c),
                          window(c, p.m, p.n, p.ldc, batch, p.stride_c)),
            0.0};
  if (has_aux)
    e.aux = rel_frobenius(window(vals(at(aux)), p.m, p.n, p.aux_ld, batch, p.aux_stride),
                          window(ax, p.m, p.n, p.aux_ld, batch, p.aux_stride));
  // The poison before the offset stays: nothing was written outside the operands.
  CHECK_ON_GPU(std::isnan(vals(C.slice(0, 0, off))[0]) == (beta == 0));
  return e;
}
}  // namespace

TEST_CASE("gemm on operands that are not 16-byte aligned (row slices) matches the reference", "[cuda][gemm]") {
  INFO("device under test: " << ciuic::test::dut_name());
  // Where cuBLASLt offers no algorithm for such pointers or leading dimensions,
  // gemm repacks them into aligned buffers (gemm_repack_plan) instead of raising.
  for (DType dt : {DType::f16, DType::bf16, DType::f32}) {
    for (std::int64_t off : {1, 3}) {
      for (bool ta : {false, true}) {
        GemmProblem p = gemm_problem(ta, true, 33, 17, 29, dt);  // odd lds: rows unaligned too
        p.lda += 1;
        INFO(dtype_name(dt) << " offset " << off << " trans_a " << ta);
        const double tol = dt == DType::f32 ? 1e-5 : 1e-2;
        CHECK_ON_GPU(run_gemm_offset(p, off, 0.0, 80).c <= tol);
        CHECK_ON_GPU(run_gemm_offset(p, off, 0.5, 81).c <= tol);
        GemmProblem batched = p;
        batched.batch = 3;
        batched.stride_a = (ta ? 29 : 33) * p.lda + 1;
        batched.stride_b = 17 * p.ldb + 3;
        batched.stride_c = 33 * p.ldc + 1;
        CHECK_ON_GPU(run_gemm_offset(batched, off, 1.0, 82).c <= tol);
        GemmProblem epi = p;
        epi.epilogue = GemmEpilogue::gelu_aux_bias;
        epi.aux_ld = 19;
        const GemmErr e = run_gemm_offset(epi, off, 0.0, 83);
        CHECK_ON_GPU(e.c <= std::max(tol, 1e-3));
        CHECK_ON_GPU(e.aux <= tol);
      }
    }
  }
}

TEST_CASE("gemm: f16 / bf16 inputs with f32 output and the bias and GELU epilogues", "[cuda][gemm]") {
  INFO("device under test: " << ciuic::test::dut_name());
  const GemmEpilogue eps[] = {GemmEpilogue::bias, GemmEpilogue::gelu, GemmEpilogue::gelu_bias,
                              GemmEpilogue::gelu_aux, GemmEpilogue::gelu_aux_bias};
  for (DType dt : {DType::f16, DType::bf16})
    for (GemmEpilogue e : eps)
      for (bool batched : {false, true}) {
        GemmProblem p = gemm_problem(false, true, 65, 40, 129, dt);
        p.c_dtype = DType::f32;
        p.epilogue = e;
        p.aux_ld = 40;
        if (batched) {
          p.batch = 2;
          p.stride_a = 65 * 129;
          p.stride_b = 0;  // a shared weight
          p.stride_c = 65 * 40;
          p.aux_stride = 65 * 40;
        }
        INFO(dtype_name(dt) << " -> f32, epilogue " << epilogue_name(e) << (batched ? ", batched" : ""));
        const GemmErr e1 = run_gemm_errors(p, 1.0, 0.0, 90), e2 = run_gemm_errors(p, 1.0, 1.0, 91);
        CHECK_ON_GPU(e1.c <= 1e-2);
        CHECK_ON_GPU(e2.c <= 1e-2);
        CHECK_ON_GPU(e1.aux <= 1e-2);
      }
}

TEST_CASE("multi_tensor_unscale into f16 flags values that overflow only after the conversion",
          "[cuda][multi_tensor]") {
  INFO("device under test: " << ciuic::test::dut_name());
  // f32 gradients of 40000 unscaled by 2 into f16 storage: 80000 is finite in f32
  // and inf in f16 (max 65504). found_inf must be set (the review's defect 8).
  std::vector<std::int64_t> sizes = {5, kMultiTensorChunk + 3};
  std::vector<Tensor> in, out;
  std::vector<const void*> pin;
  std::vector<void*> pout;
  for (std::int64_t n : sizes) {
    in.push_back(gpu_uniform({n}, DType::f32, -100, 100, 7000 + static_cast<std::uint64_t>(n)));
    out.push_back(gpu_full({n}, DType::f16, NAN));
    pin.push_back(in.back().data_ptr());
    pout.push_back(out.back().data_ptr());
  }
  Tensor inv = gpu_full({1}, DType::f32, 2.0), found = gpu_full({1}, DType::f32, 0.0);
  auto run = [&] {
    CIUIC_DUT_GPU_ONLY(multi_tensor_unscale(pin.data(), DType::f32, pout.data(), DType::f16, sizes.data(), 2,
                                            static_cast<const float*>(inv.data_ptr()),
                                            static_cast<float*>(found.data_ptr()), stream()));
    gpu_sync();
  };
  run();
  CHECK_ON_GPU(found.item() == 0.0);
  in[1].slice(0, kMultiTensorChunk + 1, kMultiTensorChunk + 2).fill_(40000.0);
  run();
  CHECK_ON_GPU(found.item() == 1.0);
  CHECK_ON_GPU(std::isinf(vals(out[1])[static_cast<std::size_t>(kMultiTensorChunk + 1)]));
  // the per-element rule the kernel uses, on the host
  Half h;
  CHECK_FALSE(unscale_element(40000.0f, 2.0f, h));
}

#else

TEST_CASE("CUDA kernel tests (gemm, optimizers, multi-tensor, layout)", "[cuda]") {
  WARN("skipped: this build has no CUDA");
}

#endif
