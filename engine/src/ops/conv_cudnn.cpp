// conv2d on CUDA through cuDNN's convolution API (legacy descriptors), NCHW:
//   forward        y  = conv(x, w)             cudnnConvolutionForward, + bias (elementwise add)
//   backward data  dx = conv^T(dy, w)          cudnnConvolutionBackwardData
//   backward filt  dw = corr(x, dy)            cudnnConvolutionBackwardFilter
//   bias gradient  db = sum of dy over (N, H, W)  (the engine's reduction, f32 accumulation)
// f16 and bf16 data accumulate in f32 (compute type FLOAT), f32 in f32 (FMA math
// unless cudnn::set_allow_tf32), f64 in f64. Inputs are made contiguous first.
//
// Algorithms: per (device, direction, dtype, shapes, options, settings) the ranked
// candidates are cached: cuDNN's heuristics (cudnnGet*_v7) or, with
// cudnn::set_benchmark(true), timed runs (cudnnFind*Ex) on the op's own buffers.
// Candidates must succeed, fit the workspace limit, be deterministic when so set,
// and for strict f32 not use Tensor Core math (and f32 is never converted down to
// f16). The workspace comes from the caching allocator on the current stream. A
// candidate cuDNN refuses at run time ("not supported") is dropped and the next one
// runs; none left is a NotImplementedError naming the configuration.
#include "cnn_cuda.h"

#include "op_util.h"

#ifdef CIUIC_WITH_CUDNN
#include <algorithm>
#include <string>

#include "ciuic/cudnn.h"
#include "cudnn_util.h"
#endif

namespace ciuic::ops {

#ifdef CIUIC_WITH_CUDNN

namespace {

using namespace cudnn_detail;

constexpr const char* kOp = "conv2d";

enum class Dir : int { forward = 0, backward_data = 1, backward_filter = 2 };

const char* dir_name(Dir d) {
  switch (d) {
    case Dir::forward: return "forward";
    case Dir::backward_data: return "backward data";
    default: return "backward filter";
  }
}

// The descriptors of one convolution problem.
struct Problem {
  DType dt;
  Shape x_shape, w_shape, y_shape;
  ConvParams p;
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
};

// "f16 input [8, 3, 32, 32], weight [16, 3, 3, 3], stride (1, 1), padding (1, 1), dilation (1, 1), groups 1"
std::string describe_problem(const Problem& pr) {
  return detail::concat(dtype_name(pr.dt), " input ", shape_str(pr.x_shape), ", weight ", shape_str(pr.w_shape),
                        ", output ", shape_str(pr.y_shape), ", stride (", pr.p.sh, ", ", pr.p.sw, "), padding (",
                        pr.p.ph, ", ", pr.p.pw, "), dilation (", pr.p.dh, ", ", pr.p.dw, "), groups ", pr.p.groups);
}

void set_problem(Problem& pr, DType dt, const Shape& xs, const Shape& ws, const Shape& ys, const ConvParams& p) {
  pr.dt = dt;
  pr.x_shape = xs;
  pr.w_shape = ws;
  pr.y_shape = ys;
  pr.p = p;
  set_nchw(kOp, pr.x, dt, xs[0], xs[1], xs[2], xs[3]);
  set_nchw(kOp, pr.y, dt, ys[0], ys[1], ys[2], ys[3]);
  CIUIC_CUDNN_CHECK(cudnnSetFilter4dDescriptor(pr.w.get(), data_type(kOp, dt), CUDNN_TENSOR_NCHW,
                                               to_int(kOp, "Cout", ws[0]), to_int(kOp, "Cin/groups", ws[1]),
                                               to_int(kOp, "kh", ws[2]), to_int(kOp, "kw", ws[3])));
  CIUIC_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
      pr.conv.get(), to_int(kOp, "padding", p.ph), to_int(kOp, "padding", p.pw), to_int(kOp, "stride", p.sh),
      to_int(kOp, "stride", p.sw), to_int(kOp, "dilation", p.dh), to_int(kOp, "dilation", p.dw),
      CUDNN_CROSS_CORRELATION, compute_type(dt)));
  CIUIC_CUDNN_CHECK(cudnnSetConvolutionGroupCount(pr.conv.get(), to_int(kOp, "groups", p.groups)));
  int n = 0, c = 0, h = 0, w = 0;
  CIUIC_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(pr.conv.get(), pr.x.get(), pr.w.get(), &n, &c, &h, &w));
  CIUIC_CHECK(n == ys[0] && c == ys[1] && h == ys[2] && w == ys[3], CudaError, kOp, "cuDNN computes output [", n, ", ",
              c, ", ", h, ", ", w, "] for ", describe_problem(pr), "; expected ", shape_str(ys));
}

