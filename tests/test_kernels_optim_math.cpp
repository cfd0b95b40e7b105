// [kernels] host-side halves of the GEMM, optimizer, multi-tensor and layout
// kernels, run on the CPU: the per-element optimizer rules (the very functions the
// CUDA kernels call) against hand-derived values, the multi-tensor chunk planner
// at its boundaries, the GEMM cache key and the row-major -> column-major mapping
// (checked by running a naive column-major GEMM with the mapped arguments), and
// the permute / copy-unit index helpers.
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <unordered_set>
#include <utility>
#include <vector>

#include "ciuic/kernels/cast_transpose.h"
#include "ciuic/kernels/gemm.h"
#include "ciuic/kernels/multi_tensor.h"
#include "ciuic/kernels/optim_math.h"
#include "test_util.h"

using namespace ciuic;
using namespace ciuic::kernels;

namespace {

// Textbook AdamW in double: bias-corrected moments m_hat, v_hat.
struct RefAdamW {
  double p, m = 0, v = 0;
  void step(double g, const AdamWHyper& h, int t) {
    p -= h.lr * h.weight_decay * p;
    m = h.beta1 * m + (1 - h.beta1) * g;
    v = h.beta2 * v + (1 - h.beta2) * g * g;
    const double mhat = m / (1 - std::pow(h.beta1, t)), vhat = v / (1 - std::pow(h.beta2, t));
    p -= h.lr * mhat / (std::sqrt(vhat) + h.eps);
  }
};

struct RefSgd {
  double p, buf = 0;
  void step(double g, const SgdHyper& h, bool first) {
    g += h.weight_decay * p;
    double d = g;
    if (h.momentum != 0) {
      buf = first ? g : h.momentum * buf + (1 - h.dampening) * g;
      d = h.nesterov ? g + h.momentum * buf : buf;
    }
    p -= h.lr * d;
  }
};

}  // namespace

TEST_CASE("adamw_update: first step by hand, then several steps against textbook AdamW", "[kernels][optim]") {
  AdamWHyper h;
  h.lr = 0.1;
  h.beta1 = 0.9;
  h.beta2 = 0.999;
  h.eps = 1e-8;
  h.weight_decay = 0.1;
  // Step 1, p = 1, g = 0.5: decay 1 - 0.01 -> 0.99; m = 0.05, v = 0.00025;
  // m_hat = 0.5, v_hat = 0.25, sqrt = 0.5; p = 0.99 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.89 (+2e-9).
  float p = 1.0f, m = 0.0f, v = 0.0f;
  adamw_update(p, m, v, 0.5f, adamw_consts(h, 1));
  CHECK(m == Approx(0.05).epsilon(1e-6));
  CHECK(v == Approx(0.00025).epsilon(1e-6));
  CHECK(p == Approx(0.89).epsilon(1e-6));

  // Several steps with sign changes and a zero gradient.
  const std::vector<double> grads = {0.5, -0.25, 0.0, 1.5, -3.0, 0.125};
  for (double p0 : {1.0, -2.5, 0.0}) {
    RefAdamW ref{p0};
    float pf = static_cast<float>(p0), mf = 0, vf = 0;
    for (std::size_t t = 0; t < grads.size(); ++t) {
      ref.step(grads[t], h, static_cast<int>(t + 1));
      adamw_update(pf, mf, vf, static_cast<float>(grads[t]), adamw_consts(h, static_cast<std::int64_t>(t + 1)));
      INFO("p0 " << p0 << " step " << t + 1);
      CHECK(pf == Approx(ref.p).margin(1e-6).epsilon(1e-5));
      CHECK(mf == Approx(ref.m).margin(1e-7).epsilon(1e-5));
      CHECK(vf == Approx(ref.v).margin(1e-9).epsilon(1e-5));
    }
  }
  // No weight decay: a zero-gradient first step leaves p exactly where it was.
  h.weight_decay = 0.0;
  float q = 3.0f, mq = 0.0f, vq = 0.0f;
  adamw_update(q, mq, vq, 0.0f, adamw_consts(h, 1));
  CHECK(q == 3.0f);
}

