// In-place arithmetic: add_, sub_, mul_, div_, clamp_ and +=, -=, *=, /=.
// Each computes the out-of-place op, checks that its result fits self (shape
// and dtype category), writes it into self's storage (bumping the version, so a
// tensor saved earlier for backward fails at unpack) and, when the op recorded a
// gradient, makes self the op's output in the graph.
#include "op_util.h"

namespace ciuic {

namespace ops {

void check_inplace_target(const char* op, const Tensor& self) {
  ops::check_defined(op, {{"self", &self}});
  CIUIC_CHECK(!(grad_mode_enabled() && self.requires_grad() && self.is_leaf()), AutogradError, op, "in-place ", op,
              " on ", describe(self), ", a leaf that requires grad; expected it under NoGradGuard (as an optimizer "
              "step does), or the out-of-place op");
}

Tensor& inplace_write(const char* op, Tensor& self, const Tensor& result) {
  CIUIC_CHECK(result.shape() == self.shape(), ShapeError, op, "result ", describe(result), " does not fit self ",
              describe(self), "; expected the other operand to broadcast to self's shape");
  CIUIC_CHECK(ops::dtype_category(result.dtype()) <= ops::dtype_category(self.dtype()), DTypeError, op,
              "result type ", dtype_name(result.dtype()), " cannot be stored in ", describe(self),
              "; expected an operand that keeps self's dtype category (or the out-of-place op)");
  Tensor r = result.dtype() == self.dtype() ? result : result.to(self.dtype());
  {
    NoGradGuard no_grad;
    self.copy_(r.detach());
  }
  if (grad_mode_enabled() && r.requires_grad()) {
    const AutogradMeta& rm = *r.impl()->autograd;
    auto& m = self.impl()->autograd;
    if (!m) m = std::make_shared<AutogradMeta>();
    m->requires_grad = true;
    m->grad_fn = rm.grad_fn;
    m->output_nr = rm.output_nr;
  }
  return self;
}

}  // namespace ops

namespace {

// f(input) with input = self, or a copy of self when the op may save it for
// backward (the storage is about to change).
template <typename F>
Tensor& inplace(const char* op, Tensor& self, bool other_requires_grad, F f) {
  ops::check_inplace_target(op, self);
  const bool records = grad_mode_enabled() && (self.requires_grad() || other_requires_grad);
  return ops::inplace_write(op, self, f(records ? self.clone() : self));
}

}  // namespace

Tensor& Tensor::add_(const Tensor& o) { return inplace("add_", *this, o.requires_grad(), [&](const Tensor& s) { return add(s, o); }); }
Tensor& Tensor::sub_(const Tensor& o) { return inplace("sub_", *this, o.requires_grad(), [&](const Tensor& s) { return sub(s, o); }); }
Tensor& Tensor::mul_(const Tensor& o) { return inplace("mul_", *this, o.requires_grad(), [&](const Tensor& s) { return mul(s, o); }); }
Tensor& Tensor::div_(const Tensor& o) { return inplace("div_", *this, o.requires_grad(), [&](const Tensor& s) { return div(s, o); }); }
Tensor& Tensor::add_(Scalar v) { return inplace("add_", *this, false, [&](const Tensor& s) { return add(s, v); }); }
Tensor& Tensor::sub_(Scalar v) { return inplace("sub_", *this, false, [&](const Tensor& s) { return sub(s, v); }); }
Tensor& Tensor::mul_(Scalar v) { return inplace("mul_", *this, false, [&](const Tensor& s) { return mul(s, v); }); }
Tensor& Tensor::div_(Scalar v) { return inplace("div_", *this, false, [&](const Tensor& s) { return div(s, v); }); }
Tensor& Tensor::clamp_(std::optional<double> lo, std::optional<double> hi) {
  return inplace("clamp_", *this, false, [&](const Tensor& s) { return clamp(s, lo, hi); });
}

Tensor& operator+=(Tensor& a, const Tensor& b) { return a.add_(b); }
Tensor& operator-=(Tensor& a, const Tensor& b) { return a.sub_(b); }
Tensor& operator*=(Tensor& a, const Tensor& b) { return a.mul_(b); }
Tensor& operator/=(Tensor& a, const Tensor& b) { return a.div_(b); }
Tensor& operator+=(Tensor& a, Scalar s) { return a.add_(s); }
Tensor& operator-=(Tensor& a, Scalar s) { return a.sub_(s); }
Tensor& operator*=(Tensor& a, Scalar s) { return a.mul_(s); }
Tensor& operator/=(Tensor& a, Scalar s) { return a.div_(s); }

}  // namespace ciuic
