// [cuda] tensor core on the device under test (cuda:0, or the CPU where no GPU is
// usable, see device_under_test.h): host/device copies, views, casts, fills, random
// numbers identical to the CPU's.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "ciuic/ciuic.h"
#ifdef CIUIC_WITH_CUDA
#include "ciuic/kernels/gemm.h"
#endif
#include "device_under_test.h"
#include "test_util.h"

using namespace ciuic;
using ciuic::test::dut;
using ciuic::test::dut_is_gpu;
using ciuic::test::to_dut;

namespace {
std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }
// ||got - ref|| / ||ref|| (got may live on the device under test)
double rel_err_vs(const Tensor& got, const Tensor& ref) {
  auto g = vals(got.to(Device::cpu())), r = vals(ref);
  if (g.size() != r.size()) return INFINITY;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    num += (g[i] - r[i]) * (g[i] - r[i]);
    den += r[i] * r[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}
}  // namespace

TEST_CASE("host -> device -> host round trips every dtype", "[cuda][tensor]") {
  INFO("device under test: " << ciuic::test::dut_name());
  Tensor src = uniform({7, 13}, -100, 100, DType::f64);  // odd sizes, never zeros
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i32, DType::i64, DType::u8, DType::boolean}) {
    INFO(dtype_name(dt));
    Tensor host = (dt == DType::u8) ? abs(src).to(dt) : src.to(dt);
    Tensor dev = to_dut(host);
    CHECK(dev.device() == dut());
    CHECK(vals(dev.to(Device::cpu())) == vals(host));
  }
}

TEST_CASE("device copies of non-contiguous views, with casts, match the CPU", "[cuda][tensor]") {
  INFO("device under test: " << ciuic::test::dut_name());
  Tensor cpu = uniform({5, 6, 7}, -3, 3, DType::f32);
  Tensor gpu = to_dut(cpu);
  auto check_same = [](const Tensor& g, const Tensor& c) { CHECK(vals(g) == vals(c)); };
  check_same(gpu.transpose(0, 2).contiguous(), cpu.transpose(0, 2).contiguous());
  check_same(gpu.permute({2, 0, 1}).slice(1, 1, 5, 2), cpu.permute({2, 0, 1}).slice(1, 1, 5, 2));
  check_same(gpu.select(1, 3).to(DType::f16), cpu.select(1, 3).to(DType::f16));
  check_same(gpu.slice(2, 0, 7, 3).to(DType::bf16).to(DType::f64), cpu.slice(2, 0, 7, 3).to(DType::bf16).to(DType::f64));
  // copy_ into a strided device view, from a broadcast host tensor, poisoning first
  Tensor dst = full({6, 5}, NAN, TensorOptions(DType::f32).device(dut()));
  Tensor dst_cpu = full({6, 5}, NAN, DType::f32);
  Tensor row = from_vector<double>({1, 2, 3, 4, 5, 6}, {6, 1});
  dst.slice(1, 1, 5, 2).copy_(row);
  dst_cpu.slice(1, 1, 5, 2).copy_(row);
  auto a = vals(dst), b = vals(dst_cpu);
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(((std::isnan(a[i]) && std::isnan(b[i])) || a[i] == b[i]));
  // device -> non-contiguous host view
  Tensor host = zeros({6, 5}, DType::f64);  // host.t() is (5, 6) like gpu.select(2, 0)
  host.t().copy_(gpu.select(2, 0));
  check_same(host.t(), cpu.select(2, 0));
}

TEST_CASE("fills and random numbers are identical on CPU and GPU", "[cuda][tensor]") {
  INFO("device under test: " << ciuic::test::dut_name());
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    INFO(dtype_name(dt));
    Generator g1{77, 1000}, g2{77, 1000};
    CHECK(vals(rand({1001}, TensorOptions(dt).device(dut()), &g1)) == vals(rand({1001}, dt, &g2)));
    CHECK(g1.offset == g2.offset);
    Generator g3{78, 5}, g4{78, 5};
    auto n_gpu = vals(randn({999}, TensorOptions(dt).device(dut()), &g3));
    auto n_cpu = vals(randn({999}, dt, &g4));
    for (std::size_t i = 0; i < n_cpu.size(); ++i) CHECK(n_gpu[i] == Approx(n_cpu[i]).epsilon(1e-6));
    CHECK(vals(full({3, 17}, -2.75, TensorOptions(dt).device(dut()))) == vals(full({3, 17}, -2.75, dt)));
  }
}

