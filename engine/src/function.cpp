// Custom autograd functions (function.h): the context and the recorded node.
#include "ciuic/function.h"

#include "ciuic/amp.h"
#include "ciuic/ops.h"

namespace ciuic::autograd {

void Context::save_for_backward(const std::vector<Tensor>& tensors) {
  saved_.clear();
  for (const Tensor& t : tensors) saved_.emplace_back(t);
}

std::vector<Tensor> Context::saved_tensors() const {
  std::vector<Tensor> out;
  out.reserve(saved_.size());
  for (const SavedTensor& s : saved_) out.push_back(s.defined() ? s.unpack(name_.c_str()) : Tensor());
  return out;
}

bool Context::needs_input_grad(std::size_t i) const {
  CIUIC_CHECK(i < needs_input_grad_.size(), IndexError, name_.c_str(), "needs_input_grad(", i, ") for ",
              needs_input_grad_.size(), " forward arguments; expected an argument position");
  return needs_input_grad_[i];
}

void Context::mark_non_differentiable(const std::vector<Tensor>& outputs) {
  for (const Tensor& t : outputs) non_differentiable_.push_back(t);
}

namespace detail {

std::shared_ptr<Context> make_context(const char* name, const std::vector<bool>& args_is_tensor,
                                      const std::vector<Tensor>& inputs) {
  auto ctx = std::make_shared<Context>();
  ctx->name_ = name;
  std::size_t k = 0;
  for (bool is_t : args_is_tensor) {
    bool needs = false;
    if (is_t) {
      const Tensor& t = inputs[k++];
      needs = grad_mode_enabled() && t.defined() && t.requires_grad();
    }
    ctx->needs_input_grad_.push_back(needs);
  }
  return ctx;
}

void finish_custom(const std::shared_ptr<Context>& ctx, const std::vector<bool>& args_is_tensor,
                   const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs, CustomBackward backward) {
  const char* name = ctx->name_.c_str();
  // Fresh handles: an output may be an input returned as it is, whose own history must stay.
  std::vector<bool> differentiable;
  for (Tensor& out : outputs) {
    CIUIC_CHECK(out.defined(), ValueError, name, "forward returned an undefined tensor; expected defined outputs");
    bool nd = false;
    for (const Tensor& t : ctx->non_differentiable_) nd = nd || t.same(out);
    out = out.detach();
    differentiable.push_back(!nd && is_floating(out.dtype()));
  }
  if (!needs_grad(inputs)) return;  // also tells a checkpoint segment's tracker about the inputs

  std::vector<Tensor> recorded;
  std::vector<std::size_t> recorded_pos;
  std::vector<OutputMeta> metas;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    metas.push_back({outputs[i].shape(), outputs[i].dtype(), outputs[i].device()});
    if (differentiable[i]) {
      recorded.push_back(outputs[i]);
      recorded_pos.push_back(i);
    }
  }
  if (recorded.empty()) return;
  std::vector<Shape> in_shapes;
  std::vector<DType> in_dtypes;
  std::vector<Device> in_devices;
  for (const Tensor& t : inputs) {
    in_shapes.push_back(t.defined() ? t.shape() : Shape{});
    in_dtypes.push_back(t.defined() ? t.dtype() : DType::f32);
    in_devices.push_back(t.defined() ? t.device() : Device::cpu());
  }
  const std::size_t n_args = args_is_tensor.size();
  const amp::AutocastState autocast = amp::autocast_state();
  record(name, inputs, recorded,
         [ctx, args_is_tensor, metas, recorded_pos, in_shapes, in_dtypes, in_devices, n_args, autocast,
          backward](const GradList& g) {
           const char* nm = ctx->name_.c_str();
           // backward runs under the forward's autocast state (as PyTorch's custom_bwd), so
           // mixed f16/f32 saved tensors combine as they did in forward.
           amp::AutocastGuard guard(autocast.dtype, autocast.enabled);
           // One gradient per forward output: zeros where none (non-differentiable outputs).
           std::vector<Tensor> grads;
           for (const OutputMeta& m : metas) grads.push_back(zeros(m.shape, TensorOptions(m.dtype).device(m.device)));
           for (std::size_t j = 0; j < recorded_pos.size(); ++j)
             if (g[j].defined()) grads[recorded_pos[j]] = g[j];
           std::vector<Tensor> r = backward(ctx.get(), grads);
           const std::size_t n_tensors = in_shapes.size();
           CIUIC_CHECK(r.size() == n_args || r.size() == n_tensors, ValueError, nm, "backward returned ", r.size(),
                       " gradients; expected one per forward argument (", n_args, ") or per tensor argument (",
                       n_tensors, ")");
           GradList out;
           for (std::size_t i = 0, k = 0; i < n_args; ++i) {
             if (!args_is_tensor[i]) {
               if (r.size() == n_args)
                 CIUIC_CHECK(!r[i].defined(), ValueError, nm, "backward returned a gradient for argument ", i,
                             ", which is not a tensor; expected an undefined Tensor() there");
               continue;
             }
             Tensor gi = r[r.size() == n_args ? i : k];
             if (gi.defined()) {
               CIUIC_CHECK(gi.device() == in_devices[k], DeviceError, nm, "gradient ", describe(gi), " for input ", k,
                           " on ", in_devices[k].str(), "; expected the input's device");
               if (gi.shape() != in_shapes[k]) {
                 Shape b = broadcast_shapes(in_shapes[k], gi.shape(), nm);
                 CIUIC_CHECK(b == gi.shape(), ShapeError, nm, "gradient ", describe(gi), " for input ", k, " of shape ",
                             shape_str(in_shapes[k]), "; expected that shape or one it broadcasts to");
                 gi = sum_to(gi, in_shapes[k]);
               }
               if (gi.dtype() != in_dtypes[k]) gi = gi.to(in_dtypes[k]);
             }
             out.push_back(gi);
             ++k;
           }
           return out;
         });
}

}  // namespace detail

}  // namespace ciuic::autograd
