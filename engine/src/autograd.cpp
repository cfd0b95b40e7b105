// The tape and the backward walk. See autograd.h for the model.
#include "ciuic/autograd.h"

#include <atomic>
#include <limits>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "ciuic/ops.h"

namespace ciuic {

// ---------------------------------------------------------------- grad mode
namespace {
thread_local bool t_grad_enabled = true;
std::atomic<std::uint64_t> g_next_seq{1};
// Accumulators run as soon as they are ready, so grad-ready hooks fire early.
constexpr std::uint64_t kAccumulatorSeq = std::numeric_limits<std::uint64_t>::max();
}  // namespace

bool grad_mode_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }
EnableGradGuard::EnableGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = true; }
EnableGradGuard::~EnableGradGuard() { t_grad_enabled = previous_; }

// ---------------------------------------------------------------- saved tensors
SavedTensor::SavedTensor(const Tensor& t) : tensor_(t.defined() ? t.detach() : t), version_(t.defined() ? t.version() : 0) {}

Tensor SavedTensor::unpack(const char* op) const {
  if (tensor_.defined() && tensor_.version() != version_) {
    detail::fail<AutogradError>(op, "a tensor saved for backward (", describe(tensor_),
                                ") was modified in place after it was saved (version ", version_, " -> ",
                                tensor_.version(), "); expected it unchanged until backward. Clone it before "
                                "the in-place op, or use the out-of-place op");
  }
  return tensor_;
}

// ---------------------------------------------------------------- recording
static AutogradMeta& meta(const Tensor& t) {
  auto& m = t.impl()->autograd;
  if (!m) m = std::make_shared<AutogradMeta>();
  return *m;
}

namespace {
thread_local std::vector<Tensor>* t_tracker = nullptr;

bool note(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return false;
  if (!t_tracker) return true;
  for (const Tensor& seen : *t_tracker)
    if (seen.same(t)) return false;
  t_tracker->push_back(t);
  return false;  // tracking: nothing is recorded
}
}  // namespace

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!t_grad_enabled) return false;
  bool any = false;
  for (const Tensor* t : inputs)
    if (t) any = note(*t) || any;
  return any;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  bool any = false;
  for (const Tensor& t : inputs) any = note(t) || any;
  return any;
}

GradTracker::GradTracker(std::vector<Tensor>* seen) : previous_(t_tracker) { t_tracker = seen; }
GradTracker::~GradTracker() { t_tracker = previous_; }
bool grad_tracking() { return t_tracker != nullptr; }

static OutputMeta output_meta(const Tensor& t) { return {t.shape(), t.dtype(), t.device()}; }

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  AutogradMeta& m = meta(t);
  if (m.grad_fn) return {m.grad_fn, m.output_nr};
  if (!m.accumulator) {
    auto acc = std::make_shared<Node>();
    acc->name = "AccumulateGrad";
    acc->seq = kAccumulatorSeq;
    acc->accumulator = true;
    acc->leaf = t.impl_ptr();
    acc->outputs.push_back(output_meta(t));
    m.accumulator = std::move(acc);
  }
  return {m.accumulator, 0};
}

std::shared_ptr<Node> record(const char* name, const std::vector<Tensor>& inputs,
                             const std::vector<Tensor>& outputs, BackwardFn backward) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->seq = g_next_seq.fetch_add(1);
  node->next.reserve(inputs.size());
  for (const Tensor& in : inputs) node->next.push_back(gradient_edge(in));
  node->backward = std::move(backward);
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    node->outputs.push_back(output_meta(out));
    if (!out.defined() || !is_floating(out.dtype())) continue;  // indices etc. carry no gradient
    AutogradMeta& m = meta(out);
    m.requires_grad = true;
    m.grad_fn = node;
    m.output_nr = static_cast<int>(i);
  }
  return node;
}