bool strict_f32(DType dt, const Settings& s) { return dt == DType::f32 && !s.allow_tf32; }

// The math type set before ranking: what the dtype and settings allow.
cudnnMathType_t math_for(DType dt, const Settings& s) {
  if (dt == DType::f16 || dt == DType::bf16) return CUDNN_TENSOR_OP_MATH;
  if (strict_f32(dt, s)) return CUDNN_FMA_MATH;
  return CUDNN_DEFAULT_MATH;
}

ConvKey conv_key(Device d, Dir dir, const Problem& pr, const Settings& s) {
  ConvKey k;
  const Shape& x = pr.x_shape;
  const Shape& w = pr.w_shape;
  k.v = {d.index, static_cast<int>(dir), static_cast<int>(pr.dt), x[0], x[1], x[2], x[3], w[0], w[1], w[2], w[3],
         pr.p.sh, pr.p.sw, pr.p.ph, pr.p.pw, pr.p.dh, pr.p.dw, pr.p.groups, s.benchmark, s.deterministic,
         s.allow_tf32, static_cast<std::int64_t>(s.workspace_limit), 0, 0};
  return k;
}

// The usable candidates among cuDNN's ranked results.
template <typename Perf>
std::vector<ConvChoice> usable(const Perf* perfs, int n, DType dt, const Settings& s) {
  std::vector<ConvChoice> out;
  for (int i = 0; i < n; ++i) {
    const Perf& pf = perfs[i];
    if (pf.status != CUDNN_STATUS_SUCCESS || pf.memory > s.workspace_limit) continue;
    if (s.deterministic && pf.determinism != CUDNN_DETERMINISTIC) continue;
    const bool tensor_op = pf.mathType == CUDNN_TENSOR_OP_MATH || pf.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (strict_f32(dt, s) && tensor_op) continue;
    // f32 data converted to f16 for Tensor Cores loses more than TF32 does: never.
    if (dt == DType::f32 && pf.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    // Strict f32 always runs with FMA math; otherwise the math type cuDNN ranked it with.
    out.push_back(ConvChoice{static_cast<int>(pf.algo), strict_f32(dt, s) ? CUDNN_FMA_MATH : pf.mathType, pf.memory});
  }
  return out;
}

// Raw pointers of one call: x, w, y for the forward; for the backwards y is dy and
// out is dx or dw.
struct Buffers {
  const void* x = nullptr;
  const void* w = nullptr;
  const void* y = nullptr;
  void* out = nullptr;
};

constexpr int kMaxAlgos = 16;  // more than any direction's algorithm count in cuDNN 8 and 9

std::vector<ConvChoice> heuristics(const Lease& L, Dir dir, const Problem& pr, const Settings& s) {
  int n = 0;
  switch (dir) {
    case Dir::forward: {
      cudnnConvolutionFwdAlgoPerf_t perfs[kMaxAlgos];
      CIUIC_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(L.handle(), pr.x.get(), pr.w.get(), pr.conv.get(),
                                                               pr.y.get(), kMaxAlgos, &n, perfs));
      return usable(perfs, n, pr.dt, s);
    }
    case Dir::backward_data: {
      cudnnConvolutionBwdDataAlgoPerf_t perfs[kMaxAlgos];
      CIUIC_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(L.handle(), pr.w.get(), pr.y.get(), pr.conv.get(),
                                                                    pr.x.get(), kMaxAlgos, &n, perfs));
      return usable(perfs, n, pr.dt, s);
    }
    default: {
      cudnnConvolutionBwdFilterAlgoPerf_t perfs[kMaxAlgos];
      CIUIC_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(L.handle(), pr.x.get(), pr.y.get(),
                                                                      pr.conv.get(), pr.w.get(), kMaxAlgos, &n, perfs));
      return usable(perfs, n, pr.dt, s);
    }
  }
}

