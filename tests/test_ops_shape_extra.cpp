// tril / triu, flip, roll, repeat, pad, one_hot, outer, expand_as: values against
// explicit index loops, gradients (gradcheck in f64), dtypes, empty tensors, errors.
#include <cmath>
#include <limits>
#include <vector>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }
Tensor leaf(Tensor t) { return t.requires_grad_(true); }
using V = std::vector<Tensor>;

void expect_gradcheck(const GradcheckFn& f, const std::vector<Tensor>& in) {
  GradcheckResult r = gradcheck(f, in);
  INFO(r.report);
  CHECK(r.ok);
}

// 0, 1, 2, ... as f64 of `shape`.
Tensor iota(const Shape& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return arange(n).to(DType::f64).reshape(s);
}

}  // namespace

TEST_CASE("tril and triu keep the triangles of the last two dims", "[ops][shape]") {
  Tensor x = iota({2, 3, 4}) + 1.0;
  for (std::int64_t diag : {-4, -1, 0, 1, 3}) {
    INFO("diagonal " << diag);
    std::vector<double> xv = vals(x), lo, up;
    for (int b = 0; b < 2; ++b)
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 4; ++j) {
          double v = xv[(b * 3 + i) * 4 + j];
          lo.push_back(j - i <= diag ? v : 0);
          up.push_back(j - i >= diag ? v : 0);
        }
    CHECK(vals(tril(x, diag)) == lo);
    CHECK(vals(triu(x, diag)) == up);
  }
  CHECK(tril(ones({3, 3}, DType::i64)).dtype() == DType::i64);
  CHECK(vals(triu(ones({2, 2}, DType::boolean))) == std::vector<double>{1, 1, 0, 1});
  CHECK(tril(zeros({0, 3})).shape() == Shape{0, 3});
  CHECK_THROWS_WITH_ALL(tril(ones({3})), ShapeError, "tril", "f32[3]");
  Tensor a = leaf(uniform({4, 3}, -1, 1, DType::f64).t());
  expect_gradcheck([](const V& in) { return tril(in[0], -1); }, {a});
  expect_gradcheck([](const V& in) { return triu(in[0], 1); }, {a});
}

TEST_CASE("flip and roll reorder along dims", "[ops][shape]") {
  Tensor x = iota({2, 3});
  CHECK(vals(flip(x, {0})) == std::vector<double>{3, 4, 5, 0, 1, 2});
  CHECK(vals(flip(x, {-1})) == std::vector<double>{2, 1, 0, 5, 4, 3});
  CHECK(vals(flip(x, {0, 1})) == std::vector<double>{5, 4, 3, 2, 1, 0});
  Tensor same = flip(x, {});
  CHECK(equal(same, x));
  CHECK(!same.same(x));
  CHECK_THROWS_WITH_ALL(flip(x, {1, -1}), ValueError, "flip", "twice");
  CHECK(vals(roll(x, {1}, {1})) == std::vector<double>{2, 0, 1, 5, 3, 4});
  CHECK(vals(roll(x, {-1}, {1})) == std::vector<double>{1, 2, 0, 4, 5, 3});
  CHECK(vals(roll(x, {7}, {1})) == std::vector<double>{2, 0, 1, 5, 3, 4});  // 7 mod 3 = 1
  CHECK(vals(roll(x, {1, 1}, {0, 1})) == std::vector<double>{5, 3, 4, 2, 0, 1});
  CHECK(vals(roll(x, {2})) == std::vector<double>{4, 5, 0, 1, 2, 3});  // flattened
  CHECK(roll(x, {2}).shape() == Shape{2, 3});
  CHECK(roll(zeros({0, 2}), {1}, {0}).shape() == Shape{0, 2});
  CHECK_THROWS_WITH_ALL(roll(x, {1, 2}), ValueError, "roll");
  CHECK_THROWS_WITH_ALL(roll(x, {1}, {0, 1}), ValueError, "roll", "shifts");
  Tensor a = leaf(uniform({4, 3}, -1, 1, DType::f64).t());
  expect_gradcheck([](const V& in) { return flip(in[0], {0, 1}); }, {a});
  expect_gradcheck([](const V& in) { return roll(in[0], {2, -1}, {0, 1}); }, {a});
  expect_gradcheck([](const V& in) { return roll(in[0], {5}); }, {a});
}

