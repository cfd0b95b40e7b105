// [cuda][coverage] The kernel instantiations no other [cuda] test launched (integer
// binary ops on the vector path, remainder / fmod, the strided tanh / sigmoid
// backward, where on bool, the casts from u8 / bool / i32 and between f16 and bf16,
// the f64 cross-entropy backward with i32 / i64 targets, every gradient / model-copy
// dtype pair of the fused AdamW (host and device step counts) and SGD, every
// multi_tensor_unscale In -> Out pair, multi_tensor_scale on f16, and the 1-byte
// transpose and 1- / 8-byte swap12 units), each against a CPU reference on fresh
// random inputs of odd sizes, contiguous (vector path) and strided. Exact where the
// math is (integers, casts, selections, layout moves, the optimizer math, which is
// bit-identical by construction: optim_math.h); otherwise ||dut - cpu|| / ||cpu||
// <= 1e-5 (f32), 1e-10 (f64), 1e-2 (f16, bf16).
//
// The public ops run on the device under test (device_under_test.h): without a GPU
// the CPU compares with itself. The raw launchers ([kernels]) run only on a GPU
// (CIUIC_DUT_GPU_ONLY, CHECK_ON_GPU); their setup and references run everywhere a
// CUDA build is. Sizes stay at a few thousand elements: on the emulated device every
// CUDA thread is a fiber.
//
// Two instantiations of the library have no launch path, and the last case pins that:
// reduce_{rows,cols,finish}_kernel<SumReducer<u8>> (reduce_sum rejects u8, and the
// engine sums u8 as i64) and transpose_kernel<uint4> (no dtype is 16 bytes wide).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "ciuic/ciuic.h"
#include "device_under_test.h"
#include "test_util.h"

#if defined(CIUIC_WITH_CUDA)
#include "ciuic/half.h"
#include "ciuic/kernels/cast_transpose.h"
#include "ciuic/kernels/elementwise.h"
#include "ciuic/kernels/multi_tensor.h"
#include "ciuic/kernels/optim.h"
#include "ciuic/kernels/reduce.h"
#include "ciuic/random.h"
#endif

using namespace ciuic;
using ciuic::test::dut;
using ciuic::test::to_dut;

namespace {

const DType kFloats[] = {DType::f32, DType::f64, DType::f16, DType::bf16};
constexpr double kInf = std::numeric_limits<double>::infinity();

double tol(DType dt) {
  switch (dt) {
    case DType::f32: return 1e-5;
    case DType::f64: return 1e-10;
    default: return 1e-2;
  }
}

std::vector<double> vals(const Tensor& t) { return t.to(Device::cpu()).to_vector<double>(); }
// Integers compared as integers: an i64 beyond 2^53 would round as a double.
std::vector<std::int64_t> ints(const Tensor& t) { return t.to(Device::cpu()).to_vector<std::int64_t>(); }

// ||got - ref|| / ||ref||; inf when a non-finite value of either side is not matched
// exactly by the other, or the sizes differ.
double rel_err(const std::vector<double>& got, const std::vector<double>& ref) {
  if (got.size() != ref.size()) return kInf;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(ref[i]) || !std::isfinite(got[i])) {
      if (!((std::isnan(ref[i]) && std::isnan(got[i])) || ref[i] == got[i])) return kInf;
      continue;
    }
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// Same values, nan at the same places (a poisoned element left unwritten fails).
bool same_values(const std::vector<double>& got, const std::vector<double>& ref) {
  if (got.size() != ref.size()) return false;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!(got[i] == ref[i] || (std::isnan(got[i]) && std::isnan(ref[i])))) return false;
  return true;
}

// An output of a public op on the device under test against the same op on the CPU.
void check_result(const Tensor& got, const Tensor& ref, bool exact, const std::string& what) {
  INFO(what << ": got " << describe(got) << ", reference " << describe(ref));
  CHECK(got.device() == dut());
  CHECK(got.shape() == ref.shape());
  CHECK(got.dtype() == ref.dtype());
  if (!is_floating(ref.dtype())) {
    CHECK(ints(got) == ints(ref));
  } else if (exact) {
    CHECK(same_values(vals(got), vals(ref)));
  } else {
    const double e = rel_err(vals(got), vals(ref));
    INFO("relative error " << e << " (bound " << tol(ref.dtype()) << ")");
    CHECK(e <= tol(ref.dtype()));
  }
}

// Made on the CPU; the tests move them with to_dut().
Tensor rnd(const Shape& s, DType dt, double lo, double hi) { return uniform(s, lo, hi, DType::f64).to(dt); }
// Divisors in +-[0.5, 3] with random signs: away from 0, both sign rules exercised.
Tensor divisors(const Shape& s, DType dt) {
  Tensor sign = sub(mul(gt(uniform(s, 0, 1, DType::f64), 0.5).to(DType::f64), 2.0), 1.0);
  return mul(uniform(s, 0.5, 3, DType::f64), sign).to(dt);
}
Tensor random_bools(const Shape& s, double p_true) { return gt(uniform(s, 0, 1, DType::f32), 1.0 - p_true); }