TEST_CASE("adamw_consts: bias corrections, decay, and argument checks", "[kernels][optim]") {
  AdamWHyper h;
  h.lr = 0.01;
  h.beta1 = 0.9;
  h.beta2 = 0.99;
  h.weight_decay = 0.5;
  AdamWConsts c = adamw_consts(h, 3);
  CHECK(c.step_size == Approx(0.01 / (1 - 0.729)).epsilon(1e-7));
  CHECK(c.inv_sqrt_bc2 == Approx(1 / std::sqrt(1 - std::pow(0.99, 3))).epsilon(1e-7));
  CHECK(c.decay == Approx(1 - 0.005).epsilon(1e-7));
  // Large steps: the corrections tend to 1.
  AdamWConsts late = adamw_consts(h, 100000);
  CHECK(late.step_size == Approx(0.01).epsilon(1e-6));
  CHECK(late.inv_sqrt_bc2 == Approx(1.0).epsilon(1e-6));
  CHECK_THROWS_WITH_ALL(adamw_consts(h, 0), ValueError, "adamw", "step is 0");
  AdamWHyper bad = h;
  bad.beta2 = 1.0;
  CHECK_THROWS_WITH_ALL(adamw_consts(bad, 1), ValueError, "beta2");
  bad = h;
  bad.eps = 0.0;
  CHECK_THROWS_WITH_ALL(adamw_consts(bad, 1), ValueError, "eps");
}

TEST_CASE("sgd_update: plain, momentum with dampening, nesterov, weight decay", "[kernels][optim]") {
  // Plain: p = 2 - 0.1 * 0.5 = 1.95.
  SgdHyper plain;
  plain.lr = 0.1;
  float p = 2.0f, buf = 123.0f;
  sgd_update(p, buf, 0.5f, sgd_consts(plain), true);
  CHECK(p == Approx(1.95).epsilon(1e-7));
  CHECK(buf == 123.0f);  // no momentum: the buffer is not touched

  // Momentum 0.9, weight decay 0.01, p = 1: step 1 g' = 0.5 + 0.01 = 0.51, buf = 0.51,
  // p = 1 - 0.1 * 0.51 = 0.949. Step 2 (g = 0.5): g' = 0.5 + 0.00949 = 0.50949,
  // buf = 0.9 * 0.51 + 0.50949 = 0.96849, p = 0.949 - 0.096849 = 0.852151.
  SgdHyper mom;
  mom.lr = 0.1;
  mom.momentum = 0.9;
  mom.weight_decay = 0.01;
  float q = 1.0f, qb = std::numeric_limits<float>::quiet_NaN();  // garbage before the first step
  sgd_update(q, qb, 0.5f, sgd_consts(mom), true);
  CHECK(qb == Approx(0.51).epsilon(1e-6));
  CHECK(q == Approx(0.949).epsilon(1e-6));
  sgd_update(q, qb, 0.5f, sgd_consts(mom), false);
  CHECK(qb == Approx(0.96849).epsilon(1e-6));
  CHECK(q == Approx(0.852151).epsilon(1e-6));

  const std::vector<double> grads = {0.5, -1.0, 0.25, 2.0, -0.75};
  SgdHyper cases[3] = {mom, mom, mom};
  cases[1].dampening = 0.3;
  cases[1].weight_decay = 0.0;
  cases[2].nesterov = true;
  for (const SgdHyper& h : cases) {
    RefSgd ref{1.5};
    float pf = 1.5f, bf = 0.0f;
    for (std::size_t t = 0; t < grads.size(); ++t) {
      ref.step(grads[t], h, t == 0);
      sgd_update(pf, bf, static_cast<float>(grads[t]), sgd_consts(h), t == 0);
      INFO("dampening " << h.dampening << " nesterov " << h.nesterov << " step " << t + 1);
      CHECK(pf == Approx(ref.p).epsilon(1e-5));
      CHECK(bf == Approx(ref.buf).epsilon(1e-5));
    }
  }
  SgdHyper bad = mom;
  bad.nesterov = true;
  bad.dampening = 0.1;
  CHECK_THROWS_WITH_ALL(sgd_consts(bad), ValueError, "sgd", "nesterov");
}