// ---------------------------------------------------------------- hooks
void register_hook(const Tensor& t, GradHook hook) {
  CIUIC_CHECK(t.defined(), ValueError, "register_hook", "called on an undefined tensor; expected a tensor that "
              "requires grad");
  CIUIC_CHECK(t.requires_grad(), AutogradError, "register_hook", "tensor ", describe(t),
              " does not require grad; expected a tensor that takes part in backward");
  AutogradMeta& m = meta(t);
  if (m.grad_fn)
    m.grad_fn->output_hooks.emplace_back(m.output_nr, std::move(hook));
  else
    m.hooks.push_back(std::move(hook));
}

void register_grad_ready_hook(const Tensor& t, ReadyHook hook) {
  CIUIC_CHECK(t.defined(), ValueError, "register_grad_ready_hook", "called on an undefined tensor; expected a "
              "parameter");
  CIUIC_CHECK(t.requires_grad() && t.is_leaf(), AutogradError, "register_grad_ready_hook", "tensor ", describe(t),
              " is not a leaf that requires grad; expected a parameter");
  meta(t).ready_hooks.push_back(std::move(hook));
}

// ---------------------------------------------------------------- backward
namespace {

Tensor add_grads(const Tensor& a, const Tensor& b) { return a.defined() ? add(a, b) : b; }

// A gradient hook's replacement must look like the gradient it replaces: that of the hooked
// tensor (`what()` names it). Anything else would corrupt .grad or a later op's backward.
template <typename What>
void check_hook_result(const Tensor& r, const Shape& shape, DType dtype, Device device, What what) {
  if (r.shape() == shape && r.dtype() == dtype && r.device() == device) return;
  detail::fail<AutogradError>("register_hook", "a hook on ", what(), " returned the gradient ", describe(r),
                              "; expected the hooked tensor's shape, dtype and device (", dtype_name(dtype),
                              shape_str(shape), " on ", device.str(), ")");
}

// One backward pass over the graph reachable from roots.
class GraphTask {
 public:
  // stop_at_inputs: never run the nodes of captured inputs nor anything behind them
  // (a checkpoint segment's outside tensors belong to the outer graph).
  GraphTask(bool retain, const std::vector<Tensor>* capture, bool stop_at_inputs = false)
      : retain_(retain), stop_at_inputs_(stop_at_inputs) {
    if (capture) {
      for (std::size_t i = 0; i < capture->size(); ++i) {
        Edge e = gradient_edge((*capture)[i]);
        CIUIC_CHECK(e.node, AutogradError, "grad", "input ", i, " (", describe((*capture)[i]),
                    ") does not require grad; expected every input to take part in the graph");
        capture_[{e.node.get(), e.output_nr}] = i;
        targets_.insert(e.node.get());
      }
      captured_.resize(capture->size());
    }
    capturing_ = capture != nullptr;
  }

  std::vector<Tensor> run(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads) {
    CIUIC_CHECK(grads.empty() || grads.size() == roots.size(), ValueError, "backward", "got ", grads.size(),
                " gradients for ", roots.size(), " outputs; expected one each (or none for scalars)");
    std::vector<Edge> root_edges;
    for (std::size_t i = 0; i < roots.size(); ++i) {
      const Tensor& r = roots[i];
      CIUIC_CHECK(r.requires_grad(), AutogradError, "backward", "output ", describe(r),
                  " does not require grad; expected a result computed from tensors with requires_grad "
                  "while grad mode was on");
      Tensor g = grads.empty() || !grads[i].defined() ? Tensor() : grads[i];
      if (!g.defined()) {
        CIUIC_CHECK(r.numel() == 1, ShapeError, "backward", "output ", describe(r),
                    " is not a scalar; expected a scalar loss or an explicit output gradient");
        g = ones_like(r);
      }
      CIUIC_CHECK(g.shape() == r.shape(), ShapeError, "backward", "grad_output ", describe(g), " for output ",
                  describe(r), "; expected the output's shape");
      CIUIC_CHECK(g.dtype() == r.dtype(), DTypeError, "backward", "grad_output ", describe(g), " for output ",
                  describe(r), "; expected the output's dtype (convert with .to(", dtype_name(r.dtype()), "))");
      CIUIC_CHECK(g.device() == r.device(), DeviceError, "backward", "grad_output ", describe(g), " for output ",
                  describe(r), "; expected the output's device");
      Edge e = gradient_edge(r);
      root_edges.push_back(e);
      add_to_buffer(e, g.detach());
    }
    count_dependencies(root_edges);
    for (const Edge& e : root_edges)
      if (needed_.count(e.node.get()) && deps_[e.node.get()] == 0 && queued_.insert(e.node.get()).second)
        ready_.push(e.node);
    while (!ready_.empty()) {
      std::shared_ptr<Node> node = ready_.top();
      ready_.pop();
      execute(*node);
    }
    return std::move(captured_);
  }

