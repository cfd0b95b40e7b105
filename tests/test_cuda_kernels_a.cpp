// [cuda] The hand-written kernels (elementwise, reduce, softmax, layernorm,
// embedding, cross_entropy, dropout) called through their launchers on device
// memory owned by ciuic tensors, against CPU references from the engine's ops
// (computed in f64 on the same, already rounded, inputs). Fresh random inputs,
// outputs poisoned with nan first, odd sizes, non-contiguous and unaligned
// operands. Error bound: ||out - ref|| / ||ref|| <= 1e-5 (f32), 1e-12 (f64),
// 1e-2 (f16, bf16); selections, gathers, maxima and dropout are compared exactly.
// Without a GPU the CPU is the device under test: the launchers are skipped
// (CIUIC_DUT_GPU_ONLY), checks of their outputs are evaluated but not asserted
// (CHECK_ON_GPU), and the setup and references run. A CPU-only build has none.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "ciuic/ciuic.h"
#include "device_under_test.h"
#include "test_util.h"

#if defined(CIUIC_WITH_CUDA)

#include "ciuic/kernels/cross_entropy.h"
#include "ciuic/kernels/dropout.h"
#include "ciuic/kernels/elementwise.h"
#include "ciuic/kernels/embedding.h"
#include "ciuic/kernels/layernorm.h"
#include "ciuic/kernels/reduce.h"
#include "ciuic/kernels/softmax.h"

using namespace ciuic;
namespace k = ciuic::kernels;
using ciuic::test::dut;
using ciuic::test::large_n;