TEST_CASE("optimizer helpers: scaled grads, clip coefficient, NaN-aware max, finiteness", "[kernels][optim]") {
  CHECK(scaled_grad(3.0f, 0.25f) == 0.75f);
  CHECK(scaled_grad(-7.5f, 1.0f) == -7.5f);
  CHECK(clip_coefficient_value(10.0f, 1.0f, 0.0f) == Approx(0.1));
  CHECK(clip_coefficient_value(0.5f, 1.0f, 1e-6f) == 1.0f);
  CHECK(clip_coefficient_value(INFINITY, 1.0f, 1e-6f) == 0.0f);
  CHECK(std::isnan(clip_coefficient_value(NAN, 1.0f, 1e-6f)));
  CHECK(std::isnan(nan_propagating_max(NAN, 2.0f)));
  CHECK(std::isnan(nan_propagating_max(2.0f, NAN)));
  CHECK(nan_propagating_max(-1.0f, 2.0f) == 2.0f);
  CHECK(is_finite_f32(0.0f));
  CHECK(is_finite_f32(-3.4e38f));
  CHECK(!is_finite_f32(INFINITY));
  CHECK(!is_finite_f32(-INFINITY));
  CHECK(!is_finite_f32(NAN));
  CHECK(fma_rn(2.0f, 3.0f, 1.0f) == 7.0f);
}

namespace {
// Checks the plan covers every chunk of every non-empty tensor exactly once, in
// order, within the per-launch limits, with contiguous block offsets.
void check_plan(const std::vector<std::int64_t>& numels, std::int64_t chunk, int max_t, int max_b) {
  auto plan = plan_multi_tensor(numels.data(), static_cast<int>(numels.size()), chunk, max_t, max_b);
  std::vector<std::vector<int>> seen(numels.size());
  std::int64_t offset = 0;
  for (const auto& l : plan) {
    CHECK(l.block_offset == offset);
    CHECK(!l.block_slot.empty());
    CHECK(static_cast<int>(l.block_slot.size()) <= max_b);
    CHECK(static_cast<int>(l.tensors.size()) <= max_t);
    CHECK(l.block_slot.size() == l.block_chunk.size());
    std::set<int> distinct(l.tensors.begin(), l.tensors.end());
    CHECK(distinct.size() == l.tensors.size());
    for (std::size_t b = 0; b < l.block_slot.size(); ++b) {
      const int t = l.tensors.at(static_cast<std::size_t>(l.block_slot[b]));
      seen[static_cast<std::size_t>(t)].push_back(l.block_chunk[b]);
    }
    offset += static_cast<std::int64_t>(l.block_slot.size());
  }
  CHECK(offset == multi_tensor_total_chunks(numels.data(), static_cast<int>(numels.size()), chunk));
  for (std::size_t t = 0; t < numels.size(); ++t) {
    const std::int64_t nchunks = (numels[t] + chunk - 1) / chunk;
    REQUIRE(static_cast<std::int64_t>(seen[t].size()) == nchunks);
    for (std::int64_t c = 0; c < nchunks; ++c) CHECK(seen[t][static_cast<std::size_t>(c)] == c);
  }
}
}  // namespace

