// optim::Optimizer: parameter groups, per-parameter state, state dicts.
#include <algorithm>

#include "ciuic/autograd.h"
#include "ciuic/optim.h"
#include "master_weights.h"

namespace ciuic::optim {

namespace {

// The ParamGroup fields by state-dict name.
struct Field {
  const char* name;
  double ParamGroup::*real = nullptr;
  bool ParamGroup::*flag = nullptr;
};
constexpr Field kFields[] = {
    {"lr", &ParamGroup::lr},         {"weight_decay", &ParamGroup::weight_decay},
    {"momentum", &ParamGroup::momentum}, {"dampening", &ParamGroup::dampening},
    {"nesterov", nullptr, &ParamGroup::nesterov}, {"beta1", &ParamGroup::beta1},
    {"beta2", &ParamGroup::beta2},   {"eps", &ParamGroup::eps},
    {"amsgrad", nullptr, &ParamGroup::amsgrad},
};

const Field& field(const std::string& name) {
  for (const Field& f : kFields)
    if (name == f.name) return f;
  detail::fail<ValueError>("Optimizer", "unknown hyperparameter \"", name, "\"");
}

double get_field(const ParamGroup& g, const std::string& name) {
  const Field& f = field(name);
  return f.real ? g.*f.real : (g.*f.flag ? 1.0 : 0.0);
}

void set_field(ParamGroup& g, const std::string& name, double v) {
  const Field& f = field(name);
  if (f.real)
    g.*f.real = v;
  else
    g.*f.flag = v != 0.0;
}

std::string join_list(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + ("\"" + names[i] + "\"");
  return s;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// A contiguous copy of t owned by the optimizer, in the state dtype of p (f32 for
// f16/bf16 parameters, p's own otherwise) on p's device.
Tensor owned_like(const Tensor& t, const Tensor& p) {
  Tensor d = t.detach();
  const DType dt = state_dtype(p.dtype());
  return d.device() == p.device() && d.dtype() == dt ? d.clone() : d.to(p.device(), dt).contiguous();
}

// Never saved or loaded: the unscaled gradients of one iteration.
constexpr const char* kMasterGrad = "master_grad";

}  // namespace

Optimizer::Optimizer(std::string name, ParamGroup defaults) : name_(std::move(name)), defaults_(std::move(defaults)) {
  defaults_.params.clear();
}

void Optimizer::check_params(const std::vector<Tensor>& params, std::size_t new_group) const {
  const char* op = name_.c_str();
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    CIUIC_CHECK(p.defined(), ValueError, op, "parameter ", i, " of group ", new_group,
                " is undefined; expected a tensor");
    CIUIC_CHECK(is_floating(p.dtype()), DTypeError, op, "parameter ", i, " of group ", new_group, " is ",
                describe(p), "; expected a floating dtype");
    CIUIC_CHECK(p.is_leaf(), ValueError, op, "parameter ", i, " of group ", new_group, " (", describe(p),
                ") is not a leaf; expected a leaf tensor (a module parameter, or a tensor made by a factory)");
    auto clash = [&](const Tensor& q) { return q.same(p); };
    for (std::size_t j = 0; j < i; ++j)
      CIUIC_CHECK(!clash(params[j]), ValueError, op, "parameter ", i, " of group ", new_group,
                  " is also parameter ", j, " of that group; expected each parameter once");
    for (std::size_t g = 0; g < groups_.size(); ++g)
      for (std::size_t j = 0; j < groups_[g].params.size(); ++j)
        CIUIC_CHECK(!clash(groups_[g].params[j]), ValueError, op, "parameter ", i, " of group ", new_group,
                    " is already parameter ", j, " of group ", g, "; expected each parameter in one group only");
  }
}

ParamGroup& Optimizer::add_param_group(std::vector<Tensor> params) {
  ParamGroup g = defaults_;
  g.params = std::move(params);
  return add_param_group(std::move(g));
}

ParamGroup& Optimizer::add_param_group(ParamGroup group) {
  check_params(group.params, groups_.size());
  check_group(group);
  groups_.push_back(std::move(group));
  state_.emplace_back(groups_.back().params.size());
  return groups_.back();
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  drop_master_grads();
  for (const ParamGroup& g : groups_)
    for (const Tensor& p : g.params) {
      if (set_to_none) {
        p.zero_grad();
      } else if (Tensor grad = p.grad(); grad.defined()) {
        grad.zero_();
      }
    }
}

ParamState& Optimizer::state_for(std::size_t group, std::size_t index) {
  if (state_.size() < groups_.size()) state_.resize(groups_.size());
  std::vector<ParamState>& s = state_[group];
  if (s.size() < groups_[group].params.size()) s.resize(groups_[group].params.size());
  return s[index];
}

void Optimizer::drop_master_grads() {
  for (std::vector<ParamState>& group : state_)
    for (ParamState& s : group) s.buffers.erase(kMasterGrad);
}

Tensor Optimizer::step_gradient(std::size_t group, std::size_t index) const {
  CIUIC_CHECK(group < groups_.size() && index < groups_[group].params.size(), IndexError, "Optimizer::step_gradient",
              "group ", group, ", parameter ", index, " out of range (", groups_.size(), " groups); expected "
              "an existing parameter");
  // Not through state(): that settles pending device steps (a host read), and the
  // gradient is needed inside a step.
  const bool has_state = group < state_.size() && index < state_[group].size();
  if (const Tensor* mg = has_state ? state_[group][index].buffers.find(kMasterGrad) : nullptr) return *mg;
  return groups_[group].params[index].grad();
}

void Optimizer::step(const Tensor& found_inf) {
  masters::check_found_inf(name_.c_str(), found_inf);
  if (!masters::flag_set(found_inf)) {
    step();
  } else {
    NoGradGuard no_grad;
    drop_master_grads();
  }
}

void Optimizer::begin_deferred_step(const Tensor& found_inf, bool settle_first) {
  if (settle_first) settle_deferred_steps();
  pending_.push_back(PendingStep{found_inf, {}});
}

void Optimizer::apply_pending(const std::vector<bool>& skipped) const {
  // Oldest first; a skipped step takes back one count of each of its parameters.
  std::vector<const DeferredParam*> created;
  for (std::size_t k = 0; k < pending_.size(); ++k) {
    for (const DeferredParam& d : pending_[k].params) {
      ParamState& s = state_[d.group][d.index];
      if (skipped[k]) --s.step;
      if (!d.created.empty()) created.push_back(&d);
    }
  }
  // Buffers a step created are dropped when every step since turned out skipped.
  for (const DeferredParam* d : created) {
    ParamState& s = state_[d->group][d->index];
    if (s.step == 0)
      for (const std::string& name : d->created) s.buffers.erase(name);
  }
  pending_.clear();
}

void Optimizer::resolve_deferred_step(bool skipped) {
  if (pending_.empty()) return;
  std::vector<bool> flags;
  for (std::size_t k = 0; k + 1 < pending_.size(); ++k) flags.push_back(masters::flag_set(pending_[k].flag));
  flags.push_back(skipped);
  apply_pending(flags);
}

void Optimizer::settle_deferred_steps() const {
  if (pending_.empty()) return;
  std::vector<bool> flags;
  for (const PendingStep& p : pending_) flags.push_back(masters::flag_set(p.flag));
  apply_pending(flags);
}

const ParamState& Optimizer::state(std::size_t group, std::size_t index) const {
  CIUIC_CHECK(group < groups_.size() && index < groups_[group].params.size(), IndexError, "Optimizer::state",
              "group ", group, ", parameter ", index, " out of range (", groups_.size(), " groups); expected "
              "an existing parameter");
  static const ParamState kFresh;
  settle_deferred_steps();
  if (group >= state_.size() || index >= state_[group].size()) return kFresh;
  return state_[group][index];
}

OptimizerStateDict Optimizer::state_dict() const {
  OptimizerStateDict out;
  out.optimizer = name_;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    OptimizerStateDict::Group group;
    for (const std::string& h : hyperparameter_names()) group.hyperparameters.insert(h, get_field(groups_[g], h));
    for (std::size_t i = 0; i < groups_[g].params.size(); ++i) {
      ParamState s = state(g, i);
      s.buffers.erase(kMasterGrad);
      s.device_step = Tensor();
      for (auto& [name, t] : s.buffers) t = t.detach();
      group.params.push_back(std::move(s));
    }
    out.groups.push_back(std::move(group));
  }
  return out;
}

