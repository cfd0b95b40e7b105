// Tensor core: factories, views, strides and offsets, copies, printing.
#include <cmath>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {
std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }
Tensor iota(const Shape& s, DType dt = DType::f32) { return arange(shape_numel(s), dt).view(s); }
}  // namespace

TEST_CASE("factories", "[tensor]") {
  Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.strides() == Shape{3, 1});
  CHECK(z.dtype() == DType::f32);
  CHECK(z.device() == Device::cpu());
  CHECK(vals(z) == std::vector<double>(6, 0.0));
  CHECK(vals(ones({2}, DType::f64)) == std::vector<double>{1, 1});
  CHECK(vals(full({3}, 2.5, DType::bf16)) == std::vector<double>{2.5, 2.5, 2.5});
  CHECK(vals(arange(5)) == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(vals(arange(1.0, 2.0, 0.25, DType::f64)) == std::vector<double>{1, 1.25, 1.5, 1.75});
  CHECK(arange(3.0, 1.0).numel() == 0);
  Tensor s = full({}, 7.0);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 7.0);
  Tensor e = empty({0, 4});
  CHECK(e.numel() == 0);
  CHECK(vals(e).empty());
  Tensor v = from_vector<std::int32_t>({1, 2, 3, 4}, {2, 2});
  CHECK(v.dtype() == DType::i32);
  CHECK(v.to_vector<std::int32_t>() == std::vector<std::int32_t>{1, 2, 3, 4});
}

TEST_CASE("data is 64-byte aligned", "[tensor][alloc]") {
  for (int i = 1; i < 50; i += 7) {
    Tensor t = empty({i, 3}, DType::u8);
    CHECK(reinterpret_cast<std::uintptr_t>(t.data_ptr()) % 64 == 0);
  }
}

TEST_CASE("random factories are seeded, counter based and well distributed", "[tensor]") {
  manual_seed(123);
  Tensor a = rand({1000});
  Tensor b = randn({100000}, DType::f64);
  manual_seed(123);
  Tensor a2 = rand({1000});
  CHECK(vals(a) == vals(a2));
  // counter based: the second call continues where the first stopped
  Generator g{9, 0};
  Tensor whole = rand({10}, {}, &g);
  Generator g2{9, 0};
  Tensor first = rand({4}, {}, &g2), rest = rand({6}, {}, &g2);
  auto w = vals(whole), f = vals(first), r = vals(rest);
  CHECK(std::vector<double>(w.begin(), w.begin() + 4) == f);
  CHECK(std::vector<double>(w.begin() + 4, w.end()) == r);
  for (double x : vals(a)) CHECK((x >= 0.0 && x < 1.0));
  double m = mean(b).item(), sd = std::sqrt(mean(mul(b - m, b - m)).item());
  CHECK(std::abs(m) < 0.02);
  CHECK(std::abs(sd - 1.0) < 0.02);
  Tensor u = uniform({20000}, -3, 5, DType::f64);
  CHECK(std::abs(mean(u).item() - 1.0) < 0.1);
  Tensor n = normal({20000}, 2.0, 0.5, DType::f64);
  CHECK(std::abs(mean(n).item() - 2.0) < 0.02);
}

TEST_CASE("views share storage and compute strides and offsets", "[tensor]") {
  Tensor t = iota({2, 3, 4});
  Tensor tr = t.transpose(0, 2);
  CHECK(tr.shape() == Shape{4, 3, 2});
  CHECK(tr.strides() == Shape{1, 4, 12});
  CHECK(!tr.is_contiguous());
  CHECK(tr.storage() == t.storage());
  CHECK(vals(tr.select(0, 1).select(0, 2)) == std::vector<double>{9, 21});

  Tensor p = t.permute({1, 2, 0});
  CHECK(p.strides() == Shape{4, 1, 12});
  Tensor sl = t.slice(2, 1, 4, 2);  // [.., .., {1, 3}]
  CHECK(sl.shape() == Shape{2, 3, 2});
  CHECK(sl.offset() == 1);
  CHECK(sl.strides() == Shape{12, 4, 2});
  CHECK(vals(sl.select(0, 1).select(0, 0)) == std::vector<double>{13, 15});
  CHECK(t.slice(1, -2, 3).offset() == 4);
  Tensor nar = t.narrow(1, 1, 2);
  CHECK(nar.shape() == Shape{2, 2, 4});
  CHECK(vals(nar.select(0, 0).select(0, 0)) == std::vector<double>{4, 5, 6, 7});

  Tensor sel = t.select(1, -1);
  CHECK(sel.shape() == Shape{2, 4});
  CHECK(sel.offset() == 8);

  Tensor ex = from_vector<float>({1, 2, 3}, {3, 1}).expand({2, 3, 4});
  CHECK(ex.strides() == Shape{0, 1, 0});
  CHECK(vals(ex.select(0, 1).select(0, 2)) == std::vector<double>{3, 3, 3, 3});

  Tensor u = t.unsqueeze(1);
  CHECK(u.shape() == Shape{2, 1, 3, 4});
  CHECK(u.squeeze(1).shape() == Shape{2, 3, 4});
  CHECK(ones({1, 3, 1}).squeeze().shape() == Shape{3});
  CHECK(t.flatten(1).shape() == Shape{2, 12});
  CHECK(t.view({-1, 4}).shape() == Shape{6, 4});
  CHECK(t.view({-1}).storage() == t.storage());
}

