// The bucketed gradient reducer (see reducer.h for the behaviour).
#include "ciuic/comm/reducer.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "ciuic/autograd.h"
#include "ciuic/ops.h"

namespace ciuic::comm {

namespace {

// x *= s in place (the pre-division by the world size).
void scale_inplace(Tensor& x, double s) {
  NoGradGuard ng;
  if (x.device().is_cpu() && x.dtype() == DType::f32) {
    float* p = x.data<float>();
    const float f = static_cast<float>(s);
    for (std::int64_t i = 0, n = x.numel(); i < n; ++i) p[i] *= f;
  } else if (x.device().is_cpu() && x.dtype() == DType::f64) {
    double* p = x.data<double>();
    for (std::int64_t i = 0, n = x.numel(); i < n; ++i) p[i] *= s;
  } else {
    x.copy_(mul(x, s));
  }
}

std::string join_names(const std::vector<std::string>& names, std::size_t max = 20) {
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < max; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > max) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return s;
}

// One line per parameter and buffer: "param fc1.weight f32[4, 3]".
std::vector<std::string> describe_model(const nn::Module& m) {
  std::vector<std::string> lines;
  auto params = m.named_parameters();
  for (const auto& [name, t] : params.items())
    lines.push_back("parameter '" + name + "' " + dtype_name(t.dtype()) + shape_str(t.shape()));
  auto buffers = m.named_buffers();
  for (const auto& [name, t] : buffers.items())
    lines.push_back("buffer '" + name + "' " + dtype_name(t.dtype()) + shape_str(t.shape()));
  return lines;
}

std::string join_lines(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& l : v) s += l + "\n";
  return s;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  std::string line;
  while (std::getline(is, line)) out.push_back(line);
  return out;
}

}  // namespace

struct BucketedReducer::State {
  struct Param {
    std::string name;
    Tensor t;
    Tensor view;  // t's slot in its bucket, shaped like t
    int bucket = -1;
  };
  struct Bucket {
    DType dtype = DType::f32;
    Device device;
    std::vector<int> params;
    Tensor flat;  // 1-D, the bucket's gradients back to back
    Tensor wire;  // f16 copy for fp16 compression (undefined otherwise)
    int pending = 0;
    WorkPtr work;
  };

  CommunicatorPtr comm;
  ReducerOptions opts;
  std::vector<Param> params;
  std::vector<Bucket> buckets;
  std::unordered_map<const TensorImpl*, int> index_of;

  bool no_sync = false;
  bool armed = false;
  std::vector<char> marked, locally_used;
  std::size_t next_bucket = 0;
  std::size_t ready_count = 0;
  std::size_t hook_count = 0;  // parameters marked by their gradient-ready hook (not as unused)
  bool record_order = false;
  std::vector<int> ready_order;
  bool rebuilt = false;
  std::int64_t iterations = 0;
  BucketedReducer::Overlap overlap;

  // ---- buckets ----
  void build(const std::vector<int>& order) {
    std::vector<BucketParam> info;
    for (const auto& p : params)
      info.push_back({p.t.dtype(), p.t.device(), static_cast<std::size_t>(p.t.numel()) * p.t.element_size()});
    auto groups = assign_buckets(info, order, opts.first_bucket_cap_bytes_, opts.bucket_cap_bytes_);
    std::vector<Bucket> nb;
    NoGradGuard ng;
    for (std::size_t b = 0; b < groups.size(); ++b) {
      Bucket B;
      B.params = groups[b];
      const Tensor& first = params[static_cast<std::size_t>(B.params[0])].t;
      B.dtype = first.dtype();
      B.device = first.device();
      std::int64_t n = 0;
      for (int i : B.params) n += params[static_cast<std::size_t>(i)].t.numel();
      B.flat = zeros({n}, TensorOptions(B.dtype).device(B.device));
      if (opts.fp16_compression_ && B.dtype == DType::f32) B.wire = zeros({n}, TensorOptions(DType::f16).device(B.device));
      std::int64_t off = 0;
      for (int i : B.params) {
        Param& p = params[static_cast<std::size_t>(i)];
        Tensor view = B.flat.narrow(0, off, p.t.numel()).view(p.t.shape());
        off += p.t.numel();
        Tensor g = p.t.grad();
        if (g.defined()) {  // keep an existing gradient, now inside the bucket
          view.copy_(g);
          p.t.set_grad(view);
        }
        p.view = view;
        p.bucket = static_cast<int>(b);
      }
      nb.push_back(std::move(B));
    }
    buckets = std::move(nb);
  }

