// cumsum (CPU reference). The input is viewed as (outer, n, inner) contiguous rows along
// dim; every (outer, inner) line is summed in order. Integers accumulate in uint64 (so an
// overflow wraps, as the other integer ops do, instead of being undefined) and give i64;
// floating dtypes accumulate in double and keep their dtype. The backward is the reversed
// running sum of the gradient: d out_j / d x_i = [i <= j], so g_x[i] = sum_{j >= i} g[j].
#include "op_util.h"

namespace ciuic {

namespace {

// Running sums of a (any device checked by the caller) along d; reverse sums from the end.
Tensor running_sum(const char* op, const Tensor& a, std::int64_t d, bool reverse) {
  const DType out_dt = is_floating(a.dtype()) ? a.dtype() : DType::i64;
  Tensor x = a.detach().contiguous();
  if (x.dtype() == DType::boolean || x.dtype() == DType::u8 || x.dtype() == DType::i32) x = x.to(DType::i64);
  Tensor out = make_tensor(a.shape(), out_dt, Device::cpu());
  if (a.numel() == 0) return out;
  std::int64_t outer = 1, n = 1, inner = 1;
  if (a.dim() > 0) {
    for (std::int64_t i = 0; i < d; ++i) outer *= a.size(i);
    n = a.size(d);
    for (std::int64_t i = d + 1; i < a.dim(); ++i) inner *= a.size(i);
  }
  dispatch_dtype(out_dt, op, [&](auto tag) {
    using T = decltype(tag);
    using Acc = std::conditional_t<std::is_floating_point_v<acc_t<T>>, double, std::uint64_t>;
    const T* px = detail::typed_ptr<T>(x);
    T* po = detail::typed_ptr<T>(out);
    for (std::int64_t o = 0; o < outer; ++o)
      for (std::int64_t in = 0; in < inner; ++in) {
        Acc acc = 0;
        const std::int64_t base = o * n * inner + in;
        for (std::int64_t k = 0; k < n; ++k) {
          const std::int64_t j = base + (reverse ? n - 1 - k : k) * inner;
          if constexpr (std::is_floating_point_v<Acc>) {
            acc += static_cast<double>(static_cast<acc_t<T>>(px[j]));
            po[j] = convert<T>(acc);
          } else {
            acc += static_cast<std::uint64_t>(px[j]);
            po[j] = static_cast<T>(acc);
          }
        }
      }
  });
  return out;
}

}  // namespace

Tensor cumsum(const Tensor& a, std::int64_t dim) {
  ops::check_defined("cumsum", {{"input", &a}});
  const std::int64_t d = ops::wrap_dim("cumsum", dim, a);
  ops::require_cpu("cumsum", {&a});
  Tensor out = running_sum("cumsum", a, d, false);
  if (needs_grad({&a})) {
    record("cumsum", {a}, {out}, [d](const GradList& g) {
      return GradList{running_sum("cumsum_backward", g[0], d, true)};
    });
  }
  return out;
}

}  // namespace ciuic
