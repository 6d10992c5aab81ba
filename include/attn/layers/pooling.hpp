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

struct GlobalPooling1DOptions {
  bool keepdims = false;  // output (1, features) instead of (features); (features, 1) channels_first
  std::string name = "";
  std::string data_format = "channels_last";  // or "channels_first"
};
using GlobalAveragePooling1DOptions = GlobalPooling1DOptions;

// What the two global poolings share: the data format, keepdims, and where step t of feature f
// sits in a sample (t * step_stride_ + f * feature_stride_).
class GlobalPooling1DLayer : public Layer {
 public:
  // class_name is kept here: the constructor's errors name it.
  GlobalPooling1DLayer(std::string class_name, std::string prefix, GlobalPooling1DOptions options);
  std::string class_name() const override { return class_name_; }
  bool forward_is_per_sample() const override { return true; }
  nlohmann::json get_config() const override;

 protected:
  // Reads the input's steps and features; returns the output shape.
  Shape build_layout(const std::vector<Shape>& in);

  std::string class_name_;
  GlobalPooling1DOptions options_;
  int64_t steps_ = 0, features_ = 0, step_stride_ = 0, feature_stride_ = 0;
};

class GlobalAveragePooling1DLayer : public GlobalPooling1DLayer {
 public:
  explicit GlobalAveragePooling1DLayer(GlobalPooling1DOptions options = {})
      : GlobalPooling1DLayer("GlobalAveragePooling1D", "global_average_pooling1d", std::move(options)) {}
  void take_input_masks(const std::vector<Node>& inputs, CallOptions& options) const override;
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;
};

class GlobalMaxPooling1DLayer : public GlobalPooling1DLayer {
 public:
  explicit GlobalMaxPooling1DLayer(GlobalPooling1DOptions options = {})
      : GlobalPooling1DLayer("GlobalMaxPooling1D", "global_max_pooling1d", std::move(options)) {}
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;
};

class GlobalAveragePooling1D : public LayerHandle<GlobalAveragePooling1DLayer> {
 public:
  explicit GlobalAveragePooling1D(GlobalPooling1DOptions options = {})
      : LayerHandle(std::make_shared<GlobalAveragePooling1DLayer>(std::move(options))) {}
};

class GlobalMaxPooling1D : public LayerHandle<GlobalMaxPooling1DLayer> {
 public:
  explicit GlobalMaxPooling1D(GlobalPooling1DOptions options = {})
      : LayerHandle(std::make_shared<GlobalMaxPooling1DLayer>(std::move(options))) {}
};

}  // namespace attn::layers