  // ---- one iteration ----
  void arm(const std::vector<Tensor>* outputs) {
    if (no_sync) return;
    // A forward without a graph (NoGradGuard, eval) prepares nothing, as in PyTorch.
    if (!grad_mode_enabled()) return;
    if (outputs) {
      bool any = false;
      for (const Tensor& o : *outputs) any = any || (o.defined() && o.requires_grad());
      if (!any) return;
    }
    // A second forward before any backward starts over; the collectives already
    // started for unused parameters (every rank started the same ones) are retired below.
    if (armed && hook_count == 0) armed = false;
    if (armed && ready_count > 0) {
      std::vector<std::string> missing;
      for (std::size_t i = 0; i < params.size(); ++i)
        if (!marked[i]) missing.push_back(params[i].name);
      armed = false;
      // The buckets it launched may still be in flight: retire them before anyone
      // (the next backward, zero_grad, the optimizer) touches bucket memory again.
      const std::string failed = retire_in_flight();
      ::ciuic::detail::fail<ValueError>(
          "BucketedReducer", "the previous iteration did not finish: no gradient reached ", join_names(missing),
          " in its backward, so their buckets were never reduced; expected every parameter to take part in the "
          "loss, or ReducerOptions().find_unused_parameters(true) for models that skip some",
          failed.empty() ? "" : "; besides, a collective that iteration started failed: ", failed);
    }
    // Collectives left by an iteration that ended in an error (a failed wait in
    // finalize, an exception in a hook) are retired before their buckets are reused.
    const std::string failed = retire_in_flight();
    CIUIC_COMM_CHECK(failed.empty(), CommError, "BucketedReducer", "a collective of the previous iteration failed: ",
                     failed);
    std::fill(marked.begin(), marked.end(), 0);
    std::fill(locally_used.begin(), locally_used.end(), 0);
    ready_count = 0;
    hook_count = 0;
    next_bucket = 0;
    for (auto& b : buckets) b.pending = static_cast<int>(b.params.size());
    record_order = opts.rebuild_buckets_ && !rebuilt && iterations == 0;
    ready_order.clear();
    std::vector<int> unused;
    if (outputs) {
      std::vector<char> reached = reachable(*outputs);
      for (std::size_t i = 0; i < params.size(); ++i)
        if (!reached[i]) unused.push_back(static_cast<int>(i));
    } else {
      CIUIC_CHECK(!opts.find_unused_parameters_, ValueError, "BucketedReducer",
                  "find_unused_parameters needs the forward's outputs; expected reducer.forward(x) or "
                  "prepare_for_backward(outputs) with the tensors the loss is computed from");
    }
    if (!unused.empty() && !opts.find_unused_parameters_) {
      std::vector<std::string> names;
      for (int i : unused) names.push_back(params[static_cast<std::size_t>(i)].name);
      ::ciuic::detail::fail<ValueError>("BucketedReducer", "parameters ", join_names(names),
                               " did not take part in this forward (no gradient can reach them), so their buckets "
                               "would never be reduced; expected every parameter to be used, or "
                               "ReducerOptions().find_unused_parameters(true)");
    }
    armed = true;
    for (int i : unused) mark(i, /*used=*/false);
  }

  // Waits for every collective still in flight on a bucket and forgets it. The Gloo
  // worker (or the communication stream) may still be reading and writing the
  // bucket; after this, the host owns CPU buckets again, and later work on the
  // current stream is ordered after the collectives on CUDA buckets. Every Work is
  // waited for even when one fails; returns the first failure's message ("" if none).
  std::string retire_in_flight() {
    std::string first_error;
    for (auto& b : buckets) {
      if (!b.work) continue;
      try {
        b.work->wait();
      } catch (const std::exception& e) {
        if (first_error.empty()) first_error = e.what();
      }
      b.work.reset();
    }
    return first_error;
  }

