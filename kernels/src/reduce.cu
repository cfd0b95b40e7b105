// Reductions over (outer, reduce, inner) (see ciuic/kernels/reduce.h).
//
// One generic engine, three reducers (sum/mean, Welford var, max with index). A
// reducer has a state S (reduce_math.h), push(s, x, j) for element j, a merge, and
// finish(col, s) writing the outputs. The plan (launch_plan.h) picks:
//   rows mode (inner == 1): a warp or a block per (row, split); threads stride over
//     the split's range, then warp shuffles + shared memory merge (fixed tree);
//   cols mode (inner > 1): a thread per (split, column), consecutive threads on
//     consecutive columns (coalesced), looping over j in order.
// With splits > 1 pass 1 writes partial states to workspace[split * cols + col] and
// reduce_finish_kernel merges them in split order; deterministic sums with no atomics.
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/reduce.h"
#include "kernel_common.cuh"

namespace ciuic::kernels {

namespace {

constexpr int kBlock = 256;

template <typename T>
constexpr bool is_int_v = std::is_integral_v<T>;

template <typename T>
using sum_acc_t = std::conditional_t<is_int_v<T>, std::int64_t, acc_t<T>>;

template <typename T>
using max_acc_t = std::conditional_t<is_int_v<T>, std::int64_t, acc_t<T>>;

// ---- reducers ----

template <typename T>
struct SumReducer {
  using A = sum_acc_t<T>;
  using S = A;
  using Merge = kc::SumMerge;
  static constexpr bool kCanAtomic = std::is_same_v<T, float> || std::is_same_v<T, double>;
  T* out;
  bool mean;
  bool atomic;  // add split partials into out (pre-zeroed) with atomicAdd

  __device__ S push(S s, T x, std::int64_t) const { return s + static_cast<A>(kc::to_acc(x)); }
  __device__ S scaled(S s, std::int64_t reduce) const {
    if constexpr (is_int_v<T>) return s;
    else return mean ? s / static_cast<A>(reduce) : s;  // reduce == 0: 0/0 = nan
  }
  __device__ void finish(std::int64_t col, S s, std::int64_t reduce) const {
    out[col] = kc::from_acc<T>(scaled(s, reduce));
  }
  __device__ void add_atomic(std::int64_t col, S s, std::int64_t reduce) const {
    if constexpr (kCanAtomic) atomicAdd(out + col, scaled(s, reduce));
  }
};

template <typename T>
struct VarReducer {
  using A = acc_t<T>;
  using S = WelfordState<A>;
  using Merge = kc::WelfordMerge;
  static constexpr bool kCanAtomic = false;
  T* var;
  T* mean;  // nullable
  int correction;
  bool atomic;

  __device__ S push(S s, T x, std::int64_t) const { return welford_push(s, kc::to_acc(x)); }
  __device__ void finish(std::int64_t col, S s, std::int64_t) const {
    var[col] = kc::from_acc<T>(welford_variance(s, correction));
    if (mean) mean[col] = kc::from_acc<T>(s.n == 0 ? A(0) / A(0) : s.mean);  // empty: nan, as 0/0
  }
  __device__ void add_atomic(std::int64_t, S, std::int64_t) const {}
};

template <typename T>
struct MaxReducer {
  using A = max_acc_t<T>;
  using S = ArgMaxState<A>;
  using Merge = kc::ArgMaxMerge;
  static constexpr bool kCanAtomic = false;
  T* values;               // nullable
  std::int64_t* indices;   // nullable
  bool atomic;

