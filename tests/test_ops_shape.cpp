// cat, stack, split, chunk, index_select: values against naive loops written
// here, views vs copies, gradcheck in f64 (random shapes, non-contiguous inputs,
// duplicate indices), and the bad-input catalogue.
#include <cmath>
#include <random>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {

Tensor leaf(Tensor t) { return t.requires_grad_(true); }
std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

// A non-contiguous f64 tensor of logical shape s (drawn reversed, permuted back;
// 1-D: every other element of a longer vector).
Tensor noncontig(const Shape& s) {
  if (s.size() == 1) return uniform({s[0] * 2}, -2, 2, DType::f64).slice(0, 0, s[0] * 2, 2);
  Shape rev(s.rbegin(), s.rend()), perm;
  for (std::int64_t d = static_cast<std::int64_t>(s.size()) - 1; d >= 0; --d) perm.push_back(d);
  return uniform(rev, -2, 2, DType::f64).permute(perm);
}
Tensor nc_leaf(const Shape& s) { return leaf(noncontig(s)); }

void expect_ok(const GradcheckFn& f, const std::vector<Tensor>& in) {
  GradcheckResult r = gradcheck(f, in);
  INFO(r.report);
  CHECK(r.ok);
}

// Element at multi-index idx of row-major values with shape s.
double at(const std::vector<double>& v, const Shape& s, const Shape& idx) {
  std::int64_t off = 0;
  for (std::size_t i = 0; i < s.size(); ++i) off = off * s[i] + idx[i];
  return v[static_cast<std::size_t>(off)];
}

// Calls f(idx) for every multi-index of shape s in row-major order.
template <typename F>
void for_each_index(const Shape& s, F f) {
  if (shape_numel(s) == 0) return;
  Shape idx(s.size(), 0);
  while (true) {
    f(idx);
    std::int64_t d = static_cast<std::int64_t>(s.size()) - 1;
    while (d >= 0 && ++idx[d] == s[d]) idx[d--] = 0;
    if (d < 0) return;
  }
}

// Naive cat along d.
std::vector<double> naive_cat(const std::vector<Tensor>& ts, std::int64_t d, Shape& out_shape) {
  out_shape = ts[0].shape();
  out_shape[d] = 0;
  for (const Tensor& t : ts) out_shape[d] += t.size(d);
  std::vector<double> out;
  for_each_index(out_shape, [&](const Shape& idx) {
    Shape j = idx;
    for (const Tensor& t : ts) {
      if (j[d] < t.size(d)) {
        out.push_back(at(vals(t), t.shape(), j));
        return;
      }
      j[d] -= t.size(d);
    }
  });
  return out;
}

}  // namespace

// ------------------------------------------------------------------------ cat
TEST_CASE("cat matches a naive concatenation along every dim", "[ops]") {
  manual_seed(301);
  for (std::int64_t d = 0; d < 3; ++d) {
    Shape s1 = {2, 3, 4}, s2 = s1, s3 = s1;
    s2[d] = 1;
    s3[d] = 3;
    std::vector<Tensor> ts = {noncontig(s1), noncontig(s2).contiguous(), noncontig(s3)};
    Shape want_shape;
    std::vector<double> want = naive_cat(ts, d, want_shape);
    Tensor y = cat(ts, d);
    CHECK(y.shape() == want_shape);
    CHECK(y.is_contiguous());
    CHECK(vals(y) == want);
    CHECK(vals(cat(ts, d - 3)) == want);
    // Other dtypes copy the same way.
    std::vector<Tensor> ti;
    for (auto& t : ts) ti.push_back(t.to(DType::i32));
    CHECK(cat(ti, d).dtype() == DType::i32);
    CHECK(vals(cat(ti, d)) == vals(cat(ts, d).to(DType::i32)));
  }
  // One tensor: a copy.
  Tensor a = noncontig({2, 3});
  Tensor c = cat({a});
  CHECK(vals(c) == vals(a));
  CHECK_FALSE(c.storage() == a.storage());
  // Zero-size parts, and 1-D empties skipped whatever the other shapes (as PyTorch).
  Tensor z = zeros({2, 0}, DType::f64);
  CHECK(vals(cat({a, z}, 1)) == vals(a));
  CHECK(cat({zeros({0, 3}, DType::f64), a}, 0).shape() == Shape{2, 3});
  CHECK(vals(cat({zeros({0}, DType::f64), a, zeros({0}, DType::f64)}, 1)) == vals(a));
  CHECK(cat({zeros({0}), zeros({0})}).shape() == Shape{0});
  CHECK(cat({zeros({0, 3}), zeros({0, 3})}).shape() == Shape{0, 3});
}