TEST_CASE("plan_multi_tensor: chunk boundaries, empty tensors, launch splits", "[kernels][multi_tensor]") {
  const std::int64_t C = kMultiTensorChunk;
  // Sizes 0, 1, chunk - 1, chunk, chunk + 1 at the real chunk size.
  std::vector<std::int64_t> sizes = {0, 1, C - 1, C, C + 1};
  auto plan = plan_multi_tensor(sizes.data(), 5, C, 64, kMultiTensorMaxBlocks);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].tensors == std::vector<int>{1, 2, 3, 4});  // the empty tensor has no slot
  CHECK(plan[0].block_chunk == std::vector<int>{0, 0, 0, 0, 1});
  CHECK(plan[0].block_slot == std::vector<int>{0, 1, 2, 3, 3});
  check_plan(sizes, C, 64, kMultiTensorMaxBlocks);

  // Only empty tensors, or none: no launches.
  std::vector<std::int64_t> empties = {0, 0};
  CHECK(plan_multi_tensor(empties.data(), 2, C, 8, 8).empty());
  CHECK(plan_multi_tensor(nullptr, 0, C, 8, 8).empty());

  // Small chunks make the block limit bite: a tensor split across launches keeps a
  // slot in each, and chunk numbering continues.
  std::vector<std::int64_t> small = {0, 1, 3, 4, 5, 17, 0, 2};
  for (int max_b : {1, 2, 3, 5, 64})
    for (int max_t : {1, 2, 3, 64}) {
      INFO("max_blocks " << max_b << " max_tensors " << max_t);
      check_plan(small, 4, max_t, max_b);
    }
  auto split = plan_multi_tensor(small.data(), static_cast<int>(small.size()), 4, 64, 3);
  // chunks: t1:1, t2:1, t3:1, t4:2, t5:5, t7:1 = 11 blocks -> 3 + 3 + 3 + 2
  REQUIRE(split.size() == 4);
  CHECK(split[0].tensors == std::vector<int>{1, 2, 3});
  CHECK(split[1].tensors == std::vector<int>{4, 5});
  CHECK(split[1].block_chunk == std::vector<int>{0, 1, 0});
  CHECK(split[2].tensors == std::vector<int>{5});
  CHECK(split[2].block_chunk == std::vector<int>{1, 2, 3});
  CHECK(split[3].tensors == std::vector<int>{5, 7});
  CHECK(split[3].block_offset == 9);

  // Tensor-slot limit: one slot per launch.
  auto one = plan_multi_tensor(small.data(), static_cast<int>(small.size()), 4, 1, 64);
  CHECK(one.size() == 6);
  for (const auto& l : one) CHECK(l.tensors.size() == 1);

  CHECK(multi_tensor_norm_workspace_bytes(sizes.data(), 5) == 5 * sizeof(float));
  std::vector<std::int64_t> negative = {3, -1};
  CHECK_THROWS_WITH_ALL(plan_multi_tensor(negative.data(), 2, 4, 8, 8), ValueError, "tensor 1", "-1");
  CHECK_THROWS_AS(plan_multi_tensor(sizes.data(), 5, 0, 8, 8), ValueError);
  // The table limits keep every depth's kernel parameters small.
  for (int d = 1; d <= 5; ++d) {
    const std::size_t bytes = static_cast<std::size_t>(multi_tensor_max_tensors(d)) * (8u * d + 8u) +
                              kMultiTensorMaxBlocks * 5u + 8u;
    CHECK(bytes <= 3600);
  }
}

namespace {
// Naive column-major GEMM exactly as cuBLAS defines it, fed with to_col_major's
// arguments: C(i, j) = sum_l op(A)(i, l) op(B)(l, j), element (r, c) at r + c * ld.
void col_major_gemm(const ColMajorGemm& g, const double* A, const double* B, double* C) {
  for (std::int64_t i = 0; i < g.m; ++i)
    for (std::int64_t j = 0; j < g.n; ++j) {
      double acc = 0;
      for (std::int64_t l = 0; l < g.k; ++l) {
        const double a = g.trans_a ? A[l + i * g.lda] : A[i + l * g.lda];
        const double b = g.trans_b ? B[j + l * g.ldb] : B[l + j * g.ldb];
        acc += a * b;
      }
      C[i + j * g.ldc] = acc;
    }
}
}  // namespace

TEST_CASE("gemm row-major -> column-major mapping reproduces the row-major product", "[kernels][gemm]") {
  const std::int64_t m = 3, n = 5, k = 4;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("trans_a " << ta << " trans_b " << tb);
      GemmProblem p = gemm_problem(ta, tb, m, n, k, DType::f64);
      p.lda += 2;  // padded leading dimensions exercise ld != row length
      p.ldb += 1;
      p.ldc += 3;
      validate_gemm(p);
      const std::int64_t a_rows = ta ? k : m, b_rows = tb ? n : k;
      std::vector<double> A(static_cast<std::size_t>(a_rows * p.lda)), B(static_cast<std::size_t>(b_rows * p.ldb));
      for (std::size_t i = 0; i < A.size(); ++i) A[i] = 0.5 * static_cast<double>(i % 7) - 1.0;
      for (std::size_t i = 0; i < B.size(); ++i) B[i] = 0.25 * static_cast<double>(i % 5) + 0.5;
      auto a_at = [&](std::int64_t i, std::int64_t l) { return ta ? A[l * p.lda + i] : A[i * p.lda + l]; };
      auto b_at = [&](std::int64_t l, std::int64_t j) { return tb ? B[j * p.ldb + l] : B[l * p.ldb + j]; };
      const ColMajorGemm g = to_col_major(p);
      CHECK(g.m == n);
      CHECK(g.n == m);
      CHECK(g.trans_a == tb);
      CHECK(g.trans_b == ta);
      CHECK(g.lda == p.ldb);
      CHECK(g.ldb == p.lda);
      CHECK(g.a_rows <= g.lda);  // cuBLASLt's ld >= rows rule holds whenever validate_gemm passed
      CHECK(g.b_rows <= g.ldb);
      CHECK(g.c_rows <= g.ldc);
      std::vector<double> C(static_cast<std::size_t>(m * p.ldc), -99.0);
      col_major_gemm(g, B.data(), A.data(), C.data());  // operands swapped, as gemm.cu passes them
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          double ref = 0;
          for (std::int64_t l = 0; l < k; ++l) ref += a_at(i, l) * b_at(l, j);
          CHECK(C[static_cast<std::size_t>(i * p.ldc + j)] == Approx(ref));
        }
    }
}

