// [cuda] The ops of ops.h's "unary math and activations", "remainder and fmod", "more
// reductions", "more shape and construction ops" and "more losses" on the device
// under test against the same ops on the CPU, forward and backward (gradients of
// <out, w> for a random w), on fresh random inputs, odd sizes and non-contiguous
// views, f32/f16/bf16/f64. Bound: ||dut - cpu|| / ||cpu|| <= 1e-5 (f32), 1e-10
// (f64), 1e-2 (f16, bf16); nan and inf at the same places. Then the new elementwise
// launchers themselves (k::unary, k::binary, k::unary_backward for the new op
// values) on NaN-poisoned outputs, odd sizes, strided and unaligned operands,
// against the CPU ops in f64 (CUDA builds only; the launches need a GPU).
// Without a GPU the CPU is the device under test (device_under_test.h).
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"
#include "device_under_test.h"
#include "test_util.h"

#if defined(CIUIC_WITH_CUDA)
#include "ciuic/kernels/elementwise.h"
#endif

using namespace ciuic;
using ciuic::test::dut;
using ciuic::test::to_dut;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double tol(DType dt) {
  switch (dt) {
    case DType::f32: return 1e-5;
    case DType::f64: return 1e-10;
    default: return 1e-2;
  }
}

std::vector<double> host_values(const Tensor& t) { return t.to(Device::cpu()).to_vector<double>(); }

double rel_err(const Tensor& got, const Tensor& ref) {
  const std::vector<double> g = host_values(got), r = host_values(ref);
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

void check_close(const Tensor& got, const Tensor& ref, double bound, const std::string& what) {
  INFO(what << ": got " << describe(got) << ", reference " << describe(ref));
  REQUIRE(got.defined() == ref.defined());
  if (!ref.defined()) return;
  CHECK(got.device() == dut());
  CHECK(got.shape() == ref.shape());
  CHECK(got.dtype() == ref.dtype());
  const double e = rel_err(got, ref);
  INFO("relative error " << e << " (bound " << bound << ")");
  CHECK(e <= bound);
}

using View = std::function<Tensor(const Tensor&)>;
struct In {
  Tensor base;  // on the CPU
  View view;    // taken on both devices (empty: the leaf itself)
};
using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// op on CPU leaves and on their device-under-test copies: outputs, then the
// gradients of <out, w> w.r.t. every floating input.
void check_op(const std::string& what, double bound, const std::vector<In>& ins, const OpFn& op, bool grads = true) {
  INFO(what);
  std::vector<Tensor> leaves[2];
  Tensor out[2];
  for (int side = 0; side < 2; ++side) {
    std::vector<Tensor> args;
    for (const In& in : ins) {
      Tensor leaf = side == 1 ? to_dut(in.base) : in.base.clone();
      if (grads && is_floating(leaf.dtype())) leaf.requires_grad_(true);
      leaves[side].push_back(leaf);
      args.push_back(in.view ? in.view(leaf) : leaf);
    }
    out[side] = op(args);
  }
  check_close(out[1], out[0], bound, what + " forward");
  if (!grads || !is_floating(out[0].dtype()) || !out[0].requires_grad()) return;
  CHECK(out[1].requires_grad());
  Tensor w = uniform(out[0].shape(), -1, 1, DType::f32).to(out[0].dtype());
  out[0].backward(w);
  out[1].backward(to_dut(w));
  for (std::size_t i = 0; i < ins.size(); ++i) {
    if (!leaves[0][i].requires_grad()) continue;
    check_close(leaves[1][i].grad(), leaves[0][i].grad(), bound, what + " grad of input " + std::to_string(i));
  }
}

Tensor rnd(const Shape& s, DType dt, double lo = -2, double hi = 2) { return uniform(s, lo, hi, DType::f32).to(dt); }
Tensor transposed(const Tensor& t) { return t.transpose(0, 1); }
Tensor every_other_row(const Tensor& t) { return t.slice(0, 0, t.size(0), 2); }

struct Unary {
  const char* name;
  std::function<Tensor(const Tensor&)> f;
  double lo, hi;
};

std::vector<Unary> unary_ops() {
  return {
      {"sin", [](const Tensor& x) { return sin(x); }, -4, 4},
      {"cos", [](const Tensor& x) { return cos(x); }, -4, 4},
      {"log1p", [](const Tensor& x) { return log1p(x); }, -0.9, 3},
      {"expm1", [](const Tensor& x) { return expm1(x); }, -3, 3},
      {"erf", [](const Tensor& x) { return erf(x); }, -3, 3},
      {"log2", [](const Tensor& x) { return log2(x); }, 0.1, 4},
      {"log10", [](const Tensor& x) { return log10(x); }, 0.1, 4},
      {"reciprocal", [](const Tensor& x) { return reciprocal(x); }, 0.3, 3},
      {"square", [](const Tensor& x) { return square(x); }, -3, 3},
      {"sign", [](const Tensor& x) { return sign(x); }, -3, 3},
      {"floor", [](const Tensor& x) { return floor(x); }, -5, 5},
      {"ceil", [](const Tensor& x) { return ceil(x); }, -5, 5},
      {"round", [](const Tensor& x) { return round(x); }, -5, 5},
      {"trunc", [](const Tensor& x) { return trunc(x); }, -5, 5},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.1); }, -3, 3},
      {"elu", [](const Tensor& x) { return elu(x, 0.7); }, -3, 3},
      {"softplus", [](const Tensor& x) { return softplus(x, 1.5, 2.0); }, -4, 4},
      {"logsigmoid", [](const Tensor& x) { return logsigmoid(x); }, -8, 8},
      {"hardtanh", [](const Tensor& x) { return hardtanh(x, -0.5, 1.25); }, -2, 2},
      {"mish", [](const Tensor& x) { return mish(x); }, -4, 4},
  };
}

}  // namespace

