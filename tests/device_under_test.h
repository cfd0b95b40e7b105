// The device under test of the [cuda] tests.
//
// A [cuda] test is written once against dut(): on a machine with a usable GPU it is
// cuda(0); everywhere else (CI, the CPU-only build) it is the CPU, so the same test
// body runs with the CPU as the device under test and every line of its logic
// (setup, casts, views, assertions, tolerances, references) runs in CI. A test
// that throws by itself therefore fails in CI instead of on the first GPU run.
//
//   TEST_CASE("softmax on the device under test matches the CPU", "[cuda][ops]") {
//     Tensor x = uniform({7, 33}, -2, 2, DType::f32);   // made on the CPU
//     Tensor y = softmax(to_dut(x), -1);                  // runs on cuda(0) or the CPU
//     CHECK(y.device() == dut());
//     ...compare with softmax(x, -1)...
//   }
//
// What only makes sense on a GPU (a raw-pointer kernel launcher, an error that only
// CUDA raises, a cudaStream_t) goes under `if (dut_is_gpu())` or CIUIC_DUT_GPU_ONLY:
// its host-side setup and reference still run on the CPU. CIUIC_TEST_DEVICE=cpu in
// the environment makes the CPU the device under test on a GPU machine as well.
#pragma once

#include <cstdlib>
#include <cstring>

#include "ciuic/device.h"
#include "ciuic/stream.h"
#include "ciuic/tensor.h"

namespace ciuic::test {

// cuda(0) when a GPU is usable (and CIUIC_TEST_DEVICE is not "cpu"), else the CPU.
inline Device dut() {
  static const Device d = [] {
    const char* env = std::getenv("CIUIC_TEST_DEVICE");
    const bool force_cpu = env != nullptr && std::strcmp(env, "cpu") == 0;
    return !force_cpu && cuda_available() ? Device::cuda(0) : Device::cpu();
  }();
  return d;
}

// True when the device under test is a GPU: raw-pointer launchers may run.
inline bool dut_is_gpu() { return dut().is_cuda(); }

// True when that GPU is the emulated device (-Dgpu_emulation=true, kernels/emu/): it runs
// every kernel, but thousands of times slower than a GPU and in host memory, so tests size
// their problems as for the CPU (a 2^31-element tensor would take hours and 34 GiB).
inline bool dut_is_emulated() {
#if defined(CIUIC_EMULATED_GPU)
  return dut_is_gpu();
#else
  return false;
#endif
}

// A real GPU: GPU-scale problem sizes.
inline bool dut_is_real_gpu() { return dut_is_gpu() && !dut_is_emulated(); }

// The tests' "large" odd size: 1000003 elements (thousands of blocks and a vector tail) on a
// GPU and the CPU; 100003 on the emulated device, where a million-thread launch costs seconds
// (still hundreds of blocks, a multi-block reduction and the same tail).
inline std::int64_t large_n() { return dut_is_emulated() ? 100003 : 1000003; }

// Options for a tensor on the device under test.
inline TensorOptions on_dut(DType dt) { return TensorOptions(dt).device(dut()); }

// A copy of t on the device under test that never shares storage or autograd
// identity with t. Use it instead of t.to(dut()): on the CPU, to() of a tensor
// already there returns t itself, so requires_grad_(), copy_() or fill_() on the
// "device copy" would change the reference input as well.
inline Tensor to_dut(const Tensor& t) { return t.device() == dut() ? t.detach().clone() : t.to(dut()); }
inline Tensor to_dut(const Tensor& t, DType dt) { return to_dut(t.to(dt)); }

// The device under test's current stream (nullptr on the CPU).
inline void* dut_stream() { return current_stream(dut()); }

// Waits for the device under test (a no-op on the CPU).
inline void dut_sync() { synchronize(dut()); }

// The device under test in words, for INFO() and test names.
inline const char* dut_name() { return dut_is_gpu() ? "cuda:0" : "cpu (no usable GPU)"; }

}  // namespace ciuic::test

// Runs a statement only when the device under test is a GPU: a kernel launcher on
// device pointers. On the CPU it is skipped; everything around it still runs.
#define CIUIC_DUT_GPU_ONLY(...)                        \
  do {                                                 \
    if (::ciuic::test::dut_is_gpu()) { __VA_ARGS__; }  \
  } while (0)

// CHECK(cond) on a GPU; on the CPU cond is still evaluated (its code runs, it may
// not throw) but not asserted: for comparisons against a launcher's output, which
// on the CPU holds only the poison.
#define CHECK_ON_GPU(...)                                  \
  do {                                                     \
    if (::ciuic::test::dut_is_gpu()) {                     \
      CHECK(__VA_ARGS__);                                  \
    } else {                                               \
      (void)(__VA_ARGS__);                                 \
    }                                                      \
  } while (0)