const std::int64_t kSizes[] = {1, 7, 1001, 4099};

}  // namespace

// ---------------------------------------------------------------------------
// public ops
// ---------------------------------------------------------------------------

TEST_CASE("coverage: i32 and i64 add, sub, mul, maximum and minimum match the CPU exactly, contiguous and strided",
          "[cuda][coverage]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(301);
  using Op = std::function<Tensor(const Tensor&, const Tensor&)>;
  const std::vector<std::pair<const char*, Op>> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }},
  };
  for (DType dt : {DType::i32, DType::i64}) {
    // Products still fit the type; i64's operands and results need more than 32 bits.
    const double r = dt == DType::i32 ? 40000 : 2e9;
    for (const auto& [name, op] : ops) {
      // contiguous, same shape: the vector path with a tail of n mod (16 bytes / element)
      for (std::int64_t n : kSizes) {
        Tensor a = rnd({n}, dt, -r, r), b = rnd({n}, dt, -r, r);
        check_result(op(to_dut(a), to_dut(b)), op(a, b), true,
                     std::string(name) + " " + dtype_name(dt) + " n " + std::to_string(n));
      }
      // transposed a, every other row of b: the strided path
      Tensor a = rnd({33, 31}, dt, -r, r), b = rnd({62, 33}, dt, -r, r);
      auto view_b = [](const Tensor& t) { return t.slice(0, 0, 62, 2); };  // (31, 33), strides (66, 1)
      check_result(op(to_dut(a).t(), view_b(to_dut(b))), op(a.t(), view_b(b)), true,
                   std::string(name) + " " + dtype_name(dt) + " strided");
    }
  }
}

TEST_CASE("coverage: remainder and fmod match the CPU on contiguous and strided f32/f64/f16/bf16 tensors",
          "[cuda][coverage]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(302);
  for (DType dt : kFloats) {
    for (bool rem : {true, false}) {
      const std::string name = std::string(rem ? "remainder " : "fmod ") + dtype_name(dt);
      auto op = [rem](const Tensor& a, const Tensor& b) { return rem ? remainder(a, b) : fmod(a, b); };
      // fmod is exact in every precision; remainder adds the divisor back once (one rounding).
      const bool exact = !rem;
      for (std::int64_t n : kSizes) {
        Tensor a = rnd({n}, dt, -20, 20), b = divisors({n}, dt);
        check_result(op(to_dut(a), to_dut(b)), op(a, b), exact, name + " n " + std::to_string(n));
      }
      Tensor a = rnd({31, 33}, dt, -20, 20), b = divisors({31, 66}, dt);
      auto view_b = [](const Tensor& t) { return t.slice(1, 0, 66, 2).t(); };  // (33, 31), strides (2, 66)
      check_result(op(to_dut(a).t(), view_b(to_dut(b))), op(a.t(), view_b(b)), exact, name + " strided");
    }
  }
}

TEST_CASE("coverage: where on bool operands selects exactly, contiguous and strided", "[cuda][coverage]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(303);
  for (std::int64_t n : kSizes) {
    Tensor c = random_bools({n}, 0.5), a = random_bools({n}, 0.3), b = random_bools({n}, 0.6);
    check_result(where(to_dut(c), to_dut(a), to_dut(b)), where(c, a, b), true, "where bool n " + std::to_string(n));
  }
  // transposed condition, every other column of a, a broadcast row of b
  Tensor c = random_bools({33, 31}, 0.5), a = random_bools({31, 66}, 0.3), b = random_bools({1, 33}, 0.6);
  auto view_a = [](const Tensor& t) { return t.slice(1, 0, 66, 2); };
  check_result(where(to_dut(c).t(), view_a(to_dut(a)), to_dut(b)), where(c.t(), view_a(a), b), true,
               "where bool strided");
}

