// PositionEmbedding (keras_hub.layers.PositionEmbedding, keras_hub/src/layers/modeling/
// position_embedding.py; not in core Keras): a trainable (sequence_length, features) table whose
// first `steps` rows are the output for every sample of a (steps, features) input; the input's
// values are not used, only its shape. Added to token embeddings, it gives a Transformer the
// positions its attention cannot see. Inputs longer than sequence_length (keras_hub's
// hierarchical extension, and its start_index for cached decoding) are not implemented. Like
// keras_hub's, the layer does not carry masks: Add passes the token embeddings' mask on.
#pragma once

#include "attn/layer.hpp"

namespace attn::layers {

struct PositionEmbeddingOptions {
  std::string initializer = "glorot_uniform";
  std::string name = "";
};

class PositionEmbeddingLayer : public Layer {
 public:
  PositionEmbeddingLayer(int64_t sequence_length, PositionEmbeddingOptions options = {});
  std::string class_name() const override { return "PositionEmbedding"; }
  int64_t sequence_length() const { return sequence_length_; }
  bool forward_is_per_sample() const override { return true; }
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  int64_t sequence_length_;
  PositionEmbeddingOptions options_;
  int64_t used_ = 0;  // steps * features: the table's first rows, as one block
};

class PositionEmbedding : public LayerHandle<PositionEmbeddingLayer> {
 public:
  explicit PositionEmbedding(int64_t sequence_length, PositionEmbeddingOptions options = {})
      : LayerHandle(std::make_shared<PositionEmbeddingLayer>(sequence_length, std::move(options))) {}
};

}  // namespace attn::layers
