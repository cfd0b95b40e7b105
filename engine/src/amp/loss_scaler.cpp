// amp::LossScaler: dynamic loss scaling with skipped steps on inf/nan.
#include <algorithm>
#include <cmath>

#include "ciuic/amp.h"
#include "ciuic/autograd.h"
#include "ciuic/host_sync.h"
#include "ciuic/kernels/loss_scale.h"
#include "ciuic/stream.h"
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

// The state tensors on the CPU for these values.
void make_state(double scale, std::int64_t tracker, std::int64_t streak, Tensor& scale_t, Tensor& counters,
                Tensor& f32) {
  scale_t = full({}, scale, TensorOptions(DType::f64));
  counters = from_vector<std::int64_t>({tracker, streak}, {2});
  f32 = make_tensor({3}, DType::f32, Device::cpu());
  kernels::loss_scale_publish(kernels::LossScaleState{static_cast<double*>(scale_t.data_ptr()),
                                                      static_cast<std::int64_t*>(counters.data_ptr()),
                                                      static_cast<float*>(f32.data_ptr())},
                              false);
}

kernels::LossScaleRule rule_of(const LossScalerOptions& o) {
  kernels::LossScaleRule r;
  r.growth_factor = o.growth_factor_;
  r.backoff_factor = o.backoff_factor_;
  r.min_scale = o.min_scale_;
  r.max_scale = o.max_scale_;
  r.growth_interval = o.growth_interval_;
  r.hysteresis = o.hysteresis_;
  return r;
}

}  // namespace

LossScaler::LossScaler(const LossScalerOptions& options) : opts_(options) {
  check_options("LossScaler", opts_);
  check_scale("LossScaler", opts_.init_scale_, opts_);
  make_state(opts_.init_scale_, 0, 0, scale_, counters_, f32_);
}

void LossScaler::ensure_on(Device d) const {
  if (d == home_) return;
  NoGradGuard no_grad;
  scale_ = scale_.to(d);
  counters_ = counters_.to(d);
  f32_ = f32_.to(d);
  home_ = d;
}

double LossScaler::get_scale() const { return opts_.enabled_ ? scale_.item() : 1.0; }

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
  ensure_on(loss.device());
  // A copy of the device scale (no read-back): update() later changes the state in place.
  Tensor s = wide.dtype() == DType::f64 ? scale_.clone() : f32_.select(0, 0).clone();
  return mul(wide, s);
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
  const Device dev = device.value_or(home_);
  ensure_on(dev);
  r.found_inf = zeros({}, TensorOptions(DType::f32).device(dev));
  detail::unscale_grads(items, f32_.select(0, 1), r.found_inf);
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
  // The optimizers settle their skipped steps themselves when their state is read;
  // nothing here reads a flag back.
  std::vector<Tensor> flags;
  for (const Record& r : records_)
    if (r.found_inf.defined()) flags.push_back(r.found_inf.device() == home_ ? r.found_inf : r.found_inf.to(home_));
  records_.clear();
  const kernels::LossScaleState st{static_cast<double*>(scale_.data_ptr()),
                                   static_cast<std::int64_t*>(counters_.data_ptr()),
                                   static_cast<float*>(f32_.data_ptr())};
  if (home_.is_cpu()) {
    bool found = false;
    for (const Tensor& f : flags) found = found || *static_cast<const float*>(f.data_ptr()) != 0.0f;
    if (opts_.enabled_) kernels::loss_scale_update(*st.scale, st.counters[0], st.counters[1], found, rule_of(opts_));
    kernels::loss_scale_publish(st, found);
  } else {
#ifdef CIUIC_WITH_CUDA
    std::vector<const float*> ptrs;
    for (const Tensor& f : flags) ptrs.push_back(static_cast<const float*>(f.data_ptr()));
    DeviceGuard guard(home_);
    kernels::loss_scale_update_device(st, ptrs.data(), static_cast<int>(ptrs.size()), rule_of(opts_),
                                      opts_.enabled_, current_stream(home_));
#endif
  }
  scale_.bump_version();
  counters_.bump_version();
  f32_.bump_version();
  // A defined check point: errors the host can already see (no wait for the device).
  check_device_errors(Device::cpu());
  if (home_.is_cuda()) check_device_errors(home_);
}

bool LossScaler::step_skipped() const {
  bool pending = false, found = false;
  for (const Record& r : records_) {
    if (!r.unscaled) continue;
    pending = true;
    found = found || (r.found_inf.defined() && r.found_inf.item() != 0.0);
  }
  return pending ? found : f32_.select(0, 2).item() != 0.0;
}

Tensor LossScaler::scale_tensor() const {
  if (!opts_.enabled_) return full({}, 1.0, TensorOptions(DType::f64).device(home_));
  return scale_.detach().clone().reshape({});
}

Tensor LossScaler::step_skipped_tensor() const {
  Tensor found;  // max of the pending iteration's flags, else the last update()'s
  bool pending = false;
  for (const Record& r : records_) {
    if (!r.unscaled) continue;
    pending = true;
    if (!r.found_inf.defined()) continue;
    Tensor f = r.found_inf.detach().to(home_).reshape({});
    found = found.defined() ? maximum(found, f) : f.clone();
  }
  if (found.defined()) return found;
  if (pending) return zeros({}, TensorOptions(DType::f32).device(home_));
  return f32_.select(0, 2).detach().clone().reshape({});
}

LossScalerState LossScaler::state_dict() const {
  LossScalerState s;
  const std::vector<std::int64_t> c = counters_.to_vector<std::int64_t>();
  s.scale = scale_.item();
  s.growth_tracker = c[0];
  s.overflow_streak = c[1];
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
  const Device home = home_;
  home_ = Device::cpu();
  make_state(state.scale, state.growth_tracker, state.overflow_streak, scale_, counters_, f32_);
  ensure_on(home);
}

}  // namespace ciuic::amp
