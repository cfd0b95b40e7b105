// nn::init: in-place initialisers built on the random factories and copy_.
#include "ciuic/nn/init.h"

#include <cmath>

#include "ciuic/autograd.h"

namespace ciuic::nn::init {

namespace {

void check_target(const char* op, const Tensor& t) {
  CIUIC_CHECK(t.defined(), ValueError, op, "undefined tensor; expected a tensor to initialise");
  CIUIC_CHECK(is_floating(t.dtype()), DTypeError, op, "tensor ", describe(t), "; expected a floating dtype");
}

// The dtype random values are drawn in: f64 stays f64, everything else draws f32.
TensorOptions draw_options(const Tensor& t) {
  return TensorOptions(t.dtype() == DType::f64 ? DType::f64 : DType::f32).device(t.device());
}

Tensor write(Tensor t, const Tensor& values) {
  NoGradGuard no_grad;
  t.copy_(values);
  return t;
}

std::int64_t fan(const char* op, const Tensor& t, FanMode mode) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  std::int64_t f = mode == FanMode::fan_in ? fan_in : fan_out;
  CIUIC_CHECK(f > 0, ValueError, op, "tensor ", describe(t), " has fan ", f, "; expected a non-empty weight");
  return f;
}

}  // namespace

double calculate_gain(Nonlinearity nl, double param) {
  switch (nl) {
    case Nonlinearity::linear:
    case Nonlinearity::conv:
    case Nonlinearity::sigmoid: return 1.0;
    case Nonlinearity::tanh: return 5.0 / 3.0;
    case Nonlinearity::relu: return std::sqrt(2.0);
    case Nonlinearity::leaky_relu: return std::sqrt(2.0 / (1.0 + param * param));
    case Nonlinearity::selu: return 3.0 / 4.0;
  }
  detail::fail<ValueError>("calculate_gain", "unknown nonlinearity");
}

std::pair<std::int64_t, std::int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  const char* op = "calculate_fan_in_and_fan_out";
  CIUIC_CHECK(t.defined(), ValueError, op, "undefined tensor; expected a weight");
  CIUIC_CHECK(t.dim() >= 2, ValueError, op, "tensor ", describe(t),
              " has fewer than 2 dims; expected a weight of shape (out, in, ...)");
  std::int64_t receptive = 1;
  for (std::int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

Tensor uniform_(Tensor t, double lo, double hi, Generator* gen) {
  check_target("uniform_", t);
  CIUIC_CHECK(lo <= hi, ValueError, "uniform_", "lo ", lo, " > hi ", hi, "; expected lo <= hi");
  return write(t, uniform(t.shape(), lo, hi, draw_options(t), gen));
}

Tensor normal_(Tensor t, double mean, double std, Generator* gen) {
  check_target("normal_", t);
  CIUIC_CHECK(std >= 0, ValueError, "normal_", "std ", std, "; expected std >= 0");
  return write(t, normal(t.shape(), mean, std, draw_options(t), gen));
}

Tensor constant_(Tensor t, double value) {
  check_target("constant_", t);
  NoGradGuard no_grad;
  t.fill_(value);
  return t;
}

Tensor zeros_(Tensor t) { return constant_(t, 0.0); }
Tensor ones_(Tensor t) { return constant_(t, 1.0); }

Tensor xavier_uniform_(Tensor t, double gain, Generator* gen) {
  check_target("xavier_uniform_", t);
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  CIUIC_CHECK(fan_in + fan_out > 0, ValueError, "xavier_uniform_", "tensor ", describe(t),
              " is empty; expected a non-empty weight");
  double a = gain * std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  return write(t, uniform(t.shape(), -a, a, draw_options(t), gen));
}

Tensor xavier_normal_(Tensor t, double gain, Generator* gen) {
  check_target("xavier_normal_", t);
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  CIUIC_CHECK(fan_in + fan_out > 0, ValueError, "xavier_normal_", "tensor ", describe(t),
              " is empty; expected a non-empty weight");
  double sd = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  return write(t, normal(t.shape(), 0.0, sd, draw_options(t), gen));
}

Tensor kaiming_uniform_(Tensor t, double a, FanMode mode, Nonlinearity nonlinearity, Generator* gen) {
  check_target("kaiming_uniform_", t);
  double sd = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan("kaiming_uniform_", t, mode)));
  double bound = std::sqrt(3.0) * sd;
  return write(t, uniform(t.shape(), -bound, bound, draw_options(t), gen));
}

Tensor kaiming_normal_(Tensor t, double a, FanMode mode, Nonlinearity nonlinearity, Generator* gen) {
  check_target("kaiming_normal_", t);
  double sd = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan("kaiming_normal_", t, mode)));
  return write(t, normal(t.shape(), 0.0, sd, draw_options(t), gen));
}

}  // namespace ciuic::nn::init
