// Executor: buffer planning, per-thread forward/backward, gradient reduction.
#include "model/executor.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <stdexcept>
#include <utility>

#include "attn/random.hpp"

namespace attn {

namespace {
// Below this many parameters left after a fused run, the caller updates them alone: a pool
// round costs more than the work.
constexpr int64_t kSerialRest = 16384;
// The maximal runs [begin, end) of indices whose flag equals value.
std::vector<std::pair<int64_t, int64_t>> runs_of(const std::vector<bool>& flags, bool value) {
  std::vector<std::pair<int64_t, int64_t>> runs;
  const auto n = static_cast<int64_t>(flags.size());
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j < n && flags[j] == flags[i]) ++j;
    if (flags[i] == value) runs.emplace_back(i, j);
    i = j;
  }
  return runs;
}
}  // namespace

struct Executor::ThreadState {
  std::shared_ptr<float[]> scratch;
  std::shared_ptr<float[]> logits, logits_grad;
  std::shared_ptr<float[]> labels;
  std::shared_ptr<float[]> param_grads;
  std::vector<ForwardContext> fwd;
  std::vector<BackwardContext> bwd;
  std::vector<Team> teams;  // per call site (used by team sites only)
  int64_t begin = 0, count = 0;  // this run's slice of the batch (rows of the buffers)
  int64_t index_shift = 0;       // row r holds sample indices_[r + index_shift]
  BatchResult result;
};