TEST_CASE("coverage: casts from u8, bool and i32 and between f16 and bf16 match the CPU conversion exactly",
          "[cuda][coverage]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(304);
  // Sources with values that round, overflow and underflow in the destination.
  auto source = [](const Shape& s, DType from) -> Tensor {
    switch (from) {
      case DType::u8: return rnd(s, DType::f64, 0, 256).to(DType::u8);
      case DType::boolean: return random_bools(s, 0.5);
      case DType::i32: return rnd(s, DType::f64, -3e7, 3e7).to(DType::i32);  // bf16 keeps 8 bits of them
      case DType::bf16:  // magnitudes 1e-9 .. 1.6e5: f16 subnormals, zeros and infinities
        return mul(uniform(s, -1, 1, DType::f64), exp(uniform(s, -20, 12, DType::f64))).to(DType::bf16);
      default:  // f16: magnitudes 1e-7 .. 6e4, f16 subnormals included
        return mul(uniform(s, -1, 1, DType::f64), exp(uniform(s, -16, 11, DType::f64))).to(from);
    }
  };
  const std::pair<DType, DType> pairs[] = {{DType::u8, DType::f32},  {DType::u8, DType::f64},
                                           {DType::bf16, DType::f16}, {DType::f16, DType::bf16},
                                           {DType::i32, DType::bf16}, {DType::boolean, DType::i32}};
  for (const auto& [from, to] : pairs) {
    const std::string name = std::string(dtype_name(from)) + " -> " + dtype_name(to);
    for (std::int64_t n : kSizes) {
      Tensor x = source({n}, from);
      check_result(to_dut(x).to(to), x.to(to), true, name + " n " + std::to_string(n));
    }
    Tensor x = source({33, 31}, from);
    check_result(to_dut(x).t().to(to), x.t().to(to), true, name + " transposed");
    check_result(to_dut(x).slice(1, 1, 31, 3).to(to), x.slice(1, 1, 31, 3).to(to), true, name + " sliced");
  }
}

TEST_CASE("coverage: sum of u8 on the device counts exactly like the CPU", "[cuda][coverage]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(305);
  for (std::int64_t n : kSizes) {
    Tensor x = rnd({n}, DType::f64, 0, 256).to(DType::u8);
    check_result(sum(to_dut(x)), sum(x), true, "sum u8 n " + std::to_string(n));
  }
  Tensor x = rnd({7, 301}, DType::f64, 0, 256).to(DType::u8);
  for (std::int64_t d : {0, 1}) {
    check_result(sum(to_dut(x), {d}), sum(x, {d}), true, "sum u8 over dim " + std::to_string(d));
    check_result(sum(to_dut(x).t(), {d}), sum(x.t(), {d}), true, "sum u8 transposed over dim " + std::to_string(d));
  }
}

TEST_CASE("coverage: f64 cross-entropy backward with i32 and i64 targets matches the CPU, warp and block rows",
          "[cuda][coverage]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(306);
  // V <= 1024: a warp per row; V > 1024: a block per row.
  for (std::int64_t V : {37, 1100}) {
    for (DType it : {DType::i32, DType::i64}) {
      const std::int64_t N = 5;
      INFO("N " << N << " V " << V << " targets " << dtype_name(it));
      Tensor x = rnd({N, V}, DType::f64, -6, 6);
      std::vector<std::int64_t> tv = ints(rnd({N}, DType::f64, 0, static_cast<double>(V)));
      tv[2] = -100;  // an ignored row: zero gradient
      Tensor t = from_vector<std::int64_t>(tv, {N}).to(it);
      Tensor loss[2], grad[2];
      for (int side = 0; side < 2; ++side) {
        Tensor leaf = side == 1 ? to_dut(x) : x.clone();
        leaf.requires_grad_(true);
        loss[side] = cross_entropy(leaf, side == 1 ? to_dut(t) : t);
        mul(loss[side], 0.75).backward();  // a scale other than 1 reaches the kernel
        grad[side] = leaf.grad();
      }
      check_result(loss[1], loss[0], false, "loss");
      check_result(grad[1], grad[0], false, "grad");
      auto g = vals(grad[1]);
      for (std::int64_t j = 0; j < V; ++j) CHECK(g[static_cast<std::size_t>(2 * V + j)] == 0.0);
    }
  }
}

// ---------------------------------------------------------------------------
// raw launchers
// ---------------------------------------------------------------------------

#if defined(CIUIC_WITH_CUDA)

namespace k = ciuic::kernels;

namespace {

TensorOptions gpu(DType dt) { return ciuic::test::on_dut(dt); }
void* stream() { return ciuic::test::dut_stream(); }
void gpu_sync() { ciuic::test::dut_sync(); }

Tensor gpu_uniform(const Shape& s, DType dt, double lo, double hi, std::uint64_t seed) {
  Generator g{seed, 0};
  return uniform(s, lo, hi, gpu(dt), &g);
}
Tensor gpu_full(const Shape& s, DType dt, double v) { return full(s, v, gpu(dt)); }
Tensor host64(const Tensor& t) { return t.to(Device::cpu()).to(DType::f64).contiguous().clone(); }

StridedLayout layout_of(const Tensor& t) {
  StridedLayout l;
  l.ndim = static_cast<int>(t.dim());
  for (int d = 0; d < l.ndim; ++d) {
    l.shape[d] = t.shape()[d];
    l.strides[d] = t.strides()[d];
  }
  return l;
}

#define CHECK_CLOSE(got, ref, dt)                                 \
  do {                                                            \
    const double err_ = rel_err(vals(got), vals(ref));            \
    INFO("dtype " << dtype_name(dt) << ", rel err " << err_);     \
    CHECK_ON_GPU(err_ <= tol(dt));                                \
  } while (0)

// Bitwise equality of two f32 vectors, reporting the first difference.
void check_bits_equal(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  REQUIRE(a.size() == b.size());
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0 && bad++ == 0) first = i;
  INFO(what << ": " << bad << " of " << a.size() << " differ; first at " << first << ": "
            << (bad ? a[first] : 0.f) << " vs " << (bad ? b[first] : 0.f));
  CHECK_ON_GPU(bad == 0);
}

