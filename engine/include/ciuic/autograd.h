// The tape. While grad mode is on, every op whose inputs need gradients records
// one Node: its backward closure (holding only what backward needs, saved with
// version numbers) and edges to the nodes that produced its inputs. Nodes are
// numbered in the order they were recorded; backward() runs the nodes reachable
// from the loss in reverse recording order, so the tape is the sequence of
// nodes, owned by the tensors they produced: an unused graph frees itself.
//
// Leaves (tensors made by the user with requires_grad) get one AccumulateGrad
// node each. It runs once all of the leaf's uses in this backward have sent
// their gradient, which is when the "gradient ready" hooks fire.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ciuic/tensor.h"

namespace ciuic {

// ---- grad mode ----
bool grad_mode_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;
 private:
  bool previous_;
};
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;
 private:
  bool previous_;
};

struct Node;

// Where a gradient goes: output `output_nr` of `node`. A null node: no gradient needed.
struct Edge {
  std::shared_ptr<Node> node;
  int output_nr = 0;
};

// The metadata of one output, to make a zero gradient for an output backward never reached.
struct OutputMeta {
  Shape shape;
  DType dtype;
  Device device;
};

using GradList = std::vector<Tensor>;
// grads_out: one per output (zeros for outputs that received nothing).
// Returns one gradient per input edge (undefined where none).
using BackwardFn = std::function<GradList(const GradList& grads_out)>;

struct Node {
  std::string name;                 // the op, for error messages
  std::uint64_t seq = 0;            // recording order
  std::vector<Edge> next;           // one per input of the op
  std::vector<OutputMeta> outputs;
  BackwardFn backward;              // reset after use unless retain_graph
  bool released = false;
  // Hooks on the gradient of output i of this node (register_hook on a non-leaf).
  std::vector<std::pair<int, std::function<Tensor(const Tensor&)>>> output_hooks;
  // AccumulateGrad nodes only: the leaf they write to (weak: the leaf owns this node).
  bool accumulator = false;
  std::weak_ptr<TensorImpl> leaf;
};

using GradHook = std::function<Tensor(const Tensor& grad)>;        // may return a replacement, or undefined
using ReadyHook = std::function<void(const Tensor& param)>;         // param.grad() is final

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;       // non-leaf: the node that produced this tensor
  int output_nr = 0;
  std::shared_ptr<Node> accumulator;   // leaf: created on first use by an op
  std::vector<GradHook> hooks;
  std::vector<ReadyHook> ready_hooks;
  bool retains_grad = false;           // non-leaf: Tensor::retain_grad() was called
};

// A tensor kept for backward: detached (no cycle through grad_fn) and stamped with
// the storage version at save time; unpack() throws if it was changed in place since.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  Tensor unpack(const char* op) const;
  bool defined() const { return tensor_.defined(); }
 private:
  Tensor tensor_;
  std::uint64_t version_ = 0;
};

// ---- recording (used by op implementations) ----
// True when grad mode is on and any input requires grad.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);
// While alive, ops record nothing; instead every tensor that requires grad and
// reaches needs_grad() is appended (once) to *seen. A checkpoint segment's forward
// runs under it to learn which outside tensors (parameters, captured activations)
// its function uses, without saving anything for backward.
class GradTracker {
 public:
  explicit GradTracker(std::vector<Tensor>* seen);
  ~GradTracker();
  GradTracker(const GradTracker&) = delete;
  GradTracker& operator=(const GradTracker&) = delete;
 private:
  std::vector<Tensor>* previous_;
};
bool grad_tracking();
// The edge that a gradient for t should follow (null node when t needs none).
Edge gradient_edge(const Tensor& t);
// Records a node for op `name` with edges to `inputs` and makes it the grad_fn of `outputs`.
std::shared_ptr<Node> record(const char* name, const std::vector<Tensor>& inputs,
                             const std::vector<Tensor>& outputs, BackwardFn backward);

// ---- hooks ----
// Called with each gradient flowing into t (leaf or not) before it is used.
void register_hook(const Tensor& t, GradHook hook);
// Leaf only: called once per backward, when t's gradient for that backward is final.
void register_grad_ready_hook(const Tensor& t, ReadyHook hook);

// ---- running backward ----
// Accumulates d(sum_i <roots_i, grads_i>)/d(leaf) into every reachable leaf's .grad.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads = {},
              bool retain_graph = false);
// Returns d(sum_i <roots_i, grads_i>)/d(inputs_j) without touching any .grad (undefined
// where inputs_j is not reached). inputs may be leaves or intermediate tensors.
std::vector<Tensor> grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grads = {}, bool retain_graph = false);

// torch.autograd.grad / torch.autograd.backward under their PyTorch names (no create_graph:
// gradients of gradients are not recorded).
namespace autograd {
using ciuic::backward;
using ciuic::grad;
}  // namespace autograd

namespace detail {
// grad() that treats the inputs as the boundary of the graph: it never runs their
// nodes or anything behind them (checkpoint segments: outside tensors belong to the
// outer graph, which runs them itself). Does not retain the graph.
std::vector<Tensor> grad_until(const std::vector<Tensor>& roots, const std::vector<Tensor>& inputs,
                               const std::vector<Tensor>& grads);
}  // namespace detail

}  // namespace ciuic
