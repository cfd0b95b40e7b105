// [kernels] The host-callable parts of the hand-written CUDA kernels, on the CPU:
// the per-element math functors (elementwise_math.h) against independent std::
// formulas and numerical derivatives in f64, strided_offset on tricky layouts, the
// dropout keep rule against the CPU rule, the launch partitions (launch_plan.h), and
// the reduction merges (reduce_math.h) run through a CPU copy of the kernels'
// warp/block reduction tree. In CUDA builds also the launchers' argument checks,
// which throw before touching a GPU.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "ciuic/dropout_mask.h"
#include "ciuic/kernels/elementwise_math.h"
#include "ciuic/kernels/launch_plan.h"
#include "ciuic/kernels/reduce_math.h"
#include "ciuic/philox.h"
#include "ciuic/strided.h"
#include "test_util.h"

#if defined(CIUIC_WITH_CUDA)
#include "ciuic/kernels/cross_entropy.h"
#include "ciuic/kernels/dropout.h"
#include "ciuic/kernels/elementwise.h"
#include "ciuic/kernels/embedding.h"
#include "ciuic/kernels/layernorm.h"
#include "ciuic/kernels/reduce.h"
#include "ciuic/kernels/softmax.h"
#endif

using namespace ciuic;
using namespace ciuic::kernels;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Sample points covering both signs, tiny, moderate and large magnitudes.
std::vector<double> sample_points() {
  std::vector<double> xs;
  for (double x = -8.0; x <= 8.0; x += 0.0625) xs.push_back(x);
  for (double x : {1e-8, -1e-8, 1e-3, -1e-3, 15.5, -15.5, 30.0, -30.0}) xs.push_back(x);
  return xs;
}

bool close(double a, double b, double rel, double abs_tol = 0) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= abs_tol + rel * std::max(std::fabs(a), std::fabs(b));
}

// Central difference of f at x in f64.
template <typename F>
double numeric_grad(F f, double x) {
  const double h = 1e-5 * std::max(1.0, std::fabs(x));
  return (f(x + h) - f(x - h)) / (2 * h);
}

}  // namespace

// ---------------------------------------------------------------------------
// elementwise math
// ---------------------------------------------------------------------------

TEST_CASE("unary functors match independent std:: formulas in f64", "[kernels]") {
  for (double x : sample_points()) {
    INFO("x = " << x);
    CHECK(math::Neg<double>{}(x) == -x);
    CHECK(close(math::Exp<double>{}(x), std::exp(x), 1e-15));
    CHECK(close(math::Tanh<double>{}(x), std::tanh(x), 1e-15));
    CHECK(close(math::Abs<double>{}(x), std::fabs(x), 0));
    CHECK(math::Relu<double>{}(x) == std::max(x, 0.0));
    // sigmoid, computed another way: e^x / (1 + e^x) below 0, (1 + tanh(x/2)) / 2 above (no cancellation)
    const double sig = x < 0 ? std::exp(x) / (1 + std::exp(x)) : 0.5 * (1 + std::tanh(0.5 * x));
    CHECK(close(math::Sigmoid<double>{}(x), sig, 1e-13, 1e-300));
    CHECK(close(math::Silu<double>{}(x), x * sig, 1e-13, 1e-300));
    // the CPU reference's forms (erf, tanh), where they do not cancel (x > -3)
    const double k = std::sqrt(2.0 / 3.14159265358979323846);
    if (x > -3) {
      CHECK(close(math::GeluErf<double>{}(x), 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))), 1e-12, 1e-15));
      CHECK(close(math::GeluTanh<double>{}(x), 0.5 * x * (1 + std::tanh(k * (x + 0.044715 * std::pow(x, 3)))),
                  1e-13, 1e-15));
    }
    // everywhere: the tails against asymptotics (x Phi(x) ~ x phi(x) / |x| (1 - 1/x^2) for x -> -inf)
    if (x < -6) {
      const double phi = std::exp(-0.5 * x * x) / std::sqrt(2 * 3.14159265358979323846);
      CHECK(close(math::GeluErf<double>{}(x), -phi * (1 - 1 / (x * x) + 3 / (x * x * x * x)), 2e-3));
    }
    CHECK(close(math::AddScalar<double>{1.25}(x), x + 1.25, 0));
    CHECK(close(math::MulScalar<double>{-3}(x), -3 * x, 0));
    CHECK(close(math::DivScalar<double>{4}(x), x / 4, 0));
    CHECK(close(math::RSubScalar<double>{2}(x), 2 - x, 0));
    if (x != 0) CHECK(close(math::RDivScalar<double>{2}(x), 2 / x, 0));
    CHECK(math::Clamp<double>{-1.5, 2.0}(x) == std::min(std::max(x, -1.5), 2.0));
    if (x > 0) {
      CHECK(close(math::Log<double>{}(x), std::log(x), 1e-15, 1e-300));
      CHECK(close(math::Sqrt<double>{}(x), std::sqrt(x), 1e-15));
      CHECK(close(math::Rsqrt<double>{}(x), std::pow(x, -0.5), 1e-15));
      CHECK(close(math::PowScalar<double>{2.5}(x), std::exp(2.5 * std::log(x)), 1e-13));
    }
  }
}

