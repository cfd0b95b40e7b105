// Checkpoint segments: one tape node per segment; see checkpoint.h.
#include "ciuic/checkpoint.h"

#include <map>
#include <mutex>

#include "ciuic/autograd.h"
#include "ciuic/nn/module.h"

namespace ciuic {

namespace {

thread_local int t_recomputing = 0;

// The selective-keep context of the innermost running segment.
struct SelectiveCtx {
  const std::set<std::string>* keep;
  std::vector<std::pair<std::string, std::vector<Tensor>>>* store;
  std::size_t next = 0;
  bool replaying = false;
  SelectiveCtx* outer = nullptr;
};
thread_local SelectiveCtx* t_sel = nullptr;

struct SelectiveScope {
  SelectiveCtx ctx;
  explicit SelectiveScope(SelectiveCtx c) : ctx(c) {
    ctx.outer = t_sel;
    t_sel = &ctx;
  }
  ~SelectiveScope() { t_sel = ctx.outer; }
};

struct RecomputingScope {
  RecomputingScope() { ++t_recomputing; }
  ~RecomputingScope() { --t_recomputing; }
};

std::mutex g_registry_mutex;
std::map<std::string, RecomputeState>& registry() {
  static std::map<std::string, RecomputeState> r;
  return r;
}

// Everything a recomputation must see as the forward saw it.
struct Snapshot {
  Generator gen;
  std::vector<std::pair<const RecomputeState*, std::any>> extra;