  __device__ S push(S s, T x, std::int64_t j) const { return argmax_push(s, static_cast<A>(kc::to_acc(x)), j); }
  __device__ void finish(std::int64_t col, S s, std::int64_t) const {
    if (values) values[col] = kc::from_acc<T>(s.v);  // s.v is an input element: exact
    if (indices) indices[col] = s.i;
  }
  __device__ void add_atomic(std::int64_t, S, std::int64_t) const {}
};

// A finished (col, split) state goes to the output, the atomic sum, or the workspace.
template <typename R>
__device__ __forceinline__ void emit(const R& r, typename R::S* partial, std::int64_t cols, std::int64_t col,
                                     std::int64_t sp, std::int64_t splits, typename R::S s, std::int64_t reduce) {
  if (splits == 1) r.finish(col, s, reduce);
  else if (R::kCanAtomic && r.atomic) r.add_atomic(col, s, reduce);
  else partial[sp * cols + col] = s;
}

// ---- kernels ----

// in: (rows, reduce) contiguous. Unit u = sp * rows + row, one group per unit.
template <typename T, typename R, bool kWarp>
__global__ void __launch_bounds__(kc::row_threads_bound(kWarp)) reduce_rows_kernel(const T* __restrict__ in, std::int64_t rows, std::int64_t reduce,
                                   std::int64_t chunk, std::int64_t splits, R r, typename R::S* partial) {
  using G = kc::RowGroup<kWarp>;
  using S = typename R::S;
  const std::int64_t units = rows * splits;
  for (std::int64_t u = G::first_row(); u < units; u += G::row_stride()) {  // uniform over the group
    const std::int64_t sp = u / rows, row = u % rows;
    const plan::Range rg = plan::split_range(reduce, chunk, sp);
    const T* x = in + row * reduce;
    S s{};
    for (std::int64_t j = rg.begin + G::rank(); j < rg.end; j += G::size()) s = r.push(s, x[j], j);
    s = G::allreduce(s, typename R::Merge{});
    if (G::rank() == 0) emit(r, partial, rows, row, sp, splits, s, reduce);
  }
}

// in: (outer, reduce, inner) contiguous, inner > 1. Unit u = sp * cols + col, a thread each.
template <typename T, typename R>
__global__ void reduce_cols_kernel(const T* __restrict__ in, std::int64_t outer, std::int64_t reduce,
                                   std::int64_t inner, std::int64_t chunk, std::int64_t splits, R r,
                                   typename R::S* partial) {
  using S = typename R::S;
  const std::int64_t cols = outer * inner, units = cols * splits;
  for (std::int64_t u = kc::global_thread(); u < units; u += kc::grid_threads()) {
    const std::int64_t sp = u / cols, col = u % cols;
    const std::int64_t o = col / inner, i = col % inner;
    const plan::Range rg = plan::split_range(reduce, chunk, sp);
    const T* x = in + o * reduce * inner + i;
    S s{};
    for (std::int64_t j = rg.begin; j < rg.end; ++j) s = r.push(s, x[j * inner], j);
    emit(r, partial, cols, col, sp, splits, s, reduce);
  }
}

// Merges each column's partials in split order: partial (splits, cols).
template <typename R>
__global__ void reduce_finish_kernel(const typename R::S* __restrict__ partial, std::int64_t cols,
                                     std::int64_t splits, std::int64_t reduce, R r) {
  using S = typename R::S;
  typename R::Merge merge;
  for (std::int64_t col = kc::global_thread(); col < cols; col += kc::grid_threads()) {
    S s{};
    for (std::int64_t sp = 0; sp < splits; ++sp) s = merge(s, partial[sp * cols + col]);
    r.finish(col, s, reduce);
  }
}

template <typename T, typename R>
void run_reduce(const void* in_v, std::int64_t outer, std::int64_t reduce, std::int64_t inner, R r, void* ws,
                cudaStream_t s) {
  using S = typename R::S;
  const T* in = static_cast<const T*>(in_v);
  const plan::ReducePlan p = plan::plan_reduce(outer, reduce, inner);
  if (p.cols == 0) return;
  S* partial = static_cast<S*>(ws);
  const std::int64_t units = p.cols * p.splits;
  if (p.rows_mode) {
    if (p.group_threads == 32) {
      reduce_rows_kernel<T, R, true><<<plan::grid_blocks(units, plan::rows_per_block(32)), plan::kRowBlockThreads, 0,
                                       s>>>(in, p.cols, reduce, p.chunk, p.splits, r, partial);
    } else {
      reduce_rows_kernel<T, R, false><<<plan::grid_blocks(units, 1), p.group_threads, 0, s>>>(
          in, p.cols, reduce, p.chunk, p.splits, r, partial);
    }
  } else {
    reduce_cols_kernel<T, R><<<plan::grid_blocks(units, kBlock), kBlock, 0, s>>>(in, outer, reduce, inner, p.chunk,
                                                                                 p.splits, r, partial);
  }
  CIUIC_CUDA_CHECK_LAUNCH();
  if (p.splits > 1 && !(R::kCanAtomic && r.atomic)) {
    reduce_finish_kernel<R><<<plan::grid_blocks(p.cols, kBlock), kBlock, 0, s>>>(partial, p.cols, p.splits, reduce,
                                                                                 r);
    CIUIC_CUDA_CHECK_LAUNCH();
  }
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "reduce_sum";
    case ReduceOp::mean: return "reduce_mean";
    case ReduceOp::var: return "reduce_var";
    case ReduceOp::max: return "reduce_max";
  }
  return "reduce";
}

void check_dims(const char* op, std::int64_t outer, std::int64_t reduce, std::int64_t inner) {
  kc::check_size(op, "outer", outer);
  kc::check_size(op, "reduce", reduce);
  kc::check_size(op, "inner", inner);
}

// Calls f(T{}) for the dtypes `op` supports; DTypeError naming op and dtype otherwise.
template <typename F>
void dispatch_reduce(ReduceOp op, DType t, F&& f) {
  const char* name = reduce_op_name(op);
  const bool ints = op == ReduceOp::sum || op == ReduceOp::max;
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::f16: f(Half{}); return;
    case DType::bf16: f(BFloat16{}); return;
    case DType::i32: if (ints) { f(std::int32_t{}); return; } break;
    case DType::i64: if (ints) { f(std::int64_t{}); return; } break;
    case DType::u8: if (op == ReduceOp::max) { f(std::uint8_t{}); return; } break;
    default: break;
  }
  ::ciuic::detail::fail<DTypeError>(name, "got dtype ", dtype_name(t), "; expected ",
                                    op == ReduceOp::sum   ? "f32, f64, f16, bf16, i32 or i64"
                                    : op == ReduceOp::max ? "f32, f64, f16, bf16, i32, i64 or u8"
                                                          : "a floating dtype (f32, f64, f16, bf16)");
}

}  // namespace