Executor::Executor(Model& model, int threads) : model_(&model), pool_(threads) {
  // Number the symbolic tensors: every output of every call site (inputs included).
  std::map<const SymbolicTensor*, int>& id = tensor_id_;
  const auto& sites = model_->sites_;
  for (const auto& site : sites)
    for (const auto& weak : site->outputs) {
      auto t = weak.lock();
      if (!t) throw std::logic_error("executor: a layer output was released");
      id[t.get()] = static_cast<int>(tensor_size_.size());
      tensor_size_.push_back(shape_size(t->shape));
    }
  auto lookup = [&](const Node& n) {
    auto it = id.find(n.get());
    if (it == id.end()) throw std::invalid_argument("model: a layer input is not reachable from the model inputs");
    return it->second;
  };
  for (const Node& n : model_->inputs_) input_tensor_.push_back(lookup(n));
  output_tensor_ = lookup(model_->outputs_.at(0));
  const Shape& out_shape = model_->outputs_.at(0)->shape;
  output_width_ = out_shape.empty() ? 1 : std::max<int64_t>(1, out_shape.back());
  output_rows_ = std::max<int64_t>(1, tensor_size_[output_tensor_] / output_width_);

  needs_grad_.assign(tensor_size_.size(), false);
  buffer_of_.resize(tensor_size_.size());
  for (size_t t = 0; t < buffer_of_.size(); ++t) buffer_of_[t] = static_cast<int>(t);
  for (const auto& site : sites) {
    std::vector<int> ins, outs;
    for (const Node& n : site->inputs) ins.push_back(lookup(n));
    for (const auto& weak : site->outputs) outs.push_back(id[weak.lock().get()]);
    std::array<int, 5> masks;
    for (size_t m = 0; m < masks.size(); ++m) {
      const Node* node = site->options.masks()[m];
      masks[m] = *node ? lookup(*node) : -1;
    }
    site_masks_.push_back(masks);
    bool has_params = false;
    for (const Weight& w : site->layer->weights()) has_params |= w.trainable && site->layer->trainable();
    bool any_input_grad = false;
    for (int i : ins) any_input_grad |= needs_grad_[i];
    bool back = has_params || any_input_grad;
    for (int o : outs) needs_grad_[o] = back;
    site_backward_.push_back(back);
    // A reshape's output reads its input's floats in place; its gradient adds straight into the
    // input's (the sum the reshape's backward would have formed). Not for the model output: the
    // loss writes that gradient before the others are cleared.
    if (site->layer->output_is_input_view() && ins.size() == 1 && outs.size() == 1 && outs[0] != output_tensor_)
      buffer_of_[outs[0]] = buffer_of_[ins[0]];
    site_inputs_.push_back(ins);
    site_outputs_.push_back(outs);
  }
  for (int i = 0; i < pool_.size(); ++i) states_.push_back(std::make_unique<ThreadState>());
  team_work_ = std::make_unique<TeamWork[]>(static_cast<size_t>(pool_.size()));
  barrier_.pool = &pool_;

  // Parameter ranges written by team layers (into thread 0's buffer only) and by sliced layers
  // (into every thread's buffer, then reduced).
  std::vector<bool> team_param(model_->param_floats_, false);
  for (const auto& site : sites) {
    site_batch_statistics_.push_back(site->layer->uses_batch_statistics());
    batch_statistics_ = batch_statistics_ || site_batch_statistics_.back();
    const bool team = pool_.size() > 1 && site->layer->runs_as_team();
    site_team_.push_back(team);
    if (!team) continue;
    for (const Weight& w : site->layer->weights())
      std::fill(team_param.begin() + w.offset, team_param.begin() + w.offset + shape_size(w.shape), true);
  }
  team_ranges_ = runs_of(team_param, true);
  for (size_t i = 0; i < sites.size(); ++i) team_order_.push_back(site_team_[i] ? team_count_++ : -1);
  // Backward runs the sites in reverse, so the last site to read a tensor (through any view of
  // it) is the first to add to its gradient. Where that is a team site reading it once, the site
  // writes the gradient instead and the buffer is not cleared first (clearing would only move
  // its cache lines between the cores); the sites before it then add to what it wrote.
  std::vector<int> last_reader(tensor_size_.size(), -1);
  for (size_t i = 0; i < sites.size(); ++i)
    if (!is_view_site(i))
      for (int in : site_inputs_[i]) last_reader[buffer_of_[in]] = static_cast<int>(i);
  grad_written_by_team_.assign(tensor_size_.size(), false);
  site_writes_input_grads_.assign(sites.size(), false);
  for (size_t t = 0; t < tensor_size_.size(); ++t) {
    const int site = last_reader[t];
    if (site < 0 || !needs_grad_[t] || static_cast<int>(t) == output_tensor_ || !site_team_[site] ||
        !sites[site]->layer->team_writes_input_grads())
      continue;
    const auto& ins = site_inputs_[site];
    if (std::count_if(ins.begin(), ins.end(), [&](int in) { return buffer_of_[in] == static_cast<int>(t); }) != 1)
      continue;
    grad_written_by_team_[t] = true;
    site_writes_input_grads_[site] = true;
  }
  // A site writes all its input gradients or none.
  for (size_t i = 0; i < sites.size(); ++i)
    for (int in : site_inputs_[i])
      if (site_writes_input_grads_[i] && needs_grad_[in] && !grad_written_by_team_[buffer_of_[in]])
        site_writes_input_grads_[i] = false;
  for (size_t t = 0; t < tensor_size_.size(); ++t)
    if (grad_written_by_team_[t] && !site_writes_input_grads_[last_reader[t]]) grad_written_by_team_[t] = false;
  const auto first_team = std::find(site_team_.begin(), site_team_.end(), true);
  balanced_prefix_ = first_team == site_team_.end() ? 0 : static_cast<size_t>(first_team - site_team_.begin());
  for (size_t i = 0; i < balanced_prefix_; ++i)
    if (!sites[i]->layer->forward_is_per_sample()) balanced_prefix_ = 0;  // a split could change bits
  slice_ranges_ = runs_of(team_param, false);
  // A team layer called at one site only finishes its gradients within that site's backward, so
  // it may apply the optimizer step there; everything else is updated after the run.
  update_.executor = this;
  std::vector<bool> fused_param(model_->param_floats_, false);
  for (size_t i = 0; i < sites.size(); ++i) {
    int calls = 0;
    for (const auto& other : sites) calls += other->layer == sites[i]->layer ? 1 : 0;
    site_fusable_.push_back(site_team_[i] && calls == 1);
    if (!site_fusable_.back()) continue;
    for (const Weight& w : sites[i]->layer->weights())
      std::fill(fused_param.begin() + w.offset, fused_param.begin() + w.offset + shape_size(w.shape), true);
  }
  rest_ranges_ = runs_of(fused_param, false);
  for (const auto& [a, b] : rest_ranges_) rest_count_ += b - a;
  std::vector<bool> team_unfused(model_->param_floats_);
  for (int64_t i = 0; i < model_->param_floats_; ++i) team_unfused[i] = team_param[i] && !fused_param[i];
  team_unfused_ranges_ = runs_of(team_unfused, true);
}

