// The shared half of the cuDNN-backed ops: settings (ciuic/cudnn.h), one handle per
// device behind a mutex, the convolution algorithm cache and descriptor helpers.
// Handles and caches are never destroyed: freeing CUDA resources during static
// destruction can run after the driver has shut down.
#include "ciuic/cudnn.h"

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>

#include "cudnn_util.h"
#include "ciuic/error.h"
#include "ciuic/stream.h"

namespace ciuic::cudnn {

namespace {
std::atomic<bool> g_benchmark{false}, g_deterministic{true}, g_allow_tf32{false};
std::atomic<std::size_t> g_workspace_limit{std::size_t(1) << 30};
}  // namespace

void set_benchmark(bool on) { g_benchmark = on; }
bool benchmark() { return g_benchmark; }
void set_deterministic(bool on) { g_deterministic = on; }
bool deterministic() { return g_deterministic; }
void set_allow_tf32(bool on) { g_allow_tf32 = on; }
bool allow_tf32() { return g_allow_tf32; }
void set_workspace_limit(std::size_t bytes) { g_workspace_limit = bytes; }
std::size_t workspace_limit() { return g_workspace_limit; }

}  // namespace ciuic::cudnn

#ifdef CIUIC_WITH_CUDNN

namespace ciuic::ops::cudnn_detail {

namespace {

struct Registry {
  std::mutex mu;
  std::map<int, std::unique_ptr<DeviceState>> devices;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed (see above)
  return *r;
}

DeviceState& device_state(int device) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto& slot = r.devices[device];
  if (!slot) slot = std::make_unique<DeviceState>();
  return *slot;
}

}  // namespace

Lease::Lease(Device d) : device_(d), guard_(d), st_(&device_state(d.index)), lock_(st_->mu) {
  if (!st_->handle) CIUIC_CUDNN_CHECK(cudnnCreate(&st_->handle));
  CIUIC_CUDNN_CHECK(cudnnSetStream(st_->handle, static_cast<cudaStream_t>(current_stream(d))));
}

Settings settings() {
  return Settings{cudnn::benchmark(), cudnn::deterministic(), cudnn::allow_tf32(), cudnn::workspace_limit()};
}

cudnnDataType_t data_type(const char* op, DType t) {
  switch (t) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f16: return CUDNN_DATA_HALF;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    case DType::f64: return CUDNN_DATA_DOUBLE;
    default: break;
  }
  detail::fail<DTypeError>(op, "cuDNN path got dtype ", dtype_name(t), "; expected f32, f16, bf16 or f64");
}

cudnnDataType_t compute_type(DType t) { return t == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT; }

int to_int(const char* op, const char* what, std::int64_t v) {
  CIUIC_CHECK(v >= 0 && v <= INT_MAX, NotImplementedError, op, what, " = ", v,
              " does not fit cuDNN's 32-bit descriptor fields; expected at most ", INT_MAX);
  return static_cast<int>(v);
}

void check_elements(const char* op, const Tensor& t) {
  CIUIC_CHECK(!t.defined() || t.numel() <= INT_MAX, NotImplementedError, op, "tensor ", describe(t), " has ",
              t.numel(), " elements; cuDNN's legacy API takes at most 2^31 - 1 per tensor (split the batch)");
}

void set_nchw(const char* op, const TensorDesc& d, DType t, std::int64_t n, std::int64_t c, std::int64_t h,
              std::int64_t w) {
  CIUIC_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d.get(), CUDNN_TENSOR_NCHW, data_type(op, t), to_int(op, "N", n),
                                               to_int(op, "C", c), to_int(op, "H", h), to_int(op, "W", w)));
}

Tensor dense(const Tensor& t) {
  Tensor c = t.contiguous();
  if (reinterpret_cast<std::uintptr_t>(c.data_ptr()) % 16 != 0) c = t.clone();
  return c;
}

bool not_supported(cudnnStatus_t s) {
  const int v = static_cast<int>(s);
#if CUDNN_MAJOR >= 9
  return v / 1000 == 3;
#else
  return v == static_cast<int>(CUDNN_STATUS_NOT_SUPPORTED);
#endif
}

}  // namespace ciuic::ops::cudnn_detail

namespace ciuic::cudnn {

bool available() { return true; }
long version() { return static_cast<long>(cudnnGetVersion()); }

std::size_t cached_algorithms() {
  auto& r = ops::cudnn_detail::registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::size_t n = 0;
  for (auto& [device, st] : r.devices) {
    std::lock_guard<std::mutex> dlock(st->mu);
    n += st->conv_algos.size();
  }
  return n;
}

void clear_algorithm_cache() {
  auto& r = ops::cudnn_detail::registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto& [device, st] : r.devices) {
    std::lock_guard<std::mutex> dlock(st->mu);
    st->conv_algos.clear();
  }
}

}  // namespace ciuic::cudnn

#else  // no cuDNN in this build

namespace ciuic::cudnn {
bool available() { return false; }
long version() { return 0; }
std::size_t cached_algorithms() { return 0; }
void clear_algorithm_cache() {}
}  // namespace ciuic::cudnn

#endif