// f32 rounded to dt as the kernels store it (ciuic/half.h, round to nearest even).
float round_to(DType dt, float x) {
  switch (dt) {
    case DType::f16: return static_cast<float>(Half(x));
    case DType::bf16: return static_cast<float>(BFloat16(x));
    default: return x;
  }
}

}  // namespace

TEST_CASE("coverage: tanh and sigmoid backward kernels on strided operands match the formula in f64",
          "[cuda][coverage][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(311);
  using U = k::UnaryBackwardOp;
  for (U op : {U::tanh_from_out, U::sigmoid_from_out}) {
    for (DType dt : kFloats) {
      INFO(k::unary_backward_op_name(op) << " " << dtype_name(dt));
      // saved: the forward output rounded to dt; reference: the formula on it in f64
      auto saved_of = [&](const Tensor& x64) {
        return (op == U::tanh_from_out ? tanh(x64) : sigmoid(x64)).to(dt).to(dut());
      };
      auto run = [&](const Tensor& g, const Tensor& y, const char* what) {
        INFO(what);
        Tensor g64 = host64(g), y64 = host64(y);
        Tensor ref = op == U::tanh_from_out ? mul(g64, rsub(mul(y64, y64), 1.0)) : mul(mul(g64, y64), rsub(y64, 1.0));
        Tensor gx = gpu_full(g.shape(), dt, NAN);
        CIUIC_DUT_GPU_ONLY(k::unary_backward(op, gx.data_ptr(), g.data_ptr(), layout_of(g), y.data_ptr(), layout_of(y),
                                             dt, g.numel(), 0.0, 0.0, stream()));
        gpu_sync();
        CHECK_CLOSE(gx, ref, dt);
      };
      // transposed grad, contiguous saved output; then both strided; then both contiguous
      Tensor g = gpu_uniform({37, 29}, dt, -2, 2, 3110).t();
      Tensor x = uniform({29, 37}, -4, 4, DType::f64);
      run(g, saved_of(x), "strided grad");
      Tensor ys = saved_of(uniform({58, 37}, -4, 4, DType::f64)).slice(0, 0, 58, 2);  // every other row
      run(g, ys, "strided grad and saved");
      run(gpu_uniform({1001}, dt, -2, 2, 3111), saved_of(uniform({1001}, -4, 4, DType::f64)), "contiguous");
    }
  }
}

// ---- fused optimizers ----

namespace {

// Parameters with their optimizer state on the device under test and f32 mirrors on
// the host. State starts random (not zero); model copies start as nan.
struct OptimFixture {
  std::vector<std::int64_t> numels;
  DType grad_dtype, copy_dtype;
  bool with_copy;
  std::vector<Tensor> p, g, m, v, copy, steps;
  std::vector<std::vector<float>> hp, hm, hv;
  std::vector<std::int64_t> hsteps;  // device step counts (AdamW with steps), before the next update
  std::vector<void*> pp, pm, pv, pcopy, psteps;
  std::vector<const void*> pg;

