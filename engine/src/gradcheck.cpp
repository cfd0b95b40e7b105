#include "ciuic/gradcheck.h"

#include <cmath>
#include <sstream>

#include "ciuic/autograd.h"
#include "ciuic/ops.h"

namespace ciuic {

namespace {

double projected(const GradcheckFn& f, const std::vector<Tensor>& inputs, const Tensor& w) {
  NoGradGuard ng;
  Tensor out = f(inputs);
  return sum(mul(out.to(DType::f64), w)).item();
}

// Element `linear` (row-major) of a CPU f64 view, by reference through its strides.
double& element(const Tensor& t, std::int64_t linear) {
  std::int64_t off = 0;
  for (std::int64_t d = t.dim() - 1; d >= 0; --d) {
    off += (linear % t.shape()[d]) * t.strides()[d];
    linear /= t.shape()[d];
  }
  return static_cast<double*>(t.data_ptr())[off];
}

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs, GradcheckOptions opts) {
  for (const Tensor& x : inputs) {
    if (!x.defined() || !x.requires_grad()) continue;
    CIUIC_CHECK(x.dtype() == DType::f64 && x.device().is_cpu(), DTypeError, "gradcheck", "input ", describe(x),
                "; expected f64 CPU inputs (finite differences need f64)");
    CIUIC_CHECK(x.is_leaf(), AutogradError, "gradcheck", "input ", describe(x), " is not a leaf; expected leaves");
  }
  GradcheckResult res;
  Tensor out = f(inputs);
  Generator gen{opts.seed, 0};
  Tensor w = uniform(out.shape(), 0.5, 1.5, DType::f64, &gen);  // away from 0 so no term cancels
  std::vector<Tensor> want;
  for (const Tensor& x : inputs)
    if (x.defined() && x.requires_grad()) want.push_back(x);
  std::vector<Tensor> analytical = grad({sum(mul(out.to(DType::f64), w))}, want);

  std::ostringstream report;
  int mismatches = 0;
  for (std::size_t k = 0; k < want.size(); ++k) {
    const Tensor& x = want[k];
    Tensor ga = analytical[k].defined() ? analytical[k].to(DType::f64) : zeros(x.shape(), DType::f64);
    std::vector<double> gav = ga.to_vector<double>();
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      double& xi = element(x, i);
      const double orig = xi;
      xi = orig + opts.eps;
      double lp = projected(f, inputs, w);
      xi = orig - opts.eps;
      double lm = projected(f, inputs, w);
      xi = orig;
      double num = (lp - lm) / (2 * opts.eps);
      double err = std::abs(num - gav[i]);
      bool finite = std::isfinite(num) && std::isfinite(gav[i]);
      res.max_abs_error = std::max(res.max_abs_error, finite ? err : INFINITY);
      if (!finite || err > opts.atol + opts.rtol * std::abs(num)) {
        res.ok = false;
        if (mismatches++ < 8)
          report << "input " << k << " " << describe(x) << " element " << i << ": analytical " << gav[i]
                 << ", numerical " << num << "\n";
      }
    }
  }
  if (mismatches) report << mismatches << " mismatching elements in total\n";
  res.report = report.str();
  return res;
}

}  // namespace ciuic
