// amp::AutocastGuard and the autocast hook of matmul, linear, conv2d and
// scaled_dot_product_attention.
#include <any>

#include "ciuic/amp.h"
#include "ciuic/autograd.h"
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

// The cast cache: one per live guard (innermost last), of casts of leaves that
// require grad (parameters). An entry holds its source (so the address cannot be
// reused while cached) and the source's version at cast time.
struct CastEntry {
  Tensor source;
  std::uint64_t version;
  Tensor cast;
};
thread_local std::vector<std::vector<CastEntry>> t_cast_caches;

Tensor cast(const Tensor& t, DType to) {
  // Only parameters are cached (as PyTorch does): their casts are the same in
  // every use of one forward. Not while a checkpoint segment's forward runs
  // untracked (it records nothing to share).
  if (t_cast_caches.empty() || !t.is_leaf() || !t.requires_grad() || !grad_mode_enabled() || grad_tracking())
    return t.to(to);
  std::vector<CastEntry>& cache = t_cast_caches.back();
  for (const CastEntry& e : cache)
    if (e.source.same(t) && e.cast.dtype() == to && e.version == t.version()) return e.cast;
  Tensor c = t.to(to);
  cache.push_back({t, t.version(), c});
  return c;
}

}  // namespace

AutocastState autocast_state() { return t_autocast; }
bool autocast_enabled() { return t_autocast.enabled; }

AutocastGuard::AutocastGuard(DType dtype, bool enabled) : previous_(t_autocast) {
  (void)kRegistered;
  CIUIC_CHECK(dtype == DType::f16 || dtype == DType::bf16, DTypeError, "AutocastGuard", "dtype ", dtype_name(dtype),
              "; expected f16 or bf16");
  t_autocast = {enabled, dtype};
  t_cast_caches.emplace_back();
}

AutocastGuard::~AutocastGuard() {
  t_autocast = previous_;
  t_cast_caches.pop_back();
}

std::optional<std::vector<Tensor>> autocast_args(std::initializer_list<const Tensor*> inputs) {
  if (!t_autocast.enabled) return std::nullopt;
  const DType to = t_autocast.dtype;
  auto needs_cast = [to](const Tensor* t) { return t->defined() && castable(t->dtype()) && t->dtype() != to; };
  bool any = false;
  for (const Tensor* t : inputs) any = any || needs_cast(t);
  if (!any) return std::nullopt;
  std::vector<Tensor> out;
  out.reserve(inputs.size());
  for (const Tensor* t : inputs) out.push_back(needs_cast(t) ? cast(*t, to) : *t);
  return out;
}

std::optional<std::vector<Tensor>> autocast_f32(std::initializer_list<const Tensor*> inputs) {
  if (!t_autocast.enabled) return std::nullopt;
  auto is_half = [](const Tensor* t) { return t->defined() && (t->dtype() == DType::f16 || t->dtype() == DType::bf16); };
  bool any = false;
  for (const Tensor* t : inputs) any = any || is_half(t);
  if (!any) return std::nullopt;
  std::vector<Tensor> out;
  out.reserve(inputs.size());
  for (const Tensor* t : inputs) out.push_back(is_half(t) ? cast(*t, DType::f32) : *t);
  return out;
}

namespace {
int float_rank(DType t) {
  switch (t) {
    case DType::f64: return 3;
    case DType::f32: return 2;
    case DType::f16: case DType::bf16: return 1;
    default: return 0;
  }
}
}  // namespace

std::optional<std::pair<Tensor, Tensor>> autocast_promote(const Tensor& a, const Tensor& b) {
  if (!autocast_enabled() || !a.defined() || !b.defined() || a.dtype() == b.dtype()) return std::nullopt;
  const int ra = float_rank(a.dtype()), rb = float_rank(b.dtype());
  if (ra == 0 || rb == 0) return std::nullopt;  // integers: the op reports the mismatch
  DType to = ra > rb ? a.dtype() : rb > ra ? b.dtype() : DType::f32;  // f16 with bf16 -> f32
  return std::pair<Tensor, Tensor>{a.to(to), b.to(to)};
}

}  // namespace ciuic::amp