  OptimFixture(const std::vector<std::int64_t>& sizes, DType gd, bool copies, DType cd, std::uint64_t seed)
      : numels(sizes), grad_dtype(gd), copy_dtype(cd), with_copy(copies) {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const std::int64_t n = sizes[i];
      p.push_back(gpu_uniform({n}, DType::f32, -1, 1, seed++));
      g.push_back(gpu_full({n}, gd, NAN));
      m.push_back(gpu_uniform({n}, DType::f32, -0.1, 0.1, seed++));
      v.push_back(gpu_uniform({n}, DType::f32, 0, 0.01, seed++));
      copy.push_back(gpu_full({n}, cd, NAN));
      hsteps.push_back(static_cast<std::int64_t>(i % 4));  // per-tensor counts: 0, 1, 2, 3, 0, ...
      steps.push_back(gpu_full({1}, DType::i64, static_cast<double>(hsteps.back())));
      hp.push_back(p.back().to_vector<float>());
      hm.push_back(m.back().to_vector<float>());
      hv.push_back(v.back().to_vector<float>());
      pp.push_back(p.back().data_ptr());
      pg.push_back(g.back().data_ptr());
      pm.push_back(m.back().data_ptr());
      pv.push_back(v.back().data_ptr());
      pcopy.push_back(copy.back().data_ptr());
      psteps.push_back(steps.back().data_ptr());
    }
  }
  k::FusedOptimTensors tensors(bool device_steps) const {
    k::FusedOptimTensors t;
    t.count = static_cast<int>(numels.size());
    t.numels = numels.data();
    t.params = pp.data();
    t.grads = pg.data();
    t.grad_dtype = grad_dtype;
    t.state1 = pm.data();
    t.state2 = pv.data();
    t.model_copies = with_copy ? pcopy.data() : nullptr;
    t.copy_dtype = copy_dtype;
    t.steps = device_steps ? psteps.data() : nullptr;
    return t;
  }
  // Fresh gradients; returns them as the f32 values the kernel reads.
  std::vector<std::vector<float>> new_grads(std::uint64_t seed, double scale) {
    std::vector<std::vector<float>> out;
    for (std::size_t i = 0; i < g.size(); ++i) {
      g[i].copy_(gpu_uniform({numels[i]}, grad_dtype, -scale, scale, seed + i));
      out.push_back(g[i].to_vector<float>());
    }
    return out;
  }
  void check_state(bool check_m, bool check_v) const {
    for (std::size_t i = 0; i < p.size(); ++i) {
      INFO("tensor " << i << " of " << numels[i] << " elements");
      check_bits_equal(p[i].to_vector<float>(), hp[i], "params");
      if (check_m) check_bits_equal(m[i].to_vector<float>(), hm[i], "state1");
      if (check_v) check_bits_equal(v[i].to_vector<float>(), hv[i], "state2");
    }
  }
  // The copies hold the new weights rounded to copy_dtype, or still nan without copies.
  void check_copies() const {
    for (std::size_t i = 0; i < p.size(); ++i) {
      std::vector<double> got = vals(copy[i]);
      std::size_t bad = 0;
      for (std::size_t j = 0; j < got.size(); ++j) {
        const bool ok = with_copy ? got[j] == static_cast<double>(round_to(copy_dtype, hp[i][j])) : std::isnan(got[j]);
        bad += ok ? 0 : 1;
      }
      INFO("model copy of tensor " << i << ": " << bad << " of " << got.size() << " wrong");
      CHECK_ON_GPU(bad == 0);
    }
  }
  struct Snapshot {
    std::vector<std::vector<float>> p, m, v;
    std::vector<std::vector<double>> copy;
    std::vector<std::int64_t> steps;
  };
  Snapshot snapshot() const {
    Snapshot s;
    for (std::size_t i = 0; i < p.size(); ++i) {
      s.p.push_back(p[i].to_vector<float>());
      s.m.push_back(m[i].to_vector<float>());
      s.v.push_back(v[i].to_vector<float>());
      s.copy.push_back(vals(copy[i]));
      s.steps.push_back(ints(steps[i])[0]);
    }
    return s;
  }
  void check_unchanged(const Snapshot& s) const {
    for (std::size_t i = 0; i < p.size(); ++i) {
      INFO("tensor " << i << " after a skipped step");
      check_bits_equal(p[i].to_vector<float>(), s.p[i], "params");
      check_bits_equal(m[i].to_vector<float>(), s.m[i], "state1");
      check_bits_equal(v[i].to_vector<float>(), s.v[i], "state2");
      CHECK_ON_GPU(same_values(vals(copy[i]), s.copy[i]));
      CHECK_ON_GPU(ints(steps[i])[0] == s.steps[i]);
    }
  }
};

// Odd sizes, a few tensors: one chunk each (one block of 512 threads per tensor).
const std::vector<std::int64_t> kOptimSizes = {1, 7, 1001, 33, 2049};

struct GradCopy {
  DType grad;
  bool copy;
  DType copy_dt;
};
// Every gradient dtype with no copy, an f16 copy and a bf16 copy.
std::vector<GradCopy> grad_copy_pairs() {
  std::vector<GradCopy> out;
  for (DType gd : {DType::f32, DType::f16, DType::bf16}) {
    out.push_back({gd, false, DType::f16});
    out.push_back({gd, true, DType::f16});
    out.push_back({gd, true, DType::bf16});
  }
  return out;
}

}  // namespace

