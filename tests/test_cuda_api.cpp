// [cuda] The API ops of issue 11 that run on CUDA through the existing kernels
// (comparisons including ne, logical ops, equal/allclose, promotion casts,
// in-place arithmetic, basic indexing, randint) against the CPU on fresh random
// inputs with nan, odd sizes and non-contiguous views; the CPU-only ops raise
// NotImplementedError naming the op. Without a GPU every case skips.
#include <cmath>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;
using namespace ciuic::indexing;

namespace {
const Device kGpu = Device::cuda(0);
std::vector<std::uint8_t> mask_values(const Tensor& t) {
  REQUIRE(t.dtype() == DType::boolean);
  return t.to(Device::cpu()).to(DType::u8).to_vector<std::uint8_t>();
}
// Random values with nans and repeats, as a non-contiguous (transposed) view.
Tensor poisoned(std::int64_t r, std::int64_t c, std::uint64_t seed) {
  Generator g{seed, 0};
  Tensor v = floor_divide(uniform({c, r}, -4, 4, DType::f64, &g), 0.5) * 0.5;  // repeats for ==
  v.index_put_({v > 3.2}, NAN);
  return v.t();
}
}  // namespace

TEST_CASE("comparisons, logical ops, equal and allclose on CUDA match the CPU", "[cuda][api]") {
  CIUIC_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::f16, DType::f64, DType::i64}) {
    INFO("dtype " << dtype_name(dt));
    Tensor a = poisoned(7, 13, 1).to(dt), b = poisoned(1, 13, 2).to(dt);  // b broadcasts over rows
    Tensor ga = a.to(kGpu), gb = b.to(kGpu);
    CHECK(mask_values(ga == gb) == mask_values(a == b));
    CHECK(mask_values(ga != gb) == mask_values(a != b));
    CHECK(mask_values(ga < gb) == mask_values(a < b));
    CHECK(mask_values(ga <= gb) == mask_values(a <= b));
    CHECK(mask_values(ga > 0.5) == mask_values(a > 0.5));
    CHECK(mask_values(ga >= 1) == mask_values(a >= 1));
    CHECK(mask_values(logical_and(ga, gb)) == mask_values(logical_and(a, b)));
    CHECK(mask_values(logical_or(ga > 0, gb > 0)) == mask_values(logical_or(a > 0, b > 0)));
    CHECK(mask_values(logical_xor(ga > 0, gb > 0)) == mask_values(logical_xor(a > 0, b > 0)));
    CHECK(mask_values(!ga) == mask_values(!a));
    CHECK(equal(ga, ga.clone()) == equal(a, a.clone()));
    CHECK(allclose(ga, ga * 1.0, 1e-5, 1e-8, true));
  }
}

TEST_CASE("promotion, in-place ops, basic indexing and randint on CUDA", "[cuda][api]") {
  CIUIC_REQUIRE_GPU();
  Tensor i = arange(1001).to(kGpu);
  Tensor f = i * 2.5;
  CHECK(f.dtype() == DType::f32);
  CHECK(equal(f.to(Device::cpu()), arange(1001) * 2.5));
  CHECK(equal((i / 2).to(Device::cpu()), arange(1001) / 2));
  CHECK(sum(i > 500).item<std::int64_t>() == 500);
  Tensor x = randn({5, 7}).to(kGpu), xc = x.to(Device::cpu());
  x += 1.0;
  x.mul_(x.index({Slice(), 0, None}));
  xc += 1.0;
  xc.mul_(xc.index({Slice(), 0, None}));
  CHECK(allclose(x.to(Device::cpu()), xc, 1e-6, 1e-6));
  Generator g1{3, 0}, g2{3, 0};
  CHECK(equal(randint(-5, 9, {4097}, DType::i64, &g1), randint(-5, 9, {4097}, TensorOptions(DType::i64).device(kGpu), &g2).to(Device::cpu())));
  CHECK_THROWS_WITH_ALL(sort(x), NotImplementedError, "sort");
  CHECK_THROWS_WITH_ALL(gather(x, 1, zeros({5, 1}, DType::i64).to(kGpu)), NotImplementedError, "gather");
  CHECK_THROWS_WITH_ALL(floor_divide(x, 2.0), NotImplementedError, "floor_divide");
  CHECK_THROWS_WITH_ALL(masked_select(x, x > 0), NotImplementedError, "masked_select");
}
