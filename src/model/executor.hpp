// Executor: runs a model's call sites over batches with buffers planned once.
// Each thread owns a slice of the batch (rows of whole-batch activation, gradient and
// saved buffers), its own scratch buffer and its own parameter-gradient buffer;
// gradients are reduced across threads in a fixed order, so a given thread count is
// bit-reproducible. In training, layers that run as a team (Layer::runs_as_team) see the
// whole batch on every thread and write their parameter gradients straight into thread 0's
// buffer, which then needs no reduction for them; the layers before the first team layer
// then run on balanced shares of the batch (TeamWork), where a split cannot change a result.
// Forward passes alone run every layer on slices, or (run_forward_batches) whole batches per
// thread. A training batch smaller than the thread count runs on one thread when a layer needs
// the whole batch's statistics (BatchNormalization), as it cannot form a team.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "attn/model.hpp"
#include "model/thread_pool.hpp"

namespace attn {

class Executor {
 public:
  Executor(Model& model, int threads);
  ~Executor();

  // Buffers for batches of up to max_batch samples; no-op when already large enough.
  void plan(int64_t max_batch);

  struct BatchResult {
    double loss_sum = 0.0;  // sum of per-sample losses (divide by the loss's divisor)
    double correct = 0.0;   // samples counted correct by the accuracy metric
  };
  // Forward (and, when train, backward + optimizer step) over the samples
  // indices[0..batch) of xs / y. y may be null (no loss).
  BatchResult run(const std::vector<Tensor>& xs, const Tensor* y, const int64_t* indices, int64_t batch, bool train,
                  bool training_mode, uint64_t seed);

  // Where run_forward_batches copies a node's values: out is [n, floats per sample of node].
  struct ForwardCopy {
    const SymbolicTensor* node;
    float* out;
  };
  // Forward only (inference mode) over batches [first, last) of batch_size consecutive entries
  // of indices[0..n) (the last batch may be short). With at least as many batches as threads,
  // each batch runs start to end on one thread, the next free thread taking the next batch: no
  // thread waits for another within a batch, where split batches wait for their slowest slice
  // (a sample's cost depends on its data) and meet twice per batch, and every sample gets the
  // bits a 1-thread run gives it (planning room for batch_size rows per thread). Fewer batches
  // are each split across the threads, as run() does. results[b - first] gets batch b's sums
  // (y may be null: zeros); each copy gets the batch's rows of its node.
  // `seed` keys the dropout of layers pinned to training=true (Model::next_forward_seed(), once
  // per evaluate or predict): each sample's mask is hash(seed, its index in indices), whatever the
  // batches, rounds or threads.
  void run_forward_batches(const std::vector<Tensor>& xs, const Tensor* y, const int64_t* indices, int64_t n,
                           int64_t batch_size, int64_t first, int64_t last, BatchResult* results,
                           const std::vector<ForwardCopy>& copies, uint64_t seed);

  // Announces the batch after the next run (fit's next batch, same input arrays): at the end
  // of the next run() each thread prefetches its share of those samples' input rows, so that a
  // shuffled batch is not gathered from memory while the step waits (~15 us per reference step
  // here). Applies to the next run() only; the indices must stay valid until it returns.
  void prefetch_for_next_run(const int64_t* indices, int64_t batch) {
    prefetch_indices_ = indices;
    prefetch_batch_ = batch;
  }

  int threads() const { return pool_.size(); }
  // The model object this executor runs (a moved Model hands its executor along).
  void rebind(Model& model) { model_ = &model; }
  // False once a layer's uses_batch_statistics() differs from the plan's (a BatchNormalization
  // frozen or unfrozen since): its batch statistics must see the whole batch, so a new plan is due.
  bool plan_is_current(const Model& model) const;
  int64_t output_size() const;  // floats per sample of the model output
  // The loss and the accuracy see the output as rows of its last axis, as Keras reduces them
  // (a (T, C) output per sample: T rows of C classes, the loss averaged over batch x T).
  int64_t output_rows() const { return output_rows_; }    // rows per sample (1 for a (C,) output)
  int64_t output_width() const { return output_width_; }  // the last axis
  // Whether a run computes this symbolic tensor (it is in the model); run_forward_batches
  // copies out such tensors' values.
  bool computes(const SymbolicTensor* node) const;

  // Set by the model before a run: the metric (if any) and its kind.
  bool compute_accuracy = false;
  metrics::AccuracyKind accuracy_kind = metrics::AccuracyKind::kSparseCategorical;