TEST_CASE("gemm cache key: equal problems hash equal; every relevant field splits", "[kernels][gemm]") {
  alignas(256) static float buf[512];
  GemmProblem p = gemm_problem(false, true, 33, 7, 129, DType::f16);
  const GemmKey base = make_gemm_key(0, p, buf, buf + 64, buf + 128, nullptr, nullptr);
  CHECK(base == make_gemm_key(0, p, buf, buf + 64, buf + 128, nullptr, nullptr));
  CHECK(GemmKeyHash{}(base) == GemmKeyHash{}(make_gemm_key(0, p, buf, buf + 64, buf + 128, nullptr, nullptr)));
  // Fields that do not apply are normalised away: aux sizes without an aux epilogue,
  // batch strides of a single matrix, a bias pointer without a bias epilogue.
  GemmProblem q = p;
  q.aux_ld = 64;
  q.stride_a = 1000;
  CHECK(make_gemm_key(0, q, buf, buf + 64, buf + 128, buf + 1, nullptr) == base);

  std::vector<GemmKey> variants;
  auto vary = [&](auto&& change) {
    GemmProblem v = p;
    change(v);
    variants.push_back(make_gemm_key(0, v, buf, buf + 64, buf + 128, buf, buf));
  };
  vary([](GemmProblem& v) { v.trans_a = true; });
  vary([](GemmProblem& v) { v.trans_b = false; });
  vary([](GemmProblem& v) { v.m = 34; });
  vary([](GemmProblem& v) { v.n = 8; });
  vary([](GemmProblem& v) { v.k = 128; });
  vary([](GemmProblem& v) { v.lda = 130; });
  vary([](GemmProblem& v) { v.ldb = 130; });
  vary([](GemmProblem& v) { v.ldc = 8; });
  vary([](GemmProblem& v) { v.batch = 2; v.stride_c = 33 * 7; });
  vary([](GemmProblem& v) { v.ab_dtype = DType::bf16; });
  vary([](GemmProblem& v) { v.c_dtype = DType::f32; });
  vary([](GemmProblem& v) { v.epilogue = GemmEpilogue::bias; });
  vary([](GemmProblem& v) { v.epilogue = GemmEpilogue::gelu_bias; });
  vary([](GemmProblem& v) { v.epilogue = GemmEpilogue::gelu_aux_bias; v.aux_ld = 8; });
  variants.push_back(make_gemm_key(1, p, buf, buf + 64, buf + 128, nullptr, nullptr));          // device
  variants.push_back(make_gemm_key(0, p, buf + 1, buf + 64, buf + 128, nullptr, nullptr));      // A alignment
  variants.push_back(make_gemm_key(0, p, buf, buf + 65, buf + 128, nullptr, nullptr));          // B alignment
  variants.push_back(make_gemm_key(0, p, buf, buf + 64, buf + 130, nullptr, nullptr));          // C alignment
  std::unordered_set<std::size_t> hashes{GemmKeyHash{}(base)};
  for (std::size_t i = 0; i < variants.size(); ++i) {
    INFO("variant " << i);
    CHECK(!(variants[i] == base));
    hashes.insert(GemmKeyHash{}(variants[i]));
    for (std::size_t j = 0; j < i; ++j) CHECK(!(variants[i] == variants[j]));
  }
  CHECK(hashes.size() == variants.size() + 1);  // no collisions among these

  CHECK(pointer_alignment(buf) == 256);
  CHECK(pointer_alignment(buf + 1) == 4);
  CHECK(pointer_alignment(reinterpret_cast<const char*>(buf) + 2) == 2);
  CHECK(pointer_alignment(buf + 4) == 16);
  CHECK(pointer_alignment(nullptr) == 256);
}