TEST_CASE("device tensors report their allocator's statistics", "[cuda][alloc]") {
  INFO("device under test: " << ciuic::test::dut_name());
  Allocator& a = allocator_for(dut());
  std::size_t before = a.stats().allocated_bytes;
  {
    Tensor t = empty({1 << 20}, TensorOptions(DType::f32).device(dut()));
    CHECK(a.stats().allocated_bytes >= before + (4u << 20));
  }
  CHECK(a.stats().allocated_bytes == before);
}

TEST_CASE("integer casts on the device follow the CPU's C++ conversions, out-of-range values included",
          "[cuda][tensor]") {
  INFO("device under test: " << ciuic::test::dut_name());
  // Values that a trip through double would change: beyond i32, negative into u8,
  // beyond 2^53 into f32 (one rounding, not two), the i64 extremes.
  const std::vector<std::int64_t> iv = {1LL << 40, -1, 255, 256, -129, 3, (1LL << 53) + 1, (1LL << 62) + (1LL << 38) + 1,
                                        std::numeric_limits<std::int64_t>::max(),
                                        std::numeric_limits<std::int64_t>::min(), 2147483648LL, -2147483649LL};
  const auto n = static_cast<std::int64_t>(iv.size());
  Tensor src = from_vector<std::int64_t>(iv, {n});
  for (DType dt : {DType::i32, DType::u8, DType::f32, DType::f16, DType::bf16, DType::f64, DType::boolean}) {
    INFO("i64 -> " << dtype_name(dt));
    Tensor got = to_dut(src).to(dt).to(Device::cpu());
    Tensor want = src.to(dt);
    CHECK(vals(got) == vals(want));
  }
  // The CPU reference itself is C++'s static_cast (modular for integers, one
  // rounding to nearest for floats):
  auto i32 = to_dut(src).to(DType::i32).to(Device::cpu()).to_vector<std::int32_t>();
  CHECK(i32[0] == 0);             // 2^40 mod 2^32
  CHECK(i32[1] == -1);
  CHECK(i32[10] == -2147483647 - 1);  // 2^31 wraps
  auto u8 = to_dut(src).to(DType::u8).to(Device::cpu()).to_vector<std::uint8_t>();
  CHECK(u8[1] == 255);
  CHECK(u8[3] == 0);
  CHECK(u8[4] == 127);  // -129 mod 256
  auto f32 = to_dut(src).to(DType::f32).to(Device::cpu()).to_vector<float>();
  CHECK(f32[7] == static_cast<float>((1LL << 62) + (1LL << 38) + 1));  // rounds up once; via double it would tie down
  // Narrower integer sources, and integers into every width, strided.
  Tensor i32src = from_vector<std::int32_t>({-1, 300, -300, 2147483647, -2147483647 - 1, 7}, {2, 3});
  for (DType dt : {DType::u8, DType::i64, DType::f16, DType::boolean}) {
    INFO("i32 (transposed) -> " << dtype_name(dt));
    CHECK(vals(to_dut(i32src).t().to(dt).to(Device::cpu())) == vals(i32src.t().to(dt)));
  }
  Tensor u8src = from_vector<std::uint8_t>({0, 1, 128, 255}, {4});
  for (DType dt : {DType::i32, DType::i64, DType::f16, DType::bf16, DType::boolean}) {
    INFO("u8 -> " << dtype_name(dt));
    CHECK(vals(to_dut(u8src).to(dt).to(Device::cpu())) == vals(u8src.to(dt)));
  }
}

TEST_CASE("f64 uniform(lo, hi) and normal(mean, std) on the device match the CPU bit for bit", "[cuda][tensor]") {
  INFO("device under test: " << ciuic::test::dut_name());
  // lo + (hi - lo) * u with both operations rounded separately on both devices
  // (no contraction into an fma): the same 53-bit results.
  for (auto [lo, hi] : {std::pair<double, double>{-3.7, 11.3}, {1e-3, 1e-3 + 1e-9}, {-1e6, 1e6 / 3}}) {
    INFO("uniform(" << lo << ", " << hi << ")");
    Generator g1{91, 17}, g2{91, 17};
    Tensor got = uniform({4099}, lo, hi, ciuic::test::on_dut(DType::f64), &g1);
    Tensor want = uniform({4099}, lo, hi, DType::f64, &g2);
    CHECK(vals(got) == vals(want));
    CHECK(g1.offset == g2.offset);
    Generator g3{91, 17}, g4{91, 17};
    Tensor got32 = uniform({4099}, lo, hi, ciuic::test::on_dut(DType::f32), &g3);
    CHECK(vals(got32) == vals(uniform({4099}, lo, hi, DType::f32, &g4)));
  }
  // normal: the Box-Muller transcendentals may differ in the last f32 bit between the
  // devices' libm, so the affine step is checked through a std of 1 and a mean of 0
  // against the CPU's a + b * n on the device's own n.
  Generator g5{5, 0}, g6{5, 0};
  auto n01 = vals(normal({2049}, 0.0, 1.0, ciuic::test::on_dut(DType::f64), &g5));
  auto nab = vals(normal({2049}, 2.5, 0.3, ciuic::test::on_dut(DType::f64), &g6));
  for (std::size_t i = 0; i < n01.size(); ++i) {
    const volatile double prod = 0.3 * n01[i];  // volatile: two roundings, as the kernel does
    CHECK(nab[i] == 2.5 + prod);
  }
}