TEST_CASE("view of non-contiguous tensors when dims stay contiguous among themselves", "[tensor]") {
  Tensor t = iota({4, 6});
  Tensor s = t.slice(1, 0, 4);  // rows of 4 with stride 6: (4, 4) strides (6, 1)
  Tensor v = s.view({4, 2, 2});  // split the inner run: fine
  CHECK(v.strides() == Shape{6, 2, 1});
  CHECK(v.storage() == t.storage());
  CHECK_THROWS_AS(s.view({16}), ShapeError);  // merging across the gap needs a copy
  Tensor r = s.reshape({16});  // reshape copies
  CHECK(r.storage() != t.storage());
  CHECK(vals(r)[4] == 6.0);
  Tensor tt = t.t();
  CHECK(tt.view({2, 3, 4}).strides() == Shape{3, 1, 6});  // splitting a dim of a transposed view
}

TEST_CASE("contiguous, clone, copy_ with broadcast and dtype conversion", "[tensor]") {
  Tensor t = iota({3, 4});
  Tensor c = t.t().contiguous();
  CHECK(c.is_contiguous());
  CHECK(vals(c) == std::vector<double>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  CHECK(t.contiguous().same(t));  // already contiguous: the same tensor
  Tensor k = t.clone();
  CHECK(k.storage() != t.storage());
  CHECK(vals(k) == vals(t));

  Tensor dst = zeros({3, 4}, DType::f64);
  std::uint64_t v0 = dst.version();
  dst.copy_(from_vector<float>({1, 2, 3, 4}, {4}));  // broadcast over rows, f32 -> f64
  CHECK(dst.version() == v0 + 1);
  CHECK(vals(dst.select(0, 2)) == std::vector<double>{1, 2, 3, 4});
  // copy into a strided view writes only that view
  Tensor col = dst.select(1, 1);
  col.copy_(from_vector<double>({7, 8, 9}, {3}));
  CHECK(vals(dst) == std::vector<double>{1, 7, 3, 4, 1, 8, 3, 4, 1, 9, 3, 4});
  CHECK(dst.version() == v0 + 2);  // views share the version counter
  dst.slice(0, 0, 1).fill_(-1);
  CHECK(vals(dst.select(0, 0)) == std::vector<double>{-1, -1, -1, -1});
  // external memory
  std::vector<float> buf = {1, 2, 3, 4, 5, 6};
  Tensor blob = from_blob(buf.data(), {2, 3}, DType::f32);
  blob.select(0, 1).fill_(0);
  CHECK(buf[4] == 0.0f);
  bool deleted = false;
  { Tensor owned = from_blob(buf.data(), {6}, DType::f32, Device::cpu(), [&](void*) { deleted = true; }); }
  CHECK(deleted);
}

TEST_CASE("item, to_vector and printing", "[tensor]") {
  CHECK(from_vector<double>({3.5}, {1, 1}).item() == 3.5);
  CHECK(from_vector<std::int64_t>({42}, {}).item<std::int64_t>() == 42);
  Tensor t = iota({2, 3});
  std::string s = t.str();
  CHECK(s.find("f32[2, 3] on cpu") != std::string::npos);
  CHECK(s.find("[[0, 1, 2],") != std::string::npos);
  Tensor big = zeros({100, 100});
  CHECK(big.str().find("...") != std::string::npos);
  Tensor g = ones({2}).requires_grad_();
  CHECK(g.str().find("requires_grad") != std::string::npos);
  CHECK(mul(g, 2.0).str().find("grad_fn=mul") != std::string::npos);
}

TEST_CASE("to(device) on the same device is a no-op and to(dtype) converts", "[tensor]") {
  Tensor t = iota({2, 2});
  CHECK(t.to(Device::cpu()).same(t));
  Tensor h = t.to(DType::f16);
  CHECK(h.dtype() == DType::f16);
  CHECK(vals(h) == vals(t));
}