TEST_CASE("unary functors: special values follow the CPU reference", "[kernels]") {
  CHECK(std::isnan(math::Relu<double>{}(kNaN)));  // nan propagates, as in PyTorch
  CHECK(std::isnan(math::Relu<float>{}(static_cast<float>(kNaN))));
  CHECK(math::Relu<float>{}(-0.0f) == 0.0f);
  CHECK(math::Sigmoid<float>{}(-1000.0f) == 0.0f);  // exp overflow gives 1/inf = 0, not nan
  CHECK(math::Sigmoid<float>{}(1000.0f) == 1.0f);
  CHECK(math::Silu<float>{}(-1000.0f) == 0.0f);
  CHECK(math::Silu<float>{}(1000.0f) == 1000.0f);
  CHECK(math::GeluTanh<float>{}(-100.0f) == 0.0f);
  CHECK(math::GeluErf<float>{}(100.0f) == 100.0f);
  CHECK(math::Clamp<double>{-kInf, 3.0}(-1e300) == -1e300);
  CHECK(std::isnan(math::Clamp<double>{-1, 1}(kNaN)));
  CHECK(std::isinf(math::Log<double>{}(0.0)));
  CHECK(std::isnan(math::Sqrt<double>{}(-1.0)));
  // maximum / minimum: a nan on either side gives nan (as PyTorch), ties give x
  CHECK(math::Maximum<double>{}(2, 2) == 2);
  CHECK(std::isnan(math::Maximum<double>{}(kNaN, 1)));
  CHECK(std::isnan(math::Maximum<double>{}(1, kNaN)));
  CHECK(std::isnan(math::Minimum<double>{}(kNaN, 1)));
  CHECK(std::isnan(math::Minimum<float>{}(1.0f, static_cast<float>(kNaN))));
  CHECK(math::Maximum<std::int64_t>{}(-3, 5) == 5);
  CHECK(math::Minimum<std::int32_t>{}(-3, 5) == -3);
  // dropout: dropped elements are exactly 0 even for inf / nan
  CHECK(math::dropout_value(kInf, false, 2.0) == 0.0);
  CHECK(math::dropout_value(kNaN, false, 2.0) == 0.0);
  CHECK(math::dropout_value(3.0, true, 2.0) == 6.0);
}

TEST_CASE("binary functors match std:: in f64", "[kernels]") {
  const auto xs = sample_points();
  for (std::size_t i = 0; i < xs.size(); i += 3) {
    for (std::size_t j = 1; j < xs.size(); j += 7) {
      const double x = xs[i], y = xs[j];
      INFO("x = " << x << ", y = " << y);
      CHECK(math::Add<double>{}(x, y) == x + y);
      CHECK(math::Sub<double>{}(x, y) == x - y);
      CHECK(math::Mul<double>{}(x, y) == x * y);
      if (y != 0) CHECK(math::Div<double>{}(x, y) == x / y);
      if (x > 0) CHECK(close(math::Pow<double>{}(x, y), std::exp(y * std::log(x)), 1e-12, 1e-300));
      CHECK(math::Maximum<double>{}(x, y) == std::max(x, y));
      CHECK(math::Minimum<double>{}(x, y) == std::min(x, y));
    }
  }
}

TEST_CASE("backward functors equal numerical derivatives of their forward functors", "[kernels]") {
  const double g = 1.75;
  for (double x : sample_points()) {
    if (std::fabs(x) > 10) continue;  // keep the finite differences well conditioned
    INFO("x = " << x);
    auto fd = [&](auto f) { return g * numeric_grad([&](double v) { return f(v); }, x); };
    CHECK(close(math::GeluTanhBackward<double>{}(g, x), fd(math::GeluTanh<double>{}), 1e-7, 1e-9));
    CHECK(close(math::GeluErfBackward<double>{}(g, x), fd(math::GeluErf<double>{}), 1e-7, 1e-9));
    CHECK(close(math::SiluBackward<double>{}(g, x), fd(math::Silu<double>{}), 1e-7, 1e-9));
    const double y_tanh = std::tanh(x), y_sig = 1 / (1 + std::exp(-x));
    CHECK(close(math::TanhBackwardFromOut<double>{}(g, y_tanh), fd(math::Tanh<double>{}), 1e-7, 1e-9));
    CHECK(close(math::SigmoidBackwardFromOut<double>{}(g, y_sig), fd(math::Sigmoid<double>{}), 1e-7, 1e-9));
    if (std::fabs(x) > 1e-3) {  // away from the kinks
      CHECK(close(math::ReluBackward<double>{}(g, x), fd(math::Relu<double>{}), 1e-7, 1e-9));
      CHECK(close(math::AbsBackward<double>{}(g, x), fd(math::Abs<double>{}), 1e-7, 1e-9));
    }
    if (std::fabs(x - 1) > 1e-3 && std::fabs(x + 1) > 1e-3)
      CHECK(close(math::ClampBackward<double>{-1, 1}(g, x), fd(math::Clamp<double>{-1, 1}), 1e-7, 1e-9));
  }
  // conventions at the kinks (as the CPU reference and PyTorch)
  CHECK(math::ReluBackward<double>{}(g, 0.0) == 0.0);
  CHECK(math::AbsBackward<double>{}(g, 0.0) == 0.0);
  CHECK(math::AbsBackward<double>{}(g, -2.0) == -g);
  CHECK(math::ClampBackward<double>{-1, 1}(g, 1.0) == g);   // inclusive bounds
  CHECK(math::ClampBackward<double>{-1, 1}(g, -1.0) == g);
  CHECK(math::ClampBackward<double>{-1, 1}(g, 1.0000001) == 0.0);
}

