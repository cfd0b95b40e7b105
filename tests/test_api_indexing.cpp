// PyTorch-style indexing, gather / scatter_add / masked_select, sort / topk,
// randint / multinomial, arange with dtype and the *_like factories.
#include <set>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;
using namespace ciuic::indexing;

namespace {
template <typename T>
std::vector<T> vals(const Tensor& t) { return t.to_vector<T>(); }
Tensor leaf(Tensor t) { return t.requires_grad_(true); }
void expect_grad_ok(const GradcheckFn& f, const std::vector<Tensor>& in) {
  GradcheckResult r = gradcheck(f, in);
  INFO(r.report);
  CHECK(r.ok);
}
}  // namespace

TEST_CASE("index with integers, Slice, None and Ellipsis gives views", "[api][indexing]") {
  Tensor x = arange(24, DType::f64).view({2, 3, 4});
  CHECK(vals<double>(x.index({1, 2})) == std::vector<double>{20, 21, 22, 23});
  CHECK(x.index({-1, -1, -1}).item() == 23);
  Tensor s = x.index({Slice(), Slice(1, 3), 0});
  CHECK(s.shape() == Shape{2, 2});
  CHECK(vals<double>(s) == std::vector<double>{4, 8, 16, 20});
  CHECK(s.storage() == x.storage());  // a view
  CHECK(x.index({Ellipsis, -1}).shape() == Shape{2, 3});
  CHECK(vals<double>(x.index({0, Ellipsis, 1})) == std::vector<double>{1, 5, 9});
  CHECK(x.index({None, 0, None}).shape() == Shape{1, 1, 3, 4});
  CHECK(x.index({Slice(None, None, 2), Slice(-2), Slice(1, None, 2)}).shape() == Shape{1, 2, 2});
  CHECK(vals<double>(x.index({0, 0, Slice(None, 100)})) == std::vector<double>{0, 1, 2, 3});  // clamped like Python
  CHECK(x.index({0, 0, Slice(3, 1)}).numel() == 0);
  CHECK_THROWS_WITH_ALL(x.index({2}), IndexError, "index", "out of range", "[-2, 1]");
  CHECK_THROWS_WITH_ALL(x.index({0, 0, 0, 0}), IndexError, "too many indices");
  CHECK_THROWS_AS(x.index({Ellipsis, 0, Ellipsis}), IndexError);
  CHECK_THROWS_AS(x.index({Slice(0, 2, -1)}), ValueError);
  // differentiable
  Tensor w = leaf(uniform({3, 4}, -1, 1, DType::f64));
  expect_grad_ok([](auto& in) { return in[0].index({Slice(1), None, Slice(None, None, 2)}) * 3.0; }, {w});
}

TEST_CASE("index with an integer tensor or a bool mask", "[api][indexing]") {
  Tensor x = arange(12, DType::f64).view({3, 4});
  Tensor ids = from_vector(std::vector<std::int64_t>{2, 0, 2, 1}, {2, 2});
  Tensor r = x.index({ids});
  CHECK(r.shape() == Shape{2, 2, 4});
  CHECK(vals<double>(r.index({0, 1})) == std::vector<double>{0, 1, 2, 3});
  Tensor c = x.index({Slice(), from_vector(std::vector<std::int32_t>{3, 0}, {2})});
  CHECK(vals<double>(c) == std::vector<double>{3, 0, 7, 4, 11, 8});
  Tensor sel = x.index({x > 6.5});
  CHECK(vals<double>(sel) == std::vector<double>{7, 8, 9, 10, 11});
  CHECK_THROWS_AS(x.index({x > 1, 0}), NotImplementedError);
  CHECK_THROWS_AS(x.index({ids, ids}), NotImplementedError);
  Tensor w = leaf(uniform({3, 4}, -1, 1, DType::f64));
  expect_grad_ok([ids](auto& in) { return in[0].index({ids}); }, {w});
}