TEST_CASE("validate_gemm names the sizes and dtypes it rejects", "[kernels][gemm]") {
  GemmProblem ok = gemm_problem(false, false, 7, 33, 129, DType::f32);
  validate_gemm(ok);
  GemmProblem p = ok;
  p.k = -1;
  CHECK_THROWS_WITH_ALL(validate_gemm(p), ValueError, "gemm", "k=-1");
  p = ok;
  p.lda = 128;
  CHECK_THROWS_WITH_ALL(validate_gemm(p), ValueError, "lda=128", "expected lda >= 129");
  p = ok;
  p.trans_a = true;  // A stored (129, 7): lda must be >= 7; 129 is fine
  validate_gemm(p);
  p.lda = 6;
  CHECK_THROWS_WITH_ALL(validate_gemm(p), ValueError, "lda=6", "trans_a");
  p = ok;
  p.ldc = 32;
  CHECK_THROWS_WITH_ALL(validate_gemm(p), ValueError, "ldc=32");
  p = ok;
  p.ab_dtype = DType::f16;
  p.c_dtype = DType::bf16;
  CHECK_THROWS_WITH_ALL(validate_gemm(p), DTypeError, "f16", "bf16");
  p.c_dtype = DType::f32;  // f16 in, f32 out: allowed
  validate_gemm(p);
  p.allow_tf32 = true;
  CHECK_THROWS_WITH_ALL(validate_gemm(p), DTypeError, "allow_tf32", "f16");
  p = ok;
  p.ab_dtype = p.c_dtype = DType::i32;
  CHECK_THROWS_WITH_ALL(validate_gemm(p), DTypeError, "i32");
  p = ok;
  p.batch = 3;
  p.stride_c = 7 * 33 - 1;
  CHECK_THROWS_WITH_ALL(validate_gemm(p), ValueError, "stride_c=230", "overlap");
  p.stride_c = 7 * 33;
  validate_gemm(p);
  p = ok;
  p.epilogue = GemmEpilogue::gelu_aux;
  p.aux_ld = 8;
  CHECK_THROWS_WITH_ALL(validate_gemm(p), ValueError, "aux_ld=8");
  // Degenerate sizes are valid (they produce nothing, or beta * C for k == 0).
  validate_gemm(gemm_problem(false, false, 0, 0, 0, DType::f64));
  validate_gemm(gemm_problem(true, true, 5, 3, 0, DType::bf16));
}

TEST_CASE("gemm_gelu_tanh matches the tanh GELU formula", "[kernels][gemm]") {
  auto ref = [](double x) {
    return 0.5 * x * (1 + std::tanh(std::sqrt(2 / 3.141592653589793) * (x + 0.044715 * x * x * x)));
  };
  for (double x : {-6.0, -1.5, -0.1, 0.0, 0.3, 1.0, 2.5, 8.0}) {
    CHECK(gemm_gelu_tanh(x) == Approx(ref(x)).margin(1e-15));
    CHECK(gemm_gelu_tanh(static_cast<float>(x)) == Approx(ref(x)).margin(1e-6));
  }
  CHECK(gemm_gelu_tanh(1.0) == Approx(0.8411919906082768));
}

TEST_CASE("swap12 offsets and copy units for the attention permute", "[kernels][layout]") {
  const std::int64_t B = 2, X = 3, Y = 5, D = 4;
  // dst (B, Y, X, D) walked in order must visit src (B, X, Y, D) at ((b X + x) Y + y) D + d.
  std::int64_t i = 0;
  std::set<std::int64_t> hit;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t y = 0; y < Y; ++y)
      for (std::int64_t x = 0; x < X; ++x)
        for (std::int64_t d = 0; d < D; ++d, ++i) {
          CHECK(swap12_src_offset(i, X, Y, D) == ((b * X + x) * Y + y) * D + d);
          hit.insert(swap12_src_offset(i, X, Y, D));
        }
  CHECK(static_cast<std::int64_t>(hit.size()) == B * X * Y * D);  // a permutation
  // Applying the swap twice (X, Y then Y, X) is the identity.
  for (std::int64_t j = 0; j < B * X * Y * D; ++j)
    CHECK(swap12_src_offset(swap12_src_offset(j, Y, X, D), X, Y, D) == j);

  CHECK(copy_unit_bytes(64 * 2, 0x1000, 0x2000) == 16);   // D = 64 f16 rows, aligned
  CHECK(copy_unit_bytes(12, 0x1000, 0x2000) == 4);        // D = 3 f32
  CHECK(copy_unit_bytes(64, 0x1008, 0x2000) == 8);        // dst only 8-byte aligned
  CHECK(copy_unit_bytes(6, 0x1000, 0x2000) == 2);
  CHECK(copy_unit_bytes(7, 0x1000, 0x2000) == 1);
  CHECK(cast_vector_elems(4) == 4);
  CHECK(cast_vector_elems(2) == 8);
}