TEST_CASE("a tensor of 2^31 + 7 elements goes through an elementwise op, a reduction and a copy",
          "[cuda][tensor][large]") {
  INFO("device under test: " << ciuic::test::dut_name());
  // 64-bit indexing: every kernel on the GPU must address elements past 2^31. The
  // CPU variant runs the same logic on 2^20 + 7 elements (the 2^31 case needs ~34 GiB).
  const std::int64_t n = ciuic::test::dut_is_real_gpu() ? (1LL << 31) + 7 : (1LL << 20) + 7;
  Tensor y;
  {
    // x[i] = i mod 256 (an i64 -> u8 cast wraps), exact in f16; y = x / 2
    Tensor x = arange(n, ciuic::test::on_dut(DType::i64)).to(DType::u8).to(DType::f16);
    y = mul(x, 0.5);
  }
  CHECK(y.numel() == n);
  auto expect_at = [](std::int64_t i) { return static_cast<double>(i % 256) / 2; };
  auto check_window = [&](const Tensor& t, std::int64_t start, std::int64_t len) {
    auto v = vals(t.slice(0, start, start + len).to(Device::cpu()));
    std::size_t bad = 0;
    for (std::int64_t j = 0; j < len; ++j) bad += v[static_cast<std::size_t>(j)] != expect_at(start + j);
    INFO("window [" << start << ", " << start + len << ")");
    CHECK(bad == 0);
  };
  check_window(y, 0, 300);
  check_window(y, n / 2 - 150, 300);
  check_window(y, n - 300, 300);  // past 2^31 on the GPU
  // reductions over everything: max and its first index, the sum in f32
  auto [mx, arg] = max(y.view({1, n}), 1);
  CHECK(mx.item() == 127.5);
  CHECK(arg.item() == 255);
  const std::int64_t q = n / 256, r = n % 256;
  const double want_sum = (static_cast<double>(q) * (255.0 * 256.0 / 2) + static_cast<double>(r * (r - 1) / 2)) / 2;
  Tensor s = sum(y.to(DType::f32));
  CHECK(s.item() == Approx(want_sum).epsilon(1e-5));
  // a strided copy: every other element of the upper half, written into a fresh tensor
  Tensor z = full({n / 2}, NAN, ciuic::test::on_dut(DType::f16));
  z.slice(0, 0, n / 2, 2).copy_(y.slice(0, n / 2, n, 2).slice(0, 0, (n / 2 + 1) / 2));
  auto zv = vals(z.slice(0, n / 2 - 8, n / 2).to(Device::cpu()));
  for (std::size_t j = 0; j < zv.size(); ++j) {
    const std::int64_t idx = n / 2 - 8 + static_cast<std::int64_t>(j);
    if (idx % 2 == 0) CHECK(zv[j] == expect_at(n / 2 + idx));
    else CHECK(std::isnan(zv[j]));
  }
}

TEST_CASE("ops run on a non-default stream and agree with the default stream", "[cuda][tensor]") {
  INFO("device under test: " << ciuic::test::dut_name());
  Tensor a = uniform({33, 65}, -2, 2, DType::f32), b = uniform({65, 17}, -2, 2, DType::f32);
  Tensor ref_mm = matmul(a, b), ref_sm = softmax(a, -1), ref_sum = sum(a, {0});
  Stream s = Stream::create(dut());
  Tensor mm, sm, sd, back;
  {
    StreamGuard guard(s);
    CHECK(current_stream(dut()) == s.handle());
    Tensor ad = to_dut(a), bd = to_dut(b);
    mm = matmul(ad, bd);
    sm = softmax(add(ad, 0.0), -1);
    sd = sum(ad, {0});
    back = mm.to(Device::cpu());  // a device -> host copy ordered on this stream
  }
  s.synchronize();
  CHECK(rel_err_vs(mm, ref_mm) <= 1e-5);
  CHECK(rel_err_vs(back, ref_mm) <= 1e-5);
  CHECK(rel_err_vs(sm, ref_sm) <= 1e-5);
  CHECK(rel_err_vs(sd, ref_sum) <= 1e-5);
}

