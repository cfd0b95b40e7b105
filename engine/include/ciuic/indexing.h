// PyTorch-style indexing: t.index({Slice(1, 3), 0, None, Ellipsis}) and
// t.index_put_({...}, value), as libtorch's torch::indexing.
//
//   using namespace ciuic::indexing;
//   Tensor row = x.index({1});                      // x[1]
//   Tensor blk = x.index({Slice(1, 3), Slice()});   // x[1:3, :]       (a view)
//   Tensor col = x.index({Ellipsis, -1, None});     // x[..., -1, None] (a view)
//   Tensor pick = x.index({ids});                   // x[ids], ids i32/i64: index_select (a copy)
//   Tensor sel = x.index({x > 0});                  // x[x > 0], a bool mask: masked_select (1-D copy)
//   x.index_put_({Slice(), 0}, 0.0);                // x[:, 0] = 0
//   x.index_put_({x < 0}, 0.0);                     // x[x < 0] = 0
//
// Integers and slices (negative bounds count from the end, out-of-range slice
// bounds clamp, step > 0), None (a new dim of size 1) and one Ellipsis give views
// that cost no copy and are differentiable. At most one tensor index: an integer
// tensor of any shape at dim d replaces that dim by its shape (index_select); a
// bool mask must be the only index and have the tensor's shape (masked_select).
#pragma once

#include <cstdint>
#include <optional>
#include <type_traits>

#include "ciuic/tensor.h"

namespace ciuic {

namespace indexing {
// None: a new dim of size 1; also an open slice bound, Slice(None, 3).
struct NoneIndex {
  template <typename T>
  constexpr operator std::optional<T>() const { return std::nullopt; }  // NOLINT: Slice(None, 3)
};
inline constexpr NoneIndex None{};
struct EllipsisIndex {};
inline constexpr EllipsisIndex Ellipsis{};

// [start, stop) by step; an absent bound is the start or the end of the dim.
struct Slice {
  std::optional<std::int64_t> start, stop;
  std::int64_t step = 1;
  Slice(std::optional<std::int64_t> start_ = std::nullopt, std::optional<std::int64_t> stop_ = std::nullopt,
        std::int64_t step_ = 1)
      : start(start_), stop(stop_), step(step_) {}
};
}  // namespace indexing

class TensorIndex {
 public:
  enum class Kind : std::uint8_t { integer, slice, none, ellipsis, tensor };
  template <typename I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
  TensorIndex(I i) : kind_(Kind::integer), integer_(static_cast<std::int64_t>(i)) {}  // NOLINT
  TensorIndex(indexing::Slice s) : kind_(Kind::slice), slice_(s) {}                    // NOLINT
  TensorIndex(indexing::NoneIndex) : kind_(Kind::none) {}                              // NOLINT
  TensorIndex(indexing::EllipsisIndex) : kind_(Kind::ellipsis) {}                      // NOLINT
  TensorIndex(Tensor t) : kind_(Kind::tensor), tensor_(std::move(t)) {}               // NOLINT

  Kind kind() const { return kind_; }
  std::int64_t integer() const { return integer_; }
  const indexing::Slice& slice() const { return slice_; }
  const Tensor& tensor() const { return tensor_; }

 private:
  Kind kind_;
  std::int64_t integer_ = 0;
  indexing::Slice slice_;
  Tensor tensor_;
};

}  // namespace ciuic
