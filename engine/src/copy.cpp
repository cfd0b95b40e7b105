// Copies between views, dtypes and devices: copy_, to, clone, contiguous, fill_,
// item, and the host staging used by to_vector and from_vector.
#include <cstring>

#include "ciuic/autograd.h"
#include "ciuic/host_sync.h"
#include "ciuic/ops.h"
#include "ciuic/stream.h"
#include "cpu_loop.h"

#ifdef CIUIC_WITH_CUDA
#include <cuda_runtime.h>

#include "ciuic/cuda_check.h"
#include "ciuic/kernels/core.h"
#endif

namespace ciuic {

namespace {

// In-place writes into a tensor that takes part in autograd would silently
// corrupt gradients; this engine does not differentiate through them.
void check_inplace_allowed(const Tensor& t, const char* op) {
  CIUIC_CHECK(!(grad_mode_enabled() && t.requires_grad()), AutogradError, op, "in-place write into ", describe(t),
              " which requires grad; expected it under NoGradGuard (e.g. in an optimizer step) or on a detached tensor");
}

void cpu_copy(const Tensor& dst, const Tensor& src_b, const Shape& src_strides) {
  dispatch_dtype(dst.dtype(), "copy_", [&](auto dtag) {
    using To = decltype(dtag);
    dispatch_dtype(src_b.dtype(), "copy_", [&](auto stag) {
      using From = decltype(stag);
      To* d = detail::typed_ptr<To>(dst);
      const From* s = detail::typed_ptr<From>(src_b);
      detail::cpu_for_each<2>(dst.shape(), {dst.strides(), src_strides},
                              [&](const auto& o) { d[o[0]] = convert<To>(s[o[1]]); });
    });
  });
}

#ifdef CIUIC_WITH_CUDA
StridedLayout layout_of(const Shape& shape, const Shape& strides, const char* op) {
  CIUIC_CHECK(shape.size() <= static_cast<std::size_t>(kMaxDims), NotImplementedError, op, "a CUDA view of ",
              shape.size(), " dims (", shape_str(shape), "); expected at most ", kMaxDims,
              " dims (call contiguous() or reshape first)");
  StridedLayout l;
  l.ndim = static_cast<int>(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) {
    l.shape[i] = shape[i];
    l.strides[i] = strides[i];
  }
  return l;
}

void cuda_copy(const Tensor& dst, const Tensor& src, const Shape& src_strides) {
  DeviceGuard g(dst.device());
  kernels::copy_cast(dst.data_ptr(), dst.dtype(), layout_of(dst.shape(), dst.strides(), "copy_"), src.data_ptr(),
                     src.dtype(), layout_of(dst.shape(), src_strides, "copy_"), dst.numel(),
                     current_stream(dst.device()));
}

// Contiguous same-dtype bytes between devices (at least one of them a GPU).
void memcpy_across(const Tensor& dst, const Tensor& src) {
  std::size_t bytes = static_cast<std::size_t>(src.numel()) * src.element_size();
  if (bytes == 0) return;
  if (src.device().is_cuda() && dst.device().is_cuda()) {
    // src was produced on its own device's current stream: the copy, enqueued on
    // dst's stream, must wait for that work (an event recorded there), and it runs
    // with dst's device current.
    Event produced(src.device());
    produced.record(current_stream(src.device()));  // record() makes src's device current
    DeviceGuard gd(dst.device());
    auto s = static_cast<cudaStream_t>(current_stream(dst.device()));
    // Not Event::wait_on: it would read a null s as the *source* device's default stream.
    CIUIC_CUDA_CHECK(cudaStreamWaitEvent(s, static_cast<cudaEvent_t>(produced.handle()), 0));
    CIUIC_CUDA_CHECK(cudaMemcpyPeerAsync(dst.data_ptr(), dst.device().index, src.data_ptr(), src.device().index,
                                         bytes, s));
    // src (often a staging buffer freed on return) must outlive the copy: finish now.
    CIUIC_CUDA_CHECK(cudaStreamSynchronize(s));
    return;
  }
  Device gpu = src.device().is_cuda() ? src.device() : dst.device();
  DeviceGuard g(gpu);
  auto s = static_cast<cudaStream_t>(current_stream(gpu));
  auto kind = src.device().is_cuda() ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice;
  CIUIC_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), bytes, kind, s));
  // Host memory is pageable and may be freed right after we return: finish now.
  CIUIC_CUDA_CHECK(cudaStreamSynchronize(s));
  if (src.device().is_cuda()) {
    detail::count_d2h_copy();
    check_device_errors(src.device());  // the host waited: every earlier kernel on the stream is done
  }
}
#endif

