// nn: Module registration and traversal, modes, conversion, state dicts, the
// standard layers and the initialisers.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {

// A module with its own parameter and buffer and a child, to test nesting.
struct Block : nn::Module {
  std::shared_ptr<nn::Linear> fc;
  Tensor scale, count;
  Block(std::int64_t in, std::int64_t out) : Module("Block") {
    fc = register_module("fc", std::make_shared<nn::Linear>(in, out));
    scale = register_parameter("scale", ones({out}));
    count = register_buffer("count", zeros({}, DType::i64));
  }
  Tensor forward(const Tensor& x) override { return fc->forward(x) * scale; }
};

std::shared_ptr<nn::Sequential> make_net() {
  return std::make_shared<nn::Sequential>(std::make_shared<Block>(3, 4), std::make_shared<nn::ReLU>(),
                                          std::make_shared<nn::Linear>(4, 2), std::make_shared<nn::BatchNorm2d>(2));
}

std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }

bool all_equal(const std::vector<double>& v, double x) {
  return std::all_of(v.begin(), v.end(), [x](double e) { return e == x; });
}

double mean_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }
double std_of(const std::vector<double>& v) {
  double m = mean_of(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size()));
}

}  // namespace

TEST_CASE("named_parameters, buffers and modules use dotted names in registration order", "[nn]") {
  manual_seed(1);
  auto net = make_net();
  CHECK(net->named_parameters().keys() ==
        std::vector<std::string>{"0.scale", "0.fc.weight", "0.fc.bias", "2.weight", "2.bias", "3.weight", "3.bias"});
  CHECK(net->named_buffers().keys() ==
        std::vector<std::string>{"0.count", "3.running_mean", "3.running_var", "3.num_batches_tracked"});
  CHECK(net->named_modules().keys() == std::vector<std::string>{"0", "0.fc", "1", "2", "3"});
  CHECK(net->named_children().keys() == std::vector<std::string>{"0", "1", "2", "3"});
  CHECK(net->children().size() == 4);
  // A module's own entries come before its children's (as in PyTorch).
  auto block = net->at<Block>(0);
  CHECK(block->named_parameters().keys() == std::vector<std::string>{"scale", "fc.weight", "fc.bias"});
  CHECK(block->named_parameters(false).keys() == std::vector<std::string>{"scale"});
  CHECK(block->named_buffers().keys() == std::vector<std::string>{"count"});
  // The registry holds the same tensors as the members, as requires-grad leaves.
  CHECK(net->named_parameters().at("0.fc.weight").same(block->fc->weight));
  CHECK(net->named_buffers().at("3.running_var").same(net->at<nn::BatchNorm2d>(3)->running_var));
  for (const Tensor& p : net->parameters()) {
    CHECK(p.requires_grad());
    CHECK(p.is_leaf());
  }
  for (const Tensor& b : net->buffers()) CHECK_FALSE(b.requires_grad());
  CHECK(net->parameters().size() == 7);
  CHECK(net->parameters(false).empty());
}

TEST_CASE("a tensor registered twice (tied weights) is listed once by parameters()", "[nn]") {
  auto emb = std::make_shared<nn::Embedding>(5, 3);
  nn::Module tied;
  tied.register_parameter("a", emb->weight);
  tied.register_module("emb", emb);
  CHECK(tied.named_parameters().keys() == std::vector<std::string>{"a"});
  CHECK(tied.state_dict().keys() == std::vector<std::string>{"a", "emb.weight"});
}

