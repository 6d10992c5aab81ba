// MaxPooling2D and AveragePooling2D: windows of pool_size (rows, columns), strides apart, over a
// (height, width, channels) input (keras/src/layers/pooling/base_pooling.py, channels_last
// only). Padding "valid" (whole windows only) or "same" (ceil(size / strides) windows per axis,
// padding split with the smaller half first); padded cells take no part: a max ignores them and
// an average divides by the cells it covers, as TensorFlow's pools and Keras 3's JAX backend do.
// A window's maximum passes its gradient to the first cell holding it, rows then columns
// (TensorFlow's MaxPoolGrad); forward keeps where each maximum came from. GlobalAveragePooling2D
// and GlobalMaxPooling2D reduce over (height, width), channels_last or channels_first; the
// global max shares ties, as reduce_max does. Keras 3 passes these layers no mask.
#pragma once

#include <algorithm>
#include <array>
#include <string>

#include "attn/layer.hpp"

namespace attn::layers {

struct Pooling2DOptions {
  std::array<int64_t, 2> strides = {0, 0};  // (rows, columns); {0, 0}: pool_size, as Keras' None
  std::string padding = "valid";
  std::string name = "";
};

class Pooling2DLayer : public Layer {
 public:
  // class_name: "MaxPooling2D" or "AveragePooling2D" (kept here: the constructor's errors name it).
  Pooling2DLayer(std::string class_name, std::string prefix, std::array<int64_t, 2> pool_size,
                 Pooling2DOptions options);
  std::string class_name() const override { return class_name_; }
  bool forward_is_per_sample() const override { return true; }
  nlohmann::json get_config() const override;

 protected:
  // Where the windows of one axis fall.
  struct Axis {
    int64_t in = 0, out = 0, pool = 0, stride = 0, pad_before = 0;
    // Input cells [first, end) of output index t (the padding left out).
    std::pair<int64_t, int64_t> window(int64_t t) const {
      const int64_t start = t * stride - pad_before;
      return {std::max<int64_t>(0, start), std::min(in, start + pool)};
    }
  };
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions& call) override;

  std::string class_name_;
  std::array<int64_t, 2> pool_size_;
  Pooling2DOptions options_;
  Axis rows_, cols_;
  int64_t channels_ = 0;
};

class MaxPooling2DLayer : public Pooling2DLayer {
 public:
  explicit MaxPooling2DLayer(std::array<int64_t, 2> pool_size = {2, 2}, Pooling2DOptions options = {})
      : Pooling2DLayer("MaxPooling2D", "max_pooling2d", pool_size, std::move(options)) {}
  // One size for both axes, as Keras' MaxPooling2D(3).
  explicit MaxPooling2DLayer(int64_t pool_size, Pooling2DOptions options = {})
      : MaxPooling2DLayer({pool_size, pool_size}, std::move(options)) {}
  // Where each maximum came from (its input offset in the sample), for backward.
  int64_t saved_floats_per_sample(const CallOptions&) const override;
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
};

class AveragePooling2DLayer : public Pooling2DLayer {
 public:
  explicit AveragePooling2DLayer(std::array<int64_t, 2> pool_size = {2, 2}, Pooling2DOptions options = {})
      : Pooling2DLayer("AveragePooling2D", "average_pooling2d", pool_size, std::move(options)) {}
  explicit AveragePooling2DLayer(int64_t pool_size, Pooling2DOptions options = {})
      : AveragePooling2DLayer({pool_size, pool_size}, std::move(options)) {}
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
};

class MaxPooling2D : public LayerHandle<MaxPooling2DLayer> {
 public:
  explicit MaxPooling2D(std::array<int64_t, 2> pool_size = {2, 2}, Pooling2DOptions options = {})
      : LayerHandle(std::make_shared<MaxPooling2DLayer>(pool_size, std::move(options))) {}
  explicit MaxPooling2D(int64_t pool_size, Pooling2DOptions options = {})
      : LayerHandle(std::make_shared<MaxPooling2DLayer>(pool_size, std::move(options))) {}
};

class AveragePooling2D : public LayerHandle<AveragePooling2DLayer> {
 public:
  explicit AveragePooling2D(std::array<int64_t, 2> pool_size = {2, 2}, Pooling2DOptions options = {})
      : LayerHandle(std::make_shared<AveragePooling2DLayer>(pool_size, std::move(options))) {}
  explicit AveragePooling2D(int64_t pool_size, Pooling2DOptions options = {})
      : LayerHandle(std::make_shared<AveragePooling2DLayer>(pool_size, std::move(options))) {}
};

struct GlobalPooling2DOptions {
  bool keepdims = false;  // output (1, 1, channels) instead of (channels); (channels, 1, 1) channels_first
  std::string name = "";
  std::string data_format = "channels_last";  // or "channels_first": (channels, height, width)
};

// What the two global poolings share: the data format, keepdims, and where cell p (row-major
// over height and width) of channel c sits in a sample (p * cell_stride_ + c * channel_stride_).
class GlobalPooling2DLayer : public Layer {
 public:
  // class_name is kept here: the constructor's errors name it.
  GlobalPooling2DLayer(std::string class_name, std::string prefix, GlobalPooling2DOptions options);
  std::string class_name() const override { return class_name_; }
  bool forward_is_per_sample() const override { return true; }
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions& call) override;

  std::string class_name_;
  GlobalPooling2DOptions options_;
  int64_t cells_ = 0, channels_ = 0, cell_stride_ = 0, channel_stride_ = 0;
};

class GlobalAveragePooling2DLayer : public GlobalPooling2DLayer {
 public:
  explicit GlobalAveragePooling2DLayer(GlobalPooling2DOptions options = {})
      : GlobalPooling2DLayer("GlobalAveragePooling2D", "global_average_pooling2d", std::move(options)) {}
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
};

class GlobalMaxPooling2DLayer : public GlobalPooling2DLayer {
 public:
  explicit GlobalMaxPooling2DLayer(GlobalPooling2DOptions options = {})
      : GlobalPooling2DLayer("GlobalMaxPooling2D", "global_max_pooling2d", std::move(options)) {}
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
};

class GlobalAveragePooling2D : public LayerHandle<GlobalAveragePooling2DLayer> {
 public:
  explicit GlobalAveragePooling2D(GlobalPooling2DOptions options = {})
      : LayerHandle(std::make_shared<GlobalAveragePooling2DLayer>(std::move(options))) {}
};

class GlobalMaxPooling2D : public LayerHandle<GlobalMaxPooling2DLayer> {
 public:
  explicit GlobalMaxPooling2D(GlobalPooling2DOptions options = {})
      : LayerHandle(std::make_shared<GlobalMaxPooling2DLayer>(std::move(options))) {}
};

}  // namespace attn::layers
