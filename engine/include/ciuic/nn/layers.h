// Standard layers. Each is a Module with public tensor members (weight, bias,
// running_mean, ...) that are the registered tensors, and a single-input
// forward. Parameters are created as f32 on the CPU with PyTorch's default
// initialisation (from gen, or the default generator); call to() to convert.
//
//   auto net = std::make_shared<nn::Sequential>(
//       std::make_shared<nn::Linear>(4, 16), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(16, 2));
//   Tensor y = net->forward(x);
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ciuic/nn/module.h"
#include "ciuic/ops.h"

namespace ciuic::nn {

// ---------------------------------------------------------------- linear and embedding
// y = x W^T + b. weight (out, in) and bias (out) ~ U(-1/sqrt(in), 1/sqrt(in)).
class Linear : public Module {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true, Generator* gen = nullptr);
  // x (..., in) -> (..., out)
  Tensor forward(const Tensor& x) override;
  void reset_parameters(Generator* gen = nullptr);
  std::string extra_repr() const override;

  std::int64_t in_features, out_features;
  Tensor weight;  // (out, in)
  Tensor bias;    // (out), undefined without bias
};

// A lookup table: weight (num_embeddings, embedding_dim) ~ N(0, 1).
class Embedding : public Module {
 public:
  Embedding(std::int64_t num_embeddings, std::int64_t embedding_dim, Generator* gen = nullptr);
  // indices (any shape, i32/i64) -> (indices..., embedding_dim)
  Tensor forward(const Tensor& indices) override;
  void reset_parameters(Generator* gen = nullptr);
  std::string extra_repr() const override;

  std::int64_t num_embeddings, embedding_dim;
  Tensor weight;
};

// ---------------------------------------------------------------- normalisation
// Normalises over the trailing dims normalized_shape; weight ones, bias zeros.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true);
  explicit LayerNorm(std::int64_t dim, double eps = 1e-5, bool elementwise_affine = true)
      : LayerNorm(Shape{dim}, eps, elementwise_affine) {}
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  Shape normalized_shape;
  double eps;
  bool elementwise_affine;
  Tensor weight;  // normalized_shape, undefined without affine
  Tensor bias;
};

// x (N, C, H, W). Training: batch statistics, running_mean/var updated in place
// with momentum (running = (1 - momentum) running + momentum batch, unbiased
// var) and num_batches_tracked incremented; eval: running statistics.
// Without track_running_stats there are no running buffers and batch
// statistics are used in both modes.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(std::int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true,
                       bool track_running_stats = true);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  std::int64_t num_features;
  double eps, momentum;
  bool affine, track_running_stats;
  Tensor weight, bias;                 // (C): ones, zeros; undefined without affine
  Tensor running_mean, running_var;    // (C): zeros, ones; undefined without tracking
  Tensor num_batches_tracked;          // i64 scalar
};

// ---------------------------------------------------------------- activations and dropout
class ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override { return relu(x); }
};

// Exact (erf) GELU by default, as in PyTorch; GeluApprox::tanh for the tanh form.
class GELU : public Module {
 public:
  explicit GELU(GeluApprox approximate = GeluApprox::none) : Module("GELU"), approximate(approximate) {}
  Tensor forward(const Tensor& x) override { return gelu(x, approximate); }
  std::string extra_repr() const override;
  GeluApprox approximate;
};

class SiLU : public Module {
 public:
  SiLU() : Module("SiLU") {}
  Tensor forward(const Tensor& x) override { return silu(x); }
};

class Tanh : public Module {
 public:
  Tanh() : Module("Tanh") {}
  Tensor forward(const Tensor& x) override { return tanh(x); }
};

// ---- more activations (ops.h "unary math and activations"; printing in nn/activation_extra.cpp) ----
class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : Module("LeakyReLU"), negative_slope(negative_slope) {}
  Tensor forward(const Tensor& x) override { return leaky_relu(x, negative_slope); }
  std::string extra_repr() const override;
  double negative_slope;
};

class ELU : public Module {
 public:
  explicit ELU(double alpha = 1.0) : Module("ELU"), alpha(alpha) {}
  Tensor forward(const Tensor& x) override { return elu(x, alpha); }
  std::string extra_repr() const override;
  double alpha;
};

class Softplus : public Module {
 public:
  explicit Softplus(double beta = 1.0, double threshold = 20.0) : Module("Softplus"), beta(beta), threshold(threshold) {}
  Tensor forward(const Tensor& x) override { return softplus(x, beta, threshold); }
  std::string extra_repr() const override;
  double beta, threshold;
};

class Hardtanh : public Module {
 public:
  explicit Hardtanh(double min_val = -1.0, double max_val = 1.0) : Module("Hardtanh"), min_val(min_val), max_val(max_val) {}
  Tensor forward(const Tensor& x) override { return hardtanh(x, min_val, max_val); }
  std::string extra_repr() const override;
  double min_val, max_val;
};

class LogSigmoid : public Module {
 public:
  LogSigmoid() : Module("LogSigmoid") {}
  Tensor forward(const Tensor& x) override { return logsigmoid(x); }
};