namespace {

const DType kFloats[] = {DType::f32, DType::f64, DType::f16, DType::bf16};

// The device under test (device_under_test.h): cuda:0, or the CPU without a GPU,
// where the launchers are skipped and everything else runs.
TensorOptions gpu(DType dt) { return ciuic::test::on_dut(dt); }
void* stream() { return ciuic::test::dut_stream(); }
void gpu_sync() { ciuic::test::dut_sync(); }

Tensor poison(const Shape& s, DType dt) {
  return is_floating(dt) ? full(s, NAN, gpu(dt)) : full(s, -123, gpu(dt));
}
Tensor rnd(const Shape& s, DType dt, double lo = -2, double hi = 2) { return uniform(s, lo, hi, gpu(dt)); }

StridedLayout layout_of(const Tensor& t) {
  StridedLayout l;
  l.ndim = static_cast<int>(t.dim());
  for (int d = 0; d < l.ndim; ++d) {
    l.shape[d] = t.shape()[d];
    l.strides[d] = t.strides()[d];
  }
  return l;
}

// A CPU f64 copy (row-major values of any view).
Tensor host64(const Tensor& t) { return t.to(Device::cpu()).to(DType::f64).contiguous().clone(); }
std::vector<double> vals(const Tensor& t) { return t.to(Device::cpu()).to_vector<double>(); }

double tol(DType dt) {
  switch (dt) {
    case DType::f32: return 1e-5;
    case DType::f64: return 1e-12;
    default: return 1e-2;
  }
}

// ||got - ref|| / ||ref||; inf when got has a nan that ref does not (a poisoned
// element left unwritten), or the sizes differ.
double rel_err(const std::vector<double>& got, const std::vector<double>& ref) {
  if (got.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(ref[i])) {
      if (!std::isnan(got[i])) return INFINITY;
      continue;
    }
    if (!std::isfinite(got[i])) return INFINITY;
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

#define CHECK_CLOSE(got, ref, dt)                                 \
  do {                                                            \
    const double err_ = rel_err(vals(got), vals(ref));            \
    INFO("dtype " << dtype_name(dt) << ", rel err " << err_);     \
    CHECK_ON_GPU(err_ <= tol(dt));                                \
  } while (0)

bool bit_equal(const Tensor& a, const Tensor& b) {
  auto x = vals(a), y = vals(b);
  if (x.size() != y.size()) return false;
  return std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0;
}

}  // namespace

// ---------------------------------------------------------------------------
// elementwise
// ---------------------------------------------------------------------------

namespace {
struct UnaryCase {
  k::UnaryOp op;
  k::UnaryArgs args;
  double lo, hi;  // input range
  std::function<Tensor(const Tensor&)> ref;
};

std::vector<UnaryCase> unary_cases() {
  using U = k::UnaryOp;
  return {
      {U::neg, {}, -3, 3, [](const Tensor& x) { return neg(x); }},
      {U::exp, {}, -3, 3, [](const Tensor& x) { return exp(x); }},
      {U::log, {}, 0.1, 4, [](const Tensor& x) { return log(x); }},
      {U::sqrt, {}, 0.1, 4, [](const Tensor& x) { return sqrt(x); }},
      {U::rsqrt, {}, 0.1, 4, [](const Tensor& x) { return rsqrt(x); }},
      {U::tanh, {}, -3, 3, [](const Tensor& x) { return tanh(x); }},
      {U::sigmoid, {}, -6, 6, [](const Tensor& x) { return sigmoid(x); }},
      {U::relu, {}, -3, 3, [](const Tensor& x) { return relu(x); }},
      {U::gelu_tanh, {}, -4, 4, [](const Tensor& x) { return gelu(x, GeluApprox::tanh); }},
      {U::gelu_erf, {}, -4, 4, [](const Tensor& x) { return gelu(x, GeluApprox::none); }},
      {U::silu, {}, -6, 6, [](const Tensor& x) { return silu(x); }},
      {U::abs, {}, -3, 3, [](const Tensor& x) { return abs(x); }},
      {U::clamp, {0, -0.5, 0.75}, -2, 2, [](const Tensor& x) { return clamp(x, -0.5, 0.75); }},
      {U::pow_scalar, {2.5}, 0.1, 3, [](const Tensor& x) { return pow(x, 2.5); }},
      {U::add_scalar, {1.25}, -3, 3, [](const Tensor& x) { return add(x, 1.25); }},
      {U::mul_scalar, {-0.75}, -3, 3, [](const Tensor& x) { return mul(x, -0.75); }},
      {U::div_scalar, {4.0}, -3, 3, [](const Tensor& x) { return div(x, 4.0); }},
      {U::rsub_scalar, {0.5}, -3, 3, [](const Tensor& x) { return rsub(x, 0.5); }},
      {U::rdiv_scalar, {2.0}, 0.5, 3, [](const Tensor& x) { return rdiv(x, 2.0); }},
  };
}
}  // namespace

TEST_CASE("unary kernels match the CPU ops on odd sizes, strided and unaligned inputs", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(101);
  for (const auto& c : unary_cases()) {
    for (DType dt : kFloats) {
      INFO(k::unary_op_name(c.op) << " " << dtype_name(dt));
      auto run = [&](const Tensor& x, Tensor out) {
        CIUIC_DUT_GPU_ONLY(k::unary(c.op, out.data_ptr(), x.data_ptr(), layout_of(x), dt, x.numel(), c.args, stream()));
        gpu_sync();
        CHECK_CLOSE(out, c.ref(host64(x)), dt);
      };
      for (std::int64_t n : std::vector<std::int64_t>{1, 7, 31, large_n()}) {  // vector path with a tail
        INFO("n " << n);
        run(rnd({n}, dt, c.lo, c.hi), poison({n}, dt));
      }
      Tensor xt = rnd({37, 29}, dt, c.lo, c.hi).t();  // (29, 37) transposed: strided path
      run(xt, poison({29, 37}, dt));
      Tensor xu = rnd({1002}, dt, c.lo, c.hi).slice(0, 1, 1002);  // contiguous but 1 element off alignment
      run(xu, poison({1002}, dt).slice(0, 1, 1002));
      Tensor xi = rnd({1003}, dt, c.lo, c.hi);  // in place
      Tensor want = c.ref(host64(xi));
      CIUIC_DUT_GPU_ONLY(k::unary(c.op, xi.data_ptr(), xi.data_ptr(), layout_of(xi), dt, xi.numel(), c.args, stream()));
      gpu_sync();
      CHECK_CLOSE(xi, want, dt);
    }
  }
}

TEST_CASE("binary kernels broadcast and match the CPU ops", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(102);
  using B = k::BinaryOp;
  const std::vector<std::pair<B, std::function<Tensor(const Tensor&, const Tensor&)>>> ops = {
      {B::add, [](auto& a, auto& b) { return add(a, b); }},
      {B::sub, [](auto& a, auto& b) { return sub(a, b); }},
      {B::mul, [](auto& a, auto& b) { return mul(a, b); }},
      {B::div, [](auto& a, auto& b) { return div(a, b); }},
      {B::pow, [](auto& a, auto& b) { return pow(a, b); }},
      {B::maximum, [](auto& a, auto& b) { return maximum(a, b); }},
      {B::minimum, [](auto& a, auto& b) { return minimum(a, b); }},
  };
  for (const auto& [op, ref] : ops) {
    for (DType dt : kFloats) {
      INFO(k::binary_op_name(op) << " " << dtype_name(dt));
      auto run = [&](const Tensor& a, const Tensor& b, const Shape& shape) {
        Tensor ae = a.expand(shape), be = b.expand(shape);
        Tensor out = poison(shape, dt);
        CIUIC_DUT_GPU_ONLY(k::binary(op, out.data_ptr(), ae.data_ptr(), layout_of(ae), be.data_ptr(), layout_of(be), dt, out.numel(),
                  stream()));
        gpu_sync();
        CHECK_CLOSE(out, ref(host64(ae), host64(be)), dt);
      };
      // positive bases for pow; divisors away from 0
      for (std::int64_t n : std::vector<std::int64_t>{1, 7, 31, large_n()}) run(rnd({n}, dt, 0.5, 2), rnd({n}, dt, 0.5, 2), {n});
      run(rnd({33, 17}, dt, 0.5, 2), rnd({1, 17}, dt, 0.5, 2), {33, 17});             // row broadcast
      run(rnd({33, 1}, dt, 0.5, 2), rnd({17}, dt, 0.5, 2), {33, 17});                 // both broadcast
      run(rnd({17, 33}, dt, 0.5, 2).t(), rnd({33, 17}, dt, 0.5, 2), {33, 17});        // transposed a
      run(rnd({1}, dt, 0.5, 2), rnd({5, 1, 7}, dt, 0.5, 2).expand({5, 3, 7}), {5, 3, 7});  // scalar-like and 0 strides
    }
  }
  // integers: exact
  for (DType dt : {DType::i32, DType::i64}) {
    for (B op : {B::add, B::sub, B::mul, B::maximum, B::minimum}) {
      INFO(k::binary_op_name(op) << " " << dtype_name(dt));
      Tensor a = uniform({1001}, -1000, 1000, gpu(DType::f64)).to(dt);
      Tensor b = uniform({1, 1001}, -1000, 1000, gpu(DType::f64)).to(dt).expand({3, 1001});
      Tensor ae = a.expand({3, 1001});
      Tensor out = poison({3, 1001}, dt);
      CIUIC_DUT_GPU_ONLY(k::binary(op, out.data_ptr(), ae.data_ptr(), layout_of(ae), b.data_ptr(), layout_of(b), dt, out.numel(),
                stream()));
      gpu_sync();
      Tensor ac = ae.to(Device::cpu()), bc = b.to(Device::cpu());
      Tensor want = op == B::add ? add(ac, bc) : op == B::sub ? sub(ac, bc) : op == B::mul ? mul(ac, bc)
                  : op == B::maximum ? maximum(ac, bc) : minimum(ac, bc);
      CHECK_ON_GPU(vals(out) == vals(want));
    }
  }
}

TEST_CASE("activation backward kernels match the CPU autograd", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(103);
  using U = k::UnaryBackwardOp;
  const std::vector<std::pair<U, std::function<Tensor(const Tensor&)>>> ops = {
      {U::relu, [](auto& x) { return relu(x); }},
      {U::gelu_tanh, [](auto& x) { return gelu(x, GeluApprox::tanh); }},
      {U::gelu_erf, [](auto& x) { return gelu(x, GeluApprox::none); }},
      {U::silu, [](auto& x) { return silu(x); }},
      {U::abs, [](auto& x) { return abs(x); }},
      {U::clamp, [](auto& x) { return clamp(x, -0.5, 0.75); }},
      {U::tanh_from_out, [](auto& x) { return tanh(x); }},
      {U::sigmoid_from_out, [](auto& x) { return sigmoid(x); }},
  };
  for (const auto& [op, fwd] : ops) {
    for (DType dt : kFloats) {
      for (std::int64_t n : {1LL, 7LL, 31LL, 100003LL}) {
        INFO(k::unary_backward_op_name(op) << " " << dtype_name(dt) << " n " << n);
        Tensor x = rnd({n}, dt, -3, 3), g = rnd({n}, dt, -2, 2);
        const bool from_out = op == U::tanh_from_out || op == U::sigmoid_from_out;
        // tanh/sigmoid: the saved tensor is the forward output (rounded to dt), and the
        // reference is the formula on it; the others: autograd on the CPU.
        Tensor x64 = host64(x), g64 = host64(g), ref;
        Tensor saved = x;
        if (from_out) {
          saved = fwd(x64).to(dt).to(dut());
          Tensor y = host64(saved);
          ref = op == U::tanh_from_out ? mul(g64, rsub(mul(y, y), 1.0)) : mul(mul(g64, y), rsub(y, 1.0));
        } else {
          x64.requires_grad_(true);
          fwd(x64).backward(g64);
          ref = x64.grad();
        }
        Tensor gx = poison({n}, dt);
        CIUIC_DUT_GPU_ONLY(k::unary_backward(op, gx.data_ptr(), g.data_ptr(), layout_of(g), saved.data_ptr(), layout_of(saved), dt, n,
                          -0.5, 0.75, stream()));
        gpu_sync();
        CHECK_CLOSE(gx, ref, dt);
      }
    }
  }
}

TEST_CASE("where selects exactly with broadcast operands", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(104);
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8}) {
    INFO(dtype_name(dt));
    const Shape shape{31, 7};
    Tensor cond = gt(uniform({31, 1}, 0, 1, DType::f32), 0.5).to(dut()).expand(shape);
    Tensor a = uniform({31, 7}, 0, 100, gpu(DType::f64)).to(dt);
    Tensor b = uniform({7, 31}, 0, 100, gpu(DType::f64)).to(dt).t();  // transposed
    Tensor out = poison(shape, dt);
    CIUIC_DUT_GPU_ONLY(k::where(out.data_ptr(), cond.data_ptr(), layout_of(cond), a.data_ptr(), layout_of(a), b.data_ptr(),
             layout_of(b), dt, out.numel(), stream()));
    gpu_sync();
    CHECK_ON_GPU(vals(out) == vals(where(cond.to(Device::cpu()), a.to(Device::cpu()), b.to(Device::cpu()))));
  }
}