void Executor::PoolUpdate::apply(int64_t begin, int64_t end) {
  Model& m = *executor->model_;
  m.optimizer_->update_range(m.params_.get(), executor->states_[0]->param_grads.get(), begin, end);
}

Executor::~Executor() = default;

bool Executor::plan_is_current(const Model& model) const {
  const auto& sites = model.sites_;
  for (size_t i = 0; i < sites.size(); ++i)
    if (sites[i]->layer->uses_batch_statistics() != site_batch_statistics_[i]) return false;
  return true;
}

int64_t Executor::output_size() const { return tensor_size_[output_tensor_]; }

bool Executor::computes(const SymbolicTensor* node) const { return tensor_id_.count(node) != 0; }

void Executor::plan(int64_t max_batch) {
  if (max_batch <= planned_) return;
  const int n_threads = pool_.size();
  int64_t slice = (max_batch + n_threads - 1) / n_threads;
  // A training batch of fewer samples than threads runs on one thread when a layer needs the
  // whole batch's statistics (see run()).
  if (batch_statistics_) slice = std::max(slice, std::min<int64_t>(max_batch, n_threads - 1));
  const auto& sites = model_->sites_;
  const int64_t label_size = 64;  // generous per-sample label room (class ids or one-hot rows)
  const int64_t rows = slice * n_threads;
  act_.assign(tensor_size_.size(), nullptr);
  grad_.assign(tensor_size_.size(), nullptr);
  for (size_t t = 0; t < tensor_size_.size(); ++t) {
    const int root = buffer_of_[t];  // a view's root comes before it
    act_[t] = root == static_cast<int>(t) ? allocate_floats(rows * tensor_size_[t]) : act_[root];
    if (needs_grad_[t]) grad_[t] = root == static_cast<int>(t) ? allocate_floats(rows * tensor_size_[t]) : grad_[root];
  }
  int64_t team_floats = 0;
  for (size_t i = 0; i < sites.size(); ++i)
    if (site_team_[i]) team_floats = std::max(team_floats, sites[i]->layer->team_floats(rows, n_threads));
  for (auto& buffer : team_shared_) buffer = allocate_floats(std::max<int64_t>(team_floats, 1));
  saved_.assign(sites.size(), nullptr);
  saved_per_sample_.assign(sites.size(), 0);
  for (size_t i = 0; i < sites.size(); ++i) {
    saved_per_sample_[i] = sites[i]->layer->saved_floats_per_sample(sites[i]->options);
    saved_[i] = allocate_floats(std::max<int64_t>(rows * saved_per_sample_[i], 1));
  }
  for (auto& st : states_) st->param_grads = allocate_floats(model_->param_floats_);
  for (int thread = 0; thread < n_threads; ++thread) {
    ThreadState& s = *states_[thread];
    int64_t scratch = 0;
    for (const auto& site : sites) scratch = std::max(scratch, site->layer->scratch_floats(slice, site->options));
    s.scratch = allocate_floats(scratch);
    s.logits = allocate_floats(slice * output_size());
    s.logits_grad = allocate_floats(slice * output_size());
    s.labels = allocate_floats(slice * std::max<int64_t>(label_size, output_size()));
    // Contexts are built once; a run only updates batch, offsets, slice pointers, mode and seed.
    s.fwd.assign(sites.size(), {});
    s.bwd.assign(sites.size(), {});
    s.teams.assign(sites.size(), {});
    for (size_t i = 0; i < sites.size(); ++i) {
      ForwardContext& f = s.fwd[i];
      BackwardContext& b = s.bwd[i];
      Team& team = s.teams[i];
      f.call = b.call = &sites[i]->options;
      for (int t : site_inputs_[i]) {
        f.inputs.push_back(nullptr);
        b.inputs.push_back(nullptr);
        b.input_grads.push_back(nullptr);
        team.inputs.push_back(act_[t].get());
        team.input_grads.push_back(needs_grad_[t] ? grad_[t].get() : nullptr);
      }
      const size_t outputs = site_outputs_[i].size();
      f.outputs.assign(outputs, nullptr);
      b.outputs.assign(outputs, nullptr);
      b.output_grads.assign(outputs, nullptr);
      team.index = thread;
      team.size = n_threads;
      team.barrier = &barrier_;
      team.shared = nullptr;  // set per phase (forward_context, run_slice)
      team.work = team_work_.get();
      team.param_grads = states_[0]->param_grads.get();
      f.scratch = b.scratch = s.scratch.get();
      b.param_grads = s.param_grads.get();
      if (site_outputs_[i][0] == output_tensor_ && model_->hidden_logits_) {
        f.logits = s.logits.get();
        b.output_grad_is_logits = true;
      }
    }
  }
  planned_ = rows;
}

