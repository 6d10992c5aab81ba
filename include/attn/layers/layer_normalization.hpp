// LayerNormalization over the last axis (keras/src/layers/normalization/layer_normalization.py):
// each row of the last axis becomes (x - mean) / sqrt(var + epsilon) * gamma + beta, with the
// row's mean and (biased) variance; gamma is created before beta, as Keras does.
#pragma once

#include "attn/layer.hpp"

namespace attn::layers {

struct LayerNormalizationOptions {
  int64_t axis = -1;       // the last axis: -1, or its index counting the batch axis
  double epsilon = 1e-3;   // Keras' default; kept as given for the config
  bool center = true;      // beta
  bool scale = true;       // gamma
  std::string beta_initializer = "zeros";
  std::string gamma_initializer = "ones";
  std::string name = "";
};

class LayerNormalizationLayer : public Layer {
 public:
  explicit LayerNormalizationLayer(LayerNormalizationOptions options = {});
  std::string class_name() const override { return "LayerNormalization"; }
  const LayerNormalizationOptions& options() const { return options_; }
  // Per row: the mean and 1 / sqrt(var + epsilon).
  int64_t saved_floats_per_sample(const CallOptions&) const override { return 2 * rows_; }
  bool forward_is_per_sample() const override { return true; }
  bool propagates_mask() const override { return true; }
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  LayerNormalizationOptions options_;
  int64_t rows_ = 0;   // rows of the last axis per sample
  int64_t width_ = 0;  // the last axis
};

class LayerNormalization : public LayerHandle<LayerNormalizationLayer> {
 public:
  explicit LayerNormalization(LayerNormalizationOptions options = {})
      : LayerHandle(std::make_shared<LayerNormalizationLayer>(std::move(options))) {}
};

}  // namespace attn::layers
