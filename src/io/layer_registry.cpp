// Layer registry: Keras class name -> a function building the layer from its Keras
// config (Keras 3 and tf.keras 2 spellings). Anything the layers do not implement
// (regularizers, constraints, other dtypes, unknown activations) is refused with a
// FileError naming the file, the layer and the option rather than silently ignored.
#include <cmath>
#include <functional>
#include <map>
#include <stdexcept>

#include "attn/layers/activation.hpp"
#include "attn/layers/activation_layers.hpp"
#include "attn/layers/attention.hpp"
#include "attn/layers/batch_normalization.hpp"
#include "attn/layers/conv1d.hpp"
#include "attn/layers/conv2d.hpp"
#include "attn/layers/dot.hpp"
#include "attn/layers/dense.hpp"
#include "attn/layers/dropout.hpp"
#include "attn/layers/embedding.hpp"
#include "attn/layers/input.hpp"
#include "attn/layers/layer_normalization.hpp"
#include "attn/layers/merging.hpp"
#include "attn/layers/multi_head_attention.hpp"
#include "attn/layers/pooling.hpp"
#include "attn/layers/pooling1d.hpp"
#include "attn/layers/pooling2d.hpp"
#include "attn/layers/position_embedding.hpp"
#include "attn/layers/reshaping.hpp"
#include "io/io_internal.hpp"