 private:
  int64_t output_rows_ = 1, output_width_ = 1;
  struct ThreadState;
  struct PoolBarrier : TeamBarrier {
    ThreadPool* pool = nullptr;
    void wait() override { pool->barrier(); }
  };
  struct PoolUpdate : TeamUpdate {
    Executor* executor = nullptr;
    void apply(int64_t begin, int64_t end) override;
  };
  void run_slice(int t);
  void copy_inputs(int64_t begin, int64_t count, int64_t index_shift);  // the samples of rows [begin, begin + count)
  // Site i's forward context in thread state s, pointed at rows [begin, begin + count).
  ForwardContext& forward_context(ThreadState& s, size_t i, int64_t begin, int64_t count);
  void prefetch_inputs(int t) const;  // thread t's share of this run's prefetch_ samples
  void update_rest(int t);  // after a fused run: the ranges no team updated
  void zero_param_grads(int t);
  void reduce_gradients(int t);
  int64_t range_begin(int t) const;  // thread t's share of the parameter buffer

  Model* model_;  // re-pointed by Model::executor() after the model is moved
  ThreadPool pool_;
  std::vector<std::vector<int64_t>> sizes_;  // per tensor: floats per sample
  std::vector<int64_t> tensor_size_;
  std::map<const SymbolicTensor*, int> tensor_id_;  // every call site output (inputs included)
  std::vector<bool> needs_grad_;
  std::vector<bool> site_backward_;
  std::vector<int> buffer_of_;    // per tensor: the tensor whose buffers it uses (itself unless a view)
  // The site's output shares its input's buffers: nothing to run.
  bool is_view_site(size_t i) const { return buffer_of_[site_outputs_[i][0]] != site_outputs_[i][0]; }
  std::vector<int> input_tensor_;        // model input i -> tensor id
  int output_tensor_ = -1;
  std::vector<std::vector<int>> site_inputs_, site_outputs_;
  std::vector<std::array<int, 5>> site_masks_;  // per site, CallOptions::masks() order: tensor or -1
  int64_t planned_ = 0;
  std::vector<std::unique_ptr<ThreadState>> states_;
  std::vector<std::shared_ptr<float[]>> act_;   // per tensor [planned_, size]
  std::vector<std::shared_ptr<float[]>> grad_;  // per tensor, null when no gradient
  std::vector<std::shared_ptr<float[]>> saved_;  // per call site [planned_, saved floats per sample]
  std::vector<int64_t> saved_per_sample_;
  // Two buffers for the teams' shared memory, used in turn by the team phases of a step (each
  // team site's forward, then their backwards in reverse): a layer may write its buffer before
  // its first barrier while a slower thread still reads what the previous team phase left in
  // its buffer after that phase's last barrier. Any earlier phase is separated by a barrier.
  std::shared_ptr<float[]> team_shared_[2];
  std::vector<int> team_order_;  // per site: its place among the team sites (forward order), or -1
  int team_count_ = 0;
  std::unique_ptr<TeamWork[]> team_work_;  // one per thread
  std::vector<bool> site_team_;                  // runs as a team when team_active_
  // With teams: gradient buffers that one team site alone writes (not cleared first), and the
  // sites that write them (Team::write_input_grads).
  std::vector<bool> grad_written_by_team_, site_writes_input_grads_;
  std::vector<std::pair<int64_t, int64_t>> team_ranges_, slice_ranges_;  // parameter ranges by owner
  std::vector<bool> site_fusable_;  // team site whose layer is called nowhere else
  std::vector<std::pair<int64_t, int64_t>> rest_ranges_;  // ranges not updated inside fused teams
  std::vector<std::pair<int64_t, int64_t>> team_unfused_ranges_;  // team ranges among them
  int64_t rest_count_ = 0;
  PoolBarrier barrier_;
  PoolUpdate update_;
  bool team_active_ = false;  // this run: team sites run as teams (batch >= threads)
  bool fused_ = false;        // this run: fusable team sites apply the optimizer step themselves
  // With teams, the sites before the first team site (the attention, in the reference model)
  // run on balanced shares of the batch (see run_slice); 0 when no site runs as a team.
  size_t balanced_prefix_ = 0;

  // The current run's arguments, read by every thread.
  const std::vector<Tensor>* xs_ = nullptr;
  const Tensor* y_ = nullptr;
  const int64_t* indices_ = nullptr;
  int64_t batch_ = 0;
  bool train_ = false;
  bool training_mode_ = false;
  bool batch_statistics_ = false;          // a layer uses_batch_statistics()
  std::vector<bool> site_batch_statistics_;  // per site, as planned
  uint64_t seed_ = 0;
  int64_t sample_base_ = 0;     // index of this run's first sample among the call's (dropout keys)
  float grad_scale_ = 0.0f;
  const int64_t* prefetch_indices_ = nullptr;  // set for the next run only
  int64_t prefetch_batch_ = 0;
  const int64_t* prefetch_ = nullptr;  // this run's
  int64_t prefetch_count_ = 0;
};

}  // namespace attn
