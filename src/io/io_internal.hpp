// Internals of the model-file layer shared by src/io/*.cpp (not installed).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/io.hpp"
#include "attn/layer.hpp"

namespace attn::io::detail {

// Throws FileError "<file>: <what>".
[[noreturn]] void fail(const std::string& file, const std::string& what);

// What the registry hands a from_config function: the layer's Keras config plus the
// file it came from, so every error names the layer, the option and the file.
struct LayerConfig {
  std::string class_name;
  nlohmann::json config;
  std::string file;

  std::string layer_name() const;
  [[noreturn]] void fail(const std::string& option, const std::string& what) const;
  // Keys the reader understood; anything else non-default is refused by check_unknown().
  bool has(const std::string& key) const { return config.contains(key) && !config.at(key).is_null(); }
  double number(const std::string& key, double def) const;
  int64_t integer(const std::string& key) const;
  bool boolean(const std::string& key, bool def) const;
  std::string string(const std::string& key, const std::string& def) const;
  // Refuses a non-null value (regularizers, constraints we do not implement).
  void require_null(const std::string& key) const;
  // The dtype, a string or a DTypePolicy dict, must be "float32" (or, for an InputLayer,
  // with or_integer, "int32" / "int64"); anything else is refused.
  void require_float32(bool or_integer = false) const;
  // A Keras initializer (string or {"class_name", "config"}) as attn's initializer name.
  std::string initializer(const std::string& key, const std::string& def) const;
  // A Keras activation (string, or {"class_name": "function", "config": name}).
  std::string activation(const std::string& key, const std::string& def) const;
  // batch_shape (Keras 3) / batch_input_shape (tf.keras) without the batch axis, if present.
  std::optional<Shape> batch_shape() const;
};

// Builds an unbuilt layer from its Keras config; throws FileError for an unsupported
// class ("unsupported layer X"), option or value. InputLayer is not built here.
std::shared_ptr<Layer> layer_from_config(const LayerConfig& cfg);
bool layer_class_supported(const std::string& class_name);

// Keras' naming.to_snake_case: "MultiHeadAttention" -> "multi_head_attention".
std::string snake_case(const std::string& name);

// model_from_config with the file named in errors.
Model model_from_config(const nlohmann::json& config, const std::string& file);
// Keras 3 config.json without compile_config, and the compile_config (null if uncompiled).
nlohmann::json model_to_config_impl(const Model& model);
nlohmann::json compile_config(const Model& model);

// Where each weight of a layer lives in a Keras 3 weights tree, relative to the layer's
// group: {"vars", "0"} for plain layers; MultiHeadAttention nests its EinsumDense
// sublayers ({"query_dense/vars", "0"}, ...; old_names: "_query_dense").
struct WeightLocation {
  std::string group;  // relative path of the vars group
  std::string dataset;
};
std::vector<WeightLocation> weight_locations(const Layer& layer, bool old_names = false);

}  // namespace attn::io::detail
