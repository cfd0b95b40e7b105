// optim::CosineWithWarmup.
#include <cmath>
#include <numbers>

#include "ciuic/optim.h"

namespace ciuic::optim {

CosineWithWarmup::CosineWithWarmup(Optimizer& optimizer, std::int64_t warmup_steps, std::int64_t total_steps,
                                   double min_lr_ratio)
    : opt_(optimizer), warmup_(warmup_steps), total_(total_steps), min_ratio_(min_lr_ratio) {
  const char* op = "CosineWithWarmup";
  CIUIC_CHECK(warmup_steps >= 0 && total_steps > 0 && warmup_steps <= total_steps, ValueError, op, "warmup_steps ",
              warmup_steps, ", total_steps ", total_steps, "; expected 0 <= warmup_steps <= total_steps and "
              "total_steps > 0");
  CIUIC_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, ValueError, op, "min_lr_ratio ", min_lr_ratio,
              "; expected 0 <= min_lr_ratio <= 1");
  apply();
}

double CosineWithWarmup::factor(std::int64_t s) const {
  if (s < warmup_) return static_cast<double>(s) / static_cast<double>(warmup_);
  if (s >= total_) return min_ratio_;
  double progress = static_cast<double>(s - warmup_) / static_cast<double>(total_ - warmup_);
  return min_ratio_ + (1.0 - min_ratio_) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

void CosineWithWarmup::apply() {
  std::vector<ParamGroup>& groups = opt_.param_groups();
  // Groups added after construction take their lr at that point as their base.
  for (std::size_t g = base_lrs_.size(); g < groups.size(); ++g) base_lrs_.push_back(groups[g].lr);
  const double f = factor(step_);
  for (std::size_t g = 0; g < groups.size(); ++g) groups[g].lr = base_lrs_[g] * f;
}

void CosineWithWarmup::step() {
  ++step_;
  apply();
}

void CosineWithWarmup::set_step(std::int64_t s) {
  CIUIC_CHECK(s >= 0, ValueError, "CosineWithWarmup::set_step", "step ", s, "; expected step >= 0");
  step_ = s;
  apply();
}

std::vector<double> CosineWithWarmup::get_lr() const {
  std::vector<double> lrs;
  const double f = factor(step_);
  for (double b : base_lrs_) lrs.push_back(b * f);
  return lrs;
}

double CosineWithWarmup::get_lr(std::size_t group) const {
  CIUIC_CHECK(group < base_lrs_.size(), IndexError, "CosineWithWarmup::get_lr", "group ", group, " out of range (",
              base_lrs_.size(), " groups); expected a scheduled group");
  return base_lrs_[group] * factor(step_);
}

StepLR::StepLR(Optimizer& optimizer, std::int64_t step_size, double gamma)
    : opt_(optimizer), step_size_(step_size), gamma_(gamma) {
  CIUIC_CHECK(step_size > 0, ValueError, "StepLR", "step_size ", step_size, "; expected step_size > 0");
  CIUIC_CHECK(std::isfinite(gamma) && gamma > 0, ValueError, "StepLR", "gamma ", gamma,
              "; expected a finite gamma > 0");
  apply();
}

double StepLR::factor(std::int64_t s) const {
  return std::pow(gamma_, static_cast<double>(s / step_size_));
}

void StepLR::apply() {
  std::vector<ParamGroup>& groups = opt_.param_groups();
  for (std::size_t g = base_lrs_.size(); g < groups.size(); ++g) base_lrs_.push_back(groups[g].lr);
  const double f = factor(step_);
  for (std::size_t g = 0; g < groups.size(); ++g) groups[g].lr = base_lrs_[g] * f;
}

void StepLR::step() {
  ++step_;
  apply();
}

void StepLR::set_step(std::int64_t s) {
  CIUIC_CHECK(s >= 0, ValueError, "StepLR::set_step", "step ", s, "; expected step >= 0");
  step_ = s;
  apply();
}

std::vector<double> StepLR::get_last_lr() const {
  std::vector<double> lrs;
  const double f = factor(step_);
  for (double b : base_lrs_) lrs.push_back(b * f);
  return lrs;
}

}  // namespace ciuic::optim
