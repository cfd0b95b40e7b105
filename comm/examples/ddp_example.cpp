#include <ciuic/ciuic.h>
#include <ciuic/comm/comm.h>

using namespace ciuic;

// The model of PyTorch's DDP tutorial: Linear(10, 10), ReLU, Linear(10, 5).
struct ToyModel : nn::Module {
  std::shared_ptr<nn::Linear> net1, net2;
  ToyModel() : Module("ToyModel") {
    net1 = register_module("net1", std::make_shared<nn::Linear>(10, 10));
    net2 = register_module("net2", std::make_shared<nn::Linear>(10, 5));
  }
  Tensor forward(const Tensor& x) override { return net2->forward(relu(net1->forward(x))); }
};

int main() {
  try {
    // RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT come from ciuic-launch (or srun, mpirun).
    auto comm = comm::init_process_group(comm::Backend::gloo);
    const int rank = comm->rank(), world = comm->size();
    manual_seed(rank);                              // each rank starts differently...
    auto model = std::make_shared<ToyModel>();
    comm::BucketedReducer ddp(model, comm);         // ...and the reducer broadcasts rank 0's weights
    optim::SGD opt(model->parameters(), optim::SGDOptions(0.01).momentum(0.9));

    Generator data(1234 + static_cast<std::uint64_t>(rank));  // this rank's shard of the data
    Tensor x = randn({20, 10}, {}, &data), y = x.narrow(1, 0, 5) * 2.0;  // learn y = 2 * x[:, :5]
    double first = 0, last = 0;
    for (int step = 0; step < 300; ++step) {
      opt.zero_grad();
      Tensor loss = mse_loss(ddp.forward(x), y);
      loss.backward();                              // gradients are averaged across ranks here
      opt.step();                                   // the same step on every rank
      if (step == 0) first = loss.item();
      last = loss.item();
    }
    std::printf("rank %d of %d: loss %.4f -> %.4f\n", rank, world, first, last);
    return last < first / 4 ? 0 : 1;  // it learned
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
