// [cuda] Every op that dispatches to CUDA, forward and backward, against the same
// op on the CPU: the inputs are made once on the CPU (in the dtype under test) and
// copied to the GPU, views (transpose, strided slice, expand) are taken on both
// sides, and the gradients of <out, w> for one random w are compared input by
// input. Dtypes f32, f16, bf16 (and f64 for a few); odd sizes (1, 7, large_n(): 1000003, or 100003 on the emulated device).
// Bound: ||gpu - cpu|| / ||cpu|| <= 1e-5 (f32), 1e-10 (f64), 1e-2 (f16, bf16); nan
// and inf must sit at the same places. Rows of 10^5+ elements (softmax, cross-entropy)
// compare with the CPU op run in f64: its f32 reference sums such rows sequentially,
// which alone drifts past 1e-5. Selections, indices, comparisons and dropout
// masks must match exactly. Also: the ops without kernels still raise
// NotImplementedError naming the op. Without a GPU the CPU is the device under test
// (device_under_test.h): the same bodies compare the CPU with itself.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"
#include "device_under_test.h"
#include "test_util.h"

using namespace ciuic;
using ciuic::test::dut;
using ciuic::test::large_n;
using ciuic::test::dut_is_gpu;
using ciuic::test::to_dut;

namespace {

const Device kCpu = Device::cpu();
const DType kHalfAndFloat[] = {DType::f32, DType::f16, DType::bf16};
constexpr double kInf = std::numeric_limits<double>::infinity();

double tol(DType dt) {
  switch (dt) {
    case DType::f32: return 1e-5;
    case DType::f64: return 1e-10;
    default: return 1e-2;
  }
}

std::vector<double> host_values(const Tensor& t) { return t.to(kCpu).to_vector<double>(); }

// ||got - ref|| / ||ref|| over the finite reference values; inf when a non-finite
// value (nan, +inf, -inf) of either side is not matched exactly by the other. atol:
// per-element differences up to atol count as 0 (for values that are f16
// subnormals, whose spacing 2^-24 is no relative precision at all).
double rel_err(const Tensor& got, const Tensor& ref, double atol = 0) {
  const std::vector<double> g = host_values(got), r = host_values(ref);
  if (g.size() != r.size()) return kInf;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (!std::isfinite(r[i]) || !std::isfinite(g[i])) {
      const bool same = (std::isnan(r[i]) && std::isnan(g[i])) || r[i] == g[i];
      if (!same) return kInf;
      continue;
    }
    const double d = std::max(std::fabs(g[i] - r[i]) - atol, 0.0);
    num += d * d;
    den += r[i] * r[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// got (on the GPU) against ref (on the CPU): shape, dtype, device, then values.
void check_close(const Tensor& got, const Tensor& ref, double bound, const std::string& what, double atol = 0) {
  INFO(what << ": got " << describe(got) << ", reference " << describe(ref));
  REQUIRE(got.defined() == ref.defined());
  if (!ref.defined()) return;
  CHECK(got.device() == dut());
  CHECK(got.shape() == ref.shape());
  CHECK(got.dtype() == ref.dtype());
  if (bound == 0) {
    const std::vector<double> g = host_values(got), r = host_values(ref);
    REQUIRE(g.size() == r.size());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < g.size(); ++i) bad += !(g[i] == r[i] || (std::isnan(g[i]) && std::isnan(r[i])));
    CHECK(bad == 0);
  } else {
    const double e = rel_err(got, ref, atol);
    INFO("relative error " << e << " (bound " << bound << ")");
    CHECK(e <= bound);
  }
}

Tensor rnd(const Shape& s, DType dt, double lo = -2, double hi = 2) { return uniform(s, lo, hi, DType::f32).to(dt); }

using View = std::function<Tensor(const Tensor&)>;
struct In {
  Tensor base;  // on the CPU
  View view;    // taken on both devices (empty: the leaf itself)
};
using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Runs op on leaves made from the CPU bases and on their GPU copies; compares the
// outputs and then, for floating outputs when grads, the gradients of <out, w>
// w.r.t. every floating input (bound 0: exact). cpu_f64: the CPU side runs on f64
// copies of the floating inputs and its results are rounded to the GPU's dtypes
// (for long rows, where the CPU reference's own f32 accumulation is not within 1e-5).
void check_op(const std::string& what, double bound, const std::vector<In>& ins, const OpFn& op,
              bool grads = true, bool cpu_f64 = false, double grad_atol = 0) {
  INFO(what);
  // With the CPU as the device under test both sides run the same f32 code: the f64
  // reference (meant for the GPU's tree-ordered sums) would measure the CPU's own
  // sequential drift instead.
  cpu_f64 = cpu_f64 && dut_is_gpu();
  std::vector<Tensor> leaves[2];
  Tensor out[2];
  for (int side = 0; side < 2; ++side) {
    std::vector<Tensor> args;
    for (const In& in : ins) {
      const bool widen = side == 0 && cpu_f64 && is_floating(in.base.dtype());
      Tensor leaf = side == 1 ? to_dut(in.base) : widen ? in.base.to(DType::f64).clone() : in.base.clone();
      if (grads && is_floating(leaf.dtype())) leaf.requires_grad_(true);
      leaves[side].push_back(leaf);
      args.push_back(in.view ? in.view(leaf) : leaf);
    }
    out[side] = op(args);
  }
  auto as_gpu_dtype = [](const Tensor& ref, const Tensor& got) {
    return ref.defined() && got.defined() ? ref.detach().to(got.dtype()) : ref;
  };
  check_close(out[1], as_gpu_dtype(out[0], out[1]), bound, what + " forward");
  if (!grads || !is_floating(out[0].dtype()) || !out[0].requires_grad()) return;
  CHECK(out[1].requires_grad());
  Tensor w = rnd(out[1].shape(), out[1].dtype(), -1, 1);
  out[0].backward(w.to(out[0].dtype()));
  out[1].backward(to_dut(w));
  for (std::size_t i = 0; i < ins.size(); ++i) {
    if (!is_floating(leaves[0][i].dtype())) continue;
    check_close(leaves[1][i].grad(), as_gpu_dtype(leaves[0][i].grad(), leaves[1][i].grad()), bound,
                what + " grad of input " + std::to_string(i), grad_atol);
  }
}

// Non-contiguous views used below.
Tensor transposed(const Tensor& t) { return t.transpose(0, 1); }
Tensor every_other_row(const Tensor& t) { return t.slice(0, 0, t.size(0), 2); }

}  // namespace

TEST_CASE("unary ops on CUDA match the CPU, forward and backward", "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  struct Unary {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
    bool positive;  // domain (0.1, 3)
  };
  const std::vector<Unary> ops = {
      {"neg", [](const Tensor& x) { return neg(x); }, false},
      {"exp", [](const Tensor& x) { return exp(x); }, false},
      {"log", [](const Tensor& x) { return log(x); }, true},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, true},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, true},
      {"tanh", [](const Tensor& x) { return tanh(x); }, false},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, false},
      {"relu", [](const Tensor& x) { return relu(x); }, false},
      {"gelu tanh", [](const Tensor& x) { return gelu(x, GeluApprox::tanh); }, false},
      {"gelu erf", [](const Tensor& x) { return gelu(x, GeluApprox::none); }, false},
      {"silu", [](const Tensor& x) { return silu(x); }, false},
      {"abs", [](const Tensor& x) { return abs(x); }, false},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 1.25); }, false},
      {"clamp lo only", [](const Tensor& x) { return clamp(x, 0.0, std::nullopt); }, false},
      {"pow 2.5", [](const Tensor& x) { return pow(x, 2.5); }, true},
      {"pow 3", [](const Tensor& x) { return pow(x, 3.0); }, false},
      {"add scalar", [](const Tensor& x) { return add(x, 0.75); }, false},
      {"rsub scalar", [](const Tensor& x) { return rsub(x, 3.0); }, false},
      {"rdiv scalar", [](const Tensor& x) { return rdiv(x, 2.0); }, true},
  };
  const std::vector<std::pair<Shape, View>> layouts = {
      {{1}, {}}, {{7}, {}}, {{large_n()}, {}}, {{33, 65}, transposed}, {{9, 5, 4}, every_other_row}};
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    for (const Unary& u : ops) {
      for (const auto& [shape, view] : layouts) {
        if (shape == Shape{large_n()} && dt == DType::f64) continue;  // f64 once on the small shapes is enough
        Tensor x = u.positive ? rnd(shape, dt, 0.1, 3) : rnd(shape, dt);
        check_op(std::string(u.name) + " " + dtype_name(dt) + " " + shape_str(shape), tol(dt), {{x, view}},
                 [&](const std::vector<Tensor>& a) { return u.f(a[0]); });
      }
    }
  }
}