TEST_CASE("index_put_ with basic indices or a mask", "[api][indexing]") {
  Tensor x = zeros({3, 4}, DType::f64);
  x.index_put_({Slice(), 0}, 7.0);
  x.index_put_({1, Slice(1, 3)}, from_vector(std::vector<double>{1, 2}, {2}));
  CHECK(vals<double>(x) == std::vector<double>{7, 0, 0, 0, 7, 1, 2, 0, 7, 0, 0, 0});
  const auto v = x.version();
  x.index_put_({x > 1.5}, -1.0);
  CHECK(vals<double>(x) == std::vector<double>{-1, 0, 0, 0, -1, 1, -1, 0, -1, 0, 0, 0});
  CHECK(x.version() > v);
  Tensor w = leaf(zeros({2}, DType::f64));
  CHECK_THROWS_AS(w.index_put_({0}, 1.0), AutogradError);
  CHECK_THROWS_AS(x.index_put_({arange(2)}, 1.0), NotImplementedError);
  // a mask put on a non-leaf is differentiable
  Tensor a = leaf(uniform({2, 3}, -1, 1, DType::f64));
  expect_grad_ok([](auto& in) {
    Tensor h = in[0] * 2.0;
    h.index_put_({h > 0.0}, 0.5);
    return h;
  }, {a});
}

TEST_CASE("gather, scatter_add and masked_select with their gradients", "[api][indexing][gradcheck]") {
  manual_seed(11);
  Tensor a = arange(6, DType::f64).view({2, 3});
  Tensor idx = from_vector(std::vector<std::int64_t>{2, 0, 1, 1}, {2, 2});
  CHECK(vals<double>(gather(a, 1, idx)) == std::vector<double>{2, 0, 4, 4});
  Tensor idx0 = from_vector(std::vector<std::int64_t>{1, 0, 1}, {1, 3});
  CHECK(vals<double>(gather(a, 0, idx0)) == std::vector<double>{3, 1, 5});
  Tensor s = scatter_add(zeros({2, 3}, DType::f64), 1, idx, ones({2, 2}, DType::f64));
  CHECK(vals<double>(s) == std::vector<double>{1, 0, 1, 0, 2, 0});
  Tensor t = zeros({2, 3}, DType::f64);
  t.scatter_add_(1, idx, full({2, 2}, 2.0, DType::f64));
  CHECK(vals<double>(t) == std::vector<double>{2, 0, 2, 0, 4, 0});
  CHECK_THROWS_WITH_ALL(gather(a, 1, from_vector(std::vector<std::int64_t>{3}, {1, 1})), IndexError, "gather", "3");
  CHECK_THROWS_AS(gather(a, 1, arange(2)), ShapeError);
  CHECK_THROWS_AS(gather(a, 1, idx.to(DType::f32)), DTypeError);
  Tensor m = a > 2.5;
  CHECK(vals<double>(masked_select(a, m)) == std::vector<double>{3, 4, 5});
  CHECK(vals<double>(masked_select(a, from_vector(std::vector<std::uint8_t>{1, 0, 1}, {3}, DType::boolean))) ==
        std::vector<double>{0, 2, 3, 5});
  Tensor x = leaf(uniform({2, 3}, -1, 1, DType::f64)), src = leaf(uniform({2, 3}, -1, 1, DType::f64));
  expect_grad_ok([idx](auto& in) { return gather(in[0], 1, idx); }, {x});
  expect_grad_ok([idx](auto& in) { return scatter_add(in[0], 1, idx, in[1]); }, {x, src});
  expect_grad_ok([m](auto& in) { return masked_select(in[0], m); }, {x});
  expect_grad_ok([idx](auto& in) {
    Tensor h = in[0] * 1.0;
    h.scatter_add_(1, idx, in[1].narrow(1, 0, 2));
    return h;
  }, {x, src});
}