Executor::BatchResult Executor::run(const std::vector<Tensor>& xs, const Tensor* y, const int64_t* indices,
                                    int64_t batch, bool train, bool training_mode, uint64_t seed) {
  model_->claim_weights();  // a model sharing layers with this one may have run since (a callback)
  if (xs.size() != input_tensor_.size())
    throw std::invalid_argument("model expects " + std::to_string(input_tensor_.size()) + " input arrays, got " +
                                std::to_string(xs.size()));
  plan(batch);
  xs_ = &xs;
  y_ = y;
  indices_ = indices;
  batch_ = batch;
  train_ = train;
  training_mode_ = training_mode;
  seed_ = seed;
  prefetch_ = std::exchange(prefetch_indices_, nullptr);
  prefetch_count_ = std::exchange(prefetch_batch_, 0);
  grad_scale_ = model_->loss_ ? static_cast<float>(1.0 / model_->loss_->reduction_divisor(batch * output_rows_)) : 0.0f;
  const int n = pool_.size();
  // A layer that normalizes with the batch's statistics sees the whole batch: as a team, or,
  // when the batch is too small for one, on thread 0 alone.
  const bool one_thread = train && batch_statistics_ && batch < n;
  for (int t = 0; t < n; ++t) {
    states_[t]->begin = one_thread ? (t == 0 ? 0 : batch) : batch * t / n;
    states_[t]->count = one_thread ? (t == 0 ? batch : 0) : batch * (t + 1) / n - states_[t]->begin;
    states_[t]->index_shift = 0;
  }
  // Teams need every thread to hold samples (each meets the others at barriers). They pay off in
  // training, where each thread differentiates and updates only its share of a large W. Forward
  // passes alone run every layer on each thread's slice: W is only read, so once each core has a
  // copy no cache line moves, no barrier is met, and a sample's result does not depend on the
  // thread count.
  team_active_ = train && batch >= n && std::find(site_team_.begin(), site_team_.end(), true) != site_team_.end();
  // Without clipping, begin_step() reads no gradient, so the step can start before they exist.
  fused_ = train && team_active_ && !model_->optimizer_->clips() &&
           std::find(site_fusable_.begin(), site_fusable_.end(), true) != site_fusable_.end();
  if (fused_) model_->optimizer_->begin_step(nullptr);
  for (int t = 0; t < n; ++t)
    team_work_[t].reset(static_cast<uint32_t>(states_[t]->begin),
                        static_cast<uint32_t>(states_[t]->begin + states_[t]->count));
  auto slice_fn = [this](int t) { run_slice(t); };
  pool_.run(slice_fn);
  BatchResult total;
  for (auto& s : states_) {
    total.loss_sum += s->result.loss_sum;
    total.correct += s->result.correct;
  }
  if (fused_) {
    // The fused teams updated their ranges; the rest (small layers, shared ones) are reduced and
    // updated here, on the caller alone when they are few.
    if (rest_count_ < kSerialRest) {
      update_rest(-1);
    } else {
      auto rest_fn = [this](int t) { update_rest(t); };
      pool_.run(rest_fn);
    }
    model_->optimizer_->end_step();
  } else if (train) {
    // Each thread sums its range of the per-thread gradients (always in thread order, so a
    // thread count is bit-reproducible) and updates that range of the parameters: one pass
    // over memory, split across threads. Clipping needs the complete gradients first.
    optimizers::Optimizer& opt = *model_->optimizer_;
    float* params = model_->params_.get();
    float* grads = states_[0]->param_grads.get();
    if (opt.clips()) {
      if (n > 1) {
        auto reduce_fn = [this](int t) { reduce_gradients(t); };
        pool_.run(reduce_fn);
      }
      opt.begin_step(grads);
      auto update_fn = [&](int t) {
        opt.update_range(params, grads, range_begin(t), range_begin(t + 1));
        prefetch_inputs(t);
      };
      pool_.run(update_fn);
    } else {
      opt.begin_step(grads);
      auto step_fn = [&](int t) {
        reduce_gradients(t);
        opt.update_range(params, grads, range_begin(t), range_begin(t + 1));
        prefetch_inputs(t);
      };
      pool_.run(step_fn);
    }
    opt.end_step();
  }
  return total;
}

