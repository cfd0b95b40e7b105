// nn::Sequential.
#include "ciuic/nn/layers.h"

namespace ciuic::nn {

Sequential::Sequential(const std::vector<std::shared_ptr<Module>>& modules) : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

const std::shared_ptr<Module>& Sequential::operator[](std::size_t i) const {
  CIUIC_CHECK(i < modules_.size(), IndexError, "Sequential", "index ", i, " out of range for ", modules_.size(),
              " modules; expected an index < ", modules_.size());
  return modules_[i];
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (const auto& m : modules_) y = (*m)(y);  // with each module's hooks
  return y;
}

}  // namespace ciuic::nn
