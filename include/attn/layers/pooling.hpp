// GlobalAveragePooling1D: the mean over the steps of a (steps, features) input
// (keras/src/layers/pooling/global_average_pooling1d.py); with data_format "channels_first" the
// input is (features, steps) and the mean runs over its last axis (Keras' timeseries
// Transformer example pools that way). With a mask (the input's Keras mask, or
// CallOptions::mask; channels_last only) the mean over the kept steps only: sum / count, so a
// sample with every step masked gives 0 / 0 = NaN, as Keras does. The output has no mask.
// GlobalMaxPooling1D: the largest value over the steps, per feature (the same data formats and
// keepdims). Its gradient goes to the steps holding that value, shared equally among ties, as
// TensorFlow's and JAX's max gradients share it. Keras 3 passes it no mask.
#pragma once

#include "attn/layer.hpp"

namespace attn::layers {

struct GlobalAveragePooling1DOptions {
  bool keepdims = false;  // output (1, features) instead of (features); (features, 1) channels_first
  std::string name = "";
  std::string data_format = "channels_last";  // or "channels_first"

};

class GlobalAveragePooling1DLayer : public Layer {
 public:
  explicit GlobalAveragePooling1DLayer(GlobalAveragePooling1DOptions options = {})
      : Layer("global_average_pooling1d", options.name), options_(std::move(options)) {
    if (options_.data_format != "channels_last" && options_.data_format != "channels_first")
      fail("data_format must be \"channels_last\" or \"channels_first\", got \"" + options_.data_format + "\"");
  }
  std::string class_name() const override { return "GlobalAveragePooling1D"; }
  bool forward_is_per_sample() const override { return true; }
  void take_input_masks(const std::vector<Node>& inputs, CallOptions& options) const override;
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  GlobalAveragePooling1DOptions options_;
  int64_t steps_ = 0, features_ = 0;
  // Where step t of feature f sits in a sample: t * step_stride_ + f * feature_stride_.
  int64_t step_stride_ = 0, feature_stride_ = 0;
};

class GlobalMaxPooling1DLayer : public Layer {
 public:
  explicit GlobalMaxPooling1DLayer(GlobalAveragePooling1DOptions options = {});
  std::string class_name() const override { return "GlobalMaxPooling1D"; }
  bool forward_is_per_sample() const override { return true; }
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  GlobalAveragePooling1DOptions options_;
  int64_t steps_ = 0, features_ = 0, step_stride_ = 0, feature_stride_ = 0;
};

class GlobalAveragePooling1D : public LayerHandle<GlobalAveragePooling1DLayer> {
 public:
  explicit GlobalAveragePooling1D(GlobalAveragePooling1DOptions options = {})
      : LayerHandle(std::make_shared<GlobalAveragePooling1DLayer>(std::move(options))) {}
};

class GlobalMaxPooling1D : public LayerHandle<GlobalMaxPooling1DLayer> {
 public:
  explicit GlobalMaxPooling1D(GlobalAveragePooling1DOptions options = {})
      : LayerHandle(std::make_shared<GlobalMaxPooling1DLayer>(std::move(options))) {}
};

}  // namespace attn::layers