void Executor::run_forward_batches(const std::vector<Tensor>& xs, const Tensor* y, const int64_t* indices, int64_t n,
                                   int64_t batch_size, int64_t first, int64_t last, BatchResult* results,
                                   const std::vector<ForwardCopy>& copies, uint64_t seed) {
  model_->claim_weights();
  if (xs.size() != input_tensor_.size())
    throw std::invalid_argument("model expects " + std::to_string(input_tensor_.size()) + " input arrays, got " +
                                std::to_string(xs.size()));
  // A batch larger than the data is the data: no buffers sized for samples that do not exist.
  batch_size = std::min(batch_size, std::max<int64_t>(n, 1));
  const int threads = pool_.size();
  std::vector<std::pair<int, int64_t>> copy_tensors;  // tensor, floats per sample
  for (const ForwardCopy& c : copies) {
    const int tensor = tensor_id_.at(c.node);
    copy_tensors.emplace_back(tensor, tensor_size_[tensor]);
  }
  // Batch rows from `row` of the buffers to samples [start, start + count) of each copy.
  const auto copy_out = [&](int64_t row, int64_t start, int64_t count) {
    for (size_t c = 0; c < copies.size(); ++c) {
      const auto [tensor, size] = copy_tensors[c];
      std::memcpy(copies[c].out + start * size, act_[tensor].get() + row * size, count * size * sizeof(float));
    }
  };
  if (last - first < threads) {  // too few batches to go round: each is split across the threads
    for (int64_t b = first; b < last; ++b) {
      const int64_t start = b * batch_size, count = std::min(batch_size, n - start);
      sample_base_ = start;
      results[b - first] = run(xs, y, indices + start, count, false, false, seed);
      sample_base_ = 0;
      copy_out(0, start, count);
    }
    return;
  }
  plan(batch_size * threads);
  xs_ = &xs;
  y_ = y;
  indices_ = indices;
  batch_ = batch_size;
  train_ = training_mode_ = false;
  seed_ = seed;
  prefetch_ = nullptr;  // an announced prefetch is kept for the next run()
  prefetch_count_ = 0;
  team_active_ = fused_ = false;
  std::atomic<int64_t> next{first};
  auto batches_fn = [&](int t) {
    ThreadState& s = *states_[t];
    for (int64_t b; (b = next.fetch_add(1, std::memory_order_relaxed)) < last;) {
      const int64_t start = b * batch_size;
      s.begin = t * batch_size;  // this thread's rows
      s.count = std::min(batch_size, n - start);
      s.index_shift = start - s.begin;
      run_slice(t);
      results[b - first] = s.result;
      copy_out(s.begin, start, s.count);
    }
  };
  pool_.run(batches_fn);
}