TEST_CASE("new unary ops on the device match the CPU, forward and backward", "[cuda][ops][math]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(201);
  const std::vector<std::pair<Shape, View>> layouts = {
      {{1}, {}}, {{7}, {}}, {{4099}, {}}, {{33, 65}, transposed}, {{9, 5, 4}, every_other_row}};
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    for (const Unary& u : unary_ops()) {
      for (const auto& [shape, view] : layouts) {
        Tensor x = rnd(shape, dt, u.lo, u.hi);
        check_op(std::string(u.name) + " " + dtype_name(dt) + " " + shape_str(shape), tol(dt), {{x, view}},
                 [&](const std::vector<Tensor>& a) { return u.f(a[0]); });
      }
    }
  }
  SECTION("special values: nan, inf, half-way rounding, softplus threshold") {
    Tensor s = from_vector<float>({NAN, INFINITY, -INFINITY, 0.5f, 1.5f, 2.5f, -2.5f, -0.0f, 20.0f, 30.0f}, {10});
    for (DType dt : {DType::f32, DType::f16, DType::bf16})
      for (const Unary& u : unary_ops())
        check_op(std::string(u.name) + " special " + dtype_name(dt), tol(dt), {{s.to(dt), {}}},
                 [&](const std::vector<Tensor>& a) { return u.f(a[0]); }, /*grads=*/false);
  }
}

TEST_CASE("remainder and fmod on the device match the CPU with broadcasting", "[cuda][ops][math]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(202);
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    Tensor a = rnd({33, 65}, dt, -10, 10), b = rnd({65}, dt, 0.5, 3);
    Tensor bneg = neg(b);
    for (const char* name : {"remainder", "fmod"}) {
      const bool rem = std::string(name) == "remainder";
      auto f = [rem](const std::vector<Tensor>& x) { return rem ? remainder(x[0], x[1]) : fmod(x[0], x[1]); };
      // The values are exact on both devices; b's gradient is a sum over the broadcast rows.
      check_op(std::string(name) + " " + dtype_name(dt), tol(dt), {{a, transposed}, {b.view({65, 1}), {}}}, f);
      check_op(std::string(name) + " negative divisor " + dtype_name(dt), tol(dt), {{a, {}}, {bneg, {}}}, f);
    }
  }
  if (ciuic::test::dut_is_gpu()) {
    CHECK_THROWS_WITH_ALL(remainder(arange(3).to(dut()), 2), NotImplementedError, "remainder", "integral");
  }
}