TEST_CASE("registration rejects bad names and tensors", "[nn]") {
  nn::Module m("Custom");
  m.register_parameter("w", zeros({2}));
  CHECK_THROWS_WITH_ALL(m.register_parameter("w", zeros({2})), ValueError, "register_parameter", "\"w\"",
                        "already a parameter", "Custom");
  CHECK_THROWS_WITH_ALL(m.register_buffer("w", zeros({2})), ValueError, "register_buffer", "already a parameter");
  CHECK_THROWS_WITH_ALL(m.register_module("w", std::make_shared<nn::ReLU>()), ValueError, "register_module",
                        "already a parameter");
  CHECK_THROWS_WITH_ALL(m.register_parameter("a.b", zeros({2})), ValueError, "contains '.'");
  CHECK_THROWS_WITH_ALL(m.register_parameter("", zeros({2})), ValueError, "empty name");
  CHECK_THROWS_WITH_ALL(m.register_parameter("u", Tensor()), ValueError, "undefined");
  CHECK_THROWS_WITH_ALL(m.register_parameter("i", zeros({2}, DType::i64)), DTypeError, "\"i\"", "i64[2]",
                        "floating");
  CHECK_THROWS_WITH_ALL(m.register_module("n", std::shared_ptr<nn::ReLU>()), ValueError, "null");
  // A non-leaf becomes a detached leaf; requires_grad can be off.
  Tensor base = ones({2}).requires_grad_();
  Tensor p = m.register_parameter("derived", base * 2.0);
  CHECK(p.is_leaf());
  CHECK(p.requires_grad());
  Tensor frozen = m.register_parameter("frozen", zeros({1}), false);
  CHECK_FALSE(frozen.requires_grad());
  CHECK_THROWS_WITH_ALL(m.forward(zeros({1})), NotImplementedError, "Custom", "forward");
}

TEST_CASE("train and eval propagate to every descendant", "[nn]") {
  auto net = make_net();
  CHECK(net->is_training());
  net->eval();
  CHECK_FALSE(net->is_training());
  for (const auto& [name, m] : net->named_modules()) CHECK_FALSE(m->is_training());
  net->at<Block>(0)->train();
  CHECK(net->at<Block>(0)->fc->is_training());
  CHECK_FALSE(net->is_training());
  net->train();
  for (const auto& [name, m] : net->named_modules()) CHECK(m->is_training());

  // Dropout follows the mode.
  manual_seed(3);
  nn::Dropout drop(0.5);
  Tensor x = ones({1000});
  Tensor y = drop.forward(x);
  double zeros_seen = 0;
  for (double v : values(y)) zeros_seen += v == 0.0;
  CHECK(zeros_seen > 400);
  CHECK(zeros_seen < 600);
  drop.eval();
  CHECK(values(drop.forward(x)) == values(x));
  CHECK_THROWS_WITH_ALL(nn::Dropout(1.5), ValueError, "Dropout", "1.5");
}

TEST_CASE("to(DType) converts parameters and floating buffers in place", "[nn]") {
  manual_seed(4);
  auto net = make_net();
  auto block = net->at<Block>(0);
  Tensor w = block->fc->weight;
  std::vector<double> before = values(w);
  w.set_grad(ones(w.shape()));
  net->to(DType::f64);
  // Same handles, new dtype, still requires-grad leaves; values and grads converted.
  CHECK(w.same(block->fc->weight));
  CHECK(w.same(net->named_parameters().at("0.fc.weight")));
  CHECK(w.dtype() == DType::f64);
  CHECK(w.requires_grad());
  CHECK(w.is_leaf());
  CHECK(values(w) == before);
  CHECK(w.grad().dtype() == DType::f64);
  for (const Tensor& p : net->parameters()) CHECK(p.dtype() == DType::f64);
  auto bn = net->at<nn::BatchNorm2d>(3);
  CHECK(bn->running_mean.dtype() == DType::f64);
  CHECK(bn->num_batches_tracked.dtype() == DType::i64);
  CHECK(block->count.dtype() == DType::i64);
  // The converted module computes and differentiates in f64.
  w.zero_grad();
  Tensor y = block->forward(ones({2, 3}, DType::f64));
  CHECK(y.dtype() == DType::f64);
  sum(y).backward();
  REQUIRE(w.grad().defined());
  CHECK(w.grad().dtype() == DType::f64);
  // Back to f32; to(Device::cpu()) is a no-op.
  net->to(Device::cpu()).to(DType::f32);
  CHECK(w.dtype() == DType::f32);
  CHECK_THROWS_WITH_ALL(net->to(DType::i32), DTypeError, "Module::to", "i32", "floating");
}

