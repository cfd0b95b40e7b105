// matmul (NumPy semantics) and linear, on the CPU through cpu_gemm (CBLAS or the
// plain loop). f16/bf16 operands are converted to f32, multiplied, and the result
// rounded back once. Strided operands go to the gemm as they are when each matrix
// is row-major or column-major with a usable leading dimension; anything else
// (expanded, sliced with steps in both dims) is copied to contiguous first.
#include <algorithm>

#include "cpu_gemm.h"
#include "matmul_cuda.h"
#include "ciuic/amp.h"
#include "ciuic/checkpoint.h"
#include "op_util.h"

namespace ciuic {

namespace {

// How a rows x cols matrix with element strides (rs, cs) is passed to the gemm:
// row-major with leading dim ld (trans == false: element (i, j) at i*ld + j) or as
// the transpose of a row-major cols x rows matrix (trans: (i, j) at j*ld + i).
struct MatLayout {
  bool ok = false;
  bool trans = false;
  std::int64_t ld = 1;
};

MatLayout layout_of(std::int64_t rows, std::int64_t cols, std::int64_t rs, std::int64_t cs) {
  // Strides of size-1 dims never matter; BLAS still wants ld >= the row length.
  if ((cs == 1 || cols <= 1) && (rows <= 1 || rs >= std::max<std::int64_t>(cols, 1)))
    return {true, false, rows <= 1 ? std::max<std::int64_t>(cols, 1) : rs};
  if ((rs == 1 || rows <= 1) && (cols <= 1 || cs >= std::max<std::int64_t>(rows, 1)))
    return {true, true, cols <= 1 ? std::max<std::int64_t>(rows, 1) : cs};
  return {};
}

// An operand whose last two dims are the matrix (rows, cols), ready for the gemm.
struct Operand {
  Tensor t;  // possibly a contiguous copy of the input
  MatLayout layout;
};

Operand prepare_matrix(const Tensor& t) {
  const std::int64_t nd = t.dim();
  MatLayout l = layout_of(t.size(nd - 2), t.size(nd - 1), t.stride(nd - 2), t.stride(nd - 1));
  if (l.ok) return {t, l};
  Tensor c = t.contiguous();
  return {c, layout_of(c.size(nd - 2), c.size(nd - 1), c.stride(nd - 2), c.stride(nd - 1))};
}

// Strides of t's batch dims (all but the last two) seen from `batch` under broadcasting.
Shape batch_strides(const Tensor& t, const Shape& batch) {
  const std::size_t tb = static_cast<std::size_t>(t.dim() - 2);
  Shape st(batch.size(), 0);
  for (std::size_t i = 0; i < tb; ++i)
    st[batch.size() - tb + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return st;
}

// out (batch..., m, n), contiguous, = a (..., m, k) @ b (..., k, n); T is f32 or f64.
template <typename T>
void bmm_cpu(const Tensor& a, const Tensor& b, const Tensor& out, const Shape& batch) {
  const std::int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Operand oa = prepare_matrix(a), ob = prepare_matrix(b);
  detail::GemmArgs args;
  args.trans_a = oa.layout.trans;
  args.trans_b = ob.layout.trans;
  args.m = m;
  args.n = n;
  args.k = k;
  args.lda = oa.layout.ld;
  args.ldb = ob.layout.ld;
  args.ldc = n;
  const T* pa = detail::typed_ptr<T>(oa.t);
  const T* pb = detail::typed_ptr<T>(ob.t);
  T* po = detail::typed_ptr<T>(out);
  Shape ostr = contiguous_strides(out.shape());
  ostr.resize(batch.size());  // the batch dims' strides
  detail::cpu_for_each<3>(batch, {ostr, batch_strides(oa.t, batch), batch_strides(ob.t, batch)}, [&](const auto& o) {
    detail::cpu_gemm(args, T(1), pa + o[1], pb + o[2], T(0), po + o[0]);
  });
}

// a (..., m, k) @ b (..., k, n) -> (batch..., m, n) in a's dtype; no autograd.
Tensor bmm(const Tensor& a_in, const Tensor& b_in, const Shape& batch) {
  if (a_in.device().is_cuda()) return ops::bmm_cuda(a_in, b_in, batch);
  Tensor a = a_in, b = b_in;
  const std::int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  const DType dt = a.dtype();
  if (shape_numel(out_shape) == 0 || k == 0) return zeros(out_shape, TensorOptions(dt).device(a.device()));
  // With an unbatched b, a's batch and rows fold into one matrix: a single gemm.
  if (b.dim() == 2 && a.dim() > 2) {
    Tensor r = bmm(a.reshape({-1, k}), b, {});
    return r.view(out_shape);
  }
  const bool half = dt == DType::f16 || dt == DType::bf16;
  if (half) {
    a = a.to(DType::f32);
    b = b.to(DType::f32);
  }
  Tensor out = make_tensor(out_shape, a.dtype(), a.device());
  if (a.dtype() == DType::f64) bmm_cpu<double>(a, b, out, batch);
  else bmm_cpu<float>(a, b, out, batch);
  return half ? out.to(dt) : out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (auto c = amp::autocast_args({&a, &b})) return matmul((*c)[0], (*c)[1]);
  const char* op = "matmul";
  ops::check_defined(op, {{"a", &a}, {"b", &b}});
  ops::check_same_device(op, {{"a", &a}, {"b", &b}});
  ops::check_same_dtype(op, {{"a", &a}, {"b", &b}});
  ops::check_floating(op, "a", a);
  CIUIC_CHECK(a.dim() >= 1 && b.dim() >= 1, ShapeError, op, "got ", ops::describe_all({{"a", &a}, {"b", &b}}),
              "; expected tensors with at least 1 dim (use mul for scalars)");
  // 1-D operands: a (k) acts as (1, k), b (k) as (k, 1); those dims are dropped from the result.
  const bool a_vec = a.dim() == 1, b_vec = b.dim() == 1;
  Tensor a2 = a_vec ? a.detach().unsqueeze(0) : a.detach();
  Tensor b2 = b_vec ? b.detach().unsqueeze(1) : b.detach();
  CIUIC_CHECK(a2.size(-1) == b2.size(-2), ShapeError, op, "inner dims differ: ",
              ops::describe_all({{"a", &a}, {"b", &b}}), "; expected a.size(-1) (", a2.size(-1), ") == b.size(",
              b_vec ? "0" : "-2", ") (", b2.size(-2), ")");
  Shape ba(a2.shape().begin(), a2.shape().end() - 2), bb(b2.shape().begin(), b2.shape().end() - 2);
  const std::size_t nb = std::max(ba.size(), bb.size());
  Shape batch(nb);
  for (std::size_t i = 0; i < nb; ++i) {
    std::int64_t da = i < nb - ba.size() ? 1 : ba[i - (nb - ba.size())];
    std::int64_t db = i < nb - bb.size() ? 1 : bb[i - (nb - bb.size())];
    CIUIC_CHECK(da == db || da == 1 || db == 1, ShapeError, op, "batch dims ", shape_str(ba), " and ", shape_str(bb),
                " do not broadcast (", ops::describe_all({{"a", &a}, {"b", &b}}),
                "); expected equal batch sizes or 1");
    batch[i] = da == 1 ? db : da;
  }

  Tensor out;
  if (auto kept = selective::replay(op)) {
    out = (*kept)[0];  // selective checkpoint recomputation: the forward kept this product
  } else {
    out = bmm(a2, b2, batch);
    Shape out_shape = batch;
    if (!a_vec) out_shape.push_back(a2.size(-2));
    if (!b_vec) out_shape.push_back(b2.size(-1));
    out = out.view(out_shape);
    selective::keep(op, {out});
  }

  if (needs_grad({&a, &b})) {
    // With a2, b2, g2 the operands and gradient with the 1-D dims restored:
    //   ga2 = g2 @ b2^T, gb2 = a2^T @ g2, each summed over the batch dims it was broadcast in.
    SavedTensor sa(b.requires_grad() ? a : Tensor()), sb(a.requires_grad() ? b : Tensor());
    Shape as = a.shape(), bs = b.shape(), a2s = a2.shape(), b2s = b2.shape();
    record(op, {a, b}, {out}, [=](const GradList& g) {
      Tensor g2 = g[0];
      if (b_vec) g2 = g2.unsqueeze(-1);
      if (a_vec) g2 = g2.unsqueeze(-2);
      Tensor ga, gb;
      if (sb.defined()) {
        Tensor bv = sb.unpack("matmul").reshape(b2s);
        ga = sum_to(matmul(g2, bv.transpose(-1, -2)), a2s).reshape(as);
      }
      if (sa.defined()) {
        Tensor av = sa.unpack("matmul").reshape(a2s);
        gb = sum_to(matmul(av.transpose(-1, -2), g2), b2s).reshape(bs);
      }
      return GradList{ga, gb};
    });
  }
  return out;
}

namespace {

// (M, in) x -> (M, out) = x W^T (+ bias); T is f32 or f64.
template <typename T>
void linear_cpu(const Tensor& x2, const Tensor& w, const Tensor& bias, const Tensor& out) {
  const std::int64_t rows = x2.size(0), in = x2.size(1), nout = w.size(0);
  Operand ox = prepare_matrix(x2);
  Operand ow = prepare_matrix(w.t());  // op(B) = W^T (in x out); w carries no autograd history
  T* po = detail::typed_ptr<T>(out);
  T beta = T(0);
  if (bias.defined()) {
    Tensor bc = bias.contiguous();
    const T* pb = detail::typed_ptr<T>(bc);
    for (std::int64_t i = 0; i < rows; ++i) std::copy(pb, pb + nout, po + i * nout);
    beta = T(1);
  }
  detail::GemmArgs args;
  args.trans_a = ox.layout.trans;
  args.trans_b = ow.layout.trans;
  args.m = rows;
  args.n = nout;
  args.k = in;
  args.lda = ox.layout.ld;
  args.ldb = ow.layout.ld;
  args.ldc = nout;
  detail::cpu_gemm(args, T(1), detail::typed_ptr<T>(ox.t), detail::typed_ptr<T>(ow.t), beta, po);
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (auto c = amp::autocast_args({&x, &weight, &bias})) return linear((*c)[0], (*c)[1], (*c)[2]);
  const char* op = "linear";
  ops::check_defined(op, {{"input", &x}, {"weight", &weight}});
  ops::check_same_device(op, {{"input", &x}, {"weight", &weight}, {"bias", &bias}});
  ops::check_same_dtype(op, {{"input", &x}, {"weight", &weight}, {"bias", &bias}});
  ops::check_floating(op, "input", x);
  CIUIC_CHECK(weight.dim() == 2, ShapeError, op, "weight is ", describe(weight),
              "; expected 2 dims (out_features, in_features)");
  CIUIC_CHECK(x.dim() >= 1, ShapeError, op, "input is ", describe(x), "; expected at least 1 dim (..., in_features)");
  CIUIC_CHECK(x.size(-1) == weight.size(1), ShapeError, op, "input ", describe(x), " has ", x.size(-1),
              " features but weight ", describe(weight), " takes ", weight.size(1),
              "; expected input.size(-1) == weight.size(1)");
  CIUIC_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)), ShapeError, op, "bias is ",
              describe(bias), " for weight ", describe(weight), "; expected bias of shape [", weight.size(0), "]");