// ---------------------------------------------------------------------------
// reductions
// ---------------------------------------------------------------------------

namespace {
struct Dims3 {
  std::int64_t outer, reduce, inner;
};
// A function, not a static array: large_n() asks which device is under test.
std::vector<Dims3> reduce_dims() {
  return {{1, 1, 1}, {7, 31, 1},     {33, 1025, 1}, {3, 20000, 1}, {1, large_n(), 1},
          {5, 7, 31}, {2, 100000, 3}, {1000, 3, 2},  {1, 70001, 2}};
}

// workspace for the kernel, owned by a tensor
Tensor workspace(std::size_t bytes) { return empty({static_cast<std::int64_t>(bytes) + 1}, gpu(DType::u8)); }
}  // namespace

TEST_CASE("reduce_sum and mean match the CPU sum, deterministically", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(105);
  for (const auto& d : reduce_dims()) {
    for (DType dt : kFloats) {
      for (k::ReduceOp op : {k::ReduceOp::sum, k::ReduceOp::mean}) {
        INFO("dims " << d.outer << "x" << d.reduce << "x" << d.inner << " " << dtype_name(dt)
                     << (op == k::ReduceOp::sum ? " sum" : " mean"));
        // sums: values of size ~1/reduce with a nonzero mean, so sums stay O(1), fine for f16;
        // means: values O(1), so the mean is O(1) too (a mean of ~1e-6 would be an f16 subnormal
        // whose rounding alone is a 6 % error). Engine ops run on the CPU only: scale there, then move.
        const double scale = op == k::ReduceOp::sum ? 1.0 / static_cast<double>(d.reduce) : 1.0;
        Tensor x = mul(uniform({d.outer, d.reduce, d.inner}, -1, 2, DType::f64), scale).to(dut(), dt);
        Tensor ref = op == k::ReduceOp::sum ? sum(host64(x), {1}) : mean(host64(x), {1});
        const std::size_t bytes = k::reduce_workspace_bytes(op, dt, d.outer, d.reduce, d.inner, true);
        Tensor ws = workspace(bytes);
        Tensor out1 = poison({d.outer, d.inner}, dt), out2 = poison({d.outer, d.inner}, dt);
        CIUIC_DUT_GPU_ONLY(k::reduce_sum(op, out1.data_ptr(), x.data_ptr(), dt, d.outer, d.reduce, d.inner, true, ws.data_ptr(), bytes,
                      stream()));
        CIUIC_DUT_GPU_ONLY(k::reduce_sum(op, out2.data_ptr(), x.data_ptr(), dt, d.outer, d.reduce, d.inner, true, ws.data_ptr(), bytes,
                      stream()));
        gpu_sync();
        CHECK_CLOSE(out1, ref, dt);
        CHECK_ON_GPU(bit_equal(out1, out2));
        // the atomic path (f32/f64 only differ; others take the two-pass path again)
        const std::size_t nb = k::reduce_workspace_bytes(op, dt, d.outer, d.reduce, d.inner, false);
        Tensor ws2 = workspace(nb);
        Tensor out3 = poison({d.outer, d.inner}, dt);
        CIUIC_DUT_GPU_ONLY(k::reduce_sum(op, out3.data_ptr(), x.data_ptr(), dt, d.outer, d.reduce, d.inner, false, ws2.data_ptr(), nb,
                      stream()));
        gpu_sync();
        CHECK_CLOSE(out3, ref, dt);
      }
    }
  }
  // integer sums: exact
  for (DType dt : {DType::i32, DType::i64}) {
    for (const auto& d : reduce_dims()) {
      Tensor x = uniform({d.outer, d.reduce, d.inner}, -50, 50, gpu(DType::f64)).to(dt);
      const std::size_t bytes = k::reduce_workspace_bytes(k::ReduceOp::sum, dt, d.outer, d.reduce, d.inner);
      Tensor ws = workspace(bytes);
      Tensor out = poison({d.outer, d.inner}, dt);
      CIUIC_DUT_GPU_ONLY(k::reduce_sum(k::ReduceOp::sum, out.data_ptr(), x.data_ptr(), dt, d.outer, d.reduce, d.inner, true,
                    ws.data_ptr(), bytes, stream()));
      gpu_sync();
      CHECK_ON_GPU(vals(out) == vals(sum(x.to(Device::cpu()), {1})));
    }
  }
  // reduce == 0: sum 0, mean nan
  Tensor out = poison({3, 2}, DType::f32);
  CIUIC_DUT_GPU_ONLY(k::reduce_sum(k::ReduceOp::sum, out.data_ptr(), nullptr, DType::f32, 3, 0, 2, true, nullptr, 0, stream()));
  gpu_sync();
  for (double v : vals(out)) CHECK_ON_GPU(v == 0.0);
}

