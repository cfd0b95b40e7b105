// amp::AutocastGuard and the autocast hook of matmul, linear, conv2d and
// scaled_dot_product_attention.
#include <any>

#include "ciuic/amp.h"
#include "ciuic/checkpoint.h"

namespace ciuic::amp {

namespace {

thread_local AutocastState t_autocast;

// A checkpoint segment's recomputation runs under the autocast state of its forward.
// Registered here, in the file that the ops' autocast hook always links in.
const bool kRegistered = [] {
  register_recompute_state("autocast", {[] { return std::any(t_autocast); },
                                        [](const std::any& v) { t_autocast = std::any_cast<AutocastState>(v); }});
  return true;
}();

constexpr bool castable(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }

}  // namespace

AutocastState autocast_state() { return t_autocast; }
bool autocast_enabled() { return t_autocast.enabled; }

AutocastGuard::AutocastGuard(DType dtype, bool enabled) : previous_(t_autocast) {
  (void)kRegistered;
  CIUIC_CHECK(dtype == DType::f16 || dtype == DType::bf16, DTypeError, "AutocastGuard", "dtype ", dtype_name(dtype),
              "; expected f16 or bf16");
  t_autocast = {enabled, dtype};
}

AutocastGuard::~AutocastGuard() { t_autocast = previous_; }

std::optional<std::vector<Tensor>> autocast_args(std::initializer_list<const Tensor*> inputs) {
  if (!t_autocast.enabled) return std::nullopt;
  const DType to = t_autocast.dtype;
  auto needs_cast = [to](const Tensor* t) { return t->defined() && castable(t->dtype()) && t->dtype() != to; };
  bool any = false;
  for (const Tensor* t : inputs) any = any || needs_cast(t);
  if (!any) return std::nullopt;
  std::vector<Tensor> out;
  out.reserve(inputs.size());
  for (const Tensor* t : inputs) out.push_back(needs_cast(t) ? t->to(to) : *t);
  return out;
}

}  // namespace ciuic::amp