TEST_CASE("state_dict round trip is bit-exact into a fresh module", "[nn]") {
  manual_seed(5);
  auto a = make_net();
  // Make the buffers non-trivial: one training step of the batch norm.
  a->at<nn::BatchNorm2d>(3)->forward(randn({4, 2, 3, 3}));
  nn::StateDict sd = a->state_dict();
  CHECK(sd.keys() == std::vector<std::string>{"0.scale", "0.count", "0.fc.weight", "0.fc.bias", "2.weight",
                                              "2.bias", "3.weight", "3.bias", "3.running_mean", "3.running_var",
                                              "3.num_batches_tracked"});
  for (const auto& [k, t] : sd) CHECK_FALSE(t.requires_grad());
  CHECK(sd.at("3.num_batches_tracked").item() == 1.0);

  manual_seed(6);
  auto b = make_net();
  CHECK(values(b->named_parameters().at("2.weight")) != values(sd.at("2.weight")));
  Tensor handle = b->at<nn::Linear>(2)->weight;
  b->load_state_dict(sd);
  for (const auto& [k, t] : b->state_dict()) {
    INFO(k);
    CHECK(values(t) == values(sd.at(k)));
    CHECK(t.dtype() == sd.at(k).dtype());
  }
  CHECK(handle.same(b->at<nn::Linear>(2)->weight));
  CHECK(handle.requires_grad());

  // Loading converts dtype: an f32 dict into an f64 module.
  manual_seed(7);
  auto c = make_net();
  c->to(DType::f64);
  c->load_state_dict(sd);
  CHECK(c->at<nn::Linear>(2)->weight.dtype() == DType::f64);
  std::vector<double> want = values(sd.at("2.weight"));
  CHECK(values(c->at<nn::Linear>(2)->weight) == want);

  // The dict shares storage with the module (a later update shows), clone() snapshots.
  Tensor snap = sd.at("2.bias").clone();
  {
    NoGradGuard ng;
    a->at<nn::Linear>(2)->bias.fill_(7.0);
  }
  CHECK(values(sd.at("2.bias")) == std::vector<double>{7.0, 7.0});
  CHECK(values(snap) != std::vector<double>{7.0, 7.0});
}

TEST_CASE("load_state_dict reports missing, unexpected and mis-shaped entries", "[nn]") {
  manual_seed(8);
  auto net = make_net();
  nn::StateDict sd = net->state_dict();
  std::vector<double> before = values(net->at<nn::Linear>(2)->weight);

  nn::StateDict missing = sd;
  missing.erase("2.bias");
  missing.erase("3.running_var");
  CHECK_THROWS_WITH_ALL(net->load_state_dict(missing), ValueError, "load_state_dict", "Sequential",
                        "missing keys [\"2.bias\", \"3.running_var\"]");

  nn::StateDict extra = sd;
  extra.insert("2.gamma", zeros({2}));
  extra.insert("9.weight", zeros({2}));
  CHECK_THROWS_WITH_ALL(net->load_state_dict(extra), ValueError, "unexpected keys [\"2.gamma\", \"9.weight\"]");

  nn::StateDict both = missing;
  both.insert("zzz", zeros({1}));
  CHECK_THROWS_WITH_ALL(net->load_state_dict(both), ValueError, "missing keys", "\"2.bias\"", "unexpected keys",
                        "\"zzz\"");

  nn::StateDict bad = sd;
  bad.at("2.weight") = ones({2, 5});
  bad.at("2.bias") = ones({2}) * 9.0;
  CHECK_THROWS_WITH_ALL(net->load_state_dict(bad), ShapeError, "load_state_dict", "\"2.weight\"", "[2, 5]",
                        "[2, 4]");
  // Nothing was copied by the failed load (the bias entry before the bad one included).
  CHECK(values(net->at<nn::Linear>(2)->weight) == before);
  CHECK(values(net->at<nn::Linear>(2)->bias) != std::vector<double>{9.0, 9.0});
  // Non-strict: loads the common keys, ignores the rest, still checks shapes.
  nn::StateDict partial;
  partial.insert("2.bias", full({2}, 3.0));
  partial.insert("other", zeros({1}));
  net->load_state_dict(partial, false);
  CHECK(values(net->at<nn::Linear>(2)->bias) == std::vector<double>{3.0, 3.0});
  CHECK(values(net->at<nn::Linear>(2)->weight) == before);
  nn::StateDict partial_bad;
  partial_bad.insert("2.bias", zeros({3}));
  CHECK_THROWS_WITH_ALL(net->load_state_dict(partial_bad, false), ShapeError, "\"2.bias\"", "[3]", "[2]");
  CHECK_THROWS_WITH_ALL(sd.at("nope"), IndexError, "nope", "0.fc.weight");
}

