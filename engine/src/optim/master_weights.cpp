// FP32 master weights for f16/bf16 parameters: see master_weights.h.
#include "master_weights.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <type_traits>

#include "ciuic/autograd.h"
#include "ciuic/stream.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/optim.h"
#endif

namespace ciuic::optim::masters {

void check_found_inf(const char* op, const Tensor& found_inf) {
  CIUIC_CHECK(found_inf.defined(), ValueError, op, "found_inf is undefined; expected a one-element f32 tensor");
  CIUIC_CHECK(found_inf.numel() == 1, ShapeError, op, "found_inf is ", describe(found_inf),
              "; expected a one-element f32 tensor");
  CIUIC_CHECK(is_floating(found_inf.dtype()), DTypeError, op, "found_inf is ", describe(found_inf),
              "; expected a one-element f32 tensor");
}

bool flag_set(const Tensor& found_inf) {
  if (found_inf.device().is_cpu()) {  // host memory: read in place (item() would count as a read-back)
    bool set = false;
    dispatch_floating(found_inf.dtype(), "found_inf", [&](auto tag) {
      using T = decltype(tag);
      set = static_cast<double>(*static_cast<const T*>(found_inf.data_ptr())) != 0.0;
    });
    return set;
  }
  return found_inf.item() != 0.0;
}

bool ensure_buffer(ParamState& s, const char* name, const Tensor& p, bool zero_init) {
  const DType dt = state_dtype(p.dtype());
  Tensor* b = s.buffers.find(name);
  if (!b) {
    Tensor t = make_tensor(p.shape(), dt, p.device());
    if (zero_init) t.zero_();
    s.buffers.insert(name, t);
    return true;
  }
  if (b->dtype() != dt || b->device() != p.device() || !b->is_contiguous())
    *b = b->detach().to(p.device(), dt).contiguous();
  return false;
}

bool ensure_master(ParamState& s, const Tensor& p) {
  Tensor* m = s.buffers.find("master");
  const bool stale = !m || s.master_synced_storage != p.storage().get() || s.master_synced_version != p.version();
  if (!stale && m->dtype() == DType::f32 && m->device() == p.device() && m->is_contiguous()) return false;
  Tensor fresh = make_tensor(p.shape(), DType::f32, p.device());
  fresh.copy_(p.detach());
  if (m) *m = fresh;
  else s.buffers.insert("master", fresh);
  mark_master_synced(s, p);
  return true;
}

void mark_master_synced(ParamState& s, const Tensor& p) {
  s.master_synced_storage = p.storage().get();
  s.master_synced_version = p.version();
}

namespace {

struct NoCopy {};  // tag: an f32 parameter updated in place, nothing rounded

// Calls f(G{}, C{}) for the gradient storage type G and the type C of the copy
// written from the f32 weight (NoCopy for f32 parameters).
template <typename F>
void dispatch_grad_copy(const Tensor& p, const Tensor& grad, bool has_copy, const char* op, F&& f) {
  auto with_copy = [&](auto gtag) {
    if (!has_copy && p.dtype() == DType::f32) return f(gtag, NoCopy{});
    if (has_copy && p.dtype() == DType::f16) return f(gtag, Half{});
    if (has_copy && p.dtype() == DType::bf16) return f(gtag, BFloat16{});
    ::ciuic::detail::fail<DTypeError>(op, "parameter ", describe(p), has_copy ? " with" : " without",
                                      " a master; expected f16/bf16 with an f32 master or f32 without");
  };
  switch (grad.dtype()) {
    case DType::f32: return with_copy(float{});
    case DType::f16: return with_copy(Half{});
    case DType::bf16: return with_copy(BFloat16{});
    default: break;
  }
  ::ciuic::detail::fail<DTypeError>(op, "gradient ", describe(grad), " of parameter ", describe(p),
                                    "; expected an f32, f16 or bf16 gradient");
}

// Runs body(float* w, C* copy, const G* g) over contiguous data: w the f32 weight
// (master, or p itself), copy p's data when there is a master. A non-contiguous p
// is worked on in a contiguous temporary and copied back. Bumps the versions.
template <typename Body>
void run_step_loop(const Tensor& p, const Tensor& master, const Tensor& grad, const char* op, Body&& body) {
  CIUIC_CHECK(grad.shape() == p.shape(), ShapeError, op, "gradient ", describe(grad), " for parameter ", describe(p),
              "; expected the parameter's shape");
  const bool has_master = master.defined();
  const Tensor g = grad.detach().contiguous();
  const bool direct = p.is_contiguous();
  const Tensor target = direct ? p.detach() : p.detach().contiguous();  // a copy when p is strided
  const Tensor weight = has_master ? master : target;
  dispatch_grad_copy(p, g, has_master, op, [&](auto gtag, auto ctag) {
    using G = decltype(gtag);
    using C = decltype(ctag);
    C* copy = nullptr;
    if constexpr (!std::is_same_v<C, NoCopy>) copy = static_cast<C*>(target.data_ptr());
    body(static_cast<float*>(weight.data_ptr()), copy, static_cast<const G*>(g.data_ptr()));
  });
  if (has_master) master.bump_version();
  if (direct) p.bump_version();
  else p.detach().copy_(target);
}

template <typename C>
inline void write_copy(C* copy, std::int64_t i, float w) {
  if constexpr (!std::is_same_v<C, NoCopy>) copy[i] = C(w);
}

// AdamW with AMSGrad on one element, with adamw_update's rounding steps.
inline void adamw_amsgrad_update(float& p, float& m, float& v, float& vmax, float g, const kernels::AdamWConsts& c) {
  using namespace kernels;
  p = fmul_rn(p, c.decay);
  m = fma_rn(c.beta1, m, fmul_rn(c.one_minus_beta1, g));
  v = fma_rn(c.beta2, v, fmul_rn(c.one_minus_beta2, fmul_rn(g, g)));
  vmax = nan_propagating_max(vmax, v);
  const float denom = fadd_rn(fmul_rn(fsqrt_rn(vmax), c.inv_sqrt_bc2), c.eps);
  p = fsub_rn(p, fmul_rn(c.step_size, fdiv_rn(m, denom)));
}

}  // namespace

void adamw_step_cpu(const Tensor& p, const Tensor& master, const Tensor& m, const Tensor& v, const Tensor* vmax,
                    const Tensor& grad, const kernels::AdamWConsts& c) {
  float* pm = m.data<float>();
  float* pv = v.data<float>();
  float* px = vmax ? vmax->data<float>() : nullptr;
  const std::int64_t n = p.numel();
  run_step_loop(p, master, grad, "AdamW", [&](float* w, auto* copy, const auto* g) {
    for (std::int64_t i = 0; i < n; ++i) {
      const float gi = static_cast<float>(g[i]);
      if (px) adamw_amsgrad_update(w[i], pm[i], pv[i], px[i], gi, c);
      else kernels::adamw_update(w[i], pm[i], pv[i], gi, c);
      write_copy(copy, i, w[i]);
    }
  });
  m.bump_version();
  v.bump_version();
  if (vmax) vmax->bump_version();
}

void sgd_step_cpu(const Tensor& p, const Tensor& master, const Tensor* buf, bool first_step, const Tensor& grad,
                  const kernels::SgdConsts& c) {
  float* pb = buf ? buf->data<float>() : nullptr;
  const std::int64_t n = p.numel();
  run_step_loop(p, master, grad, "SGD", [&](float* w, auto* copy, const auto* g) {
    float unused = 0.0f;
    for (std::int64_t i = 0; i < n; ++i) {
      kernels::sgd_update(w[i], pb ? pb[i] : unused, static_cast<float>(g[i]), c, first_step);
      write_copy(copy, i, w[i]);
    }
  });
  if (buf) buf->bump_version();
}

// ---------------------------------------------------------------- CUDA
#ifdef CIUIC_WITH_CUDA
namespace {

// Pointer lists of one fused launch (all gradients of one dtype, all copies of one dtype).
struct Lists {
  std::vector<std::int64_t> numels;
  std::vector<void*> weights, state1, state2, copies, steps;
  std::vector<const void*> grads;
  DType grad_dtype = DType::f32;
  DType copy_dtype = DType::f16;
  bool has_copies = false;
  Device device = Device::cpu();

