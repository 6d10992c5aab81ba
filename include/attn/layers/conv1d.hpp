// Conv1D: y[t] = activation(bias + sum_k x[t * strides + k * dilation_rate - pad] @ kernel[k])
// over (steps, channels) inputs (keras/src/layers/convolutional/conv1d.py, channels_last,
// groups 1). kernel (kernel_size, channels, filters) glorot_uniform (fans from the receptive
// field), bias zeros. Padding "valid" (no padding), "same" (ceil(steps / strides) outputs, the
// padding split with the smaller half first, as TensorFlow and JAX do) or "causal" (all of it
// before the first step, so an output sees no later step). As in Keras, strides > 1 with
// dilation_rate > 1 is refused.
#pragma once

#include <string>

#include "attn/layer.hpp"

namespace attn::layers {

struct Conv1DOptions {
  int64_t strides = 1;
  std::string padding = "valid";  // "valid", "same" or "causal"
  int64_t dilation_rate = 1;
  std::string activation = "linear";
  bool use_bias = true;
  std::string kernel_initializer = "glorot_uniform";
  std::string bias_initializer = "zeros";
  std::string name = "";
};

class Conv1DLayer : public Layer {
 public:
  Conv1DLayer(int64_t filters, int64_t kernel_size, Conv1DOptions options = {});
  std::string class_name() const override { return "Conv1D"; }
  int64_t filters() const { return filters_; }
  int64_t kernel_size() const { return kernel_size_; }
  bool forward_is_per_sample() const override { return true; }
  int64_t saved_floats_per_sample(const CallOptions&) const override;
  int64_t scratch_floats(int64_t batch, const CallOptions&) const override;
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  // Outputs [first, end) whose input row for tap k lies inside the sequence.
  std::pair<int64_t, int64_t> outputs_reading_tap(int64_t k) const;

  int64_t filters_, kernel_size_;
  Conv1DOptions options_;
  std::string activation_name_;
  int activation_;  // kernels::Activation
  int64_t steps_in_ = 0, channels_ = 0, steps_out_ = 0, pad_before_ = 0;
};

class Conv1D : public LayerHandle<Conv1DLayer> {
 public:
  Conv1D(int64_t filters, int64_t kernel_size, Conv1DOptions options = {})
      : LayerHandle(std::make_shared<Conv1DLayer>(filters, kernel_size, std::move(options))) {}
};

}  // namespace attn::layers
