// nn::Module: a tree of named parameters, buffers and child modules.
//
// Modules are always held by std::shared_ptr (make them with std::make_shared);
// there is no holder wrapper. A module keeps its tensors as Tensor handles that
// share their TensorImpl with the registry, so `weight` in a subclass and the
// entry returned by named_parameters() are the same tensor, and stay the same
// tensor across to(): conversion swaps the data inside the shared TensorImpl.
//
//   struct Block : nn::Module {
//     std::shared_ptr<nn::Linear> fc;
//     Tensor scale;
//     Block() : Module("Block") {
//       fc = register_module("fc", std::make_shared<nn::Linear>(4, 4));
//       scale = register_parameter("scale", ones({4}));
//     }
//     Tensor forward(const Tensor& x) override { return fc->forward(x) * scale; }
//   };
//
// Names are dotted paths from the module: "fc.weight", "layers.0.bias".
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include "ciuic/nn/ordered_dict.h"
#include "ciuic/tensor.h"

namespace ciuic::nn {

// Parameters and buffers by dotted name, in registration order (a module's own
// parameters, then its own buffers, then each child's entries).
using StateDict = OrderedDict<Tensor>;

class Module {
 public:
  explicit Module(std::string type_name = "Module");
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The class name shown by str() ("Linear", "Sequential", ...).
  const std::string& type_name() const { return type_name_; }

  // The single-input forward used by Sequential and operator(). Modules whose
  // forward takes other arguments define their own overloads; this default
  // throws NotImplementedError.
  virtual Tensor forward(const Tensor& x);
  // forward(x) with the forward hooks around it (PyTorch's module(x)): pre-hooks
  // may replace the input, post-hooks the output, in registration order.
  // Sequential, ModuleList users and CheckpointedSequence call blocks this way.
  Tensor operator()(const Tensor& x);

  // ---- hooks (return a handle for remove_hook) ----
  // pre: (module, input) -> a replacement input, or nullopt to keep it.
  using ForwardPreHook = std::function<std::optional<Tensor>(Module&, const Tensor& input)>;
  // post: (module, input, output) -> a replacement output, or nullopt to keep it.
  using ForwardHook = std::function<std::optional<Tensor>(Module&, const Tensor& input, const Tensor& output)>;
  std::size_t register_forward_pre_hook(ForwardPreHook hook);
  std::size_t register_forward_hook(ForwardHook hook);
  bool remove_hook(std::size_t handle);  // false when no hook has this handle

  // ---- registration (names: non-empty, no '.', unique among this module's
  // parameters, buffers and children; ValueError otherwise) ----
  // Makes t a parameter: a leaf (a non-leaf is detached first) with
  // requires_grad set. Returns the registered handle; t must be floating.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  // State that is saved and converted with the module but gets no gradient
  // (running statistics, counters). Integral buffers keep their dtype under to(DType).
  // persistent = false: converted and listed by buffers(), but not in state_dict()
  // (and so not expected by load_state_dict): caches such as a causal mask.
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = true);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    static_assert(std::is_base_of_v<Module, M>, "register_module: M must derive from ciuic::nn::Module");
    add_child(name, module);
    return module;
  }

  // ---- access ----
  // Distinct tensors: a tensor registered under several names (tied weights)
  // appears once, under its first name.
  std::vector<Tensor> parameters(bool recurse = true) const;
  OrderedDict<Tensor> named_parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  OrderedDict<Tensor> named_buffers(bool recurse = true) const;
  std::vector<std::shared_ptr<Module>> children() const;
  const OrderedDict<std::shared_ptr<Module>>& named_children() const { return children_; }
  // Every descendant (not this module) depth-first in registration order, by dotted name.
  OrderedDict<std::shared_ptr<Module>> named_modules() const;
  // Calls fn on every descendant (children before their parents), then on this module.
  void apply(const std::function<void(Module&)>& fn);

  // ---- mode ----
  // Sets training mode on this module and every descendant.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- conversion: in place, recursive; returns *this ----
  // Parameters and buffers move to d. Under to(DType) parameters and floating
  // buffers take dtype t (a floating dtype); integral buffers keep theirs.
  // Parameters stay the same leaves (same handles, requires_grad kept); an
  // existing .grad is converted with them. Convert before building an optimizer
  // or recording graphs through the module.
  Module& to(Device d);
  Module& to(DType t);
  Module& to(Device d, DType t);

  // Drops the .grad of every parameter, or with set_to_none = false fills the
  // existing ones with zeros in place (for gradients that are views into a buffer).
  void zero_grad(bool set_to_none = true);

  // ---- state ----
  // Detached handles sharing storage with the module's tensors (not copies):
  // clone() them for a snapshot that later training will not change. A tensor
  // registered under several names appears under each.
  StateDict state_dict() const;
  // Copies every entry into the module's tensor of that name in place (no-grad),
  // converting dtype and device. Checks everything before copying anything:
  // strict: missing and unexpected keys are a ValueError listing them; always:
  // a shape mismatch is a ShapeError naming the key and both shapes.
  void load_state_dict(const StateDict& dict, bool strict = true);

  // ---- printing ----
  // One line per module, children indented: "Linear(in_features=4, out_features=2, bias=true)".
  std::string str() const;
  // The part inside the parentheses for this module (override in subclasses).
  virtual std::string extra_repr() const { return ""; }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const char* op, const std::string& name) const;
  void collect_state(const std::string& prefix, StateDict& out) const;
  void collect_params(const std::string& prefix, OrderedDict<Tensor>& out, std::vector<const TensorImpl*>& seen,
                      bool recurse, bool buffers) const;
  void collect_modules(const std::string& prefix, OrderedDict<std::shared_ptr<Module>>& out) const;
  void convert(std::optional<Device> d, std::optional<DType> t);
  void print(std::ostream& os, int indent) const;

  std::string type_name_;
  bool training_ = true;
  OrderedDict<Tensor> params_;
  OrderedDict<Tensor> buffers_;
  std::vector<std::string> non_persistent_;  // names of buffers_ left out of state_dict()
  std::vector<std::pair<std::size_t, ForwardPreHook>> pre_hooks_;
  std::vector<std::pair<std::size_t, ForwardHook>> post_hooks_;
  OrderedDict<std::shared_ptr<Module>> children_;
};

std::ostream& operator<<(std::ostream& os, const Module& m);

}  // namespace ciuic::nn