TEST_CASE("binary ops on CUDA broadcast and match the CPU, forward and backward", "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  struct Binary {
    const char* name;
    std::function<Tensor(const Tensor&, const Tensor&)> f;
    bool positive_a;
  };
  const std::vector<Binary> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, false},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, false},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, false},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, add(abs(b), 0.5)); }, false},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }, true},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }, false},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }, false},
  };
  struct Case {
    Shape sa, sb;
    View va, vb;
  };
  const std::vector<Case> cases = {
      {{1}, {1}, {}, {}},
      {{large_n()}, {large_n()}, {}, {}},
      {{7, 1, 5}, {3, 1}, {}, {}},                      // both broadcast
      {{33, 65}, {65, 33}, {}, transposed},             // one transposed operand
      {{9, 6}, {6}, every_other_row, {}},               // strided + broadcast
      {{5, 7}, {}, {}, {}},                             // 0-dim operand
  };
  for (DType dt : kHalfAndFloat) {
    for (const Binary& op : ops) {
      for (const Case& c : cases) {
        Tensor a = op.positive_a ? rnd(c.sa, dt, 0.1, 3) : rnd(c.sa, dt);
        Tensor b = rnd(c.sb, dt);
        // f32: an f64 reference, since a broadcast operand's gradient is a sum whose terms cancel
        // (maximum against a 0-dim operand), where two f32 summation orders differ by more than
        // 1e-5. f16/bf16: the same-dtype reference, which rounds the intermediate products (a
        // pow gradient, a product before its reduction) where the device does.
        check_op(std::string(op.name) + " " + dtype_name(dt) + " " + shape_str(c.sa) + " with " + shape_str(c.sb),
                 tol(dt), {{a, c.va}, {b, c.vb}}, [&](const std::vector<Tensor>& x) { return op.f(x[0], x[1]); },
                 true, /*cpu_f64=*/dt == DType::f32);
      }
    }
  }
  SECTION("ties and nan in maximum/minimum route the gradient like the CPU") {
    Tensor a = from_vector<float>({1, 2, NAN, 3, -1, NAN, 0}, {7});
    Tensor b = from_vector<float>({1, 3, 1, NAN, -1, NAN, -0.0f}, {7});
    for (DType dt : kHalfAndFloat) {
      check_op(std::string("maximum ties ") + dtype_name(dt), 0, {{a.to(dt), {}}, {b.to(dt), {}}},
               [](const std::vector<Tensor>& x) { return maximum(x[0], x[1]); });
      check_op(std::string("minimum ties ") + dtype_name(dt), 0, {{a.to(dt), {}}, {b.to(dt), {}}},
               [](const std::vector<Tensor>& x) { return minimum(x[0], x[1]); });
    }
  }
  SECTION("integer add, sub, mul, maximum, minimum are exact") {
    for (DType dt : {DType::i32, DType::i64}) {
      Tensor a = uniform({7, 13}, -1000, 1000, DType::f64).to(dt), b = uniform({13}, -1000, 1000, DType::f64).to(dt);
      check_op(std::string("int add ") + dtype_name(dt), 0, {{a, {}}, {b, {}}},
               [](const std::vector<Tensor>& x) { return add(x[0], x[1]); });
      check_op(std::string("int sub ") + dtype_name(dt), 0, {{a, {}}, {b, {}}},
               [](const std::vector<Tensor>& x) { return sub(x[0], x[1]); });
      check_op(std::string("int mul ") + dtype_name(dt), 0, {{a, transposed}, {b.view({13, 1}), {}}},
               [](const std::vector<Tensor>& x) { return mul(x[0], x[1]); });
      check_op(std::string("int maximum ") + dtype_name(dt), 0, {{a, {}}, {b, {}}},
               [](const std::vector<Tensor>& x) { return maximum(x[0], x[1]); });
      check_op(std::string("int minimum ") + dtype_name(dt), 0, {{a, {}}, {b, {}}},
               [](const std::vector<Tensor>& x) { return minimum(x[0], x[1]); });
    }
  }
  SECTION("integer div is true division in f32, as on the CPU") {
    Tensor a = arange(5, TensorOptions(DType::i64)), b = full({5}, 2, DType::i64);
    Tensor q = div(a.to(dut()), b.to(dut()));
    CHECK(q.dtype() == DType::f32);
    CHECK(equal(q.to(Device::cpu()), div(a, b)));
  }
}