TEST_CASE("sort, argsort and topk", "[api][sort][gradcheck]") {
  Tensor a = from_vector(std::vector<double>{3, NAN, 1, 2, 5, 4, 0, 6}, {2, 4});
  auto [v, i] = sort(a, 1);
  CHECK(vals<std::int64_t>(i) == std::vector<std::int64_t>{2, 3, 0, 1, 2, 1, 0, 3});
  CHECK(std::isnan(vals<double>(v)[3]));  // nan sorts last
  auto [vd, id] = sort(a, 1, true);
  CHECK(vals<std::int64_t>(id) == std::vector<std::int64_t>{1, 0, 3, 2, 3, 0, 1, 2});
  CHECK(vals<std::int64_t>(argsort(a, 0)) == std::vector<std::int64_t>{0, 1, 1, 0, 1, 0, 0, 1});  // nan is largest
  Tensor stable = from_vector(std::vector<std::int64_t>{2, 1, 2, 1}, {4});
  CHECK(vals<std::int64_t>(argsort(stable)) == std::vector<std::int64_t>{1, 3, 0, 2});
  auto [tv, ti] = topk(from_vector(std::vector<float>{1, 9, 3, 7, 5}, {5}), 3);
  CHECK(vals<float>(tv) == std::vector<float>{9, 7, 5});
  CHECK(vals<std::int64_t>(ti) == std::vector<std::int64_t>{1, 3, 4});
  auto [sv, si] = topk(from_vector(std::vector<float>{1, 9, 3, 7, 5}, {5}), 2, -1, false);
  CHECK(vals<float>(sv) == std::vector<float>{1, 3});
  CHECK_THROWS_WITH_ALL(topk(ones({3}), 4), ValueError, "topk", "k = 4");
  manual_seed(12);
  Tensor x = leaf(uniform({3, 5}, -1, 1, DType::f64));
  expect_grad_ok([](auto& in) { return topk(in[0], 2, 1).first; }, {x});
  expect_grad_ok([](auto& in) { return sort(in[0], 0, true).first; }, {x});
}

TEST_CASE("randint and multinomial draw from the generator", "[api][random]") {
  manual_seed(5);
  Tensor r = randint(-3, 4, {2000});
  CHECK(r.dtype() == DType::i64);
  auto rv = vals<std::int64_t>(r);
  std::set<std::int64_t> seen(rv.begin(), rv.end());
  CHECK(seen == std::set<std::int64_t>{-3, -2, -1, 0, 1, 2, 3});
  CHECK(randint(0, 10, {3}, DType::f32).dtype() == DType::f32);
  Generator g1, g2;
  CHECK(equal(randint(0, 100, {16}, DType::i64, &g1), randint(0, 100, {16}, DType::i64, &g2)));
  CHECK_THROWS_AS(randint(3, 3, {1}), ValueError);

  Tensor p = from_vector(std::vector<float>{0, 1, 3, 0}, {4});
  Tensor s = multinomial(p, 4000, true);
  auto sv = vals<std::int64_t>(s);
  double n2 = 0;
  for (auto c : sv) {
    CHECK((c == 1 || c == 2));
    n2 += c == 2;
  }
  CHECK(n2 / 4000 == Approx(0.75).margin(0.03));
  Tensor rows = multinomial(from_vector(std::vector<double>{1, 1, 1, 1, 2, 5}, {2, 3}), 3, false);
  CHECK(rows.shape() == Shape{2, 3});
  auto r0 = vals<std::int64_t>(rows.select(0, 0));
  CHECK(std::set<std::int64_t>(r0.begin(), r0.end()).size() == 3);  // no repeats without replacement
  CHECK_THROWS_WITH_ALL(multinomial(from_vector(std::vector<double>{1, 1, 1, 0, 0, 5}, {2, 3}), 2, false),
                        ValueError, "multinomial", "only 1 positive");
  CHECK_THROWS_AS(multinomial(from_vector(std::vector<double>{1, -1}, {2}), 1), ValueError);
}

TEST_CASE("arange with dtype and the *_like factories", "[api][factories]") {
  CHECK(arange(4, DType::f32).dtype() == DType::f32);
  CHECK(vals<float>(arange(0.0, 1.0, 0.25, DType::f32)) == std::vector<float>{0, 0.25f, 0.5f, 0.75f});
  CHECK(vals<std::int32_t>(arange(2, 8, 2, DType::i32)) == std::vector<std::int32_t>{2, 4, 6});
  Tensor t = ones({2, 3}, DType::f64);
  CHECK(zeros_like(t).dtype() == DType::f64);
  CHECK(vals<double>(full_like(t, 2.5)) == std::vector<double>(6, 2.5));
  CHECK(ones_like(t).shape() == Shape{2, 3});
  CHECK(empty_like(t).shape() == Shape{2, 3});
}