 private:
  struct BySeq {
    bool operator()(const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) const { return a->seq < b->seq; }
  };
  struct EdgeKey {
    Node* node;
    int output_nr;
    bool operator==(const EdgeKey&) const = default;
  };
  struct EdgeHash {
    std::size_t operator()(const EdgeKey& k) const { return std::hash<Node*>()(k.node) ^ (std::size_t(k.output_nr) << 1); }
  };

  void add_to_buffer(const Edge& e, const Tensor& g) {
    auto& buf = buffers_[e.node.get()];
    if (buf.empty()) buf.resize(e.node->outputs.size());
    buf[e.output_nr] = add_grads(buf[e.output_nr], g);
  }

  // Finds the nodes worth running: every reachable node for backward(); for grad(),
  // only those from which a captured input is reachable. deps_[n] then counts the
  // edges into n from nodes that will run.
  void count_dependencies(const std::vector<Edge>& roots) {
    std::vector<Node*> post;  // reachable nodes, children before parents
    std::unordered_set<Node*> seen;
    std::vector<std::pair<Node*, std::size_t>> stack;
    for (const Edge& e : roots)
      if (seen.insert(e.node.get()).second) stack.emplace_back(e.node.get(), 0);
    while (!stack.empty()) {
      auto& [n, i] = stack.back();
      if (stops_at(n) || i == n->next.size()) {
        post.push_back(n);
        stack.pop_back();
        continue;
      }
      Node* child = n->next[i++].node.get();
      if (child && seen.insert(child).second) stack.emplace_back(child, 0);
    }
    for (Node* n : post) {
      bool need = !capturing_ || targets_.count(n);
      if (!stops_at(n))
        for (const Edge& e : n->next) need = need || (e.node && needed_.count(e.node.get()));
      if (need) needed_.insert(n);
    }
    for (Node* n : post) {
      if (!needed_.count(n) || stops_at(n)) continue;
      for (const Edge& e : n->next)
        if (e.node && needed_.count(e.node.get())) ++deps_[e.node.get()];
    }
  }

  bool stops_at(Node* n) const { return stop_at_inputs_ && targets_.count(n); }