TEST_CASE("comparisons, where and masked_fill on CUDA match the CPU exactly, nan and inf included",
          "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  const std::vector<float> special = {-INFINITY, -2.5f, -1, -0.0f, 0, 1e-7f, 1, 2.5f, 3e4f, INFINITY, NAN};
  const auto n = static_cast<std::int64_t>(special.size());
  Tensor col = from_vector<float>(special, {n, 1}), row = from_vector<float>(special, {1, n});
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    INFO(dtype_name(dt));
    check_op("eq", 0, {{col.to(dt), {}}, {row.to(dt), {}}}, [](const std::vector<Tensor>& x) { return eq(x[0], x[1]); },
             false);
    for (float s : special) {
      INFO("scalar " << s);
      check_op("gt", 0, {{row.to(dt), {}}}, [s](const std::vector<Tensor>& x) { return gt(x[0], s); }, false);
      check_op("lt", 0, {{row.to(dt), {}}}, [s](const std::vector<Tensor>& x) { return lt(x[0], s); }, false);
    }
  }
  SECTION("integers, beyond f32's exact range") {
    const std::vector<std::int64_t> iv = {-(1LL << 40), -3, -1, 0, 1, 2, (1LL << 40), (1LL << 40) + 1};
    const auto m = static_cast<std::int64_t>(iv.size());
    Tensor ic = from_vector<std::int64_t>(iv, {m, 1}), ir = from_vector<std::int64_t>(iv, {1, m});
    for (DType dt : {DType::i64, DType::i32}) {
      Tensor a = dt == DType::i64 ? ic : clamp(ic.to(DType::f64), -1e9, 1e9).to(dt);
      Tensor b = dt == DType::i64 ? ir : clamp(ir.to(DType::f64), -1e9, 1e9).to(dt);
      check_op(std::string("int eq ") + dtype_name(dt), 0, {{a, {}}, {b, {}}},
               [](const std::vector<Tensor>& x) { return eq(x[0], x[1]); }, false);
      check_op(std::string("int gt ") + dtype_name(dt), 0, {{b, {}}},
               [](const std::vector<Tensor>& x) { return gt(x[0], 1.0); }, false);
    }
  }
  SECTION("where and masked_fill broadcast; gradients go to the selected side") {
    for (DType dt : kHalfAndFloat) {
      Tensor cond = gt(rnd({7, 1, 9}, DType::f32), 0.0);
      Tensor a = rnd({5, 9}, dt), b = rnd({9, 5}, dt);
      // Not bit-exact: a and b broadcast over cond's leading 7, so their gradients are sums of 7
      // selected terms, in the GPU's order (a wrong selection is an O(1) error, far above tol).
      check_op(std::string("where ") + dtype_name(dt), tol(dt), {{cond, {}}, {a, {}}, {b, transposed}},
               [](const std::vector<Tensor>& x) { return where(x[0], x[1], x[2]); });
      Tensor mask = gt(rnd({9}, DType::f32), 0.5);
      check_op(std::string("masked_fill ") + dtype_name(dt), 0, {{a, {}}, {mask, {}}},
               [](const std::vector<Tensor>& x) { return masked_fill(x[0], x[1], -7.5); });
    }
    Tensor ci = gt(rnd({6}, DType::f32), 0.0);
    Tensor ai = uniform({6}, -50, 50, DType::f64).to(DType::i64);
    check_op("where i64", 0, {{ci, {}}, {ai, {}}, {zeros({}, DType::i64), {}}},
             [](const std::vector<Tensor>& x) { return where(x[0], x[1], x[2]); });
  }
}

