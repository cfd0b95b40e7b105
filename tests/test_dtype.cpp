// f16 / bf16 conversions: round-to-nearest-even, inf, nan, subnormals, overflow.
#include <cmath>
#include <cstring>
#include <limits>

#include "ciuic/ciuic.h"
#include "ciuic/philox.h"
#include "test_util.h"

using namespace ciuic;

namespace {
float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// Reference f32 -> f16 by exhaustive search over all finite halves: the nearest,
// ties to the even bit pattern. Slow but obviously right.
uint16_t ref_f16(float f) {
  if (std::isnan(f)) return 0x7e00;
  double x = f;
  uint16_t best = 0;
  double best_err = INFINITY;
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    double v = f16_bits_to_f32(static_cast<uint16_t>(h));
    double err = std::abs(std::abs(x) - v);
    if (err < best_err || (err == best_err && (h & 1) == 0)) {
      best_err = err;
      best = static_cast<uint16_t>(h);
    }
  }
  // beyond max half + half an ulp: inf
  if (std::abs(x) >= 65520.0) best = 0x7c00;
  return static_cast<uint16_t>(best | (std::signbit(f) ? 0x8000 : 0));
}
}  // namespace

TEST_CASE("f16 round trip of every half value is exact", "[tensor][dtype]") {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    uint16_t b = static_cast<uint16_t>(h);
    float f = f16_bits_to_f32(b);
    if (std::isnan(f)) {
      CHECK(std::isnan(f16_bits_to_f32(f32_to_f16_bits(f))));
      continue;
    }
    REQUIRE(f32_to_f16_bits(f) == b);
  }
}

TEST_CASE("f32 -> f16 rounds to nearest even like an exhaustive reference", "[tensor][dtype]") {
  Generator g{42, 0};
  // random f32s spread over the half range, the subnormal range, and ties
  std::vector<float> values = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.99f, 65520.0f, 1e-8f, 2.98e-8f, 2.9802322e-8f,
                               5.9604645e-8f, 6.1035156e-5f, 6.0975552e-5f, 1.0009765625f, 1.00048828125f,
                               1.00146484375f, -3.14159f};
  for (int i = 0; i < 300; ++i) {
    float u = philox_uniform(g.seed, g.advance(1));
    float e = std::ldexp(1.0f, static_cast<int>(u * 44) - 27);
    values.push_back((philox_uniform(g.seed, g.advance(1)) * 2 - 1) * e);
  }
  for (float f : values) {
    INFO("value " << f);
    CHECK(f32_to_f16_bits(f) == ref_f16(f));
  }
}

TEST_CASE("f16 special values and subnormals", "[tensor][dtype]") {
  CHECK(f32_to_f16_bits(INFINITY) == 0x7c00);
  CHECK(f32_to_f16_bits(-INFINITY) == 0xfc00);
  CHECK(std::isnan(f16_bits_to_f32(f32_to_f16_bits(NAN))));
  CHECK(f32_to_f16_bits(1e6f) == 0x7c00);                 // overflow -> inf
  CHECK(f16_bits_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f16_bits_to_f32(0x03ff) == std::ldexp(1023.0f, -24));
  CHECK(f32_to_f16_bits(std::ldexp(1.0f, -25)) == 0x0000);                  // tie -> even (0)
  CHECK(f32_to_f16_bits(std::ldexp(1.5f, -25)) == 0x0001);                  // above tie -> 1
  CHECK(f32_to_f16_bits(std::ldexp(3.0f, -25)) == 0x0002);                  // 1.5 ulp tie -> even (2)
  CHECK(f32_to_f16_bits(-0.0f) == 0x8000);
}

TEST_CASE("bf16 rounding, inf, nan", "[tensor][dtype]") {
  CHECK(f32_to_bf16_bits(1.0f) == 0x3f80);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1 + 2^-7: ties to even (1.0)
  CHECK(f32_to_bf16_bits(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);
  // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even): rounds up
  CHECK(f32_to_bf16_bits(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
  CHECK(f32_to_bf16_bits(INFINITY) == 0x7f80);
  CHECK(f32_to_bf16_bits(-INFINITY) == 0xff80);
  CHECK(std::isnan(bf16_bits_to_f32(f32_to_bf16_bits(NAN))));
  CHECK(std::isnan(bf16_bits_to_f32(f32_to_bf16_bits(bits_to_float(0x7f800001u)))));  // signalling nan stays nan
  CHECK(f32_to_bf16_bits(std::numeric_limits<float>::max()) == 0x7f80);                // rounds up to inf
  CHECK(bf16_bits_to_f32(0x0001) == bits_to_float(0x00010000u));                      // subnormal exact
}

TEST_CASE("tensor dtype conversions go through the same rounding", "[tensor][dtype]") {
  Tensor a = from_vector<float>({1.0f, 65504.0f, 70000.0f, 1e-8f, -2.5f, NAN}, {6});
  auto h = a.to(DType::f16).to_vector<float>();
  CHECK(h[0] == 1.0f);
  CHECK(h[1] == 65504.0f);
  CHECK(std::isinf(h[2]));
  CHECK(h[3] == 0.0f);
  CHECK(h[4] == -2.5f);
  CHECK(std::isnan(h[5]));
  auto b = a.to(DType::bf16).to_vector<double>();
  CHECK(b[0] == 1.0);
  CHECK(std::isnan(b[5]));
  auto i = from_vector<float>({1.7f, -2.7f, 3.0f}, {3}).to(DType::i64).to_vector<std::int64_t>();
  CHECK(i == std::vector<std::int64_t>{1, -2, 3});  // truncation toward zero, like C++ casts
  auto bools = from_vector<float>({0.0f, 0.5f, -1.0f}, {3}).to(DType::boolean).to_vector<std::uint8_t>();
  CHECK(bools == std::vector<std::uint8_t>{0, 1, 1});
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK(std::string(dtype_name(DType::boolean)) == "bool");
}