void Optimizer::load_state_dict(const OptimizerStateDict& dict) {
  const char* op = "load_state_dict";
  settle_deferred_steps();
  CIUIC_CHECK(dict.optimizer == name_, ValueError, op, "state dict of a ", dict.optimizer, " optimizer into ", name_,
              "; expected a ", name_, " state dict");
  CIUIC_CHECK(dict.groups.size() == groups_.size(), ValueError, op, "state dict has ", dict.groups.size(),
              " parameter groups but the ", name_, " optimizer has ", groups_.size(), "; expected equal counts");
  const std::vector<std::string> hyper = hyperparameter_names();
  std::vector<std::string> bufs = buffer_names();
  bufs.push_back("master");  // f16/bf16 parameters only
  std::vector<ParamGroup> new_groups = groups_;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const OptimizerStateDict::Group& src = dict.groups[g];
    const std::vector<Tensor>& params = groups_[g].params;
    CIUIC_CHECK(src.params.size() == params.size(), ValueError, op, "group ", g, " of the state dict has ",
                src.params.size(), " parameters but the optimizer's group ", g, " has ", params.size(),
                "; expected equal counts");
    std::vector<std::string> missing, unexpected;
    for (const std::string& h : hyper)
      if (!src.hyperparameters.contains(h)) missing.push_back(h);
    for (const auto& [h, v] : src.hyperparameters)
      if (!contains(hyper, h)) unexpected.push_back(h);
    CIUIC_CHECK(missing.empty() && unexpected.empty(), ValueError, op, "group ", g, " hyperparameters: missing [",
                join_list(missing), "], unexpected [", join_list(unexpected), "]; expected exactly [",
                join_list(hyper), "]");
    for (const auto& [h, v] : src.hyperparameters) set_field(new_groups[g], h, v);
    check_group(new_groups[g]);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const ParamState& s = src.params[i];
      CIUIC_CHECK(s.step >= 0, ValueError, op, "group ", g, ", parameter ", i, ": step ", s.step,
                  "; expected step >= 0");
      for (const auto& [name, t] : s.buffers) {
        CIUIC_CHECK(contains(bufs, name), ValueError, op, "group ", g, ", parameter ", i, ": unknown buffer \"",
                    name, "\"; expected one of [", join_list(bufs), "]");
        CIUIC_CHECK(t.defined(), ValueError, op, "group ", g, ", parameter ", i, ": buffer \"", name,
                    "\" is undefined; expected a tensor");
        CIUIC_CHECK(t.shape() == params[i].shape(), ShapeError, op, "group ", g, ", parameter ", i, ": buffer \"",
                    name, "\" has shape ", shape_str(t.shape()), " but the parameter has shape ",
                    shape_str(params[i].shape()), "; expected equal shapes");
        CIUIC_CHECK(name != "master" || masters::is_half(params[i].dtype()), ValueError, op, "group ", g,
                    ", parameter ", i, " (", describe(params[i]), ") has a \"master\" buffer; expected master "
                    "weights only for f16/bf16 parameters");
        CIUIC_CHECK(is_floating(t.dtype()), DTypeError, op, "group ", g, ", parameter ", i, ": buffer \"", name,
                    "\" is ", describe(t), "; expected a floating buffer");
      }
    }
  }
  NoGradGuard no_grad;
  std::vector<std::vector<ParamState>> new_state(groups_.size());
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    for (std::size_t i = 0; i < groups_[g].params.size(); ++i) {
      const ParamState& s = dict.groups[g].params[i];
      ParamState copy;
      copy.step = s.step;
      for (const auto& [name, t] : s.buffers) copy.buffers.insert(name, owned_like(t, groups_[g].params[i]));
      if (copy.buffers.contains("master")) masters::mark_master_synced(copy, groups_[g].params[i]);
      new_state[g].push_back(std::move(copy));
    }
  }
  for (std::size_t g = 0; g < groups_.size(); ++g) new_groups[g].params = groups_[g].params;
  groups_ = std::move(new_groups);
  state_ = std::move(new_state);
  pending_.clear();
}

}  // namespace ciuic::optim