TEST_CASE("gemm_repack_plan: only operands that are not 16-byte aligned are repacked, to aligned layouts",
          "[kernels][gemm]") {
  alignas(256) static char buf[4096];
  const void* al = buf;        // 256-byte aligned
  const void* off2 = buf + 2;  // an f16 row slice: 2-byte aligned
  // Aligned everything: nothing to do.
  GemmProblem p = gemm_problem(false, true, 33, 16, 64, DType::f16);
  p.ldc = 16;
  CHECK_FALSE(gemm_repack_plan(p, al, al, al, nullptr, nullptr).any());
  // A 2 bytes in: A alone is repacked, with its layout unchanged when the ld is fine.
  GemmRepackPlan r = gemm_repack_plan(p, off2, al, al, nullptr, nullptr);
  CHECK(r.a.repack);
  CHECK_FALSE(r.b.repack);
  CHECK_FALSE(r.c.repack);
  CHECK(r.a.rows == 33);
  CHECK(r.a.cols == 64);
  CHECK(r.a.new_ld == 64);
  CHECK(r.p.lda == 64);
  // Odd leading dimensions (a column slice): rounded up to 8 f16 / 4 f32 / 2 f64 elements.
  GemmProblem q = gemm_problem(true, false, 7, 9, 5, DType::f16);
  q.lda = 9;   // A stored (k=5, m=7), ld 9
  q.ldb = 10;  // B stored (k=5, n=9), ld 10
  q.ldc = 9;
  r = gemm_repack_plan(q, al, al, al, nullptr, nullptr);
  CHECK(r.a.repack);
  CHECK(r.a.rows == 5);
  CHECK(r.a.cols == 7);
  CHECK(r.a.new_ld == 16);
  CHECK(r.b.new_ld == 16);
  CHECK(r.c.new_ld == 16);
  CHECK(r.p.ldc == 16);
  CHECK(aligned_ld(9, DType::f32) == 12);
  CHECK(aligned_ld(3, DType::f64) == 4);
  CHECK(aligned_ld(8, DType::f16) == 8);
  // Batches: an unaligned stride is repacked to rows * new_ld; a shared operand (stride 0) stays shared.
  GemmProblem b = gemm_problem(false, false, 4, 8, 8, DType::f16);
  b.batch = 3;
  b.stride_a = 4 * 8 + 1;
  b.stride_b = 0;
  b.stride_c = 32;
  r = gemm_repack_plan(b, al, al, al, nullptr, nullptr);
  CHECK(r.a.repack);
  CHECK(r.a.new_stride == 32);
  CHECK(r.p.stride_a == 32);
  CHECK_FALSE(r.b.repack);
  CHECK(r.p.stride_b == 0);
  r = gemm_repack_plan(b, al, off2, al, nullptr, nullptr);
  CHECK(r.b.repack);
  CHECK(r.b.new_stride == 0);
  // Epilogue pointers: an unaligned bias is copied; an unaligned aux is repacked like C.
  GemmProblem e = gemm_problem(false, true, 5, 8, 8, DType::f16);
  e.epilogue = GemmEpilogue::gelu_aux_bias;
  e.aux_ld = 8;
  r = gemm_repack_plan(e, al, al, al, off2, al);
  CHECK(r.bias);
  CHECK_FALSE(r.aux.repack);
  r = gemm_repack_plan(e, al, al, al, al, off2);
  CHECK_FALSE(r.bias);
  CHECK(r.aux.repack);
  CHECK(r.p.aux_ld == 8);
}
