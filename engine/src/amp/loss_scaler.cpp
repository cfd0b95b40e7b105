// amp::LossScaler: dynamic loss scaling with skipped steps on inf/nan.
#include <algorithm>
#include <cmath>

#include "ciuic/amp.h"
#include "ciuic/autograd.h"
#include "ciuic/ops.h"
#include "unscale.h"

namespace ciuic::amp {

namespace {

void check_options(const char* op, const LossScalerOptions& o) {
  CIUIC_CHECK(std::isfinite(o.min_scale_) && std::isfinite(o.max_scale_) && o.min_scale_ > 0 &&
                  o.min_scale_ <= o.max_scale_,
              ValueError, op, "min_scale ", o.min_scale_, ", max_scale ", o.max_scale_,
              "; expected finite 0 < min_scale <= max_scale");
  CIUIC_CHECK(o.growth_factor_ > 1 && std::isfinite(o.growth_factor_), ValueError, op, "growth_factor ",
              o.growth_factor_, "; expected a finite growth_factor > 1");
  CIUIC_CHECK(o.backoff_factor_ > 0 && o.backoff_factor_ < 1, ValueError, op, "backoff_factor ", o.backoff_factor_,
              "; expected 0 < backoff_factor < 1");
  CIUIC_CHECK(o.growth_interval_ >= 1, ValueError, op, "growth_interval ", o.growth_interval_,
              "; expected growth_interval >= 1");
  CIUIC_CHECK(o.hysteresis_ >= 1, ValueError, op, "hysteresis ", o.hysteresis_, "; expected hysteresis >= 1");
}

void check_scale(const char* op, double scale, const LossScalerOptions& o) {
  CIUIC_CHECK(std::isfinite(scale) && scale >= o.min_scale_ && scale <= o.max_scale_, ValueError, op, "scale ", scale,
              "; expected min_scale (", o.min_scale_, ") <= scale <= max_scale (", o.max_scale_, ")");
}

}  // namespace

LossScaler::LossScaler(const LossScalerOptions& options) : opts_(options), scale_(options.init_scale_) {
  check_options("LossScaler", opts_);
  check_scale("LossScaler", scale_, opts_);
}

LossScaler::Record& LossScaler::record_for(optim::Optimizer& optimizer) {
  for (Record& r : records_)
    if (r.optimizer == &optimizer) return r;
  records_.push_back(Record{&optimizer, Tensor(), false, false});
  return records_.back();
}

Tensor LossScaler::scale(const Tensor& loss) const {
  const char* op = "LossScaler::scale";
  CIUIC_CHECK(loss.defined(), ValueError, op, "loss is undefined; expected a floating tensor");
  CIUIC_CHECK(is_floating(loss.dtype()), DTypeError, op, "loss is ", describe(loss),
              "; expected a floating tensor (f32, f64, f16, bf16)");
  if (!opts_.enabled_) return loss;
  const Tensor wide = loss.dtype() == DType::f64 ? loss : loss.to(DType::f32);
  return mul(wide, scale_);
}

void LossScaler::unscale_(optim::Optimizer& optimizer) {
  const char* op = "LossScaler::unscale_";
  Record& r = record_for(optimizer);
  CIUIC_CHECK(!r.stepped, ValueError, op, "this ", optimizer.name(), " optimizer already stepped in this iteration; "
              "expected unscale_(optimizer) before step(optimizer), then update() before the next unscale_");
  CIUIC_CHECK(!r.unscaled, ValueError, op, "unscale_ was already called for this ", optimizer.name(),
              " optimizer since the last update(); expected one unscale_ per optimizer and iteration (gradients "
              "accumulated over micro-batches are unscaled once, after the last backward)");
  r.unscaled = true;
  if (!opts_.enabled_) return;

  std::vector<detail::UnscaleItem> items;
  std::optional<Device> device;
  const std::vector<optim::ParamGroup>& groups = optimizer.param_groups();
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (std::size_t i = 0; i < groups[g].params.size(); ++i) {
      const Tensor& p = groups[g].params[i];
      const Tensor grad = p.grad();
      if (!grad.defined()) continue;
      if (!device) device = grad.device();
      CIUIC_CHECK(grad.device() == *device, NotImplementedError, op, "gradients on ", device->str(), " and ",
                  grad.device().str(), " in one optimizer; expected all of an optimizer's parameters on one device");
      CIUIC_CHECK(grad.shape() == p.shape(), ShapeError, op, "gradient ", describe(grad), " of parameter ",
                  describe(p), "; expected the parameter's shape");
      if (p.dtype() == DType::f16 || p.dtype() == DType::bf16) {
        optim::ParamState& s = optimizer.state_for(g, i);
        Tensor* mg = s.buffers.find("master_grad");
        if (!mg || mg->shape() != p.shape() || mg->dtype() != DType::f32 || mg->device() != p.device() ||
            !mg->is_contiguous()) {
          s.buffers.erase("master_grad");
          s.buffers.insert("master_grad", make_tensor(p.shape(), DType::f32, p.device()));
          mg = s.buffers.find("master_grad");
        }
        items.push_back({grad, *mg});
      } else {
        items.push_back({grad, grad});
      }
    }
  r.found_inf = zeros({}, TensorOptions(DType::f32).device(device.value_or(Device::cpu())));
  detail::unscale_grads(items, static_cast<float>(1.0 / scale_), r.found_inf);
}

void LossScaler::step(optim::Optimizer& optimizer) {
  const char* op = "LossScaler::step";
  Record* existing = nullptr;
  for (Record& r : records_)
    if (r.optimizer == &optimizer) existing = &r;
  CIUIC_CHECK(!(existing && existing->stepped), ValueError, op, "step was already called for this ",
              optimizer.name(), " optimizer since the last update(); expected one step per optimizer and iteration, "
              "then update()");
  if (!existing || !existing->unscaled) unscale_(optimizer);
  Record& r = record_for(optimizer);
  r.stepped = true;
  if (opts_.enabled_) optimizer.step(r.found_inf);
  else optimizer.step();
}

void LossScaler::update() {
  const char* op = "LossScaler::update";
  const bool any_step = std::any_of(records_.begin(), records_.end(), [](const Record& r) { return r.stepped; });
  CIUIC_CHECK(any_step, ValueError, op, "no step(optimizer) since the last update(); expected scale(loss).backward(), "
              "step(optimizer), then update() in each iteration");
  bool found = false;
  for (Record& r : records_) {
    const bool own = r.found_inf.defined() && r.found_inf.item() != 0.0;  // a device sync for GPU flags
    if (r.stepped) r.optimizer->resolve_deferred_step(own);
    found = found || own;
  }
  records_.clear();
  last_found_inf_ = found;
  if (!opts_.enabled_) return;
  if (found) {
    growth_tracker_ = 0;
    ++overflow_streak_;
    if (overflow_streak_ >= opts_.hysteresis_) scale_ = std::max(scale_ * opts_.backoff_factor_, opts_.min_scale_);
  } else {
    overflow_streak_ = 0;
    if (++growth_tracker_ >= opts_.growth_interval_) {
      scale_ = std::min(scale_ * opts_.growth_factor_, opts_.max_scale_);
      growth_tracker_ = 0;
    }
  }
}

bool LossScaler::step_skipped() const {
  bool pending = false, found = false;
  for (const Record& r : records_) {
    if (!r.unscaled) continue;
    pending = true;
    found = found || (r.found_inf.defined() && r.found_inf.item() != 0.0);
  }
  return pending ? found : last_found_inf_;
}

LossScalerState LossScaler::state_dict() const {
  LossScalerState s;
  s.scale = scale_;
  s.growth_tracker = growth_tracker_;
  s.overflow_streak = overflow_streak_;
  s.options = opts_;
  return s;
}

void LossScaler::load_state_dict(const LossScalerState& state) {
  const char* op = "LossScaler::load_state_dict";
  CIUIC_CHECK(records_.empty(), ValueError, op, records_.size(), " optimizer(s) used since the last update(); "
              "expected to load between iterations (after update())");
  check_options(op, state.options);
  check_scale(op, state.scale, state.options);
  CIUIC_CHECK(state.growth_tracker >= 0 && state.growth_tracker < state.options.growth_interval_ &&
                  state.overflow_streak >= 0,
              ValueError, op, "growth_tracker ", state.growth_tracker, ", overflow_streak ", state.overflow_streak,
              "; expected 0 <= growth_tracker < growth_interval (", state.options.growth_interval_,
              ") and overflow_streak >= 0");
  opts_ = state.options;
  scale_ = state.scale;
  growth_tracker_ = state.growth_tracker;
  overflow_streak_ = state.overflow_streak;
  last_found_inf_ = false;
}

}  // namespace ciuic::amp
