// Client study (d): tensor manipulation as in PyTorch, from the README alone; every value checked by hand.
#include <ciuic/ciuic.h>

#include <cstdio>
#include <string>

using namespace ciuic;
using namespace ciuic::indexing;

static int failures = 0;
static void check(bool ok, const std::string& what) {
  if (!ok) { std::fprintf(stderr, "FAILED: %s\n", what.c_str()); ++failures; }
}
static bool same_values(const Tensor& a, const Tensor& b) {
  return a.sizes() == b.sizes() && a.dtype() == b.dtype() && equal(a, b);
}

int main() {
  try {
    // x = torch.arange(12.).reshape(3, 4)
    Tensor x = arange(12, DType::f32).reshape({3, 4});
    check(x.dtype() == DType::f32 && x.size(0) == 3 && x.size(1) == 4, "arange(12, f32).reshape");

    // indexing / slicing: x[1:3, 0], x[..., -1], x[:, None, 2]
    check(same_values(x.index({Slice(1, 3), 0}), tensor({4.0f, 8.0f})), "x[1:3, 0]");
    check(same_values(x.index({Ellipsis, -1}), tensor({3.0f, 7.0f, 11.0f})), "x[..., -1]");
    check(x.index({Slice(), None, 2}).sizes() == std::vector<int64_t>{3, 1}, "x[:, None, 2].shape");
    check(same_values(x.index({Slice(None, None, 2), Slice(1, None)}), tensor({{1.0f, 2.0f, 3.0f}, {9.0f, 10.0f, 11.0f}})),
          "x[::2, 1:]");
    check(x.index({1, 2}).item() == 6.0, "x[1, 2].item()");

    // cat / stack / split / chunk
    Tensor a = ones({2, 3}), b = zeros({1, 3});
    check(cat({a, b}, 0).sizes() == std::vector<int64_t>{3, 3}, "cat dim 0");
    check(stack({a, a}, 0).sizes() == std::vector<int64_t>{2, 2, 3}, "stack");
    auto parts = split(x, 2, 1);  // torch.split(x, 2, dim=1)
    check(parts.size() == 2 && same_values(parts[1], x.index({Slice(), Slice(2, 4)})), "split");
    auto chunks = chunk(arange(10), 3, 0);  // sizes 4, 4, 2
    check(chunks.size() == 3 && chunks[2].size(0) == 2 && chunks[2].index({0}).item<int64_t>() == 8, "chunk");

    // permute / transpose / contiguous / view / reshape / unsqueeze / squeeze / flatten
    Tensor t3 = arange(24).view({2, 3, 4});
    Tensor p = t3.permute({2, 0, 1});
    check(p.sizes() == std::vector<int64_t>{4, 2, 3} && !p.is_contiguous(), "permute");
    check(p.contiguous().is_contiguous() && p.index({3, 1, 2}).item<int64_t>() == 23, "permute values");
    check(x.transpose(0, 1).contiguous().view({-1}).index({1}).item() == 4.0, "transpose.contiguous.view");
    check(x.t().reshape({12}).index({1}).item() == 4.0, "reshape of a transpose");
    check(x.unsqueeze(0).sizes() == std::vector<int64_t>{1, 3, 4}, "unsqueeze");
    check(x.unsqueeze(1).squeeze(1).sizes() == std::vector<int64_t>{3, 4}, "squeeze(dim)");
    check(ones({1, 3, 1}).squeeze().sizes() == std::vector<int64_t>{3}, "squeeze()");
    check(t3.flatten(1).sizes() == std::vector<int64_t>{2, 12}, "flatten(1)");

    // masked_fill / where / gather
    Tensor m = masked_fill(x, x > 5, -1.0);  // a free function, not a method
    check(m.index({1, 3}).item() == -1.0 && m.index({1, 1}).item() == 5.0, "masked_fill");
    Tensor w = where(x > 5, x, zeros_like(x));
    check(sum(w).item() == 6 + 7 + 8 + 9 + 10 + 11, "where");
    Tensor idx = tensor({{0, 3}, {1, 1}, {2, 0}}, DType::i64);
    Tensor g = gather(x, 1, idx);
    check(same_values(g, tensor({{0.0f, 3.0f}, {5.0f, 5.0f}, {10.0f, 8.0f}})), "gather");

    // topk / sort / cumsum
    Tensor v = tensor({3.0f, 1.0f, 4.0f, 1.5f, 5.0f});
    auto [vals, ids] = topk(v, 2);
    check(same_values(vals, tensor({5.0f, 4.0f})) && same_values(ids, tensor({4, 2}, DType::i64)), "topk");
    auto [sorted, order] = sort(v);
    check(same_values(sorted, tensor({1.0f, 1.5f, 3.0f, 4.0f, 5.0f})), "sort values");
    check(same_values(order, tensor({1, 3, 0, 2, 4}, DType::i64)), "sort indices");
    auto [sdesc, odesc] = sort(v, -1, /*descending=*/true);
    check(sdesc.index({0}).item() == 5.0, "sort descending");
    check(same_values(cumsum(arange(5), 0), tensor({0, 1, 3, 6, 10}, DType::i64)), "cumsum i64");
    check(same_values(cumsum(x, 1).index({Slice(), -1}), sum(x, {1})), "cumsum == sum at the end");  // dims: a list

    // broadcasting with type promotion
    Tensor col = arange(3).view({3, 1});           // i64
    Tensor row = tensor({0.5f, 1.5f});             // f32
    Tensor bsum = col + row;                       // (3, 2) f32
    check(bsum.dtype() == DType::f32 && bsum.sizes() == std::vector<int64_t>{3, 2}, "broadcast i64 + f32");
    check(bsum.index({2, 1}).item() == 3.5, "broadcast value");
    check((arange(4) * 2.5).dtype() == DType::f32, "i64 * 2.5 -> f32");
    check((arange(4) * 2).dtype() == DType::i64, "i64 * 2 -> i64");
    check((arange(4) / 2).dtype() == DType::f32, "i64 / 2 -> f32 (true division)");
    check((ones({2}, DType::u8) + arange(2)).dtype() == DType::i64, "u8 + i64 -> i64");
    check((ones({2}, DType::boolean) + 1).dtype() == DType::i64, "bool + 1 -> i64");
    check(sum(arange(4, DType::i32)).dtype() == DType::i64, "sum(i32) -> i64");

    // in-place ops with a trailing underscore, and views writing through
    Tensor y = zeros({2, 3});
    y.add_(1.0).mul_(3.0);
    y.index({0}).fill_(7.0);
    y.index({Slice(), 2}).zero_();
    check(same_values(y, tensor({{7.0f, 7.0f, 0.0f}, {3.0f, 3.0f, 0.0f}})), "in-place chain through views");
    y += 1;
    y.clamp_(0, 5);
    check(same_values(y, tensor({{5.0f, 5.0f, 1.0f}, {4.0f, 4.0f, 1.0f}})), "+= and clamp_");

    // comparisons
    Tensor c = arange(5);
    check((c >= 2).dtype() == DType::boolean && sum(c >= 2).item<int64_t>() == 3, ">= gives bool");
    check(sum(eq(c, 2)).item<int64_t>() == 1 && sum(c != 2).item<int64_t>() == 4, "eq / !=");
    check(sum(logical_and(c > 0, c < 4)).item<int64_t>() == 3, "logical_and");
    check(allclose(tensor({1.0f, 2.0f}), tensor({1.0f, 2.0f + 1e-7f})), "allclose");
    check(any(c > 3).item<bool>() && !all(c > 0).item<bool>(), "any / all");
    check(max(x).item() == 11.0 && min(x).item() == 0.0, "max / min");

    std::printf("%d failures\n", failures);
    return failures == 0 ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
