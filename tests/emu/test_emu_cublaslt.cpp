// Known-answer tests of the emulated build's cuBLASLt stand-in
// (kernels/emu/src/cublaslt_standin*.cpp), through the public cuBLASLt API only,
// as a user of the library calls it. References are naive loops written here or
// values written out by hand; f16/bf16 rounding comes from the toolkit's own
// cuda_fp16.h / cuda_bf16.h host conversions, not from ciuic's.
//
// Every matrix is column-major: element (r, c) of batch entry b is at
// b * stride + c * ld + r. D and C are (m, n), op(A) (m, k), op(B) (k, n).
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <future>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "ciuic_emu/engine.h"
#include "test_gate.h"

namespace {

using i64 = std::int64_t;
constexpr cublasStatus_t kOk = CUBLAS_STATUS_SUCCESS;
constexpr double kSentinel = -776.0;  // fills D and aux padding (exact in f16 and bf16 too)

// ---- the toolkit's conversions (rounding to nearest even) ----

template <typename T> T to(double v);
template <> float to<float>(double v) { return static_cast<float>(v); }
template <> double to<double>(double v) { return v; }
template <> __half to<__half>(double v) { return __float2half_rn(static_cast<float>(v)); }
template <> __nv_bfloat16 to<__nv_bfloat16>(double v) { return __float2bfloat16_rn(static_cast<float>(v)); }
double from(float v) { return v; }
double from(double v) { return v; }
double from(__half v) { return __half2float(v); }
double from(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> constexpr cudaDataType kType = CUDA_R_32F;
template <> constexpr cudaDataType kType<double> = CUDA_R_64F;
template <> constexpr cudaDataType kType<__half> = CUDA_R_16F;
template <> constexpr cudaDataType kType<__nv_bfloat16> = CUDA_R_16BF;

double gelu_ref(double x) { return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

// Small integers in [-4, 4]: every product and sum below is exact in f32.
double ival(i64 i, int salt) { return static_cast<double>((i * 7 + salt * 5 + 3) % 9) - 4.0; }

// ---- RAII over the API under test ----

struct Handle {
  cublasLtHandle_t h = nullptr;
  Handle() { REQUIRE(cublasLtCreate(&h) == kOk); }
  ~Handle() { cublasLtDestroy(h); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
};

template <typename V>
cublasStatus_t set_layout(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a, V v) {
  return cublasLtMatrixLayoutSetAttribute(l, a, &v, sizeof(v));
}
template <typename V>
cublasStatus_t set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, V v) {
  return cublasLtMatmulDescSetAttribute(d, a, &v, sizeof(v));
}

struct Layout {
  cublasLtMatrixLayout_t l = nullptr;
  Layout(cudaDataType t, i64 rows, i64 cols, i64 ld, i64 batch = 1, i64 stride = 0) {
    REQUIRE(cublasLtMatrixLayoutCreate(&l, t, static_cast<std::uint64_t>(rows), static_cast<std::uint64_t>(cols),
                                       ld) == kOk);
    if (batch != 1) {
      REQUIRE(set_layout(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, static_cast<std::int32_t>(batch)) == kOk);
      REQUIRE(set_layout(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, stride) == kOk);
    }
  }
  ~Layout() { cublasLtMatrixLayoutDestroy(l); }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};

struct Desc {
  cublasLtMatmulDesc_t d = nullptr;
  Desc(cublasComputeType_t compute, cudaDataType scale, bool ta = false, bool tb = false) {
    REQUIRE(cublasLtMatmulDescCreate(&d, compute, scale) == kOk);
    REQUIRE(set_desc(d, CUBLASLT_MATMUL_DESC_TRANSA, static_cast<std::int32_t>(ta ? CUBLAS_OP_T : CUBLAS_OP_N)) == kOk);
    REQUIRE(set_desc(d, CUBLASLT_MATMUL_DESC_TRANSB, static_cast<std::int32_t>(tb ? CUBLAS_OP_T : CUBLAS_OP_N)) == kOk);
  }
  ~Desc() { cublasLtMatmulDescDestroy(d); }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
};

// n elements of `storage` starting at its first 256-byte aligned element
// (storage holds n + 64 floats).
std::span<float> aligned256(std::vector<float>& storage, std::size_t n) {
  const auto addr = reinterpret_cast<std::uintptr_t>(storage.data());
  return {storage.data() + (256 - addr % 256) % 256 / sizeof(float), n};
}

void device_sync() { REQUIRE(cudaDeviceSynchronize() == cudaSuccess); }

// ---- one problem, its data, the reference ----

struct Problem {
  bool ta = false, tb = false;
  i64 m = 0, n = 0, k = 0;
  i64 lda = 0, ldb = 0, ldc = 0, ldd = 0;
  i64 batch = 1, sa = 0, sb = 0, sc = 0, sd = 0;
  i64 a_rows() const { return ta ? k : m; }
  i64 a_cols() const { return ta ? m : k; }
  i64 b_rows() const { return tb ? n : k; }
  i64 b_cols() const { return tb ? k : n; }
};

// Elements a (rows, cols, ld, batch, stride) layout spans (padding included).
std::size_t span(i64 cols, i64 ld, i64 batch, i64 stride) {
  return static_cast<std::size_t>((batch - 1) * stride + cols * ld);
}

struct Data {
  std::vector<double> a, b, c;
};

Data make_data(const Problem& p) {
  Data x;
  x.a.resize(span(p.a_cols(), p.lda, p.batch, p.sa));
  x.b.resize(span(p.b_cols(), p.ldb, p.batch, p.sb));
  x.c.resize(span(p.n, p.ldc, p.batch, p.sc));
  for (std::size_t i = 0; i < x.a.size(); ++i) x.a[i] = ival(static_cast<i64>(i), 1);
  for (std::size_t i = 0; i < x.b.size(); ++i) x.b[i] = ival(static_cast<i64>(i), 2);
  for (std::size_t i = 0; i < x.c.size(); ++i) x.c[i] = ival(static_cast<i64>(i), 3);
  return x;
}

// alpha * sum_q op(A)(i, q) op(B)(q, j) + beta * C(i, j) of batch entry b, q in order.
double ref(const Problem& p, const Data& x, double alpha, double beta, i64 b, i64 i, i64 j) {
  double acc = 0;
  for (i64 q = 0; q < p.k; ++q) {
    const double av = x.a[b * p.sa + (p.ta ? i * p.lda + q : q * p.lda + i)];
    const double bv = x.b[b * p.sb + (p.tb ? q * p.ldb + j : j * p.ldb + q)];
    acc += av * bv;
  }
  return alpha * acc + (beta != 0 ? beta * x.c[b * p.sc + j * p.ldc + i] : 0.0);
}

// Runs p with A/B of type TAB, C/D of type TCD, scale TS (float or double), on the
// default stream. `setup` may set epilogue attributes. D (padding included,
// initially kSentinel) comes back as doubles.
template <typename TAB, typename TCD, typename TS = float>
std::vector<double> run(const Problem& p, const Data& x, double alpha, double beta,
                        const std::function<void(cublasLtMatmulDesc_t)>& setup = {},
                        cublasComputeType_t compute = CUBLAS_COMPUTE_32F) {
  Handle h;
  constexpr cudaDataType scale = std::is_same_v<TS, double> ? CUDA_R_64F : CUDA_R_32F;
  Desc desc(compute, scale, p.ta, p.tb);
  if (setup) setup(desc.d);
  Layout la(kType<TAB>, p.a_rows(), p.a_cols(), p.lda, p.batch, p.sa);
  Layout lb(kType<TAB>, p.b_rows(), p.b_cols(), p.ldb, p.batch, p.sb);
  Layout lc(kType<TCD>, p.m, p.n, p.ldc, p.batch, p.sc);
  Layout ld(kType<TCD>, p.m, p.n, p.ldd, p.batch, p.sd);
  std::vector<TAB> a, b;
  std::vector<TCD> c, d(span(p.n, p.ldd, p.batch, p.sd), to<TCD>(kSentinel));
  for (double v : x.a) a.push_back(to<TAB>(v));
  for (double v : x.b) b.push_back(to<TAB>(v));
  for (double v : x.c) c.push_back(to<TCD>(v));
  const TS al = static_cast<TS>(alpha), be = static_cast<TS>(beta);
  REQUIRE(cublasLtMatmul(h.h, desc.d, &al, a.data(), la.l, b.data(), lb.l, &be, c.data(), lc.l, d.data(), ld.l,
                         nullptr, nullptr, 0, nullptr) == kOk);
  device_sync();
  std::vector<double> out;
  for (const TCD& v : d) out.push_back(from(v));
  return out;
}

// Every element of D against f(b, i, j); padding and batch gaps still kSentinel.
void check_d(const Problem& p, const std::vector<double>& d, const std::function<double(i64, i64, i64)>& f,
             double tol = 0) {
  std::vector<bool> inside(d.size(), false);
  for (i64 b = 0; b < p.batch; ++b)
    for (i64 j = 0; j < p.n; ++j)
      for (i64 i = 0; i < p.m; ++i) {
        const auto at = static_cast<std::size_t>(b * p.sd + j * p.ldd + i);
        inside[at] = true;
        INFO("batch " << b << " row " << i << " col " << j);
        if (tol == 0) CHECK(d[at] == f(b, i, j));
        else CHECK(d[at] == Approx(f(b, i, j)).margin(tol).epsilon(tol));
      }
  for (std::size_t at = 0; at < d.size(); ++at)
    if (!inside[at]) CHECK(d[at] == kSentinel);
}

Problem small(bool ta, bool tb) {
  Problem p;
  p.ta = ta;
  p.tb = tb;
  p.m = 3, p.n = 4, p.k = 5;
  p.lda = p.a_rows() + 2, p.ldb = p.b_rows() + 1, p.ldc = p.m + 3, p.ldd = p.m + 1;  // ld > rows everywhere
  return p;
}

}  // namespace

TEST_CASE("cuBLASLt stand-in: f32 matmul, every transpose, ld > rows, beta", "[emu]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const Problem p = small(ta, tb);
      const Data x = make_data(p);
      INFO("trans_a " << ta << " trans_b " << tb);
      check_d(p, run<float, float>(p, x, 2.0, 0.0), [&](i64 b, i64 i, i64 j) { return ref(p, x, 2, 0, b, i, j); });
      check_d(p, run<float, float>(p, x, -1.0, 3.0), [&](i64 b, i64 i, i64 j) { return ref(p, x, -1, 3, b, i, j); });
    }
}

TEST_CASE("cuBLASLt stand-in: a hand-written 2x2 product", "[emu]") {
  // A = [1 2; 3 4], B = [5 6; 7 8] (column-major storage below): AB = [19 22; 43 50].
  Problem p;
  p.m = p.n = p.k = 2;
  p.lda = p.ldb = p.ldc = p.ldd = 2;
  Data x{{1, 3, 2, 4}, {5, 7, 6, 8}, {0, 0, 0, 0}};
  const std::vector<double> d = run<float, float>(p, x, 1.0, 0.0);
  CHECK(d == std::vector<double>{19, 43, 22, 50});
}

TEST_CASE("cuBLASLt stand-in: beta == 0 never reads C", "[emu]") {
  Problem p = small(false, false);
  Data x = make_data(p);
  for (double& v : x.c) v = std::numeric_limits<double>::quiet_NaN();
  check_d(p, run<float, float>(p, x, 1.0, 0.0), [&](i64 b, i64 i, i64 j) { return ref(p, x, 1, 0, b, i, j); });
}

TEST_CASE("cuBLASLt stand-in: strided batches, a broadcast B, gaps untouched", "[emu]") {
  Problem p = small(true, false);
  p.batch = 3;
  p.sa = p.lda * p.a_cols() + 5;  // a gap of 5 elements between entries
  p.sb = 0;                       // every entry shares B
  p.sc = p.ldc * p.n;
  p.sd = p.ldd * p.n + 7;
  const Data x = make_data(p);
  check_d(p, run<float, float>(p, x, 1.0, 0.5), [&](i64 b, i64 i, i64 j) { return ref(p, x, 1, 0.5, b, i, j); });
}

TEST_CASE("cuBLASLt stand-in: C aliasing D (in place)", "[emu]") {
  Handle h;
  Problem p = small(false, true);
  p.ldd = p.ldc;
  const Data x = make_data(p);
  Desc desc(CUBLAS_COMPUTE_32F, CUDA_R_32F, p.ta, p.tb);
  Layout la(CUDA_R_32F, p.a_rows(), p.a_cols(), p.lda), lb(CUDA_R_32F, p.b_rows(), p.b_cols(), p.ldb);
  Layout lc(CUDA_R_32F, p.m, p.n, p.ldc), lother(CUDA_R_32F, p.m, p.n, p.ldc + 1);
  std::vector<float> a(x.a.begin(), x.a.end()), b(x.b.begin(), x.b.end()), c(x.c.begin(), x.c.end());
  const float alpha = 1.0f, beta = -2.0f;
  REQUIRE(cublasLtMatmul(h.h, desc.d, &alpha, a.data(), la.l, b.data(), lb.l, &beta, c.data(), lc.l, c.data(), lc.l,
                         nullptr, nullptr, 0, nullptr) == kOk);
  device_sync();
  for (i64 j = 0; j < p.n; ++j)
    for (i64 i = 0; i < p.m; ++i) CHECK(c[j * p.ldc + i] == ref(p, x, 1, -2, 0, i, j));
  // In place with a different layout for D is refused.
  CHECK(cublasLtMatmul(h.h, desc.d, &alpha, a.data(), la.l, b.data(), lb.l, &beta, c.data(), lc.l, c.data(),
                       lother.l, nullptr, nullptr, 0, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
}

TEST_CASE("cuBLASLt stand-in: epilogues bias, gelu, aux with its own ld and batch stride", "[emu]") {
  Problem p = small(false, false);
  p.batch = 2;
  p.sa = p.lda * p.a_cols(), p.sb = p.ldb * p.b_cols(), p.sc = p.ldc * p.n, p.sd = p.ldd * p.n;
  const Data x = make_data(p);
  const std::vector<float> bias = {0.5f, -1.5f, 2.25f};  // one per row of D (m = 3), shared by the batch
  constexpr i64 kAuxLd = 8, kAuxStride = 40;             // multiples of 8, as documented; ld > m
  struct Case {
    cublasLtEpilogue_t e;
    bool bias, gelu, aux;
  };
  for (const Case cs : {Case{CUBLASLT_EPILOGUE_BIAS, true, false, false}, Case{CUBLASLT_EPILOGUE_GELU, false, true, false},
                        Case{CUBLASLT_EPILOGUE_GELU_BIAS, true, true, false},
                        Case{CUBLASLT_EPILOGUE_GELU_AUX, false, true, true},
                        Case{CUBLASLT_EPILOGUE_GELU_AUX_BIAS, true, true, true}}) {
    INFO("epilogue " << static_cast<int>(cs.e));
    std::vector<float> aux(static_cast<std::size_t>(kAuxStride * p.batch), static_cast<float>(kSentinel));
    auto setup = [&](cublasLtMatmulDesc_t d) {
      REQUIRE(set_desc(d, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<std::uint32_t>(cs.e)) == kOk);
      if (cs.bias) REQUIRE(set_desc(d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(bias.data())) == kOk);
      if (cs.aux) {
        REQUIRE(set_desc(d, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, static_cast<void*>(aux.data())) == kOk);
        REQUIRE(set_desc(d, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, kAuxLd) == kOk);
        REQUIRE(set_desc(d, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, kAuxStride) == kOk);
      }
    };
    // The pre-GELU value: exact in f32 (integers and quarters).
    auto pre = [&](i64 b, i64 i, i64 j) { return ref(p, x, 2, 0.5, b, i, j) + (cs.bias ? bias[i] : 0.0); };
    const std::vector<double> d = run<float, float>(p, x, 2.0, 0.5, setup);
    if (cs.gelu) check_d(p, d, [&](i64 b, i64 i, i64 j) { return gelu_ref(pre(b, i, j)); }, 1e-5);
    else check_d(p, d, pre);
    for (i64 at = 0; at < kAuxStride * p.batch; ++at) {
      const i64 b = at / kAuxStride, j = at % kAuxStride / kAuxLd, i = at % kAuxLd;
      const bool inside = cs.aux && j < p.n && i < p.m;
      INFO("aux element " << at);
      CHECK(aux[static_cast<std::size_t>(at)] == (inside ? pre(b, i, j) : kSentinel));
    }
  }
}

TEST_CASE("cuBLASLt stand-in: f16 and bf16 inputs, f32 accumulation, one rounding (nearest even)", "[emu]") {
  // A = a row of ones (m = 1, k = 4), so D holds B's column sums. They are exact in
  // f32 but not representable in f16 (11 significant bits) / bf16 (8), and sit on
  // ties. Column 1 also tells f32 accumulation from rounding after every step
  // (2048 + 1 + 1 + 1 would stay 2048 in f16, 256 + 1 + 1 + 1 stay 256 in bf16).
  Problem p;
  p.m = 1, p.n = 4, p.k = 4;
  p.lda = 1, p.ldb = 4, p.ldc = p.ldd = 1;
  Data x;
  x.a = {1, 1, 1, 1};
  x.c = {0, 0, 0, 0};
  SECTION("f16") {
    // Column sums 2049 (tie -> 2048), 2051 (tie -> 2052), 2053 (tie -> 2052), 4097.5 (-> 4096).
    x.b = {1024, 1024, 1, 0, 2048, 1, 1, 1, 1024, 1024, 4, 1, 2048, 2048, 1, 0.5};
    CHECK(run<__half, __half>(p, x, 1, 0) == std::vector<double>{2048, 2052, 2052, 4096});
    CHECK(run<__half, float>(p, x, 1, 0) == std::vector<double>{2049, 2051, 2053, 4097.5});
  }
  SECTION("bf16") {
    // Column sums 257 (tie -> 256), 259 (tie -> 260), 261 (tie -> 260), 263 (tie -> 264).
    x.b = {128, 128, 1, 0, 256, 1, 1, 1, 128, 128, 4, 1, 128, 128, 4, 3};
    CHECK(run<__nv_bfloat16, __nv_bfloat16>(p, x, 1, 0) == std::vector<double>{256, 260, 260, 264});
    CHECK(run<__nv_bfloat16, float>(p, x, 1, 0) == std::vector<double>{257, 259, 261, 263});
  }
}

TEST_CASE("cuBLASLt stand-in: f16 and bf16 against rounded references with bias and GELU", "[emu]") {
  Problem p = small(true, true);
  const Data x = make_data(p);
  const std::vector<float> bias_f = {0.25f, -0.5f, 1.0f};
  auto check_type = [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> bias;
    for (float v : bias_f) bias.push_back(to<T>(v));
    auto setup = [&](cublasLtMatmulDesc_t d) {
      REQUIRE(set_desc(d, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<std::uint32_t>(CUBLASLT_EPILOGUE_GELU_BIAS)) == kOk);
      REQUIRE(set_desc(d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(bias.data())) == kOk);
    };
    check_d(p, run<T, T>(p, x, 1.0, 0.0), [&](i64 b, i64 i, i64 j) { return from(to<T>(ref(p, x, 1, 0, b, i, j))); });
    // GELU of the f32 pre-activation, then one rounding: within one ulp of the rounded double reference.
    const double ulp = std::is_same_v<T, __half> ? 1.0 / 1024 : 1.0 / 128;
    check_d(p, run<T, T>(p, x, 1.0, 0.0, setup),
            [&](i64 b, i64 i, i64 j) { return from(to<T>(gelu_ref(ref(p, x, 1, 0, b, i, j) + bias_f[i]))); },
            ulp);
  };
  check_type(__half{});
  check_type(__nv_bfloat16{});
}

TEST_CASE("cuBLASLt stand-in: f64 with compute 64F, scale f64, GELU in double", "[emu]") {
  Problem p = small(false, true);
  Data x = make_data(p);
  for (double& v : x.a) v = v / 8 + 1.0 / 1024;  // dyadic: exact products and sums in double
  auto setup = [](cublasLtMatmulDesc_t d) {
    REQUIRE(set_desc(d, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<std::uint32_t>(CUBLASLT_EPILOGUE_GELU)) == kOk);
  };
  check_d(p, run<double, double, double>(p, x, 0.75, -0.5, {}, CUBLAS_COMPUTE_64F),
          [&](i64 b, i64 i, i64 j) { return ref(p, x, 0.75, -0.5, b, i, j); });
  check_d(p, run<double, double, double>(p, x, 0.75, -0.5, setup, CUBLAS_COMPUTE_64F),
          [&](i64 b, i64 i, i64 j) { return gelu_ref(ref(p, x, 0.75, -0.5, b, i, j)); }, 1e-13);
}

TEST_CASE("cuBLASLt stand-in: k == 0 gives beta * C plus the epilogue", "[emu]") {
  Handle h;
  Desc desc(CUBLAS_COMPUTE_32F, CUDA_R_32F);
  std::vector<float> bias = {1, 2};
  REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<std::uint32_t>(CUBLASLT_EPILOGUE_BIAS)) == kOk);
  REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(bias.data())) == kOk);
  Layout la(CUDA_R_32F, 2, 0, 2), lb(CUDA_R_32F, 0, 3, 1), lc(CUDA_R_32F, 2, 3, 2);
  std::vector<float> c = {1, 2, 3, 4, 5, 6}, d(6, -1);
  const float alpha = 1, beta = 2;
  REQUIRE(cublasLtMatmul(h.h, desc.d, &alpha, nullptr, la.l, nullptr, lb.l, &beta, c.data(), lc.l, d.data(), lc.l,
                         nullptr, nullptr, 0, nullptr) == kOk);
  device_sync();
  CHECK(d == std::vector<float>{3, 6, 7, 10, 11, 14});
}