TEST_CASE("sum, mean, var, max and argmax on CUDA match the CPU", "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  const std::vector<std::vector<std::int64_t>> dim_sets = {{}, {0}, {1}, {2}, {0, 1}, {1, 2}, {0, 2}, {-1}};
  for (DType dt : kHalfAndFloat) {
    Tensor x = rnd({6, 7, 9}, dt);
    for (const auto& dims : dim_sets) {
      for (bool keep : {false, true}) {
        std::string tag = std::string(dtype_name(dt)) + " dims " + shape_str(Shape(dims.begin(), dims.end())) +
                          (keep ? " keepdim" : "");
        check_op("sum " + tag, tol(dt), {{x, {}}},
                 [&](const std::vector<Tensor>& a) { return sum(a[0], dims, keep); });
        check_op("sum of a permuted view " + tag, tol(dt), {{x, [](const Tensor& t) { return t.permute({2, 0, 1}); }}},
                 [&](const std::vector<Tensor>& a) { return sum(a[0], dims, keep); });
        check_op("mean " + tag, tol(dt), {{x, {}}},
                 [&](const std::vector<Tensor>& a) { return mean(a[0], dims, keep); });
        for (int correction : {0, 1})
          check_op("var correction " + std::to_string(correction) + " " + tag, tol(dt), {{x, {}}},
                   [&](const std::vector<Tensor>& a) { return var(a[0], dims, correction, keep); });
      }
    }
    for (std::int64_t d : {0, 1, 2, -1}) {
      check_op(std::string("max values ") + dtype_name(dt), 0, {{x, {}}},
               [d](const std::vector<Tensor>& a) { return max(a[0], d).first; });
      check_op(std::string("max indices ") + dtype_name(dt), 0, {{x, transposed}},
               [d](const std::vector<Tensor>& a) { return max(a[0], d, true).second; }, false);
      check_op(std::string("argmax ") + dtype_name(dt), 0, {{x, {}}},
               [d](const std::vector<Tensor>& a) { return argmax(a[0], d); }, false);
    }
    check_op(std::string("max over all ") + dtype_name(dt), 0, {{x, {}}},
             [](const std::vector<Tensor>& a) { return max(a[0]); });
    // Long reductions (split across blocks) and odd sizes.
    Tensor big = rnd({large_n()}, dt, -1, 1);
    check_op("sum " + std::to_string(large_n()) + " " + dtype_name(dt), tol(dt), {{big, {}}},
             [](const std::vector<Tensor>& a) { return sum(a[0]); });
    check_op("var " + std::to_string(large_n()) + " " + dtype_name(dt), tol(dt), {{big, {}}},
             [](const std::vector<Tensor>& a) { return var(a[0]); });
    check_op("max " + std::to_string(large_n()) + " " + dtype_name(dt), 0, {{big, {}}},
             [](const std::vector<Tensor>& a) { return max(a[0]); });
    check_op(std::string("sum (1, 1) ") + dtype_name(dt), tol(dt), {{rnd({1, 1}, dt), {}}},
             [](const std::vector<Tensor>& a) { return sum(a[0], {0}); });
  }
  SECTION("nan is the max, ties go to the first index; integer and bool reductions") {
    Tensor t = from_vector<float>({1, 3, 3, NAN, 2, 3, 5, 5}, {2, 4});
    for (DType dt : kHalfAndFloat) {
      check_op("max with nan and ties", 0, {{t.to(dt), {}}},
               [](const std::vector<Tensor>& a) { return max(a[0], 1).first; });
      check_op("argmax with nan and ties", 0, {{t.to(dt), {}}},
               [](const std::vector<Tensor>& a) { return argmax(a[0], 1); }, false);
    }
    Tensor iv = uniform({5, 11}, -100, 100, DType::f64).to(DType::i64);
    check_op("i64 sum", 0, {{iv, {}}}, [](const std::vector<Tensor>& a) { return sum(a[0], {1}); });
    check_op("i32 sum", 0, {{iv.to(DType::i32), transposed}}, [](const std::vector<Tensor>& a) { return sum(a[0]); });
    check_op("bool max", 0, {{gt(rnd({4, 6}, DType::f32), 1.0), {}}},
             [](const std::vector<Tensor>& a) { return max(a[0], 1).first; }, false);
  }
}

