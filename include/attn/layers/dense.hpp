// Dense: y = activation(x @ kernel + bias), contracting the last axis only
// (keras/src/layers/core/dense.py). kernel (in, units) glorot_uniform, bias zeros.
#pragma once

#include <string>

#include "attn/layer.hpp"

namespace attn::layers {

struct DenseOptions {
  std::string activation = "linear";
  bool use_bias = true;
  std::string kernel_initializer = "glorot_uniform";
  std::string bias_initializer = "zeros";
  std::string name = "";
};

class DenseLayer : public Layer {
 public:
  DenseLayer(int64_t units, DenseOptions options);
  std::string class_name() const override { return "Dense"; }
  int64_t units() const { return units_; }
  const std::string& activation() const { return activation_name_; }

  int64_t saved_floats_per_sample(const CallOptions&) const override;
  int64_t scratch_floats(int64_t batch, const CallOptions&) const override;
  bool has_keras_logits() const override;
  // On several threads Dense splits W by rows (each thread: its input features, all samples) once
  // W is large: at small batches reading W dominates, and each thread then reads only its share.
  bool runs_as_team() const override;
  int64_t team_floats(int64_t batch, int threads) const override;
  bool team_writes_input_grads() const override { return true; }
  bool propagates_mask() const override { return true; }
  std::string keras_logits_activation() const override { return activation_name_; }
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  void forward_team(ForwardContext& ctx, float* z);
  void backward_team(BackwardContext& ctx, const float* dy);
  int64_t units_;
  DenseOptions options_;
  std::string activation_name_;
  int activation_;  // kernels::Activation
  int64_t in_features_ = 0;
  int64_t rows_per_sample_ = 1;  // product of the axes between batch and features
};

class Dense : public LayerHandle<DenseLayer> {
 public:
  explicit Dense(int64_t units, DenseOptions options = {})
      : LayerHandle(std::make_shared<DenseLayer>(units, std::move(options))) {}
};

}  // namespace attn::layers
