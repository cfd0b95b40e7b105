// nn::MaxPool2d.
#include "ciuic/nn/layers.h"

namespace ciuic::nn {

MaxPool2d::MaxPool2d(std::int64_t k, std::int64_t s, std::int64_t p)
    : Module("MaxPool2d"), kernel_size(k), stride(s), padding(p) {
  CIUIC_CHECK(k > 0 && s >= 0 && p >= 0 && 2 * p <= k, ValueError, "MaxPool2d", "kernel_size ", k, ", stride ", s,
              ", padding ", p, "; expected kernel_size > 0, stride >= 0 (0: kernel_size), 0 <= padding <= kernel_size / 2");
}

Tensor MaxPool2d::forward(const Tensor& x) { return max_pool2d(x, kernel_size, stride, padding); }

std::string MaxPool2d::extra_repr() const {
  return detail::concat("kernel_size=", kernel_size, ", stride=", stride ? stride : kernel_size, ", padding=", padding);
}

}  // namespace ciuic::nn
