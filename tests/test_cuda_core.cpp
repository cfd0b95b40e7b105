// [cuda] tensor core on a GPU: host/device copies, views, casts, fills, random
// numbers identical to the CPU's. Skips cleanly without a GPU.
#include <cmath>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {
std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }
const Device kGpu = Device::cuda(0);
}  // namespace

TEST_CASE("host -> device -> host round trips every dtype", "[cuda][tensor]") {
  CIUIC_REQUIRE_GPU();
  Tensor src = uniform({7, 13}, -100, 100, DType::f64);  // odd sizes, never zeros
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i32, DType::i64, DType::u8, DType::boolean}) {
    INFO(dtype_name(dt));
    Tensor host = (dt == DType::u8) ? abs(src).to(dt) : src.to(dt);
    Tensor dev = host.to(kGpu);
    CHECK(dev.device() == kGpu);
    CHECK(vals(dev.to(Device::cpu())) == vals(host));
  }
}

TEST_CASE("device copies of non-contiguous views, with casts, match the CPU", "[cuda][tensor]") {
  CIUIC_REQUIRE_GPU();
  Tensor cpu = uniform({5, 6, 7}, -3, 3, DType::f32);
  Tensor gpu = cpu.to(kGpu);
  auto check_same = [](const Tensor& g, const Tensor& c) { CHECK(vals(g) == vals(c)); };
  check_same(gpu.transpose(0, 2).contiguous(), cpu.transpose(0, 2).contiguous());
  check_same(gpu.permute({2, 0, 1}).slice(1, 1, 5, 2), cpu.permute({2, 0, 1}).slice(1, 1, 5, 2));
  check_same(gpu.select(1, 3).to(DType::f16), cpu.select(1, 3).to(DType::f16));
  check_same(gpu.slice(2, 0, 7, 3).to(DType::bf16).to(DType::f64), cpu.slice(2, 0, 7, 3).to(DType::bf16).to(DType::f64));
  // copy_ into a strided device view, from a broadcast host tensor, poisoning first
  Tensor dst = full({6, 5}, NAN, TensorOptions(DType::f32).device(kGpu));
  Tensor dst_cpu = full({6, 5}, NAN, DType::f32);
  Tensor row = from_vector<double>({1, 2, 3, 4, 5, 6}, {6, 1});
  dst.slice(1, 1, 5, 2).copy_(row);
  dst_cpu.slice(1, 1, 5, 2).copy_(row);
  auto a = vals(dst), b = vals(dst_cpu);
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(((std::isnan(a[i]) && std::isnan(b[i])) || a[i] == b[i]));
  // device -> non-contiguous host view
  Tensor host = zeros({5, 6}, DType::f64);
  host.t().copy_(gpu.select(2, 0));
  check_same(host.t(), cpu.select(2, 0));
}

TEST_CASE("fills and random numbers are identical on CPU and GPU", "[cuda][tensor]") {
  CIUIC_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    INFO(dtype_name(dt));
    Generator g1{77, 1000}, g2{77, 1000};
    CHECK(vals(rand({1001}, TensorOptions(dt).device(kGpu), &g1)) == vals(rand({1001}, dt, &g2)));
    CHECK(g1.offset == g2.offset);
    Generator g3{78, 5}, g4{78, 5};
    auto n_gpu = vals(randn({999}, TensorOptions(dt).device(kGpu), &g3));
    auto n_cpu = vals(randn({999}, dt, &g4));
    for (std::size_t i = 0; i < n_cpu.size(); ++i) CHECK(n_gpu[i] == Approx(n_cpu[i]).epsilon(1e-6));
    CHECK(vals(full({3, 17}, -2.75, TensorOptions(dt).device(kGpu))) == vals(full({3, 17}, -2.75, dt)));
  }
}

TEST_CASE("device tensors report their allocator's statistics", "[cuda][alloc]") {
  CIUIC_REQUIRE_GPU();
  Allocator& a = cuda_allocator(0);
  std::size_t before = a.stats().allocated_bytes;
  {
    Tensor t = empty({1 << 20}, TensorOptions(DType::f32).device(kGpu));
    CHECK(a.stats().allocated_bytes >= before + (4u << 20));
  }
  CHECK(a.stats().allocated_bytes == before);
}
