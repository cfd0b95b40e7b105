// Finite-difference gradient check. For f: inputs -> output, draws a fixed
// random projection w and compares the analytical gradient of L = sum(f(x) * w)
// (one backward) with central differences (L(x + eps e_i) - L(x - eps e_i)) / 2eps
// for every element i of every input that requires grad. Use f64 CPU inputs;
// they may be non-contiguous views (the perturbation goes through the strides).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ciuic/tensor.h"

namespace ciuic {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  std::uint64_t seed = 1234;  // of the projection w
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;
  std::string report;  // the first mismatches: input, element, analytical, numerical
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs, GradcheckOptions opts = {});

}  // namespace ciuic
