// ModuleList, ModuleDict, CheckpointedSequence as a Module, forward hooks,
// non-persistent buffers, apply / named_modules / zero_grad / train, and
// OrderedDict access by name and position.
#include "ciuic/ciuic.h"
#include "test_util.h"

using namespace ciuic;

namespace {
struct Block : nn::Module {
  std::shared_ptr<nn::Linear> fc;
  explicit Block(Generator* g) : Module("Block") { fc = register_module("fc", std::make_shared<nn::Linear>(4, 4, true, g)); }
  Tensor forward(const Tensor& x) override { return x + tanh(fc->forward(x)); }
};
}  // namespace

TEST_CASE("ModuleList registers its modules and iterates them", "[api][nn]") {
  Generator g{1, 0};
  auto list = std::make_shared<nn::ModuleList>();
  for (int i = 0; i < 3; ++i) list->push_back(std::make_shared<Block>(&g));
  CHECK(list->size() == 3);
  CHECK(list->parameters().size() == 6);
  CHECK(list->named_parameters().keys()[2] == "1.fc.weight");
  Tensor x = randn({2, 4}), h = x;
  for (auto& m : *list) h = (*m)(h);
  CHECK(h.shape() == Shape{2, 4});
  CHECK(list->at<Block>(1)->fc->in_features == 4);
  CHECK_THROWS_AS(list->at<nn::Linear>(0), ValueError);
  CHECK_THROWS_WITH_ALL((*list)[3], IndexError, "ModuleList", "3");
  CHECK_THROWS_WITH_ALL(list->forward(x), NotImplementedError, "ModuleList");
  list->extend({std::make_shared<nn::ReLU>()});
  CHECK(list->size() == 4);
  list->eval();
  CHECK_FALSE(list->at<Block>(0)->fc->is_training());
}

TEST_CASE("ModuleDict by key, in insertion order", "[api][nn]") {
  nn::ModuleDict d({{"enc", std::make_shared<nn::Linear>(3, 2)}, {"act", std::make_shared<nn::ReLU>()}});
  d.insert("dec", std::make_shared<nn::Linear>(2, 3));
  CHECK(d.keys() == std::vector<std::string>{"enc", "act", "dec"});
  CHECK(d.contains("act"));
  CHECK(d.at<nn::Linear>("dec")->out_features == 3);
  CHECK(d.state_dict().keys() == std::vector<std::string>{"enc.weight", "enc.bias", "dec.weight", "dec.bias"});
  Tensor y = (*d["dec"])((*d["act"])((*d["enc"])(randn({5, 3}))));
  CHECK(y.shape() == Shape{5, 3});
  CHECK_THROWS_WITH_ALL(d["nope"], IndexError, "nope", "enc");
  CHECK_THROWS_AS(d.insert("enc", std::make_shared<nn::ReLU>()), ValueError);
}

TEST_CASE("CheckpointedSequence is a drop-in Module for a Sequential or ModuleList", "[api][nn][checkpoint]") {
  auto build = [] {
    Generator g{5, 0};
    auto seq = std::make_shared<nn::Sequential>();
    for (int i = 0; i < 4; ++i) seq->push_back(std::make_shared<Block>(&g));
    return seq;
  };
  auto plain = build();
  auto ckpt = std::make_shared<CheckpointedSequence>(build(), CheckpointPolicy::every_block());
  CHECK(ckpt->parameters().size() == plain->parameters().size());
  CHECK(ckpt->state_dict().keys() == plain->state_dict().keys());  // same names: "0.fc.weight", ...
  ckpt->load_state_dict(plain->state_dict());
  Tensor x = randn({3, 4});
  Tensor lp = sum((*plain)(x) * (*plain)(x)), lc = sum((*ckpt)(x) * (*ckpt)(x));
  CHECK(lp.item() == lc.item());
  lp.backward();
  lc.backward();
  auto pp = plain->parameters(), pc = ckpt->parameters();
  for (std::size_t i = 0; i < pp.size(); ++i) CHECK(equal(pp[i].grad(), pc[i].grad()));
  // an optimizer over the checkpointed model's parameters trains it
  optim::SGD opt(ckpt->parameters(), optim::SGDOptions(0.1));
  opt.step();
  CHECK_FALSE(equal(ckpt->parameters()[0], plain->parameters()[0]));
  // from a ModuleList
  Generator g{6, 0};
  auto list = std::make_shared<nn::ModuleList>(std::make_shared<Block>(&g), std::make_shared<Block>(&g));
  CheckpointedSequence cl(list, CheckpointPolicy::every_kth(2));
  CHECK(cl.named_parameters().keys()[0] == "0.fc.weight");
  CHECK(cl(x).shape() == Shape{3, 4});
  cl.eval();
  CHECK_FALSE(list->at<Block>(1)->fc->is_training());
}

