// optim::clip_grad_norm_ / clip_grad_norm_tensor_.
//
// CPU: the total norm in f64, one loop per gradient. CUDA: no host read-back. The
// f32/f16/bf16 gradients of each dtype go through kernels::multi_tensor_norm (one
// deterministic pass over all of them, the norm stays on the device), the partial
// norms of the dtype groups (and of f64 gradients or other norm types, through
// tensor ops) are combined on the device, kernels::clip_coefficient turns the
// total into the factor min(1, max_norm / (total + 1e-6)) (1 for a non-finite
// total) on the device, and kernels::multi_tensor_scale applies it in place.
#include <cmath>
#include <cstring>
#include <map>

#include "../ops/op_util.h"
#include "ciuic/host_sync.h"
#include "ciuic/optim.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/multi_tensor.h"
#include "ciuic/stream.h"
#endif

namespace ciuic::optim {

namespace {

constexpr const char* kOp = "clip_grad_norm_";
constexpr double kEps = 1e-6;

// Accumulates sum |g|^p (or max |g| when inf) of one CPU gradient into acc, in f64.
// A nan element makes the result nan in both cases.
void accumulate_norm(const Tensor& g, double p, bool inf, double& acc) {
  Tensor c = g.detach().contiguous();
  dispatch_floating(c.dtype(), kOp, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(c.data_ptr());
    const std::int64_t n = c.numel();
    for (std::int64_t i = 0; i < n; ++i) {
      double a = std::abs(static_cast<double>(static_cast<acc_t<T>>(x[i])));
      if (inf)
        acc = (a > acc || std::isnan(a)) && !std::isnan(acc) ? a : acc;
      else
        acc += p == 2.0 ? a * a : p == 1.0 ? a : std::pow(a, p);
    }
  });
}

std::int64_t bits_of(double v) {
  std::int64_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

Tensor clip_cpu(const std::vector<Tensor>& grads, double max_norm, double norm_type, bool error_if_nonfinite) {
  const bool inf = std::isinf(norm_type);
  double acc = 0.0;
  for (const Tensor& g : grads) {
    CIUIC_CHECK(g.device().is_cpu(), DeviceError, kOp, "gradient ", describe(g), " with CPU gradients; expected "
                "every gradient on one device");
    accumulate_norm(g, norm_type, inf, acc);
  }
  const double total = inf ? acc : norm_type == 2.0 ? std::sqrt(acc) : std::pow(acc, 1.0 / norm_type);
  if (!std::isfinite(total)) {
    if (error_if_nonfinite) {
      detail::report_cpu_error(kernels::DeviceErrorCode::clip_grad_nonfinite, bits_of(total),
                               static_cast<std::int64_t>(grads.size()), bits_of(norm_type));
      detail::after_checked_op(Device::cpu());
    }
  } else if (const double coef = max_norm / (total + kEps); coef < 1.0) {
    NoGradGuard no_grad;
    for (Tensor g : grads) g.copy_(mul(g, coef));
  }
  return full({}, total, TensorOptions(DType::f64));
}

#ifdef CIUIC_WITH_CUDA
Tensor clip_cuda(const std::vector<Tensor>& grads, double max_norm, double norm_type, bool error_if_nonfinite) {
  NoGradGuard no_grad;
  const Device dev = grads.front().device();
  DeviceGuard guard(dev);
  const bool inf = std::isinf(norm_type);
  const bool fused_norm = inf || norm_type == 2.0;
  struct Group {
    std::vector<void*> ptrs;
    std::vector<std::int64_t> numels;
  };
  std::map<DType, Group> fused;  // f32 / f16 / bf16 contiguous gradients, by dtype
  std::vector<Tensor> others;    // f64, non-contiguous, or a norm type the kernel lacks
  for (const Tensor& g : grads) {
    CIUIC_CHECK(g.device() == dev, DeviceError, kOp, "gradients on ", dev.str(), " and ", g.device().str(),
                "; expected every gradient on one device");
    const bool kernel_dtype = g.dtype() == DType::f32 || g.dtype() == DType::f16 || g.dtype() == DType::bf16;
    if (fused_norm && kernel_dtype && g.is_contiguous()) {
      Group& gr = fused[g.dtype()];
      gr.ptrs.push_back(g.data_ptr());
      gr.numels.push_back(g.numel());
    } else {
      others.push_back(g);
    }
  }
  // parts: per-group norms (l2, inf) or sums of |g|^p, each a 0-dim device tensor.
  std::vector<Tensor> parts;
  for (auto& [dt, gr] : fused) {
    const int count = static_cast<int>(gr.ptrs.size());
    const std::size_t bytes = kernels::multi_tensor_norm_workspace_bytes(gr.numels.data(), count);
    Tensor ws = ops::cuda_workspace(dev, bytes);
    Tensor out = make_tensor({}, DType::f32, dev);
    std::vector<const void*> cptrs(gr.ptrs.begin(), gr.ptrs.end());
    kernels::multi_tensor_norm(cptrs.data(), dt, gr.numels.data(), count,
                               inf ? kernels::NormKind::inf : kernels::NormKind::l2,
                               static_cast<float*>(out.data_ptr()), ws.defined() ? ws.data_ptr() : nullptr, bytes,
                               current_stream(dev));
    parts.push_back(out);
  }
  for (const Tensor& g : others) {
    Tensor a = abs(g.detach().to(g.dtype() == DType::f64 ? DType::f64 : DType::f32));
    Tensor part = inf ? max(a) : norm_type == 2.0 ? sqrt(sum(mul(a, a))) : sum(pow(a, norm_type));
    parts.push_back(part.to(DType::f32));
  }
  // total (f32, 0-dim) on the device
  Tensor total;
  if (inf) {
    total = parts.size() == 1 ? parts.front() : max(stack(parts, 0));  // max lets a nan win
  } else if (norm_type == 2.0) {
    for (const Tensor& p : parts) total = total.defined() ? add(total, mul(p, p)) : mul(p, p);
    total = parts.size() == 1 ? parts.front() : sqrt(total);
  } else {
    for (const Tensor& p : parts) total = total.defined() ? add(total, p) : p;
    total = pow(total, 1.0 / norm_type);
  }
  total = total.contiguous();
  Tensor coef = make_tensor({}, DType::f32, dev);
  kernels::clip_coefficient(static_cast<const float*>(total.data_ptr()), static_cast<float>(max_norm),
                            static_cast<float>(kEps), static_cast<float*>(coef.data_ptr()), current_stream(dev),
                            error_if_nonfinite ? detail::device_error_slot(dev) : kernels::DeviceErrorSlot{},
                            static_cast<std::int64_t>(grads.size()), norm_type);
  if (error_if_nonfinite) detail::after_checked_op(dev);
  std::map<DType, Group> scaled;
  for (const Tensor& g : grads) {
    const bool kernel_dtype = g.dtype() == DType::f32 || g.dtype() == DType::f16 || g.dtype() == DType::bf16;
    if (kernel_dtype && g.is_contiguous()) {
      Group& gr = scaled[g.dtype()];
      gr.ptrs.push_back(g.data_ptr());
      gr.numels.push_back(g.numel());
    } else {
      Tensor(g).copy_(mul(g, coef.to(g.dtype())));
    }
  }
  for (auto& [dt, gr] : scaled)
    kernels::multi_tensor_scale(gr.ptrs.data(), dt, gr.numels.data(), static_cast<int>(gr.ptrs.size()),
                                static_cast<const float*>(coef.data_ptr()), current_stream(dev));
  for (const Tensor& g : grads) g.bump_version();
  return total;
}
#endif

// Clips the given gradient tensors in place as one vector (see clip_grad_norm_).
Tensor clip_grads(const std::vector<Tensor>& grads, double max_norm, double norm_type, bool error_if_nonfinite) {
  CIUIC_CHECK(norm_type > 0, ValueError, kOp, "norm_type ", norm_type, "; expected norm_type > 0 or kInfNorm");
  CIUIC_CHECK(max_norm >= 0, ValueError, kOp, "max_norm ", max_norm, "; expected max_norm >= 0");
  if (grads.empty()) return zeros({}, TensorOptions(DType::f64));
#ifdef CIUIC_WITH_CUDA
  if (grads.front().device().is_cuda()) return clip_cuda(grads, max_norm, norm_type, error_if_nonfinite);
#endif
  return clip_cpu(grads, max_norm, norm_type, error_if_nonfinite);
}

std::vector<Tensor> grads_of(const std::vector<Tensor>& params) {
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  return grads;
}

std::vector<Tensor> grads_of(const Optimizer& optimizer) {
  std::vector<Tensor> grads;
  const std::vector<ParamGroup>& groups = optimizer.param_groups();
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (std::size_t i = 0; i < groups[g].params.size(); ++i)
      if (Tensor grad = optimizer.step_gradient(g, i); grad.defined()) grads.push_back(grad);
  return grads;
}

}  // namespace

Tensor clip_grad_norm_tensor_(const std::vector<Tensor>& params, double max_norm, double norm_type,
                              bool error_if_nonfinite) {
  return clip_grads(grads_of(params), max_norm, norm_type, error_if_nonfinite);
}

Tensor clip_grad_norm_tensor_(Optimizer& optimizer, double max_norm, double norm_type, bool error_if_nonfinite) {
  return clip_grads(grads_of(optimizer), max_norm, norm_type, error_if_nonfinite);
}

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  return clip_grad_norm_tensor_(params, max_norm, norm_type, error_if_nonfinite).item();
}

double clip_grad_norm_(Optimizer& optimizer, double max_norm, double norm_type, bool error_if_nonfinite) {
  return clip_grad_norm_tensor_(optimizer, max_norm, norm_type, error_if_nonfinite).item();
}

}  // namespace ciuic::optim