TEST_CASE("reduce_var matches the CPU var with both corrections", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(106);
  for (const auto& d : reduce_dims()) {
    if (d.reduce < 2) continue;
    for (DType dt : kFloats) {
      for (int correction : {0, 1}) {
        INFO("dims " << d.outer << "x" << d.reduce << "x" << d.inner << " " << dtype_name(dt) << " corr "
                     << correction);
        Tensor x = rnd({d.outer, d.reduce, d.inner}, dt, 3, 5);  // offset mean
        Tensor x64 = host64(x);
        const std::size_t bytes = k::reduce_workspace_bytes(k::ReduceOp::var, dt, d.outer, d.reduce, d.inner);
        Tensor ws = workspace(bytes);
        Tensor v = poison({d.outer, d.inner}, dt), m = poison({d.outer, d.inner}, dt);
        CIUIC_DUT_GPU_ONLY(k::reduce_var(v.data_ptr(), m.data_ptr(), x.data_ptr(), dt, d.outer, d.reduce, d.inner, correction,
                      ws.data_ptr(), bytes, stream()));
        gpu_sync();
        CHECK_CLOSE(v, var(x64, {1}, correction), dt);
        CHECK_CLOSE(m, mean(x64, {1}), dt);
      }
    }
  }
}

TEST_CASE("reduce_max returns the CPU's values and first indices", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(107);
  for (const auto& d : reduce_dims()) {
    for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8}) {
      INFO("dims " << d.outer << "x" << d.reduce << "x" << d.inner << " " << dtype_name(dt));
      // u8 and f16 make many ties: the first index must win, as on the CPU
      Tensor x = uniform({d.outer, d.reduce, d.inner}, 0, 200, gpu(DType::f64)).to(dt);
      Tensor xc = x.to(Device::cpu());
      auto [want_v, want_i] = max(xc, 1);
      const std::size_t bytes = k::reduce_workspace_bytes(k::ReduceOp::max, dt, d.outer, d.reduce, d.inner);
      Tensor ws = workspace(bytes);
      Tensor v = poison({d.outer, d.inner}, dt), i = poison({d.outer, d.inner}, DType::i64);
      CIUIC_DUT_GPU_ONLY(k::reduce_max(v.data_ptr(), static_cast<std::int64_t*>(i.data_ptr()), x.data_ptr(), dt, d.outer, d.reduce,
                    d.inner, ws.data_ptr(), bytes, stream()));
      gpu_sync();
      CHECK_ON_GPU(vals(v) == vals(want_v));
      CHECK_ON_GPU(vals(i) == vals(want_i));
      // argmax only
      Tensor i2 = poison({d.outer, d.inner}, DType::i64);
      CIUIC_DUT_GPU_ONLY(k::reduce_max(nullptr, static_cast<std::int64_t*>(i2.data_ptr()), x.data_ptr(), dt, d.outer, d.reduce, d.inner,
                    ws.data_ptr(), bytes, stream()));
      gpu_sync();
      CHECK_ON_GPU(vals(i2) == vals(want_i));
    }
  }
  // nan wins, first nan
  Tensor x = from_vector<float>({1, NAN, 5, NAN, 2}, {1, 5}).to(dut());
  Tensor v = poison({1}, DType::f32), i = poison({1}, DType::i64);
  CIUIC_DUT_GPU_ONLY(k::reduce_max(v.data_ptr(), static_cast<std::int64_t*>(i.data_ptr()), x.data_ptr(), DType::f32, 1, 5, 1, nullptr, 0,
                stream()));
  gpu_sync();
  CHECK_ON_GPU(std::isnan(vals(v)[0]));
  CHECK_ON_GPU(vals(i)[0] == 1);
}