  // Which parameters the outputs' graph reaches (a walk over the tape's edges).
  std::vector<char> reachable(const std::vector<Tensor>& outputs) const {
    std::vector<char> reached(params.size(), 0);
    std::vector<Node*> stack;
    std::unordered_set<Node*> seen;
    for (const Tensor& o : outputs) {
      if (!o.defined() || !o.requires_grad()) continue;
      Edge e = gradient_edge(o);
      if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      if (n->accumulator) {
        if (auto impl = n->leaf.lock()) {
          auto it = index_of.find(impl.get());
          if (it != index_of.end()) reached[static_cast<std::size_t>(it->second)] = 1;
        }
      }
      for (const Edge& e : n->next)
        if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
    return reached;
  }

  void on_ready(int i) {
    if (no_sync) return;
    Param& p = params[static_cast<std::size_t>(i)];
    CIUIC_CHECK(armed, AutogradError, "BucketedReducer",
                "the gradient of '", p.name, "' became ready outside a prepared iteration: run each forward through "
                "reducer.forward(x) (or call prepare_for_backward(outputs) after a custom forward) before backward. "
                "A second backward after one forward marks '", p.name, "' ready twice; use no_sync() to accumulate");
    ++hook_count;
    mark(i, /*used=*/true);
  }

  void mark(int i, bool used) {
    Param& p = params[static_cast<std::size_t>(i)];
    CIUIC_CHECK(!marked[static_cast<std::size_t>(i)], AutogradError, "BucketedReducer", "parameter '", p.name,
                "' was marked ready twice in one iteration (used in two backward passes of one forward, or in a "
                "reentrant backward); expected one gradient per parameter per iteration");
    NoGradGuard ng;
    Tensor g = p.t.grad();
    if (g.defined()) {
      CIUIC_CHECK(g.dtype() == p.t.dtype() && g.device() == p.t.device(), DTypeError, "BucketedReducer",
                  "gradient ", describe(g), " of parameter '", p.name, "' (", describe(p.t),
                  "); expected the parameter's dtype and device");
      if (g.data_ptr() != p.view.data_ptr()) p.view.copy_(g);
      p.t.set_grad(p.view);
    } else {
      p.view.zero_();  // unused here: contributes zeros
    }
    marked[static_cast<std::size_t>(i)] = 1;
    locally_used[static_cast<std::size_t>(i)] = used ? 1 : 0;
    if (record_order && used) ready_order.push_back(i);
    ++ready_count;
    --buckets[static_cast<std::size_t>(p.bucket)].pending;
    while (next_bucket < buckets.size() && buckets[next_bucket].pending == 0) launch(next_bucket++);
    if (next_bucket == buckets.size()) finalize();
  }

  void launch(std::size_t b) {
    Bucket& B = buckets[b];
    const int world = comm->size();
    if (world > 1) scale_inplace(B.flat, 1.0 / world);
    if (B.wire.defined()) {
      NoGradGuard ng;
      B.wire.copy_(B.flat);
      B.work = comm->allreduce(B.wire, ReduceOp::sum);
    } else {
      B.work = comm->allreduce(B.flat, ReduceOp::sum);
    }
  }

  void finalize() {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point last_ready = Clock::now();
    armed = false;
    NoGradGuard ng;
    BucketedReducer::Overlap ov;
    auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
    for (auto& B : buckets) {
      B.work->wait();
      WorkTimes t = B.work->times();
      if (t.valid) {
        ov.comm_ms += ms(t.end - t.start);
        if (t.start < last_ready) ov.hidden_ms += ms(std::min(t.end, last_ready) - t.start);
      }
      if (B.wire.defined()) B.flat.copy_(B.wire);
      B.work.reset();
    }
    ov.tail_ms = ms(Clock::now() - last_ready);
    overlap = ov;
    if (opts.find_unused_parameters_) {
      Tensor used = from_vector<std::uint8_t>(std::vector<std::uint8_t>(locally_used.begin(), locally_used.end()),
                                              {static_cast<std::int64_t>(params.size())},
                                              TensorOptions(DType::u8).device(comm->device()));
      comm->allreduce(used, ReduceOp::max)->wait();
      auto g = used.to_vector<std::uint8_t>();
      for (std::size_t i = 0; i < params.size(); ++i) {
        if (g[i]) params[i].t.set_grad(params[i].view);
        else params[i].t.set_grad(Tensor());  // unused on every rank: optimizers skip it
      }
    }
    ++iterations;
    if (record_order) {
      record_order = false;
      rebuild();
    }
  }

  // Rank 0's ready order (unused parameters appended in reverse registration
  // order) becomes every rank's bucket order.
  void rebuild() {
    std::vector<std::int64_t> order(ready_order.begin(), ready_order.end());
    std::vector<char> in(params.size(), 0);
    for (int i : ready_order) in[static_cast<std::size_t>(i)] = 1;
    for (int i = static_cast<int>(params.size()) - 1; i >= 0; --i)
      if (!in[static_cast<std::size_t>(i)]) order.push_back(i);
    Tensor t = from_vector<std::int64_t>(order, {static_cast<std::int64_t>(order.size())},
                                         TensorOptions(DType::i64).device(comm->device()));
    if (comm->size() > 1) comm->broadcast(t, 0)->wait();
    auto got = t.to_vector<std::int64_t>();
    std::vector<int> o;
    std::vector<char> seen(params.size(), 0);
    for (auto v : got) {
      CIUIC_COMM_CHECK(v >= 0 && static_cast<std::size_t>(v) < params.size() && !seen[static_cast<std::size_t>(v)],
                  CommError, "BucketedReducer", "rank 0's bucket order is not a permutation of the ", params.size(),
                  " parameters; expected the same model on every rank");
      seen[static_cast<std::size_t>(v)] = 1;
      o.push_back(static_cast<int>(v));
    }
    build(o);
    rebuilt = true;
  }
};

BucketedReducer::BucketedReducer(std::shared_ptr<nn::Module> module, CommunicatorPtr comm, const ReducerOptions& options)
    : module_(std::move(module)), comm_(std::move(comm)), state_(std::make_shared<State>()) {
  CIUIC_CHECK(module_ != nullptr && comm_ != nullptr, ValueError, "BucketedReducer", "null module or communicator");
  State& s = *state_;
  s.comm = comm_;
  s.opts = options;
  const int rank = comm_->rank(), world = comm_->size();

  // 1. Same names, dtypes and shapes everywhere: gather every rank's description.
  std::string mine = join_lines(describe_model(*module_));
  // Small control tensors live where the communicator moves data (the GPU for NCCL).
  const Device cdev = comm_->device();
  Tensor len = full({1}, static_cast<double>(mine.size()), TensorOptions(DType::i64).device(cdev));
  Tensor lens = zeros({world}, TensorOptions(DType::i64).device(cdev));
  comm_->allgather(len, lens)->wait();
  auto all_lens = lens.to_vector<std::int64_t>();
  std::int64_t max_len = *std::max_element(all_lens.begin(), all_lens.end());
  std::vector<std::uint8_t> padded(static_cast<std::size_t>(max_len), 0);
  std::memcpy(padded.data(), mine.data(), mine.size());
  Tensor text = from_vector<std::uint8_t>(padded, {max_len}, TensorOptions(DType::u8).device(cdev));
  Tensor texts = zeros({max_len * world}, TensorOptions(DType::u8).device(cdev));
  if (max_len > 0) comm_->allgather(text, texts)->wait();
  auto bytes = texts.to_vector<std::uint8_t>();
  auto text_of = [&](int r) {
    const char* p = reinterpret_cast<const char*>(bytes.data()) + static_cast<std::size_t>(r) * static_cast<std::size_t>(max_len);
    return std::string(p, static_cast<std::size_t>(all_lens[static_cast<std::size_t>(r)]));
  };
  auto ref = split_lines(text_of(0));
  for (int r = 1; r < world; ++r) {
    auto other = split_lines(text_of(r));
    if (other == ref) continue;
    std::size_t k = 0;
    while (k < ref.size() && k < other.size() && ref[k] == other[k]) ++k;
    std::string a = k < ref.size() ? ref[k] : "nothing (" + std::to_string(ref.size()) + " entries in all)";
    std::string b = k < other.size() ? other[k] : "nothing (" + std::to_string(other.size()) + " entries in all)";
    ::ciuic::detail::fail<ValueError>("BucketedReducer", "the model on rank ", r, " differs from rank 0's at entry ", k,
                             ": rank 0 has ", a, ", rank ", r, " has ", b,
                             "; expected the same parameter and buffer names, dtypes and shapes on every rank "
                             "(this rank is ", rank, ")");
  }

  // 2. Parameters: devices the communicator can move, hooks, broadcast from rank 0.
  NoGradGuard ng;
  auto named = module_->named_parameters();
  for (const auto& [name, t] : named.items()) {
    CIUIC_CHECK(comm_->accepts(t.device()), DeviceError, "BucketedReducer", "parameter '", name, "' is ",
                describe(t), " but the ", backend_name(comm_->backend()), " communicator does not move tensors on ",
                t.device(), "; expected ",
                t.device().is_cpu() ? "Backend::gloo for CPU models" : "Backend::nccl for CUDA models");
    if (!t.requires_grad()) continue;
    State::Param p;
    p.name = name;
    p.t = t;
    s.index_of[t.impl()] = static_cast<int>(s.params.size());
    s.params.push_back(std::move(p));
  }
  CIUIC_CHECK(!s.params.empty(), ValueError, "BucketedReducer", "the module has no parameter that requires grad");
  auto sync_from_rank0 = [&](Tensor t) {
    if (world == 1) return;
    if (t.is_contiguous()) {
      comm_->broadcast(t, 0)->wait();
    } else {
      Tensor c = t.contiguous();
      comm_->broadcast(c, 0)->wait();
      t.copy_(c);
    }
  };
  for (const auto& [name, t] : named.items()) sync_from_rank0(t);
  auto named_buffers = module_->named_buffers();
  for (const auto& [name, t] : named_buffers.items()) sync_from_rank0(t);

  s.marked.assign(s.params.size(), 0);
  s.locally_used.assign(s.params.size(), 0);
  std::vector<int> order;
  for (int i = static_cast<int>(s.params.size()) - 1; i >= 0; --i) order.push_back(i);
  s.build(order);

  std::weak_ptr<State> weak = state_;
  for (std::size_t i = 0; i < s.params.size(); ++i) {
    int idx = static_cast<int>(i);
    register_grad_ready_hook(s.params[i].t, [weak, idx](const Tensor&) {
      if (auto st = weak.lock()) st->on_ready(idx);
    });
  }
}

BucketedReducer::~BucketedReducer() {
  // Collectives still in flight (an aborted backward) must finish before the
  // buckets they write into are freed.
  for (auto& b : state_->buckets)
    if (b.work) {
      try {
        b.work->wait();
      } catch (...) {
      }
    }
}

Tensor BucketedReducer::forward(const Tensor& x) {
  State& s = *state_;
  if (s.opts.broadcast_buffers_ && comm_->size() > 1 && !s.no_sync) {
    NoGradGuard ng;
    auto buffers = module_->named_buffers();
    for (const auto& [name, t] : buffers.items()) {
      Tensor b = t;
      if (b.is_contiguous()) comm_->broadcast(b, 0)->wait();
    }
  }
  Tensor out = module_->forward(x);
  prepare_for_backward({out});
  return out;
}

void BucketedReducer::prepare_for_backward(const std::vector<Tensor>& outputs) { state_->arm(&outputs); }

BucketedReducer::NoSync::NoSync(BucketedReducer& r) : r_(r), previous_(r.state_->no_sync) { r.state_->no_sync = true; }
BucketedReducer::NoSync::~NoSync() { r_.state_->no_sync = previous_; }

std::vector<std::vector<std::string>> BucketedReducer::bucket_names() const {
  std::vector<std::vector<std::string>> out;
  for (const auto& b : state_->buckets) {
    std::vector<std::string> names;
    for (int i : b.params) names.push_back(state_->params[static_cast<std::size_t>(i)].name);
    out.push_back(std::move(names));
  }
  return out;
}

std::vector<std::size_t> BucketedReducer::bucket_bytes() const {
  std::vector<std::size_t> out;
  for (const auto& b : state_->buckets) out.push_back(static_cast<std::size_t>(b.flat.numel()) * b.flat.element_size());
  return out;
}

bool BucketedReducer::buckets_rebuilt() const { return state_->rebuilt; }
std::int64_t BucketedReducer::iterations() const { return state_->iterations; }
BucketedReducer::Overlap BucketedReducer::last_overlap() const { return state_->overlap; }

}  // namespace ciuic::comm