TEST_CASE("a stream created, used for a matmul and dropped 100 times keeps memory flat", "[cuda][tensor]") {
  INFO("device under test: " << ciuic::test::dut_name());
  // Per-stream caches (allocator blocks, the 32 MiB GEMM workspace) are keyed by the
  // stream's handle: Stream::create pools its streams, so neither a recycled handle
  // (a race) nor a stranded cache (a leak per stream) can happen.
  auto workspaces = [] {
#ifdef CIUIC_WITH_CUDA
    return dut_is_gpu() ? kernels::gemm_cached_workspaces() : std::size_t{0};
#else
    return std::size_t{0};
#endif
  };
  Tensor a = uniform({64, 96}, -1, 1, DType::f32), b = uniform({96, 33}, -1, 1, DType::f32);
  Tensor ref = matmul(a, b);
  Tensor ad = to_dut(a), bd = to_dut(b);
  Allocator& alloc = allocator_for(dut());
  std::size_t reserved_mid = 0, ws_mid = 0;
  StreamHandle previous = reinterpret_cast<StreamHandle>(0x1);
  for (int i = 0; i < 100; ++i) {
    Stream s = Stream::create(dut());
    if (dut_is_gpu()) CHECK(s.handle() != previous);  // consecutive streams differ
    previous = s.handle();
    Tensor host;
    {
      StreamGuard guard(s);
      Tensor out = matmul(ad, bd);
      host = out.to(Device::cpu());  // waits for s
    }
    if (i % 25 == 0) CHECK(rel_err_vs(host, ref) <= 1e-5);
    if (i == 69) {  // every pooled stream has been used at least twice
      reserved_mid = alloc.stats().reserved_bytes;
      ws_mid = workspaces();
    }
  }
  CHECK(alloc.stats().reserved_bytes == reserved_mid);
  CHECK(workspaces() == ws_mid);
  CHECK(workspaces() <= 33);  // at most one per pooled stream, plus the default stream's
}

TEST_CASE("a copy between two GPUs waits for the work that produced its source", "[cuda][tensor]") {
  INFO("device under test: " << ciuic::test::dut_name());
  // The producer runs on a non-default stream of the source device; the copy is
  // enqueued on the destination's stream and must wait for it (an event), with
  // the destination device current. Needs two GPUs; elsewhere the same logic runs
  // with the device under test as both ends.
  const bool two = dut_is_gpu() && cuda_device_count() >= 2;
  if (!two) WARN("one device: the cross-device path needs two GPUs; running the same-device logic");
  const Device src_dev = dut(), dst_dev = two ? Device::cuda(1) : dut();
  // 2^22 elements keep a GPU's source stream busy for the copy to overtake; the emulated
  // device is slow enough at 2^18 (and 2^22 would cost it half a minute).
  Tensor x = uniform({ciuic::test::dut_is_emulated() ? 1 << 18 : 1 << 22}, -1, 1, DType::f32);
  Tensor want = mul(add(mul(x, 3.0), 1.0), 0.5);
  for (int rep = 0; rep < 3; ++rep) {
    Stream s = Stream::create(src_dev);
    Tensor got;
    {
      StreamGuard guard(s);
      Tensor y = to_dut(x);
      for (int i = 0; i < 20; ++i) y = mul(y, 1.0);  // keep the source stream busy
      y = mul(add(mul(y, 3.0), 1.0), 0.5);
      got = y.to(dst_dev);
    }
    if (!two && dut_is_gpu()) {
      // One device: to() returned y itself, still being written on s. A reader on another
      // stream must wait for s, as with PyTorch's wait_stream (pooled streams are non-blocking).
      Event done(src_dev);
      done.record(s.handle());
      done.wait_on(current_stream(dst_dev));
    }
    CHECK(got.device() == dst_dev);
    // A count, not the vectors: Catch2 would print 2^22 values on a failure.
    const std::vector<double> g = vals(got.to(Device::cpu())), w = vals(want);
    std::size_t differing = 0;
    for (std::size_t i = 0; i < w.size(); ++i) differing += !(g[i] == w[i]);
    CHECK(differing == 0);
  }
}
