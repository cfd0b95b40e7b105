// The loss scaler's update on the device (ciuic/kernels/loss_scale.h).
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/error.h"
#include "ciuic/kernels/loss_scale.h"

namespace ciuic::kernels {

namespace {

struct FlagList {
  const float* ptr[kMaxLossScaleFlags];
  int n;
};

__global__ void loss_scale_update_kernel(LossScaleState st, FlagList flags, LossScaleRule rule, bool enabled) {
  bool found = false;
  for (int i = 0; i < flags.n; ++i) found = found || *flags.ptr[i] != 0.0f;
  if (enabled) loss_scale_update(*st.scale, st.counters[0], st.counters[1], found, rule);
  loss_scale_publish(st, found);
}

}  // namespace

void loss_scale_update_device(const LossScaleState& state, const float* const* flags, int n, const LossScaleRule& rule,
                              bool enabled, void* stream) {
  const char* op = "loss_scale_update";
  CIUIC_CHECK(n >= 0 && n <= kMaxLossScaleFlags, NotImplementedError, op, n, " found_inf flags; expected at most ",
              kMaxLossScaleFlags, " optimizers per scaler");
  CIUIC_CHECK(state.scale && state.counters && state.f32, ValueError, op, "state pointers must be device pointers");
  FlagList fl{};
  for (int i = 0; i < n; ++i) {
    CIUIC_CHECK(flags[i] != nullptr, ValueError, op, "flag ", i, " is null; expected a device f32");
    fl.ptr[i] = flags[i];
  }
  fl.n = n;
  loss_scale_update_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(state, fl, rule, enabled);
  CIUIC_CUDA_CHECK_LAUNCH();
}

}  // namespace ciuic::kernels