// Times the algorithms on the op's buffers (the output buffer is overwritten; the
// real call follows). The workspace offered is the largest any heuristic candidate
// asks for, within the limit.
std::vector<ConvChoice> timed(const Lease& L, Dir dir, const Problem& pr, const Settings& s, const Buffers& b,
                              const std::vector<ConvChoice>& ranked) {
  std::size_t bytes = 0;
  for (const ConvChoice& c : ranked) bytes = std::max(bytes, c.memory);
  Tensor ws = cuda_workspace(L.device(), bytes);
  void* wp = ws.defined() ? ws.data_ptr() : nullptr;
  int n = 0;
  switch (dir) {
    case Dir::forward: {
      cudnnConvolutionFwdAlgoPerf_t perfs[kMaxAlgos];
      CIUIC_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(L.handle(), pr.x.get(), b.x, pr.w.get(), b.w,
                                                               pr.conv.get(), pr.y.get(), b.out, kMaxAlgos, &n, perfs,
                                                               wp, bytes));
      return usable(perfs, n, pr.dt, s);
    }
    case Dir::backward_data: {
      cudnnConvolutionBwdDataAlgoPerf_t perfs[kMaxAlgos];
      CIUIC_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(L.handle(), pr.w.get(), b.w, pr.y.get(), b.y,
                                                                    pr.conv.get(), pr.x.get(), b.out, kMaxAlgos, &n,
                                                                    perfs, wp, bytes));
      return usable(perfs, n, pr.dt, s);
    }
    default: {
      cudnnConvolutionBwdFilterAlgoPerf_t perfs[kMaxAlgos];
      CIUIC_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(L.handle(), pr.x.get(), b.x, pr.y.get(), b.y,
                                                                      pr.conv.get(), pr.w.get(), b.out, kMaxAlgos, &n,
                                                                      perfs, wp, bytes));
      return usable(perfs, n, pr.dt, s);
    }
  }
}

cudnnStatus_t execute(const Lease& L, Dir dir, const Problem& pr, const ConvChoice& c, const Buffers& b, void* ws,
                      std::size_t bytes) {
  const ScaleArg one(1.0), zero(0.0);
  switch (dir) {
    case Dir::forward:
      return cudnnConvolutionForward(L.handle(), one.ptr(pr.dt), pr.x.get(), b.x, pr.w.get(), b.w, pr.conv.get(),
                                     static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), ws, bytes, zero.ptr(pr.dt),
                                     pr.y.get(), b.out);
    case Dir::backward_data:
      return cudnnConvolutionBackwardData(L.handle(), one.ptr(pr.dt), pr.w.get(), b.w, pr.y.get(), b.y,
                                          pr.conv.get(), static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), ws,
                                          bytes, zero.ptr(pr.dt), pr.x.get(), b.out);
    default:
      return cudnnConvolutionBackwardFilter(L.handle(), one.ptr(pr.dt), pr.x.get(), b.x, pr.y.get(), b.y,
                                            pr.conv.get(), static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo), ws,
                                            bytes, zero.ptr(pr.dt), pr.w.get(), b.out);
  }
}

