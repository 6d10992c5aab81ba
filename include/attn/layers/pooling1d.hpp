// MaxPooling1D and AveragePooling1D: windows of pool_size steps, strides apart, over a
// (steps, features) input (keras/src/layers/pooling/base_pooling.py, channels_last). Padding
// "valid" (whole windows only) or "same" (ceil(steps / strides) windows, padding split with the
// smaller half first); padded steps take no part: a max ignores them and an average divides by
// the steps it covers, as TensorFlow's pools and Keras 3's JAX backend do. A window's maximum
// passes its gradient to the first step holding it (TensorFlow's MaxPoolGrad; GlobalMaxPooling1D
// instead shares ties, as reduce_max does). Keras 3 passes these layers no mask.
#pragma once

#include <string>

#include "attn/layer.hpp"

namespace attn::layers {

struct Pooling1DOptions {
  int64_t strides = 0;  // 0: pool_size, as Keras' None
  std::string padding = "valid";
  std::string name = "";
};

class Pooling1DLayer : public Layer {
 public:
  // class_name: "MaxPooling1D" or "AveragePooling1D" (kept here: the constructor's errors name it).
  Pooling1DLayer(std::string class_name, std::string prefix, int64_t pool_size, Pooling1DOptions options);
  std::string class_name() const override { return class_name_; }
  bool forward_is_per_sample() const override { return true; }
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;
  // Input steps [first, end) of output step t (the padding left out).
  std::pair<int64_t, int64_t> window(int64_t t) const;

  std::string class_name_;
  int64_t pool_size_;
  Pooling1DOptions options_;
  int64_t steps_in_ = 0, features_ = 0, steps_out_ = 0, pad_before_ = 0;
};

class MaxPooling1DLayer : public Pooling1DLayer {
 public:
  explicit MaxPooling1DLayer(int64_t pool_size = 2, Pooling1DOptions options = {})
      : Pooling1DLayer("MaxPooling1D", "max_pooling1d", pool_size, std::move(options)) {}
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
};

class AveragePooling1DLayer : public Pooling1DLayer {
 public:
  explicit AveragePooling1DLayer(int64_t pool_size = 2, Pooling1DOptions options = {})
      : Pooling1DLayer("AveragePooling1D", "average_pooling1d", pool_size, std::move(options)) {}
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
};

class MaxPooling1D : public LayerHandle<MaxPooling1DLayer> {
 public:
  explicit MaxPooling1D(int64_t pool_size = 2, Pooling1DOptions options = {})
      : LayerHandle(std::make_shared<MaxPooling1DLayer>(pool_size, std::move(options))) {}
};

class AveragePooling1D : public LayerHandle<AveragePooling1DLayer> {
 public:
  explicit AveragePooling1D(int64_t pool_size = 2, Pooling1DOptions options = {})
      : LayerHandle(std::make_shared<AveragePooling1DLayer>(pool_size, std::move(options))) {}
};

}  // namespace attn::layers