// ---------------------------------------------------------------------------
// softmax
// ---------------------------------------------------------------------------

namespace {
const std::pair<std::int64_t, std::int64_t> kRowShapes[] = {{1, 1},  {7, 31},   {33, 1000}, {5, 1025},
                                                            {3, 8193}, {2, 20000}, {1000, 7}};
}

TEST_CASE("softmax and log_softmax kernels match the CPU ops, forward and backward", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(108);
  for (auto [rows, cols] : kRowShapes) {
    for (DType dt : kFloats) {
      for (bool lg : {false, true}) {
        INFO(rows << "x" << cols << " " << dtype_name(dt) << (lg ? " log_softmax" : " softmax"));
        Tensor x = rnd({rows, cols}, dt, -8, 8), g = rnd({rows, cols}, dt, -1, 1);
        Tensor y = poison({rows, cols}, dt);
        CIUIC_DUT_GPU_ONLY(k::softmax_forward(y.data_ptr(), x.data_ptr(), dt, rows, cols, lg, stream()));
        gpu_sync();
        Tensor x64 = host64(x).requires_grad_(true);
        Tensor y64 = lg ? log_softmax(x64, -1) : softmax(x64, -1);
        CHECK_CLOSE(y, y64, dt);
        y64.backward(host64(g));
        Tensor gx = poison({rows, cols}, dt);
        CIUIC_DUT_GPU_ONLY(k::softmax_backward(gx.data_ptr(), g.data_ptr(), y.data_ptr(), dt, rows, cols, lg, stream()));
        gpu_sync();
        CHECK_CLOSE(gx, x64.grad(), dt);
        // in place: y over x, grad_x over grad_y
        Tensor xi = x.clone(), gi = g.clone();
        CIUIC_DUT_GPU_ONLY(k::softmax_forward(xi.data_ptr(), xi.data_ptr(), dt, rows, cols, lg, stream()));
        CIUIC_DUT_GPU_ONLY(k::softmax_backward(gi.data_ptr(), gi.data_ptr(), xi.data_ptr(), dt, rows, cols, lg, stream()));
        gpu_sync();
        CHECK_ON_GPU(bit_equal(xi, y));
        CHECK_ON_GPU(bit_equal(gi, gx));
      }
    }
  }
  // a row of -inf gives nan, as on the CPU
  Tensor x = full({2, 40}, -INFINITY, gpu(DType::f32));
  Tensor y = poison({2, 40}, DType::f32);
  CIUIC_DUT_GPU_ONLY(k::softmax_forward(y.data_ptr(), x.data_ptr(), DType::f32, 2, 40, false, stream()));
  gpu_sync();
  for (double v : vals(y)) CHECK_ON_GPU(std::isnan(v));
}

// ---------------------------------------------------------------------------
// layer_norm / rms_norm
// ---------------------------------------------------------------------------

