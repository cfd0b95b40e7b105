// The fused ops linear_gelu and add_layer_norm (engine/src/ops/fused_linear.cpp,
// add_layer_norm.cpp) against the unfused compositions gelu(linear(...)) and
// (layer_norm(x + r), x + r):
//  - CPU forward and gradients bit-identical to the composition (the fused op's CPU
//    path runs the same CPU code in the same order, and the one reordered addition
//    in backward, grad_sum + the LN input gradient, is commutative in IEEE);
//  - f64 finite-difference gradcheck of every input, with and without bias, on
//    non-contiguous inputs;
//  - f32 / f16 / bf16 against the f64 composition;
//  - bad input: ciuic errors naming the op, the shapes and dtypes;
//  - inside checkpoint segments (plain and selective) and under autocast + the loss
//    scaler: the same gradients as the composition;
//  - [cuda]: the device under test against the CPU reference on random inputs with
//    NaN-poisoned output memory, odd sizes (37 x 129) and non-contiguous inputs.
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
using ciuic::test::to_dut;

namespace {

const GeluApprox kApprox[] = {GeluApprox::tanh, GeluApprox::none};
const char* approx_name(GeluApprox a) { return a == GeluApprox::tanh ? "tanh" : "erf"; }

Tensor rnd(const Shape& s, DType dt = DType::f64, double lo = -2, double hi = 2) { return uniform(s, lo, hi, dt); }
// A (rows, cols) tensor whose storage is (cols, rows): a transposed, non-contiguous view.
Tensor transposed(std::int64_t rows, std::int64_t cols, DType dt = DType::f64) { return rnd({cols, rows}, dt).t(); }
// (a, b, c) with every other element of the last dim of a (a, b, 2c) tensor.
Tensor strided3(std::int64_t a, std::int64_t b, std::int64_t c, DType dt = DType::f64) {
  return rnd({a, b, 2 * c}, dt).slice(2, 0, 2 * c, 2);
}

// Bitwise equality of values (both defined, same shape and dtype).
void check_same(const Tensor& got, const Tensor& want, const std::string& what) {
  INFO(what << ": got " << describe(got) << ", want " << describe(want));
  REQUIRE(got.defined() == want.defined());
  if (!want.defined()) return;
  CHECK(got.dtype() == want.dtype());
  CHECK(got.shape() == want.shape());
  const std::vector<double> g = got.to(Device::cpu()).to_vector<double>(), w = want.to(Device::cpu()).to_vector<double>();
  REQUIRE(g.size() == w.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i) bad += !(g[i] == w[i] || (std::isnan(g[i]) && std::isnan(w[i])));
  CHECK(bad == 0);
}

// ||got - ref|| / ||ref|| in f64; inf when a nan or inf of either side is unmatched.
double rel_err(const Tensor& got, const Tensor& ref) {
  const std::vector<double> g = got.to(Device::cpu()).to_vector<double>(), r = ref.to(Device::cpu()).to_vector<double>();
  if (g.size() != r.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (!std::isfinite(g[i]) || !std::isfinite(r[i])) {
      if (!(g[i] == r[i] || (std::isnan(g[i]) && std::isnan(r[i])))) return std::numeric_limits<double>::infinity();
      continue;
    }
    num += (g[i] - r[i]) * (g[i] - r[i]);
    den += r[i] * r[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

double bound(DType dt) {
  switch (dt) {
    case DType::f64: return 1e-12;
    case DType::f32: return 1e-5;
    case DType::f16: return 5e-3;
    default: return 3e-2;  // bf16: 8 mantissa bits
  }
}

Tensor leaf_copy(const Tensor& t) { return t.defined() ? t.detach().clone().requires_grad_(true) : Tensor(); }
Tensor grad_of(const Tensor& t) { return t.defined() ? t.grad() : Tensor(); }

// The composition both fused ops must equal.
Tensor linear_gelu_ref(const Tensor& x, const Tensor& w, const Tensor& b, GeluApprox a) {
  return gelu(linear(x, w, b), a);
}
std::pair<Tensor, Tensor> add_layer_norm_ref(const Tensor& x, const Tensor& r, const Tensor& w, const Tensor& b,
                                             double eps) {
  Tensor s = add(x, r);
  return {layer_norm(s, {x.size(-1)}, w, b, eps), s};
}

// Runs f on fresh leaf copies of inputs, backpropagates sum(out_i * proj_i), returns
// the outputs followed by the inputs' gradients.
using MultiFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
std::vector<Tensor> run_with_grads(const MultiFn& f, const std::vector<Tensor>& inputs, const std::vector<Tensor>& proj) {
  std::vector<Tensor> leaves;
  for (const Tensor& t : inputs) leaves.push_back(leaf_copy(t));
  std::vector<Tensor> outs = f(leaves);
  Tensor loss;
  for (std::size_t i = 0; i < outs.size(); ++i) {
    if (!proj[i].defined()) continue;
    Tensor term = sum(mul(outs[i], proj[i]));
    loss = loss.defined() ? add(loss, term) : term;
  }
  loss.backward();
  std::vector<Tensor> res = outs;
  for (const Tensor& l : leaves) res.push_back(grad_of(l));
  return res;
}

MultiFn fused_lg(GeluApprox a) {
  return [a](const std::vector<Tensor>& in) { return std::vector<Tensor>{linear_gelu(in[0], in[1], in[2], a)}; };
}
MultiFn unfused_lg(GeluApprox a) {
  return [a](const std::vector<Tensor>& in) { return std::vector<Tensor>{linear_gelu_ref(in[0], in[1], in[2], a)}; };
}
MultiFn fused_aln(double eps) {
  return [eps](const std::vector<Tensor>& in) {
    auto [y, s] = add_layer_norm(in[0], in[1], in[2], in[3], eps);
    return std::vector<Tensor>{y, s};
  };
}
MultiFn unfused_aln(double eps) {
  return [eps](const std::vector<Tensor>& in) {
    auto [y, s] = add_layer_norm_ref(in[0], in[1], in[2], in[3], eps);
    return std::vector<Tensor>{y, s};
  };
}

}  // namespace

// ------------------------------------------------------------------ linear_gelu

TEST_CASE("linear_gelu on the CPU is bit-identical to gelu(linear(...)), forward and backward", "[fused][ops]") {
  for (DType dt : {DType::f64, DType::f32, DType::f16, DType::bf16}) {
    for (GeluApprox a : kApprox) {
      for (bool with_bias : {true, false}) {
        for (bool noncontig : {false, true}) {
          INFO(dtype_name(dt) << " " << approx_name(a) << (with_bias ? " bias" : " no bias")
                              << (noncontig ? " strided x" : ""));
          Tensor x = noncontig ? strided3(2, 5, 9, dt) : rnd({2, 5, 9}, dt);
          Tensor w = rnd({13, 9}, dt, -0.5, 0.5), b = with_bias ? rnd({13}, dt) : Tensor();
          std::vector<Tensor> proj{rnd({2, 5, 13}, dt)};
          auto got = run_with_grads(fused_lg(a), {x, w, b}, proj);
          auto want = run_with_grads(unfused_lg(a), {x, w, b}, proj);
          check_same(got[0], want[0], "y");
          check_same(got[1], want[1], "grad x");
          check_same(got[2], want[2], "grad weight");
          check_same(got[3], want[3], "grad bias");
        }
      }
    }
  }
}

TEST_CASE("linear_gelu: 1-D input, zero rows, and inputs that do not require grad", "[fused][ops]") {
  Tensor x = rnd({9}), w = rnd({4, 9}), b = rnd({4});
  check_same(linear_gelu(x, w, b, GeluApprox::tanh), linear_gelu_ref(x, w, b, GeluApprox::tanh), "1-D x");
  Tensor y0 = linear_gelu(rnd({0, 9}), w, b, GeluApprox::tanh);
  CHECK(y0.shape() == Shape{0, 4});
  // Only the weight requires grad: x gets none, the weight's is the composition's.
  Tensor wl = leaf_copy(w), wl2 = leaf_copy(w), x2 = rnd({3, 9});
  sum(linear_gelu(x2, wl, b, GeluApprox::none)).backward();
  sum(linear_gelu_ref(x2, wl2, b, GeluApprox::none)).backward();
  check_same(wl.grad(), wl2.grad(), "grad weight");
  // No grad anywhere: no graph.
  CHECK_FALSE(linear_gelu(x, w, b, GeluApprox::tanh).requires_grad());
  {
    NoGradGuard ng;
    CHECK_FALSE(linear_gelu(x, wl, b, GeluApprox::tanh).requires_grad());
  }
}

TEST_CASE("linear_gelu passes an f64 gradcheck of every input", "[fused][gradcheck]") {
  for (GeluApprox a : kApprox) {
    for (bool with_bias : {true, false}) {
      INFO(approx_name(a) << (with_bias ? " with bias" : " no bias"));
      Tensor x = strided3(2, 3, 5).detach().requires_grad_(true);
      Tensor w = transposed(4, 5).detach().requires_grad_(true);  // a non-contiguous weight too
      std::vector<Tensor> in{x, w};
      if (with_bias) in.push_back(rnd({4}).requires_grad_(true));
      GradcheckResult r = gradcheck(
          [a, with_bias](const std::vector<Tensor>& v) { return linear_gelu(v[0], v[1], with_bias ? v[2] : Tensor(), a); },
          in);
      INFO(r.report);
      CHECK(r.ok);
    }
  }
}

TEST_CASE("linear_gelu in f32, f16, bf16 matches the f64 composition", "[fused][ops]") {
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (GeluApprox a : kApprox) {
      INFO(dtype_name(dt) << " " << approx_name(a));
      Tensor x = rnd({37, 29}, DType::f64), w = rnd({19, 29}, DType::f64, -0.3, 0.3), b = rnd({19}, DType::f64);
      // The low-precision run sees the inputs rounded to dt; the reference uses the same rounded values in f64.
      Tensor xr = x.to(dt).to(DType::f64), wr = w.to(dt).to(DType::f64), br = b.to(dt).to(DType::f64);
      std::vector<Tensor> proj64{rnd({37, 19})};
      std::vector<Tensor> proj{proj64[0].to(dt)};
      auto got = run_with_grads(fused_lg(a), {x.to(dt), w.to(dt), b.to(dt)}, proj);
      auto ref = run_with_grads(unfused_lg(a), {xr, wr, br}, {proj[0].to(DType::f64)});
      CHECK(got[0].dtype() == dt);
      CHECK(rel_err(got[0], ref[0]) < bound(dt));
      for (int i = 1; i <= 3; ++i) {
        INFO("gradient of input " << i - 1);
        CHECK(rel_err(got[i], ref[i]) < 4 * bound(dt));
      }
    }
  }
}

TEST_CASE("linear_gelu rejects bad input with errors naming the op", "[fused][errors]") {
  Tensor x = rnd({3, 4}), w = rnd({5, 4}), b = rnd({5});
  CHECK_THROWS_WITH_ALL(linear_gelu(Tensor(), w, b, GeluApprox::tanh), ValueError, "linear_gelu", "input");
  CHECK_THROWS_WITH_ALL(linear_gelu(x, Tensor(), b, GeluApprox::tanh), ValueError, "linear_gelu", "weight");
  CHECK_THROWS_WITH_ALL(linear_gelu(x, rnd({5, 3}), b, GeluApprox::tanh), ShapeError, "linear_gelu", "[3, 4]",
                        "[5, 3]", "expected input.size(-1) == weight.size(1)");
  CHECK_THROWS_WITH_ALL(linear_gelu(x, rnd({5, 4, 1}), b, GeluApprox::tanh), ShapeError, "linear_gelu", "2 dims");
  CHECK_THROWS_WITH_ALL(linear_gelu(x, w, rnd({6}), GeluApprox::tanh), ShapeError, "linear_gelu", "bias", "[6]",
                        "[5]");
  CHECK_THROWS_WITH_ALL(linear_gelu(x.to(DType::f32), w, b, GeluApprox::tanh), DTypeError, "linear_gelu", "f32",
                        "f64");
  CHECK_THROWS_WITH_ALL(linear_gelu(x, w, b.to(DType::f32), GeluApprox::tanh), DTypeError, "linear_gelu", "bias");
  CHECK_THROWS_WITH_ALL(linear_gelu(x.to(DType::i64), w.to(DType::i64), Tensor(), GeluApprox::tanh), DTypeError,
                        "linear_gelu", "i64");
  CHECK_THROWS_WITH_ALL(linear_gelu(full({}, 1.0, DType::f64), w, b, GeluApprox::tanh), ShapeError, "linear_gelu",
                        "at least 1 dim");
  if (ciuic::test::dut_is_gpu())
    CHECK_THROWS_WITH_ALL(linear_gelu(x, to_dut(w), b, GeluApprox::tanh), DeviceError, "linear_gelu", "cpu", "cuda");
}

// ------------------------------------------------------------------ add_layer_norm

TEST_CASE("add_layer_norm on the CPU is bit-identical to (layer_norm(x + r), x + r), forward and backward",
          "[fused][ops]") {
  for (DType dt : {DType::f64, DType::f32, DType::f16, DType::bf16}) {
    for (bool affine : {true, false}) {
      for (bool noncontig : {false, true}) {
        // Which outputs the loss uses: both, only y, only the sum.
        for (int use : {0, 1, 2}) {
          INFO(dtype_name(dt) << (affine ? " affine" : " no affine") << (noncontig ? " strided" : "") << " use "
                              << use);
          Tensor x = noncontig ? strided3(2, 3, 11, dt) : rnd({2, 3, 11}, dt);
          Tensor r = noncontig ? rnd({11, 3, 2}, dt).permute({2, 1, 0}) : rnd({2, 3, 11}, dt);
          Tensor w = affine ? rnd({11}, dt) : Tensor(), b = affine ? rnd({11}, dt) : Tensor();
          std::vector<Tensor> proj{use == 2 ? Tensor() : rnd({2, 3, 11}, dt), use == 1 ? Tensor() : rnd({2, 3, 11}, dt)};
          auto got = run_with_grads(fused_aln(1e-5), {x, r, w, b}, proj);
          auto want = run_with_grads(unfused_aln(1e-5), {x, r, w, b}, proj);
          check_same(got[0], want[0], "y");
          check_same(got[1], want[1], "sum");
          check_same(got[2], want[2], "grad x");
          check_same(got[3], want[3], "grad residual");
          if (use == 2 && affine) {
            // Only the sum reaches the loss: the composition never runs layer_norm's backward, so
            // weight and bias get no gradient; the fused node runs (its y output gets zeros) and
            // gives them exact zeros.
            CHECK_FALSE(want[4].defined());
            check_same(got[4], zeros({11}, dt), "grad weight");
            check_same(got[5], zeros({11}, dt), "grad bias");
          } else {
            check_same(got[4], want[4], "grad weight");
            check_same(got[5], want[5], "grad bias");
          }
        }
      }
    }
  }
}

TEST_CASE("add_layer_norm passes an f64 gradcheck of every input through both outputs", "[fused][gradcheck]") {
  for (bool affine : {true, false}) {
    INFO((affine ? "weight and bias" : "no weight, no bias"));
    Tensor x = strided3(3, 2, 7).detach().requires_grad_(true);
    Tensor r = rnd({7, 2, 3}).permute({2, 1, 0}).detach().requires_grad_(true);
    std::vector<Tensor> in{x, r};
    if (affine) {
      in.push_back(rnd({7}).requires_grad_(true));
      in.push_back(rnd({7}).requires_grad_(true));
    }
    Tensor coef = rnd({3, 2, 7});  // the sum's weight in the checked output (a constant)
    GradcheckResult res = gradcheck(
        [affine, coef](const std::vector<Tensor>& v) {
          auto [y, s] = add_layer_norm(v[0], v[1], affine ? v[2] : Tensor(), affine ? v[3] : Tensor(), 1e-5);
          return add(y, mul(s, coef));
        },
        in);
    INFO(res.report);
    CHECK(res.ok);
    // Each output on its own as well.
    for (int which : {0, 1}) {
      GradcheckResult one = gradcheck(
          [affine, which](const std::vector<Tensor>& v) {
            auto [y, s] = add_layer_norm(v[0], v[1], affine ? v[2] : Tensor(), affine ? v[3] : Tensor(), 1e-5);
            return which == 0 ? y : s;
          },
          in);
      INFO("output " << which << ": " << one.report);
      CHECK(one.ok);
    }
  }
}

TEST_CASE("add_layer_norm in f32, f16, bf16 matches the f64 composition", "[fused][ops]") {
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    INFO(dtype_name(dt));
    Tensor x = rnd({37, 129}), r = rnd({37, 129}), w = rnd({129}), b = rnd({129});
    std::vector<Tensor> proj{rnd({37, 129}).to(dt), rnd({37, 129}).to(dt)};
    auto got = run_with_grads(fused_aln(1e-5), {x.to(dt), r.to(dt), w.to(dt), b.to(dt)}, proj);
    auto rounded = [dt](const Tensor& t) { return t.to(dt).to(DType::f64); };
    // The reference: the rounded inputs in f64, with the sum rounded to dt as the op's sum is.
    MultiFn ref_fn = [dt](const std::vector<Tensor>& in) {
      Tensor s = add(in[0], in[1]).to(dt).to(DType::f64);
      return std::vector<Tensor>{layer_norm(s, {in[0].size(-1)}, in[2], in[3], 1e-5), add(in[0], in[1])};
    };
    auto ref = run_with_grads(ref_fn, {rounded(x), rounded(r), rounded(w), rounded(b)},
                              {proj[0].to(DType::f64), proj[1].to(DType::f64)});
    CHECK(rel_err(got[0], ref[0]) < bound(dt));
    CHECK(rel_err(got[1], ref[1]) < bound(dt));
    for (int i = 2; i <= 5; ++i) {
      INFO("gradient of input " << i - 2);
      CHECK(rel_err(got[i], ref[i]) < 4 * bound(dt));
    }
  }
}

TEST_CASE("add_layer_norm rejects bad input with errors naming the op", "[fused][errors]") {
  Tensor x = rnd({3, 4}), r = rnd({3, 4}), w = rnd({4}), b = rnd({4});
  CHECK_THROWS_WITH_ALL(add_layer_norm(Tensor(), r, w, b, 1e-5), ValueError, "add_layer_norm", "input");
  CHECK_THROWS_WITH_ALL(add_layer_norm(x, Tensor(), w, b, 1e-5), ValueError, "add_layer_norm", "residual");
  CHECK_THROWS_WITH_ALL(add_layer_norm(x, rnd({1, 4}), w, b, 1e-5), ShapeError, "add_layer_norm", "[3, 4]", "[1, 4]",
                        "same shape");
  CHECK_THROWS_WITH_ALL(add_layer_norm(x, r, rnd({5}), b, 1e-5), ShapeError, "add_layer_norm", "weight", "[5]");
  CHECK_THROWS_WITH_ALL(add_layer_norm(x, r, w, rnd({2, 2}), 1e-5), ShapeError, "add_layer_norm", "bias", "[2, 2]");
  CHECK_THROWS_WITH_ALL(add_layer_norm(x, r.to(DType::f32), w, b, 1e-5), DTypeError, "add_layer_norm", "f32", "f64");
  CHECK_THROWS_WITH_ALL(add_layer_norm(x, r, w.to(DType::f16), b, 1e-5), DTypeError, "add_layer_norm", "f16");
  CHECK_THROWS_WITH_ALL(add_layer_norm(x.to(DType::i32), r.to(DType::i32), Tensor(), Tensor(), 1e-5), DTypeError,
                        "add_layer_norm", "i32");
  CHECK_THROWS_WITH_ALL(add_layer_norm(x, r, w, b, 0.0), ValueError, "add_layer_norm", "eps");
  CHECK_THROWS_WITH_ALL(add_layer_norm(full({}, 1.0, DType::f64), full({}, 1.0, DType::f64), Tensor(), Tensor(), 1e-5),
                        ShapeError, "add_layer_norm", "at least 1 dim");
  if (ciuic::test::dut_is_gpu())
    CHECK_THROWS_WITH_ALL(add_layer_norm(x, to_dut(r), w, b, 1e-5), DeviceError, "add_layer_norm", "cpu", "cuda");
}

// ------------------------------------------------------------------ checkpoint, autocast, loss scaling

TEST_CASE("fused ops inside checkpoint segments give the composition's gradients", "[fused][checkpoint]") {
  for (bool selective : {false, true}) {
    for (bool fused : {true, false}) {
      INFO((selective ? "selective" : "plain") << " segment, " << (fused ? "fused" : "composition"));
      Tensor x = rnd({4, 6}), r = rnd({4, 6}), lw = rnd({6}), lb = rnd({6});
      Tensor w1 = rnd({10, 6}, DType::f64, -0.5, 0.5), b1 = rnd({10}), w2 = rnd({6, 10}, DType::f64, -0.5, 0.5);
      // A pre-LN MLP sub-block: (h, s) = add_layer_norm(x, r); out = s + gelu(linear(h, w1, b1)) W2^T.
      auto block = [fused](const std::vector<Tensor>& v) {
        auto [h, s] = fused ? add_layer_norm(v[0], v[1], v[2], v[3], 1e-5) : add_layer_norm_ref(v[0], v[1], v[2], v[3], 1e-5);
        Tensor a = fused ? linear_gelu(h, v[4], v[5], GeluApprox::tanh) : linear_gelu_ref(h, v[4], v[5], GeluApprox::tanh);
        return std::vector<Tensor>{add(s, linear(a, v[6]))};
      };
      CheckpointOptions opts = selective ? CheckpointOptions::selective() : CheckpointOptions{};
      MultiFn in_segment = [&](const std::vector<Tensor>& v) { return checkpoint(block, v, opts); };
      std::vector<Tensor> proj{rnd({4, 6})};
      auto got = run_with_grads(in_segment, {x, r, lw, lb, w1, b1, w2}, proj);
      auto want = run_with_grads(block, {x, r, lw, lb, w1, b1, w2}, proj);
      for (std::size_t i = 0; i < got.size(); ++i) check_same(got[i], want[i], "output/gradient " + std::to_string(i));
    }
  }
}

TEST_CASE("fused ops under autocast and the loss scaler match the composition", "[fused][amp]") {
  for (DType half : {DType::f16, DType::bf16}) {
    INFO("autocast " << dtype_name(half));
    // f32 parameters, an f32 residual stream, the MLP's matmuls in the autocast dtype.
    Tensor x = rnd({5, 8}, DType::f32), r = rnd({5, 8}, DType::f32);
    Tensor lw = rnd({8}, DType::f32), lb = rnd({8}, DType::f32);
    Tensor w1 = rnd({12, 8}, DType::f32, -0.5, 0.5), b1 = rnd({12}, DType::f32), w2 = rnd({8, 12}, DType::f32, -0.5, 0.5);
    Tensor target = rnd({5, 8}, DType::f32), wa = rnd({8, 8}, DType::f32, -0.5, 0.5);
    std::vector<std::vector<Tensor>> grads, params_after;
    double scale_after[2] = {0, 0};
    for (bool fused : {true, false}) {
      std::vector<Tensor> p{leaf_copy(lw), leaf_copy(lb), leaf_copy(w1), leaf_copy(b1), leaf_copy(w2)};
      optim::SGD opt(p, 0.1, 0.9);
      amp::LossScaler scaler(amp::LossScalerOptions().init_scale(1024));
      Tensor loss;
      {
        amp::AutocastGuard autocast(half);
        // The attention output arrives in the autocast dtype and meets the f32 residual.
        Tensor attn_out = linear(x, wa);
        auto [h, s] = fused ? add_layer_norm(attn_out, r, p[0], p[1], 1e-5)
                            : add_layer_norm_ref(attn_out, r, p[0], p[1], 1e-5);
        CHECK(h.dtype() == DType::f32);  // layer_norm runs in f32 under autocast
        CHECK(s.dtype() == DType::f32);  // f16/bf16 + f32 promotes to f32
        Tensor a = fused ? linear_gelu(h, p[2], p[3], GeluApprox::tanh) : linear_gelu_ref(h, p[2], p[3], GeluApprox::tanh);
        CHECK(a.dtype() == half);
        Tensor out = add(s, linear(a, p[4]));
        loss = mse_loss(out, target);
      }
      scaler.scale(loss).backward();
      std::vector<Tensor> g;
      for (const Tensor& t : p) g.push_back(t.grad().clone());
      grads.push_back(g);
      scaler.unscale_(opt);
      scaler.step(opt);
      scaler.update();
      CHECK_FALSE(scaler.step_skipped());
      scale_after[fused ? 0 : 1] = scaler.get_scale();
      std::vector<Tensor> after;
      for (const Tensor& t : p) after.push_back(t.detach().clone());
      params_after.push_back(after);
    }
    for (std::size_t i = 0; i < grads[0].size(); ++i) {
      check_same(grads[0][i], grads[1][i], "scaled gradient " + std::to_string(i));
      check_same(params_after[0][i], params_after[1][i], "parameter after the step " + std::to_string(i));
    }
    CHECK(scale_after[0] == scale_after[1]);
  }
}

// ------------------------------------------------------------------ [cuda]

namespace {
// Fills the caching allocator's free blocks of the device under test with NaN:
// allocates NaN tensors of the given element counts and frees them, so that the
// op's outputs (same sizes, same dtype) come back out of those blocks; an output
// element the op forgets to write then reads NaN and fails the comparison.
void poison_free_blocks(const std::vector<std::int64_t>& numels, DType dt) {
  std::vector<Tensor> held;
  for (std::int64_t n : numels) held.push_back(full({n}, NAN, TensorOptions(dt).device(dut())));
  for (std::int64_t n : numels) held.push_back(full({n}, NAN, TensorOptions(DType::f32).device(dut())));
}
}  // namespace

TEST_CASE("linear_gelu on the device under test matches the CPU reference", "[cuda][fused]") {
  INFO("device under test: " << ciuic::test::dut_name());
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    for (GeluApprox a : kApprox) {
      for (bool with_bias : {true, false}) {
        for (bool noncontig : {false, true}) {
          INFO(dtype_name(dt) << " " << approx_name(a) << (with_bias ? " bias" : " no bias")
                              << (noncontig ? " transposed x, strided weight" : ""));
          const std::int64_t rows = 37, in = 129, out = 67;  // odd sizes: not multiples of 8 (aux fallback)
          Tensor x = noncontig ? transposed(rows, in, dt) : rnd({rows, in}, dt);
          Tensor w = noncontig ? rnd({out, 2 * in}, dt, -0.2, 0.2).slice(1, 0, 2 * in, 2) : rnd({out, in}, dt, -0.2, 0.2);
          Tensor b = with_bias ? rnd({out}, dt) : Tensor();
          Tensor proj = rnd({rows, out}, dt);
          // Reference: the composition on the CPU, in f64 from the same (rounded) values.
          auto ref = run_with_grads(unfused_lg(a),
                                    {x.to(DType::f64), w.to(DType::f64), with_bias ? b.to(DType::f64) : Tensor()},
                                    {proj.to(DType::f64)});
          // The same layouts on the device: x transposed, the weight every other column of a wider tensor.
          Tensor xd = noncontig ? to_dut(x.t().contiguous()).t() : to_dut(x);
          Tensor wd = noncontig ? to_dut(stack({w, w}, 2)).select(2, 1) : to_dut(w);
          Tensor bd = with_bias ? to_dut(b) : Tensor();
          CHECK(xd.is_contiguous() == !noncontig);
          CHECK(wd.is_contiguous() == !noncontig);
          poison_free_blocks({rows * out, rows * out, rows * in, out * in}, dt);
          auto got = run_with_grads(fused_lg(a), {xd, wd, bd}, {to_dut(proj)});
          CHECK(got[0].device() == dut());
          // One extra rounding of the pre-activation in the low-precision epilogue (see fused_linear.cpp).
          CHECK(rel_err(got[0], ref[0]) < 2 * bound(dt));
          for (int i = 1; i <= 3; ++i) {
            INFO("gradient of input " << i - 1);
            if (!ref[i].defined()) continue;
            CHECK(rel_err(got[i], ref[i]) < 8 * bound(dt));
          }
        }
      }
    }
  }
}