TEST_CASE("forward pre- and post-hooks run around operator()", "[api][nn]") {
  nn::Linear lin(3, 3);
  int pre_calls = 0, post_calls = 0;
  auto h1 = lin.register_forward_pre_hook([&](nn::Module& m, const Tensor& in) -> std::optional<Tensor> {
    ++pre_calls;
    CHECK(m.type_name() == "Linear");
    return in * 0.0;  // replaces the input
  });
  auto h2 = lin.register_forward_hook([&](nn::Module&, const Tensor& in, const Tensor& out) -> std::optional<Tensor> {
    ++post_calls;
    if (post_calls == 1) CHECK(equal(in, zeros({2, 3})));  // the pre-hook's replacement
    CHECK(out.shape() == Shape{2, 3});
    return std::nullopt;
  });
  (void)h2;
  Tensor x = randn({2, 3});
  Tensor y = lin(x);
  CHECK(pre_calls == 1);
  CHECK(post_calls == 1);
  CHECK(equal(y, lin.forward(zeros({2, 3}))));  // forward() itself runs no hooks
  CHECK(pre_calls == 1);
  CHECK(lin.remove_hook(h1));
  CHECK_FALSE(lin.remove_hook(h1));
  CHECK(equal(lin(x), lin.forward(x)));
  // hooks fire inside a Sequential
  auto seq = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(3, 3), std::make_shared<nn::ReLU>());
  int seen = 0;
  seq->at<nn::ReLU>(1)->register_forward_hook([&](nn::Module&, const Tensor&, const Tensor& out) -> std::optional<Tensor> {
    ++seen;
    return out + 1.0;
  });
  Tensor z = (*seq)(x);
  CHECK(seen == 1);
  CHECK(allclose(z, relu(seq->at<nn::Linear>(0)->forward(x)) + 1.0));
}

TEST_CASE("non-persistent buffers, apply, named_modules, zero_grad and recursive train", "[api][nn]") {
  struct Net : nn::Module {
    std::shared_ptr<nn::Sequential> body;
    Tensor mask, steps;
    Net() : Module("Net") {
      body = register_module("body", std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(2, 2),
                                                                      std::make_shared<nn::Dropout>(0.5)));
      mask = register_buffer("mask", ones({2, 2}), /*persistent=*/false);
      steps = register_buffer("steps", zeros({1}, DType::i64));
    }
  } net;
  CHECK(net.buffers().size() == 2);
  CHECK(net.state_dict().keys() == std::vector<std::string>{"steps", "body.0.weight", "body.0.bias"});
  net.load_state_dict(net.state_dict());  // strict: the non-persistent buffer is not expected
  net.to(DType::f64);
  CHECK(net.mask.dtype() == DType::f64);   // still converted with the module
  CHECK(net.steps.dtype() == DType::i64);
  CHECK(net.named_modules().keys() == std::vector<std::string>{"body", "body.0", "body.1"});
  std::vector<std::string> order;
  net.apply([&](nn::Module& m) { order.push_back(m.type_name()); });
  CHECK(order == std::vector<std::string>{"Linear", "Dropout", "Sequential", "Net"});
  net.eval();
  for (auto& [name, m] : net.named_modules()) CHECK_FALSE(m->is_training());
  net.train();
  CHECK(net.body->at<nn::Dropout>(1)->is_training());
  sum(net.body->forward(ones({1, 2}, DType::f64))).backward();
  Tensor w = net.body->at<nn::Linear>(0)->weight;
  REQUIRE(w.grad().defined());
  net.zero_grad(/*set_to_none=*/false);
  REQUIRE(w.grad().defined());
  CHECK(equal(w.grad(), zeros({2, 2}, DType::f64)));
  net.zero_grad();
  CHECK_FALSE(w.grad().defined());
}

TEST_CASE("OrderedDict by name and by position; items() of a temporary is safe", "[api][nn]") {
  nn::Linear lin(3, 2);
  auto params = lin.named_parameters();
  CHECK(params["weight"].same(lin.weight));
  CHECK(params[std::size_t{1}].same(lin.bias));
  CHECK(params[1].same(lin.bias));
  CHECK_THROWS_WITH_ALL(params["w"], IndexError, "\"w\"", "weight");
  CHECK_THROWS_WITH_ALL(params[2], IndexError, "position 2");
  std::vector<std::string> names;
  for (const auto& [name, t] : lin.named_parameters().items()) {  // the temporary's items are returned by value
    names.push_back(name);
    CHECK(t.defined());
  }
  CHECK(names == std::vector<std::string>{"weight", "bias"});
  auto sd = lin.state_dict();
  sd["bias"].fill_(0.0);  // mutable access by name (a detached handle: writes the module's bias)
  CHECK(equal(lin.bias, zeros({2})));
}
