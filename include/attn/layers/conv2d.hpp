// Conv2D: y[i, j] = activation(bias + sum over taps (a, b) of x[i * sh + a * dh - pad_top,
// j * sw + b * dw - pad_left] @ kernel[a, b]) over (rows, columns, channels) inputs
// (keras/src/layers/convolutional/conv2d.py, channels_last, groups 1). kernel (kh, kw,
// channels, filters) glorot_uniform (fans from the receptive field), bias zeros. Padding
// "valid" (no padding) or "same" (ceil(size / strides) outputs per axis, the padding split with
// the smaller half first, as TensorFlow and JAX do). As in Keras, strides > 1 with
// dilation_rate > 1 is refused.
#pragma once

#include <array>
#include <string>

#include "attn/layer.hpp"

namespace attn::layers {

struct Conv2DOptions {
  std::array<int64_t, 2> strides = {1, 1};
  std::string padding = "valid";  // "valid" or "same"
  std::array<int64_t, 2> dilation_rate = {1, 1};
  std::string activation = "linear";
  bool use_bias = true;
  std::string kernel_initializer = "glorot_uniform";
  std::string bias_initializer = "zeros";
  std::string name = "";
};

class Conv2DLayer : public Layer {
 public:
  Conv2DLayer(int64_t filters, std::array<int64_t, 2> kernel_size, Conv2DOptions options = {});
  // A square kernel, as Keras' Conv2D(32, 3).
  Conv2DLayer(int64_t filters, int64_t kernel_size, Conv2DOptions options = {})
      : Conv2DLayer(filters, {kernel_size, kernel_size}, std::move(options)) {}
  std::string class_name() const override { return "Conv2D"; }
  int64_t filters() const { return filters_; }
  std::array<int64_t, 2> kernel_size() const { return kernel_size_; }
  bool forward_is_per_sample() const override { return true; }
  int64_t saved_floats_per_sample(const CallOptions&) const override;
  int64_t scratch_floats(int64_t batch, const CallOptions&) const override;
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  // One spatial axis: its input and output sizes and where output o's taps start.
  struct Axis {
    int64_t in = 0, out = 0, kernel = 0, stride = 1, dilation = 1, pad_before = 0;
    // Input index of output o's tap t (outside [0, in) when it falls in the padding).
    int64_t input_of(int64_t o, int64_t t) const { return o * stride + t * dilation - pad_before; }
  };
  // Patch rows per product: samples are gathered into products of about this many rows (at
  // least one sample). On Keras' MNIST convnet 128-512 rows ran 19-22 ms a step at batch 128,
  // one sample per product 23, 4096 rows 23 (their patches no longer stay in cache).
  static constexpr int64_t kProductRows = 256;
  // A 1x1 kernel at stride 1 reads each input position once: the input is its own patch matrix.
  bool pointwise() const;
  int64_t samples_per_product(int64_t batch) const;
  // One sample's patch matrix: a row per output position, (kh, kw, channels) values per row, 0
  // where a tap falls in the padding. The layout of the kernel's rows, so Z = P @ kernel.
  void gather_patches(const float* x, float* patches) const;
  // The reverse: each patch value's gradient added to the input position it came from.
  void scatter_patch_grads(const float* patch_grads, float* dx) const;

  int64_t filters_;
  std::array<int64_t, 2> kernel_size_;
  Conv2DOptions options_;
  std::string activation_name_;
  int activation_;  // kernels::Activation
  Axis rows_, cols_;
  int64_t channels_ = 0;
};

class Conv2D : public LayerHandle<Conv2DLayer> {
 public:
  Conv2D(int64_t filters, std::array<int64_t, 2> kernel_size, Conv2DOptions options = {})
      : LayerHandle(std::make_shared<Conv2DLayer>(filters, kernel_size, std::move(options))) {}
  Conv2D(int64_t filters, int64_t kernel_size, Conv2DOptions options = {})
      : LayerHandle(std::make_shared<Conv2DLayer>(filters, kernel_size, std::move(options))) {}
};

}  // namespace attn::layers