TEST_CASE("add_layer_norm on the device under test matches the CPU reference", "[cuda][fused]") {
  INFO("device under test: " << ciuic::test::dut_name());
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    for (bool affine : {true, false}) {
      for (bool noncontig : {false, true}) {
        INFO(dtype_name(dt) << (affine ? " affine" : "") << (noncontig ? " strided inputs" : ""));
        const std::int64_t rows = 37, cols = 129;
        Tensor x = rnd({rows, cols}, dt), r = rnd({rows, cols}, dt);
        Tensor w = affine ? rnd({cols}, dt) : Tensor(), b = affine ? rnd({cols}, dt) : Tensor();
        std::vector<Tensor> proj{rnd({rows, cols}, dt), rnd({rows, cols}, dt)};
        // Reference: f64 from the same values, the sum rounded to dt as the op's is.
        MultiFn ref_fn = [dt](const std::vector<Tensor>& in) {
          Tensor s = add(in[0], in[1]).to(dt).to(DType::f64);
          return std::vector<Tensor>{layer_norm(s, {in[0].size(-1)}, in[2], in[3], 1e-5), add(in[0], in[1])};
        };
        auto f64 = [](const Tensor& t) { return t.defined() ? t.to(DType::f64) : t; };
        auto ref = run_with_grads(ref_fn, {f64(x), f64(r), f64(w), f64(b)}, {f64(proj[0]), f64(proj[1])});
        // Non-contiguous on the device: transposed storage, and every other column.
        Tensor xd = noncontig ? to_dut(x.t().contiguous()).t() : to_dut(x);
        Tensor rd = noncontig ? to_dut(stack({r, r}, 2)).select(2, 1) : to_dut(r);
        CHECK(xd.is_contiguous() == !noncontig);
        CHECK(rd.is_contiguous() == !noncontig);
        poison_free_blocks({rows * cols, rows * cols, rows, rows, rows * cols, cols, cols}, dt);
        auto got = run_with_grads(fused_aln(1e-5), {xd, rd, affine ? to_dut(w) : Tensor(), affine ? to_dut(b) : Tensor()},
                                  {to_dut(proj[0]), to_dut(proj[1])});
        CHECK(got[0].device() == dut());
        CHECK(got[1].device() == dut());
        CHECK(rel_err(got[0], ref[0]) < 2 * bound(dt));
        CHECK(rel_err(got[1], ref[1]) < bound(dt));
        for (int i = 2; i <= 5; ++i) {
          INFO("gradient of input " << i - 2);
          if (!ref[i].defined()) continue;
          CHECK(rel_err(got[i], ref[i]) < 8 * bound(dt));
        }
      }
    }
  }
}