std::size_t reduce_workspace_bytes(ReduceOp op, DType dtype, std::int64_t outer, std::int64_t reduce,
                                   std::int64_t inner, bool deterministic) {
  const char* name = reduce_op_name(op);
  check_dims(name, outer, reduce, inner);
  const plan::ReducePlan p = plan::plan_reduce(outer, reduce, inner);
  std::size_t state = 0;
  bool atomic = false;
  dispatch_reduce(op, dtype, [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
      case ReduceOp::sum:
      case ReduceOp::mean:
        state = sizeof(typename SumReducer<T>::S);
        atomic = !deterministic && SumReducer<T>::kCanAtomic;
        break;
      case ReduceOp::var:
        if constexpr (!is_int_v<T>) state = sizeof(typename VarReducer<T>::S);
        break;
      case ReduceOp::max: state = sizeof(typename MaxReducer<T>::S); break;
    }
  });
  if (p.splits <= 1 || atomic || p.cols == 0) return 0;
  return static_cast<std::size_t>(p.splits) * static_cast<std::size_t>(p.cols) * state;
}

void reduce_sum(ReduceOp op, void* out, const void* in, DType dtype, std::int64_t outer, std::int64_t reduce,
                std::int64_t inner, bool deterministic, void* workspace, std::size_t workspace_bytes, void* stream) {
  CIUIC_CHECK(op == ReduceOp::sum || op == ReduceOp::mean, ValueError, "reduce_sum", "op ", reduce_op_name(op),
              "; expected ReduceOp::sum or ReduceOp::mean (var and max have their own launchers)");
  const char* name = reduce_op_name(op);
  check_dims(name, outer, reduce, inner);
  CIUIC_CHECK(op == ReduceOp::sum || is_floating(dtype), DTypeError, name, "got dtype ", dtype_name(dtype),
              "; expected a floating dtype (f32, f64, f16, bf16)");
  const std::size_t need = reduce_workspace_bytes(op, dtype, outer, reduce, inner, deterministic);
  kc::check_workspace(name, need, workspace, workspace_bytes);
  if (outer * inner == 0) return;
  kc::check_ptr(name, "out", out);
  if (reduce > 0) kc::check_ptr(name, "in", in);
  const cudaStream_t s = kc::as_stream(stream);
  const plan::ReducePlan p = plan::plan_reduce(outer, reduce, inner);
  dispatch_reduce(op, dtype, [&](auto tag) {
    using T = decltype(tag);
    // dispatch_reduce passes u8 for max only: no u8 sum kernels are instantiated.
    if constexpr (!std::is_same_v<T, std::uint8_t>) {
      SumReducer<T> r{static_cast<T*>(out), op == ReduceOp::mean, !deterministic && SumReducer<T>::kCanAtomic};
      if (r.atomic && p.splits > 1)
        CIUIC_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<std::size_t>(p.cols) * sizeof(T), s));
      run_reduce<T>(in, outer, reduce, inner, r, workspace, s);
    }
  });
}

