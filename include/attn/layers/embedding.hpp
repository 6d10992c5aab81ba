// Embedding (keras/src/layers/core/embedding.py): each input value is an index into a trainable
// (input_dim, output_dim) table and becomes that row; the output adds an axis of output_dim.
// attn's tensors are float, so the indices arrive as floats holding whole numbers. Keras casts
// them to int32 (truncating) and TensorFlow on a CPU refuses indices outside [0, input_dim);
// attn refuses both out-of-range and fractional values, naming the input, the sample and the
// layer, before a run starts. For that the layer must read a model input directly (checked when
// the Model is built). With mask_zero the output carries a Keras mask, the ids themselves (id 0
// = padding, masked), which MultiHeadAttention, Attention and GlobalAveragePooling1D use and
// Dense, Dropout, Activation, LayerNormalization and Add pass on, as in Keras; Flatten and
// Reshape drop it. A model whose output still carries it is refused (Keras would mask the loss).
#pragma once

#include "attn/layer.hpp"

namespace attn::layers {

struct EmbeddingOptions {
  // Keras' "uniform": RandomUniform(-0.05, 0.05).
  std::string embeddings_initializer = "random_uniform";
  bool mask_zero = false;  // id 0 is padding: the output carries a mask of the nonzero ids
  std::string name = "";
};

class EmbeddingLayer : public Layer {
 public:
  // Indices travel as floats: past 2^24 not every integer has one.
  static constexpr int64_t kMaxInputDim = int64_t{1} << 24;

  EmbeddingLayer(int64_t input_dim, int64_t output_dim, EmbeddingOptions options = {});
  std::string class_name() const override { return "Embedding"; }
  int64_t input_dim() const { return input_dim_; }
  int64_t output_dim() const { return output_dim_; }
  bool forward_is_per_sample() const override { return true; }
  bool takes_model_input_only() const override { return true; }
  Node compute_mask(const std::vector<Node>& inputs, const CallOptions& options) const override;
  void check_input_values(const float* x, int64_t samples, int64_t per_sample, const char* what,
                          size_t input) const override;
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  // The row an index value selects exists (truncated as Keras' cast to int32 does).
  bool in_table(float v) const { return v >= 0.0f && v < static_cast<float>(input_dim_); }

  int64_t input_dim_, output_dim_;
  EmbeddingOptions options_;
  int64_t ids_per_sample_ = 0;
};

class Embedding : public LayerHandle<EmbeddingLayer> {
 public:
  Embedding(int64_t input_dim, int64_t output_dim, EmbeddingOptions options = {})
      : LayerHandle(std::make_shared<EmbeddingLayer>(input_dim, output_dim, std::move(options))) {}
};

}  // namespace attn::layers