// The bytes [first, last) of storage a view can touch (numel > 0): from its lowest to its
// highest element, whatever the sign of its strides.
std::pair<std::int64_t, std::int64_t> byte_span(const Tensor& t) {
  std::int64_t lo = t.offset(), hi = t.offset();
  for (std::size_t d = 0; d < t.shape().size(); ++d) {
    const std::int64_t reach = (t.shape()[d] - 1) * t.strides()[d];
    (reach < 0 ? lo : hi) += reach;
  }
  const auto es = static_cast<std::int64_t>(t.element_size());
  return {lo * es, (hi + 1) * es};
}

// Could writing dst change what is read from src? Same storage and intersecting byte
// spans (conservative: interleaved views that never share an element also count).
bool may_overlap(const Tensor& dst, const Tensor& src) {
  if (dst.storage() != src.storage() || dst.numel() == 0 || src.numel() == 0) return false;
  auto [d0, d1] = byte_span(dst);
  auto [s0, s1] = byte_span(src);
  return d0 < s1 && s0 < d1;
}

// dst <- src (already broadcast-checked), any devices and dtypes.
void copy_impl(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  Shape src_strides = detail::broadcast_strides(src, dst.shape());
  if (dst.device().is_cpu() && src.device().is_cpu()) {
    cpu_copy(dst, src, src_strides);
    return;
  }
#ifdef CIUIC_WITH_CUDA
  if (dst.device() == src.device()) {
    cuda_copy(dst, src, src_strides);
    return;
  }
  // Across devices: materialise src in dst's dtype and shape on its own device, move the
  // bytes, then scatter into dst's view on dst's device.
  Tensor staged = make_tensor(dst.shape(), dst.dtype(), src.device());
  copy_impl(staged, src);
  if (dst.is_contiguous()) {
    memcpy_across(dst, staged);
  } else {
    Tensor landed = make_tensor(dst.shape(), dst.dtype(), dst.device());
    memcpy_across(landed, staged);
    copy_impl(dst, landed);
  }
#else
  detail::fail<DeviceError>("copy_", "copy from ", describe(src), " to ", describe(dst),
                            " needs CUDA, but this build has none; expected CPU tensors");
#endif
}

}  // namespace

Tensor& Tensor::copy_(const Tensor& src) {
  CIUIC_CHECK(defined() && src.defined(), ValueError, "copy_", "undefined tensor (dst ", describe(*this), ", src ",
              describe(src), "); expected both defined");
  check_inplace_allowed(*this, "copy_");
  broadcast_shapes(shape(), src.shape(), "copy_");  // throws when they do not broadcast
  CIUIC_CHECK(src.dim() <= dim(), ShapeError, "copy_", "source ", describe(src), " has more dims than destination ",
              describe(*this), "; expected src to broadcast to the destination shape");
  for (std::size_t i = 0; i < src.shape().size(); ++i) {
    std::int64_t s = src.shape()[src.shape().size() - 1 - i], d = shape()[shape().size() - 1 - i];
    CIUIC_CHECK(s == d || s == 1, ShapeError, "copy_", "source ", describe(src), " does not broadcast to destination ",
                describe(*this), "; expected each source dim to equal the destination's or be 1");
  }
  if (src.storage() == storage() && src.data_ptr() == data_ptr() && src.shape() == shape() &&
      src.strides() == strides() && src.dtype() == dtype())
    return *this;  // copy onto itself
  if (may_overlap(*this, src)) {
    // x[1:].copy_(x[:-1]), x.copy_(x.t()): read everything before writing anything.
    Tensor staged = make_tensor(src.shape(), src.dtype(), src.device());
    copy_impl(staged, src);
    copy_impl(*this, staged);
  } else {
    copy_impl(*this, src);
  }
  bump_version();
  return *this;
}

