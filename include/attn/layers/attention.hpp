// Attention: Luong dot-product (or concat) attention with no projections
// (keras/src/layers/attention/attention.py, keras-semantics.md section 1).
// Inputs [query, value] or [query, value, key]; key defaults to value.
// Weights: `scale` (scalar, starts at 1.0) when use_scale, then
// `concat_score_weight` (scalar, 1.0) in concat mode. No 1/sqrt(d) anywhere.
// Gradients flow through the attention output only, not the returned scores.
#pragma once

#include <optional>

#include "attn/layer.hpp"

namespace attn::layers {

struct AttentionOptions {
  bool use_scale = false;
  std::string score_mode = "dot";  // or "concat"
  float dropout = 0.0f;
  std::optional<int64_t> seed = std::nullopt;
  std::string name = "";
};

class AttentionLayer : public Layer {
 public:
  explicit AttentionLayer(AttentionOptions options);
  std::string class_name() const override { return "Attention"; }
  const AttentionOptions& options() const { return options_; }

  int64_t saved_floats_per_sample(const CallOptions& call) const override;
  int64_t scratch_floats(int64_t batch, const CallOptions& call) const override;
  void forward(ForwardContext& ctx) override;
  bool forward_is_per_sample() const override { return true; }
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;
  // Keras fills mask=[query_mask, value_mask] from the query's and value's Keras masks; the
  // output carries the query mask (attention.py compute_mask).
  void take_input_masks(const std::vector<Node>& inputs, CallOptions& options) const override;
  Node compute_mask(const std::vector<Node>& inputs, const CallOptions& options) const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions& call) override;

 private:
  struct Dims {
    int64_t tq, tv, d, dv;
  };
  Dims dims() const;
  AttentionOptions options_;
  bool concat_ = false;
};

class Attention : public LayerHandle<AttentionLayer> {
 public:
  explicit Attention(AttentionOptions options = {})
      : LayerHandle(std::make_shared<AttentionLayer>(std::move(options))) {}
};

}  // namespace attn::layers