TEST_CASE("softmax and log_softmax on CUDA match the CPU along any dim", "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  struct Case {
    Shape shape;
    std::int64_t dim;
    View view;
  };
  const std::vector<Case> cases = {{{7, 1}, -1, {}},       {{7, 33}, -1, {}},       {{3, 5000}, 1, {}},
                                   {{4, 1500}, 0, {}},     {{33, 65}, -1, transposed}, {{6, 5, 9}, 1, {}},
                                   {{large_n()}, 0, {}}};
  for (DType dt : kHalfAndFloat) {
    for (const Case& c : cases) {
      Tensor x = rnd(c.shape, dt, -4, 4);
      const std::string tag = std::string(dtype_name(dt)) + " " + shape_str(c.shape) + " dim " + std::to_string(c.dim);
      // The CPU sums a row in f32 one element after another: over 10^6 elements that
      // drifts ~2e-5, so the long row is checked against the CPU op in f64.
      const bool long_row = shape_numel(c.shape) > 100000;
      // In f16 the long row's probabilities (3e-10 .. 8e-6) and their gradients are
      // f16 subnormals, spaced 2^-24 apart: the stored gradient y * (g - <g, y>) is
      // off by up to half a spacing from rounding it, plus |g - <g, y>| <= ~2 times
      // y's own rounding error of half a spacing, so up to ~1.5 * 2^-24 per element
      // with no relative meaning (an exact model of the kernel gives ~0.016 relative
      // in the norm). Differences below 2^-23 count as 0 there; the rest keeps 1e-2.
      const double grad_atol = long_row && dt == DType::f16 ? std::ldexp(1.0, -23) : 0.0;
      check_op("softmax " + tag, tol(dt), {{x, c.view}},
               [&](const std::vector<Tensor>& a) { return softmax(a[0], c.dim); }, true, long_row, grad_atol);
      check_op("log_softmax " + tag, tol(dt), {{x, c.view}},
               [&](const std::vector<Tensor>& a) { return log_softmax(a[0], c.dim); }, true, long_row, grad_atol);
    }
  }
  SECTION("a +inf anywhere in a row makes softmax, log_softmax and cross_entropy nan like the CPU") {
    // The review's row (C = 33: x[0] = +inf, x[32] = 3, the rest -inf) and +inf in
    // later lanes / other blocks of a long row; the CPU (and PyTorch) give all nan.
    for (std::int64_t C : {33, 100, 5000}) {
      for (std::int64_t at : {std::int64_t{0}, C / 2 + 1, C - 1}) {
        std::vector<float> row(static_cast<std::size_t>(C));
        for (std::int64_t j = 0; j < C; ++j) row[j] = C == 33 ? -INFINITY : std::sin(static_cast<float>(j));
        if (C == 33) row[32] = 3;
        row[static_cast<std::size_t>(at)] = INFINITY;
        // row 0 has the inf, row 1 is ordinary: only row 0 may be nan
        std::vector<float> both(row);
        for (std::int64_t j = 0; j < C; ++j) both.push_back(std::cos(static_cast<float>(j)));
        Tensor x = from_vector<float>(both, {2, C});
        for (DType dt : kHalfAndFloat) {
          const std::string tag = std::string(dtype_name(dt)) + " C=" + std::to_string(C) + " inf at " +
                                  std::to_string(at);
          INFO(tag);
          for (bool lg : {false, true}) {
            Tensor y = lg ? log_softmax(to_dut(x.to(dt)), -1) : softmax(to_dut(x.to(dt)), -1);
            auto v = host_values(y);
            std::size_t nan0 = 0, nan1 = 0;
            for (std::int64_t j = 0; j < C; ++j) {
              nan0 += std::isnan(v[static_cast<std::size_t>(j)]);
              nan1 += std::isnan(v[static_cast<std::size_t>(C + j)]);
            }
            CHECK(nan0 == static_cast<std::size_t>(C));
            CHECK(nan1 == 0);
            check_op((lg ? "log_softmax +inf " : "softmax +inf ") + tag, tol(dt), {{x.to(dt), {}}},
                     [lg](const std::vector<Tensor>& a) { return lg ? log_softmax(a[0], -1) : softmax(a[0], -1); },
                     false);
          }
          Tensor t = from_vector<std::int64_t>({C - 1, 0}, {2});
          Tensor xl = to_dut(x.to(dt)).requires_grad_();
          Tensor per_row = cross_entropy(xl.slice(0, 1, 2), to_dut(t).slice(0, 1, 2));
          CHECK(std::isfinite(per_row.item()));
          Tensor loss = cross_entropy(xl, to_dut(t));
          CHECK(std::isnan(loss.item()));
          loss.backward();
          auto g = host_values(xl.grad());
          std::size_t gnan = 0;
          for (std::int64_t j = 0; j < C; ++j) gnan += std::isnan(g[static_cast<std::size_t>(j)]);
          CHECK(gnan == static_cast<std::size_t>(C));
        }
      }
    }
  }
  SECTION("rows of -inf give nan like the CPU") {
    Tensor x = from_vector<float>({-INFINITY, -INFINITY, 1, 2}, {2, 2});
    check_op("softmax -inf row", tol(DType::f32), {{x, {}}}, [](const std::vector<Tensor>& a) { return softmax(a[0]); },
             false);
  }
}