  kernels::FusedOptimTensors view() const {
    kernels::FusedOptimTensors t;
    t.count = static_cast<int>(numels.size());
    t.numels = numels.data();
    t.params = weights.data();
    t.grads = grads.data();
    t.grad_dtype = grad_dtype;
    t.state1 = state1.empty() ? nullptr : state1.data();
    t.state2 = state2.empty() ? nullptr : state2.data();
    t.model_copies = has_copies ? copies.data() : nullptr;
    t.copy_dtype = copy_dtype;
    t.steps = steps.empty() ? nullptr : steps.data();
    return t;
  }
};

// Splits items by (device, gradient dtype, copy dtype or none) and calls launch on each list.
template <typename Launch>
void for_each_list(const std::vector<FusedParam>& items, const char* op, Launch&& launch) {
  std::map<std::tuple<int, int, int>, Lists> by_key;
  for (const FusedParam& it : items) {
    CIUIC_CHECK(it.weight.is_contiguous() && it.grad.is_contiguous() && (!it.copy.defined() || it.copy.is_contiguous()),
                NotImplementedError, op, "fused step over a non-contiguous parameter or gradient (",
                describe(it.copy.defined() ? it.copy : it.weight), "); expected contiguous tensors");
    const int copy_key = it.copy.defined() ? static_cast<int>(it.copy.dtype()) : -1;
    Lists& l = by_key[{it.weight.device().index, static_cast<int>(it.grad.dtype()), copy_key}];
    l.device = it.weight.device();
    l.grad_dtype = it.grad.dtype();
    l.numels.push_back(it.weight.numel());
    l.weights.push_back(it.weight.data_ptr());
    l.grads.push_back(it.grad.data_ptr());
    if (it.state1.defined()) l.state1.push_back(it.state1.data_ptr());
    if (it.state2.defined()) l.state2.push_back(it.state2.data_ptr());
    if (it.step.defined()) {
      CIUIC_CHECK(it.step.dtype() == DType::i64 && it.step.device() == it.weight.device() && it.step.numel() == 1,
                  DTypeError, op, "device step count ", describe(it.step), " for ", describe(it.weight),
                  "; expected an i64 scalar on the parameter's device");
      l.steps.push_back(it.step.data_ptr());
    }
    if (it.copy.defined()) {
      l.has_copies = true;
      l.copy_dtype = it.copy.dtype();
      l.copies.push_back(it.copy.data_ptr());
    }
  }
  for (auto& [key, l] : by_key) {
    DeviceGuard g(l.device);
    launch(l);
  }
  for (const FusedParam& it : items) {
    it.weight.bump_version();
    if (it.state1.defined()) it.state1.bump_version();
    if (it.state2.defined()) it.state2.bump_version();
    if (it.copy.defined()) it.copy.bump_version();
    if (it.step.defined()) it.step.bump_version();
  }
}

const float* flag_ptr(const Tensor& found_inf) {
  if (!found_inf.defined()) return nullptr;
  CIUIC_CHECK(found_inf.dtype() == DType::f32 && found_inf.device().is_cuda(), DTypeError, "fused optimizer step",
              "found_inf is ", describe(found_inf), "; expected a one-element f32 tensor on the GPU");
  return static_cast<const float*>(found_inf.data_ptr());
}

}  // namespace

void fused_adamw_cuda(const std::vector<FusedParam>& items, const kernels::AdamWHyper& h, const Tensor& found_inf) {
  const float* flag = flag_ptr(found_inf);
  for_each_list(items, "AdamW", [&](const Lists& l) {
    CIUIC_CHECK(l.steps.size() == l.numels.size(), ValueError, "AdamW", "device step counts for ", l.steps.size(),
                " of ", l.numels.size(), " parameters; expected one per parameter");
    kernels::fused_adamw(l.view(), h, 1, nullptr, flag, current_stream(l.device));
  });
}

void fused_sgd_cuda(const std::vector<FusedParam>& items, const kernels::SgdHyper& h, bool first_step,
                    const Tensor& found_inf) {
  const float* flag = flag_ptr(found_inf);
  for_each_list(items, "SGD", [&](const Lists& l) {
    kernels::fused_sgd(l.view(), h, first_step, nullptr, flag, current_stream(l.device));
  });
}
#else
void fused_adamw_cuda(const std::vector<FusedParam>&, const kernels::AdamWHyper&, const Tensor&) {
  ::ciuic::detail::fail<DeviceError>("AdamW", "a fused step on the GPU needs a CUDA build; expected CPU parameters");
}
void fused_sgd_cuda(const std::vector<FusedParam>&, const kernels::SgdHyper&, bool, const Tensor&) {
  ::ciuic::detail::fail<DeviceError>("SGD", "a fused step on the GPU needs a CUDA build; expected CPU parameters");
}
#endif

}  // namespace ciuic::optim::masters
