// [cuda] matmul and linear through cuBLASLt vs the CPU reference: forward and
// backward, batched with broadcasting, odd sizes, non-contiguous inputs, per-dtype
// bounds on ||out - ref|| / ||ref||. Skips without a GPU.
#include <cmath>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {
const Device kGpu = Device::cuda(0);

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
  CIUIC_REQUIRE_GPU();
  struct Case { Shape a, b; bool transpose_a; };
  const Case cases[] = {{{7, 33}, {33, 5}, false}, {{1, 1}, {1, 1}, false}, {{3, 7, 13}, {13, 9}, false},
                        {{2, 1, 5, 6}, {3, 6, 4}, false}, {{33, 7}, {33, 129}, true}, {{13}, {13, 3}, false}};
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (const Case& c : cases) {
      INFO(dtype_name(dt) << " " << shape_str(c.a) << " x " << shape_str(c.b));
      Tensor a = uniform(c.a, -1, 1, dt), b = uniform(c.b, -1, 1, dt);
      if (c.transpose_a) a = a.t();  // non-contiguous input
      Tensor ref = matmul(a.to(DType::f64), b.to(DType::f64));
      Tensor ga = a.to(kGpu).requires_grad_(), gb = b.to(kGpu).requires_grad_();
      Tensor out = matmul(ga, gb);
      CHECK(out.device() == kGpu);
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
  CIUIC_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (bool with_bias : {true, false}) {
      INFO(dtype_name(dt) << (with_bias ? " with bias" : " no bias"));
      Tensor x = uniform({3, 5, 31}, -1, 1, dt), w = uniform({17, 31}, -1, 1, dt);
      Tensor b = with_bias ? uniform({17}, -1, 1, dt) : Tensor();
      Tensor poison = full({3, 5, 17}, NAN, TensorOptions(dt).device(kGpu));  // unwritten output would show as nan
      (void)poison;
      Tensor ref = linear(x.to(DType::f64), w.to(DType::f64), with_bias ? b.to(DType::f64) : Tensor());
      Tensor gx = x.to(kGpu).requires_grad_(), gw = w.to(kGpu).requires_grad_();
      Tensor gbias = with_bias ? b.to(kGpu).requires_grad_() : Tensor();
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
