// embedding: rows of weight (V, C) picked by integer indices (any shape).
// out[i..., :] = weight[indices[i...], :]. Backward scatter-adds g's rows into
// zeros (V, C) in index order (row-major over indices), so repeated indices
// accumulate and the result is deterministic. f16/bf16 gradients are summed in
// f32 and rounded once.
#include <algorithm>
#include <cstring>

#include "acc_data.h"
#include "op_util.h"

namespace ciuic {

namespace {

// Indices as i64, contiguous; throws IndexError on the first value outside [0, V).
std::vector<std::int64_t> checked_indices(const Tensor& indices, const Tensor& weight) {
  const std::int64_t V = weight.shape()[0];
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
    CIUIC_CHECK(v >= 0 && v < V, IndexError, "embedding", "index ", v, " out of range for weight ", describe(weight),
                " (V = ", V, "); expected indices in [0, ", V, ")");
  return idx;
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  const char* op = "embedding";
  ops::check_defined(op, {{"weight", &weight}, {"indices", &indices}});
  ops::check_same_device(op, {{"weight", &weight}, {"indices", &indices}});
  ops::check_floating(op, "weight", weight);
  ops::check_dim_count(op, "weight", weight, 2);
  ops::check_index_dtype(op, "indices", indices);
  ops::require_cpu(op, {&weight, &indices});
  // A CUDA path goes here: if (weight.device().is_cuda()) return cuda gather + scatter-add backward.
  const std::int64_t V = weight.shape()[0], C = weight.shape()[1];
  std::vector<std::int64_t> idx = checked_indices(indices, weight);
  Shape out_shape = indices.shape();
  out_shape.push_back(C);
  Tensor w = ops::contiguous_data(weight);
  Tensor out = make_tensor(out_shape, weight.dtype(), weight.device());
  const std::size_t row_bytes = static_cast<std::size_t>(C) * weight.element_size();
  const auto* src = static_cast<const unsigned char*>(w.data_ptr());
  auto* dst = static_cast<unsigned char*>(out.data_ptr());
  for (std::size_t i = 0; i < idx.size() && row_bytes > 0; ++i)
    std::memcpy(dst + i * row_bytes, src + static_cast<std::size_t>(idx[i]) * row_bytes, row_bytes);
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