TEST_CASE("layer_norm and rms_norm on CUDA match the CPU for x, weight and bias", "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  struct Case {
    Shape shape, normalized;
    View view;
  };
  const std::vector<Case> cases = {{{7, 1}, {1}, {}},      {{7, 33}, {33}, {}},       {{64, 768}, {768}, {}},
                                   {{3, 4, 5}, {4, 5}, {}}, {{65, 33}, {65}, transposed}, {{5, 3000}, {3000}, {}}};
  for (DType dt : kHalfAndFloat) {
    for (const Case& c : cases) {
      Tensor x = rnd(c.shape, dt), w = rnd(c.normalized, dt, 0.5, 1.5), b = rnd(c.normalized, dt);
      const std::string tag = std::string(dtype_name(dt)) + " " + shape_str(c.shape);
      check_op("layer_norm " + tag, tol(dt), {{x, c.view}, {w, {}}, {b, {}}}, [&](const std::vector<Tensor>& a) {
        return layer_norm(a[0], c.normalized, a[1], a[2], 1e-5);
      });
      check_op("layer_norm without affine " + tag, tol(dt), {{x, c.view}},
               [&](const std::vector<Tensor>& a) { return layer_norm(a[0], c.normalized); });
      // One normalized element: rms_norm's gradient g rstd (1 - x^2 rstd^2) is the difference of two
      // terms that agree to ~eps / x^2, noise in any precision below f64, so only the forward is
      // compared (the kernel test measures that gradient against the cancelling terms).
      const bool grads = shape_numel(c.normalized) > 1;
      check_op("rms_norm " + tag, tol(dt), {{x, c.view}, {w, {}}},
               [&](const std::vector<Tensor>& a) { return rms_norm(a[0], c.normalized, a[1], 1e-6); }, grads);
      check_op("rms_norm without weight " + tag, tol(dt), {{x, c.view}},
               [&](const std::vector<Tensor>& a) { return rms_norm(a[0], c.normalized); }, grads);
    }
  }
}

