// nn::Conv2d.
#include <cmath>

#include "ciuic/nn/init.h"
#include "ciuic/nn/layers.h"

namespace ciuic::nn {

Conv2d::Conv2d(const Conv2dOptions& o, Generator* gen) : Module("Conv2d"), options(o) {
  const char* op = "Conv2d";
  CIUIC_CHECK(o.in_channels_ > 0 && o.out_channels_ > 0, ValueError, op, "in_channels ", o.in_channels_,
              ", out_channels ", o.out_channels_, "; expected both > 0");
  CIUIC_CHECK(o.groups_ > 0 && o.in_channels_ % o.groups_ == 0 && o.out_channels_ % o.groups_ == 0, ValueError, op,
              "groups ", o.groups_, " with in_channels ", o.in_channels_, ", out_channels ", o.out_channels_,
              "; expected groups > 0 dividing both");
  for (int i = 0; i < 2; ++i) {
    CIUIC_CHECK(o.kernel_[i] > 0 && o.stride_[i] > 0 && o.dilation_[i] > 0 && o.padding_[i] >= 0, ValueError, op,
                "kernel_size (", o.kernel_[0], ", ", o.kernel_[1], "), stride (", o.stride_[0], ", ", o.stride_[1],
                "), padding (", o.padding_[0], ", ", o.padding_[1], "), dilation (", o.dilation_[0], ", ",
                o.dilation_[1], "); expected kernel_size, stride, dilation > 0 and padding >= 0");
  }
  weight = register_parameter(
      "weight", empty({o.out_channels_, o.in_channels_ / o.groups_, o.kernel_[0], o.kernel_[1]}));
  if (o.bias_) bias = register_parameter("bias", empty({o.out_channels_}));
  reset_parameters(gen);
}

Conv2d::Conv2d(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t stride, std::int64_t padding,
               std::int64_t dilation, std::int64_t groups, bool with_bias, Generator* gen)
    : Conv2d(Conv2dOptions(in, out, k).stride(stride).padding(padding).dilation(dilation).groups(groups).bias(with_bias),
             gen) {}

void Conv2d::reset_parameters(Generator* gen) {
  // As Linear: kaiming_uniform_(a = sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::fan_in, init::Nonlinearity::leaky_relu, gen);
  if (bias.defined()) {
    double bound = 1.0 / std::sqrt(static_cast<double>(init::calculate_fan_in_and_fan_out(weight).first));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  ciuic::Conv2dOptions o;
  for (int i = 0; i < 2; ++i) {
    o.stride[i] = options.stride_[i];
    o.padding[i] = options.padding_[i];
    o.dilation[i] = options.dilation_[i];
  }
  o.groups = options.groups_;
  return conv2d(x, weight, bias, o);
}

std::string Conv2d::extra_repr() const {
  const Conv2dOptions& o = options;
  std::string s = detail::concat(o.in_channels_, ", ", o.out_channels_, ", kernel_size=(", o.kernel_[0], ", ",
                                 o.kernel_[1], "), stride=(", o.stride_[0], ", ", o.stride_[1], ")");
  if (o.padding_[0] || o.padding_[1]) s += detail::concat(", padding=(", o.padding_[0], ", ", o.padding_[1], ")");
  if (o.dilation_[0] != 1 || o.dilation_[1] != 1)
    s += detail::concat(", dilation=(", o.dilation_[0], ", ", o.dilation_[1], ")");
  if (o.groups_ != 1) s += detail::concat(", groups=", o.groups_);
  if (!o.bias_) s += ", bias=false";
  return s;
}

}  // namespace ciuic::nn
