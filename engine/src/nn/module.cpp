// nn::Module: registration, traversal, mode, conversion, state dicts, printing.
#include "ciuic/nn/module.h"

#include <algorithm>
#include <atomic>
#include <sstream>

#include "ciuic/autograd.h"

namespace ciuic::nn {

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string join_list(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + ("\"" + names[i] + "\"");
  return s;
}

// Replaces the data behind t's shared TensorImpl by `converted` (same shape), so
// that every handle to t sees it. Autograd state stays: requires_grad and hooks;
// the gradient accumulator (which remembers the old dtype and device) is reset
// and an existing .grad is converted alongside.
void swap_data(const Tensor& t, const Tensor& converted) {
  TensorImpl* dst = t.impl();
  const TensorImpl* src = converted.impl();
  dst->storage = src->storage;
  dst->offset = src->offset;
  dst->shape = src->shape;
  dst->strides = src->strides;
  dst->dtype = src->dtype;
  if (dst->autograd) {
    AutogradMeta& m = *dst->autograd;
    m.accumulator.reset();
    if (m.grad.defined()) m.grad = m.grad.to(converted.device(), converted.dtype());
  }
}

void convert_tensor(const Tensor& t, std::optional<Device> d, std::optional<DType> dt) {
  Device want_d = d.value_or(t.device());
  DType want_t = dt.value_or(t.dtype());
  if (want_d == t.device() && want_t == t.dtype()) return;
  swap_data(t, t.detach().to(want_d, want_t));
}

}  // namespace

Module::Module(std::string type_name) : type_name_(std::move(type_name)) {}

Tensor Module::forward(const Tensor&) {
  detail::fail<NotImplementedError>(type_name_.c_str(), "has no single-input forward(const Tensor&); expected a "
                                    "module that overrides it (call this module's own forward overload)");
}