TEST_CASE("embedding, cross_entropy and mse_loss on CUDA match the CPU", "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  for (DType dt : kHalfAndFloat) {
    const std::string tag = dtype_name(dt);
    for (DType it : {DType::i64, DType::i32}) {
      Tensor w = rnd({50, 17}, dt);
      Tensor idx = from_vector<std::int64_t>({3, 0, 49, 3, 3, 7, 49, 12, 0, 1, 3, 8, 9, 10, 3}, {3, 5}).to(it);
      check_op("embedding " + tag, tol(dt), {{w, {}}, {idx, {}}},
               [](const std::vector<Tensor>& a) { return embedding(a[0], a[1]); });
      check_op("embedding, transposed indices " + tag, tol(dt), {{w, {}}, {idx, transposed}},
               [](const std::vector<Tensor>& a) { return embedding(a[0], a[1]); });
    }
    for (auto [N, C] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {7, 11}, {33, 1500}, {5, 50304}}) {
      Tensor logits = rnd({N, C}, dt, -3, 3);
      Tensor t = uniform({N}, 0, static_cast<double>(C), DType::f64).to(DType::i64);
      if (N > 3) t.narrow(0, 1, 2).fill_(-100);  // ignored rows
      const std::string sz = tag + " " + std::to_string(N) + "x" + std::to_string(C);
      const bool long_row = C > 10000;  // the CPU's f32 row sum drifts: compare with it in f64
      check_op("cross_entropy " + sz, tol(dt), {{logits, {}}, {t, {}}},
               [](const std::vector<Tensor>& a) { return cross_entropy(a[0], a[1]); }, true, long_row);
      Tensor t0 = masked_fill(t, lt(t, 0.0), 0).to(DType::i32);  // -100 is a bad target when 0 is ignored
      check_op("cross_entropy i32 targets, ignore 0 " + sz, tol(dt), {{logits, {}}, {t0, {}}},
               [](const std::vector<Tensor>& a) { return cross_entropy(a[0], a[1], 0); }, true, long_row);
    }
    Tensor lg3 = rnd({2, 3, 9}, dt);
    Tensor t3 = uniform({2, 3}, 0, 9, DType::f64).to(DType::i64);
    check_op("cross_entropy (B, T, C) " + tag, tol(dt), {{lg3, {}}, {t3, {}}},
             [](const std::vector<Tensor>& a) { return cross_entropy(a[0], a[1]); });
    Tensor all_ignored = full({4}, -100, DType::i64);
    check_op("cross_entropy all ignored (nan) " + tag, tol(dt), {{rnd({4, 6}, dt), {}}, {all_ignored, {}}},
             [](const std::vector<Tensor>& a) { return cross_entropy(a[0], a[1]); });
    Tensor x = rnd({33, 65}, dt), y = rnd({65, 33}, dt);
    check_op("mse_loss " + tag, tol(dt), {{x, {}}, {y, transposed}},
             [](const std::vector<Tensor>& a) { return mse_loss(a[0], a[1]); });
    check_op("mse_loss " + std::to_string(large_n()) + " " + tag, tol(dt), {{rnd({large_n()}, dt), {}}, {rnd({large_n()}, dt), {}}},
             [](const std::vector<Tensor>& a) { return mse_loss(a[0], a[1]); });
  }
  SECTION("bad indices and targets raise IndexError on CUDA as on the CPU (deferred to the next sync)") {
    Tensor w = to_dut(rnd({10, 4}, DType::f32));
    Tensor bad = from_vector<std::int64_t>({1, 10, 2}, {3}).to(dut());
    CHECK_THROWS_WITH_ALL((embedding(w, bad), synchronize(dut())), IndexError, "embedding", "index 10", "[0, 10)");
    Tensor logits = to_dut(rnd({3, 5}, DType::f32));
    Tensor tb = from_vector<std::int64_t>({1, 5, 2}, {3}).to(dut());
    CHECK_THROWS_WITH_ALL(cross_entropy(logits, tb).item(), IndexError, "cross_entropy", "target 5");
  }
}

