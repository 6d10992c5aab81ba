// Model: the functional graph (Input -> layer calls -> outputs) and Keras' training API:
// compile, fit, evaluate, predict, summary. Sequential builds the same graph from a list.
//
// Parameters live in one contiguous buffer (layers hold views); a training step splits
// the batch across threads for the whole forward+backward, then reduces gradients once.
// Buffers are planned once per batch size: nothing is allocated inside a training step.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "attn/callbacks.hpp"
#include "attn/layer.hpp"
#include "attn/losses.hpp"
#include "attn/metrics.hpp"
#include "attn/optimizers.hpp"
#include "attn/tensor.hpp"

namespace attn {

// How a cross-entropy treats a sigmoid/softmax output layer (keras-semantics.md section 5).
enum class LogitsSemantics {
  kTensorFlow,  // Keras on TensorFlow: the loss takes the layer's pre-activation logits
  kOutputs,     // Keras on JAX/PyTorch: the loss takes the layer's outputs as they are
};

struct CompileOptions {
  LogitsSemantics logits_semantics = LogitsSemantics::kTensorFlow;
  bool warn = true;  // print the one-line warning about a sigmoid/softmax head with from_logits
};

// Keras' validation_data=(x, y): one array per model input, in the model's input order, and the
// labels. Dataset{x, y} for a model of one input; Dataset{{x1, x2}, y} for two.
struct Dataset {
  Dataset() = default;
  Dataset(Tensor x, Tensor labels) : xs{std::move(x)}, y(std::move(labels)) {}
  Dataset(std::vector<Tensor> inputs, Tensor labels) : xs(std::move(inputs)), y(std::move(labels)) {}
  std::vector<Tensor> xs;
  Tensor y;
};

struct FitOptions {
  int epochs = 1;
  int batch_size = 32;
  int verbose = 1;  // 0 silent, 1 progress bar, 2 one line per epoch
  std::optional<Dataset> validation_data = std::nullopt;
  double validation_split = 0.0;
  bool shuffle = true;
  std::optional<int> validation_batch_size = std::nullopt;
  int validation_freq = 1;
  int initial_epoch = 0;
  std::vector<std::shared_ptr<callbacks::Callback>> callbacks = {};
};

struct EvaluateOptions {
  int batch_size = 32;
  int verbose = 0;
};

struct PredictOptions {
  int batch_size = 32;
};

struct History {
  std::map<std::string, std::vector<double>> history;  // "loss" -> per-epoch values
  std::vector<int> epoch;                              // 0-based epoch numbers run
  std::vector<double> seconds;                         // wall time of each epoch (with validation)
  bool stopped_early = false;
};

class Executor;

class Model {
 public:
  Model(Node input, Node output, std::string name = "");
  Model(std::vector<Node> inputs, std::vector<Node> outputs, std::string name = "");
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  virtual ~Model();
  // Keras' class name for config files: "Functional" or "Sequential".
  // (A Sequential moved into a Model keeps its class name, e.g. one returned by load_model.)
  virtual std::string class_name() const { return sequential_ ? "Sequential" : "Functional"; }

  const std::string& name() const { return name_; }
  // Layers in Keras' model.layers order (topological, inputs first). A Sequential leaves out the
  // InputLayer it generates, as Keras' Sequential.layers does (model.layers[0] is the first
  // layer given).
  const std::vector<std::shared_ptr<Layer>>& layers() const { return sequential_ ? added_layers_ : layers_; }
  // Every layer, a Sequential's InputLayer included (what its config lists).
  const std::vector<std::shared_ptr<Layer>>& all_layers() const { return layers_; }
  std::shared_ptr<Layer> get_layer(const std::string& name) const;
  const std::vector<Node>& inputs() const { return inputs_; }
  const std::vector<Node>& outputs() const { return outputs_; }
  int64_t count_params() const;
  int64_t count_trainable_params() const;

  void compile(std::shared_ptr<optimizers::Optimizer> optimizer, std::shared_ptr<losses::Loss> loss,
               std::vector<std::string> metrics = {}, CompileOptions options = {});
  bool compiled() const { return loss_ != nullptr; }
  optimizers::Optimizer* optimizer() const { return optimizer_.get(); }
  losses::Loss* loss() const { return loss_.get(); }
  const std::vector<std::string>& metric_names() const { return metric_names_; }
  // True when the loss will read the output layer's pre-activation logits.
  bool uses_hidden_logits() const { return hidden_logits_; }
  const CompileOptions& compile_options() const { return compile_options_; }
  // Whether the optimizer has allocated its state (it does on the first training step).
  bool optimizer_built() const { return optimizer_built_; }
  // Allocates the optimizer's state now (zeros) if it is not yet, so that a loader can
  // restore saved slots before training; the model must be compiled.
  void build_optimizer();