class Mish : public Module {
 public:
  Mish() : Module("Mish") {}
  Tensor forward(const Tensor& x) override { return mish(x); }
};

class Identity : public Module {
 public:
  Identity() : Module("Identity") {}
  Tensor forward(const Tensor& x) override { return x; }
};

// Flattens dims [start_dim, end_dim] (default: all but the batch dim).
class Flatten : public Module {
 public:
  explicit Flatten(std::int64_t start_dim = 1, std::int64_t end_dim = -1)
      : Module("Flatten"), start_dim(start_dim), end_dim(end_dim) {}
  Tensor forward(const Tensor& x) override { return x.flatten(start_dim, end_dim); }
  std::string extra_repr() const override;
  std::int64_t start_dim, end_dim;
};

// Zeroes elements with probability p and scales the rest by 1/(1-p) while
// training; the identity in eval mode. p in [0, 1].
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  double p;
  Generator* gen;  // null: the default generator
};

// ---------------------------------------------------------------- convolution and pooling
// Conv2d hyperparameters with chained setters (distinct from ciuic::Conv2dOptions,
// the op's stride/padding/dilation/groups):
//   nn::Conv2dOptions(3, 16, 3).stride(2).padding(1).bias(false)
struct Conv2dOptions {
  Conv2dOptions(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_{kernel_size, kernel_size} {}
  Conv2dOptions& kernel_size(std::int64_t kh, std::int64_t kw) { kernel_[0] = kh; kernel_[1] = kw; return *this; }
  Conv2dOptions& stride(std::int64_t s) { return stride(s, s); }
  Conv2dOptions& stride(std::int64_t sh, std::int64_t sw) { stride_[0] = sh; stride_[1] = sw; return *this; }
  Conv2dOptions& padding(std::int64_t p) { return padding(p, p); }
  Conv2dOptions& padding(std::int64_t ph, std::int64_t pw) { padding_[0] = ph; padding_[1] = pw; return *this; }
  Conv2dOptions& dilation(std::int64_t d) { return dilation(d, d); }
  Conv2dOptions& dilation(std::int64_t dh, std::int64_t dw) { dilation_[0] = dh; dilation_[1] = dw; return *this; }
  Conv2dOptions& groups(std::int64_t g) { groups_ = g; return *this; }
  Conv2dOptions& bias(bool b) { bias_ = b; return *this; }

  std::int64_t in_channels_, out_channels_;
  std::int64_t kernel_[2];
  std::int64_t stride_[2] = {1, 1};
  std::int64_t padding_[2] = {0, 0};
  std::int64_t dilation_[2] = {1, 1};
  std::int64_t groups_ = 1;
  bool bias_ = true;
};

// weight (out, in/groups, kh, kw) and bias (out) ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
// fan_in = in/groups * kh * kw.
class Conv2d : public Module {
 public:
  explicit Conv2d(const Conv2dOptions& options, Generator* gen = nullptr);
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size, std::int64_t stride = 1,
         std::int64_t padding = 0, std::int64_t dilation = 1, std::int64_t groups = 1, bool bias = true,
         Generator* gen = nullptr);
  // x (N, in, H, W) -> (N, out, H', W')
  Tensor forward(const Tensor& x) override;
  void reset_parameters(Generator* gen = nullptr);
  std::string extra_repr() const override;

  Conv2dOptions options;
  Tensor weight;
  Tensor bias;  // undefined without bias
};

// stride 0 means stride = kernel_size.
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(std::int64_t kernel_size, std::int64_t stride = 0, std::int64_t padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  std::int64_t kernel_size, stride, padding;
};

// ---------------------------------------------------------------- containers
// Children registered as "0", "1", ...; forward feeds each one's output to the next.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  template <typename... Ms>
  explicit Sequential(std::shared_ptr<Ms>... modules) : Module("Sequential") {
    (push_back(std::move(modules)), ...);
  }
  explicit Sequential(const std::vector<std::shared_ptr<Module>>& modules);

  // Appends and registers module under the next index; returns it.
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    register_module(std::to_string(modules_.size()), module);
    modules_.push_back(module);
    return module;
  }

  Tensor forward(const Tensor& x) override;

  std::size_t size() const { return modules_.size(); }
  bool empty() const { return modules_.empty(); }
  // The i-th module; IndexError out of range.
  const std::shared_ptr<Module>& operator[](std::size_t i) const;
  // The i-th module as M; ValueError when it is not an M.
  template <typename M>
  std::shared_ptr<M> at(std::size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    CIUIC_CHECK(m != nullptr, ValueError, "Sequential::at", "module ", i, " is a ", (*this)[i]->type_name(),
                "; expected the requested type");
    return m;
  }
  std::vector<std::shared_ptr<Module>>::const_iterator begin() const { return modules_.begin(); }
  std::vector<std::shared_ptr<Module>>::const_iterator end() const { return modules_.end(); }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

}  // namespace ciuic::nn
