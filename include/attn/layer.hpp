// The layer contract and the symbolic graph it is called on.
//
// A layer owns its weights, infers output shapes when first called (build), runs
// forward over a batch slice, and runs backward from what it saved in forward.
// Backward ADDS into input gradients and parameter gradients (callers zero them).
// A layer never allocates inside forward/backward: the model hands it `saved`
// (kept from forward to backward, per sample) and `scratch` (temporary) memory.
#pragma once

#include <algorithm>
#include <atomic>
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/tensor.hpp"

namespace attn {

class Layer;
struct CallSite;

// A symbolic tensor: one output of one call of a layer (Keras' KerasTensor).
struct SymbolicTensor {
  std::shared_ptr<CallSite> site;
  int index = 0;
  Shape shape;  // without the batch axis
  // The mask Keras attaches to this tensor (its _keras_mask): a (batch, steps) tensor whose
  // nonzero values mark the steps to keep. Embedding(mask_zero) makes one (its ids: nonzero =
  // keep); layers that support masking pass it on (Layer::compute_mask), and attention and
  // pooling layers use it where the call does not give that mask explicitly.
  std::shared_ptr<SymbolicTensor> keras_mask;
};
using Node = std::shared_ptr<SymbolicTensor>;

// Keyword arguments of one call, as Keras' call signature has them.
struct CallOptions {
  std::optional<bool> training = std::nullopt;         // an explicit training=... pins the mode for this call
  bool use_causal_mask = false;         // Attention
  bool return_attention_scores = false;  // Attention: a second output (batch, Tq, Tv)
  Node query_mask = nullptr;                      // Attention: (batch, Tq) of 0/1, optional
  Node value_mask = nullptr;                      // Attention: (batch, Tv) of 0/1, optional
  Node key_mask = nullptr;        // MultiHeadAttention: (batch, Tv) of 0/1; ignored without a separate key
  Node attention_mask = nullptr;  // MultiHeadAttention: (batch, Tq, Tv) of 0/1 (nonzero = attend)
  Node mask = nullptr;            // GlobalAveragePooling1D: (batch, steps), nonzero = steps to average
  // Bit i set: masks()[i] was taken from the inputs' Keras masks when the layer was called, as
  // Keras fills a mask argument left None; such masks are not written to model configs.
  unsigned implicit_masks = 0;