  void execute(Node& node) {
    auto it = buffers_.find(&node);
    GradList grads = it == buffers_.end() ? GradList(node.outputs.size()) : std::move(it->second);
    if (it != buffers_.end()) buffers_.erase(it);
    for (std::size_t i = 0; i < grads.size(); ++i)
      if (!grads[i].defined()) {
        const OutputMeta& om = node.outputs[i];
        grads[i] = zeros(om.shape, TensorOptions(om.dtype).device(om.device));
      }
    for (auto& [nr, hook] : node.output_hooks) {
      Tensor r = hook(grads[nr]);
      if (r.defined()) {
        const OutputMeta& om = node.outputs[nr];
        check_hook_result(r, om.shape, om.dtype, om.device, [&] {
          return detail::concat("output ", nr, " of ", node.name, " (", dtype_name(om.dtype), shape_str(om.shape),
                                " on ", om.device.str(), ")");
        });
        grads[nr] = r;
      }
    }
    if (capturing_) {
      for (std::size_t i = 0; i < grads.size(); ++i) {
        auto c = capture_.find({&node, static_cast<int>(i)});
        if (c != capture_.end()) captured_[c->second] = grads[i];
      }
    }
    if (node.accumulator) {
      accumulate(node, grads[0]);
      return;
    }
    if (stops_at(&node)) return;
    CIUIC_CHECK(!node.released, AutogradError, node.name.c_str(),
                "backward through this op a second time, but its saved tensors were freed by the first "
                "backward; expected backward(..., retain_graph=true) on the first call");
    GradList grads_in = node.backward(grads);
    if (!retain_graph_()) {
      node.backward = nullptr;
      node.released = true;
    }
    CIUIC_CHECK(grads_in.size() == node.next.size(), AutogradError, node.name.c_str(), "backward returned ",
                grads_in.size(), " gradients for ", node.next.size(), " inputs");
    for (std::size_t i = 0; i < node.next.size(); ++i) {
      const Edge& e = node.next[i];
      if (!e.node || !needed_.count(e.node.get())) continue;
      if (grads_in[i].defined()) {
        const OutputMeta& want = e.node->outputs[e.output_nr];
        CIUIC_CHECK(grads_in[i].shape() == want.shape, AutogradError, node.name.c_str(),
                    "backward produced gradient ", describe(grads_in[i]), " for input ", i, "; expected shape ",
                    shape_str(want.shape));
        add_to_buffer(e, grads_in[i]);
      }
      if (--deps_[e.node.get()] == 0 && queued_.insert(e.node.get()).second) ready_.push(e.node);
    }
  }

  void accumulate(Node& node, Tensor g) {
    std::shared_ptr<TensorImpl> impl = node.leaf.lock();
    if (!impl) return;  // the leaf died while its graph lived on
    Tensor leaf(impl);
    AutogradMeta& m = meta(leaf);
    for (auto& hook : m.hooks) {
      Tensor r = hook(g);
      if (r.defined()) {
        check_hook_result(r, leaf.shape(), leaf.dtype(), leaf.device(), [&] { return "leaf " + describe(leaf); });
        g = r;
      }
    }
    if (capturing_) return;  // grad(): never touch .grad
    if (m.grad.defined()) {
      // In place, as PyTorch accumulates (backward never builds a graph here): a gradient that is a
      // view into a data-parallel bucket (comm/ BucketedReducer) stays that view, with no copy.
      // A grad whose elements overlap (an expanded tensor set by set_grad) or that is not dense is
      // replaced by a fresh sum instead.
      if (m.grad.is_contiguous() && m.grad.shape() == g.shape() && m.grad.dtype() == g.dtype() &&
          m.grad.device() == g.device())
        m.grad.add_(g);
      else
        m.grad = add(m.grad, g);
    } else {
      // Own the gradient: g may alias a root gradient or another leaf's gradient.
      bool exclusive = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 && g.is_contiguous();
      m.grad = exclusive ? g : g.clone();
    }
    for (auto& hook : m.ready_hooks) hook(leaf);
  }

  bool retain_graph_() const { return retain_; }

  bool retain_;
  bool capturing_ = false;
  std::unordered_map<EdgeKey, std::size_t, EdgeHash> capture_;
  bool stop_at_inputs_;
  std::unordered_set<Node*> targets_;  // nodes of captured inputs
  std::unordered_set<Node*> needed_;
  std::vector<Tensor> captured_;
  std::unordered_map<Node*, GradList> buffers_;
  std::unordered_map<Node*, int> deps_;
  std::unordered_set<Node*> queued_;
  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, BySeq> ready_;
};

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  NoGradGuard no_grad;  // backward closures never record
  GraphTask(retain_graph, nullptr).run(roots, grads);
}

