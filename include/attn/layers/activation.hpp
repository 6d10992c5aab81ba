// Activation: applies a named activation (keras/src/layers/activations/activation.py).
#pragma once

#include "attn/layer.hpp"

namespace attn::layers {

class ActivationLayer : public Layer {
 public:
  explicit ActivationLayer(std::string activation, std::string name = "");
  std::string class_name() const override { return "Activation"; }
  int64_t saved_floats_per_sample(const CallOptions&) const override { return sample_size_; }
  bool has_keras_logits() const override;
  std::string keras_logits_activation() const override { return activation_name_; }
  void forward(ForwardContext& ctx) override;
  bool forward_is_per_sample() const override { return true; }
  bool propagates_mask() const override { return true; }
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  std::string activation_name_;
  int activation_;
  int64_t sample_size_ = 0;
  int64_t width_ = 1;  // last axis (softmax runs over it)
};

class Activation : public LayerHandle<ActivationLayer> {
 public:
  explicit Activation(std::string activation, std::string name = "")
      : LayerHandle(std::make_shared<ActivationLayer>(std::move(activation), std::move(name))) {}
};

}  // namespace attn::layers