TEST_CASE("init helpers produce the documented statistics", "[nn]") {
  const std::int64_t n = 100000;
  Generator gen{42, 0};
  Tensor t = zeros({n}).requires_grad_();  // a parameter-like leaf: init must not record
  nn::init::normal_(t, 1.5, 2.0, &gen);
  CHECK(t.is_leaf());
  std::vector<double> v = values(t);
  CHECK(mean_of(v) == Approx(1.5).margin(0.03));
  CHECK(std_of(v) == Approx(2.0).epsilon(0.02));

  nn::init::uniform_(t, -3.0, 1.0, &gen);
  v = values(t);
  CHECK(*std::min_element(v.begin(), v.end()) >= -3.0);
  CHECK(*std::max_element(v.begin(), v.end()) < 1.0);
  CHECK(mean_of(v) == Approx(-1.0).margin(0.02));
  CHECK(std_of(v) == Approx(4.0 / std::sqrt(12.0)).epsilon(0.02));

  // Weights (out, in, kh, kw): fan_in = in * kh * kw, fan_out = out * kh * kw.
  Tensor w = zeros({100, 250, 2, 2}, DType::f64);
  CHECK(nn::init::calculate_fan_in_and_fan_out(w) == std::pair<std::int64_t, std::int64_t>{1000, 400});
  nn::init::xavier_uniform_(w, 2.0, &gen);
  v = values(w);
  double a = 2.0 * std::sqrt(6.0 / 1400.0);
  CHECK(*std::max_element(v.begin(), v.end()) <= a);
  CHECK(*std::min_element(v.begin(), v.end()) >= -a);
  CHECK(std_of(v) == Approx(a / std::sqrt(3.0)).epsilon(0.02));
  nn::init::xavier_normal_(w, 1.0, &gen);
  CHECK(std_of(values(w)) == Approx(std::sqrt(2.0 / 1400.0)).epsilon(0.02));
  nn::init::kaiming_normal_(w, 0.0, nn::init::FanMode::fan_out, nn::init::Nonlinearity::relu, &gen);
  CHECK(mean_of(values(w)) == Approx(0.0).margin(0.002));
  CHECK(std_of(values(w)) == Approx(std::sqrt(2.0 / 400.0)).epsilon(0.02));
  nn::init::kaiming_uniform_(w, 0.0, nn::init::FanMode::fan_in, nn::init::Nonlinearity::relu, &gen);
  v = values(w);
  double b = std::sqrt(3.0) * std::sqrt(2.0 / 1000.0);
  CHECK(*std::max_element(v.begin(), v.end()) <= b);
  CHECK(std_of(v) == Approx(std::sqrt(2.0 / 1000.0)).epsilon(0.02));
  // The default kaiming_uniform_(a = sqrt(5)) that Linear uses: bound 1/sqrt(fan_in).
  nn::init::kaiming_uniform_(w, std::sqrt(5.0), nn::init::FanMode::fan_in, nn::init::Nonlinearity::leaky_relu, &gen);
  v = values(w);
  CHECK(*std::max_element(v.begin(), v.end()) <= 1.0 / std::sqrt(1000.0));
  CHECK(*std::max_element(v.begin(), v.end()) > 0.99 / std::sqrt(1000.0));

  nn::init::constant_(t, 0.25);
  CHECK(all_equal(values(t), 0.25));
  nn::init::zeros_(t);
  CHECK(all_equal(values(t), 0.0));
  nn::init::ones_(w);
  CHECK(all_equal(values(w), 1.0));
  CHECK(values(w).size() == 100000);

  CHECK(nn::init::calculate_gain(nn::init::Nonlinearity::relu) == Approx(std::sqrt(2.0)));
  CHECK(nn::init::calculate_gain(nn::init::Nonlinearity::tanh) == Approx(5.0 / 3.0));
  CHECK(nn::init::calculate_gain(nn::init::Nonlinearity::linear) == 1.0);
  CHECK(nn::init::calculate_gain(nn::init::Nonlinearity::leaky_relu, 0.2) == Approx(std::sqrt(2.0 / 1.04)));

  // Determinism: a replayed generator gives the same values, independent of the target's strides.
  Generator g1{9, 0}, g2{9, 0};
  Tensor c = nn::init::normal_(zeros({3, 4}), 0, 1, &g1);
  Tensor nc = zeros({4, 3}).t();
  nn::init::normal_(nc, 0, 1, &g2);
  CHECK(values(c) == values(nc));
  // f16 targets are drawn in f32 and rounded.
  Tensor h = nn::init::uniform_(zeros({1000}, DType::f16), 0.5, 1.0, &gen);
  CHECK(h.dtype() == DType::f16);
  CHECK(mean_of(values(h)) == Approx(0.75).margin(0.02));

  CHECK_THROWS_WITH_ALL(nn::init::xavier_uniform_(zeros({5})), ValueError, "calculate_fan_in_and_fan_out", "[5]",
                        "2 dims");
  CHECK_THROWS_WITH_ALL(nn::init::normal_(zeros({5}, DType::i32)), DTypeError, "normal_", "i32");
  CHECK_THROWS_WITH_ALL(nn::init::normal_(zeros({5}), 0, -1), ValueError, "normal_", "std");
  CHECK_THROWS_WITH_ALL(nn::init::uniform_(zeros({5}), 1, 0), ValueError, "uniform_", "lo");
  CHECK_THROWS_WITH_ALL(nn::init::kaiming_uniform_(zeros({0, 0})), ValueError, "kaiming_uniform_", "fan");
}