void reduce_var(void* out_var, void* out_mean, const void* in, DType dtype, std::int64_t outer, std::int64_t reduce,
                std::int64_t inner, int correction, void* workspace, std::size_t workspace_bytes, void* stream) {
  const char* name = "reduce_var";
  check_dims(name, outer, reduce, inner);
  kc::check_floating_dtype(name, dtype);
  CIUIC_CHECK(correction >= 0, ValueError, name, "correction = ", correction, "; expected >= 0");
  kc::check_workspace(name, reduce_workspace_bytes(ReduceOp::var, dtype, outer, reduce, inner), workspace,
                      workspace_bytes);
  if (outer * inner == 0) return;
  kc::check_ptr(name, "out_var", out_var);
  if (reduce > 0) kc::check_ptr(name, "in", in);
  kc::dispatch_float(dtype, name, [&](auto tag) {
    using T = decltype(tag);
    VarReducer<T> r{static_cast<T*>(out_var), static_cast<T*>(out_mean), correction, false};
    run_reduce<T>(in, outer, reduce, inner, r, workspace, kc::as_stream(stream));
  });
}

void reduce_max(void* out_values, std::int64_t* out_indices, const void* in, DType dtype, std::int64_t outer,
                std::int64_t reduce, std::int64_t inner, void* workspace, std::size_t workspace_bytes, void* stream) {
  const char* name = "reduce_max";
  check_dims(name, outer, reduce, inner);
  kc::check_workspace(name, reduce_workspace_bytes(ReduceOp::max, dtype, outer, reduce, inner), workspace,
                      workspace_bytes);
  CIUIC_CHECK(reduce > 0 || outer * inner == 0, ShapeError, name, "cannot take the max over a dim of size 0 (outer ",
              outer, ", inner ", inner, "); expected reduce > 0");
  if (outer * inner == 0) return;
  CIUIC_CHECK(out_values != nullptr || out_indices != nullptr, ValueError, name,
              "both outputs are null; expected values and/or indices");
  kc::check_ptr(name, "in", in);
  dispatch_reduce(ReduceOp::max, dtype, [&](auto tag) {
    using T = decltype(tag);
    MaxReducer<T> r{static_cast<T*>(out_values), out_indices, false};
    run_reduce<T>(in, outer, reduce, inner, r, workspace, kc::as_stream(stream));
  });
}

}  // namespace ciuic::kernels
