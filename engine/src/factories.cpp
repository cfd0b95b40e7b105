// Tensor factories. Random ones use the counter-based generator so that a
// (seed, offset) gives the same numbers on the CPU and on a GPU.
#include <cmath>

#include "ciuic/autograd.h"
#include "ciuic/philox.h"
#include "cpu_loop.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/core.h"
#endif

namespace ciuic {

static Tensor finish(Tensor t, const TensorOptions& opts) {
  if (opts.requires_grad_) t.requires_grad_(true);
  return t;
}

Tensor empty(const Shape& shape, TensorOptions opts) {
  return finish(make_tensor(shape, opts.dtype_, opts.device_), opts);
}

Tensor full(const Shape& shape, double value, TensorOptions opts) {
  Tensor t = make_tensor(shape, opts.dtype_, opts.device_);
  t.fill_(value);
  return finish(t, opts);
}

Tensor zeros(const Shape& shape, TensorOptions opts) { return full(shape, 0.0, opts); }
Tensor ones(const Shape& shape, TensorOptions opts) { return full(shape, 1.0, opts); }
Tensor empty_like(const Tensor& t) { return make_tensor(t.shape(), t.dtype(), t.device()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, TensorOptions(t.dtype()).device(t.device())); }

Tensor arange(double start, double end, double step, TensorOptions opts) {
  CIUIC_CHECK(step != 0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step), ValueError, "arange",
              "start ", start, ", end ", end, ", step ", step, "; expected finite values and a non-zero step");
  const double span = std::ceil((end - start) / step);  // inf when end - start overflows
  // 2^63 is the first double beyond int64: a longer range is refused before any conversion.
  CIUIC_CHECK(!(span >= 9223372036854775808.0), ValueError, "arange", "start ", start, ", end ", end, ", step ",
              step, " gives ", span, " elements; expected at most 2^63 - 1");
  const std::int64_t n = span > 0 ? static_cast<std::int64_t>(span) : 0;
  // Values in f64 on the host (OutOfMemory, naming the request, when it does not fit), then converted.
  Tensor host = make_tensor({n}, DType::f64, Device::cpu());
  double* v = detail::typed_ptr<double>(host);
  for (std::int64_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i) * step;
  check_device_usable(opts.device_, "arange");
  Tensor out = host.to(opts.device_, opts.dtype_);
  return finish(out, opts);
}

Tensor arange(std::int64_t n, TensorOptions opts) {
  CIUIC_CHECK(n >= 0, ValueError, "arange", "n = ", n, "; expected n >= 0");
  return arange(0.0, static_cast<double>(n), 1.0, opts);
}

namespace {

enum class Dist { uniform, normal };

// Contiguous t[i] = a + (b - a) * U (uniform) or a + b * N (normal), counter first + i.
Tensor random(const Shape& shape, Dist dist, double a, double b, const TensorOptions& opts, Generator* gen,
              const char* op) {
  CIUIC_CHECK(is_floating(opts.dtype_), DTypeError, op, "dtype ", dtype_name(opts.dtype_),
              "; expected a floating dtype");
  Generator& g = gen ? *gen : default_generator();
  Tensor t = make_tensor(shape, opts.dtype_, opts.device_);
  const std::int64_t n = t.numel();
  const std::uint64_t seed = g.seed, first = g.advance(static_cast<std::uint64_t>(n));
  if (t.device().is_cpu()) {
    dispatch_floating(t.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      T* p = detail::typed_ptr<T>(t);
      for (std::int64_t i = 0; i < n; ++i) {
        std::uint64_t c = first + static_cast<std::uint64_t>(i);
        // affine_rn: the same two roundings as the GPU kernel (kernels/src/random.cu)
        double v = dist == Dist::normal ? affine_rn(a, b, static_cast<double>(philox_normal(seed, c)))
                                        : affine_rn(a, b - a, static_cast<double>(philox_uniform(seed, c)));
        p[i] = convert<T>(v);
      }
    });
  } else {
#ifdef CIUIC_WITH_CUDA
    DeviceGuard guard(t.device());
    kernels::random_fill(t.data_ptr(), t.dtype(), n,
                         dist == Dist::normal ? kernels::RandomKind::normal : kernels::RandomKind::uniform, a, b, seed,
                         first, current_stream(t.device()));
#endif
  }
  return finish(t, opts);
}

}  // namespace

Tensor rand(const Shape& shape, TensorOptions opts, Generator* gen) {
  return random(shape, Dist::uniform, 0.0, 1.0, opts, gen, "rand");
}
Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions opts, Generator* gen) {
  CIUIC_CHECK(lo <= hi, ValueError, "uniform", "lo ", lo, " > hi ", hi, "; expected lo <= hi");
  return random(shape, Dist::uniform, lo, hi, opts, gen, "uniform");
}
Tensor randn(const Shape& shape, TensorOptions opts, Generator* gen) {
  return random(shape, Dist::normal, 0.0, 1.0, opts, gen, "randn");
}
Tensor normal(const Shape& shape, double mean, double std, TensorOptions opts, Generator* gen) {
  CIUIC_CHECK(std >= 0, ValueError, "normal", "std ", std, "; expected std >= 0");
  return random(shape, Dist::normal, mean, std, opts, gen, "normal");
}

Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device, std::function<void(void*)> deleter) {
  const std::int64_t n = shape_numel(shape, "from_blob");  // ShapeError: negative size or > 2^63 - 1 elements
  std::int64_t nbytes = 0;
  CIUIC_CHECK(!__builtin_mul_overflow(n, static_cast<std::int64_t>(dtype_size(dtype)), &nbytes), ShapeError,
              "from_blob", dtype_name(dtype), shape_str(shape), " spans more than 2^63 - 1 bytes; expected a shape "
              "that fits in the memory it wraps");
  CIUIC_CHECK(data != nullptr || n == 0, ValueError, "from_blob", "null pointer for shape ",
              shape_str(shape), "; expected memory for ", n, " elements");
  check_device_usable(device, "from_blob");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = wrap_storage(data, static_cast<std::size_t>(nbytes), device, std::move(deleter));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

}  // namespace ciuic
