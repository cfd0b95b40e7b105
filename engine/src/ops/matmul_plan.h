// Internal: how a CUDA matmul maps strided operands onto one cuBLASLt call without
// copying them (host-only; tested on the CPU).
//
// out (batch..., m, n) = a (..., m, k) @ b (..., k, n), the batch dims broadcast.
// Each operand is used in place when
//   - its last two dims are a row-major matrix (stride(-1) == 1: no transpose,
//     ld = stride(-2)) or a column-major one (stride(-2) == 1: a transpose flag,
//     ld = stride(-1)); size-1 dims take whatever stride makes that work;
//   - its batch dims, broadcast to `batch`, collapse to one stride: stride 0 for a
//     broadcast operand (b = a weight shared by every batch), or uniform strides;
// and b unbatched with a row-major a whose batch dims fold into its rows makes one
// plain GEMM with M = batch * m (the linear backward's g @ W). Otherwise the
// operand is copied to a contiguous tensor first (copy_a / copy_b), as before.
#pragma once

#include <cstdint>
#include <vector>

#include "ciuic/kernels/gemm.h"

namespace ciuic::ops::matmul_plan {

struct Operand {
  std::vector<std::int64_t> shape, strides;  // the operand's own dims (batch dims may be fewer or size 1)
};

struct MatrixLayout {
  bool ok = false;
  bool trans = false;
  std::int64_t ld = 0;
};

// The (rows, cols) matrix at the operand's last two dims, in place if possible.
inline MatrixLayout matrix_layout(const Operand& t) {
  const std::size_t d = t.shape.size();
  const std::int64_t rows = t.shape[d - 2], cols = t.shape[d - 1];
  const std::int64_t rs = t.strides[d - 2], cs = t.strides[d - 1];
  auto at_least_1 = [](std::int64_t v) { return v > 1 ? v : std::int64_t{1}; };
  MatrixLayout l;
  if ((cs == 1 || cols == 1) && (rows == 1 || rs >= at_least_1(cols))) {
    l.ok = true;
    l.trans = false;
    l.ld = rows == 1 ? at_least_1(cols) : rs;
  } else if ((rs == 1 || rows == 1) && (cols == 1 || cs >= at_least_1(rows))) {
    l.ok = true;
    l.trans = true;
    l.ld = cols == 1 ? at_least_1(rows) : cs;
  }
  return l;
}

// The single stride that walks the operand's batch dims broadcast to `batch` in
// row-major order (0 when every batch dim is broadcast), or -1 when there is none.
inline std::int64_t batch_stride(const Operand& t, const std::vector<std::int64_t>& batch) {
  const std::size_t own = t.shape.size() - 2, nb = batch.size();
  // expanded strides of the batch dims: 0 where the operand broadcasts
  std::vector<std::int64_t> st(nb, 0);
  for (std::size_t i = 0; i < nb; ++i) {
    const std::size_t from_end = nb - i;  // 1 for the last batch dim
    if (from_end <= own) {
      const std::size_t j = own - from_end;
      st[i] = t.shape[j] == 1 ? 0 : t.strides[j];
    }
  }
  std::int64_t stride = -1;  // of the innermost non-trivial dim, then checked outward
  std::int64_t span = 1;     // batch elements covered by the dims inside
  bool all_zero = true;
  for (std::size_t i = nb; i-- > 0;) {
    if (batch[i] == 1) continue;
    if (st[i] != 0) all_zero = false;
    if (stride < 0) {
      stride = st[i];
    } else if (st[i] != stride * span) {
      return -1;
    }
    span *= batch[i];
  }
  if (stride < 0 || all_zero) return 0;
  return stride;
}

struct Plan {
  kernels::GemmProblem problem;
  bool copy_a = false, copy_b = false;  // the operand must be made contiguous first
  bool folded = false;                  // one GEMM with M = batch * m
};

// dtype: the operands' (and output's) dtype. Output: contiguous (batch..., m, n).
inline Plan plan_bmm(const Operand& a, const Operand& b, const std::vector<std::int64_t>& batch, DType dtype) {
  const std::size_t da = a.shape.size(), db = b.shape.size();
  const std::int64_t m = a.shape[da - 2], k = a.shape[da - 1], n = b.shape[db - 1];
  std::int64_t nbatch = 1;
  for (std::int64_t v : batch) nbatch *= v;
  Plan p;
  p.problem = kernels::gemm_problem(false, false, m, n, k, dtype);
  p.problem.ldc = n > 1 ? n : 1;
  p.problem.stride_c = m * n;
  p.problem.batch = nbatch;
  MatrixLayout la = matrix_layout(a), lb = matrix_layout(b);
  // Fold: b has no batch of its own, a's batch dims and rows are one row-major run.
  if (db == 2 && da > 2 && lb.ok && !la.trans && la.ok) {
    bool foldable = true;
    std::int64_t expect = la.ld;  // the row stride: each outer dim must continue it
    std::int64_t inner = m;
    for (std::size_t i = da - 2; i-- > 0;) {
      if (a.shape[i] == 1) continue;
      if (a.strides[i] != expect * inner) {
        foldable = false;
        break;
      }
      expect = a.strides[i];
      inner = a.shape[i];
    }
    if (foldable && (m == 1 || a.strides[da - 2] == la.ld)) {
      p.folded = true;
      p.problem.m = m * nbatch;
      p.problem.batch = 1;
      p.problem.stride_c = 0;
      p.problem.trans_a = false;
      p.problem.lda = la.ld;
      p.problem.trans_b = lb.trans;
      p.problem.ldb = lb.ld;
      p.problem.stride_a = p.problem.stride_b = 0;
      return p;
    }
  }
  const std::int64_t sa = la.ok ? batch_stride(a, batch) : -1;
  const std::int64_t sb = lb.ok ? batch_stride(b, batch) : -1;
  if (sa < 0) {  // contiguous (batch..., m, k) after the copy
    p.copy_a = true;
    p.problem.trans_a = false;
    p.problem.lda = k > 1 ? k : 1;
    p.problem.stride_a = m * k;
  } else {
    p.problem.trans_a = la.trans;
    p.problem.lda = la.ld;
    p.problem.stride_a = sa;
  }
  if (sb < 0) {
    p.copy_b = true;
    p.problem.trans_b = false;
    p.problem.ldb = n > 1 ? n : 1;
    p.problem.stride_b = k * n;
  } else {
    p.problem.trans_b = lb.trans;
    p.problem.ldb = lb.ld;
    p.problem.stride_b = sb;
  }
  return p;
}

}  // namespace ciuic::ops::matmul_plan