void Executor::update_rest(int t) {
  const int n = pool_.size();
  float* grads = states_[0]->param_grads.get();
  const int64_t begin = t < 0 ? 0 : range_begin(t), end = t < 0 ? model_->param_floats_ : range_begin(t + 1);
  for (const auto& [a, b] : rest_ranges_) {
    const int64_t lo = std::max(a, begin), hi = std::min(b, end);
    if (lo >= hi) continue;
    for (const auto& [sa, sb] : slice_ranges_) {  // per-thread gradients: sum into thread 0's
      const int64_t rlo = std::max(lo, sa), rhi = std::min(hi, sb);
      for (int s = 1; s < n && rlo < rhi; ++s) {
        const float* src = states_[s]->param_grads.get();
        for (int64_t i = rlo; i < rhi; ++i) grads[i] += src[i];
      }
    }
    model_->optimizer_->update_range(model_->params_.get(), grads, lo, hi);
  }
}

int64_t Executor::range_begin(int t) const {
  // Split points rounded to 16 floats (64 bytes) so threads never share a cache line.
  const int n = pool_.size();
  const int64_t p = model_->param_floats_;
  if (t >= n) return p;
  return std::min(p, (p * t / n) & ~int64_t(15));
}

void Executor::reduce_gradients(int t) {
  const int n = pool_.size();
  float* __restrict dst = states_[0]->param_grads.get();
  const auto reduce = [&](int64_t begin, int64_t end) {
    for (int s = 1; s < n; ++s) {
      const float* __restrict src = states_[s]->param_grads.get();
      for (int64_t i = begin; i < end; ++i) dst[i] += src[i];
    }
  };
  const int64_t begin = range_begin(t), end = range_begin(t + 1);
  if (!team_active_) return reduce(begin, end);
  for (const auto& [a, b] : slice_ranges_)  // team ranges are complete in thread 0's buffer
    if (std::max(a, begin) < std::min(b, end)) reduce(std::max(a, begin), std::min(b, end));
}

void Executor::zero_param_grads(int t) {
  float* own = states_[t]->param_grads.get();
  if (!team_active_) {
    std::memset(own, 0, model_->param_floats_ * sizeof(float));
    return;
  }
  for (const auto& [a, b] : slice_ranges_) std::memset(own + a, 0, (b - a) * sizeof(float));
  // Team ranges live in thread 0's buffer only; each thread clears its share of them (a team
  // layer writes gradients only after a barrier, so every share is clear by then).
  float* shared = states_[0]->param_grads.get();
  const int64_t begin = range_begin(t), end = range_begin(t + 1);
  for (const auto& [a, b] : fused_ ? team_unfused_ranges_ : team_ranges_)  // fused teams write theirs
    if (std::max(a, begin) < std::min(b, end))
      std::memset(shared + std::max(a, begin), 0, (std::min(b, end) - std::max(a, begin)) * sizeof(float));
}

void Executor::prefetch_inputs(int t) const {
  // Called as each thread's last work in a run, so the lines arrive while the next run starts
  // instead of being pushed out again by this run's backward pass and optimizer step. (Some CPUs
  // drop software prefetches that miss the TLB; the training arrays are on small pages all the
  // same, whose first touch costs far less here, see allocate_floats.)
  if (prefetch_ == nullptr) return;
  const int n = pool_.size();
  const int64_t begin = prefetch_count_ * t / n, end = prefetch_count_ * (t + 1) / n;
  constexpr int64_t kLineFloats = 16;
  for (size_t i = 0; i < input_tensor_.size(); ++i) {
    const int64_t size = tensor_size_[input_tensor_[i]];
    const float* base = (*xs_)[i].data();
    for (int64_t r = begin; r < end; ++r) {
      const float* row = base + prefetch_[r] * size;
      for (int64_t f = 0; f < size; f += kLineFloats) __builtin_prefetch(row + f, 0, 3);
      __builtin_prefetch(row + size - 1, 0, 3);  // a row need not start on a line
    }
  }
}