TEST_CASE("stack matches a naive stack at every position", "[ops]") {
  manual_seed(302);
  std::vector<Tensor> ts = {noncontig({2, 3}), noncontig({2, 3}), noncontig({2, 3})};
  for (std::int64_t d = 0; d <= 2; ++d) {
    Tensor y = stack(ts, d);
    Shape want = {2, 3};
    want.insert(want.begin() + d, 3);
    CHECK(y.shape() == want);
    for (std::int64_t i = 0; i < 3; ++i) CHECK(vals(y.select(d, i)) == vals(ts[i]));
    CHECK(vals(stack(ts, d - 3)) == vals(y));
  }
  CHECK(stack({full({}, 1.0), full({}, 2.0)}).to_vector<float>() == std::vector<float>{1, 2});
  CHECK(stack({zeros({0, 2}), zeros({0, 2})}, 1).shape() == Shape{0, 2, 2});
}

TEST_CASE("cat and stack pass gradcheck", "[gradcheck][ops]") {
  manual_seed(303);
  std::mt19937 rng(21);
  std::uniform_int_distribution<int> sz(1, 3), nd(1, 3), nparts(1, 3);
  for (int trial = 0; trial < 5; ++trial) {
    Shape base(static_cast<std::size_t>(nd(rng)));
    for (auto& v : base) v = sz(rng);
    std::uniform_int_distribution<std::int64_t> pick(0, static_cast<std::int64_t>(base.size()) - 1);
    const std::int64_t d = pick(rng);
    std::vector<Tensor> parts;
    for (int i = nparts(rng); i > 0; --i) {
      Shape s = base;
      s[d] = sz(rng) - 1;  // zero-size parts included
      parts.push_back(nc_leaf(s));
    }
    INFO("base " << shape_str(base) << ", dim " << d << ", " << parts.size() << " parts");
    expect_ok([d](auto& x) { return cat(x, d); }, parts);
    std::vector<Tensor> same;
    for (std::size_t i = 0; i < parts.size(); ++i) same.push_back(nc_leaf(base));
    expect_ok([d](auto& x) { return stack(x, d); }, same);
    expect_ok([d](auto& x) { return stack(x, -1); }, same);
  }
  // Inputs without requires_grad and a skipped 1-D empty.
  Tensor a = nc_leaf({2, 3}), b = noncontig({2, 2}), e = leaf(zeros({0}, DType::f64));
  expect_ok([b](auto& x) { return cat({x[0], b, x[1]}, 1); }, {a, e});
  // The same tensor twice: gradients add up.
  expect_ok([](auto& x) { return cat({x[0], x[0].t()}, 0); }, {nc_leaf({3, 3})});
}

// -------------------------------------------------------------- split, chunk
TEST_CASE("split and chunk return views with PyTorch's sizes", "[ops]") {
  manual_seed(304);
  Tensor a = noncontig({7, 4});
  std::vector<Tensor> s = split(a, 3);
  REQUIRE(s.size() == 3);
  CHECK(s[0].shape() == Shape{3, 4});
  CHECK(s[2].shape() == Shape{1, 4});
  CHECK(s[1].storage() == a.storage());  // a view
  CHECK(vals(s[1]) == vals(a.slice(0, 3, 6)));
  CHECK(split(a, 7).size() == 1);
  CHECK(split(a, 100).size() == 1);
  CHECK(split(a, 1, -1).size() == 4);
  CHECK(split(a, 2, 1)[1].shape() == Shape{7, 2});
  CHECK(cat(split(a, 2, 1), 1).to_vector<double>() == vals(a));
  // chunk: ceil(n / chunks) each, possibly fewer chunks.
  auto sizes = [](const std::vector<Tensor>& v, std::int64_t d) {
    std::vector<std::int64_t> out;
    for (auto& t : v) out.push_back(t.size(d));
    return out;
  };
  CHECK(sizes(chunk(a, 3), 0) == std::vector<std::int64_t>{3, 3, 1});
  CHECK(sizes(chunk(a, 2), 0) == std::vector<std::int64_t>{4, 3});
  CHECK(sizes(chunk(a, 7), 0) == std::vector<std::int64_t>{1, 1, 1, 1, 1, 1, 1});
  CHECK(sizes(chunk(a, 10), 0) == std::vector<std::int64_t>{1, 1, 1, 1, 1, 1, 1});
  CHECK(sizes(chunk(arange(6), 4), 0) == std::vector<std::int64_t>{2, 2, 2});
  CHECK(sizes(chunk(a, 2, -1), 1) == std::vector<std::int64_t>{2, 2});
  CHECK(vals(cat(chunk(a, 3), 0)) == vals(a));
  // Empty dims.
  CHECK(split(zeros({0, 2}), 3).size() == 1);
  CHECK(chunk(zeros({0, 2}), 3).size() == 3);
  CHECK(chunk(zeros({0, 2}), 3)[2].shape() == Shape{0, 2});
}