  const std::int64_t in = weight.size(1), nout = weight.size(0);
  Shape lead(x.shape().begin(), x.shape().end() - 1);
  const std::int64_t rows = shape_numel(lead);
  Shape out_shape = lead;
  out_shape.push_back(nout);

  Tensor out;
  if (auto kept = selective::replay(op)) {
    out = (*kept)[0];  // selective checkpoint recomputation: the forward kept this output
  } else if (x.device().is_cuda()) {
    out = ops::linear_cuda(x.detach().reshape({rows, in}), weight.detach(), bias.defined() ? bias.detach() : bias)
              .view(out_shape);
    selective::keep(op, {out});
  } else {
    const DType dt = x.dtype();
    const bool half = dt == DType::f16 || dt == DType::bf16;
    const DType ct = half ? DType::f32 : dt;
    Tensor x2 = x.detach().reshape({rows, in}).to(ct);
    Tensor w = weight.detach().to(ct);
    Tensor bb = bias.defined() ? bias.detach().to(ct) : Tensor();
    out = make_tensor({rows, nout}, ct, x.device());
    if (ct == DType::f64) linear_cpu<double>(x2, w, bb, out);
    else linear_cpu<float>(x2, w, bb, out);
    out = (half ? out.to(dt) : out).view(out_shape);
    selective::keep(op, {out});
  }

  if (needs_grad({&x, &weight, &bias})) {
    // gx = g W; gW = g2^T x2 over all rows; gb = sum of g2's rows (g2, x2: leading dims flattened).
    SavedTensor sx(weight.requires_grad() ? x : Tensor()), sw(x.requires_grad() ? weight : Tensor());
    const bool want_b = bias.defined() && bias.requires_grad();
    record(op, {x, weight, bias}, {out}, [sx, sw, want_b, rows, in, nout](const GradList& g) {
      Tensor gx, gw, gb;
      Tensor g2 = g[0].reshape({rows, nout});
      if (sw.defined()) gx = matmul(g[0], sw.unpack("linear"));
      if (sx.defined()) gw = matmul(g2.t(), sx.unpack("linear").reshape({rows, in}));
      if (want_b) gb = sum(g2, {0});
      return GradList{gx, gw, gb};
    });
  }
  return out;
}

}  // namespace ciuic