TEST_CASE("layer_norm and rms_norm kernels match the CPU ops, forward and backward", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(109);
  const std::pair<std::int64_t, std::int64_t> shapes[] = {{1, 1},    {7, 31},  {33, 1000}, {4, 1025},
                                                          {3, 9000}, {4099, 33}, {20000, 7}};
  for (auto [rows, cols] : shapes) {
    for (DType dt : kFloats) {
      for (bool rms : {false, true}) {
        for (bool affine : {false, true}) {
          INFO(rows << "x" << cols << " " << dtype_name(dt) << (rms ? " rms_norm" : " layer_norm")
                    << (affine ? " affine" : ""));
          const DType acc = dt == DType::f64 ? DType::f64 : DType::f32;
          Tensor x = rnd({rows, cols}, dt, 1, 4), g = rnd({rows, cols}, dt, -1, 1);
          Tensor w = affine ? rnd({cols}, dt, 0.5, 1.5) : Tensor(), b = affine && !rms ? rnd({cols}, dt) : Tensor();
          Tensor y = poison({rows, cols}, dt), mean_t = poison({rows}, acc), rstd_t = poison({rows}, acc);
          const void* wp = w.defined() ? w.data_ptr() : nullptr;
          const void* bp = b.defined() ? b.data_ptr() : nullptr;
          const double eps = 1e-5;
          if (rms) CIUIC_DUT_GPU_ONLY(k::rms_norm_forward(y.data_ptr(), rstd_t.data_ptr(), x.data_ptr(), wp, dt, rows, cols, eps, stream()));
          else CIUIC_DUT_GPU_ONLY(k::layer_norm_forward(y.data_ptr(), mean_t.data_ptr(), rstd_t.data_ptr(), x.data_ptr(), wp, bp, dt, rows,
                                     cols, eps, stream()));
          gpu_sync();
          Tensor x64 = host64(x).requires_grad_(true);
          Tensor w64 = w.defined() ? host64(w).requires_grad_(true) : Tensor();
          Tensor b64 = b.defined() ? host64(b).requires_grad_(true) : Tensor();
          Tensor y64 = rms ? rms_norm(x64, {cols}, w64, eps) : layer_norm(x64, {cols}, w64, b64, eps);
          CHECK_CLOSE(y, y64, dt);
          Tensor xd = x64.detach();
          Tensor mu = rms ? zeros({rows, 1}, DType::f64) : mean(xd, {1}, true);
          Tensor ms = mean(mul(sub(xd, mu), sub(xd, mu)), {1});
          CHECK_CLOSE(rstd_t, rsqrt(add(ms, eps)), dt == DType::f64 ? DType::f64 : DType::f32);
          if (!rms) CHECK_CLOSE(mean_t, mean(xd, {1}), dt == DType::f64 ? DType::f64 : DType::f32);
          // backward
          y64.backward(host64(g));
          const std::size_t bytes = k::norm_backward_workspace_bytes(dt, rows, cols);
          Tensor ws = workspace(bytes);
          Tensor gx = poison({rows, cols}, dt), gw = poison({cols}, dt), gb = poison({cols}, dt);
          Tensor gw2 = poison({cols}, dt);
          for (Tensor* out_w : {&gw, &gw2}) {
            if (rms) CIUIC_DUT_GPU_ONLY(k::rms_norm_backward(gx.data_ptr(), out_w->data_ptr(), g.data_ptr(), x.data_ptr(), wp,
                                          rstd_t.data_ptr(), dt, rows, cols, ws.data_ptr(), bytes, stream()));
            else CIUIC_DUT_GPU_ONLY(k::layer_norm_backward(gx.data_ptr(), out_w->data_ptr(), gb.data_ptr(), g.data_ptr(), x.data_ptr(), wp,
                                        mean_t.data_ptr(), rstd_t.data_ptr(), dt, rows, cols, ws.data_ptr(), bytes,
                                        stream()));
          }
          gpu_sync();
          if (rms && cols == 1) {
            // One column: gx = g * rstd * (1 - x^2 rstd^2) = g * rstd * eps / (x^2 + eps), a difference
            // of two terms of size |g| rstd that agree to ~1e-6: measure the error against them.
            const double got = vals(gx)[0], want = vals(x64.grad())[0];
            const double terms = std::fabs(vals(g)[0] * vals(rstd_t)[0]);
            INFO("gx " << got << ", reference " << want << ", cancelling terms of size " << terms);
            CHECK_ON_GPU(std::fabs(got - want) <= 4 * tol(dt) * terms);
          } else {
            CHECK_CLOSE(gx, x64.grad(), dt);
          }
          CHECK_ON_GPU(bit_equal(gw, gw2));  // deterministic parameter gradients
          if (affine) {
            CHECK_CLOSE(gw, w64.grad(), dt);
            if (!rms) CHECK_CLOSE(gb, b64.grad(), dt);
          } else {
            // the weight gradient of an implicit weight of ones: sum_rows g * xhat
            Tensor xhat = mul(sub(xd, mu), rsqrt(add(ms, eps)).unsqueeze(1));
            CHECK_CLOSE(gw, sum(mul(host64(g), xhat), {0}), dt);
            if (!rms) CHECK_CLOSE(gb, sum(host64(g), {0}), dt);
          }
        }
      }
    }
  }
}

TEST_CASE("fused residual add + norm equals add then norm", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(110);
  for (auto [rows, cols] : {std::pair<std::int64_t, std::int64_t>{7, 31}, {33, 1000}, {3, 9000}}) {
    for (DType dt : kFloats) {
      for (bool rms : {false, true}) {
        INFO(rows << "x" << cols << " " << dtype_name(dt) << (rms ? " add_rms_norm" : " add_layer_norm"));
        const DType acc = dt == DType::f64 ? DType::f64 : DType::f32;
        Tensor x = rnd({rows, cols}, dt), r = rnd({rows, cols}, dt), w = rnd({cols}, dt), b = rnd({cols}, dt);
        Tensor y = poison({rows, cols}, dt), h = poison({rows, cols}, dt);
        Tensor mean_t = poison({rows}, acc), rstd_t = poison({rows}, acc);
        if (rms)
          CIUIC_DUT_GPU_ONLY(k::add_rms_norm_forward(y.data_ptr(), h.data_ptr(), rstd_t.data_ptr(), x.data_ptr(), r.data_ptr(),
                                  w.data_ptr(), dt, rows, cols, 1e-6, stream()));
        else
          CIUIC_DUT_GPU_ONLY(k::add_layer_norm_forward(y.data_ptr(), h.data_ptr(), mean_t.data_ptr(), rstd_t.data_ptr(), x.data_ptr(),
                                    r.data_ptr(), w.data_ptr(), b.data_ptr(), dt, rows, cols, 1e-6, stream()));
        gpu_sync();
        // residual_out is the dtype's rounding of x + r: exactly the CPU add
        Tensor h_cpu = add(x.to(Device::cpu()), r.to(Device::cpu()));
        CHECK_ON_GPU(vals(h) == vals(h_cpu));
        Tensor h64 = h_cpu.to(DType::f64);
        Tensor ref = rms ? rms_norm(h64, {cols}, host64(w), 1e-6) : layer_norm(h64, {cols}, host64(w), host64(b), 1e-6);
        CHECK_CLOSE(y, ref, dt);
        // in place: residual_out over x
        Tensor xi = x.clone(), y2 = poison({rows, cols}, dt);
        if (rms)
          CIUIC_DUT_GPU_ONLY(k::add_rms_norm_forward(y2.data_ptr(), xi.data_ptr(), nullptr, xi.data_ptr(), r.data_ptr(), w.data_ptr(), dt,
                                  rows, cols, 1e-6, stream()));
        else
          CIUIC_DUT_GPU_ONLY(k::add_layer_norm_forward(y2.data_ptr(), xi.data_ptr(), nullptr, nullptr, xi.data_ptr(), r.data_ptr(),
                                    w.data_ptr(), b.data_ptr(), dt, rows, cols, 1e-6, stream()));
        gpu_sync();
        CHECK_ON_GPU(bit_equal(xi, h));
        CHECK_ON_GPU(bit_equal(y2, y));
      }
    }
  }
}