TEST_CASE("cuBLASLt stand-in: a bias per batch entry (BIAS_BATCH_STRIDE)", "[emu]") {
  // Batch of 2: A (2, 1) = [1; 2] and [3; 4], B (1, 1) = [1], bias (2 values) at 0 and 3.
  Handle h;
  Desc desc(CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const std::vector<float> a = {1, 2, 3, 4}, b = {1}, bias = {10, 20, -1, 30, 40};
  std::vector<float> d(4, -1);
  REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<std::uint32_t>(CUBLASLT_EPILOGUE_BIAS)) == kOk);
  REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(bias.data())) == kOk);
  REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, i64{3}) == kOk);
  Layout la(CUDA_R_32F, 2, 1, 2, 2, 2), lb(CUDA_R_32F, 1, 1, 1, 2, 0), ld(CUDA_R_32F, 2, 1, 2, 2, 2);
  const float alpha = 1, beta = 0;
  REQUIRE(cublasLtMatmul(h.h, desc.d, &alpha, a.data(), la.l, b.data(), lb.l, &beta, d.data(), ld.l, d.data(), ld.l,
                         nullptr, nullptr, 0, nullptr) == kOk);
  device_sync();
  CHECK(d == std::vector<float>{11, 22, 33, 44});
}

TEST_CASE("cuBLASLt stand-in: the heuristic offers one algorithm, for the default epilogue only", "[emu]") {
  Handle h;
  Desc desc(CUBLAS_COMPUTE_32F_FAST_TF32, CUDA_R_32F);
  Layout la(CUDA_R_32F, 4, 4, 4), lb(CUDA_R_32F, 4, 4, 4), lc(CUDA_R_32F, 4, 4, 4);
  cublasLtMatmulPreference_t pref = nullptr;
  REQUIRE(cublasLtMatmulPreferenceCreate(&pref) == kOk);
  const std::uint64_t max_ws = 1 << 20;
  const std::uint32_t align = 16;
  REQUIRE(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws,
                                               sizeof(max_ws)) == kOk);
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    REQUIRE(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align)) == kOk);
  cublasLtMatmulHeuristicResult_t res[2] = {};
  int count = -1;
  REQUIRE(cublasLtMatmulAlgoGetHeuristic(h.h, desc.d, la.l, lb.l, lc.l, lc.l, pref, 2, res, &count) == kOk);
  REQUIRE(count == 1);
  CHECK(res[0].state == kOk);
  CHECK(res[0].workspaceSize <= max_ws);
  CHECK(cublasLtMatmulAlgoGetHeuristic(h.h, desc.d, la.l, lb.l, lc.l, lc.l, pref, 0, res, &count) ==
        CUBLAS_STATUS_INVALID_VALUE);

  // The algorithm runs with its workspace, which it may scribble over (and nothing beyond it).
  const std::size_t ws_size = res[0].workspaceSize;
  std::vector<unsigned char> ws(ws_size + 64, 0x11);
  std::vector<float> a_store(16 + 64, 1.0f), b_store(16 + 64, 2.0f), d_store(16 + 64, 0.0f);
  std::span<float> a = aligned256(a_store, 16), b = aligned256(b_store, 16), d = aligned256(d_store, 16);
  const float alpha = 1, beta = 0;
  REQUIRE(cublasLtMatmul(h.h, desc.d, &alpha, a.data(), la.l, b.data(), lb.l, &beta, d.data(), lc.l, d.data(), lc.l,
                         &res[0].algo, ws.data(), ws.size(), nullptr) == kOk);
  device_sync();
  for (float v : d) CHECK(v == 8.0f);
  for (std::size_t i = ws_size; i < ws.size(); ++i) CHECK(ws[i] == 0x11);
  if (ws_size > 0)
    CHECK(cublasLtMatmul(h.h, desc.d, &alpha, a.data(), la.l, b.data(), lb.l, &beta, d.data(), lc.l, d.data(), lc.l,
                         &res[0].algo, ws.data(), ws_size - 1, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
  // Chosen for 16-byte alignment: a pointer 4 bytes in is refused.
  CHECK(cublasLtMatmul(h.h, desc.d, &alpha, a.data() + 1, la.l, b.data(), lb.l, &beta, d.data(), lc.l, d.data(), lc.l,
                       &res[0].algo, ws.data(), ws.size(), nullptr) == CUBLAS_STATUS_INVALID_VALUE);

  // Every other epilogue is declined (cublasLtMatmul still computes it: see above).
  for (auto e : {CUBLASLT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_GELU, CUBLASLT_EPILOGUE_GELU_BIAS,
                 CUBLASLT_EPILOGUE_GELU_AUX, CUBLASLT_EPILOGUE_GELU_AUX_BIAS}) {
    REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<std::uint32_t>(e)) == kOk);
    count = -1;
    CHECK(cublasLtMatmulAlgoGetHeuristic(h.h, desc.d, la.l, lb.l, lc.l, lc.l, pref, 1, res, &count) ==
          CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(count == 0);
  }
  cublasLtMatmulPreferenceDestroy(pref);
}