TEST_CASE("Linear initialises like PyTorch and computes x W^T + b", "[nn]") {
  manual_seed(10);
  nn::Linear fc(50, 40);
  CHECK(fc.weight.shape() == Shape{40, 50});
  CHECK(fc.bias.shape() == Shape{40});
  const double bound = 1.0 / std::sqrt(50.0);
  for (const Tensor& p : {fc.weight, fc.bias})
    for (double v : values(p)) CHECK(std::abs(v) <= bound);
  CHECK(std_of(values(fc.weight)) == Approx(bound / std::sqrt(3.0)).epsilon(0.1));

  nn::Linear small(3, 2);
  small.to(DType::f64);
  Tensor x = uniform({4, 3}, -1, 1, DType::f64);
  std::vector<double> xv = values(x), w = values(small.weight), bv = values(small.bias), y = values(small.forward(x));
  for (int i = 0; i < 4; ++i)
    for (int o = 0; o < 2; ++o) {
      double want = bv[o];
      for (int k = 0; k < 3; ++k) want += xv[i * 3 + k] * w[o * 3 + k];
      CHECK(y[i * 2 + o] == Approx(want).epsilon(1e-12));
    }
  nn::Linear nobias(3, 2, false);
  CHECK_FALSE(nobias.bias.defined());
  CHECK(nobias.named_parameters().keys() == std::vector<std::string>{"weight"});
  CHECK(nobias.forward(zeros({5, 3})).shape() == Shape{5, 2});
  CHECK(nobias.forward(zeros({2, 5, 3})).shape() == Shape{2, 5, 2});
  CHECK_THROWS_WITH_ALL(nn::Linear(0, 3), ValueError, "Linear", "in_features 0");
  // The same generator state gives the same weights.
  Generator g1{3, 0}, g2{3, 0};
  CHECK(values(nn::Linear(4, 4, true, &g1).weight) == values(nn::Linear(4, 4, true, &g2).weight));
}

