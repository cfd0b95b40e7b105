// [cuda] matmul and linear through cuBLASLt vs the CPU reference: forward and
// backward, batched with broadcasting, odd sizes, non-contiguous inputs, per-dtype
// bounds on ||out - ref|| / ||ref||. Without a GPU the CPU is the device under test.
#include <cmath>

#include "ciuic/ciuic.h"
#include "device_under_test.h"
#include "test_util.h"

using namespace ciuic;
using ciuic::test::dut;
using ciuic::test::dut_is_gpu;
using ciuic::test::to_dut;

namespace {

double rel_err(const Tensor& got, const Tensor& ref) {
  auto g = got.to(Device::cpu()).to_vector<double>(), r = ref.to_vector<double>();
  double num = 0, den = 0;
  for (std::size_t i = 0; i < r.size(); ++i) {
    num += (g[i] - r[i]) * (g[i] - r[i]);
    den += r[i] * r[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

double bound(DType dt) { return dt == DType::f32 ? 1e-5 : 1e-2; }
}  // namespace

TEST_CASE("matmul on CUDA matches the CPU in f32, f16, bf16", "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  struct Case { Shape a, b; bool transpose_a; };
  const Case cases[] = {{{7, 33}, {33, 5}, false}, {{1, 1}, {1, 1}, false}, {{3, 7, 13}, {13, 9}, false},
                        {{2, 1, 5, 6}, {3, 6, 4}, false}, {{33, 7}, {33, 129}, true}, {{13}, {13, 3}, false}};
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (const Case& c : cases) {
      INFO(dtype_name(dt) << " " << shape_str(c.a) << " x " << shape_str(c.b));
      Tensor a = uniform(c.a, -1, 1, dt), b = uniform(c.b, -1, 1, dt);
      if (c.transpose_a) a = a.t();  // non-contiguous input
      Tensor ref = matmul(a.to(DType::f64), b.to(DType::f64));
      Tensor ga = to_dut(a).requires_grad_(), gb = to_dut(b).requires_grad_();
      Tensor out = matmul(ga, gb);
      CHECK(out.device() == dut());
      CHECK(rel_err(out, ref) < bound(dt));
      sum(out).backward();
      Tensor ca = a.to(DType::f64).requires_grad_(), cb = b.to(DType::f64).requires_grad_();
      sum(matmul(ca, cb)).backward();
      CHECK(rel_err(ga.grad(), ca.grad()) < bound(dt));
      CHECK(rel_err(gb.grad(), cb.grad()) < bound(dt));
    }
  }
}

TEST_CASE("linear on CUDA matches the CPU, with and without bias", "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (bool with_bias : {true, false}) {
      INFO(dtype_name(dt) << (with_bias ? " with bias" : " no bias"));
      Tensor x = uniform({3, 5, 31}, -1, 1, dt), w = uniform({17, 31}, -1, 1, dt);
      Tensor b = with_bias ? uniform({17}, -1, 1, dt) : Tensor();
      Tensor poison = full({3, 5, 17}, NAN, TensorOptions(dt).device(dut()));  // unwritten output would show as nan
      (void)poison;
      Tensor ref = linear(x.to(DType::f64), w.to(DType::f64), with_bias ? b.to(DType::f64) : Tensor());
      Tensor gx = to_dut(x).requires_grad_(), gw = to_dut(w).requires_grad_();
      Tensor gbias = with_bias ? to_dut(b).requires_grad_() : Tensor();
      Tensor out = linear(gx, gw, gbias);
      CHECK(rel_err(out, ref) < bound(dt));
      sum(mul(out, out)).backward();
      Tensor cx = x.to(DType::f64).requires_grad_(), cw = w.to(DType::f64).requires_grad_();
      Tensor cb = with_bias ? b.to(DType::f64).requires_grad_() : Tensor();
      Tensor cref = linear(cx, cw, cb);
      sum(mul(cref, cref)).backward();
      CHECK(rel_err(gx.grad(), cx.grad()) < 4 * bound(dt));
      CHECK(rel_err(gw.grad(), cw.grad()) < 4 * bound(dt));
      if (with_bias) CHECK(rel_err(gbias.grad(), cb.grad()) < 4 * bound(dt));
    }
  }
}

TEST_CASE("matmul and linear on operands that are not 16-byte aligned match the CPU", "[cuda][ops]") {
  INFO("device under test: " << ciuic::test::dut_name());
  // A row slice of an f16 matrix starts 2 bytes into its storage; a column slice
  // has an odd leading dimension. The GPU path must serve both (cuBLASLt, or its
  // aligned fallback), forward and backward.
  for (DType dt : {DType::f16, DType::bf16, DType::f32}) {
    INFO(dtype_name(dt));
    Tensor flat_a = uniform({33 * 29 + 1}, -1, 1, dt), flat_b = uniform({29 * 17 + 3}, -1, 1, dt);
    Tensor wide = uniform({33, 30}, -1, 1, dt);
    for (int variant = 0; variant < 2; ++variant) {
      INFO((variant == 0 ? "pointer offset by one element" : "odd leading dimension"));
      auto make_a = [&](const Tensor& fa, const Tensor& wd) {
        return variant == 0 ? fa.slice(0, 1, 33 * 29 + 1).view({33, 29}) : wd.narrow(1, 1, 29);
      };
      auto make_b = [&](const Tensor& fb) { return fb.slice(0, 3, 29 * 17 + 3).view({29, 17}); };
      Tensor ref = matmul(make_a(flat_a, wide).to(DType::f64), make_b(flat_b).to(DType::f64));
      Tensor ga = to_dut(flat_a).requires_grad_(), gw = to_dut(wide).requires_grad_(), gb = to_dut(flat_b).requires_grad_();
      Tensor out = matmul(make_a(ga, gw), make_b(gb));
      CHECK(out.device() == dut());
      CHECK(rel_err(out, ref) < bound(dt));
      sum(out).backward();
      Tensor ca = flat_a.to(DType::f64).requires_grad_(), cw = wide.to(DType::f64).requires_grad_();
      Tensor cb = flat_b.to(DType::f64).requires_grad_();
      sum(matmul(make_a(ca, cw), make_b(cb))).backward();
      CHECK(rel_err(gb.grad(), cb.grad()) < bound(dt));
      CHECK(rel_err(variant == 0 ? ga.grad() : gw.grad(), variant == 0 ? ca.grad() : cw.grad()) < bound(dt));
      // linear with an unaligned weight (rows of flat_b viewed as (17, 29)) and bias
      Tensor w = flat_b.slice(0, 3, 29 * 17 + 3).view({17, 29});
      Tensor bias = flat_a.slice(0, 1, 18);
      Tensor lref = linear(make_a(flat_a, wide).to(DType::f64), w.to(DType::f64), bias.to(DType::f64));
      Tensor lout = linear(make_a(to_dut(flat_a), to_dut(wide)), to_dut(flat_b).slice(0, 3, 29 * 17 + 3).view({17, 29}),
                           to_dut(flat_a).slice(0, 1, 18));
      CHECK(rel_err(lout, lref) < bound(dt));
    }
  }
}
