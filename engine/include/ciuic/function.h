// Custom autograd functions in user code, as torch.autograd.Function:
//
//   struct ScaledTanh : autograd::Function<ScaledTanh> {
//     static constexpr const char* name = "ScaledTanh";             // optional: named in errors
//     static Tensor forward(autograd::Context* ctx, const Tensor& x, const Tensor& w, double alpha) {
//       Tensor y = tanh(x * alpha);
//       ctx->save_for_backward({y, w});                              // version-checked at backward
//       ctx->saved_data["alpha"] = alpha;                           // any non-tensor value
//       return y * w;
//     }
//     static std::vector<Tensor> backward(autograd::Context* ctx, const std::vector<Tensor>& grad_out) {
//       auto s = ctx->saved_tensors();                               // {y, w}
//       double alpha = std::any_cast<double>(ctx->saved_data["alpha"]);
//       Tensor g = grad_out[0];
//       Tensor gx = ctx->needs_input_grad(0) ? g * s[1] * (1.0 - s[0] * s[0]) * alpha : Tensor();
//       Tensor gw = g * s[0];                                        // full shape: summed to w's shape for you
//       return {gx, gw, Tensor()};                                   // one per forward argument
//     }
//   };
//   Tensor y = ScaledTanh::apply(x, w, 0.5);
//
// forward runs without recording (its ops are plain computations) and returns a
// Tensor or a std::vector<Tensor>. When some tensor argument requires grad, one
// tape node is recorded whose backward calls F::backward with one gradient per
// output (zeros for outputs that received none and for non-differentiable ones).
// backward returns one gradient per forward argument (undefined for non-tensor
// arguments and for inputs without a gradient), or one per tensor argument. A
// gradient whose shape broadcasts to its input's is summed to it (sum_to); its
// dtype is converted to the input's; anything else is a ShapeError naming the
// function. Double backward works when backward is written with ops.
//
// Works inside checkpoint segments (the tracked forward records nothing; the
// recomputation records as usual) and under autocast (forward's ops autocast as
// written; backward runs under the forward's autocast state; gradients reach f32
// inputs in f32). Check it with gradcheck (f64).
#pragma once

#include <any>
#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ciuic/autograd.h"
#include "ciuic/tensor.h"

namespace ciuic::autograd {

class Context {
 public:
  // Tensors backward needs (inputs or outputs); saved with their versions, so
  // saved_tensors() throws AutogradError when one was changed in place since.
  void save_for_backward(const std::vector<Tensor>& tensors);
  std::vector<Tensor> saved_tensors() const;
  // Non-tensor values for backward (sizes, flags, scalars).
  std::unordered_map<std::string, std::any> saved_data;
  // Whether forward argument i (counting every argument) needs a gradient.
  bool needs_input_grad(std::size_t i) const;
  // Outputs that carry no gradient (indices, masks): not differentiable, and
  // backward receives zeros for them.
  void mark_non_differentiable(const std::vector<Tensor>& outputs);

  // ---- used by Function<F>::apply ----
  std::string name_;
  std::vector<bool> needs_input_grad_;
  std::vector<Tensor> non_differentiable_;

 private:
  std::vector<SavedTensor> saved_;
};

namespace detail {
// Records the node of a custom function. args_is_tensor[i]: whether forward argument
// i is a tensor (inputs holds those, in order). outputs: forward's results, which
// this replaces by fresh handles (sharing storage) that carry the node.
using CustomBackward = std::function<std::vector<Tensor>(Context*, const std::vector<Tensor>&)>;
void finish_custom(const std::shared_ptr<Context>& ctx, const std::vector<bool>& args_is_tensor,
                   const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs, CustomBackward backward);
std::shared_ptr<Context> make_context(const char* name, const std::vector<bool>& args_is_tensor,
                                      const std::vector<Tensor>& inputs);

template <typename T>
constexpr bool is_tensor_v = std::is_same_v<std::decay_t<T>, Tensor>;

template <typename F, typename = void>
struct function_name { static constexpr const char* value = "custom Function"; };
template <typename F>
struct function_name<F, std::void_t<decltype(F::name)>> { static constexpr const char* value = F::name; };
}  // namespace detail

template <typename F>
struct Function {
  template <typename... Args>
  static auto apply(Args&&... args) {
    std::vector<bool> is_tensor{detail::is_tensor_v<Args>...};
    std::vector<Tensor> inputs;
    auto collect = [&inputs](const auto& a) {
      if constexpr (detail::is_tensor_v<decltype(a)>) inputs.push_back(a);
    };
    (collect(args), ...);
    auto ctx = detail::make_context(detail::function_name<F>::value, is_tensor, inputs);
    using R = decltype(F::forward(ctx.get(), std::forward<Args>(args)...));
    static_assert(std::is_same_v<R, Tensor> || std::is_same_v<R, std::vector<Tensor>>,
                  "Function<F>: F::forward must return Tensor or std::vector<Tensor>");
    std::vector<Tensor> outputs;
    {
      NoGradGuard no_grad;
      if constexpr (std::is_same_v<R, Tensor>) outputs.push_back(F::forward(ctx.get(), std::forward<Args>(args)...));
      else outputs = F::forward(ctx.get(), std::forward<Args>(args)...);
    }
    detail::finish_custom(ctx, is_tensor, inputs, outputs,
                          [](Context* c, const std::vector<Tensor>& g) { return F::backward(c, g); });
    if constexpr (std::is_same_v<R, Tensor>) return outputs[0];
    else return outputs;
  }
};

}  // namespace ciuic::autograd
