// embedding: rows of weight (V, C) picked by integer indices (any shape).
// out[i..., :] = weight[indices[i...], :]. Backward scatter-adds g's rows into
// zeros (V, C) in index order (row-major over indices), so repeated indices
// accumulate and the result is deterministic. f16/bf16 gradients are summed in
// f32 and rounded once.
//
// Indices outside [0, V) give rows of nan and are skipped by backward; the first
// one is reported to the device's error slot and raised as an IndexError at the
// next sync point (ciuic/host_sync.h), on the CPU as on a GPU: no host read-back.
//
// On CUDA: the embedding kernels (the gather reports bad indices itself). The
// backward is the kernel's scatter-add: deterministic (index order, as the CPU) or
// atomic, as set_deterministic_embedding_backward (ciuic/backend_flags.h) says.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "acc_data.h"
#include "ciuic/backend_flags.h"
#include "ciuic/host_sync.h"
#include "op_util.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/embedding.h"
#include "ciuic/stream.h"
#endif

namespace ciuic {

namespace {

// Indices as i64, contiguous; the first value outside [0, V) is reported (deferred IndexError).
std::vector<std::int64_t> checked_indices(const Tensor& indices, const Tensor& weight) {
  const std::int64_t V = weight.shape()[0], C = weight.shape()[1];
  Tensor c = ops::contiguous_data(indices);
  std::vector<std::int64_t> idx(static_cast<std::size_t>(c.numel()));
  auto load = [&](auto tag) {
    using I = decltype(tag);
    const I* p = static_cast<const I*>(c.data_ptr());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::int64_t>(p[i]);
  };
  if (c.dtype() == DType::i32) load(std::int32_t{});
  else load(std::int64_t{});
  for (std::int64_t v : idx)
    if (v < 0 || v >= V) {
      detail::report_cpu_error(kernels::DeviceErrorCode::embedding_index, v, V, C);
      break;
    }
  return idx;
}

#ifdef CIUIC_WITH_CUDA
// idx: the indices, contiguous on weight's device; out: (idx..., C).
Tensor embedding_forward_cuda(const Tensor& weight, const Tensor& idx) {
  const std::int64_t V = weight.shape()[0], C = weight.shape()[1];
  const Device dev = weight.device();
  Tensor w = weight.detach().contiguous();
  Shape out_shape = idx.shape();
  out_shape.push_back(C);
  DeviceGuard guard(dev);
  Tensor out = make_tensor(out_shape, weight.dtype(), dev);
  kernels::embedding_forward(out.data_ptr(), w.data_ptr(), weight.dtype(), V, C, idx.data_ptr(), idx.dtype(),
                             idx.numel(), detail::device_error_slot(dev), current_stream(dev));
  detail::after_checked_op(dev);
  return out;
}

// grad_weight (V, C) from g (idx..., C).
Tensor embedding_backward_cuda(const Tensor& g, const Tensor& idx, std::int64_t V, std::int64_t C) {
  const Device dev = g.device();
  Tensor gc = g.detach().contiguous();
  DeviceGuard guard(dev);
  Tensor gw = make_tensor({V, C}, g.dtype(), dev);
  const bool det = deterministic_embedding_backward();
  const std::size_t bytes = kernels::embedding_backward_workspace_bytes(g.dtype(), V, C, idx.numel(), det);
  Tensor ws = ops::cuda_workspace(dev, bytes);
  kernels::embedding_backward(gw.data_ptr(), gc.data_ptr(), g.dtype(), V, C, idx.data_ptr(), idx.dtype(),
                              idx.numel(), det, ws.defined() ? ws.data_ptr() : nullptr, bytes, current_stream(dev));
  return gw;
}
#endif

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  const char* op = "embedding";
  ops::check_defined(op, {{"weight", &weight}, {"indices", &indices}});
  ops::check_same_device(op, {{"weight", &weight}, {"indices", &indices}});
  ops::check_floating(op, "weight", weight);
  ops::check_dim_count(op, "weight", weight, 2);
  ops::check_index_dtype(op, "indices", indices);
  const std::int64_t V = weight.shape()[0], C = weight.shape()[1];
#ifdef CIUIC_WITH_CUDA
  if (weight.device().is_cuda()) {
    Tensor idx = indices.detach().clone();  // a private copy: later in-place changes do not reach backward
    Tensor out = embedding_forward_cuda(weight, idx);
    if (needs_grad({&weight}))
      record(op, {weight, indices}, {out}, [idx, V, C](const GradList& g) {
        return GradList{embedding_backward_cuda(g[0], idx, V, C), Tensor()};
      });
    return out;
  }
#endif
  std::vector<std::int64_t> idx = checked_indices(indices, weight);
  Shape out_shape = indices.shape();
  out_shape.push_back(C);
  Tensor w = ops::contiguous_data(weight);
  Tensor out = make_tensor(out_shape, weight.dtype(), weight.device());
  const std::size_t row_bytes = static_cast<std::size_t>(C) * weight.element_size();
  const auto* src = static_cast<const unsigned char*>(w.data_ptr());
  auto* dst = static_cast<unsigned char*>(out.data_ptr());
  bool any_bad = false;
  for (std::size_t i = 0; i < idx.size() && row_bytes > 0; ++i) {
    if (idx[i] < 0 || idx[i] >= V) {
      any_bad = true;  // a row of nan, as the CUDA kernel writes
      continue;
    }
    std::memcpy(dst + i * row_bytes, src + static_cast<std::size_t>(idx[i]) * row_bytes, row_bytes);
  }
  if (any_bad) {
    dispatch_floating(weight.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      T* o = static_cast<T*>(out.data_ptr());
      for (std::size_t i = 0; i < idx.size(); ++i)
        if (idx[i] < 0 || idx[i] >= V)
          for (std::int64_t j = 0; j < C; ++j) o[static_cast<std::int64_t>(i) * C + j] = convert<T>(NAN);
    });
  }
  detail::after_checked_op(weight.device());
  if (!needs_grad({&weight})) return out;

  const DType dt = weight.dtype();
  const Device dev = weight.device();
  auto shared_idx = std::make_shared<const std::vector<std::int64_t>>(std::move(idx));
  record(op, {weight, indices}, {out}, [=](const GradList& g) {
    Tensor gw;
    dispatch_floating(dt, op, [&](auto tag) {
      using T = decltype(tag);
      ops::AccIn<T> gi(g[0]);
      ops::AccOut<T> acc({V, C}, dev);
      auto* a = acc.data();
      const auto* gp = gi.data();
      for (std::size_t i = 0; i < shared_idx->size(); ++i) {
        if ((*shared_idx)[i] < 0 || (*shared_idx)[i] >= V) continue;  // reported by the forward
        auto* row = a + (*shared_idx)[i] * C;
        const auto* gr = gp + static_cast<std::int64_t>(i) * C;
        for (std::int64_t j = 0; j < C; ++j) row[j] += gr[j];
      }
      gw = acc.finish();
    });
    return GradList{gw, Tensor()};
  });
  return out;
}

}  // namespace ciuic