TEST_CASE("cuBLASLt stand-in: error statuses", "[emu]") {
  Handle h;
  Desc desc(CUBLAS_COMPUTE_32F, CUDA_R_32F);
  Layout l22(CUDA_R_32F, 2, 2, 2), l23(CUDA_R_32F, 2, 3, 2), l32(CUDA_R_32F, 3, 2, 3);
  std::vector<float> buf(64, 1.0f);
  float* p = buf.data();
  const float one = 1, zero = 0;
  auto mm = [&](cublasLtHandle_t hh, cublasLtMatmulDesc_t dd, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d) {
    return cublasLtMatmul(hh, dd, &one, p, a, p + 16, b, &zero, p + 32, c, p + 48, d, nullptr, nullptr, 0, nullptr);
  };
  CHECK(mm(nullptr, desc.d, l22.l, l22.l, l22.l, l22.l) == CUBLAS_STATUS_NOT_INITIALIZED);
  CHECK(cublasLtDestroy(nullptr) == CUBLAS_STATUS_NOT_INITIALIZED);
  CHECK(mm(h.h, nullptr, l22.l, l22.l, l22.l, l22.l) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(mm(h.h, desc.d, nullptr, l22.l, l22.l, l22.l) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(mm(h.h, desc.d, l22.l, l22.l, l22.l, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(cublasLtMatmul(h.h, desc.d, nullptr, p, l22.l, p, l22.l, &zero, p, l22.l, p, l22.l, nullptr, nullptr, 0,
                       nullptr) == CUBLAS_STATUS_INVALID_VALUE);
  // Shapes: op(A) (2, 2) x op(B) (3, 2): k differs; C (2, 3) vs D (2, 2); op(A) rows vs D rows.
  CHECK(mm(h.h, desc.d, l22.l, l32.l, l22.l, l22.l) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(mm(h.h, desc.d, l22.l, l22.l, l23.l, l22.l) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(mm(h.h, desc.d, l32.l, l22.l, l22.l, l22.l) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(mm(h.h, desc.d, l22.l, l23.l, l23.l, l23.l) == kOk);
  device_sync();
  {
    Layout bad_ld(CUDA_R_32F, 2, 2, 1);  // ld < rows
    CHECK(mm(h.h, desc.d, bad_ld.l, l22.l, l22.l, l22.l) == CUBLAS_STATUS_INVALID_VALUE);
    Layout batched(CUDA_R_32F, 2, 2, 2, 2, 4);  // batch 2 against batch 1
    CHECK(mm(h.h, desc.d, batched.l, l22.l, l22.l, l22.l) == CUBLAS_STATUS_INVALID_VALUE);
    Layout f16(CUDA_R_16F, 2, 2, 2);  // A f16 with B f32
    CHECK(mm(h.h, desc.d, f16.l, l22.l, l22.l, l22.l) == CUBLAS_STATUS_NOT_SUPPORTED);
    Layout f64(CUDA_R_64F, 2, 2, 2);  // f64 with compute 32F
    CHECK(mm(h.h, desc.d, f64.l, f64.l, f64.l, f64.l) == CUBLAS_STATUS_NOT_SUPPORTED);
    Desc tf32(CUBLAS_COMPUTE_32F_FAST_TF32, CUDA_R_32F);  // TF32 takes f32 inputs only
    CHECK(mm(h.h, tf32.d, f16.l, f16.l, f16.l, f16.l) == CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(mm(h.h, tf32.d, l22.l, l22.l, l22.l, l22.l) == kOk);
    Desc f64_scale(CUBLAS_COMPUTE_32F, CUDA_R_64F);  // compute 32F with an f64 scale
    CHECK(mm(h.h, f64_scale.d, l22.l, l22.l, l22.l, l22.l) == CUBLAS_STATUS_NOT_SUPPORTED);
  }
  // Epilogues: a missing bias or aux pointer, an aux ld below rows or not a multiple of 8, ReLU.
  REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<std::uint32_t>(CUBLASLT_EPILOGUE_BIAS)) == kOk);
  CHECK(mm(h.h, desc.d, l22.l, l22.l, l22.l, l22.l) == CUBLAS_STATUS_INVALID_VALUE);
  REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<std::uint32_t>(CUBLASLT_EPILOGUE_GELU_AUX)) ==
          kOk);
  REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, i64{8}) == kOk);
  CHECK(mm(h.h, desc.d, l22.l, l22.l, l22.l, l22.l) == CUBLAS_STATUS_INVALID_VALUE);  // no aux pointer
  std::vector<float> aux(32);
  REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, static_cast<void*>(aux.data())) == kOk);
  CHECK(mm(h.h, desc.d, l22.l, l22.l, l22.l, l22.l) == kOk);
  device_sync();
  REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, i64{4}) == kOk);
  CHECK(mm(h.h, desc.d, l22.l, l22.l, l22.l, l22.l) == CUBLAS_STATUS_INVALID_VALUE);
  REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, i64{1}) == kOk);
  CHECK(mm(h.h, desc.d, l22.l, l22.l, l22.l, l22.l) == CUBLAS_STATUS_INVALID_VALUE);
  REQUIRE(set_desc(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<std::uint32_t>(CUBLASLT_EPILOGUE_RELU)) == kOk);
  CHECK(mm(h.h, desc.d, l22.l, l22.l, l22.l, l22.l) == CUBLAS_STATUS_NOT_SUPPORTED);
}

