// BatchNormalization (keras/src/layers/normalization/batch_normalization.py): each channel of
// `axis` becomes (x - mean) / sqrt(var + epsilon) * gamma + beta. In training the mean and the
// (biased) variance are the batch's, over every axis but `axis`, and the moving statistics
// follow them: moving = moving * momentum + batch * (1 - momentum), as Keras 3 (which, unlike
// tf.keras' fused kernel, keeps the biased variance). In inference, and always once the layer is
// not trainable (Keras 3: a frozen BatchNormalization runs in inference mode), the moving
// statistics stand in for the batch's. Weights in Keras' order: gamma, beta, moving_mean,
// moving_variance (the last two not trainable).
//
// The batch statistics need the whole batch, so on several threads a trainable layer runs as a
// team: each thread's moments of its slice, one barrier, the same thread-order combination on
// every thread.
#pragma once

#include "attn/layer.hpp"

namespace attn::layers {

struct BatchNormalizationOptions {
  int64_t axis = -1;       // the channel axis, counting the batch axis (-1: the last)
  double momentum = 0.99;  // Keras' defaults
  double epsilon = 1e-3;
  bool center = true;      // beta
  bool scale = true;       // gamma
  std::string beta_initializer = "zeros";
  std::string gamma_initializer = "ones";
  std::string moving_mean_initializer = "zeros";
  std::string moving_variance_initializer = "ones";
  bool synchronized = false;  // across devices in Keras; one device here, so the same statistics
  std::string name = "";
};

class BatchNormalizationLayer : public Layer {
 public:
  explicit BatchNormalizationLayer(BatchNormalizationOptions options = {});
  std::string class_name() const override { return "BatchNormalization"; }
  const BatchNormalizationOptions& options() const { return options_; }

  // The slice's per-channel mean and 1 / sqrt(var + epsilon), once (backward recomputes xhat).
  int64_t saved_floats_per_sample(const CallOptions&) const override { return 2 * channels_; }
  int64_t scratch_floats(int64_t, const CallOptions&) const override;
  bool uses_batch_statistics() const override { return trainable_; }
  bool runs_as_team() const override { return trainable_; }
  int64_t team_floats(int64_t batch, int threads) const override;
  bool team_writes_input_grads() const override { return true; }
  bool forward_is_per_sample() const override { return !trainable_; }
  bool propagates_mask() const override { return true; }
  void take_input_masks(const std::vector<Node>& inputs, CallOptions& options) const override;
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions& options) override;

 private:
  int weight_index(const char* name) const;  // -1 when the layer has no such weight

  BatchNormalizationOptions options_;
  int64_t outer_ = 0;     // per sample: elements before the channel axis
  int64_t channels_ = 0;  // the channel axis
  int64_t inner_ = 0;     // elements after it
};

class BatchNormalization : public LayerHandle<BatchNormalizationLayer> {
 public:
  explicit BatchNormalization(BatchNormalizationOptions options = {})
      : LayerHandle(std::make_shared<BatchNormalizationLayer>(std::move(options))) {}
};

}  // namespace attn::layers