TEST_CASE("coverage: fused AdamW for every grad / model-copy dtype pair, host and device step counts, bit for bit",
          "[cuda][coverage][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  k::AdamWHyper h;
  h.lr = 1e-2;
  h.weight_decay = 0.05;
  std::uint64_t seed = 3120;
  for (const GradCopy& gc : grad_copy_pairs()) {
    for (bool device_steps : {false, true}) {
      INFO("grads " << dtype_name(gc.grad) << ", copy " << (gc.copy ? dtype_name(gc.copy_dt) : "none")
                    << (device_steps ? ", device step counts" : ", host step count"));
      OptimFixture fx(kOptimSizes, gc.grad, gc.copy, gc.copy_dt, seed += 100);
      Tensor scale = gpu_full({1}, DType::f32, 0.5), found = gpu_full({1}, DType::f32, 0.0);
      const auto* ps = static_cast<const float*>(scale.data_ptr());
      const auto* pf = static_cast<const float*>(found.data_ptr());
      for (std::int64_t step = 1; step <= 2; ++step) {
        auto grads = fx.new_grads(seed + 10 * static_cast<std::uint64_t>(step), 2.0);
        CIUIC_DUT_GPU_ONLY(k::fused_adamw(fx.tensors(device_steps), h, step, ps, pf, stream()));
        gpu_sync();
        for (std::size_t i = 0; i < grads.size(); ++i) {
          // device steps: each tensor's own count + 1 (the host's `step` is ignored)
          const k::AdamWConsts c = k::adamw_consts(h, device_steps ? fx.hsteps[i] + 1 : step);
          if (device_steps) ++fx.hsteps[i];
          for (std::size_t j = 0; j < grads[i].size(); ++j)
            k::adamw_update(fx.hp[i][j], fx.hm[i][j], fx.hv[i][j], k::scaled_grad(grads[i][j], 0.5f), c);
        }
      }
      fx.check_state(true, true);
      fx.check_copies();
      for (std::size_t i = 0; i < fx.steps.size(); ++i)  // advanced only with device steps
        CHECK_ON_GPU(ints(fx.steps[i])[0] == fx.hsteps[i]);
      // found_inf set: a step with wild gradients leaves every buffer and count as it was.
      const OptimFixture::Snapshot before = fx.snapshot();
      fx.new_grads(seed + 99, 1e4);
      found.fill_(1.0);
      CIUIC_DUT_GPU_ONLY(k::fused_adamw(fx.tensors(device_steps), h, 3, ps, pf, stream()));
      gpu_sync();
      fx.check_unchanged(before);
    }
  }
}

TEST_CASE("coverage: fused SGD for every grad / model-copy dtype pair matches the CPU math bit for bit",
          "[cuda][coverage][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  k::SgdHyper hs[3];
  hs[0].lr = 0.1;  // momentum with dampening and weight decay
  hs[0].momentum = 0.9;
  hs[0].dampening = 0.1;
  hs[0].weight_decay = 1e-3;
  hs[1] = hs[0];  // nesterov
  hs[1].dampening = 0.0;
  hs[1].nesterov = true;
  hs[2].lr = 0.05;  // plain SGD: no momentum buffers
  hs[2].weight_decay = 0.01;
  std::uint64_t seed = 3130;
  int which = 0;
  for (const GradCopy& gc : grad_copy_pairs()) {
    for (bool with_scale : {false, true}) {
      const k::SgdHyper& h = hs[which++ % 3];  // every pair meets two of the three variants
      INFO("grads " << dtype_name(gc.grad) << ", copy " << (gc.copy ? dtype_name(gc.copy_dt) : "none")
                    << ", momentum " << h.momentum << " nesterov " << h.nesterov
                    << (with_scale ? ", grad scale 0.25" : ""));
      OptimFixture fx(kOptimSizes, gc.grad, gc.copy, gc.copy_dt, seed += 100);
      k::FusedOptimTensors t = fx.tensors(false);
      t.state2 = nullptr;
      if (h.momentum == 0) t.state1 = nullptr;
      Tensor scale = gpu_full({1}, DType::f32, 0.25), found = gpu_full({1}, DType::f32, 0.0);
      const float* ps = with_scale ? static_cast<const float*>(scale.data_ptr()) : nullptr;
      const k::SgdConsts c = k::sgd_consts(h);
      for (int step = 1; step <= 2; ++step) {
        auto grads = fx.new_grads(seed + 10 * static_cast<std::uint64_t>(step), 1.0);
        CIUIC_DUT_GPU_ONLY(k::fused_sgd(t, h, step == 1, ps, static_cast<const float*>(found.data_ptr()), stream()));
        gpu_sync();
        for (std::size_t i = 0; i < grads.size(); ++i)
          for (std::size_t j = 0; j < grads[i].size(); ++j)
            k::sgd_update(fx.hp[i][j], fx.hm[i][j], k::scaled_grad(grads[i][j], with_scale ? 0.25f : 1.0f), c,
                          step == 1);
      }
      fx.check_state(true, true);  // without momentum state1 stays as it was; state2 is not SGD's
      fx.check_copies();
      const OptimFixture::Snapshot before = fx.snapshot();
      fx.new_grads(seed + 99, 1e4);
      found.fill_(1.0);
      CIUIC_DUT_GPU_ONLY(k::fused_sgd(t, h, false, ps, static_cast<const float*>(found.data_ptr()), stream()));
      gpu_sync();
      fx.check_unchanged(before);
    }
  }
}