TEST_CASE("std, amax, amin, logsumexp and norm on the device match the CPU", "[cuda][ops][math][reduce]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(203);
  const double inf = kInf;
  struct Red {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
  };
  const std::vector<Red> reds = {
      {"std dim 1", [](const Tensor& x) { return ciuic::std(x, {1}); }},
      {"std all", [](const Tensor& x) { return ciuic::std(x); }},
      {"amax dims 0,2", [](const Tensor& x) { return amax(x, {0, 2}); }},
      {"amin dim -1 keepdim", [](const Tensor& x) { return amin(x, {-1}, true); }},
      {"logsumexp dim 1", [](const Tensor& x) { return logsumexp(x, {1}); }},
      {"logsumexp dims 0,2", [](const Tensor& x) { return logsumexp(x, {0, 2}, true); }},
      {"norm 2", [](const Tensor& x) { return norm(x, 2, {1}); }},
      {"norm 1", [](const Tensor& x) { return norm(x, 1, {0, 2}); }},
      {"norm inf", [inf](const Tensor& x) { return norm(x, inf, {1}); }},
      {"norm 3", [](const Tensor& x) { return norm(x, 3, {2}); }},
  };
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (const Red& r : reds) {
      Tensor x = rnd({5, 67, 9}, dt, -3, 3);
      check_op(std::string(r.name) + " " + dtype_name(dt), tol(dt), {{x, {}}},
               [&](const std::vector<Tensor>& a) { return r.f(a[0]); });
      check_op(std::string(r.name) + " strided " + dtype_name(dt), tol(dt), {{rnd({9, 67, 5}, dt), [](const Tensor& t) { return t.transpose(0, 2); }}},
               [&](const std::vector<Tensor>& a) { return r.f(a[0]); });
    }
  }
  SECTION("ties, nan and -inf rows route the gradient like the CPU") {
    Tensor t = from_vector<float>({1, 3, 3, -INFINITY, -INFINITY, -INFINITY, NAN, 0, 2, 2, 2, 2}, {4, 3});
    check_op("amax ties", 0, {{t, {}}}, [](const std::vector<Tensor>& a) { return amax(a[0], {1}); });
    check_op("amin ties", 0, {{t, {}}}, [](const std::vector<Tensor>& a) { return amin(a[0], {1}); });
    check_op("logsumexp -inf row", 1e-6, {{t, {}}}, [](const std::vector<Tensor>& a) { return logsumexp(a[0], {1}); });
  }
  SECTION("integer amax / amin are exact") {
    Tensor i = uniform({13, 7}, -1000, 1000, DType::f64).to(DType::i64);
    check_op("amax i64", 0, {{i, {}}}, [](const std::vector<Tensor>& a) { return amax(a[0], {0}); });
    check_op("amin i32", 0, {{i.to(DType::i32), transposed}}, [](const std::vector<Tensor>& a) { return amin(a[0], {1}); });
  }
  if (ciuic::test::dut_is_gpu()) {
    CHECK_THROWS_WITH_ALL(prod(ones({3}).to(dut())), NotImplementedError, "prod");
  }
}

TEST_CASE("shape ops and losses on the device match the CPU", "[cuda][ops][shape][losses]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(204);
  using Args = std::vector<Tensor>;
  for (DType dt : {DType::f32, DType::bf16}) {
    Tensor x = rnd({6, 7, 5}, dt);
    const double b = tol(dt);
    check_op("tril", b, {{x, {}}}, [](const Args& a) { return tril(a[0], 1); });
    check_op("triu", b, {{x, transposed}}, [](const Args& a) { return triu(a[0], -1); });
    check_op("flip", b, {{x, {}}}, [](const Args& a) { return flip(a[0], {0, 2}); });
    check_op("roll", b, {{x, {}}}, [](const Args& a) { return roll(a[0], {3, -2}, {1, 2}); });
    check_op("repeat", b, {{x, {}}}, [](const Args& a) { return repeat(a[0], {2, 1, 1, 3}); });
    check_op("pad", b, {{x, transposed}}, [](const Args& a) { return pad(a[0], {1, 2, -1, 3}, 0.5); });
    check_op("outer", b, {{rnd({7}, dt), {}}, {rnd({9}, dt), {}}}, [](const Args& a) { return outer(a[0], a[1]); });
  }
  Tensor idx = from_vector<std::int64_t>({3, 0, 2, 2, 1}, {5});
  CHECK(equal(one_hot(to_dut(idx), 4).to(Device::cpu()), one_hot(idx, 4)));
  CHECK(one_hot(to_dut(idx)).device() == dut());
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    const double b = tol(dt);
    Tensor logits = rnd({37, 11}, dt, -4, 4), y = rnd({37, 11}, dt, 0, 1), pw = rnd({11}, dt, 0.5, 2);
    Tensor tg = from_vector<std::int64_t>(std::vector<std::int64_t>(37, 3), {37});
    check_op("nll_loss " + std::string(dtype_name(dt)), b, {{log_softmax(logits, -1).detach(), {}}, {tg, {}}},
             [](const Args& a) { return nll_loss(a[0], a[1]); });
    check_op("bce with logits", b, {{logits, {}}, {y, {}}, {pw, {}}},
             [](const Args& a) { return binary_cross_entropy_with_logits(a[0], a[1], Reduction::sum, a[2]); });
    check_op("bce", b, {{sigmoid(logits).detach(), {}}, {y, {}}},
             [](const Args& a) { return binary_cross_entropy(a[0], a[1], Reduction::none); });
    check_op("l1", b, {{logits, transposed}, {y, transposed}}, [](const Args& a) { return l1_loss(a[0], a[1]); });
    check_op("smooth_l1", b, {{logits, {}}, {y, {}}}, [](const Args& a) { return smooth_l1_loss(a[0], a[1], Reduction::mean, 0.5); });
    check_op("huber", b, {{logits, {}}, {y, {}}}, [](const Args& a) { return huber_loss(a[0], a[1], Reduction::none, 1.5); });
    check_op("kl_div", b, {{log_softmax(logits, -1).detach(), {}}, {softmax(y, -1).detach(), {}}},
             [](const Args& a) { return kl_div(a[0], a[1], Reduction::batchmean); });
  }
  CHECK_THROWS_WITH_ALL(nll_loss(to_dut(zeros({2, 3})), to_dut(from_vector<std::int64_t>({0, 5}, {2}))), IndexError,
                        "nll_loss", "C = 3");
}