TEST_CASE("repeat tiles like Tensor.repeat, with extra leading dims", "[ops][shape]") {
  Tensor x = from_vector<double>({1, 2, 3}, {3});
  CHECK(vals(repeat(x, {2})) == std::vector<double>{1, 2, 3, 1, 2, 3});
  Tensor r = repeat(x, {2, 2});
  CHECK(r.shape() == Shape{2, 6});
  CHECK(vals(r) == std::vector<double>{1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3});
  Tensor m = iota({2, 2});
  Tensor rm = repeat(m, {2, 1});
  CHECK(vals(rm) == std::vector<double>{0, 1, 2, 3, 0, 1, 2, 3});
  CHECK(vals(repeat(m, {1, 2})) == std::vector<double>{0, 1, 0, 1, 2, 3, 2, 3});
  CHECK(repeat(m, {3, 0, 1}).shape() == Shape{3, 0, 2});
  CHECK(repeat(arange(2), {2}).dtype() == DType::i64);
  CHECK_THROWS_WITH_ALL(repeat(m, {2}), ShapeError, "repeat", "at least");
  CHECK_THROWS_WITH_ALL(repeat(m, {2, -1}), ShapeError, "repeat", "non-negative");
  Tensor a = leaf(uniform({3, 2}, -1, 1, DType::f64).t());
  expect_gradcheck([](const V& in) { return repeat(in[0], {2, 1, 3}); }, {a});
  Tensor g = leaf(from_vector<double>({1, 2}, {2}));
  sum(repeat(g, {3})).backward();
  CHECK(vals(g.grad()) == std::vector<double>{3, 3});
}

TEST_CASE("pad: PyTorch's last-dim-first order, constant value, negative pads crop", "[ops][shape]") {
  Tensor x = iota({2, 3}) + 1.0;  // [[1, 2, 3], [4, 5, 6]]
  Tensor p = pad(x, {1, 2});
  CHECK(p.shape() == Shape{2, 6});
  CHECK(vals(p) == std::vector<double>{0, 1, 2, 3, 0, 0, 0, 4, 5, 6, 0, 0});
  Tensor q = pad(x, {0, 0, 1, 0}, -7);
  CHECK(vals(q) == std::vector<double>{-7, -7, -7, 1, 2, 3, 4, 5, 6});
  Tensor c = pad(x, {-1, 1, 0, -1});  // crop a left column and the last row, pad a right column
  CHECK(c.shape() == Shape{1, 3});
  CHECK(vals(c) == std::vector<double>{2, 3, 0});
  CHECK(pad(x, {-3, 0}).shape() == Shape{2, 0});
  CHECK(equal(pad(x, {}), x));
  CHECK(pad(arange(3), {1, 1}, 9).dtype() == DType::i64);
  CHECK(vals(pad(arange(3), {1, 1}, 9)) == std::vector<double>{9, 0, 1, 2, 9});
  CHECK_THROWS_WITH_ALL(pad(x, {1}), ValueError, "pad", "even");
  CHECK_THROWS_WITH_ALL(pad(x, {1, 1, 1, 1, 1, 1}), ValueError, "pad");
  CHECK_THROWS_WITH_ALL(pad(x, {-2, -2}), ShapeError, "pad", "crop");
  CHECK_THROWS_WITH_ALL(pad(x, {std::numeric_limits<std::int64_t>::max(), 1}), ShapeError, "pad", "overflow");
  CHECK_THROWS_WITH_ALL(pad(x, {std::numeric_limits<std::int64_t>::min(), -1}), ShapeError, "pad");
  Tensor a = leaf(uniform({4, 3}, -1, 1, DType::f64).t());
  expect_gradcheck([](const V& in) { return pad(in[0], {1, 2, 2, 0}, 0.5); }, {a});
  expect_gradcheck([](const V& in) { return pad(in[0], {-1, 2, 1, -2}); }, {a});
}

TEST_CASE("one_hot, outer and expand_as", "[ops][shape]") {
  Tensor i = from_vector<std::int64_t>({0, 2, 1, 2}, {2, 2});
  Tensor h = one_hot(i);
  CHECK(h.dtype() == DType::i64);
  CHECK(h.shape() == Shape{2, 2, 3});
  CHECK(vals(h) == std::vector<double>{1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1});
  CHECK(one_hot(from_vector<std::int32_t>({1}, {1}), 4).shape() == Shape{1, 4});
  CHECK(one_hot(zeros({0}, DType::i64), 5).shape() == Shape{0, 5});
  CHECK_THROWS_WITH_ALL(one_hot(i, 2), IndexError, "one_hot", "2", "num_classes = 2");
  CHECK_THROWS_WITH_ALL(one_hot(from_vector<std::int64_t>({-1}, {1})), IndexError, "one_hot", "-1");
  CHECK_THROWS_WITH_ALL(one_hot(zeros({0}, DType::i64)), ValueError, "one_hot", "infer");
  CHECK_THROWS_WITH_ALL(one_hot(zeros({2})), DTypeError, "one_hot");
  Tensor a = from_vector<double>({1, 2}, {2}), b = from_vector<double>({3, 4, 5}, {3});
  Tensor o = outer(a, b);
  CHECK(o.shape() == Shape{2, 3});
  CHECK(vals(o) == std::vector<double>{3, 4, 5, 6, 8, 10});
  CHECK_THROWS_WITH_ALL(outer(ones({2, 2}), b), ShapeError, "outer");
  expect_gradcheck([](const V& in) { return outer(in[0], in[1]); }, {leaf(a.clone()), leaf(b.clone())});
  Tensor e = expand_as(a.view({2, 1}), zeros({2, 3}));
  CHECK(e.shape() == Shape{2, 3});
  CHECK(vals(e) == std::vector<double>{1, 1, 1, 2, 2, 2});
}