  // Every mask argument, set or not, so graph code can walk them alike.
  std::array<const Node*, 5> masks() const { return {&query_mask, &value_mask, &key_mask, &attention_mask, &mask}; }
  bool is_implicit(size_t i) const { return (implicit_masks >> i) & 1u; }
};

// One call of a layer on symbolic inputs (Keras' Node).
struct CallSite {
  std::shared_ptr<Layer> layer;
  std::vector<Node> inputs;
  CallOptions options;
  std::vector<std::weak_ptr<SymbolicTensor>> outputs;
  int index_in_layer = 0;  // Keras node index, for "connected to" and inbound_nodes
};

struct Weight {
  std::string name;      // Keras variable name: "kernel", "bias", "scale"
  Shape shape;
  std::string initializer;  // "glorot_uniform", "zeros", "ones"
  bool trainable = true;
  // A view into the parameter buffer of the model that ran (or was built) last: each model
  // points it at its own before running, copying the current values in (a layer shared by two
  // models). Assigning a tensor of `shape` sets the values the next run uses.
  Tensor value;
  int64_t offset = -1;   // position in that model's parameter (and gradient) buffer
};

// A team run of one layer: with several threads, each thread normally runs every layer on its
// own slice of the batch. In training a layer can instead run as a team (Layer::runs_as_team):
// every thread then calls it with the whole batch visible and meets the others at barriers
// (forward passes alone always run on slices: reading W needs no split). Dense splits its
// weights this way: at batch 20 its 313 KB of W outweigh its 63 KB of inputs, so each thread
// should read only its share. The layers before the first team layer run on each thread's slice
// too, but a thread done early takes samples from the others' ends (TeamWork; one at a time to
// every thread in turn measured slower: each core then touches every sample). The context's own
// slice fields (batch, saved, scratch, logits, slice pointers) stay valid.
struct TeamBarrier {
  virtual void wait() = 0;  // returns once every thread of the team has called it
 protected:
  ~TeamBarrier() = default;
};

// The optimizer step for a range of parameters, called from inside a team backward.
struct TeamUpdate {
  virtual void apply(int64_t begin, int64_t end) = 0;  // parameter offsets [begin, end)
 protected:
  ~TeamUpdate() = default;
};

// One thread's claimable work items [front, back) in a team layer that balances its work: the
// owner takes items from the front, and threads done with their own take from the back. On
// shared virtual machines a core is often slowed for long stretches (by other guests), and
// fixed shares then leave the others waiting at the next barrier. Whichever thread runs an item
// must compute the same result.
struct alignas(64) TeamWork {
  std::atomic<uint64_t> range{0};  // front in the low 32 bits, back in the high 32
  // Before a barrier that precedes any take (the reset must be visible to every thread).
  void reset(uint32_t front, uint32_t back) {
    range.store(uint64_t{back} << 32 | front, std::memory_order_relaxed);
  }
  // The owner: half of what is left (at least one item), as [first, first + count); count 0
  // once empty. Large first pieces keep the owner's passes long; the halving leaves small ones
  // at the end for others to take.
  std::pair<int64_t, int64_t> take_front() {
    uint64_t r = range.load(std::memory_order_relaxed);
    for (;;) {
      const auto f = static_cast<uint32_t>(r), b = static_cast<uint32_t>(r >> 32);
      if (f >= b) return {f, 0};
      const uint32_t count = std::max<uint32_t>(1, (b - f) / 2);
      if (range.compare_exchange_weak(r, uint64_t{b} << 32 | (f + count), std::memory_order_relaxed))
        return {f, count};
    }
  }
  // Another thread: the last item, or -1 once empty.
  int64_t take_back() {
    uint64_t r = range.load(std::memory_order_relaxed);
    for (;;) {
      const auto f = static_cast<uint32_t>(r), b = static_cast<uint32_t>(r >> 32);
      if (f >= b) return -1;
      if (range.compare_exchange_weak(r, uint64_t{b - 1} << 32 | f, std::memory_order_relaxed)) return b - 1;
    }
  }
};

// Runs run(first, count) over work items until none is left anywhere: this thread's own items
// (work[self]) in the owner's shrinking pieces, then single items from the ends of the others'.
template <class Run>
void take_team_work(TeamWork* work, int self, int size, Run&& run) {
  for (auto [first, count] = work[self].take_front(); count > 0; std::tie(first, count) = work[self].take_front())
    run(first, count);
  for (int o = 1; o < size; ++o)
    for (int64_t b; (b = work[(self + o) % size].take_back()) >= 0;) run(b, int64_t{1});
}

struct Team {
  int index = 0;              // this thread
  int size = 1;               // threads in the team
  int64_t batch = 0;          // samples in the whole batch
  int64_t slice_begin = 0;    // this thread's slice: samples [slice_begin, slice_begin + slice count)
  TeamBarrier* barrier = nullptr;
  std::vector<const float*> inputs;     // whole-batch [batch, shape], same on every thread
  std::vector<float*> input_grads;      // ADD into (or see write_input_grads); null where not needed
  // Set when this site alone contributes to its input gradients (and the layer's
  // team_writes_input_grads()): they were not cleared, the team writes every element of them.
  bool write_input_grads = false;
  // [team_floats(batch)], one buffer for the whole team, for this forward or backward only: write
  // it, meet at a barrier, read it. Consecutive team phases get different buffers, so a thread may
  // write before its first barrier while another still reads the previous phase's; every team
  // forward and backward must therefore meet at least one barrier, after writing here if it does
  // (a phase without one would let the next phase write into what the one before still reads).
  float* shared = nullptr;
  float* param_grads = nullptr;  // one buffer for the whole team; ADD at weight.offset
  // Set in training when the step may be fused (no gradient clipping, the layer called at this
  // site only): the layer calls update->apply on each parameter range it has finished, once no
  // thread reads those parameters again this step, while they are still in this core's cache.
  // The layer's gradients in param_grads are then not cleared beforehand: it writes them.
  TeamUpdate* update = nullptr;
  TeamWork* work = nullptr;  // [size], one per thread (work[index] is this thread's)
  // Every thread's inputs are complete when the forward starts (the team met at a barrier after
  // the layers before it), so the layer need not wait for the others' slices.
  bool inputs_ready = false;
};

struct ForwardContext {
  int64_t batch = 0;           // samples in this slice
  int64_t sample_offset = 0;   // index of this slice's first sample within the batch
  bool training = false;
  uint64_t seed = 0;           // per step and layer: dropout draws hash(seed, sample, element)
  const CallOptions* call = nullptr;
  std::vector<const float*> inputs;   // each [batch, input shape]
  std::vector<float*> outputs;        // each [batch, output shape]
  const float* query_mask = nullptr;  // [batch, Tq] when the call has one
  const float* value_mask = nullptr;  // [batch, Tv]
  const float* key_mask = nullptr;        // [batch, Tv]
  const float* attention_mask = nullptr;  // [batch, Tq, Tv]
  const float* mask = nullptr;            // [batch, steps]
  // The mask fields in CallOptions::masks() order.
  std::array<const float**, 5> masks() { return {&query_mask, &value_mask, &key_mask, &attention_mask, &mask}; }
  float* logits = nullptr;            // when not null and has_keras_logits(): pre-activation out
  float* saved = nullptr;             // [batch * saved_floats_per_sample()]
  float* scratch = nullptr;           // [scratch_floats(batch)]
  Team* team = nullptr;               // set when the layer runs as a team
};

struct BackwardContext {
  int64_t batch = 0;
  int64_t sample_offset = 0;
  bool training = false;
  uint64_t seed = 0;
  const CallOptions* call = nullptr;
  std::vector<const float*> inputs;
  std::vector<const float*> outputs;
  std::vector<const float*> output_grads;  // null for an output nothing depends on
  std::vector<float*> input_grads;         // ADD into; null where no gradient is needed
  const float* query_mask = nullptr;
  const float* value_mask = nullptr;
  const float* key_mask = nullptr;
  const float* attention_mask = nullptr;
  const float* mask = nullptr;
  std::array<const float**, 5> masks() { return {&query_mask, &value_mask, &key_mask, &attention_mask, &mask}; }
  bool output_grad_is_logits = false;  // output_grads[0] is d/d(pre-activation)
  float* param_grads = nullptr;        // base of the gradient buffer; ADD at weight.offset; may be null
  float* saved = nullptr;
  float* scratch = nullptr;
  Team* team = nullptr;  // set when the layer runs as a team (use team->param_grads)
};

class Layer : public std::enable_shared_from_this<Layer> {
 public:
  explicit Layer(std::string name_prefix, std::string name = "");
  virtual ~Layer() = default;