#if defined(CIUIC_WITH_CUDA)
namespace k = ciuic::kernels;

namespace {
Tensor poison(const Shape& s, DType dt) { return full(s, NAN, ciuic::test::on_dut(dt)); }
StridedLayout layout_of(const Tensor& t) {
  StridedLayout l;
  l.ndim = static_cast<int>(t.dim());
  for (int d = 0; d < l.ndim; ++d) {
    l.shape[d] = t.shape()[d];
    l.strides[d] = t.strides()[d];
  }
  return l;
}
Tensor host64(const Tensor& t) { return t.to(Device::cpu()).to(DType::f64).contiguous().clone(); }
// got (launcher output) against the CPU op in f64 on the same rounded inputs.
#define CHECK_LAUNCH_CLOSE(got, ref, dt)                                          \
  do {                                                                            \
    const double err_ = rel_err((got).to(Device::cpu()).to(DType::f64), (ref));   \
    INFO("dtype " << dtype_name(dt) << ", rel err " << err_);                     \
    CHECK_ON_GPU(err_ <= tol(dt));                                                \
  } while (0)
}  // namespace

TEST_CASE("new elementwise launchers write every element: poisoned outputs, odd sizes, strides", "[cuda][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(205);
  using U = k::UnaryOp;
  struct Case {
    U op;
    k::UnaryArgs args;
    double lo, hi;
    std::function<Tensor(const Tensor&)> ref;
  };
  const std::vector<Case> cases = {
      {U::sin, {}, -4, 4, [](const Tensor& x) { return sin(x); }},
      {U::cos, {}, -4, 4, [](const Tensor& x) { return cos(x); }},
      {U::log1p, {}, -0.9, 3, [](const Tensor& x) { return log1p(x); }},
      {U::expm1, {}, -3, 3, [](const Tensor& x) { return expm1(x); }},
      {U::erf, {}, -3, 3, [](const Tensor& x) { return erf(x); }},
      {U::log2, {}, 0.1, 4, [](const Tensor& x) { return log2(x); }},
      {U::log10, {}, 0.1, 4, [](const Tensor& x) { return log10(x); }},
      {U::reciprocal, {}, 0.3, 3, [](const Tensor& x) { return reciprocal(x); }},
      {U::square, {}, -3, 3, [](const Tensor& x) { return square(x); }},
      {U::sign, {}, -3, 3, [](const Tensor& x) { return sign(x); }},
      {U::floor, {}, -5, 5, [](const Tensor& x) { return floor(x); }},
      {U::ceil, {}, -5, 5, [](const Tensor& x) { return ceil(x); }},
      {U::round, {}, -5, 5, [](const Tensor& x) { return round(x); }},
      {U::trunc, {}, -5, 5, [](const Tensor& x) { return trunc(x); }},
      {U::leaky_relu, {0.1}, -3, 3, [](const Tensor& x) { return leaky_relu(x, 0.1); }},
      {U::elu, {0.7}, -3, 3, [](const Tensor& x) { return elu(x, 0.7); }},
      {U::softplus, {1.5, -kInf, 2.0}, -4, 4, [](const Tensor& x) { return softplus(x, 1.5, 2.0); }},
      {U::logsigmoid, {}, -8, 8, [](const Tensor& x) { return logsigmoid(x); }},
      {U::mish, {}, -4, 4, [](const Tensor& x) { return mish(x); }},
  };
  for (const Case& c : cases) {
    for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
      INFO(k::unary_op_name(c.op) << " " << dtype_name(dt));
      auto run = [&](const Tensor& x, Tensor out) {
        CIUIC_DUT_GPU_ONLY(k::unary(c.op, out.data_ptr(), x.data_ptr(), layout_of(x), dt, x.numel(), c.args,
                                    ciuic::test::dut_stream()));
        ciuic::test::dut_sync();
        CHECK_LAUNCH_CLOSE(out, c.ref(host64(x)).to(dt).to(DType::f64), dt);
      };
      for (std::int64_t n : {1LL, 7LL, 31LL, 100003LL}) run(uniform({n}, c.lo, c.hi, ciuic::test::on_dut(dt)), poison({n}, dt));
      run(uniform({37, 29}, c.lo, c.hi, ciuic::test::on_dut(dt)).t(), poison({29, 37}, dt));
      run(uniform({1002}, c.lo, c.hi, ciuic::test::on_dut(dt)).slice(0, 1, 1002), poison({1002}, dt).slice(0, 1, 1002));
    }
  }
  // Binary remainder / fmod, with a broadcast (stride 0) divisor.
  for (k::BinaryOp op : {k::BinaryOp::remainder, k::BinaryOp::fmod}) {
    for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
      INFO(k::binary_op_name(op) << " " << dtype_name(dt));
      Tensor a = uniform({31, 7}, -10, 10, ciuic::test::on_dut(dt)), b = uniform({7}, -3, 3, ciuic::test::on_dut(dt));
      Tensor be = b.expand({31, 7});
      Tensor out = poison({31, 7}, dt);
      CIUIC_DUT_GPU_ONLY(k::binary(op, out.data_ptr(), a.data_ptr(), layout_of(a), be.data_ptr(), layout_of(be), dt,
                                   out.numel(), ciuic::test::dut_stream()));
      ciuic::test::dut_sync();
      Tensor ref = op == k::BinaryOp::remainder ? remainder(host64(a), host64(b)) : fmod(host64(a), host64(b));
      CHECK_LAUNCH_CLOSE(out, ref.to(dt).to(DType::f64), dt);
    }
  }
  // Backward functors with their parameters.
  using B = k::UnaryBackwardOp;
  struct BCase {
    B op;
    double lo, hi;
    std::function<Tensor(const Tensor&)> fwd;
  };
  const std::vector<BCase> bcases = {
      {B::leaky_relu, 0.1, 0, [](const Tensor& x) { return leaky_relu(x, 0.1); }},
      {B::elu, 0.7, 0, [](const Tensor& x) { return elu(x, 0.7); }},
      {B::softplus, 1.5, 2.0, [](const Tensor& x) { return softplus(x, 1.5, 2.0); }},
      {B::logsigmoid, 0, 0, [](const Tensor& x) { return logsigmoid(x); }},
      {B::hardtanh, -0.5, 1.25, [](const Tensor& x) { return hardtanh(x, -0.5, 1.25); }},
      {B::mish, 0, 0, [](const Tensor& x) { return mish(x); }},
      {B::erf, 0, 0, [](const Tensor& x) { return erf(x); }},
      {B::log1p, 0, 0, [](const Tensor& x) { return log1p(x); }},
  };
  for (const BCase& c : bcases) {
    for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
      for (std::int64_t n : {1LL, 7LL, 100003LL}) {
        INFO(k::unary_backward_op_name(c.op) << " " << dtype_name(dt) << " n " << n);
        Tensor x = uniform({n}, -0.9, 3, ciuic::test::on_dut(dt)), g = uniform({n}, -2, 2, ciuic::test::on_dut(dt));
        Tensor x64 = host64(x).requires_grad_(true);
        c.fwd(x64).backward(host64(g));
        Tensor gx = poison({n}, dt);
        CIUIC_DUT_GPU_ONLY(k::unary_backward(c.op, gx.data_ptr(), g.data_ptr(), layout_of(g), x.data_ptr(), layout_of(x),
                                             dt, n, c.lo, c.hi, ciuic::test::dut_stream()));
        ciuic::test::dut_sync();
        CHECK_LAUNCH_CLOSE(gx, x64.grad().to(dt).to(DType::f64), dt);
      }
    }
  }
}
#endif