  static Snapshot take() {
    Snapshot s;
    s.gen = default_generator();
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    for (auto& [name, st] : registry()) s.extra.emplace_back(&st, st.save());
    return s;
  }
  void apply() const {
    default_generator() = gen;
    for (auto& [st, v] : extra) st->restore(v);
  }
};

// Restores the snapshot for a scope and puts the current state back afterwards.
struct SnapshotScope {
  Snapshot now;
  explicit SnapshotScope(const Snapshot& s) : now(Snapshot::take()) { s.apply(); }
  ~SnapshotScope() { now.apply(); }
};

struct OutputMetaLite {
  Shape shape;
  DType dtype;
  Device device;
};

struct Segment {
  SegmentFn fn;
  CheckpointOptions opts;
  Snapshot snapshot;
  std::vector<SavedTensor> inputs;        // the explicit inputs
  std::vector<bool> input_wants_grad;
  std::vector<SavedTensor> outside;       // outside tensors fn used (kept for the version check)
  std::vector<Tensor> outside_live;       // the same tensors, with their autograd identity
  std::vector<OutputMetaLite> outputs;
  std::vector<std::pair<std::string, std::vector<Tensor>>> kept;  // selective
};

std::string meta_str(const OutputMetaLite& m) {
  return detail::concat(dtype_name(m.dtype), shape_str(m.shape), " on ", m.device.str());
}

GradList segment_backward(Segment& seg, const GradList& grads) {
  const char* op = seg.opts.name.c_str();
  std::vector<Tensor> xs;
  for (std::size_t i = 0; i < seg.inputs.size(); ++i) {
    Tensor t = seg.inputs[i].unpack(op);
    if (t.defined() && seg.input_wants_grad[i]) t.requires_grad_(true);  // a leaf of the nested tape
    xs.push_back(t);
  }
  for (const SavedTensor& s : seg.outside) (void)s.unpack(op);  // a parameter changed since forward?

  std::vector<Tensor> outs;
  {
    SnapshotScope state(seg.snapshot);
    RecomputingScope recomputing;
    EnableGradGuard grad_on;
    SelectiveScope sel({&seg.opts.keep_ops, &seg.kept, 0, true});
    outs = seg.fn(xs);
  }
  CIUIC_CHECK(outs.size() == seg.outputs.size(), AutogradError, op, "recomputation returned ", outs.size(),
              " outputs but the forward returned ", seg.outputs.size(), "; expected the same outputs");
  for (std::size_t i = 0; i < outs.size(); ++i) {
    const OutputMetaLite& m = seg.outputs[i];
    CIUIC_CHECK(outs[i].defined() && outs[i].shape() == m.shape && outs[i].dtype() == m.dtype &&
                    outs[i].device() == m.device,
                AutogradError, op, "recomputation produced output ", i, " as ", describe(outs[i]),
                " but the forward produced ", meta_str(m),
                "; expected the same shape, dtype and device (does the function depend on state that changed "
                "between forward and backward?)");
  }
  std::vector<Tensor> roots, root_grads;
  for (std::size_t i = 0; i < outs.size(); ++i)
    if (outs[i].requires_grad()) {
      roots.push_back(outs[i]);
      root_grads.push_back(grads[i]);
    }
  std::vector<Tensor> want;
  std::vector<std::size_t> slot;  // position of each wanted tensor among the node's inputs
  for (std::size_t i = 0; i < xs.size(); ++i)
    if (xs[i].defined() && xs[i].requires_grad()) {
      want.push_back(xs[i]);
      slot.push_back(i);
    }
  for (std::size_t j = 0; j < seg.outside_live.size(); ++j) {
    want.push_back(seg.outside_live[j]);
    slot.push_back(xs.size() + j);
  }
  GradList result(xs.size() + seg.outside_live.size());
  if (roots.empty() || want.empty()) return result;
  std::vector<Tensor> g = detail::grad_until(roots, want, root_grads);
  for (std::size_t k = 0; k < g.size(); ++k) result[slot[k]] = g[k];
  return result;
}

}  // namespace

bool checkpoint_recomputing() { return t_recomputing > 0; }

Tensor detail::probe_forward(const std::shared_ptr<nn::Module>& block, const Tensor& x) {
  RecomputingScope probing;
  return block->forward(x);
}

void register_recompute_state(const std::string& name, RecomputeState state) {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  registry()[name] = std::move(state);
}

namespace selective {

std::optional<std::vector<Tensor>> replay(const char* op) {
  SelectiveCtx* c = t_sel;
  if (!c || !c->replaying || !c->keep->count(op)) return std::nullopt;
  CIUIC_CHECK(c->next < c->store->size(), AutogradError, op, "selective checkpoint: the recomputation ran op ", op,
              " more often than the forward did; expected the same sequence of kept ops");
  auto& [name, results] = (*c->store)[c->next++];
  CIUIC_CHECK(name == op, AutogradError, op, "selective checkpoint: the recomputation ran ", op,
              " where the forward ran ", name, "; expected the same sequence of kept ops");
  std::vector<Tensor> out;
  for (const Tensor& t : results) out.push_back(t.defined() ? t.detach() : t);  // fresh handles: the op records on them
  return out;
}

void keep(const char* op, const std::vector<Tensor>& results) {
  SelectiveCtx* c = t_sel;
  if (!c || c->replaying || !c->keep->count(op)) return;
  std::vector<Tensor> detached;
  for (const Tensor& t : results) detached.push_back(t.defined() ? t.detach() : t);
  c->store->emplace_back(op, std::move(detached));
}

}  // namespace selective

std::vector<Tensor> checkpoint(const SegmentFn& fn, const std::vector<Tensor>& inputs, const CheckpointOptions& opts) {
  // No tape to write to, or already inside a segment's forward (which records nothing): run plainly.
  if (!grad_mode_enabled() || grad_tracking()) return fn(inputs);

  auto seg = std::make_shared<Segment>();
  seg->fn = fn;
  seg->opts = opts;
  seg->snapshot = Snapshot::take();
  std::vector<Tensor> seen, outs;
  {
    GradTracker tracker(&seen);
    SelectiveScope sel({&seg->opts.keep_ops, &seg->kept, 0, false});
    outs = fn(inputs);
  }
  std::vector<Tensor> node_inputs = inputs;
  // An outside tensor that requires grad and is returned as it is (a parameter passed
  // through) took part in no op, so the tracker did not see it; it still needs its gradient.
  for (const Tensor& o : outs)
    if (o.defined() && o.requires_grad()) {
      bool known = false;
      for (const Tensor& t : seen) known = known || t.same(o);
      if (!known) seen.push_back(o);
    }
  for (const Tensor& t : seen) {
    bool explicit_input = false;
    for (const Tensor& x : inputs) explicit_input = explicit_input || x.same(t);
    if (!explicit_input) {
      seg->outside.emplace_back(t);
      seg->outside_live.push_back(t);
      node_inputs.push_back(t);
    }
  }
  bool any = false;
  for (const Tensor& t : node_inputs) any = any || (t.defined() && t.requires_grad());
  if (!any) return outs;  // nothing inside needs a gradient: nothing to record

  for (const Tensor& x : inputs) {
    seg->inputs.emplace_back(x);
    seg->input_wants_grad.push_back(x.defined() && x.requires_grad());
  }
  for (Tensor& o : outs) {
    CIUIC_CHECK(o.defined(), ValueError, opts.name.c_str(), "the segment function returned an undefined tensor; "
                "expected defined outputs");
    // Every output becomes a fresh alias (same storage, no history) that the segment's node
    // then owns. Results made inside fn lose nothing; an input, a parameter or a captured
    // constant returned as it is keeps its own identity (a parameter stays a leaf, a
    // constant does not start to require grad), as PyTorch's checkpoint does.
    o = o.detach();
    seg->outputs.push_back({o.shape(), o.dtype(), o.device()});
  }
  record(opts.name.c_str(), node_inputs, outs, [seg](const GradList& g) { return segment_backward(*seg, g); });
  return outs;
}

Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x, const CheckpointOptions& opts) {
  // fn is copied into the segment: backward calls it long after this frame is gone.
  return checkpoint([fn](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in[0])}; }, {x}, opts)[0];
}

}  // namespace ciuic
