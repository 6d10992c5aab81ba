// Model construction: orders the call sites reachable from the outputs, collects
// layers, and moves every weight into one contiguous parameter buffer.
#include "attn/model.hpp"

#include <cstring>
#include <functional>
#include <set>
#include <stdexcept>

#include <cblas.h>

#include "attn/layers/input.hpp"
#include "attn/random.hpp"
#include "model/executor.hpp"

extern "C" void openblas_set_num_threads(int);

namespace attn {

namespace {
constexpr int64_t kParamAlignFloats = 16;  // one 64-byte cache line
std::string default_model_name() { return unique_layer_name("functional"); }
}  // namespace

Model::Model(Node input, Node output, std::string name)
    : Model(std::vector<Node>{std::move(input)}, std::vector<Node>{std::move(output)}, std::move(name)) {}

Model::Model(std::vector<Node> inputs, std::vector<Node> outputs, std::string name)
    : name_(name.empty() ? default_model_name() : std::move(name)), inputs_(std::move(inputs)),
      outputs_(std::move(outputs)) {
  if (inputs_.empty()) throw std::invalid_argument("Model: no inputs");
  if (outputs_.size() != 1) throw std::invalid_argument("Model: exactly one output is supported, got " +
                                                        std::to_string(outputs_.size()));
  for (const Node& n : inputs_)
    if (!n || !std::dynamic_pointer_cast<InputLayer>(n->site->layer))
      throw std::invalid_argument("Model: every input must come from attn::Input()");
  // BLAS runs inside our own per-thread slices; its own threads would oversubscribe.
  openblas_set_num_threads(1);
  build_graph();
  gather_parameters();
}

Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

void Model::build_graph() {
  std::set<const CallSite*> done;
  std::vector<std::shared_ptr<CallSite>> order;
  std::function<void(const std::shared_ptr<CallSite>&)> visit = [&](const std::shared_ptr<CallSite>& site) {
    if (done.count(site.get())) return;
    done.insert(site.get());
    for (const Node& n : site->inputs) visit(n->site);
    for (const Node* m : site->options.masks())
      if (*m) visit((*m)->site);
    order.push_back(site);
  };
  for (const Node& n : inputs_) visit(n->site);
  for (const Node& n : outputs_) visit(n->site);
  // Inputs the outputs reach must be model inputs.
  std::set<const CallSite*> declared;
  for (const Node& n : inputs_) declared.insert(n->site.get());
  for (const auto& site : order)
    if (std::dynamic_pointer_cast<InputLayer>(site->layer) && !declared.count(site.get()))
      throw std::invalid_argument("Model: the outputs depend on input '" + site->layer->name() +
                                  "', which is not among the model inputs");
  for (const auto& site : order)
    if (site->layer->takes_model_input_only())
      for (const Node& n : site->inputs)
        if (!declared.count(n->site.get()))
          throw std::invalid_argument("Model: layer '" + site->layer->name() + "' (" + site->layer->class_name() +
                                      ") reads its input from layer '" + n->site->layer->name() +
                                      "'; it must read a model input directly (its values are checked before a run)");
  for (const Node& n : outputs_)
    if (n->keras_mask)
      throw std::invalid_argument("Model: the output carries a Keras mask (an Embedding with mask_zero over '" +
                                  n->keras_mask->site->layer->name() +
                                  "'); Keras would mask the loss with it, which attn does not implement: pool or "
                                  "flatten the steps first");
  sites_ = order;
  std::set<const Layer*> seen;
  for (const auto& site : sites_)
    if (seen.insert(site->layer.get()).second) layers_.push_back(site->layer);
}

namespace {
// A weight's value must have the weight's shape before it is copied anywhere.
void check_value_shape(const Layer& layer, const Weight& w) {
  if (w.value.shape() != w.shape || (w.value.data() == nullptr && shape_size(w.shape) > 0))
    throw std::invalid_argument("layer '" + layer.name() + "': weight '" + w.name + "' has shape " +
                                shape_to_string(w.shape) + " but its value was replaced by " +
                                (w.value.empty() ? std::string("an empty tensor") :
                                                   "a tensor of shape " + shape_to_string(w.value.shape())));
}
}  // namespace

void Model::gather_parameters() {
  // Each weight starts on a 64-byte line: SIMD loads of a weight, its gradient and its optimizer
  // state then never straddle lines (the reference model's first weight is one float), and
  // threads splitting a weight at multiples of 16 floats never share a line.
  param_floats_ = 0;
  weight_offsets_.clear();
  for (const auto& layer : layers_)
    for (Weight& w : layer->weights()) {
      check_value_shape(*layer, w);
      weight_offsets_.push_back((param_floats_ + kParamAlignFloats - 1) / kParamAlignFloats * kParamAlignFloats);
      param_floats_ = weight_offsets_.back() + shape_size(w.shape);
    }
  params_ = allocate_floats(param_floats_);
  weight_views_.clear();
  size_t k = 0;
  for (const auto& layer : layers_)
    for (Weight& w : layer->weights())
      weight_views_.push_back(Tensor::view(params_, params_.get() + weight_offsets_[k++], w.shape));
  collect_trainable_variables();
  claim_weights();
}

void Model::collect_trainable_variables() {
  trainable_slices_.clear();
  size_t k = 0;
  for (const auto& layer : layers_)
    for (Weight& w : layer->weights()) {
      const int64_t offset = weight_offsets_.at(k++);
      if (w.trainable && layer->trainable()) trainable_slices_.push_back({offset, shape_size(w.shape), w.name});
    }
}

void Model::claim_weights() {
  size_t k = 0;
  for (const auto& layer : layers_)
    for (Weight& w : layer->weights()) {
      if (k == weight_offsets_.size())
        throw std::logic_error("layer '" + layer->name() + "' has more weights than when model '" + name_ +
                               "' was built");
      const int64_t offset = weight_offsets_[k++];
      float* home = params_.get() + offset;
      if (w.value.data() == home && w.offset == offset && w.value.shape() == w.shape) continue;
      check_value_shape(*layer, w);
      const int64_t n = shape_size(w.shape);
      if (n) std::memmove(home, w.value.data(), n * sizeof(float));
      w.value = weight_views_[k - 1];  // the shape's vector is reused: no allocation in a step
      w.offset = offset;
    }
  if (k != weight_offsets_.size())
    throw std::logic_error("model '" + name_ + "': its layers have fewer weights than when it was built");
}

std::shared_ptr<Layer> Model::get_layer(const std::string& name) const {
  for (const auto& l : layers_)
    if (l->name() == name) return l;
  throw std::invalid_argument("model '" + name_ + "' has no layer named '" + name + "'");
}

int64_t Model::count_params() const {
  int64_t n = 0;
  for (const auto& layer : layers_) n += layer->count_params();
  return n;
}

void Model::build_optimizer() {
  if (!optimizer_) throw std::logic_error("build_optimizer: compile the model first");
  if (!optimizer_built_) {
    optimizer_->build(trainable_slices_);
    optimizer_built_ = true;
  }
}

int64_t Model::count_trainable_params() const {
  // As Keras' model.trainable_weights: the layers' flags now, compiled or not.
  int64_t n = 0;
  for (const auto& layer : layers_)
    for (const Weight& w : layer->weights())
      if (w.trainable && layer->trainable()) n += shape_size(w.shape);
  return n;
}

std::vector<Weight*> Model::weights() {
  claim_weights();  // offsets and views are this model's, as callers expect
  std::vector<Weight*> out;
  for (const auto& layer : layers_)
    for (Weight& w : layer->weights()) out.push_back(&w);
  return out;
}

float* Model::parameter_buffer() { return params_.get(); }

std::vector<float> Model::get_weights_flat() const {
  std::vector<float> flat;
  flat.reserve(static_cast<size_t>(count_params()));
  for (const auto& layer : layers_)
    for (const Weight& w : layer->weights()) check_value_shape(*layer, w);
  for (const auto& layer : layers_)
    for (const Weight& w : layer->weights()) flat.insert(flat.end(), w.value.data(), w.value.data() + w.value.size());
  return flat;
}

void Model::set_weights_flat(const std::vector<float>& values) {
  const int64_t expected = count_params();
  if (static_cast<int64_t>(values.size()) != expected)
    throw std::invalid_argument("set_weights: expected " + std::to_string(expected) + " values, got " +
                                std::to_string(values.size()));
  for (const auto& layer : layers_)
    for (const Weight& w : layer->weights()) check_value_shape(*layer, w);
  const float* next = values.data();
  for (const auto& layer : layers_)
    for (Weight& w : layer->weights()) {
      std::copy(next, next + w.value.size(), w.value.data());
      next += w.value.size();
    }
}

uint64_t Model::next_forward_seed() {
  // An uncompiled model has no seed of its own yet (compile takes it): the global one then.
  return hash_combine(seed_ != 0 ? seed_ : random_seed(), 0xd20f, ++forward_calls_);
}

void Model::set_threads(int threads) {
  if (threads < 0) throw std::invalid_argument("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
  if (threads != threads_) executor_.reset();
  threads_ = threads;
}

void Model::check_not_moved_from(const char* what) const {
  // A Model always has inputs (the constructors refuse none): without them it was moved from.
  if (inputs_.empty()) throw std::logic_error(std::string(what) + ": this Model was moved from");
}

Executor& Model::executor() {
  check_not_moved_from("Model");
  claim_weights();  // the executor's plan reads each weight's offset
  if (executor_ && !executor_->plan_is_current(*this)) executor_.reset();
  if (!executor_) {
    int n = threads_ > 0 ? threads_ : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    executor_ = std::make_unique<Executor>(*this, n);
  }
  executor_->rebind(*this);  // the Model may have been moved since the executor was made
  return *executor_;
}

namespace {
std::pair<Node, Node> chain(Shape input_shape, const std::vector<std::shared_ptr<Layer>>& layers) {
  Node input = Input(std::move(input_shape));
  Node x = input;
  for (const auto& layer : layers) {
    auto outs = layer->call({x});
    if (outs.size() != 1) throw std::invalid_argument("Sequential: layer '" + layer->name() + "' has several outputs");
    x = outs[0];
  }
  return {input, x};
}
}  // namespace

Sequential::Sequential(Shape input_shape, std::vector<std::shared_ptr<Layer>> layers, std::string name)
    : Sequential(chain(std::move(input_shape), layers),
                 name.empty() ? unique_layer_name("sequential") : std::move(name)) {}

Sequential::Sequential(std::pair<Node, Node> io, std::string name) : Model(io.first, io.second, std::move(name)) {
  sequential_ = true;
  const auto& all = all_layers();
  const bool generated_input = !all.empty() && std::dynamic_pointer_cast<InputLayer>(all.front());
  added_layers_.assign(all.begin() + (generated_input ? 1 : 0), all.end());
}

}  // namespace attn