// ---------------------------------------------------------------------------
// embedding
// ---------------------------------------------------------------------------

TEST_CASE("embedding gather and scatter-add match the CPU op", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(111);
  const std::int64_t V = 1000;
  for (std::int64_t C : {1LL, 7LL, 64LL, 300LL}) {
    for (std::int64_t n : {1LL, 31LL, 5000LL}) {
      for (DType dt : kFloats) {
        for (DType it : {DType::i32, DType::i64}) {
          INFO("C " << C << " n " << n << " " << dtype_name(dt) << " indices " << dtype_name(it));
          Tensor w = rnd({V, C}, dt);
          // a few hot rows (many repeats) and some of the last rows
          Tensor idx = uniform({n}, 0, 50, gpu(DType::f64)).to(it);
          if (n > 10) idx.slice(0, 0, 5).copy_(from_vector<std::int64_t>({999, 998, 0, 999, 1}, {5}));
          Tensor out = poison({n, C}, dt);
          CIUIC_DUT_GPU_ONLY(k::embedding_forward(out.data_ptr(), w.data_ptr(), dt, V, C, idx.data_ptr(), it, n, {},
                                                  stream()));
          gpu_sync();
          Tensor wc = w.to(Device::cpu()), ic = idx.to(Device::cpu());
          CHECK_ON_GPU(vals(out) == vals(embedding(wc, ic)));  // a gather is exact
          // backward: deterministic path sums in index order like the CPU: identical
          Tensor g = rnd({n, C}, dt);
          Tensor wl = wc.clone().requires_grad_(true);
          embedding(wl, ic).backward(g.to(Device::cpu()));
          Tensor gw = poison({V, C}, dt);
          // The sort path's workspace size is a CUB query that needs a device.
          const std::size_t det_bytes =
              ciuic::test::dut_is_gpu() ? k::embedding_backward_workspace_bytes(dt, V, C, n, true) : 0;
          Tensor det_ws = workspace(det_bytes);
          CIUIC_DUT_GPU_ONLY(k::embedding_backward(gw.data_ptr(), g.data_ptr(), dt, V, C, idx.data_ptr(), it, n, true,
                                                   det_ws.data_ptr(), det_bytes, stream()));
          gpu_sync();
          CHECK_ON_GPU(vals(gw) == vals(wl.grad()));
          // atomic path
          const std::size_t bytes = k::embedding_backward_workspace_bytes(dt, V, C, n, false);
          Tensor ws = workspace(bytes);
          Tensor gw2 = poison({V, C}, dt);
          CIUIC_DUT_GPU_ONLY(k::embedding_backward(gw2.data_ptr(), g.data_ptr(), dt, V, C, idx.data_ptr(), it, n, false, ws.data_ptr(),
                                bytes, stream()));
          gpu_sync();
          CHECK_CLOSE(gw2, wl.grad().to(DType::f64), dt);
        }
      }
    }
  }
  // out-of-range indices: nan rows; the first one the kernel meets is reported to the
  // device's error slot and raised by the next sync (which one of 12 and -1 comes first
  // is up to the schedule)
  Tensor w = rnd({10, 8}, DType::f32);
  Tensor idx = from_vector<std::int64_t>({3, 12, -1, 9}, {4}).to(dut());
  Tensor out = poison({4, 8}, DType::f32);
  if (ciuic::test::dut_is_gpu()) {  // the device error slot exists on a GPU only
    k::embedding_forward(out.data_ptr(), w.data_ptr(), DType::f32, 10, 8, idx.data_ptr(), DType::i64, 4,
                         detail::device_error_slot(dut()), stream());
    CHECK_THROWS_WITH_ALL(gpu_sync(), IndexError, "embedding", "out of range", "V = 10, C = 8", "[0, 10)");
    CHECK_NOTHROW(gpu_sync());  // raised once, then cleared
  }
  auto o = vals(out);
  for (int j = 0; j < 8; ++j) {
    CHECK_ON_GPU(std::isnan(o[8 + j]));
    CHECK_ON_GPU(std::isnan(o[16 + j]));
    CHECK_ON_GPU(o[j] == vals(w)[3 * 8 + j]);
  }
}

// ---------------------------------------------------------------------------
// cross_entropy
// ---------------------------------------------------------------------------

