// optim::clip_grad_norm_.
#include <cmath>

#include "../ops/op_util.h"
#include "ciuic/optim.h"

namespace ciuic::optim {

namespace {

// Accumulates sum |g|^p (or max |g| when inf) of one CPU gradient into acc, in f64.
// A nan element makes the result nan in both cases.
void accumulate_norm(const Tensor& g, double p, bool inf, double& acc) {
  Tensor c = g.detach().contiguous();
  dispatch_floating(c.dtype(), "clip_grad_norm_", [&](auto tag) {
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

}  // namespace

namespace {

// Clips the given gradient tensors in place as one vector (see clip_grad_norm_).
double clip_grads(const std::vector<Tensor>& grads, double max_norm, double norm_type, bool error_if_nonfinite) {
  const char* op = "clip_grad_norm_";
  CIUIC_CHECK(norm_type > 0, ValueError, op, "norm_type ", norm_type, "; expected norm_type > 0 or kInfNorm");
  CIUIC_CHECK(max_norm >= 0, ValueError, op, "max_norm ", max_norm, "; expected max_norm >= 0");
  const bool inf = std::isinf(norm_type);
  if (grads.empty()) return 0.0;
  double acc = 0.0;
  for (const Tensor& g : grads) {
    if (g.device().is_cuda()) {
      // Through the ops (their CUDA kernels), one small read-back per tensor. The fused
      // kernels::multi_tensor_norm would do all tensors in one launch; not wired yet.
      NoGradGuard no_grad;
      Tensor a = abs(g.detach().to(DType::f32));
      double part = inf ? max(a).item() : sum(norm_type == 2.0 ? mul(a, a) : pow(a, norm_type)).item();
      if (inf)
        acc = (part > acc || std::isnan(part)) && !std::isnan(acc) ? part : acc;
      else
        acc += part;
      continue;
    }
    accumulate_norm(g, norm_type, inf, acc);
  }
  const double total = inf ? acc : norm_type == 2.0 ? std::sqrt(acc) : std::pow(acc, 1.0 / norm_type);
  if (!std::isfinite(total)) {
    CIUIC_CHECK(!error_if_nonfinite, ValueError, op, "the total ", norm_type, "-norm of the gradients of ",
                grads.size(), " parameters is ", total, "; expected a finite norm (error_if_nonfinite is set)");
    return total;
  }
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    NoGradGuard no_grad;
    for (Tensor g : grads) g.copy_(mul(g, coef));
  }
  return total;
}

}  // namespace

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  return clip_grads(grads, max_norm, norm_type, error_if_nonfinite);
}

double clip_grad_norm_(Optimizer& optimizer, double max_norm, double norm_type, bool error_if_nonfinite) {
  std::vector<Tensor> grads;
  const std::vector<ParamGroup>& groups = optimizer.param_groups();
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (std::size_t i = 0; i < groups[g].params.size(); ++i)
      if (Tensor grad = optimizer.step_gradient(g, i); grad.defined()) grads.push_back(grad);
  return clip_grads(grads, max_norm, norm_type, error_if_nonfinite);
}

}  // namespace ciuic::optim
