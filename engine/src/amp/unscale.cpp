// The unscale pass of amp::LossScaler: see unscale.h.
#include "unscale.h"

#include <cmath>
#include <map>
#include <utility>

#include "ciuic/autograd.h"
#include "ciuic/kernels/optim_math.h"
#include "ciuic/stream.h"

#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/multi_tensor.h"
#endif

namespace ciuic::amp::detail {

namespace {

constexpr const char* kOp = "LossScaler::unscale_";

// out = in * inv for one CPU tensor pair; returns whether a result is inf or nan.
bool unscale_cpu(const Tensor& in, const Tensor& out, float inv) {
  const Tensor src = in.detach().contiguous();
  const bool direct = out.is_contiguous();
  const Tensor dst = direct ? out.detach() : make_tensor(out.shape(), out.dtype(), out.device());
  const std::int64_t n = src.numel();
  bool found = false;
  dispatch_floating(src.dtype(), kOp, [&](auto itag) {
    using I = decltype(itag);
    dispatch_floating(dst.dtype(), kOp, [&](auto otag) {
      using O = decltype(otag);
      const I* s = static_cast<const I*>(src.data_ptr());
      O* d = static_cast<O*>(dst.data_ptr());
      bool bad = false;
      if constexpr (std::is_same_v<I, double> || std::is_same_v<O, double>) {
        const double dinv = static_cast<double>(inv);
        for (std::int64_t i = 0; i < n; ++i) {
          d[i] = convert<O>(convert<double>(s[i]) * dinv);
          bad |= !std::isfinite(convert<double>(d[i]));  // the stored value: f16 overflows count
        }
      } else {
        for (std::int64_t i = 0; i < n; ++i)
          bad |= !kernels::unscale_element(static_cast<float>(s[i]), inv, d[i]);  // the GPU's function
      }
      found = bad;
    });
  });
  if (direct) out.bump_version();
  else out.detach().copy_(dst);
  return found;
}

}  // namespace

void unscale_grads(const std::vector<UnscaleItem>& items, const Tensor& inv, const Tensor& found_inf) {
  NoGradGuard no_grad;
  CIUIC_CHECK(inv.dtype() == DType::f32 && inv.numel() == 1 && inv.device() == found_inf.device(), DTypeError, kOp,
              "inverse scale ", describe(inv), "; expected one f32 on ", found_inf.device().str());
  if (found_inf.device().is_cpu()) {
    const float inv_scale = *static_cast<const float*>(inv.data_ptr());
    bool found = false;
    for (const UnscaleItem& it : items) {
      CIUIC_CHECK(it.in.device().is_cpu() && it.out.device().is_cpu(), DeviceError, kOp, "gradient ",
                  describe(it.in), " with a CPU flag; expected every gradient of the optimizer on one device");
      found = unscale_cpu(it.in, it.out, inv_scale) || found;
    }
    if (found) found_inf.detach().fill_(1.0);
    return;
  }
#ifdef CIUIC_WITH_CUDA
  const Device dev = found_inf.device();
  DeviceGuard guard(dev);
  struct Lists {
    std::vector<const void*> in;
    std::vector<void*> out;
    std::vector<std::int64_t> numels;
  };
  std::map<std::pair<int, int>, Lists> by_dtype;
  for (const UnscaleItem& it : items) {
    CIUIC_CHECK(it.in.device() == dev && it.out.device() == dev, DeviceError, kOp, "gradient ", describe(it.in),
                " with a flag on ", dev.str(), "; expected every gradient of the optimizer on one device");
    CIUIC_CHECK(it.in.is_contiguous() && it.out.is_contiguous(), NotImplementedError, kOp, "non-contiguous gradient ",
                describe(it.in), " on the GPU; expected contiguous gradients");
    Lists& l = by_dtype[{static_cast<int>(it.in.dtype()), static_cast<int>(it.out.dtype())}];
    l.in.push_back(it.in.data_ptr());
    l.out.push_back(it.out.data_ptr());
    l.numels.push_back(it.in.numel());
  }
  for (auto& [key, l] : by_dtype)
    kernels::multi_tensor_unscale(l.in.data(), static_cast<DType>(key.first), l.out.data(),
                                  static_cast<DType>(key.second), l.numels.data(), static_cast<int>(l.numels.size()),
                                  static_cast<const float*>(inv.data_ptr()), static_cast<float*>(found_inf.data_ptr()),
                                  current_stream(dev));
  for (const UnscaleItem& it : items) it.out.bump_version();
  found_inf.bump_version();
#else
  ::ciuic::detail::fail<DeviceError>(kOp, "gradients on ", found_inf.device().str(),
                                     " need a CUDA build; expected CPU gradients");
#endif
}

}  // namespace ciuic::amp::detail