// Runs one direction with the cached (or newly ranked) algorithm.
void run(Dir dir, Problem& pr, const Buffers& b, Device dev) {
  const Settings s = settings();
  Lease L(dev);
  CIUIC_CUDNN_CHECK(cudnnSetConvolutionMathType(pr.conv.get(), math_for(pr.dt, s)));
  const ConvKey key = conv_key(dev, dir, pr, s);
  auto& cache = L.state().conv_algos;
  auto it = cache.find(key);
  if (it == cache.end()) {
    std::vector<ConvChoice> ranked = heuristics(L, dir, pr, s);
    if (s.benchmark && ranked.size() > 1) ranked = timed(L, dir, pr, s, b, ranked);
    it = cache.emplace(key, std::move(ranked)).first;
  }
  std::vector<ConvChoice>& choices = it->second;
  std::size_t i = 0;
  while (i < choices.size()) {
    const ConvChoice c = choices[i];
    CIUIC_CUDNN_CHECK(cudnnSetConvolutionMathType(pr.conv.get(), c.math));
    Tensor ws;
    try {
      ws = cuda_workspace(dev, c.memory);
    } catch (const OutOfMemory&) {
      if (i + 1 < choices.size()) {  // a later candidate may need less
        ++i;
        continue;
      }
      throw;
    }
    const cudnnStatus_t st = execute(L, dir, pr, c, b, ws.defined() ? ws.data_ptr() : nullptr, c.memory);
    if (not_supported(st)) {  // nothing was enqueued: forget this candidate for good
      choices.erase(choices.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    CIUIC_CUDNN_CHECK(st);
    return;
  }
  detail::fail<NotImplementedError>(
      kOp, "cuDNN ", cudnnGetVersion(), " has no usable ", dir_name(dir), " algorithm for ", describe_problem(pr),
      " (deterministic ", s.deterministic ? "on" : "off", ", TF32 ", s.allow_tf32 ? "allowed" : "off",
      ", workspace limit ", s.workspace_limit, " bytes); expected a configuration cuDNN supports");
}

}  // namespace

Tensor conv2d_cuda(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvParams& p, const Shape& out_shape) {
  Tensor out = make_tensor(out_shape, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  NoGradGuard no_grad;
  if (x.numel() == 0 || w.numel() == 0) {  // an empty sum: zeros (plus bias)
    out.zero_();
  } else {
    Tensor xc = dense(x), wc = dense(w);
    for (const Tensor* t : {&xc, &wc, &out}) check_elements(kOp, *t);
    Problem pr;
    set_problem(pr, x.dtype(), x.shape(), w.shape(), out_shape, p);
    run(Dir::forward, pr, Buffers{xc.data_ptr(), wc.data_ptr(), nullptr, out.data_ptr()}, x.device());
  }
  if (bias.defined()) out = add(out, bias.view({1, out_shape[1], 1, 1}));
  return out;
}

GradList conv2d_backward_cuda(const Tensor& gout, const Tensor& x, const Tensor& w, const ConvParams& p,
                              const std::array<bool, 3>& want, const Shape& x_shape, const Shape& w_shape) {
  NoGradGuard no_grad;
  const Device dev = gout.device();
  const DType dt = gout.dtype();
  Tensor gx = want[0] ? make_tensor(x_shape, dt, dev) : Tensor();
  Tensor gw = want[1] ? make_tensor(w_shape, dt, dev) : Tensor();
  Tensor gb = want[2] ? sum(gout, {0, 2, 3}) : Tensor();
  const bool empty = gout.numel() == 0 || shape_numel(x_shape) == 0 || shape_numel(w_shape) == 0;
  if (empty) {  // nothing flows: the gradients that exist are zeros
    if (gx.defined()) gx.zero_();
    if (gw.defined()) gw.zero_();
    return {gx, gw, gb};
  }
  Tensor gc = dense(gout);
  check_elements(kOp, gc);
  Problem pr;
  set_problem(pr, dt, x_shape, w_shape, gout.shape(), p);
  if (want[0]) {
    Tensor wc = dense(w);
    check_elements(kOp, gx);
    run(Dir::backward_data, pr, Buffers{nullptr, wc.data_ptr(), gc.data_ptr(), gx.data_ptr()}, dev);
  }
  if (want[1]) {
    Tensor xc = dense(x);
    check_elements(kOp, xc);
    run(Dir::backward_filter, pr, Buffers{xc.data_ptr(), nullptr, gc.data_ptr(), gw.data_ptr()}, dev);
  }
  return {gx, gw, gb};
}

#else  // no cuDNN

Tensor conv2d_cuda(const Tensor& x, const Tensor&, const Tensor&, const ConvParams&, const Shape&) {
  detail::fail<NotImplementedError>("conv2d", "CUDA tensor ", describe(x),
                                    " needs cuDNN, which this build does not have (Meson did not find libcudnn and "
                                    "cudnn.h); expected a build with cuDNN, or CPU tensors");
}
GradList conv2d_backward_cuda(const Tensor& gout, const Tensor&, const Tensor&, const ConvParams&,
                              const std::array<bool, 3>&, const Shape&, const Shape&) {
  detail::fail<NotImplementedError>("conv2d", "CUDA gradient ", describe(gout),
                                    " needs cuDNN, which this build does not have");
}

#endif

}  // namespace ciuic::ops