TEST_CASE("Sequential chains forward and indexes its modules", "[nn]") {
  manual_seed(11);
  auto l1 = std::make_shared<nn::Linear>(3, 5);
  auto l2 = std::make_shared<nn::Linear>(5, 2);
  nn::Sequential seq(l1, std::make_shared<nn::GELU>(), l2);
  Tensor x = randn({4, 3});
  CHECK(values(seq.forward(x)) == values(l2->forward(gelu(l1->forward(x), GeluApprox::none))));
  CHECK(values(seq(x)) == values(seq.forward(x)));
  CHECK(seq.size() == 3);
  CHECK(seq[0] == l1);
  CHECK(seq.at<nn::Linear>(2) == l2);
  CHECK_THROWS_WITH_ALL(seq.at<nn::Linear>(1), ValueError, "Sequential::at", "GELU");
  CHECK_THROWS_WITH_ALL(seq[3], IndexError, "Sequential", "index 3");

  nn::Sequential grown;
  auto r = grown.push_back(std::make_shared<nn::ReLU>());
  grown.push_back(std::make_shared<nn::Flatten>());
  CHECK(r->type_name() == "ReLU");
  CHECK(grown.named_children().keys() == std::vector<std::string>{"0", "1"});
  CHECK(values(grown.forward(full({2, 2, 2}, -1.0))) == std::vector<double>(8, 0.0));
  CHECK(grown.forward(zeros({2, 3, 4})).shape() == Shape{2, 12});

  // Gradients flow to every parameter through the chain.
  sum(seq.forward(x)).backward();
  for (const Tensor& p : seq.parameters()) CHECK(p.grad().defined());
  Tensor g0 = l1->weight.grad();
  seq.zero_grad(false);  // in place: same gradient tensors, now zeros
  CHECK(l1->weight.grad().same(g0));
  CHECK(all_equal(values(g0), 0.0));
  seq.zero_grad();
  for (const Tensor& p : seq.parameters()) CHECK_FALSE(p.grad().defined());

  nn::Sequential from_vec(std::vector<std::shared_ptr<nn::Module>>{std::make_shared<nn::Identity>(),
                                                                   std::make_shared<nn::Tanh>()});
  CHECK(from_vec.size() == 2);
  CHECK(seq.str() ==
        "Sequential(\n  (0): Linear(in_features=3, out_features=5, bias=true)\n  (1): GELU(approximate=none)\n"
        "  (2): Linear(in_features=5, out_features=2, bias=true)\n)");
}