  virtual std::string class_name() const = 0;  // Keras class name: "Dense"
  const std::string& name() const { return name_; }
  bool built() const { return built_; }
  bool trainable() const { return trainable_; }
  void set_trainable(bool t) { trainable_ = t; }

  // Output shapes (batch axis excluded) for these input shapes; creates the weights
  // the first time. Throws std::invalid_argument naming the layer on a bad shape.
  std::vector<Shape> build(const std::vector<Shape>& input_shapes, const CallOptions& options);
  const std::vector<Shape>& built_input_shapes() const { return input_shapes_; }

  std::vector<Weight>& weights() { return weights_; }
  const std::vector<Weight>& weights() const { return weights_; }
  int64_t count_params() const;

  virtual int64_t saved_floats_per_sample(const CallOptions&) const { return 0; }
  virtual int64_t scratch_floats(int64_t /*batch*/, const CallOptions&) const { return 0; }
  // True when the output is an activation whose pre-activation Keras' TensorFlow
  // backend hands to a cross-entropy ("hidden logits", keras-semantics.md section 5).
  virtual bool has_keras_logits() const { return false; }
  virtual std::string keras_logits_activation() const { return ""; }

  // True when, on several threads, this layer should run as a team (see Team) rather than on
  // batch slices; it then also needs team_floats of shared memory. Its forward and backward
  // must call the team's barrier the same number of times on every thread.
  virtual bool runs_as_team() const { return false; }
  virtual int64_t team_floats(int64_t /*batch*/, int /*threads*/) const { return 0; }
  // True when the training forward reads statistics of the whole batch (BatchNormalization): on
  // several threads the layer then runs as a team (runs_as_team() must be true too), and a
  // training batch of fewer samples than threads runs on one thread. Such a layer cannot be
  // called with training=True pinned: a forward pass alone runs on slices.
  virtual bool uses_batch_statistics() const { return false; }
  // True when, as a team, the layer can write its input gradients (every element, for the whole
  // batch, once) instead of adding to them: the executor then need not clear them first when no
  // other site adds to them (Team::write_input_grads).
  virtual bool team_writes_input_grads() const { return false; }