TEST_CASE("f32 functors agree with their f64 versions", "[kernels]") {
  // The GPU computes f32/f16/bf16 in float: the float formulas must be well conditioned.
  for (double xd : sample_points()) {
    const float x = static_cast<float>(xd);
    const double xr = x;  // the exact f32 input
    INFO("x = " << x);
    // relative accuracy, also in the tails. The Gaussian-like tails have a condition number
    // ~ x^2 (d log f / d log x), so the bound grows with it: f32 rounding of x + c x^3 alone
    // moves gelu(-8) by ~1e-5 relative.
    const double rel = 2e-6 * (1 + xr * xr);
    auto chk = [&](float got, double want) { CHECK(close(got, want, rel, 1e-30)); };
    chk(math::Exp<float>{}(x), math::Exp<double>{}(xr));
    chk(math::Tanh<float>{}(x), math::Tanh<double>{}(xr));
    chk(math::Sigmoid<float>{}(x), math::Sigmoid<double>{}(xr));
    chk(math::Silu<float>{}(x), math::Silu<double>{}(xr));
    chk(math::GeluTanh<float>{}(x), math::GeluTanh<double>{}(xr));
    chk(math::GeluErf<float>{}(x), math::GeluErf<double>{}(xr));
    // the derivatives cross zero near x = -0.75 (GELU) and x = -1.28 (SiLU), where only an
    // absolute bound on the scale of their O(1) terms makes sense
    auto chk_grad = [&](float got, double want) { CHECK(close(got, want, rel, std::fabs(x) < 2 ? 2e-7 : 1e-30)); };
    chk_grad(math::GeluTanhBackward<float>{}(1.0f, x), math::GeluTanhBackward<double>{}(1.0, xr));
    chk_grad(math::GeluErfBackward<float>{}(1.0f, x), math::GeluErfBackward<double>{}(1.0, xr));
    chk_grad(math::SiluBackward<float>{}(1.0f, x), math::SiluBackward<double>{}(1.0, xr));
    if (x > 0) {
      chk(math::Log<float>{}(x), math::Log<double>{}(xr));
      chk(math::Rsqrt<float>{}(x), math::Rsqrt<double>{}(xr));
    }
  }
}

// ---------------------------------------------------------------------------
// strided_offset
// ---------------------------------------------------------------------------

namespace {

StridedLayout make_layout(std::vector<std::int64_t> shape, std::vector<std::int64_t> strides) {
  StridedLayout l;
  l.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < l.ndim; ++d) {
    l.shape[d] = shape[d];
    l.strides[d] = strides[d];
  }
  return l;
}

