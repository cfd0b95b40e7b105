// Dynamic loss scaling decided where the flags are: the growth / backoff rule of
// amp::LossScaler as a __host__ __device__ function (the CPU runs it on host
// tensors, the GPU in a one-thread kernel), so update() never reads found_inf back.
#pragma once

#include <cstdint>

#include "ciuic/macros.h"

namespace ciuic::kernels {

struct LossScaleRule {
  double growth_factor = 2.0;   // > 1
  double backoff_factor = 0.5;  // in (0, 1)
  double min_scale = 1.0;
  double max_scale = 16777216.0;
  std::int64_t growth_interval = 2000;  // clean iterations before the scale grows
  std::int64_t hysteresis = 1;          // back off from the hysteresis-th overflow in a row
};

// The scaler's device state: scale (f64), the two counters (i64), and the f32
// values the other kernels read (scale, 1 / scale) plus the last iteration's flag.
struct LossScaleState {
  double* scale;
  std::int64_t* counters;  // [growth_tracker, overflow_streak]
  float* f32;              // [scale, 1 / scale, last found_inf (0 or 1)]
};

// One iteration's end: found = some optimizer saw inf/nan. On overflow the growth
// count restarts and the streak grows; from the hysteresis-th overflow in a row the
// scale is multiplied by backoff_factor (not below min_scale). A clean iteration
// ends the streak; after growth_interval clean iterations the scale is multiplied
// by growth_factor (not above max_scale) and the count restarts.
CIUIC_HD void loss_scale_update(double& scale, std::int64_t& growth_tracker, std::int64_t& overflow_streak,
                                bool found, const LossScaleRule& r) {
  if (found) {
    growth_tracker = 0;
    ++overflow_streak;
    if (overflow_streak >= r.hysteresis) {
      const double s = scale * r.backoff_factor;
      scale = s < r.min_scale ? r.min_scale : s;
    }
  } else {
    overflow_streak = 0;
    if (++growth_tracker >= r.growth_interval) {
      const double s = scale * r.growth_factor;
      scale = s > r.max_scale ? r.max_scale : s;
      growth_tracker = 0;
    }
  }
}

// Refreshes the f32 views of the scale after a change (and on load).
CIUIC_HD void loss_scale_publish(const LossScaleState& st, bool found) {
  st.f32[0] = static_cast<float>(*st.scale);
  st.f32[1] = static_cast<float>(1.0 / *st.scale);
  st.f32[2] = found ? 1.0f : 0.0f;
}

// Launcher (kernels/src/loss_scale.cu, CUDA builds): found = any of the n device
// flags (one f32 each, host array of device pointers, n <= kMaxLossScaleFlags) is
// non-zero; then loss_scale_update and loss_scale_publish on the device state.
constexpr int kMaxLossScaleFlags = 16;
void loss_scale_update_device(const LossScaleState& state, const float* const* flags, int n, const LossScaleRule& rule,
                              bool enabled, void* stream);

}  // namespace ciuic::kernels