TEST_CASE("Embedding, LayerNorm, Conv2d, BatchNorm2d and MaxPool2d modules", "[nn]") {
  manual_seed(12);
  nn::Embedding emb(10, 4);
  CHECK(emb.weight.shape() == Shape{10, 4});
  Tensor idx = from_vector<std::int64_t>({1, 3, 3, 9, 0, 2}, {2, 3});
  Tensor e = emb.forward(idx);
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(values(e.select(0, 0).select(0, 1)) == values(emb.weight.select(0, 3)));

  nn::LayerNorm ln(8);
  CHECK(ln.named_parameters().keys() == std::vector<std::string>{"weight", "bias"});
  Tensor y = ln.forward(randn({3, 8}) * 5.0 + 2.0);
  std::vector<double> row = values(y.select(0, 1));
  CHECK(mean_of(row) == Approx(0.0).margin(1e-5));
  CHECK(std_of(row) == Approx(1.0).epsilon(1e-3));
  nn::LayerNorm plain(Shape{2, 4}, 1e-6, false);
  CHECK(plain.parameters().empty());
  CHECK(plain.forward(randn({3, 2, 4})).shape() == Shape{3, 2, 4});
  CHECK_THROWS_WITH_ALL(nn::LayerNorm(4, 0.0), ValueError, "LayerNorm", "eps");

  nn::Conv2d conv(nn::Conv2dOptions(4, 6, 3).stride(2).padding(1).groups(2));
  CHECK(conv.weight.shape() == Shape{6, 2, 3, 3});
  const double bound = 1.0 / std::sqrt(2.0 * 9.0);
  for (double v : values(conv.weight)) CHECK(std::abs(v) <= bound);
  for (double v : values(conv.bias)) CHECK(std::abs(v) <= bound);
  CHECK(conv.forward(randn({2, 4, 7, 7})).shape() == Shape{2, 6, 4, 4});
  nn::Conv2d conv2(3, 5, 3, 1, 0, 1, 1, false);
  CHECK_FALSE(conv2.bias.defined());
  CHECK(conv2.forward(randn({1, 3, 5, 6})).shape() == Shape{1, 5, 3, 4});
  CHECK_THROWS_WITH_ALL(nn::Conv2d(3, 4, 3, 1, 0, 1, 2), ValueError, "Conv2d", "groups 2");
  CHECK(conv2.str() == "Conv2d(3, 5, kernel_size=(3, 3), stride=(1, 1), bias=false)");

  nn::BatchNorm2d bn(3);
  Tensor x = randn({4, 3, 2, 2}) * 2.0 + 1.0;
  Tensor out = bn.forward(x);
  CHECK(bn.num_batches_tracked.item() == 1.0);
  // running_mean = 0.9 * 0 + 0.1 * batch mean of channel 0.
  std::vector<double> ch0;
  for (int n = 0; n < 4; ++n)
    for (double v : values(x.select(0, n).select(0, 0))) ch0.push_back(v);
  CHECK(values(bn.running_mean)[0] == Approx(0.1 * mean_of(ch0)).epsilon(1e-5));
  CHECK(mean_of(values(out)) == Approx(0.0).margin(1e-5));
  bn.eval();
  Tensor ev = bn.forward(x);
  CHECK(bn.num_batches_tracked.item() == 1.0);  // eval does not count
  std::vector<double> rm = values(bn.running_mean), rv = values(bn.running_var);
  CHECK(values(ev)[0] == Approx((values(x)[0] - rm[0]) / std::sqrt(rv[0] + 1e-5)).epsilon(1e-4));
  CHECK_THROWS_WITH_ALL(bn.forward(randn({4, 3})), ShapeError, "BatchNorm2d", "4-D");
  CHECK_THROWS_WITH_ALL(bn.forward(randn({1, 2, 2, 2})), ShapeError, "BatchNorm2d", "2 channels", "expected 3");
  nn::BatchNorm2d untracked(3, 1e-5, 0.1, true, false);
  CHECK(untracked.buffers().empty());
  untracked.eval();
  CHECK(mean_of(values(untracked.forward(x))) == Approx(0.0).margin(1e-5));

  nn::MaxPool2d pool(2);
  Tensor p = pool.forward(arange(0, 16, 1, DType::f32).view({1, 1, 4, 4}));
  CHECK(values(p) == std::vector<double>{5, 7, 13, 15});
  CHECK(nn::MaxPool2d(3, 1, 1).forward(randn({1, 2, 5, 5})).shape() == Shape{1, 2, 5, 5});
}
