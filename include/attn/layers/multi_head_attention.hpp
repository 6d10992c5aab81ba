// MultiHeadAttention: Keras' projected multi-head dot-product attention
// (keras/src/layers/attention/multi_head_attention.py, keras-semantics.md section 2)
// for rank-3 inputs (batch, T, features) with the default attention_axes.
// Inputs [query, value] or [query, value, key]; key defaults to value. Follows the
// Keras 3 explicit-scores path: a fully masked row gives zero probabilities (the
// Keras >= 3.7 fused inference path would give a uniform row there instead).
#pragma once

#include <optional>
#include <string>

#include "attn/layer.hpp"

namespace attn::layers {

struct MultiHeadAttentionOptions {
  int64_t num_heads = 0;                             // required, positive
  int64_t key_dim = 0;                               // required, positive
  std::optional<int64_t> value_dim = std::nullopt;   // defaults to key_dim
  float dropout = 0.0f;                              // on the attention probabilities, training only
  bool use_bias = true;
  std::optional<int64_t> output_shape = std::nullopt;  // defaults to the query's last dimension
  std::string kernel_initializer = "glorot_uniform";
  std::string bias_initializer = "zeros";
  std::optional<int64_t> seed = std::nullopt;        // kept for get_config; draws come from ForwardContext::seed
  std::string name = "";
};

class MultiHeadAttentionLayer : public Layer {
 public:
  explicit MultiHeadAttentionLayer(MultiHeadAttentionOptions options);
  std::string class_name() const override { return "MultiHeadAttention"; }

  const MultiHeadAttentionOptions& options() const { return options_; }
  int64_t num_heads() const { return options_.num_heads; }
  int64_t key_dim() const { return options_.key_dim; }
  int64_t value_dim() const { return options_.value_dim.value_or(options_.key_dim); }
  float dropout() const { return options_.dropout; }
  bool use_bias() const { return options_.use_bias; }
  // As given (nullopt when the query's last dimension is used).
  const std::optional<int64_t>& output_shape() const { return options_.output_shape; }
  // The resolved output feature count; 0 before the layer is built.
  int64_t output_dim() const { return dims_.dout; }
  const std::string& kernel_initializer() const { return options_.kernel_initializer; }
  const std::string& bias_initializer() const { return options_.bias_initializer; }
  const std::optional<int64_t>& seed() const { return options_.seed; }

  int64_t saved_floats_per_sample(const CallOptions& call) const override;
  int64_t scratch_floats(int64_t batch, const CallOptions& call) const override;
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions& call) override;

 public:
  // Keras fills query_mask, value_mask and (for a separate key) key_mask from the inputs' Keras
  // masks; the output carries the query's (multi_head_attention.py call()).
  void take_input_masks(const std::vector<Node>& inputs, CallOptions& options) const override;
  Node compute_mask(const std::vector<Node>& inputs, const CallOptions& options) const override;

 protected:

 private:
  struct Dims {
    int64_t tq = 0, tv = 0;          // query and key/value steps
    int64_t fq = 0, fk = 0, fv = 0;  // query, key and value feature counts
    int64_t h = 0, dk = 0, dv = 0, dout = 0;
  };
  // Per-sample sizes of the projected tensors kept from forward to backward.
  int64_t q_size() const { return dims_.tq * dims_.h * dims_.dk; }
  int64_t k_size() const { return dims_.tv * dims_.h * dims_.dk; }
  int64_t v_size() const { return dims_.tv * dims_.h * dims_.dv; }
  int64_t p_size() const { return dims_.h * dims_.tq * dims_.tv; }
  int64_t c_size() const { return dims_.tq * dims_.h * dims_.dv; }
  float keep_factor(uint64_t seed, int64_t head, int64_t sample, int64_t i, int64_t j) const;
  // Whether a call runs the fused attention kernel (linear memory) or the explicit loops.
  bool fused(const CallOptions& call) const;
  int64_t fused_stats_floats() const;  // per head and sample: the kernel's row statistics
  int64_t fused_kernel_scratch() const;
  void forward_fused(ForwardContext& ctx);
  void backward_fused(BackwardContext& ctx);

  MultiHeadAttentionOptions options_;
  Dims dims_;
};

class MultiHeadAttention : public LayerHandle<MultiHeadAttentionLayer> {
 public:
  explicit MultiHeadAttention(MultiHeadAttentionOptions options)
      : LayerHandle(std::make_shared<MultiHeadAttentionLayer>(std::move(options))) {}
  // keras.layers.MultiHeadAttention(num_heads, key_dim, ...): the two positional
  // arguments override those fields of `options`.
  MultiHeadAttention(int64_t num_heads, int64_t key_dim, MultiHeadAttentionOptions options = {})
      : LayerHandle(std::make_shared<MultiHeadAttentionLayer>(with_heads(num_heads, key_dim, std::move(options)))) {}

 private:
  static MultiHeadAttentionOptions with_heads(int64_t num_heads, int64_t key_dim, MultiHeadAttentionOptions o) {
    o.num_heads = num_heads;
    o.key_dim = key_dim;
    return o;
  }
};

}  // namespace attn::layers