// ---- multi-tensor unscale and scale ----

TEST_CASE("coverage: multi_tensor_unscale for every In -> Out dtype pair and multi_tensor_scale on every dtype",
          "[cuda][coverage][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  const std::vector<std::int64_t> sizes = {1, 7, 1001, 33, 2049};
  const int count = static_cast<int>(sizes.size());
  const DType types[] = {DType::f32, DType::f16, DType::bf16};
  std::uint64_t seed = 3140;
  for (DType in_dt : types) {
    for (DType out_dt : types) {
      INFO("unscale " << dtype_name(in_dt) << " -> " << dtype_name(out_dt));
      const float inv = 1.0f / 1024.0f;
      std::vector<Tensor> in, out;
      std::vector<const void*> pin;
      std::vector<void*> pout;
      for (std::int64_t n : sizes) {
        in.push_back(gpu_uniform({n}, in_dt, -4096, 4096, seed++));
        out.push_back(gpu_full({n}, out_dt, NAN));
        pin.push_back(in.back().data_ptr());
        pout.push_back(out.back().data_ptr());
      }
      Tensor inv_t = gpu_full({1}, DType::f32, inv), found = gpu_full({1}, DType::f32, 0.0);
      const auto* pi = static_cast<const float*>(inv_t.data_ptr());
      auto* pf = static_cast<float*>(found.data_ptr());
      CIUIC_DUT_GPU_ONLY(k::multi_tensor_unscale(pin.data(), in_dt, pout.data(), out_dt, sizes.data(), count, pi, pf,
                                                 stream()));
      gpu_sync();
      CHECK_ON_GPU(found.item() == 0.0);
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        auto src = in[i].to_vector<float>();
        std::vector<float> want(src.size());
        for (std::size_t j = 0; j < src.size(); ++j) {
          bool finite = false;
          switch (out_dt) {
            case DType::f16: { Half o; finite = k::unscale_element(src[j], inv, o); want[j] = static_cast<float>(o); break; }
            case DType::bf16: { BFloat16 o; finite = k::unscale_element(src[j], inv, o); want[j] = static_cast<float>(o); break; }
            default: { float o; finite = k::unscale_element(src[j], inv, o); want[j] = o; break; }
          }
          CHECK(finite);
        }
        check_bits_equal(out[i].to_vector<float>(), want, "unscaled");
      }
      // one inf in the middle of the fourth tensor: flagged, and stored as inf
      in[3].slice(0, 17, 18).fill_(INFINITY);
      CIUIC_DUT_GPU_ONLY(k::multi_tensor_unscale(pin.data(), in_dt, pout.data(), out_dt, sizes.data(), count, pi, pf,
                                                 stream()));
      gpu_sync();
      CHECK_ON_GPU(found.item() == 1.0);
      CHECK_ON_GPU(std::isinf(vals(out[3])[17]));
    }
  }
  for (DType dt : types) {
    INFO("scale " << dtype_name(dt));
    std::vector<Tensor> ts;
    std::vector<void*> ptrs;
    for (std::int64_t n : sizes) {
      ts.push_back(gpu_uniform({n}, dt, -3, 3, seed++));
      ptrs.push_back(ts.back().data_ptr());
    }
    std::vector<std::vector<float>> before;
    for (const Tensor& t : ts) before.push_back(t.to_vector<float>());
    const float c = 0.37f;
    Tensor coef = gpu_full({1}, DType::f32, c);
    CIUIC_DUT_GPU_ONLY(k::multi_tensor_scale(ptrs.data(), dt, sizes.data(), count,
                                             static_cast<const float*>(coef.data_ptr()), stream()));
    gpu_sync();
    for (std::size_t i = 0; i < ts.size(); ++i) {
      std::vector<float> want(before[i].size());
      for (std::size_t j = 0; j < want.size(); ++j) want[j] = round_to(dt, k::scaled_grad(before[i][j], c));
      check_bits_equal(ts[i].to_vector<float>(), want, "scaled");
    }
  }
}

// ---- layout movers ----