namespace attn::io::detail {

void fail(const std::string& file, const std::string& what) { throw FileError(file + ": " + what); }

std::string LayerConfig::layer_name() const {
  if (config.is_object() && config.contains("name") && config.at("name").is_string())
    return config.at("name").get<std::string>();
  return "?";
}

void LayerConfig::fail(const std::string& option, const std::string& what) const {
  const std::string layer = "layer '" + layer_name() + "' (" + class_name + "): ";
  // A layer constructor's own error already starts with the layer's name.
  const std::string detail = what.rfind(layer, 0) == 0 ? what.substr(layer.size()) : what;
  detail::fail(file, layer + "option '" + option + "': " + detail);
}

double LayerConfig::number(const std::string& key, double def) const {
  if (!has(key)) return def;
  const auto& v = config.at(key);
  if (!v.is_number()) fail(key, "expected a number, got " + v.dump());
  return v.get<double>();
}

int64_t LayerConfig::integer(const std::string& key) const {
  if (!has(key)) fail(key, "missing");
  const auto& v = config.at(key);
  if (!v.is_number_integer() && !(v.is_number() && v.get<double>() == static_cast<double>(static_cast<int64_t>(v.get<double>()))))
    fail(key, "expected an integer, got " + v.dump());
  return v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(v.get<double>());
}

bool LayerConfig::boolean(const std::string& key, bool def) const {
  if (!has(key)) return def;
  const auto& v = config.at(key);
  if (!v.is_boolean()) fail(key, "expected true/false, got " + v.dump());
  return v.get<bool>();
}

std::string LayerConfig::string(const std::string& key, const std::string& def) const {
  if (!has(key)) return def;
  const auto& v = config.at(key);
  if (!v.is_string()) fail(key, "expected a string, got " + v.dump());
  return v.get<std::string>();
}

void LayerConfig::require_null(const std::string& key) const {
  if (has(key)) fail(key, "not supported (got " + config.at(key).dump() + "; only null is)");
}

void LayerConfig::require_float32(bool or_integer) const {
  if (!has("dtype")) return;
  const auto& d = config.at("dtype");
  std::string name;
  if (d.is_string()) {
    name = d.get<std::string>();
  } else if (d.is_object() && d.contains("config") && d.at("config").is_object() &&
             d.at("config").contains("name") && d.at("config").at("name").is_string()) {
    name = d.at("config").at("name").get<std::string>();
  } else {
    fail("dtype", "unrecognised dtype " + d.dump());
  }
  if (name == "float32") return;
  // attn's data is float32; an integer input (ids for an Embedding) arrives as whole floats.
  if (or_integer && (name == "int32" || name == "int64")) return;
  fail("dtype", std::string("only float32") + (or_integer ? ", int32 and int64 are" : " is") + " supported, got '" +
                    name + "'");
}

std::string LayerConfig::initializer(const std::string& key, const std::string& def) const {
  if (!has(key)) return def;
  const auto& v = config.at(key);
  std::string cls;
  nlohmann::json cfg = nlohmann::json::object();
  if (v.is_string()) {
    cls = v.get<std::string>();
  } else if (v.is_object() && v.contains("class_name") && v.at("class_name").is_string()) {
    cls = v.at("class_name").get<std::string>();
    if (v.contains("config") && v.at("config").is_object()) cfg = v.at("config");
  } else {
    fail(key, "unrecognised initializer " + v.dump());
  }
  if (cls == "GlorotUniform" || cls == "glorot_uniform") return "glorot_uniform";
  if (cls == "Zeros" || cls == "zeros") return "zeros";
  if (cls == "Ones" || cls == "ones") return "ones";
  // Keras' "uniform" (Embedding's default) is RandomUniform(-0.05, 0.05): only those bounds.
  if (cls == "RandomUniform" || cls == "random_uniform" || cls == "uniform") {
    if (cfg.value("minval", -0.05) == -0.05 && cfg.value("maxval", 0.05) == 0.05) return "random_uniform";
    fail(key, "unsupported initializer " + v.dump() + " (RandomUniform only with Keras' default bounds -0.05, 0.05)");
  }
  // tf.keras 2.3 writes glorot_uniform as VarianceScaling(1.0, fan_avg, uniform).
  if (cls == "VarianceScaling" && cfg.value("scale", 1.0) == 1.0 && cfg.value("mode", std::string()) == "fan_avg" &&
      cfg.value("distribution", std::string()) == "uniform")
    return "glorot_uniform";
  fail(key, "unsupported initializer " + v.dump() + " (supported: GlorotUniform, Zeros, Ones, RandomUniform)");
}

std::string LayerConfig::activation(const std::string& key, const std::string& def) const {
  if (!has(key)) return def;
  const auto& v = config.at(key);
  if (v.is_string()) return v.get<std::string>();
  // Keras 3 may serialize a built-in activation as {"class_name": "function", "config": "relu"}.
  if (v.is_object() && v.value("class_name", std::string()) == "function" && v.contains("config") &&
      v.at("config").is_string())
    return v.at("config").get<std::string>();
  fail(key, "unsupported activation " + v.dump());
}

std::optional<Shape> LayerConfig::batch_shape() const {
  for (const char* key : {"batch_shape", "batch_input_shape"}) {
    if (!has(key)) continue;
    const auto& v = config.at(key);
    if (!v.is_array() || v.empty()) fail(key, "expected a list, got " + v.dump());
    Shape s;
    for (size_t i = 1; i < v.size(); ++i) {
      if (!v[i].is_number_integer() || v[i].get<int64_t>() <= 0)
        fail(key, "every dimension but the batch must be a positive integer, got " + v.dump());
      s.push_back(v[i].get<int64_t>());
    }
    return s;
  }
  return std::nullopt;
}

namespace {

using Factory = std::function<std::shared_ptr<Layer>(const LayerConfig&)>;

// Options every layer accepts: name, trainable, dtype (float32 only), and the tf.keras
// input-shape keys that the model reader consumes.
void common_checks(const LayerConfig& c) {
  c.require_float32();
  if (c.has("activity_regularizer")) c.require_null("activity_regularizer");
}

std::shared_ptr<Layer> dense(const LayerConfig& c) {
  for (const char* k : {"kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint"})
    c.require_null(k);
  if (c.has("lora_rank")) c.require_null("lora_rank");
  if (c.has("quantization_config")) c.require_null("quantization_config");
  layers::DenseOptions o;
  o.name = c.layer_name();
  o.activation = c.activation("activation", "linear");
  o.use_bias = c.boolean("use_bias", true);
  o.kernel_initializer = c.initializer("kernel_initializer", "glorot_uniform");
  o.bias_initializer = c.initializer("bias_initializer", "zeros");
  const int64_t units = c.integer("units");
  try {
    return std::make_shared<layers::DenseLayer>(units, o);
  } catch (const std::invalid_argument& e) {
    c.fail(units <= 0 ? "units" : "activation", e.what());
  }
}

std::shared_ptr<Layer> flatten(const LayerConfig& c) {
  const std::string fmt = c.string("data_format", "channels_last");
  if (fmt != "channels_last") c.fail("data_format", "only channels_last is supported, got '" + fmt + "'");
  return std::make_shared<layers::FlattenLayer>(c.layer_name());
}

std::shared_ptr<Layer> reshape(const LayerConfig& c) {
  if (!c.has("target_shape") || !c.config.at("target_shape").is_array()) c.fail("target_shape", "missing or not a list");
  Shape target;
  for (const auto& d : c.config.at("target_shape")) {
    if (!d.is_number_integer()) c.fail("target_shape", "expected integers, got " + c.config.at("target_shape").dump());
    target.push_back(d.get<int64_t>());
  }
  return std::make_shared<layers::ReshapeLayer>(target, c.layer_name());
}

std::shared_ptr<Layer> permute(const LayerConfig& c) {
  if (!c.has("dims") || !c.config.at("dims").is_array()) c.fail("dims", "missing or not a list");
  std::vector<int64_t> dims;
  for (const auto& d : c.config.at("dims")) {
    if (!d.is_number_integer()) c.fail("dims", "expected integers, got " + c.config.at("dims").dump());
    dims.push_back(d.get<int64_t>());
  }
  try {
    return std::make_shared<layers::PermuteLayer>(dims, c.layer_name());
  } catch (const std::invalid_argument& e) {
    c.fail("dims", e.what());
  }
}

std::shared_ptr<Layer> dropout(const LayerConfig& c) {
  const double rate = c.number("rate", 0.0);
  // A noise_shape only matters when something is dropped (Keras 3.5 wrote a stray
  // noise_shape with rate 0 in one of the fixtures).
  if (c.has("noise_shape") && rate != 0.0) c.fail("noise_shape", "not supported (got " + c.config.at("noise_shape").dump() + ")");
  try {
    return std::make_shared<layers::DropoutLayer>(static_cast<float>(rate), layers::DropoutOptions{c.layer_name()});
  } catch (const std::invalid_argument& e) {
    c.fail("rate", e.what());
  }
}

std::shared_ptr<Layer> activation(const LayerConfig& c) {
  const std::string act = c.activation("activation", "linear");
  try {
    return std::make_shared<layers::ActivationLayer>(act, c.layer_name());
  } catch (const std::invalid_argument& e) {
    c.fail("activation", e.what());
  }
}

std::shared_ptr<Layer> relu_layer(const LayerConfig& c) {
  layers::ReLUOptions o;
  o.name = c.layer_name();
  if (c.has("max_value") && !c.config.at("max_value").is_null()) o.max_value = c.number("max_value", 0.0);
  o.negative_slope = c.number("negative_slope", 0.0);
  o.threshold = c.number("threshold", 0.0);
  try {
    return std::make_shared<layers::ReLULayer>(o);
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    c.fail(what.find("max_value") != std::string::npos ? "max_value"
           : what.find("threshold") != std::string::npos ? "threshold"
                                                         : "negative_slope",
           what);
  }
}

std::shared_ptr<Layer> leaky_relu_layer(const LayerConfig& c) {
  // Keras 3 writes negative_slope; tf.keras 2 wrote alpha.
  const char* key = c.has("negative_slope") ? "negative_slope" : "alpha";
  try {
    return std::make_shared<layers::LeakyReLULayer>(c.number(key, 0.3), c.layer_name());
  } catch (const std::invalid_argument& e) {
    c.fail(key, e.what());
  }
}

std::shared_ptr<Layer> elu_layer(const LayerConfig& c) {
  try {
    return std::make_shared<layers::ELULayer>(c.number("alpha", 1.0), c.layer_name());
  } catch (const std::invalid_argument& e) {
    c.fail("alpha", e.what());
  }
}

std::shared_ptr<Layer> softmax_layer(const LayerConfig& c) {
  int64_t axis = -1;
  if (c.has("axis")) {
    const auto& v = c.config.at("axis");
    const bool one = v.is_array() && v.size() == 1 && v[0].is_number_integer();
    if (!one && !v.is_number_integer()) c.fail("axis", "only a single axis is supported, got " + v.dump());
    axis = one ? v[0].get<int64_t>() : v.get<int64_t>();
  }
  return std::make_shared<layers::SoftmaxLayer>(axis, c.layer_name());
}

std::shared_ptr<Layer> attention(const LayerConfig& c) {
  if (c.boolean("causal", false)) c.fail("causal", "the tf.keras causal option is not supported (use use_causal_mask in the call)");
  layers::AttentionOptions o;
  o.name = c.layer_name();
  o.use_scale = c.boolean("use_scale", false);
  o.score_mode = c.string("score_mode", "dot");
  o.dropout = static_cast<float>(c.number("dropout", 0.0));
  if (c.has("seed")) o.seed = c.integer("seed");
  try {
    return std::make_shared<layers::AttentionLayer>(o);
  } catch (const std::invalid_argument& e) {
    c.fail(o.score_mode != "dot" && o.score_mode != "concat" ? "score_mode" : "dropout", e.what());
  }
}

std::shared_ptr<Layer> multi_head_attention(const LayerConfig& c) {
  for (const char* k : {"kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint"})
    c.require_null(k);
  if (c.boolean("use_gate", false)) c.fail("use_gate", "gated attention is not supported");
  if (c.has("sliding_window")) c.require_null("sliding_window");
  // flash_attention only picks a kernel; the result is the same attention.
  if (c.has("attention_axes")) {
    const auto& axes = c.config.at("attention_axes");
    // Rank-3 inputs: None resolves to (1,), the only axis there is.
    const bool ok = (axes.is_array() && axes.size() == 1 && axes[0].is_number_integer() &&
                     (axes[0].get<int64_t>() == 1 || axes[0].get<int64_t>() == -2)) ||
                    (axes.is_number_integer() && (axes.get<int64_t>() == 1 || axes.get<int64_t>() == -2));
    if (!ok) c.fail("attention_axes", "only the default (attention over axis 1 of rank-3 inputs) is supported, got " + axes.dump());
  }
  layers::MultiHeadAttentionOptions o;
  o.name = c.layer_name();
  o.num_heads = c.integer("num_heads");
  o.key_dim = c.integer("key_dim");
  if (c.has("value_dim")) o.value_dim = c.integer("value_dim");
  o.dropout = static_cast<float>(c.number("dropout", 0.0));
  o.use_bias = c.boolean("use_bias", true);
  if (c.has("output_shape")) {
    const auto& v = c.config.at("output_shape");
    if (v.is_number_integer()) {
      o.output_shape = v.get<int64_t>();
    } else if (v.is_array() && v.size() == 1 && v[0].is_number_integer()) {
      o.output_shape = v[0].get<int64_t>();
    } else {
      c.fail("output_shape", "only a single feature count is supported, got " + v.dump());
    }
  }
  o.kernel_initializer = c.initializer("kernel_initializer", "glorot_uniform");
  o.bias_initializer = c.initializer("bias_initializer", "zeros");
  if (c.has("seed")) o.seed = c.integer("seed");
  try {
    return std::make_shared<layers::MultiHeadAttentionLayer>(o);
  } catch (const std::invalid_argument& e) {
    c.fail(o.num_heads <= 0 ? "num_heads" : o.key_dim <= 0 ? "key_dim" : "dropout", e.what());
  }
}

std::shared_ptr<Layer> layer_normalization(const LayerConfig& c) {
  for (const char* k : {"beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"})
    if (c.has(k)) c.require_null(k);
  if (c.boolean("rms_scaling", false)) c.fail("rms_scaling", "not supported");
  layers::LayerNormalizationOptions o;
  o.name = c.layer_name();
  if (c.has("axis")) {
    // An int, or (a built layer) a list of one: only the last axis is supported.
    const auto& v = c.config.at("axis");
    const bool one = v.is_array() && v.size() == 1 && v[0].is_number_integer();
    if (!one && !v.is_number_integer()) c.fail("axis", "only a single (last) axis is supported, got " + v.dump());
    o.axis = one ? v[0].get<int64_t>() : v.get<int64_t>();
  }
  o.epsilon = c.number("epsilon", 1e-3);
  o.center = c.boolean("center", true);
  o.scale = c.boolean("scale", true);
  o.beta_initializer = c.initializer("beta_initializer", "zeros");
  o.gamma_initializer = c.initializer("gamma_initializer", "ones");
  try {
    return std::make_shared<layers::LayerNormalizationLayer>(o);
  } catch (const std::invalid_argument& e) {
    c.fail("epsilon", e.what());
  }
}

std::shared_ptr<Layer> batch_normalization(const LayerConfig& c) {
  for (const char* k : {"beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"})
    if (c.has(k)) c.require_null(k);
  // tf.keras' options beyond Keras 3's; `fused` only picks a kernel.
  if (c.boolean("renorm", false)) c.fail("renorm", "batch renormalization is not supported");
  for (const char* k : {"virtual_batch_size", "adjustment"})
    if (c.has(k)) c.require_null(k);
  layers::BatchNormalizationOptions o;
  o.name = c.layer_name();
  if (c.has("axis")) {
    // An int (Keras 3), or a list of one (tf.keras once built).
    const auto& v = c.config.at("axis");
    const bool one = v.is_array() && v.size() == 1 && v[0].is_number_integer();
    if (!one && !v.is_number_integer()) c.fail("axis", "only a single axis is supported, got " + v.dump());
    o.axis = one ? v[0].get<int64_t>() : v.get<int64_t>();
  }
  o.momentum = c.number("momentum", 0.99);
  o.epsilon = c.number("epsilon", 1e-3);
  o.center = c.boolean("center", true);
  o.scale = c.boolean("scale", true);
  o.beta_initializer = c.initializer("beta_initializer", "zeros");
  o.gamma_initializer = c.initializer("gamma_initializer", "ones");
  o.moving_mean_initializer = c.initializer("moving_mean_initializer", "zeros");
  o.moving_variance_initializer = c.initializer("moving_variance_initializer", "ones");
  o.synchronized = c.boolean("synchronized", false);
  try {
    return std::make_shared<layers::BatchNormalizationLayer>(o);
  } catch (const std::invalid_argument& e) {
    c.fail(std::isfinite(o.momentum) ? "epsilon" : "momentum", e.what());
  }
}

std::shared_ptr<Layer> add(const LayerConfig& c) { return std::make_shared<layers::AddLayer>(c.layer_name()); }

template <layers::MergeOp kOp>
std::shared_ptr<Layer> elementwise_merge(const LayerConfig& c) {
  return std::make_shared<layers::ElementwiseMergeLayer>(kOp, c.layer_name());
}

std::shared_ptr<Layer> dot(const LayerConfig& c) {
  if (!c.has("axes")) c.fail("axes", "missing");
  const auto& v = c.config.at("axes");
  std::vector<int64_t> axes;
  if (v.is_number_integer()) {
    axes.push_back(v.get<int64_t>());
  } else if (v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[1].is_number_integer()) {
    axes = {v[0].get<int64_t>(), v[1].get<int64_t>()};
  } else {
    c.fail("axes", "expected an integer or a list of two, got " + v.dump());
  }
  return std::make_shared<layers::DotLayer>(axes, layers::DotOptions{.normalize = c.boolean("normalize", false),
                                                                       .name = c.layer_name()});
}

// GlobalAveragePooling1D and GlobalMaxPooling1D.
template <class PoolingLayer>
std::shared_ptr<Layer> global_pooling_1d(const LayerConfig& c) {
  const std::string fmt = c.string("data_format", "channels_last");
  if (fmt != "channels_last" && fmt != "channels_first")
    c.fail("data_format", "expected channels_last or channels_first, got '" + fmt + "'");
  return std::make_shared<PoolingLayer>(layers::GlobalPooling1DOptions{
      .keepdims = c.boolean("keepdims", false), .name = c.layer_name(), .data_format = fmt});
}

std::shared_ptr<Layer> concatenate(const LayerConfig& c) {
  const int64_t axis = c.has("axis") ? c.integer("axis") : -1;
  return std::make_shared<layers::ConcatenateLayer>(axis, c.layer_name());
}

// A one-element list (Keras 3 and tf.keras write tuples) or a bare integer.
int64_t single_integer(const LayerConfig& c, const std::string& key, int64_t def) {
  if (!c.has(key)) return def;
  const auto& v = c.config.at(key);
  if (v.is_array() && v.size() == 1 && v[0].is_number_integer()) return v[0].get<int64_t>();
  if (v.is_number_integer()) return v.get<int64_t>();
  c.fail(key, "expected one integer, got " + v.dump());
}

// What Conv1D and Conv2D read alike: refusals of what is not implemented, then the options both
// have.
template <class ConvOptions>
ConvOptions conv_options(const LayerConfig& c) {
  for (const char* k : {"kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint", "lora_rank",
                        "dora_rank"})
    if (c.has(k)) c.require_null(k);
  const std::string fmt = c.string("data_format", "channels_last");
  if (fmt != "channels_last") c.fail("data_format", "only channels_last is supported, got '" + fmt + "'");
  if (single_integer(c, "groups", 1) != 1) c.fail("groups", "only 1 is supported, got " + c.config.at("groups").dump());
  ConvOptions o;
  o.name = c.layer_name();
  o.padding = c.string("padding", "valid");
  o.activation = c.activation("activation", "linear");
  o.use_bias = c.boolean("use_bias", true);
  o.kernel_initializer = c.initializer("kernel_initializer", "glorot_uniform");
  o.bias_initializer = c.initializer("bias_initializer", "zeros");
  return o;
}

// The option a convolution's constructor refused, from its message.
const char* refused_conv_option(const std::string& what, int64_t filters) {
  return filters <= 0                                     ? "filters"
         : what.find("kernel_size") != std::string::npos ? "kernel_size"
         : what.find("padding") != std::string::npos     ? "padding"
         : what.find("activation") != std::string::npos  ? "activation"
                                                         : "strides";
}

std::shared_ptr<Layer> conv1d(const LayerConfig& c) {
  auto o = conv_options<layers::Conv1DOptions>(c);
  o.strides = single_integer(c, "strides", 1);
  o.dilation_rate = single_integer(c, "dilation_rate", 1);
  const int64_t filters = c.integer("filters"), kernel_size = single_integer(c, "kernel_size", 0);
  try {
    return std::make_shared<layers::Conv1DLayer>(filters, kernel_size, o);
  } catch (const std::invalid_argument& e) {
    c.fail(refused_conv_option(e.what(), filters), e.what());
  }
}

std::shared_ptr<Layer> embedding(const LayerConfig& c) {
  for (const char* k : {"embeddings_regularizer", "activity_regularizer", "embeddings_constraint", "lora_rank",
                        "quantization_config"})
    if (c.has(k)) c.require_null(k);
  // input_length (tf.keras 2) only repeats the input shape, which batch_input_shape gives.
  const int64_t input_dim = c.integer("input_dim"), output_dim = c.integer("output_dim");
  layers::EmbeddingOptions o;
  o.name = c.layer_name();
  o.embeddings_initializer = c.initializer("embeddings_initializer", "random_uniform");
  o.mask_zero = c.boolean("mask_zero", false);
  try {
    return std::make_shared<layers::EmbeddingLayer>(input_dim, output_dim, o);
  } catch (const std::invalid_argument& e) {
    c.fail(input_dim <= 0 || input_dim > layers::EmbeddingLayer::kMaxInputDim ? "input_dim" : "output_dim", e.what());
  }
}

// keras_hub's PositionEmbedding (class name "PositionEmbedding", registered "keras_hub>...").
std::shared_ptr<Layer> position_embedding(const LayerConfig& c) {
  const int64_t length = c.integer("sequence_length");
  layers::PositionEmbeddingOptions o;
  o.name = c.layer_name();
  o.initializer = c.initializer("initializer", "glorot_uniform");
  // hierarchical_alpha only matters past sequence_length, which build refuses.
  try {
    return std::make_shared<layers::PositionEmbeddingLayer>(length, o);
  } catch (const std::invalid_argument& e) {
    c.fail("sequence_length", e.what());
  }
}

// MaxPooling1D and AveragePooling1D: pool_size and strides as one-element lists or integers
// (strides null: pool_size, as Keras).
template <class PoolingLayer>
std::shared_ptr<Layer> pooling_1d(const LayerConfig& c) {
  const std::string fmt = c.string("data_format", "channels_last");
  if (fmt != "channels_last") c.fail("data_format", "only channels_last is supported, got '" + fmt + "'");
  const int64_t pool_size = single_integer(c, "pool_size", 2);
  layers::Pooling1DOptions o;
  o.name = c.layer_name();
  o.strides = c.has("strides") && !c.config.at("strides").is_null() ? single_integer(c, "strides", 0) : 0;
  o.padding = c.string("padding", "valid");
  if (c.has("strides") && o.strides <= 0) c.fail("strides", "must be positive, got " + c.config.at("strides").dump());
  try {
    return std::make_shared<PoolingLayer>(pool_size, o);
  } catch (const std::invalid_argument& e) {
    c.fail(pool_size <= 0 ? "pool_size" : "padding", e.what());
  }
}

// A two-element list (rows, columns), as Keras 3 and tf.keras write tuples, or a bare integer
// for both axes.
std::array<int64_t, 2> integer_pair(const LayerConfig& c, const std::string& key, std::array<int64_t, 2> def) {
  if (!c.has(key)) return def;
  const auto& v = c.config.at(key);
  if (v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[1].is_number_integer())
    return {v[0].get<int64_t>(), v[1].get<int64_t>()};
  if (v.is_number_integer()) return {v.get<int64_t>(), v.get<int64_t>()};
  c.fail(key, "expected two integers or one, got " + v.dump());
}

// MaxPooling2D and AveragePooling2D: pool_size and strides as pairs or integers (strides null:
// pool_size, as Keras).
template <class PoolingLayer>
std::shared_ptr<Layer> pooling_2d(const LayerConfig& c) {
  const std::string fmt = c.string("data_format", "channels_last");
  if (fmt != "channels_last") c.fail("data_format", "only channels_last is supported, got '" + fmt + "'");
  const auto pool_size = integer_pair(c, "pool_size", {2, 2});
  layers::Pooling2DOptions o;
  o.name = c.layer_name();
  const bool strides_given = c.has("strides") && !c.config.at("strides").is_null();
  if (strides_given) o.strides = integer_pair(c, "strides", {0, 0});
  o.padding = c.string("padding", "valid");
  if (strides_given && (o.strides[0] <= 0 || o.strides[1] <= 0))
    c.fail("strides", "must be positive, got " + c.config.at("strides").dump());
  try {
    return std::make_shared<PoolingLayer>(pool_size, o);
  } catch (const std::invalid_argument& e) {
    c.fail(pool_size[0] <= 0 || pool_size[1] <= 0 ? "pool_size" : "padding", e.what());
  }
}

// GlobalAveragePooling2D and GlobalMaxPooling2D.
template <class PoolingLayer>
std::shared_ptr<Layer> global_pooling_2d(const LayerConfig& c) {
  const std::string fmt = c.string("data_format", "channels_last");
  if (fmt != "channels_last" && fmt != "channels_first")
    c.fail("data_format", "expected channels_last or channels_first, got '" + fmt + "'");
  return std::make_shared<PoolingLayer>(layers::GlobalPooling2DOptions{
      .keepdims = c.boolean("keepdims", false), .name = c.layer_name(), .data_format = fmt});
}

// Conv2D: kernel_size, strides and dilation_rate as pairs or integers.
std::shared_ptr<Layer> conv2d(const LayerConfig& c) {
  auto o = conv_options<layers::Conv2DOptions>(c);
  o.strides = integer_pair(c, "strides", {1, 1});
  o.dilation_rate = integer_pair(c, "dilation_rate", {1, 1});
  const int64_t filters = c.integer("filters");
  const auto kernel_size = integer_pair(c, "kernel_size", {0, 0});
  try {
    return std::make_shared<layers::Conv2DLayer>(filters, kernel_size, o);
  } catch (const std::invalid_argument& e) {
    c.fail(refused_conv_option(e.what(), filters), e.what());
  }
}

const std::map<std::string, Factory>& registry() {
  static const std::map<std::string, Factory> r = {
      {"Dense", dense},   {"Flatten", flatten},       {"Reshape", reshape},
      {"Dropout", dropout}, {"Activation", activation}, {"Attention", attention},
      {"MultiHeadAttention", multi_head_attention},
      {"LayerNormalization", layer_normalization},
      {"BatchNormalization", batch_normalization},
      {"Add", add},
      {"Subtract", elementwise_merge<layers::MergeOp::kSubtract>},
      {"Multiply", elementwise_merge<layers::MergeOp::kMultiply>},
      {"Average", elementwise_merge<layers::MergeOp::kAverage>},
      {"Maximum", elementwise_merge<layers::MergeOp::kMaximum>},
      {"Minimum", elementwise_merge<layers::MergeOp::kMinimum>},
      {"Dot", dot},
      {"ReLU", relu_layer},
      {"LeakyReLU", leaky_relu_layer},
      {"ELU", elu_layer},
      {"Softmax", softmax_layer},
      {"GlobalAveragePooling1D", global_pooling_1d<layers::GlobalAveragePooling1DLayer>},
      {"Conv1D", conv1d},
      {"Conv2D", conv2d},
      {"Permute", permute},
      {"GlobalMaxPooling1D", global_pooling_1d<layers::GlobalMaxPooling1DLayer>},
      {"Concatenate", concatenate},
      {"MaxPooling1D", pooling_1d<layers::MaxPooling1DLayer>},
      {"AveragePooling1D", pooling_1d<layers::AveragePooling1DLayer>},
      {"MaxPooling2D", pooling_2d<layers::MaxPooling2DLayer>},
      {"AveragePooling2D", pooling_2d<layers::AveragePooling2DLayer>},
      {"GlobalAveragePooling2D", global_pooling_2d<layers::GlobalAveragePooling2DLayer>},
      {"GlobalMaxPooling2D", global_pooling_2d<layers::GlobalMaxPooling2DLayer>},
      {"Embedding", embedding},
      {"PositionEmbedding", position_embedding},
      {"keras_hub>PositionEmbedding", position_embedding},
      {"keras_nlp>PositionEmbedding", position_embedding},
  };
  return r;
}

}  // namespace

bool layer_class_supported(const std::string& class_name) {
  return class_name == "InputLayer" || registry().count(class_name) > 0;
}

std::shared_ptr<Layer> layer_from_config(const LayerConfig& cfg) {
  auto it = registry().find(cfg.class_name);
  if (it == registry().end()) {
    std::string known;
    for (const auto& [k, v] : registry()) known += (known.empty() ? "" : ", ") + k;
    detail::fail(cfg.file, "unsupported layer " + cfg.class_name + " (layer '" + cfg.layer_name() +
                               "'; supported: InputLayer, " + known + ")");
  }
  if (!cfg.config.is_object()) detail::fail(cfg.file, "layer '" + cfg.layer_name() + "': config is not an object");
  common_checks(cfg);
  std::shared_ptr<Layer> layer = it->second(cfg);
  if (!cfg.boolean("trainable", true)) layer->set_trainable(false);
  return layer;
}

// The three regex substitutions of Keras' to_snake_case, done by hand (each scan takes
// non-overlapping matches left to right, as re.sub does).
std::string snake_case(const std::string& name) {
  auto upper = [](char c) { return c >= 'A' && c <= 'Z'; };
  auto lower = [](char c) { return c >= 'a' && c <= 'z'; };
  std::string a;  // \W+ -> ""
  for (char c : name)
    if (lower(c) || upper(c) || (c >= '0' && c <= '9') || c == '_') a += c;
  std::string b;  // (.)([A-Z][a-z]+) -> \1_\2
  for (size_t i = 0; i < a.size();) {
    if (i + 2 < a.size() && upper(a[i + 1]) && lower(a[i + 2])) {
      b += a[i];
      b += '_';
      b += a[i + 1];
      size_t j = i + 2;
      while (j < a.size() && lower(a[j])) b += a[j++];
      i = j;
    } else {
      b += a[i++];
    }
  }
  std::string c;  // ([a-z])([A-Z]) -> \1_\2
  for (size_t i = 0; i < b.size();) {
    if (i + 1 < b.size() && lower(b[i]) && upper(b[i + 1])) {
      c += b[i];
      c += '_';
      c += b[i + 1];
      i += 2;
    } else {
      c += b[i++];
    }
  }
  for (char& ch : c)
    if (upper(ch)) ch = static_cast<char>(ch - 'A' + 'a');
  return c;
}

std::vector<WeightLocation> weight_locations(const Layer& layer, bool old_names) {
  std::vector<WeightLocation> out;
  const auto& ws = layer.weights();
  if (layer.class_name() == "MultiHeadAttention") {
    // Keras 3 saves MultiHeadAttention's EinsumDense sublayers by attribute name, each
    // holding kernel then bias: query_dense, key_dense, value_dense, output_dense (older
    // Keras 3 releases used the private names _query_dense, ...). Our weights are named
    // "query/kernel", ..., "attention_output/bias".
    for (const Weight& w : ws) {
      const auto slash = w.name.find('/');
      const std::string sub = w.name.substr(0, slash);
      const std::string var = slash == std::string::npos ? "" : w.name.substr(slash + 1);
      std::string group = sub == "attention_output" ? "output_dense" : sub + "_dense";
      if (old_names) group = "_" + group;
      out.push_back({group + "/vars", var == "bias" ? "1" : "0"});
    }
    return out;
  }
  for (size_t i = 0; i < ws.size(); ++i) out.push_back({"vars", std::to_string(i)});
  return out;
}

}  // namespace attn::io::detail