  History fit(const Tensor& x, const Tensor& y, FitOptions options = {});
  History fit(const std::vector<Tensor>& xs, const Tensor& y, FitOptions options = {});
  std::map<std::string, double> evaluate(const Tensor& x, const Tensor& y, EvaluateOptions options = {});
  std::map<std::string, double> evaluate(const std::vector<Tensor>& xs, const Tensor& y, EvaluateOptions options = {});
  Tensor predict(const Tensor& x, PredictOptions options = {});
  std::vector<Tensor> predict(const std::vector<Tensor>& xs, PredictOptions options = {});
  // The values of any of this model's symbolic tensors (a layer's output, an input) for xs, in
  // inference mode: Keras' feature-extractor idiom, keras.Model(model.inputs, [t, ...]).predict(x),
  // without building a second model. Each result is [samples, node shape...]. Throws
  // std::invalid_argument for a node this model does not compute.
  std::vector<Tensor> activations(const std::vector<Tensor>& xs, const std::vector<Node>& nodes,
                                  PredictOptions options = {});
  // One optimizer step on one batch; returns {"loss", metrics...} for that batch.
  std::map<std::string, double> train_on_batch(const std::vector<Tensor>& xs, const Tensor& y);
  // The same step without building a map: once buffers are planned for this batch size
  // it allocates nothing (accuracy is NaN when no metric was compiled).
  struct StepResult {
    double loss = 0.0;
    double accuracy = 0.0;
  };
  StepResult train_step(const std::vector<Tensor>& xs, const Tensor& y);

  // Keras 3's summary table as Python prints it to a non-terminal (76 columns wide).
  std::string summary() const;
  void summary(std::ostream& out) const;

  // All weights, in model.layers order then each layer's creation order, pointing into this
  // model's parameter buffer (a layer shared with another model is pointed back at this one's).
  std::vector<Weight*> weights();
  std::vector<float> get_weights_flat() const;
  void set_weights_flat(const std::vector<float>& values);
  // Every weight lives in one buffer, each starting on a 64-byte line (Weight::offset); the
  // floats between weights are zero and belong to no weight.
  float* parameter_buffer();
  int64_t parameter_buffer_floats() const { return param_floats_; }
  // Trainable variables as the optimizer sees them (offset/size into the buffer).
  const std::vector<optimizers::VariableSlice>& trainable_variables() const { return trainable_slices_; }

  bool stop_training = false;
  int threads() const { return threads_; }
  // Worker threads for training and inference (default: hardware concurrency).
  void set_threads(int threads);
  void set_seed(uint64_t seed) { seed_ = seed; }
  uint64_t seed() const { return seed_; }

  // The call sites in execution order (for summary, saving and the executor).
  const std::vector<std::shared_ptr<CallSite>>& call_sites() const { return sites_; }

 private:
  friend class Executor;
  // predict and activations: the values of `nodes` for xs, batch by batch; `what` names the caller
  // in errors.
  std::vector<Tensor> forward_values(const std::vector<Tensor>& xs, const std::vector<Node>& nodes,
                                     const PredictOptions& options, const char* what);
  void build_graph();
  void gather_parameters();
  // Points every weight of this model (Weight::value and Weight::offset) at this model's
  // parameter buffer before it runs. A layer shared with another model holds the other's views
  // once that one has run (or was built later), and a weight's value may have been replaced by
  // the user: its current values are copied in, so shared layers train as one, as in Keras.
  // Throws std::invalid_argument when a replaced value has the wrong shape. No allocation.
  void claim_weights();
  // The optimizer's variables: the weights trainable now (Weight::trainable and
  // Layer::trainable). At construction and at compile, as in Keras, where a change of
  // `trainable` takes effect for training when the model is compiled again.
  void collect_trainable_variables();
  // A new dropout seed for each inference call, from the model's seed and a counter kept here
  // (not in the executor, which compile and set_threads replace): as Keras' seed generator
  // advances, two predict calls draw different masks, and a seeded program the same ones.
  uint64_t next_forward_seed();
  Executor& executor();
  // Throws std::logic_error naming `what` when this Model's contents were moved to another.
  void check_not_moved_from(const char* what) const;
  std::map<std::string, double> run_epoch_eval(const std::vector<Tensor>& xs, const Tensor& y, int batch_size,
                                               int verbose);

  std::string name_;
  std::vector<Node> inputs_;
  std::vector<Node> outputs_;
  std::vector<std::shared_ptr<Layer>> layers_;
  std::vector<std::shared_ptr<CallSite>> sites_;
  std::shared_ptr<float[]> params_;
  int64_t param_floats_ = 0;  // length of params_, padding included
  std::vector<int64_t> weight_offsets_;  // this model's Weight::offset of each weight, in weights() order
  std::vector<Tensor> weight_views_;     // and its Weight::value (claim_weights assigns without allocating)
  uint64_t forward_calls_ = 0;           // inference calls so far: next_forward_seed's counter
  std::vector<optimizers::VariableSlice> trainable_slices_;
  std::shared_ptr<optimizers::Optimizer> optimizer_;
  std::shared_ptr<losses::Loss> loss_;
  std::vector<std::string> metric_names_;
  std::vector<std::string> metric_keys_;  // metric_names_ without repeats: the log keys
  CompileOptions compile_options_;
  bool hidden_logits_ = false;
  bool optimizer_built_ = false;
  int threads_ = 0;
  uint64_t seed_ = 0;
  std::unique_ptr<Executor> executor_;

 protected:
  bool sequential_ = false;
  std::vector<std::shared_ptr<Layer>> added_layers_;  // a Sequential's layers() (no InputLayer)
};

// Keras' Sequential: a list of single-input layers applied in order.
class Sequential : public Model {
 public:
  Sequential(Shape input_shape, std::vector<std::shared_ptr<Layer>> layers, std::string name = "");
  std::string class_name() const override { return "Sequential"; }

 private:
  Sequential(std::pair<Node, Node> input_output, std::string name);
};

}  // namespace attn