TEST_CASE("cuBLASLt stand-in: descriptor attributes and the Init API", "[emu]") {
  Desc desc(CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const std::int32_t t = CUBLAS_OP_T;
  CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &t, 8) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, nullptr, 4) == CUBLAS_STATUS_INVALID_VALUE);
  REQUIRE(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &t, 4) == kOk);
  std::int32_t got = -1;
  std::size_t written = 0;
  CHECK(cublasLtMatmulDescGetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, nullptr, 0, &written) == kOk);
  CHECK(written == 4);
  CHECK(cublasLtMatmulDescGetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &got, 4, &written) == kOk);
  CHECK(got == CUBLAS_OP_T);
  std::int32_t compute = -1;
  CHECK(cublasLtMatmulDescGetAttribute(desc.d, CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, &compute, 4, nullptr) == kOk);
  CHECK(compute == CUBLAS_COMPUTE_32F);
  const void* scale_ptr = nullptr;  // fp8 scaling: not modelled, refused rather than ignored
  CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &scale_ptr, sizeof(scale_ptr)) ==
        CUBLAS_STATUS_NOT_SUPPORTED);

  // Descriptors in caller-provided storage; a zeroed one was never initialised.
  cublasLtMatrixLayoutOpaque_t storage{};
  CHECK(set_layout(&storage, CUBLASLT_MATRIX_LAYOUT_LD, i64{4}) == CUBLAS_STATUS_INVALID_VALUE);
  REQUIRE(cublasLtMatrixLayoutInit(&storage, CUDA_R_16BF, 3, 5, 4) == kOk);
  std::uint64_t cols = 0;
  CHECK(cublasLtMatrixLayoutGetAttribute(&storage, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof(cols), nullptr) == kOk);
  CHECK(cols == 5);
  cublasLtMatmulDescOpaque_t dstore{};
  CHECK(cublasLtMatmulDescInit(&dstore, CUBLAS_COMPUTE_64F, CUDA_R_64F) == kOk);
  cublasLtMatmulPreferenceOpaque_t pstore{};
  CHECK(cublasLtMatmulPreferenceInit(&pstore) == kOk);
  std::uint64_t ws = 1;
  CHECK(cublasLtMatmulPreferenceGetAttribute(&pstore, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws),
                                             nullptr) == kOk);
  CHECK(ws == 0);  // documented default: no workspace
}

