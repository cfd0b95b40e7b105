// ModuleList and ModuleDict: containers that register their modules as
// children (so parameters(), to(), train() and state_dict() see them) without a
// forward of their own, as in PyTorch.
//
//   auto blocks = std::make_shared<nn::ModuleList>();
//   for (int i = 0; i < 4; ++i) blocks->push_back(std::make_shared<Block>());
//   for (auto& b : *blocks) h = (*b)(h);          // or blocks->at<Block>(i)->forward(h, mask)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ciuic/nn/module.h"

namespace ciuic::nn {

class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  explicit ModuleList(const std::vector<std::shared_ptr<Module>>& modules);
  template <typename... Ms>
  explicit ModuleList(std::shared_ptr<Ms>... modules) : Module("ModuleList") {
    (push_back(std::move(modules)), ...);
  }

  // Appends and registers module under the next index ("0", "1", ...); returns it.
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    register_module(std::to_string(modules_.size()), module);
    modules_.push_back(module);
    return module;
  }
  void extend(const std::vector<std::shared_ptr<Module>>& modules);

  std::size_t size() const { return modules_.size(); }
  bool empty() const { return modules_.empty(); }
  // The i-th module; IndexError out of range.
  const std::shared_ptr<Module>& operator[](std::size_t i) const;
  // The i-th module as M; ValueError when it is not an M.
  template <typename M>
  std::shared_ptr<M> at(std::size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    CIUIC_CHECK(m != nullptr, ValueError, "ModuleList::at", "module ", i, " is a ", (*this)[i]->type_name(),
                "; expected the requested type");
    return m;
  }
  std::vector<std::shared_ptr<Module>>::const_iterator begin() const { return modules_.begin(); }
  std::vector<std::shared_ptr<Module>>::const_iterator end() const { return modules_.end(); }
  const std::vector<std::shared_ptr<Module>>& modules() const { return modules_; }

  // NotImplementedError: a ModuleList has no forward; iterate it.
  Tensor forward(const Tensor& x) override;

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

class ModuleDict : public Module {
 public:
  ModuleDict() : Module("ModuleDict") {}
  explicit ModuleDict(const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& items);

  // Registers module under key (a new plain name; ValueError otherwise); returns it.
  template <typename M>
  std::shared_ptr<M> insert(const std::string& key, std::shared_ptr<M> module) {
    register_module(key, module);
    return module;
  }
  bool contains(const std::string& key) const { return named_children().contains(key); }
  // IndexError naming the key and the keys present when absent.
  const std::shared_ptr<Module>& operator[](const std::string& key) const { return named_children().at(key); }
  template <typename M>
  std::shared_ptr<M> at(const std::string& key) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[key]);
    CIUIC_CHECK(m != nullptr, ValueError, "ModuleDict::at", "module \"", key, "\" is a ", (*this)[key]->type_name(),
                "; expected the requested type");
    return m;
  }
  std::size_t size() const { return named_children().size(); }
  bool empty() const { return named_children().empty(); }
  std::vector<std::string> keys() const { return named_children().keys(); }
  // (key, module) in insertion order.
  auto begin() const { return named_children().begin(); }
  auto end() const { return named_children().end(); }

  // NotImplementedError: a ModuleDict has no forward.
  Tensor forward(const Tensor& x) override;
};

}  // namespace ciuic::nn