TEST_CASE("split and chunk pass gradcheck", "[gradcheck][ops]") {
  manual_seed(305);
  Tensor a = nc_leaf({5, 3});
  expect_ok([](auto& x) { return split(x[0], 2)[2]; }, {a});
  expect_ok([](auto& x) { return mul(split(x[0], 2, 1)[0], 2.0); }, {a});
  expect_ok([](auto& x) {
    auto c = chunk(x[0], 3);
    return cat({c[2], c[0], c[1]}, 0);
  }, {a});
  expect_ok([](auto& x) {
    auto c = chunk(x[0], 2, 1);
    return mul(c[0], c[1].slice(1, 0, 1).expand({5, 2}));
  }, {a});
}

// ---------------------------------------------------------------- index_select
TEST_CASE("index_select matches a naive gather along every dim", "[ops]") {
  manual_seed(306);
  Tensor a = noncontig({3, 4, 5});
  std::vector<double> av = vals(a);
  for (std::int64_t d = 0; d < 3; ++d) {
    std::vector<std::int64_t> idx = {2, 0, 2, 1};
    Tensor index = from_vector<std::int64_t>(idx, {4});
    Tensor y = index_select(a, d, index);
    Shape want_shape = a.shape();
    want_shape[d] = 4;
    CHECK(y.shape() == want_shape);
    std::vector<double> want;
    for_each_index(want_shape, [&](const Shape& i) {
      Shape j = i;
      j[d] = idx[i[d]];
      want.push_back(at(av, a.shape(), j));
    });
    CHECK(vals(y) == want);
    // i32 indices, a strided index, negative dim, other dtypes.
    CHECK(vals(index_select(a, d - 3, index.to(DType::i32))) == want);
    Tensor strided = from_vector<std::int64_t>({2, 9, 0, 9, 2, 9, 1, 9}, {8}).slice(0, 0, 8, 2);
    CHECK(vals(index_select(a, d, strided)) == want);
    CHECK(vals(index_select(a.to(DType::f16), d, index)) == vals(index_select(a.to(DType::f16).to(DType::f64), d, index)));
    CHECK(index_select(a.to(DType::i64), d, index).dtype() == DType::i64);
  }
  // Empty index, zero-dim index (one element), empty input rows.
  CHECK(index_select(a, 1, zeros({0}, DType::i64)).shape() == Shape{3, 0, 5});
  CHECK(index_select(a, 1, full({}, 3, DType::i64)).shape() == Shape{3, 1, 5});
  CHECK(index_select(zeros({0, 4}), 1, from_vector<std::int64_t>({3, 3}, {2})).shape() == Shape{0, 2});
}

TEST_CASE("index_select backward scatter-adds, duplicates accumulate", "[gradcheck][ops]") {
  Tensor a = leaf(zeros({4, 2}, DType::f64));
  Tensor idx = from_vector<std::int64_t>({3, 0, 3, 3}, {4});
  Tensor y = index_select(a, 0, idx);
  sum(mul(y, from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8}, {4, 2}))).backward();
  CHECK(vals(a.grad()) == std::vector<double>{3, 4, 0, 0, 0, 0, 1 + 5 + 7, 2 + 6 + 8});
  // f16 duplicates accumulate in f32 and round once: 2048 + 1 + 1 stays representable.
  Tensor h = leaf(zeros({2}, DType::f16));
  Tensor yh = index_select(h, 0, from_vector<std::int64_t>({1, 1, 1}, {3}));
  yh.backward(from_vector<float>({2048, 1, 1}, {3}).to(DType::f16));
  CHECK(vals(h.grad()) == std::vector<double>{0, 2050});

  manual_seed(307);
  std::mt19937 rng(22);
  for (int trial = 0; trial < 5; ++trial) {
    std::uniform_int_distribution<int> sz(1, 4), nd(1, 3);
    Shape s(static_cast<std::size_t>(nd(rng)));
    for (auto& v : s) v = sz(rng);
    std::uniform_int_distribution<std::int64_t> pick(0, static_cast<std::int64_t>(s.size()) - 1);
    const std::int64_t d = pick(rng);
    std::uniform_int_distribution<std::int64_t> pi(0, s[d] - 1);
    std::vector<std::int64_t> iv(static_cast<std::size_t>(sz(rng) + 1));
    for (auto& v : iv) v = pi(rng);
    Tensor index = from_vector<std::int64_t>(iv, {static_cast<std::int64_t>(iv.size())});
    INFO("shape " << shape_str(s) << ", dim " << d << ", " << iv.size() << " indices");
    expect_ok([d, index](auto& x) { return index_select(x[0], d, index); }, {nc_leaf(s)});
  }
  Tensor b = nc_leaf({3, 4});
  expect_ok([](auto& x) { return index_select(x[0], 1, from_vector<std::int32_t>({3, 3, 0}, {3})); }, {b});
  expect_ok([](auto& x) { return index_select(x[0], 0, zeros({0}, DType::i64)); }, {b});
}