TEST_CASE("fused cross-entropy matches the CPU loss and gradient", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(112);
  const std::pair<std::int64_t, std::int64_t> shapes[] = {{1, 1}, {7, 31}, {33, 1000}, {5, 1025}, {4, 50257}, {300, 7}};
  for (auto [N, V] : shapes) {
    for (DType dt : kFloats) {
      for (DType it : {DType::i32, DType::i64}) {
        INFO(N << "x" << V << " " << dtype_name(dt) << " targets " << dtype_name(it));
        const DType acc = dt == DType::f64 ? DType::f64 : DType::f32;
        Tensor x = rnd({N, V}, dt, -6, 6);
        Tensor t = uniform({N}, 0, static_cast<double>(V), DType::f64).to(DType::i64);
        auto tv = t.to_vector<std::int64_t>();
        for (std::size_t i = 0; i < tv.size(); ++i) {
          if (tv[i] >= V) tv[i] = V - 1;
          if (N > 3 && i % 3 == 1) tv[i] = -100;  // ignored rows
        }
        Tensor tc = from_vector<std::int64_t>(tv, {N}).to(it);
        Tensor tg = tc.to(dut());
        // count
        Tensor count = poison({1}, DType::i64);
        CIUIC_DUT_GPU_ONLY(k::cross_entropy_count_valid(static_cast<std::int64_t*>(count.data_ptr()), tg.data_ptr(), it, N, -100,
                                     stream()));
        gpu_sync();
        std::int64_t want_count = 0;
        for (auto v : tv) want_count += v != -100;
        CHECK_ON_GPU(vals(count)[0] == want_count);
        // CPU reference
        Tensor x64 = host64(x).requires_grad_(true);
        Tensor loss64 = cross_entropy(x64, tc, -100);
        loss64.backward();
        const double scale = want_count == 0 ? 0.0 : 1.0 / static_cast<double>(want_count);
        Tensor loss = poison({N}, acc), lse = poison({N}, acc), gx = poison({N, V}, dt);
        CIUIC_DUT_GPU_ONLY(k::cross_entropy_forward_backward(loss.data_ptr(), lse.data_ptr(), gx.data_ptr(), x.data_ptr(), dt,
                                          tg.data_ptr(), it, N, V, -100, scale, stream()));
        gpu_sync();
        // per-row losses: lse - x[t], 0 for ignored rows
        Tensor xd = x64.detach();
        std::vector<double> want_rows(static_cast<std::size_t>(N), 0.0), want_lse(static_cast<std::size_t>(N), 0.0);
        auto xv = xd.to_vector<double>();
        for (std::int64_t r = 0; r < N; ++r) {
          if (tv[r] == -100) continue;
          double m = -INFINITY, s = 0;
          for (std::int64_t j = 0; j < V; ++j) m = std::max(m, xv[r * V + j]);
          for (std::int64_t j = 0; j < V; ++j) s += std::exp(xv[r * V + j] - m);
          want_lse[r] = m + std::log(s);
          want_rows[r] = want_lse[r] - xv[r * V + tv[r]];
        }
        const double row_tol = acc == DType::f64 ? 1e-12 : 1e-5;
        CHECK_ON_GPU(rel_err(vals(loss), want_rows) <= row_tol);
        CHECK_ON_GPU(rel_err(vals(lse), want_lse) <= row_tol);
        if (want_count > 0) {
          double total = 0;
          for (double v : vals(loss)) total += v;
          CHECK_ON_GPU(std::fabs(total / want_count - loss64.item()) <= row_tol * std::max(1.0, std::fabs(loss64.item())));
        }
        CHECK_CLOSE(gx, x64.grad(), dt);
        // in place over the logits
        Tensor xi = x.clone();
        CIUIC_DUT_GPU_ONLY(k::cross_entropy_forward_backward(nullptr, nullptr, xi.data_ptr(), xi.data_ptr(), dt, tg.data_ptr(), it, N, V,
                                          -100, scale, stream()));
        gpu_sync();
        CHECK_ON_GPU(bit_equal(xi, gx));
      }
    }
  }
  // a target out of range gives nan instead of an exception
  Tensor x = rnd({2, 5}, DType::f32);
  Tensor t = from_vector<std::int64_t>({7, 1}, {2}).to(dut());
  Tensor loss = poison({2}, DType::f32);
  CIUIC_DUT_GPU_ONLY(k::cross_entropy_forward_backward(loss.data_ptr(), nullptr, nullptr, x.data_ptr(), DType::f32, t.data_ptr(),
                                    DType::i64, 2, 5, -100, 1.0, stream()));
  gpu_sync();
  CHECK_ON_GPU(std::isnan(vals(loss)[0]));
  CHECK_ON_GPU(std::isfinite(vals(loss)[1]));
}

// ---------------------------------------------------------------------------
// dropout
// ---------------------------------------------------------------------------

TEST_CASE("dropout kernels reproduce the CPU mask bit for bit", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(113);
  for (DType dt : kFloats) {
    for (std::int64_t n : std::vector<std::int64_t>{1, 7, 31, large_n()}) {
      for (double p : {0.0, 0.3, 1.0 / 3.0, 1.0}) {
        INFO(dtype_name(dt) << " n " << n << " p " << p);
        const std::uint64_t seed = 0xC0FFEE + static_cast<std::uint64_t>(n), offset = 0xFFFFFF00ULL;
        Tensor x = rnd({n}, dt), g = rnd({n}, dt);
        Generator gen{seed, offset};
        Tensor xc = x.to(Device::cpu()).requires_grad_(true);
        Tensor want = dropout(xc, p, true, &gen);
        Tensor out = poison({n}, dt);
        CIUIC_DUT_GPU_ONLY(k::dropout_forward(out.data_ptr(), x.data_ptr(), dt, n, p, seed, offset, stream()));
        Tensor gx = poison({n}, dt);
        CIUIC_DUT_GPU_ONLY(k::dropout_backward(gx.data_ptr(), g.data_ptr(), dt, n, p, seed, offset, stream()));
        gpu_sync();
        CHECK_ON_GPU(vals(out) == vals(want));
        if (p == 0) {
          CHECK_ON_GPU(vals(gx) == vals(g));  // identity (the CPU op returns x itself: no tape node)
        } else {
          want.backward(g.to(Device::cpu()));
          CHECK_ON_GPU(vals(gx) == vals(xc.grad()));
        }
        // unaligned buffers take the scalar path and give the same numbers
        if (n > 1) {
          Tensor xu = x.clone(), ou = poison({n + 1}, dt).slice(0, 1, n + 1);
          Tensor xs = poison({n + 1}, dt).slice(0, 1, n + 1);
          xs.copy_(xu);
          CIUIC_DUT_GPU_ONLY(k::dropout_forward(ou.data_ptr(), xs.data_ptr(), dt, n, p, seed, offset, stream()));
          gpu_sync();
          CHECK_ON_GPU(vals(ou) == vals(want));
        }
      }
    }
  }
}

#else  // !CIUIC_WITH_CUDA

TEST_CASE("CUDA kernel tests need a CUDA build", "[cuda][kernels]") {
  WARN("skipped: this build has no CUDA kernels");
}

#endif
