// The CUDA matmul's operand plan (engine/src/ops/matmul_plan.h): which operands are
// used in place, with which transpose flags, leading dimensions and batch strides.
// Each plan is checked by running its GemmProblem on the CPU over the operands'
// raw storage and comparing with the CPU matmul; where a GPU is usable, the CUDA
// matmul is checked to allocate nothing but its output.
#include <vector>

#include "../engine/src/ops/matmul_plan.h"
#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;
namespace mp = ciuic::ops::matmul_plan;

namespace {

// C (batch, m, n) contiguous = op(A) op(B) per batch, as cuBLASLt would run the problem.
std::vector<double> run_problem(const kernels::GemmProblem& p, const double* a, const double* b) {
  std::vector<double> c(static_cast<std::size_t>(p.batch * p.m * p.ldc), 0.0);
  for (std::int64_t z = 0; z < p.batch; ++z)
    for (std::int64_t i = 0; i < p.m; ++i)
      for (std::int64_t j = 0; j < p.n; ++j) {
        double acc = 0;
        for (std::int64_t q = 0; q < p.k; ++q) {
          const double av = p.trans_a ? a[z * p.stride_a + q * p.lda + i] : a[z * p.stride_a + i * p.lda + q];
          const double bv = p.trans_b ? b[z * p.stride_b + j * p.ldb + q] : b[z * p.stride_b + q * p.ldb + j];
          acc += av * bv;
        }
        c[static_cast<std::size_t>(z * p.stride_c + i * p.ldc + j)] = acc;
      }
  return c;
}

Shape batch_of(const Tensor& a, const Tensor& b) {
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  return broadcast_shapes(ba, bb, "test");
}

// Plans a @ b, checks the copy flags, runs the plan over the raw storage and compares.
void check_plan(const Tensor& a, const Tensor& b, bool expect_copy_a, bool expect_copy_b, bool expect_fold) {
  const Shape batch = batch_of(a, b);
  const mp::Plan plan = mp::plan_bmm({a.shape(), a.strides()}, {b.shape(), b.strides()}, batch, DType::f64);
  CHECK(plan.copy_a == expect_copy_a);
  CHECK(plan.copy_b == expect_copy_b);
  CHECK(plan.folded == expect_fold);
  CHECK_NOTHROW(kernels::validate_gemm(plan.problem));
  const std::int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  auto source = [&](const Tensor& t, bool copy, std::int64_t r, std::int64_t c) {
    if (!copy) return t;
    Shape s = batch;
    s.insert(s.end(), {r, c});
    return t.expand(s).contiguous();
  };
  Tensor ac = source(a, plan.copy_a, m, k), bc = source(b, plan.copy_b, k, n);
  const std::vector<double> got = run_problem(plan.problem, static_cast<const double*>(ac.data_ptr()),
                                              static_cast<const double*>(bc.data_ptr()));
  const std::vector<double> want = matmul(a, b).contiguous().to_vector<double>();
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(want[i]).epsilon(1e-12));
}

}  // namespace

TEST_CASE("CUDA matmul plans use strided operands in place", "[ops][matmul]") {
  manual_seed(21);
  auto r = [](const Shape& s) { return randn(s, TensorOptions(DType::f64)); };
  // linear backward, gx = g (B, T, out) @ W (out, in): batch folded into M, W shared
  check_plan(r({3, 5, 7}), r({7, 4}), false, false, true);
  // gW = g2^T (out, rows) @ x2 (rows, in): a transposed view, a flag
  check_plan(r({9, 6}).t(), r({9, 4}), false, false, false);
  // x @ W^T with W (out, in): b transposed
  check_plan(r({5, 4}), r({6, 4}).t(), false, false, false);
  // attention scores q @ k^T, (B, H, T, D) @ (B, H, D, T): uniform batch strides, a transpose flag
  check_plan(r({2, 3, 5, 4}), r({2, 3, 5, 4}).transpose(-1, -2), false, false, false);
  // a transposed per batch with a 2-D b: no fold, b broadcast with stride 0
  check_plan(r({4, 3, 5}).transpose(-1, -2), r({3, 2}), false, false, false);
  // a 2-D a against a batched b: a broadcast with stride 0
  check_plan(r({5, 3}), r({4, 3, 2}), false, false, false);
  // b broadcast over the outer batch dim only: no single stride, copied
  check_plan(r({4, 3, 5, 2}), r({1, 3, 2, 6}), false, true, false);
  // a batch dim that does not continue the next one (a permuted batch): copied
  check_plan(r({3, 4, 5, 2}).transpose(0, 1), r({2, 6}), true, false, false);
  // rows that overlap (an expanded row): copied
  check_plan(r({1, 4}).expand({3, 4}), r({4, 2}), true, false, false);
  // size-1 dims anywhere
  check_plan(r({1, 1, 4}), r({4, 1}), false, false, true);
  check_plan(r({2, 1, 3}), r({2, 3, 1}), false, false, false);
}

TEST_CASE("CUDA matmul and linear backward allocate only their outputs", "[cuda][ops][matmul]") {
  CIUIC_REQUIRE_GPU();
  manual_seed(22);
  const Device gpu = Device::cuda(0);
  for (DType dt : {DType::f32, DType::f16}) {
    INFO(dtype_name(dt));
    Tensor x = randn({4, 6, 32}, TensorOptions(dt)).to(gpu), w = randn({48, 32}, TensorOptions(dt)).to(gpu);
    Tensor g = randn({4, 6, 48}, TensorOptions(dt)).to(gpu);
    const std::vector<std::pair<Tensor, Tensor>> cases = {
        {g, w}, {g.reshape({24, 48}).t(), x.reshape({24, 32})}, {x, w.t()}, {x.transpose(-1, -2).transpose(-1, -2), w.t()}};
    for (const auto& [a, b] : cases) {
      (void)matmul(a, b);  // warm-up: plan caches and the GEMM workspace
      synchronize(gpu);
      const std::uint64_t before = cuda_allocator(0).stats().num_allocs;
      Tensor out = matmul(a, b);
      const std::uint64_t after = cuda_allocator(0).stats().num_allocs;
      CHECK(after - before == 1);  // the output
      Tensor ref = matmul(a.to(Device::cpu()).to(DType::f64), b.to(Device::cpu()).to(DType::f64));
      std::vector<double> o = out.to(Device::cpu()).to_vector<double>(), e = ref.to_vector<double>();
      for (std::size_t i = 0; i < o.size(); ++i) CHECK(o[i] == Approx(e[i]).epsilon(dt == DType::f16 ? 2e-2 : 1e-4).margin(0.05));
    }
  }
}
