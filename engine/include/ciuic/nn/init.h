// Parameter initialisers (PyTorch's torch.nn.init formulas). Each writes into t
// in place without recording (under NoGradGuard, so parameters that require
// grad are fine) and returns t. Random ones draw a fresh tensor from the
// counter-based generator (gen, or the default generator) in t's dtype (f32 for
// f16/bf16) on t's device, then copy_ it in: the values depend only on the
// generator state and the shape, not on t's strides.
#pragma once

#include <cstdint>
#include <utility>

#include "ciuic/random.h"
#include "ciuic/tensor.h"

namespace ciuic::nn::init {

enum class Nonlinearity { linear, conv, sigmoid, tanh, relu, leaky_relu, selu };
enum class FanMode { fan_in, fan_out };

// Recommended gain: 1 for linear/conv/sigmoid, 5/3 tanh, sqrt(2) relu,
// sqrt(2 / (1 + slope^2)) leaky_relu (param = negative slope), 3/4 selu.
double calculate_gain(Nonlinearity nl, double param = 0.01);

// (fan_in, fan_out) of a weight with >= 2 dims: (size(1), size(0)) times the
// product of the remaining dims (the receptive field). ValueError for < 2 dims.
std::pair<std::int64_t, std::int64_t> calculate_fan_in_and_fan_out(const Tensor& t);

Tensor uniform_(Tensor t, double lo = 0.0, double hi = 1.0, Generator* gen = nullptr);
Tensor normal_(Tensor t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
Tensor constant_(Tensor t, double value);
Tensor zeros_(Tensor t);
Tensor ones_(Tensor t);

// U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).
Tensor xavier_uniform_(Tensor t, double gain = 1.0, Generator* gen = nullptr);
// N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
Tensor xavier_normal_(Tensor t, double gain = 1.0, Generator* gen = nullptr);
// U(-b, b) with b = sqrt(3) * gain / sqrt(fan), gain = calculate_gain(nonlinearity, a).
// Linear and Conv2d use a = sqrt(5), leaky_relu, fan_in: b = 1 / sqrt(fan_in).
Tensor kaiming_uniform_(Tensor t, double a = 0.0, FanMode mode = FanMode::fan_in,
                        Nonlinearity nonlinearity = Nonlinearity::leaky_relu, Generator* gen = nullptr);
// N(0, std^2) with std = gain / sqrt(fan).
Tensor kaiming_normal_(Tensor t, double a = 0.0, FanMode mode = FanMode::fan_in,
                       Nonlinearity nonlinearity = Nonlinearity::leaky_relu, Generator* gen = nullptr);

}  // namespace ciuic::nn::init