// Offsets of every element in row-major order, by explicit multi-index counting.
std::vector<std::int64_t> naive_offsets(const StridedLayout& l) {
  std::int64_t n = 1;
  for (int d = 0; d < l.ndim; ++d) n *= l.shape[d];
  std::vector<std::int64_t> out;
  std::vector<std::int64_t> idx(static_cast<std::size_t>(l.ndim), 0);
  for (std::int64_t k = 0; k < n; ++k) {
    std::int64_t off = 0;
    for (int d = 0; d < l.ndim; ++d) off += idx[d] * l.strides[d];
    out.push_back(off);
    for (int d = l.ndim - 1; d >= 0; --d) {
      if (++idx[d] < l.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("strided_offset matches explicit indexing on tricky layouts", "[kernels]") {
  const std::vector<StridedLayout> layouts = {
      make_layout({}, {}),                                   // 0-dim scalar
      make_layout({7}, {1}),                                 // contiguous
      make_layout({7}, {3}),                                 // sliced with step
      make_layout({5, 3}, {1, 5}),                           // transposed (5, 3) of a (3, 5)
      make_layout({4, 6}, {0, 1}),                           // broadcast rows (stride 0)
      make_layout({4, 6}, {1, 0}),                           // broadcast columns
      make_layout({1, 9, 1}, {1000, 2, -77}),                // size-1 dims with arbitrary strides
      make_layout({2, 3, 4}, {12, -4, 1}),                   // negative stride (a flipped view)
      make_layout({3, 1, 2, 5}, {1, 0, 15, 3}),              // permuted with a broadcast dim
      make_layout({2, 2, 2, 2, 2, 2, 2, 3}, {1, 2, 4, 8, 16, 32, 64, 128}),  // kMaxDims, column-major-ish
      make_layout({31, 33}, {34, 1}),                        // padded rows (a narrowed view)
  };
  for (const auto& l : layouts) {
    INFO("ndim " << l.ndim);
    const auto want = naive_offsets(l);
    for (std::size_t i = 0; i < want.size(); ++i) CHECK(strided_offset(l, static_cast<std::int64_t>(i)) == want[i]);
  }
  CHECK(layout_is_contiguous(make_layout({}, {})));
  CHECK(layout_is_contiguous(make_layout({3, 1, 4}, {4, 999, 1})));  // size-1 dims do not matter
  CHECK(!layout_is_contiguous(make_layout({5, 3}, {1, 5})));
  CHECK(!layout_is_contiguous(make_layout({4, 6}, {0, 1})));  // broadcast is never contiguous
  CHECK(!layout_is_contiguous(make_layout({31, 33}, {34, 1})));
  // large linear indices (beyond 2^31)
  const StridedLayout big = make_layout({3, 1 << 20, 1 << 10}, {1, 3, 3 << 20});
  const std::int64_t i = (2LL << 30) + (12345LL << 10) + 678;
  CHECK(strided_offset(big, i) == 2 * 1 + 12345 * 3 + 678 * (3LL << 20));
}

// ---------------------------------------------------------------------------
// dropout
// ---------------------------------------------------------------------------

TEST_CASE("dropout keep rule equals the CPU rule philox_uniform >= p", "[kernels]") {
  for (double p : {0.0, 1e-7, 0.1, 1.0 / 3.0, 0.5, 0.9, 0.9999999, 1.0}) {
    const std::uint32_t thr = dropout_threshold(p);
    for (std::uint64_t seed : {0ULL, 42ULL, 0xFFFFFFFFFFFFFFFFULL}) {
      for (std::uint64_t first : {0ULL, 1000ULL, 0xFFFFFFF0ULL, (1ULL << 40) + 3}) {  // crossing 2^32 in the counter
        std::int64_t kept = 0;
        const int n = 4099;
        for (int i = 0; i < n; ++i) {
          const std::uint64_t idx = first + static_cast<std::uint64_t>(i);
          const bool cpu_rule = philox_uniform(seed, idx) >= p;
          const bool kernel_rule = dropout_keep(seed, idx, thr);
          if (cpu_rule != kernel_rule) {
            FAIL("p " << p << " seed " << seed << " index " << idx << ": CPU rule " << cpu_rule << ", kernel rule "
                      << kernel_rule);
          }
          kept += kernel_rule;
        }
        if (p == 0) CHECK(kept == n);
        if (p == 1) CHECK(kept == 0);
        if (p == 0.5) CHECK(std::abs(kept - n / 2) < 200);  // ~6 sigma
      }
    }
  }
  // Exact threshold semantics around k / 2^24.
  const double p = 1234567.0 / 16777216.0;
  CHECK(dropout_threshold(p) == 1234567u);
  CHECK(dropout_threshold(std::nextafter(p, 1.0)) == 1234568u);
}

// ---------------------------------------------------------------------------
// launch partitions
// ---------------------------------------------------------------------------

TEST_CASE("vector split and grid sizes cover every element once", "[kernels]") {
  for (int width : {2, 4, 8}) {
    for (std::int64_t n : {0LL, 1LL, 7LL, 8LL, 31LL, 1000003LL}) {
      const auto sp = plan::vec_split(n, width);
      CHECK(sp.vectors * width == sp.tail_begin);
      CHECK(sp.tail_begin <= n);
      CHECK(n - sp.tail_begin < width);
      CHECK(n - sp.tail_begin < 256);  // the tail fits in block 0 of the vector kernels
    }
  }
  CHECK(plan::vec_width(4) == 4);
  CHECK(plan::vec_width(2) == 8);
  CHECK(plan::vec_width(8) == 2);
  CHECK(plan::grid_blocks(0, 256) == 1);
  CHECK(plan::grid_blocks(257, 256) == 2);
  CHECK(plan::grid_blocks(1LL << 40, 256) == plan::kMaxGrid);
  CHECK(plan::row_group_threads(1) == 32);
  CHECK(plan::row_group_threads(1024) == 32);
  CHECK(plan::row_group_threads(1025) == 256);
  CHECK(plan::row_group_threads(50257) == 1024);
  CHECK(plan::rows_per_block(32) * 32 == plan::kRowBlockThreads);
  CHECK(plan::rows_per_block(256) == 1);
  // every row launch stays within its instantiation's __launch_bounds__, and the
  // warp-mode bound is no larger than the 128 threads that mode launches
  for (std::int64_t len : {1LL, 31LL, 1024LL, 1025LL, 8192LL, 8193LL, 50257LL}) {
    const int g = plan::row_group_threads(len);
    const bool warp = g == 32;
    const int block = warp ? plan::kRowBlockThreads : g;
    CHECK(block <= plan::row_threads_bound(warp));
  }
  CHECK(plan::row_threads_bound(true) == plan::kRowBlockThreads);
  CHECK(plan::row_threads_bound(false) == 1024);
}

TEST_CASE("reduce plans split the reduced dim into disjoint covering chunks", "[kernels]") {
  const std::int64_t sizes[] = {0, 1, 7, 31, 1000, 1025, 16384, 16385, 100000, 1000003};
  for (std::int64_t outer : {0LL, 1LL, 3LL, 1000LL}) {
    for (std::int64_t reduce : sizes) {
      for (std::int64_t inner : {1LL, 2LL, 33LL, 5000LL}) {
        INFO("outer " << outer << " reduce " << reduce << " inner " << inner);
        const auto p = plan::plan_reduce(outer, reduce, inner);
        CHECK(p.cols == outer * inner);
        CHECK(p.rows_mode == (inner == 1));
        CHECK(p.splits >= 1);
        if (reduce == 0) {
          CHECK(p.splits == 1);
          continue;
        }
        CHECK(p.splits * p.chunk >= reduce);
        CHECK((p.splits - 1) * p.chunk < reduce);  // no empty split
        std::int64_t covered = 0, expect_begin = 0;
        for (std::int64_t s = 0; s < p.splits; ++s) {
          const auto r = plan::split_range(reduce, p.chunk, s);
          CHECK(r.begin == expect_begin);
          CHECK(r.end > r.begin);
          covered += r.end - r.begin;
          expect_begin = r.end;
        }
        CHECK(covered == reduce);
        if (p.rows_mode) {
          CHECK(p.group_threads == plan::row_group_threads(reduce));
          if (p.group_threads == 32) CHECK(p.splits == 1);
        }
      }
    }
  }
  // a full reduction of a large tensor is split across blocks
  CHECK(plan::plan_reduce(1, 1000003, 1).splits > 1);
  CHECK(plan::plan_reduce(1, 1000003, 2).splits > 1);
  CHECK(plan::plan_reduce(100000, 1000, 1).splits == 1);
}

TEST_CASE("column-sum chunk plans cover every row once", "[kernels]") {
  for (std::int64_t rows : {0LL, 1LL, 15LL, 16LL, 17LL, 4099LL, 100000LL}) {
    for (std::int64_t cols : {1LL, 7LL, 768LL, 200000LL}) {
      const auto p = plan::plan_column_sum(rows, cols);
      INFO("rows " << rows << " cols " << cols);
      CHECK(p.chunks >= 1);
      if (rows == 0) continue;
      CHECK(p.chunks * p.rows_per_chunk >= rows);
      CHECK((p.chunks - 1) * p.rows_per_chunk < rows);
      CHECK(p.chunks <= plan::ceil_div(rows, plan::kColumnSumMinRows));  // chunks are not tiny
    }
  }
  CHECK(plan::emb_owner(0) == 0);
  CHECK(plan::emb_owner(plan::kEmbRowsPerBlock - 1) == 0);
  CHECK(plan::emb_owner(plan::kEmbRowsPerBlock) == 1);
}

// ---------------------------------------------------------------------------
// reduction merges through a CPU copy of the kernels' reduction tree
// ---------------------------------------------------------------------------

namespace {

// What a RowGroup of G threads computes (kernel_common.cuh): thread t pushes j = t,
// t + G, ...; each warp reduces with shfl_down offsets 16..1 (out-of-range lanes
// read their own value); G > 32: warp 0 reduces the warps' results, missing lanes
// holding the empty state.
template <typename S, typename Push, typename Merge>
S emulate_group(std::int64_t n, int G, Push push, Merge merge) {
  std::vector<S> st(static_cast<std::size_t>(G));
  for (int t = 0; t < G; ++t)
    for (std::int64_t j = t; j < n; j += G) st[t] = push(st[t], j);
  auto warp = [&](std::vector<S> lanes) {  // 32 lanes -> lane 0
    for (int o = 16; o > 0; o >>= 1) {
      std::vector<S> next = lanes;
      for (int l = 0; l < 32; ++l) next[l] = merge(lanes[l], l + o < 32 ? lanes[l + o] : lanes[l]);
      lanes = next;
    }
    return lanes[0];
  };
  std::vector<S> warp_results;
  for (int w = 0; w < G / 32; ++w) warp_results.push_back(warp(std::vector<S>(st.begin() + 32 * w, st.begin() + 32 * w + 32)));
  if (G == 32) return warp_results[0];
  std::vector<S> lanes(32);
  for (std::size_t w = 0; w < warp_results.size(); ++w) lanes[w] = warp_results[w];
  return warp(lanes);
}

std::vector<double> random_values(std::int64_t n, unsigned seed, double lo = -5, double hi = 5) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace

TEST_CASE("Welford through the reduction tree equals the two-pass variance", "[kernels]") {
  for (std::int64_t n : {1LL, 2LL, 7LL, 31LL, 1000LL, 5003LL}) {
    for (int G : {32, 256, 1024}) {
      INFO("n " << n << " G " << G);
      const auto v = random_values(n, static_cast<unsigned>(n * 7 + G), 2.0, 9.0);  // offset mean: a harder case
      double mean = 0;
      for (double x : v) mean += x;
      mean /= static_cast<double>(n);
      double m2 = 0;
      for (double x : v) m2 += (x - mean) * (x - mean);
      const auto s = emulate_group<WelfordState<double>>(
          n, G, [&](WelfordState<double> st, std::int64_t j) { return welford_push(st, v[j]); },
          [](auto a, auto b) { return welford_merge(a, b); });
      CHECK(s.n == n);
      CHECK(close(s.mean, mean, 1e-13));
      CHECK(close(s.m2, m2, 1e-11, 1e-13));
      CHECK(close(welford_variance(s, 1), n > 1 ? m2 / static_cast<double>(n - 1) : kNaN, 1e-11, 1e-13));
      // the f32 state stays accurate too
      const auto sf = emulate_group<WelfordState<float>>(
          n, G, [&](WelfordState<float> st, std::int64_t j) { return welford_push(st, static_cast<float>(v[j])); },
          [](auto a, auto b) { return welford_merge(a, b); });
      CHECK(close(sf.mean, mean, 1e-5));
      CHECK(close(sf.m2, m2, 1e-4, 1e-5));
    }
  }
  WelfordState<double> empty;
  CHECK(std::isnan(welford_variance(empty, 0)));                     // no elements: 0 / 0
  CHECK(std::isnan(welford_variance(welford_push(empty, 3.0), 1)));  // one element, correction 1: 0 / 0
  CHECK(std::isinf(welford_variance(welford_push(welford_push(empty, 1.0), 3.0), 2)));  // m2 = 2, denominator 0
}

TEST_CASE("argmax merge through the reduction tree returns the first max, nan first", "[kernels]") {
  for (std::int64_t n : {1LL, 7LL, 31LL, 33LL, 1000LL, 4097LL}) {
    for (int G : {32, 256, 1024}) {
      INFO("n " << n << " G " << G);
      // few distinct values: many ties
      std::vector<double> v = random_values(n, static_cast<unsigned>(n + G));
      for (auto& x : v) x = std::floor(x);
      auto run = [&](const std::vector<double>& vals) {
        return emulate_group<ArgMaxState<double>>(
            n, G, [&](ArgMaxState<double> st, std::int64_t j) { return argmax_push(st, vals[j], j); },
            [](auto a, auto b) { return argmax_merge(a, b); });
      };
      // sequential CPU rule (reduce_minmax.cpp): strictly greater or first nan
      auto seq = [&](const std::vector<double>& vals) {
        std::int64_t best = 0;
        for (std::int64_t j = 1; j < n; ++j)
          if (vals[j] > vals[best] || (std::isnan(vals[j]) && !std::isnan(vals[best]))) best = j;
        return best;
      };
      auto s = run(v);
      CHECK(s.i == seq(v));
      CHECK(s.v == v[s.i]);
      if (n > 5) {
        v[n - 2] = kNaN;
        v[n / 2] = kNaN;
        s = run(v);
        CHECK(s.i == n / 2);
        CHECK(std::isnan(s.v));
      }
    }
  }
  // integer compare type
  ArgMaxState<std::int64_t> a, b;
  a = argmax_push(a, std::int64_t{5}, 3);
  b = argmax_push(b, std::int64_t{5}, 1);
  CHECK(argmax_merge(a, b).i == 1);
  CHECK(argmax_merge(a, ArgMaxState<std::int64_t>{}).i == 3);
}

TEST_CASE("online softmax state through the reduction tree equals max and sum exp", "[kernels]") {
  for (std::int64_t n : {1LL, 7LL, 31LL, 1000LL, 1025LL, 20000LL}) {
    for (int G : {32, 256, 1024}) {
      INFO("n " << n << " G " << G);
      auto v = random_values(n, static_cast<unsigned>(3 * n + G), -30, 30);
      if (n > 3) v[1] = -kInf;  // -inf entries contribute 0
      double m = -kInf;
      for (double x : v) m = std::max(m, x);
      double s = 0;
      for (double x : v) s += std::exp(x - m);
      auto push = [&](SoftmaxState<double> st, std::int64_t j) { return softmax_push(st, v[j]); };
      auto merge = [](auto a, auto b) { return softmax_merge(a, b); };
      const auto st = emulate_group<SoftmaxState<double>>(n, G, push, merge);
      CHECK(st.m == m);
      CHECK(close(st.s, s, 1e-13));
      CHECK(close(softmax_logsumexp(st), m + std::log(s), 1e-14));
      // float state
      const auto sf = emulate_group<SoftmaxState<float>>(
          n, G, [&](SoftmaxState<float> a, std::int64_t j) { return softmax_push(a, static_cast<float>(v[j])); },
          merge);
      CHECK(close(softmax_logsumexp(sf), m + std::log(s), 1e-6));
    }
  }
  // all -inf: m = -inf, s = 0 (the kernel then writes nan, as the CPU reference)
  SoftmaxState<double> st;
  st = softmax_push(st, -kInf);
  st = softmax_merge(st, softmax_push(SoftmaxState<double>{}, -kInf));
  CHECK(st.m == -kInf);
  CHECK(st.s == 0);
  CHECK(std::isnan(std::exp(-kInf - st.m) / st.s));
  // a nan poisons the state wherever it lands in the tree
  SoftmaxState<double> a = softmax_push(softmax_push(SoftmaxState<double>{}, 1.0), kNaN);
  CHECK(std::isnan(a.s));
  CHECK(std::isnan(softmax_merge(softmax_push(SoftmaxState<double>{}, 5.0), a).s));
  CHECK(std::isnan(softmax_merge(a, softmax_push(SoftmaxState<double>{}, 5.0)).s));
  SoftmaxState<double> b = softmax_push(SoftmaxState<double>{}, kNaN);  // nan as the first element
  CHECK(std::isnan(softmax_merge(softmax_push(SoftmaxState<double>{}, 5.0), b).s));
}

TEST_CASE("online softmax: a +inf anywhere in the row makes the state nan in every lane split", "[kernels]") {
  // The review's case: C = 33, x[0] = +inf, x[32] = 3, the rest -inf; the CPU
  // reference (and PyTorch) gives a row of nan. Also +inf next to finite values,
  // twice, and as the last element, for every group size of the kernels.
  std::vector<std::vector<double>> rows;
  std::vector<double> r1(33, -kInf);
  r1[0] = kInf;
  r1[32] = 3;
  rows.push_back(r1);
  auto r2 = random_values(100, 5, -3, 3);
  r2[41] = kInf;
  rows.push_back(r2);
  auto r3 = r2;
  r3[99] = kInf;
  rows.push_back(r3);
  auto r4 = random_values(1025, 6, -3, 3);
  r4[1024] = kInf;
  rows.push_back(r4);
  for (const auto& v : rows) {
    const auto n = static_cast<std::int64_t>(v.size());
    // the CPU reference's arithmetic: m = inf, s = sum exp(x - m) = nan
    double m = -kInf, s = 0;
    for (double x : v) m = std::max(m, x);
    for (double x : v) s += std::exp(x - m);
    REQUIRE(std::isnan(s));
    for (int G : {32, 64, 256, 1024}) {  // the emulator models whole warps
      INFO("n " << n << " G " << G);
      auto push = [&](SoftmaxState<double> st, std::int64_t j) { return softmax_push(st, v[j]); };
      auto merge = [](auto a, auto b) { return softmax_merge(a, b); };
      const auto st = emulate_group<SoftmaxState<double>>(n, G, push, merge);
      CHECK(std::isnan(st.s));
      CHECK(std::isnan(softmax_logsumexp(st)));
      const auto sf = emulate_group<SoftmaxState<float>>(
          n, G, [&](SoftmaxState<float> a, std::int64_t j) { return softmax_push(a, static_cast<float>(v[j])); },
          merge);
      CHECK(std::isnan(sf.s));
    }
  }
  // merging in either order, with an empty or a finite state
  SoftmaxState<double> inf_st = softmax_push(SoftmaxState<double>{}, kInf);
  SoftmaxState<double> fin = softmax_push(SoftmaxState<double>{}, 3.0);
  CHECK(std::isnan(softmax_merge(inf_st, fin).s));
  CHECK(std::isnan(softmax_merge(fin, inf_st).s));
  CHECK(std::isnan(softmax_merge(SoftmaxState<double>{}, inf_st).s));
  CHECK(std::isnan(softmax_merge(inf_st, SoftmaxState<double>{}).s));
  CHECK(std::isnan(softmax_push(inf_st, -kInf).s));
  CHECK(std::isnan(softmax_push(fin, kInf).s));
}

TEST_CASE("sum pairs through the reduction tree", "[kernels]") {
  const std::int64_t n = 3001;
  const auto v = random_values(n, 9);
  double sa = 0, sb = 0;
  for (double x : v) {
    sa += x;
    sb += x * x;
  }
  for (int G : {32, 256, 1024}) {
    const auto p = emulate_group<SumPair<double>>(
        n, G, [&](SumPair<double> s, std::int64_t j) { return SumPair<double>{s.a + v[j], s.b + v[j] * v[j]}; },
        [](auto a, auto b) { return sum_pair_merge(a, b); });
    CHECK(close(p.a, sa, 1e-12, 1e-12));
    CHECK(close(p.b, sb, 1e-12));
  }
}

// ---------------------------------------------------------------------------
// launcher argument checks (CUDA builds: these throw before any CUDA call)
// ---------------------------------------------------------------------------

#if defined(CIUIC_WITH_CUDA)

TEST_CASE("kernel launchers reject bad arguments with ciuic errors naming the kernel", "[kernels]") {
  StridedLayout l7 = make_layout({7}, {1});
  StridedLayout l8 = make_layout({8}, {1});
  StridedLayout l24 = make_layout({2, 4}, {4, 1});
  StridedLayout l42 = make_layout({4, 2}, {2, 1});
  int dummy[64];
  void* p = dummy;
  CHECK_THROWS_WITH_ALL(unary(UnaryOp::exp, p, p, l7, DType::f32, -1, {}, nullptr), ValueError, "exp", "n = -1");
  CHECK_THROWS_WITH_ALL(unary(UnaryOp::exp, p, p, l7, DType::i32, 7, {}, nullptr), DTypeError, "exp", "i32");
  CHECK_THROWS_WITH_ALL(unary(UnaryOp::exp, p, p, l7, DType::f32, 8, {}, nullptr), ShapeError, "exp", "7 elements",
                        "n = 8");
  CHECK_THROWS_WITH_ALL(unary(UnaryOp::clamp, p, p, l7, DType::f32, 7, UnaryArgs{0, 2.0, 1.0}, nullptr), ValueError,
                        "clamp", "lo 2", "hi 1");
  CHECK_THROWS_WITH_ALL(unary(UnaryOp::exp, nullptr, p, l7, DType::f32, 7, {}, nullptr), ValueError, "exp", "out");
  CHECK_THROWS_WITH_ALL(binary(BinaryOp::div, p, p, l7, p, l7, DType::i64, 7, nullptr), DTypeError, "div", "i64");
  CHECK_THROWS_WITH_ALL(binary(BinaryOp::add, p, p, l24, p, l42, DType::f32, 8, nullptr), ShapeError, "add", "'a'",
                        "'b'");
  CHECK_THROWS_WITH_ALL(binary(BinaryOp::add, p, p, l8, p, l7, DType::f32, 8, nullptr), ShapeError, "add",
                        "layout 'b'");
  CHECK_THROWS_WITH_ALL(unary_backward(UnaryBackwardOp::gelu_tanh, p, p, l7, p, l7, DType::u8, 7, 0, 0, nullptr),
                        DTypeError, "gelu_tanh_backward", "u8");
  CHECK_THROWS_WITH_ALL(where(p, p, l7, p, l7, p, l8, DType::f32, 7, nullptr), ShapeError, "where", "'b'");

  CHECK_THROWS_WITH_ALL(reduce_sum(ReduceOp::mean, p, p, DType::i32, 1, 7, 1, true, nullptr, 0, nullptr), DTypeError,
                        "reduce_mean", "i32");
  CHECK_THROWS_WITH_ALL(reduce_sum(ReduceOp::sum, p, p, DType::f32, 1, -7, 1, true, nullptr, 0, nullptr), ValueError,
                        "reduce_sum", "reduce = -7");
  CHECK_THROWS_WITH_ALL(reduce_sum(ReduceOp::var, p, p, DType::f32, 1, 7, 1, true, nullptr, 0, nullptr), ValueError,
                        "reduce_sum", "ReduceOp::sum");
  {
    const std::size_t need = reduce_workspace_bytes(ReduceOp::sum, DType::f32, 1, 1000003, 1);
    CHECK(need > 0);
    CHECK_THROWS_WITH_ALL(reduce_sum(ReduceOp::sum, p, p, DType::f32, 1, 1000003, 1, true, nullptr, 0, nullptr),
                          ValueError, "reduce_sum", "workspace");
    CHECK(reduce_workspace_bytes(ReduceOp::sum, DType::f32, 1, 1000003, 1, false) == 0);  // atomics
    CHECK(reduce_workspace_bytes(ReduceOp::sum, DType::f16, 1, 1000003, 1, false) == need);
    CHECK(reduce_workspace_bytes(ReduceOp::sum, DType::f32, 1000, 100, 1) == 0);
  }
  CHECK_THROWS_WITH_ALL(reduce_var(p, nullptr, p, DType::f32, 1, 7, 1, -1, nullptr, 0, nullptr), ValueError,
                        "reduce_var", "correction");
  CHECK_THROWS_WITH_ALL(reduce_max(p, nullptr, p, DType::f32, 3, 0, 1, nullptr, 0, nullptr), ShapeError, "reduce_max",
                        "size 0");
  CHECK_THROWS_WITH_ALL(reduce_max(p, nullptr, p, DType::boolean, 3, 2, 1, nullptr, 0, nullptr), DTypeError,
                        "reduce_max", "bool");
  CHECK_THROWS_WITH_ALL(softmax_forward(p, p, DType::i64, 3, 4, false, nullptr), DTypeError, "softmax_forward", "i64");
  CHECK_THROWS_WITH_ALL(softmax_backward(p, p, p, DType::f32, 3, -4, true, nullptr), ValueError,
                        "log_softmax_backward", "cols = -4");
  CHECK_THROWS_WITH_ALL(layer_norm_forward(p, p, p, p, nullptr, nullptr, DType::f32, 3, 4, 0.0, nullptr), ValueError,
                        "layer_norm_forward", "eps = 0");
  CHECK_THROWS_WITH_ALL(rms_norm_forward(p, p, p, nullptr, DType::u8, 3, 4, 1e-6, nullptr), DTypeError,
                        "rms_norm_forward", "u8");
  {
    const std::size_t need = norm_backward_workspace_bytes(DType::f32, 100000, 64);
    CHECK(need > 0);
    CHECK_THROWS_WITH_ALL(layer_norm_backward(nullptr, p, p, p, p, nullptr, p, p, DType::f32, 100000, 64, nullptr, 0,
                                              nullptr),
                          ValueError, "layer_norm_backward", "workspace");
  }
  CHECK_THROWS_WITH_ALL(embedding_forward(p, p, DType::f32, 10, 4, p, DType::f32, 3, {}, nullptr), DTypeError,
                        "embedding_forward", "indices", "f32");
  CHECK_THROWS_WITH_ALL(embedding_backward(p, p, DType::f16, 10, 4, p, DType::i64, 3, false, nullptr, 0, nullptr),
                        ValueError, "embedding_backward", "workspace");
  CHECK(embedding_backward_workspace_bytes(DType::f16, 10, 4, 3, false) == 160);
  if (cuda_available())  // the sort's scratch size is a query to CUB, which needs a device
    CHECK(embedding_backward_workspace_bytes(DType::f16, 10, 4, 3, true) >= 4 * 256);  // the sort buffers
  CHECK(embedding_backward_workspace_bytes(DType::f32, 10, 4, 3, false) == 0);
  CHECK_THROWS_WITH_ALL(cross_entropy_forward_backward(p, nullptr, nullptr, p, DType::f32, p, DType::u8, 3, 5, -100,
                                                       1.0, nullptr),
                        DTypeError, "cross_entropy", "targets", "u8");
  CHECK_THROWS_WITH_ALL(cross_entropy_forward_backward(p, nullptr, nullptr, p, DType::f32, p, DType::i64, 3, 0, -100,
                                                       1.0, nullptr),
                        ShapeError, "cross_entropy", "V >= 1");
  CHECK_THROWS_WITH_ALL(dropout_forward(p, p, DType::f32, 7, 1.5, 1, 0, nullptr), ValueError, "dropout_forward",
                        "p = 1.5");
  CHECK_THROWS_WITH_ALL(dropout_backward(p, p, DType::i32, 7, 0.5, 1, 0, nullptr), DTypeError, "dropout_backward",
                        "i32");
}

TEST_CASE("kernel launchers return without touching the GPU for empty sizes", "[kernels]") {
  StridedLayout l0 = make_layout({0, 3}, {3, 1});
  // null pointers are fine when there is nothing to do
  CHECK_NOTHROW(unary(UnaryOp::exp, nullptr, nullptr, l0, DType::f32, 0, {}, nullptr));
  CHECK_NOTHROW(binary(BinaryOp::add, nullptr, nullptr, l0, nullptr, l0, DType::bf16, 0, nullptr));
  CHECK_NOTHROW(where(nullptr, nullptr, l0, nullptr, l0, nullptr, l0, DType::i64, 0, nullptr));
  CHECK_NOTHROW(reduce_sum(ReduceOp::sum, nullptr, nullptr, DType::f32, 0, 5, 3, true, nullptr, 0, nullptr));
  CHECK_NOTHROW(reduce_max(nullptr, nullptr, nullptr, DType::f32, 0, 0, 3, nullptr, 0, nullptr));
  CHECK_NOTHROW(softmax_forward(nullptr, nullptr, DType::f16, 0, 10, true, nullptr));
  CHECK_NOTHROW(layer_norm_forward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, DType::f32, 0, 10, 1e-5,
                                   nullptr));
  CHECK_NOTHROW(embedding_forward(nullptr, nullptr, DType::f32, 10, 4, nullptr, DType::i32, 0, {}, nullptr));
  CHECK_NOTHROW(cross_entropy_forward_backward(nullptr, nullptr, nullptr, nullptr, DType::f32, nullptr, DType::i64, 0,
                                               5, -100, 1.0, nullptr));
  CHECK_NOTHROW(dropout_forward(nullptr, nullptr, DType::f64, 0, 0.5, 1, 0, nullptr));
}

#endif  // CIUIC_WITH_CUDA