Tensor& Tensor::fill_(double v) {
  CIUIC_CHECK(defined(), ValueError, "fill_", "undefined tensor; expected a defined tensor");
  check_inplace_allowed(*this, "fill_");
  if (device().is_cpu()) {
    dispatch_dtype(dtype(), "fill_", [&](auto tag) {
      using T = decltype(tag);
      T value = convert<T>(v);
      T* p = detail::typed_ptr<T>(*this);
      detail::cpu_for_each<1>(shape(), {strides()}, [&](const auto& o) { p[o[0]] = value; });
    });
  } else {
#ifdef CIUIC_WITH_CUDA
    DeviceGuard g(device());
    kernels::fill(data_ptr(), dtype(), layout_of(shape(), strides(), "fill_"), numel(), v, current_stream(device()));
#endif
  }
  bump_version();
  return *this;
}

// Differentiable change of device and/or dtype.
static Tensor convert_to(const Tensor& src, Device d, DType t, const char* op) {
  Tensor out = make_tensor(src.shape(), t, d);
  copy_impl(out, src);
  if (needs_grad({&src}) && is_floating(t)) {
    Device sd = src.device();
    DType st = src.dtype();
    record(op, {src}, {out}, [sd, st](const GradList& g) { return GradList{g[0].to(sd, st)}; });
  }
  return out;
}

Tensor Tensor::to(Device d, DType t) const {
  CIUIC_CHECK(defined(), ValueError, "to", "undefined tensor; expected a defined tensor");
  if (d == device() && t == dtype()) return *this;
  check_device_usable(d, "to");
  return convert_to(*this, d, t, "to");
}
Tensor Tensor::to(Device d) const { return to(d, dtype()); }
Tensor Tensor::to(DType t) const { return to(device(), t); }

Tensor Tensor::clone() const {
  CIUIC_CHECK(defined(), ValueError, "clone", "undefined tensor; expected a defined tensor");
  return convert_to(*this, device(), dtype(), "clone");
}

Tensor Tensor::contiguous() const {
  CIUIC_CHECK(defined(), ValueError, "contiguous", "undefined tensor; expected a defined tensor");
  return is_contiguous() ? *this : clone();
}

double Tensor::item() const {
  CIUIC_CHECK(defined(), ValueError, "item", "undefined tensor; expected a defined tensor");
  CIUIC_CHECK(numel() == 1, ShapeError, "item", "tensor ", describe(*this), " has ", numel(),
              " elements; expected exactly one");
  detail::count_item_read();
  auto bytes = detail::host_bytes(*this, DType::f64);  // a check point of deferred errors
  double v;
  std::memcpy(&v, bytes.data(), sizeof v);
  return v;
}

namespace detail {

std::vector<unsigned char> host_bytes(const Tensor& t, DType to) {
  CIUIC_CHECK(t.defined(), ValueError, "to_vector", "undefined tensor; expected a defined tensor");
  std::vector<unsigned char> out(static_cast<std::size_t>(t.numel()) * dtype_size(to));
  if (out.empty()) return out;
  Tensor host = from_blob(out.data(), t.shape(), to, Device::cpu());
  copy_impl(host, t.detach());
  // A read to the host is a check point of deferred errors on every device (a GPU tensor's copy
  // checked its device in copy_impl); a CPU op's deferred error surfaces here, as on a GPU.
  if (t.device().is_cpu()) check_device_errors(Device::cpu());
  return out;
}

Tensor from_host(const void* data, DType dtype, const Shape& shape, TensorOptions opts) {
  Tensor src = from_blob(const_cast<void*>(data), shape, dtype, Device::cpu());
  check_device_usable(opts.device_, "from_vector");
  Tensor out = make_tensor(shape, opts.dtype_, opts.device_);
  copy_impl(out, src);
  if (opts.requires_grad_) out.requires_grad_(true);
  return out;
}

}  // namespace detail

Tensor scalar_tensor(double value, TensorOptions opts) {
  return detail::from_host(&value, DType::f64, {}, opts);
}

}  // namespace ciuic
