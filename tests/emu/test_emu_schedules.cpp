// [emu][kernels] The emulated device's thread orders must not change a result: the same ops,
// forward and backward, run under the forward, reverse and seeded-random schedules
// (ciuic_emu/schedule.h) and every output and gradient must be bit-identical across them.
// A kernel whose result depends on the order in which its threads run between barriers (a
// missing __syncthreads, a race on shared memory, an unordered float atomic) differs here even
// when it stays within the CPU reference's tolerance.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"
#include "ciuic_emu/schedule.h"

using namespace ciuic;

namespace {

const Device kDev = Device::cuda(0);

// Every output and gradient of one pass, as raw bytes, labelled.
struct Results {
  std::vector<std::string> names;
  std::vector<std::vector<unsigned char>> bytes;
  void add(const std::string& name, const Tensor& t) {
    Tensor h = t.detach().to(Device::cpu()).contiguous();
    std::vector<unsigned char> b(static_cast<std::size_t>(h.numel()) * h.element_size());
    if (!b.empty()) std::memcpy(b.data(), h.data_ptr(), b.size());
    names.push_back(name);
    bytes.push_back(std::move(b));
  }
};

Tensor leaf(const Shape& s, DType dt, std::uint64_t seed) {
  Generator g{seed, 0};
  return uniform(s, -2, 2, TensorOptions(DType::f32), &g).to(dt).to(kDev).requires_grad_(true);
}

// One pass over ops whose kernels use barriers, shuffles, shared memory or atomics.
Results run_ops() {
  Results r;
  {  // reductions, softmax, layer_norm (block reductions, two-pass weight gradients)
    Tensor x = leaf({37, 1000}, DType::f32, 1), w = leaf({1000}, DType::f32, 2), b = leaf({1000}, DType::f32, 3);
    r.add("sum", sum(x, {1}));
    r.add("var", var(x, {1}));
    r.add("amax", amax(x, {0}));
    Tensor y = layer_norm(x, {1000}, w, b, 1e-5);
    Tensor s = softmax(y, -1);
    r.add("layer_norm", y);
    r.add("softmax", s);
    sum(mul(s, leaf({37, 1000}, DType::f32, 4).detach())).backward();
    r.add("layer_norm dx", x.grad());
    r.add("layer_norm dw", w.grad());
    r.add("layer_norm db", b.grad());
  }
  {  // cross-entropy and the embedding backward (repeated indices: the sorted scatter-add)
    Tensor logits = leaf({19, 301}, DType::bf16, 5);
    Tensor targets = randint(0, 301, {19}, TensorOptions(DType::i64).device(kDev));
    Tensor loss = cross_entropy(logits, targets);
    loss.backward();
    r.add("cross_entropy", loss);
    r.add("cross_entropy dlogits", logits.grad());
    Tensor table = leaf({50, 24}, DType::f32, 6);
    Generator g{7, 0};
    Tensor idx = randint(0, 7, {5, 40}, TensorOptions(DType::i64), &g).to(kDev);  // many repeats
    sum(mul(embedding(table, idx), 0.5)).backward();
    r.add("embedding dweight", table.grad());
  }
  {  // attention: the Tensor Core kernels (f16, D 64) and the SIMT ones (f32, D 40)
    for (auto [dt, D] : {std::pair{DType::f16, std::int64_t{64}}, std::pair{DType::f32, std::int64_t{40}}}) {
      Tensor q = leaf({1, 2, 45, D}, dt, 8), k = leaf({1, 2, 45, D}, dt, 9), v = leaf({1, 2, 45, D}, dt, 10);
      Tensor o = scaled_dot_product_attention(q, k, v, true);
      sum(mul(o, leaf({1, 2, 45, D}, dt, 11).detach())).backward();
      const std::string tag = std::string(" ") + dtype_name(dt);
      r.add("attention" + tag, o);
      r.add("attention dq" + tag, q.grad());
      r.add("attention dk" + tag, k.grad());
      r.add("attention dv" + tag, v.grad());
    }
  }
  {  // the fused AdamW step (multi-tensor chunks)
    Tensor p = leaf({70001}, DType::f32, 12);
    p.set_grad(leaf({70001}, DType::f32, 13).detach());
    optim::AdamW opt({p}, 1e-2);
    opt.step();
    opt.step();
    r.add("adamw", p);
  }
  synchronize(kDev);
  return r;
}

}  // namespace

TEST_CASE("emulated device: results are bit-identical under every thread order", "[emu][kernels]") {
  REQUIRE(cuda_available());  // the emulated build's device is always there
  const emu::Schedule before = emu::schedule();
  struct Restore {
    emu::Schedule s;
    ~Restore() { emu::set_schedule(s); }
  } restore{before};
  manual_seed(2024);
  emu::set_schedule({emu::Schedule::forward, 1});
  const Results forward = run_ops();
  const std::pair<emu::Schedule, const char*> others[] = {{{emu::Schedule::reverse, 1}, "reverse"},
                                                          {{emu::Schedule::random, 3}, "random:3"},
                                                          {{emu::Schedule::random, 11}, "random:11"}};
  for (const auto& [sched, name] : others) {
    manual_seed(2024);
    emu::set_schedule(sched);
    const Results other = run_ops();
    REQUIRE(other.names == forward.names);
    for (std::size_t i = 0; i < forward.names.size(); ++i) {
      INFO(forward.names[i] << ": forward order against " << name);
      CHECK(other.bytes[i] == forward.bytes[i]);
    }
  }
}