std::vector<Tensor> grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grads, bool retain_graph) {
  NoGradGuard no_grad;
  return GraphTask(retain_graph, &inputs).run(roots, grads);
}

std::vector<Tensor> detail::grad_until(const std::vector<Tensor>& roots, const std::vector<Tensor>& inputs,
                                       const std::vector<Tensor>& grads) {
  NoGradGuard no_grad;
  return GraphTask(false, &inputs, /*stop_at_inputs=*/true).run(roots, grads);
}

// ---------------------------------------------------------------- Tensor's autograd methods
bool Tensor::requires_grad() const { return impl_ && impl_->autograd && impl_->autograd->requires_grad; }

static void check_defined(const TensorImpl* impl, const char* what) {
  CIUIC_CHECK(impl != nullptr, ValueError, what, "called on an undefined tensor; expected a tensor made by a "
              "factory or an op");
}

Tensor& Tensor::requires_grad_(bool r) {
  check_defined(impl_.get(), "requires_grad_");
  CIUIC_CHECK(is_leaf(), AutogradError, "requires_grad_", "tensor ", describe(*this),
              " was produced by an op (", impl_->autograd->grad_fn->name,
              "); expected a leaf. Use detach() to make a leaf");
  CIUIC_CHECK(!r || is_floating(dtype()), DTypeError, "requires_grad_", "tensor ", describe(*this),
              " has an integral dtype; expected a floating dtype for gradients");
  meta(*this).requires_grad = r;
  return *this;
}

bool Tensor::is_leaf() const {
  check_defined(impl_.get(), "is_leaf");
  return !impl_->autograd || !impl_->autograd->grad_fn;
}

Tensor Tensor::grad() const {
  check_defined(impl_.get(), "grad");
  return impl_->autograd ? impl_->autograd->grad : Tensor();
}

void Tensor::set_grad(const Tensor& g) const {
  check_defined(impl_.get(), "set_grad");
  CIUIC_CHECK(!g.defined() || g.shape() == shape(), ShapeError, "set_grad", "gradient ", describe(g),
              " for tensor ", describe(*this), "; expected the same shape");
  meta(*this).grad = g;
}

void Tensor::zero_grad() const {
  check_defined(impl_.get(), "zero_grad");
  if (impl_->autograd) impl_->autograd->grad = Tensor();
}

void Tensor::register_hook_fn(std::function<Tensor(const Tensor&)> hook) const {
  ciuic::register_hook(*this, std::move(hook));
}

void Tensor::retain_grad() const {
  CIUIC_CHECK(defined(), ValueError, "retain_grad", "called on an undefined tensor; expected a tensor that "
              "requires grad");
  CIUIC_CHECK(requires_grad(), AutogradError, "retain_grad", "tensor ", describe(*this),
              " does not require grad; expected a tensor that takes part in backward");
  AutogradMeta& m = meta(*this);
  if (!m.grad_fn || m.retains_grad) return;  // a leaf keeps its gradient anyway; one hook is enough
  m.retains_grad = true;
  // The hook lives in the node that produced this tensor, which the tensor's meta holds: a
  // weak reference avoids the cycle. Gradients accumulate across backwards, as for leaves.
  std::weak_ptr<TensorImpl> weak = impl_;
  m.grad_fn->output_hooks.emplace_back(m.output_nr, [weak](const Tensor& g) {
    if (auto impl = weak.lock()) {
      AutogradMeta& mm = *impl->autograd;
      mm.grad = mm.grad.defined() ? add(mm.grad, g.detach()) : g.detach();
    }
    return Tensor();
  });
}

bool Tensor::retains_grad() const {
  check_defined(impl_.get(), "retains_grad");
  return impl_->autograd && impl_->autograd->retains_grad;
}

void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  check_defined(impl_.get(), "backward");
  ciuic::backward({*this}, {grad_output}, retain_graph);
}

}  // namespace ciuic
