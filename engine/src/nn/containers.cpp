// nn::ModuleList and nn::ModuleDict.
#include "ciuic/nn/containers.h"

namespace ciuic::nn {

ModuleList::ModuleList(const std::vector<std::shared_ptr<Module>>& modules) : Module("ModuleList") { extend(modules); }

void ModuleList::extend(const std::vector<std::shared_ptr<Module>>& modules) {
  for (const auto& m : modules) push_back(m);
}

const std::shared_ptr<Module>& ModuleList::operator[](std::size_t i) const {
  CIUIC_CHECK(i < modules_.size(), IndexError, "ModuleList", "index ", i, " out of range for ", modules_.size(),
              " modules; expected an index < ", modules_.size());
  return modules_[i];
}

Tensor ModuleList::forward(const Tensor&) {
  detail::fail<NotImplementedError>("ModuleList", "has no forward; expected a loop over its modules "
                                    "(for (auto& m : list) x = (*m)(x)) or an nn::Sequential");
}

ModuleDict::ModuleDict(const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& items)
    : Module("ModuleDict") {
  for (const auto& [k, m] : items) insert(k, m);
}

Tensor ModuleDict::forward(const Tensor&) {
  detail::fail<NotImplementedError>("ModuleDict", "has no forward; expected calls to its modules by key");
}

}  // namespace ciuic::nn
