// Reduction states and their merge rules, shared by the reduction-style kernels
// (reduce, softmax, layernorm, cross_entropy) and the CPU tests.
//
// A kernel reduces in a fixed tree: each thread pushes its elements in ascending
// order into a state, then states are merged pairwise (warp shuffles, then across
// warps, then across blocks in split order). The merge rules below are exact or
// well-conditioned, so any such tree gives the same answer as a sequential loop up
// to rounding; for a fixed launch configuration the tree, and so the result, is
// deterministic.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "ciuic/macros.h"

namespace ciuic::kernels {

// ---- Welford: count, mean, sum of squared deviations (M2) ----
template <typename A>
struct WelfordState {
  A mean = A(0);
  A m2 = A(0);
  std::int64_t n = 0;
};

template <typename A>
CIUIC_HD WelfordState<A> welford_push(WelfordState<A> s, A x) {
  s.n += 1;
  const A d = x - s.mean;
  s.mean += d / static_cast<A>(s.n);
  s.m2 += d * (x - s.mean);
  return s;
}

// Chan et al.'s parallel combination; an empty side returns the other unchanged.
template <typename A>
CIUIC_HD WelfordState<A> welford_merge(WelfordState<A> a, WelfordState<A> b) {
  if (b.n == 0) return a;
  if (a.n == 0) return b;
  WelfordState<A> r;
  r.n = a.n + b.n;
  const A nb_over_n = static_cast<A>(b.n) / static_cast<A>(r.n);
  const A d = b.mean - a.mean;
  r.mean = a.mean + d * nb_over_n;
  r.m2 = a.m2 + b.m2 + d * d * static_cast<A>(a.n) * nb_over_n;
  return r;
}

// Variance from a state: M2 / max(n - correction, 0), as PyTorch (0/0 = nan, x/0 = inf).
template <typename A>
CIUIC_HD A welford_variance(WelfordState<A> s, std::int64_t correction) {
  const std::int64_t d = s.n - correction > 0 ? s.n - correction : 0;
  return s.m2 / static_cast<A>(d);
}

// ---- max with index (max along a dim and argmax) ----
// i < 0 marks the empty state. nan beats every number (it propagates); among equal
// values, or several nans, the smallest index wins (the first occurrence).
template <typename A>
struct ArgMaxState {
  A v{};
  std::int64_t i = -1;
};

template <typename A>
CIUIC_HD bool value_is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>) return v != v;
  else return false;
}

// Does v beat best (strictly)? nan beats any non-nan.
template <typename A>
CIUIC_HD bool max_beats(A v, A best) {
  return v > best || (value_is_nan(v) && !value_is_nan(best));
}

// Elements must be pushed in ascending index order (a later equal value never wins).
template <typename A>
CIUIC_HD ArgMaxState<A> argmax_push(ArgMaxState<A> s, A v, std::int64_t i) {
  if (s.i < 0 || max_beats(v, s.v)) {
    s.v = v;
    s.i = i;
  }
  return s;
}

// Order-independent: the result depends only on the two states.
template <typename A>
CIUIC_HD ArgMaxState<A> argmax_merge(ArgMaxState<A> a, ArgMaxState<A> b) {
  if (b.i < 0) return a;
  if (a.i < 0) return b;
  if (max_beats(b.v, a.v)) return b;
  if (max_beats(a.v, b.v)) return a;
  return b.i < a.i ? b : a;  // equal, or both nan
}

// ---- online softmax: running max m and sum s of exp(x - m) ----
// Empty: m = -inf, s = 0. -inf elements contribute exactly 0 and never form
// -inf - (-inf); a nan element makes s nan (the row becomes nan, as on the CPU).
// A row of only -inf ends with m = -inf, s = 0: the caller's exp(x - m) / s is nan,
// which matches the CPU reference (and PyTorch). A +inf element makes s nan at once
// (m = +inf): the CPU reference's exp(inf - inf) is nan, so the whole row is nan
// whichever lane holds the inf and in whatever order states merge (pushing it as
// an ordinary new maximum would give s = 1 in one lane and nan in another).
template <typename A>
struct SoftmaxState {
  A m = -std::numeric_limits<A>::infinity();
  A s = A(0);
};

template <typename A>
CIUIC_HD SoftmaxState<A> softmax_push(SoftmaxState<A> st, A x) {
  using std::exp;
  if (x == std::numeric_limits<A>::infinity()) {
    st.m = x;
    st.s = std::numeric_limits<A>::quiet_NaN();
  } else if (x > st.m) {
    // rescale the old sum to the new max; st.s == 0 covers the empty state (m = -inf)
    st.s = (st.s == A(0) ? A(0) : st.s * exp(st.m - x)) + A(1);
    st.m = x;
  } else if (x == -std::numeric_limits<A>::infinity()) {
    // contributes exp(-inf) = 0
  } else {
    st.s += exp(x - st.m);  // nan x (or nan m) lands here: s becomes nan
  }
  return st;
}

template <typename A>
CIUIC_HD SoftmaxState<A> softmax_merge(SoftmaxState<A> a, SoftmaxState<A> b) {
  using std::exp;
  if (b.s == A(0) && !value_is_nan(b.m)) return a;  // b empty (or only -inf)
  if (a.s == A(0) && !value_is_nan(a.m)) return b;
  SoftmaxState<A> r;
  r.m = a.m > b.m ? a.m : b.m;
  if (value_is_nan(a.m) || value_is_nan(b.m)) r.m = a.m + b.m;  // nan
  r.s = a.s * exp(a.m - r.m) + b.s * exp(b.m - r.m);
  return r;
}

// log(sum exp(x)) of a finished state.
template <typename A>
CIUIC_HD A softmax_logsumexp(SoftmaxState<A> st) {
  using std::log;
  return st.m + log(st.s);
}

// ---- a pair of sums (layernorm backward: sum g, sum g * xhat) ----
template <typename A>
struct SumPair {
  A a = A(0);
  A b = A(0);
};
template <typename A>
CIUIC_HD SumPair<A> sum_pair_merge(SumPair<A> x, SumPair<A> y) {
  return SumPair<A>{x.a + y.a, x.b + y.b};
}

}  // namespace ciuic::kernels