TEST_CASE("cuBLAS status names and descriptions", "[emu]") {
  for (cublasStatus_t s : {CUBLAS_STATUS_SUCCESS, CUBLAS_STATUS_NOT_INITIALIZED, CUBLAS_STATUS_ALLOC_FAILED,
                           CUBLAS_STATUS_INVALID_VALUE, CUBLAS_STATUS_ARCH_MISMATCH, CUBLAS_STATUS_MAPPING_ERROR,
                           CUBLAS_STATUS_EXECUTION_FAILED, CUBLAS_STATUS_INTERNAL_ERROR, CUBLAS_STATUS_NOT_SUPPORTED,
                           CUBLAS_STATUS_LICENSE_ERROR}) {
    INFO("status " << static_cast<int>(s));
    REQUIRE(cublasGetStatusName(s) != nullptr);
    CHECK(std::string(cublasGetStatusName(s)).rfind("CUBLAS_STATUS_", 0) == 0);
    CHECK(std::string(cublasGetStatusString(s)).size() > 5);
    CHECK(std::string(cublasLtGetStatusName(s)) == cublasGetStatusName(s));
  }
  CHECK(std::string(cublasGetStatusName(CUBLAS_STATUS_INVALID_VALUE)) == "CUBLAS_STATUS_INVALID_VALUE");
  CHECK(std::string(cublasGetStatusName(static_cast<cublasStatus_t>(9999))) == "CUBLAS_STATUS_UNKNOWN");
}

TEST_CASE("cuBLASLt stand-in: cublasLtMatmul runs in stream order, after earlier work", "[emu]") {
  Handle h;
  Desc desc(CUBLAS_COMPUTE_32F, CUDA_R_32F);
  Layout l(CUDA_R_32F, 2, 2, 2);
  std::vector<float> a(4, 0.0f), b = {1, 0, 0, 1}, d(4, -1.0f);  // B = identity: D = A
  // Earlier work on the stream holds it until the test opens the gate, then writes A.
  StreamGate gate;
  float* ap = a.data();
  REQUIRE(gate.hold([ap] { for (int i = 0; i < 4; ++i) ap[i] = static_cast<float>(i + 1); }) == cudaSuccess);
  const float alpha = 1, beta = 0;
  REQUIRE(cublasLtMatmul(h.h, desc.d, &alpha, a.data(), l.l, b.data(), l.l, &beta, d.data(), l.l, d.data(), l.l,
                         nullptr, nullptr, 0, nullptr) == kOk);
  CHECK(d == std::vector<float>(4, -1.0f));  // queued behind the gate, not computed on the call
  gate.open();
  device_sync();
  CHECK(d == std::vector<float>{1, 2, 3, 4});
}