TEST_CASE("dropout on CUDA reproduces the CPU mask bit for bit, forward and backward", "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    for (double p : {0.1, 0.5, 1.0}) {
      const std::vector<std::pair<Shape, View>> layouts = {{{7}, {}}, {{large_n()}, {}}, {{33, 65}, transposed}};
      for (const auto& [shape, view] : layouts) {
        Tensor x = rnd(shape, dt);
        // The same generator state on both sides: the check_op op runs once per side.
        Generator gens[2];
        int side = 0;
        check_op(std::string("dropout p=") + std::to_string(p) + " " + dtype_name(dt) + " " + shape_str(shape), 0,
                 {{x, view}}, [&](const std::vector<Tensor>& a) { return dropout(a[0], p, true, &gens[side++]); });
        CHECK(gens[0].offset == gens[1].offset);
      }
    }
  }
}

TEST_CASE("cat, stack and index_select on CUDA match the CPU", "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  for (DType dt : kHalfAndFloat) {
    const std::string tag = dtype_name(dt);
    Tensor a = rnd({4, 5}, dt), b = rnd({3, 5}, dt), c = rnd({5, 4}, dt);
    check_op("cat dim 0 " + tag, 0, {{a, {}}, {b, {}}, {c, transposed}},
             [](const std::vector<Tensor>& x) { return cat({x[0], x[1], x[2]}, 0); });
    check_op("stack " + tag, 0, {{a, {}}, {c, transposed}},
             [](const std::vector<Tensor>& x) { return stack({x[0], x[1]}, 1); });
    Tensor big = rnd({6, 7, 9}, dt);
    Tensor idx = from_vector<std::int64_t>({2, 0, 2, 5, 1, 2}, {6});
    for (std::int64_t d : {0, 1, 2}) {
      Tensor id = idx.narrow(0, 0, d == 0 ? 6 : 5);
      check_op("index_select dim " + std::to_string(d) + " " + tag, tol(dt), {{big, {}}, {id, {}}},
               [d](const std::vector<Tensor>& x) { return index_select(x[0], d, x[1]); });
      check_op("index_select of a view, i32 index, dim " + std::to_string(d) + " " + tag, tol(dt),
               {{big, [](const Tensor& t) { return t.permute({1, 2, 0}); }}, {id.to(DType::i32), {}}},
               [d](const std::vector<Tensor>& x) { return index_select(x[0], d, x[1]); });
    }
  }
}

TEST_CASE("a small training step (embedding, layer_norm, gelu, softmax, cross_entropy) agrees across devices",
          "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  Tensor wte = rnd({31, 16}, DType::f32), lnw = rnd({16}, DType::f32, 0.5, 1.5), lnb = rnd({16}, DType::f32);
  Tensor idx = uniform({2, 5}, 0, 31, DType::f64).to(DType::i64);
  Tensor tgt = uniform({2, 5}, 0, 16, DType::f64).to(DType::i64);
  check_op("tiny model", 1e-5, {{wte, {}}, {lnw, {}}, {lnb, {}}, {idx, {}}, {tgt, {}}},
           [](const std::vector<Tensor>& a) {
             Tensor h = layer_norm(embedding(a[0], a[3]), {16}, a[1], a[2]);
             Tensor att = softmax(mul(h, 0.5), -1);
             Tensor z = add(gelu(h), mul(att, sum(h, {-1}, true)));
             return cross_entropy(z, a[4]);
           });
}

TEST_CASE("ops without CUDA kernels raise NotImplementedError naming the op", "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  // conv2d, pooling and batch_norm have CUDA paths now (test_cuda_cnn.cpp).
  if (!dut_is_gpu()) {  // the CPU gathers every dtype: the same call must succeed there
    Tensor xi = zeros({4}, TensorOptions(DType::i64).device(dut()));
    CHECK_NOTHROW(index_select(xi, 0, xi));
    return;
  }
  // index_select gathers floating rows only on CUDA.
  Tensor xi = zeros({4}, TensorOptions(DType::i64).device(dut()));
  CHECK_THROWS_WITH_ALL(index_select(xi, 0, xi), DTypeError, "index_select", "i64", "CUDA");
}