  // True when the one output is the one input's floats read with another shape (a row-major
  // reshape): the executor then gives both one buffer (and one gradient buffer) and calls
  // neither forward nor backward, except where the output is the model's output.
  virtual bool output_is_input_view() const { return false; }
  // True when a sample's forward output has the same bits whatever other samples share the call
  // (no batch-size-dependent kernels such as BLAS). The executor may then run it on any split of
  // the batch, to balance threads (see Team).
  virtual bool forward_is_per_sample() const { return false; }
  // True when the layer's input values must be checked before a run (indices: Embedding) and so
  // must come straight from a model input: fit, evaluate and predict then call
  // check_input_values on that input's data, on the calling thread, where an error can be
  // thrown (inside a step it would be on a worker thread).
  virtual bool takes_model_input_only() const { return false; }
  // Throws std::invalid_argument, starting "<what>: input <input>", when a value of x (samples x
  // per_sample floats, model input number `input`) cannot be this layer's input. Allocates
  // nothing when the values are fine (train_on_batch checks every batch).
  virtual void check_input_values(const float* /*x*/, int64_t /*samples*/, int64_t /*per_sample*/,
                                  const char* /*what*/, size_t /*input*/) const {}

  // Keras' mask propagation: the mask this call's first output carries (Layer.compute_mask, for
  // layers with supports_masking), from the inputs' masks and the call's options as completed
  // by take_input_masks. The default drops it, as Keras 3 layers without supports_masking do
  // (Flatten, Reshape); propagates_mask() layers pass the first input's on.
  virtual Node compute_mask(const std::vector<Node>& inputs, const CallOptions& options) const;
  virtual bool propagates_mask() const { return false; }
  // Sets the mask options that Keras fills from the inputs' masks when a call leaves them None
  // (query_mask and value_mask from the query's and value's masks, ...). Called before build.
  virtual void take_input_masks(const std::vector<Node>& /*inputs*/, CallOptions& /*options*/) const {}

  virtual void forward(ForwardContext& ctx) = 0;
  virtual void backward(BackwardContext& ctx) = 0;

  // Keras get_config() (name, trainable, dtype and the layer's own arguments).
  virtual nlohmann::json get_config() const;

  // Calls the layer on symbolic inputs, building it on first use.
  std::vector<Node> call(const std::vector<Node>& inputs, const CallOptions& options = {});
  int call_count() const { return call_count_; }

 protected:
  // Infers output shapes; may add weights (add_weight) when first built.
  virtual std::vector<Shape> compute_build(const std::vector<Shape>& input_shapes,
                                           const CallOptions& options) = 0;
  Weight& add_weight(std::string name, Shape shape, std::string initializer, bool trainable = true);
  [[noreturn]] void fail(const std::string& what) const;  // throws naming the layer

  std::string name_;
  bool trainable_ = true;
  bool built_ = false;
  std::vector<Shape> input_shapes_;
  std::vector<Weight> weights_;
  int call_count_ = 0;
};

// Keras' unique names: "dense", "dense_1", ... per prefix, reset by clear_session().
std::string unique_layer_name(const std::string& prefix);
void clear_session();

// Fills a weight from its initializer with the global generator (attn/random.hpp).
void initialize_weight(Weight& w);
// Keras 3's serialized form of an initializer attn knows (glorot_uniform, zeros, ones).
nlohmann::json initializer_config(const std::string& name);

// Value handle for a layer, so that `Dense(10)(x)` reads like Keras and a copied
// handle shares the same layer (same weights), as a Keras layer object does.
template <class Impl>
class LayerHandle {
 public:
  explicit LayerHandle(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  Node operator()(const Node& input, const CallOptions& options = {}) const {
    return single(impl_->call({input}, options));
  }
  Node operator()(const std::vector<Node>& inputs, const CallOptions& options = {}) const {
    return single(impl_->call(inputs, options));
  }
  // Every output of a multi-output call (Attention with return_attention_scores).
  std::vector<Node> call(const std::vector<Node>& inputs, const CallOptions& options = {}) const {
    return impl_->call(inputs, options);
  }
  Impl* operator->() const { return impl_.get(); }
  std::shared_ptr<Impl> ptr() const { return impl_; }
  operator std::shared_ptr<Layer>() const { return impl_; }

 private:
  static Node single(const std::vector<Node>& outs) {
    if (outs.size() != 1)
      throw std::invalid_argument("layer returned " + std::to_string(outs.size()) +
                                  " outputs; use .call(...) to get all of them");
    return outs[0];
  }
  std::shared_ptr<Impl> impl_;
};

}  // namespace attn