void Executor::copy_inputs(int64_t begin, int64_t count, int64_t index_shift) {
  const int64_t* indices = indices_ + begin + index_shift;
  for (size_t i = 0; i < input_tensor_.size(); ++i) {
    const int64_t size = tensor_size_[input_tensor_[i]];
    const float* src = (*xs_)[i].data();
    float* dst = act_[input_tensor_[i]].get() + begin * size;
    for (int64_t r = 0; r < count; ++r) std::memcpy(dst + r * size, src + indices[r] * size, size * sizeof(float));
  }
}

ForwardContext& Executor::forward_context(ThreadState& s, size_t i, int64_t begin, int64_t count) {
  const auto rows_of = [begin, this](const std::shared_ptr<float[]>& whole, int tensor) {
    return whole ? whole.get() + begin * tensor_size_[tensor] : nullptr;
  };
  ForwardContext& f = s.fwd[i];
  for (size_t k = 0; k < f.inputs.size(); ++k) f.inputs[k] = rows_of(act_[site_inputs_[i][k]], site_inputs_[i][k]);
  for (size_t k = 0; k < f.outputs.size(); ++k) f.outputs[k] = rows_of(act_[site_outputs_[i][k]], site_outputs_[i][k]);
  for (size_t m = 0; m < site_masks_[i].size(); ++m)
    if (const int tensor = site_masks_[i][m]; tensor >= 0) *f.masks()[m] = rows_of(act_[tensor], tensor);
  f.saved = saved_[i].get() + begin * saved_per_sample_[i];
  f.team = team_active_ && site_team_[i] ? &s.teams[i] : nullptr;
  s.teams[i].batch = batch_;
  if (site_team_[i]) s.teams[i].shared = team_shared_[team_order_[i] % 2].get();  // phase k of the step
  s.teams[i].slice_begin = s.begin;
  s.teams[i].update = fused_ && site_fusable_[i] ? &update_ : nullptr;
  s.teams[i].inputs_ready = team_active_ && i == balanced_prefix_ && balanced_prefix_ > 0;
  s.teams[i].write_input_grads = team_active_ && site_writes_input_grads_[i];
  f.batch = count;
  f.sample_offset = sample_base_ + begin + s.index_shift;  // the sample's index in this call
  f.training = model_->sites_[i]->options.training.value_or(training_mode_);
  f.seed = hash_combine(seed_, i);
  return f;
}

