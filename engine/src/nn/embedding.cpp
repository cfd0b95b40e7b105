// nn::Embedding.
#include "ciuic/nn/init.h"
#include "ciuic/nn/layers.h"

namespace ciuic::nn {

Embedding::Embedding(std::int64_t num, std::int64_t dim, Generator* gen)
    : Module("Embedding"), num_embeddings(num), embedding_dim(dim) {
  CIUIC_CHECK(num > 0 && dim > 0, ValueError, "Embedding", "num_embeddings ", num, ", embedding_dim ", dim,
              "; expected both > 0");
  weight = register_parameter("weight", empty({num, dim}));
  reset_parameters(gen);
}

void Embedding::reset_parameters(Generator* gen) { init::normal_(weight, 0.0, 1.0, gen); }

Tensor Embedding::forward(const Tensor& indices) { return embedding(weight, indices); }

std::string Embedding::extra_repr() const { return detail::concat(num_embeddings, ", ", embedding_dim); }

}  // namespace ciuic::nn