TEST_CASE("coverage: transpose_2d of 1-byte elements and permute_swap12 in 1- and 8-byte units match the CPU",
          "[cuda][coverage][kernels]") {
  INFO("device under test: " << ciuic::test::dut_name());
  manual_seed(315);
  // Two runs with different poisons: an element left unwritten cannot match both.
  const double poisons[] = {0, 1};
  const std::int64_t shapes[][2] = {{1, 1}, {1, 33}, {33, 1}, {31, 33}, {65, 7}};
  for (DType dt : {DType::u8, DType::boolean}) {
    for (const auto& s : shapes) {
      for (std::int64_t batch : {1, 3}) {
        INFO("transpose_2d " << dtype_name(dt) << " " << s[0] << "x" << s[1] << " batch " << batch);
        Tensor cpu = dt == DType::u8 ? rnd({batch, s[0], s[1]}, DType::f64, 0, 256).to(dt)
                                     : random_bools({batch, s[0], s[1]}, 0.5);
        Tensor src = to_dut(cpu);
        const Tensor want = cpu.transpose(1, 2).contiguous();
        for (double poison : poisons) {
          Tensor dst = gpu_full({batch, s[1], s[0]}, dt, dt == DType::u8 ? 255 * poison : poison);
          CIUIC_DUT_GPU_ONLY(k::transpose_2d(dst.data_ptr(), src.data_ptr(), dt, batch, s[0], s[1], stream()));
          gpu_sync();
          CHECK_ON_GPU(ints(dst) == ints(want));
        }
      }
    }
  }
  // (B, X, Y, D) -> (B, Y, X, D): odd rows of bytes move in 1-byte units; rows of 8 or
  // 24 bytes (i64 or f64 x 1 or 3, f32 x 2) in 8-byte units.
  struct Case {
    DType dt;
    std::int64_t D;
    unsigned unit;
  };
  const Case cases[] = {{DType::u8, 1, 1},  {DType::u8, 3, 1},  {DType::u8, 5, 1}, {DType::i64, 1, 8},
                        {DType::f64, 3, 8}, {DType::f32, 2, 8}, {DType::i64, 3, 8}};
  const std::int64_t B = 2, X = 7, Y = 3;
  for (const Case& c : cases) {
    INFO("permute_swap12 " << dtype_name(c.dt) << " D " << c.D);
    const Shape shape{B, X, Y, c.D};
    Tensor cpu = c.dt == DType::u8 ? rnd(shape, DType::f64, 0, 256).to(DType::u8)
                 : c.dt == DType::i64 ? rnd(shape, DType::f64, -1e12, 1e12).to(DType::i64)
                                      : rnd(shape, c.dt, -1, 1);
    Tensor src = to_dut(cpu);
    const Tensor want = cpu.permute({0, 2, 1, 3}).contiguous();
    for (double poison : poisons) {
      Tensor mid = gpu_full({B, Y, X, c.D}, c.dt, 255 * poison), back = gpu_full(shape, c.dt, 255 * poison);
      const unsigned unit = k::copy_unit_bytes(static_cast<std::uint64_t>(c.D) * dtype_size(c.dt),
                                               reinterpret_cast<std::uintptr_t>(mid.data_ptr()),
                                               reinterpret_cast<std::uintptr_t>(src.data_ptr()));
      CHECK(unit == c.unit);
      CIUIC_DUT_GPU_ONLY(k::permute_swap12(mid.data_ptr(), src.data_ptr(), c.dt, B, X, Y, c.D, stream()));
      CIUIC_DUT_GPU_ONLY(k::permute_swap12(back.data_ptr(), mid.data_ptr(), c.dt, B, Y, X, c.D, stream()));
      gpu_sync();
      if (is_floating(c.dt)) {
        CHECK_ON_GPU(same_values(vals(mid), vals(want)));
        CHECK_ON_GPU(same_values(vals(back), vals(cpu)));
      } else {
        CHECK_ON_GPU(ints(mid) == ints(want));
        CHECK_ON_GPU(ints(back) == ints(cpu));
      }
    }
  }
}

TEST_CASE("coverage: the u8 sum reducer and the 16-byte transpose unit have no launch path",
          "[cuda][coverage][kernels]") {
  // reduce_{rows,cols,finish}_kernel<SumReducer<u8>> are instantiated (dispatch_reduce
  // lists u8 for max), but reduce_sum rejects u8 on the host before any launch, and the
  // engine sums u8 as i64 (the case above). If this starts to pass a u8 sum, test it.
  CHECK_THROWS_AS(k::reduce_sum(k::ReduceOp::sum, nullptr, nullptr, DType::u8, 1, 5, 1, true, nullptr, 0, stream()),
                  DTypeError);
  CHECK_THROWS_AS(k::reduce_sum(k::ReduceOp::sum, nullptr, nullptr, DType::u8, 3, 5, 2, true, nullptr, 0, stream()),
                  DTypeError);
  // transpose_kernel<uint4> would move 16-byte elements: transpose_2d picks the unit
  // from dtype_size, and no dtype is 16 bytes wide.
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i32, DType::i64, DType::u8,
                   DType::boolean}) {
    INFO(dtype_name(dt));
    CHECK(dtype_size(dt) < 16);
  }
}

#else  // !CIUIC_WITH_CUDA

TEST_CASE("coverage: the raw kernel launchers need a CUDA build", "[cuda][coverage][kernels]") {
  WARN("skipped: this build has no CUDA kernels");
}

#endif