void Executor::run_slice(int t) {
  ThreadState& s = *states_[t];
  s.result = {};
  const int64_t count = s.count;
  if (count == 0) {  // never with teams: team_active_ needs batch >= threads
    if (train_) zero_param_grads(t);
    return;
  }
  const auto slice_of = [&s, this](const std::shared_ptr<float[]>& whole, int tensor) {
    return whole ? whole.get() + s.begin * tensor_size_[tensor] : nullptr;
  };
  const auto& sites = model_->sites_;
  // With teams, the sites before the first team site take their samples from this thread's
  // slice in shrinking pieces (TeamWork), and then from the other slices' ends: a sample's cost
  // depends on its data, and a core is often slowed for a while on these virtual machines, so
  // fixed slices would leave one thread waiting at the team's first barrier. A sample's forward
  // does not depend on the thread that runs it; the backward runs on the fixed slices.
  const size_t prefix = team_active_ ? balanced_prefix_ : 0;
  if (prefix > 0) {
    const auto run_prefix = [&](int64_t begin, int64_t rows) {
      copy_inputs(begin, rows, 0);
      for (size_t i = 0; i < prefix; ++i) {
        ForwardContext& f = forward_context(s, i, begin, rows);
        if (!is_view_site(i)) sites[i]->layer->forward(f);
      }
    };
    take_team_work(team_work_.get(), t, pool_.size(), run_prefix);
    barrier_.wait();  // every sample has been through the prefix
  } else {
    copy_inputs(s.begin, count, s.index_shift);
  }
  for (size_t i = 0; i < sites.size(); ++i) {
    ForwardContext& f = forward_context(s, i, s.begin, count);  // the prefix's too: backward reads them
    if (i >= prefix && !is_view_site(i)) sites[i]->layer->forward(f);
  }
  const float* pred = slice_of(act_[output_tensor_], output_tensor_);
  if (y_ && model_->loss_) {
    const int64_t label_size = y_->size() / y_->dim(0);
    float* labels = s.labels.get();
    for (int64_t r = 0; r < count; ++r)
      std::memcpy(labels + r * label_size, y_->data() + indices_[s.begin + r + s.index_shift] * label_size,
                  label_size * sizeof(float));
    losses::LossBatch lb;
    lb.y_pred = model_->hidden_logits_ ? s.logits.get() : pred;
    lb.y_true = labels;
    lb.batch = count * output_rows_;
    lb.width = output_width_;
    float* grad = nullptr;
    if (train_) grad = model_->hidden_logits_ ? s.logits_grad.get() : slice_of(grad_[output_tensor_], output_tensor_);
    s.result.loss_sum = model_->loss_->sum_and_gradient(lb, model_->hidden_logits_, grad, grad_scale_);
    if (compute_accuracy)
      s.result.correct = metrics::count_correct(accuracy_kind, pred, labels, count * output_rows_, output_width_);
  }
  if (!train_) {
    prefetch_inputs(t);
    return;
  }
  zero_param_grads(t);
  for (size_t t2 = 0; t2 < tensor_size_.size(); ++t2)
    if (needs_grad_[t2] && static_cast<int>(t2) != output_tensor_ && buffer_of_[t2] == static_cast<int>(t2) &&
        !(team_active_ && grad_written_by_team_[t2]))
      std::memset(slice_of(grad_[t2], static_cast<int>(t2)), 0, count * tensor_size_[t2] * sizeof(float));
  int team_phase = team_count_;  // the backward phases follow the forward ones
  for (size_t i = sites.size(); i-- > 0;) {
    if (!site_backward_[i] || is_view_site(i)) continue;
    BackwardContext& b = s.bwd[i];
    for (size_t k = 0; k < b.inputs.size(); ++k) {
      const int tensor = site_inputs_[i][k];
      b.inputs[k] = slice_of(act_[tensor], tensor);
      b.input_grads[k] = needs_grad_[tensor] ? slice_of(grad_[tensor], tensor) : nullptr;
    }
    for (size_t k = 0; k < b.outputs.size(); ++k) {
      const int tensor = site_outputs_[i][k];
      b.outputs[k] = slice_of(act_[tensor], tensor);
      b.output_grads[k] = needs_grad_[tensor] ? slice_of(grad_[tensor], tensor) : nullptr;
    }
    if (b.output_grad_is_logits) b.output_grads[0] = s.logits_grad.get();
    for (size_t m = 0; m < site_masks_[i].size(); ++m)
      if (const int tensor = site_masks_[i][m]; tensor >= 0) *b.masks()[m] = slice_of(act_[tensor], tensor);
    b.team = s.fwd[i].team;
    if (b.team) b.team->shared = team_shared_[team_phase++ % 2].get();  // after every forward phase
    b.saved = s.fwd[i].saved;
    b.batch = count;
    b.sample_offset = s.begin;
    b.training = s.fwd[i].training;
    b.seed = s.fwd[i].seed;
    sites[i]->layer->backward(b);
  }
  if (fused_) prefetch_inputs(t);  // else after this thread's share of the optimizer step
}

}  // namespace attn
