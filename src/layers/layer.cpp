// Layer base: naming, building, weight creation and initialisation, symbolic calls.
#include "attn/layer.hpp"

#include <cmath>
#include <map>
#include <stdexcept>

#include "attn/random.hpp"

namespace attn {
namespace {
std::map<std::string, int>& name_counters() {
  static std::map<std::string, int> counters;
  return counters;
}
}  // namespace

std::string unique_layer_name(const std::string& prefix) {
  int n = name_counters()[prefix]++;
  return n == 0 ? prefix : prefix + "_" + std::to_string(n);
}

void clear_session() { name_counters().clear(); }

Layer::Layer(std::string name_prefix, std::string name)
    : name_(name.empty() ? unique_layer_name(name_prefix) : std::move(name)) {}

void Layer::fail(const std::string& what) const {
  throw std::invalid_argument("layer '" + name_ + "' (" + class_name() + "): " + what);
}

std::vector<Shape> Layer::build(const std::vector<Shape>& input_shapes, const CallOptions& options) {
  if (built_ && input_shapes != input_shapes_) {
    std::string got, want;
    for (auto& s : input_shapes) got += shape_to_string(s) + " ";
    for (auto& s : input_shapes_) want += shape_to_string(s) + " ";
    fail("called on inputs of shape " + got + "but it was built for " + want);
  }
  std::vector<Shape> out = compute_build(input_shapes, options);
  if (!built_) {
    input_shapes_ = input_shapes;
    for (Weight& w : weights_) initialize_weight(w);
    built_ = true;
  }
  return out;
}

int64_t Layer::count_params() const {
  int64_t n = 0;
  for (const Weight& w : weights_) n += shape_size(w.shape);
  return n;
}

Weight& Layer::add_weight(std::string name, Shape shape, std::string initializer, bool trainable) {
  if (built_) fail("add_weight after build");
  Weight w;
  w.name = std::move(name);
  w.shape = std::move(shape);
  w.initializer = std::move(initializer);
  w.trainable = trainable;
  w.value = Tensor(w.shape);
  weights_.push_back(std::move(w));
  return weights_.back();
}

nlohmann::json Layer::get_config() const {
  return {{"name", name_},
          {"trainable", trainable_},
          {"dtype",
           {{"module", "keras"},
            {"class_name", "DTypePolicy"},
            {"config", {{"name", "float32"}}},
            {"registered_name", nullptr}}}};
}

std::vector<Node> Layer::call(const std::vector<Node>& inputs, const CallOptions& options) {
  std::vector<Shape> shapes;
  for (const Node& n : inputs) {
    if (!n) fail("called on a null input");
    shapes.push_back(n->shape);
  }
  CallOptions effective = options;
  effective.implicit_masks = 0;
  take_input_masks(inputs, effective);
  const auto given = options.masks(), taken = effective.masks();
  for (size_t i = 0; i < given.size(); ++i)
    if (!*given[i] && *taken[i]) effective.implicit_masks |= 1u << i;
  for (const Node* m : effective.masks())
    if (*m && (*m)->site && (*m)->site->layer.get() == this) fail("a mask cannot come from the layer itself");
  std::vector<Shape> out_shapes = build(shapes, effective);
  auto site = std::make_shared<CallSite>();
  site->layer = shared_from_this();
  site->inputs = inputs;
  site->options = effective;
  site->index_in_layer = call_count_++;
  std::vector<Node> outs;
  for (size_t i = 0; i < out_shapes.size(); ++i) {
    auto t = std::make_shared<SymbolicTensor>();
    t->site = site;
    t->index = static_cast<int>(i);
    t->shape = out_shapes[i];
    site->outputs.push_back(t);
    outs.push_back(t);
  }
  if (!outs.empty()) outs[0]->keras_mask = compute_mask(inputs, effective);
  return outs;
}

Node Layer::compute_mask(const std::vector<Node>& inputs, const CallOptions&) const {
  return propagates_mask() && !inputs.empty() ? inputs[0]->keras_mask : nullptr;
}

// Keras initialisers (keras/src/initializers): glorot_uniform limit sqrt(6/(fan_in+fan_out))
// with fans from the last two axes (rank 2) or the receptive-field rule (rank > 2).
void initialize_weight(Weight& w) {
  float* p = w.value.data();
  int64_t n = shape_size(w.shape);
  const std::string& init = w.initializer;
  if (init == "zeros") {
    for (int64_t i = 0; i < n; ++i) p[i] = 0.0f;
  } else if (init == "ones") {
    for (int64_t i = 0; i < n; ++i) p[i] = 1.0f;
  } else if (init == "glorot_uniform") {
    double fan_in, fan_out;
    const Shape& s = w.shape;
    if (s.empty()) {
      fan_in = fan_out = 1;
    } else if (s.size() == 1) {
      fan_in = fan_out = static_cast<double>(s[0]);
    } else if (s.size() == 2) {
      fan_in = static_cast<double>(s[0]);
      fan_out = static_cast<double>(s[1]);
    } else {
      double receptive = 1;
      for (size_t i = 0; i + 2 < s.size(); ++i) receptive *= static_cast<double>(s[i]);
      fan_in = static_cast<double>(s[s.size() - 2]) * receptive;
      fan_out = static_cast<double>(s.back()) * receptive;
    }
    double limit = std::sqrt(3.0 / std::max(1.0, (fan_in + fan_out) / 2.0));
    std::uniform_real_distribution<double> dist(-limit, limit);
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(dist(global_generator()));
  } else if (init == "random_uniform") {  // Keras' "uniform": RandomUniform(minval=-0.05, maxval=0.05)
    std::uniform_real_distribution<double> dist(-0.05, 0.05);
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(dist(global_generator()));
  } else {
    throw std::invalid_argument("weight '" + w.name + "': unsupported initializer '" + init + "'");
  }
}

nlohmann::json initializer_config(const std::string& name) {
  const std::string cls = name == "glorot_uniform"   ? "GlorotUniform"
                          : name == "random_uniform" ? "RandomUniform"
                          : name == "zeros"          ? "Zeros"
                                                     : "Ones";
  nlohmann::json cfg = nlohmann::json::object();
  if (cls == "RandomUniform") {
    cfg["minval"] = -0.05;
    cfg["maxval"] = 0.05;
  }
  if (cls == "GlorotUniform" || cls == "RandomUniform") cfg["seed"] = nullptr;
  return {{"module", "keras.initializers"}, {"class_name", cls}, {"config", cfg}, {"registered_name", nullptr}};
}

}  // namespace attn