// ---------------------------------------------------------------- registration
void Module::check_new_name(const char* op, const std::string& name) const {
  CIUIC_CHECK(!name.empty(), ValueError, op, "empty name in ", type_name_, "; expected a non-empty name");
  CIUIC_CHECK(name.find('.') == std::string::npos, ValueError, op, "name \"", name, "\" in ", type_name_,
              " contains '.'; expected a plain name (dots separate levels in dotted names)");
  const char* kind = params_.contains(name) ? "parameter" : buffers_.contains(name) ? "buffer"
                     : children_.contains(name) ? "module" : nullptr;
  CIUIC_CHECK(kind == nullptr, ValueError, op, "name \"", name, "\" is already a ", kind, " of ", type_name_,
              "; expected a new name");
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  const char* op = "register_parameter";
  check_new_name(op, name);
  CIUIC_CHECK(t.defined(), ValueError, op, "parameter \"", name, "\" is an undefined tensor; expected a tensor "
              "(leave an optional parameter such as a missing bias unregistered)");
  CIUIC_CHECK(is_floating(t.dtype()), DTypeError, op, "parameter \"", name, "\" is ", describe(t),
              "; expected a floating dtype");
  if (!t.is_leaf()) t = t.detach();
  t.requires_grad_(requires_grad);
  params_.insert(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t, bool persistent) {
  const char* op = "register_buffer";
  check_new_name(op, name);
  CIUIC_CHECK(t.defined(), ValueError, op, "buffer \"", name, "\" is an undefined tensor; expected a tensor");
  buffers_.insert(name, t);
  if (!persistent) non_persistent_.push_back(name);
  return t;
}

// ---------------------------------------------------------------- hooks
Tensor Module::operator()(const Tensor& x) {
  if (pre_hooks_.empty() && post_hooks_.empty()) return forward(x);
  Tensor in = x;
  // Copies: a hook may register or remove hooks.
  auto pre = pre_hooks_;
  for (auto& [id, h] : pre)
    if (std::optional<Tensor> r = h(*this, in)) in = *r;
  Tensor out = forward(in);
  auto post = post_hooks_;
  for (auto& [id, h] : post)
    if (std::optional<Tensor> r = h(*this, in, out)) out = *r;
  return out;
}

namespace {
std::size_t next_hook_handle() {
  static std::atomic<std::size_t> next{1};
  return next++;
}
}  // namespace

std::size_t Module::register_forward_pre_hook(ForwardPreHook hook) {
  CIUIC_CHECK(hook != nullptr, ValueError, "register_forward_pre_hook", "empty hook for ", type_name_,
              "; expected a callable");
  std::size_t id = next_hook_handle();
  pre_hooks_.emplace_back(id, std::move(hook));
  return id;
}

std::size_t Module::register_forward_hook(ForwardHook hook) {
  CIUIC_CHECK(hook != nullptr, ValueError, "register_forward_hook", "empty hook for ", type_name_,
              "; expected a callable");
  std::size_t id = next_hook_handle();
  post_hooks_.emplace_back(id, std::move(hook));
  return id;
}

bool Module::remove_hook(std::size_t handle) {
  auto drop = [handle](auto& v) {
    auto it = std::find_if(v.begin(), v.end(), [handle](const auto& p) { return p.first == handle; });
    if (it == v.end()) return false;
    v.erase(it);
    return true;
  };
  return drop(pre_hooks_) || drop(post_hooks_);
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  const char* op = "register_module";
  check_new_name(op, name);
  CIUIC_CHECK(module != nullptr, ValueError, op, "module \"", name, "\" is null; expected a module");
  CIUIC_CHECK(module.get() != this, ValueError, op, "module \"", name, "\" is ", type_name_,
              " itself; expected a different module");
  children_.insert(name, std::move(module));
}

// ---------------------------------------------------------------- traversal
void Module::collect_params(const std::string& prefix, OrderedDict<Tensor>& out,
                            std::vector<const TensorImpl*>& seen, bool recurse, bool buffers) const {
  for (const auto& [name, t] : buffers ? buffers_ : params_) {
    bool dup = false;
    for (const TensorImpl* s : seen) dup = dup || s == t.impl();
    if (dup) continue;
    seen.push_back(t.impl());
    out.insert(join(prefix, name), t);
  }
  if (!recurse) return;
  for (const auto& [name, child] : children_) child->collect_params(join(prefix, name), out, seen, true, buffers);
}

OrderedDict<Tensor> Module::named_parameters(bool recurse) const {
  OrderedDict<Tensor> out;
  std::vector<const TensorImpl*> seen;
  collect_params("", out, seen, recurse, false);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const { return named_parameters(recurse).values(); }

OrderedDict<Tensor> Module::named_buffers(bool recurse) const {
  OrderedDict<Tensor> out;
  std::vector<const TensorImpl*> seen;
  collect_params("", out, seen, recurse, true);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const { return named_buffers(recurse).values(); }

std::vector<std::shared_ptr<Module>> Module::children() const { return children_.values(); }

void Module::collect_modules(const std::string& prefix, OrderedDict<std::shared_ptr<Module>>& out) const {
  for (const auto& [name, child] : children_) {
    std::string full = join(prefix, name);
    out.insert(full, child);
    child->collect_modules(full, out);
  }
}

OrderedDict<std::shared_ptr<Module>> Module::named_modules() const {
  OrderedDict<std::shared_ptr<Module>> out;
  collect_modules("", out);
  return out;
}

void Module::apply(const std::function<void(Module&)>& fn) {
  for (const auto& [name, child] : children_) child->apply(fn);
  fn(*this);
}

// ---------------------------------------------------------------- mode, conversion, grads
void Module::train(bool on) {
  training_ = on;
  for (const auto& [name, child] : children_) child->train(on);
}

void Module::convert(std::optional<Device> d, std::optional<DType> t) {
  NoGradGuard no_grad;
  for (const auto& [name, p] : params_) convert_tensor(p, d, t);
  for (const auto& [name, b] : buffers_) convert_tensor(b, d, is_floating(b.dtype()) ? t : std::nullopt);
  for (const auto& [name, child] : children_) child->convert(d, t);
}

Module& Module::to(Device d) {
  convert(d, std::nullopt);
  return *this;
}

Module& Module::to(DType t) {
  CIUIC_CHECK(is_floating(t), DTypeError, "Module::to", "dtype ", dtype_name(t), " for ", type_name_,
              "; expected a floating dtype (f32, f64, f16, bf16)");
  convert(std::nullopt, t);
  return *this;
}

Module& Module::to(Device d, DType t) {
  CIUIC_CHECK(is_floating(t), DTypeError, "Module::to", "dtype ", dtype_name(t), " for ", type_name_,
              "; expected a floating dtype (f32, f64, f16, bf16)");
  convert(d, t);
  return *this;
}

void Module::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (const Tensor& p : parameters()) {
    if (set_to_none) {
      p.zero_grad();
    } else if (Tensor g = p.grad(); g.defined()) {
      g.zero_();
    }
  }
}

// ---------------------------------------------------------------- state dicts
void Module::collect_state(const std::string& prefix, StateDict& out) const {
  for (const auto& [name, p] : params_) out.insert(join(prefix, name), p.detach());
  for (const auto& [name, b] : buffers_)
    if (std::find(non_persistent_.begin(), non_persistent_.end(), name) == non_persistent_.end())
      out.insert(join(prefix, name), b.detach());
  for (const auto& [name, child] : children_) child->collect_state(join(prefix, name), out);
}

StateDict Module::state_dict() const {
  StateDict out;
  collect_state("", out);
  return out;
}

void Module::load_state_dict(const StateDict& dict, bool strict) {
  const char* op = "load_state_dict";
  StateDict own = state_dict();
  if (strict) {
    std::vector<std::string> missing, unexpected;
    for (const auto& [key, t] : own)
      if (!dict.contains(key)) missing.push_back(key);
    for (const auto& [key, t] : dict)
      if (!own.contains(key)) unexpected.push_back(key);
    if (!missing.empty() || !unexpected.empty()) {
      std::string msg;
      if (!missing.empty()) msg += "missing keys [" + join_list(missing) + "]";
      if (!unexpected.empty()) msg += (msg.empty() ? "" : "; ") + ("unexpected keys [" + join_list(unexpected) + "]");
      detail::fail<ValueError>(op, "into ", type_name_, ": ", msg,
                               "; expected exactly the module's keys (or strict=false to load the common ones)");
    }
  }
  for (const auto& [key, src] : dict) {
    const Tensor* dst = own.find(key);
    if (!dst) continue;
    CIUIC_CHECK(src.defined(), ValueError, op, "entry \"", key, "\" is an undefined tensor; expected a tensor");
    CIUIC_CHECK(src.shape() == dst->shape(), ShapeError, op, "entry \"", key, "\" has shape ",
                shape_str(src.shape()), " but the module's tensor has shape ", shape_str(dst->shape()),
                "; expected equal shapes");
  }
  NoGradGuard no_grad;
  for (auto& [key, dst] : own)
    if (const Tensor* src = dict.find(key)) dst.copy_(*src);
}

// ---------------------------------------------------------------- printing
void Module::print(std::ostream& os, int indent) const {
  os << type_name_ << '(' << extra_repr();
  if (!children_.empty()) {
    os << '\n';
    for (const auto& [name, child] : children_) {
      os << std::string(static_cast<std::size_t>(indent + 2), ' ') << '(' << name << "): ";
      child->print(os, indent + 2);
      os << '\n';
    }
    os << std::string(static_cast<std::size_t>(indent), ' ');
  }
  os << ')';
}

std::string Module::str() const {
  std::ostringstream os;
  print(os, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.str(); }

}  // namespace ciuic::nn
