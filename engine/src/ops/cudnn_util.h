// Internal: what the cuDNN-backed ops share (cudnn_handle.cpp): one cuDNN handle per
// device, leased under that device's mutex with the current stream set, the
// per-shape convolution algorithm cache, RAII descriptors and dtype mapping.
// Included only where CIUIC_WITH_CUDNN is defined.
#pragma once

#ifdef CIUIC_WITH_CUDNN

#include <cudnn.h>

#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "ciuic/cuda_check.h"
#include "ciuic/device.h"
#include "ciuic/tensor.h"

namespace ciuic::ops::cudnn_detail {

// ---- algorithm cache (conv_cudnn.cpp fills it) ----

// Everything that decides a convolution's algorithm: direction, dtype, shapes,
// options and the settings in force (see conv_cudnn.cpp's conv_key).
struct ConvKey {
  std::array<std::int64_t, 24> v{};
  bool operator==(const ConvKey& o) const { return v == o.v; }
};
struct ConvKeyHash {
  std::size_t operator()(const ConvKey& k) const {
    std::size_t h = 1469598103934665603ull;
    for (std::int64_t x : k.v) h = (h ^ static_cast<std::size_t>(x)) * 1099511628211ull;
    return h;
  }
};
// One usable algorithm: cuDNN's enum value, its math type and workspace bytes.
struct ConvChoice {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  std::size_t memory = 0;
};

struct DeviceState {
  std::mutex mu;
  cudnnHandle_t handle = nullptr;
  // Ranked candidates, best first; a candidate cuDNN refuses at run time is dropped.
  std::unordered_map<ConvKey, std::vector<ConvChoice>, ConvKeyHash> conv_algos;
};

// Exclusive use of device d's handle for one op: sets the device, locks the
// device's state, creates the handle on first use and binds it to d's current
// stream. Hold it across every cuDNN call of the op (and its workspace).
class Lease {
 public:
  explicit Lease(Device d);
  cudnnHandle_t handle() const { return st_->handle; }
  DeviceState& state() const { return *st_; }
  Device device() const { return device_; }

 private:
  Device device_;
  DeviceGuard guard_;
  DeviceState* st_;
  std::unique_lock<std::mutex> lock_;
};

// Settings (ciuic/cudnn.h), read once per op.
struct Settings {
  bool benchmark, deterministic, allow_tf32;
  std::size_t workspace_limit;
};
Settings settings();

// ---- descriptors ----

template <typename D, cudnnStatus_t (*Create)(D*), cudnnStatus_t (*Destroy)(D)>
class Desc {
 public:
  Desc() { CIUIC_CUDNN_CHECK(Create(&d_)); }
  ~Desc() {
    if (d_) (void)Destroy(d_);  // a destroy failure during unwinding is not reported
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  D get() const { return d_; }

 private:
  D d_ = nullptr;
};
using TensorDesc = Desc<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = Desc<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc =
    Desc<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;
using PoolDesc = Desc<cudnnPoolingDescriptor_t, cudnnCreatePoolingDescriptor, cudnnDestroyPoolingDescriptor>;

// cuDNN's data type for a floating dtype (f32, f16, bf16, f64); others: DTypeError naming op.
cudnnDataType_t data_type(const char* op, DType t);
// The type convolutions accumulate in: f32 for f32/f16/bf16, f64 for f64.
cudnnDataType_t compute_type(DType t);

// v as an int for a cuDNN descriptor; NotImplementedError naming op and what beyond INT_MAX.
int to_int(const char* op, const char* what, std::int64_t v);
// cuDNN's legacy API indexes tensors with 32-bit integers: NotImplementedError naming op
// for a tensor of 2^31 or more elements.
void check_elements(const char* op, const Tensor& t);

// A packed NCHW descriptor of dtype t.
void set_nchw(const char* op, const TensorDesc& d, DType t, std::int64_t n, std::int64_t c, std::int64_t h,
              std::int64_t w);

// alpha / beta in the type cuDNN reads them as (double for f64 data, float otherwise).
struct ScaleArg {
  float f;
  double d;
  ScaleArg(double v) : f(static_cast<float>(v)), d(v) {}
  const void* ptr(DType t) const { return t == DType::f64 ? static_cast<const void*>(&d) : &f; }
};

// t as a contiguous tensor whose data starts 16-byte aligned (a narrowed view may
// not; cuDNN's vectorised and Tensor Core kernels need aligned pointers): t itself,
// or a fresh copy.
Tensor dense(const Tensor& t);

// True for cuDNN's "not supported" category (3000..3999 in cuDNN 9; 9 in cuDNN 8).
bool not_supported(cudnnStatus_t s);

}  // namespace ciuic::ops::cudnn_detail

#endif  // CIUIC_WITH_CUDNN