// ------------------------------------------------------------------ bad inputs
TEST_CASE("shape ops reject bad inputs with clear messages", "[ops]") {
  Tensor a = zeros({2, 3}), b = zeros({2, 4});
  CHECK_THROWS_WITH_ALL(cat({}), ValueError, "cat", "empty list");
  CHECK_THROWS_WITH_ALL(cat({a, Tensor()}), ValueError, "cat", "tensor 1", "undefined");
  CHECK_THROWS_WITH_ALL(cat({a, b}, 0), ShapeError, "cat", "tensor 1", "f32[2, 4]", "f32[2, 3]", "dim 1",
                        "except in the cat dim 0");
  CHECK_THROWS_WITH_ALL(cat({a, zeros({2, 3, 1})}, 0), ShapeError, "cat", "f32[2, 3, 1]", "same number of dims");
  CHECK_THROWS_WITH_ALL(cat({a, zeros({2, 3}, DType::f64)}), DTypeError, "cat", "tensor 1", "f64[2, 3]", "one dtype");
  CHECK_THROWS_WITH_ALL(cat({a}, 2), IndexError, "cat", "dim 2", "f32[2, 3]");
  CHECK_THROWS_WITH_ALL(cat({full({}, 1.0), full({}, 2.0)}), ShapeError, "cat", "f32[]", "zero-dim");
  CHECK_THROWS_WITH_ALL(stack({}), ValueError, "stack", "empty list");
  CHECK_THROWS_WITH_ALL(stack({a, b}), ShapeError, "stack", "tensor 1", "f32[2, 4]", "same shape");
  CHECK_THROWS_WITH_ALL(stack({a, a}, 3), IndexError, "stack", "dim 3", "[-3, 2]");
  CHECK_THROWS_WITH_ALL(stack({a, a.to(DType::f16)}), DTypeError, "stack", "f16[2, 3]");
  CHECK_THROWS_WITH_ALL(split(a, 0), ValueError, "split", "split_size 0", "f32[2, 3]", "> 0");
  CHECK_THROWS_WITH_ALL(split(a, 1, 2), IndexError, "split", "dim 2");
  CHECK_THROWS_WITH_ALL(split(full({}, 1.0), 1), ShapeError, "split", "zero-dim");
  CHECK_THROWS_WITH_ALL(split(Tensor(), 1), ValueError, "split", "undefined");
  CHECK_THROWS_WITH_ALL(chunk(a, 0), ValueError, "chunk", "chunks 0", "> 0");
  CHECK_THROWS_WITH_ALL(chunk(a, 2, -3), IndexError, "chunk", "dim -3");
  CHECK_THROWS_WITH_ALL(chunk(full({}, 1.0), 2), ShapeError, "chunk", "zero-dim");
  Tensor idx = from_vector<std::int64_t>({0, 1}, {2});
  CHECK_THROWS_WITH_ALL(index_select(a, 0, from_vector<std::int64_t>({0, -1}, {2})), IndexError, "index_select",
                        "index -1", "position 1", "size 2", "f32[2, 3]");
  CHECK_THROWS_WITH_ALL(index_select(a, 1, from_vector<std::int32_t>({0, 3, 1}, {3})), IndexError, "index_select",
                        "index 3", "position 1", "dim 1 of size 3");
  CHECK_THROWS_WITH_ALL(index_select(a, 0, zeros({2}, DType::f32)), DTypeError, "index_select", "index", "f32[2]",
                        "i64 or i32");
  CHECK_THROWS_WITH_ALL(index_select(a, 0, zeros({1, 2}, DType::i64)), ShapeError, "index_select", "i64[1, 2]",
                        "1-D");
  CHECK_THROWS_WITH_ALL(index_select(a, 2, idx), IndexError, "index_select", "dim 2");
  CHECK_THROWS_WITH_ALL(index_select(full({}, 1.0), 0, idx), ShapeError, "index_select", "zero-dim");
  CHECK_THROWS_WITH_ALL(index_select(Tensor(), 0, idx), ValueError, "index_select", "undefined");
  CHECK_THROWS_WITH_ALL(index_select(zeros({0, 2}), 0, idx), IndexError, "index_select", "index 0", "size 0");
}
