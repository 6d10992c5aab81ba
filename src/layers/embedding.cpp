// Embedding: a row copy per index forward, a row sum per index backward.
#include "attn/layers/embedding.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "attn/callbacks.hpp"

namespace attn::layers {

EmbeddingLayer::EmbeddingLayer(int64_t input_dim, int64_t output_dim, EmbeddingOptions options)
    : Layer("embedding", options.name), input_dim_(input_dim), output_dim_(output_dim), options_(std::move(options)) {
  if (input_dim_ <= 0) fail("input_dim must be positive, got " + std::to_string(input_dim_));
  if (output_dim_ <= 0) fail("output_dim must be positive, got " + std::to_string(output_dim_));
  if (input_dim_ > kMaxInputDim)
    fail("input_dim must be at most 2^24 (indices are read from float32 data), got " + std::to_string(input_dim_));
}

std::vector<Shape> EmbeddingLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  for (int64_t d : in[0])
    if (d < 0) fail("needs a known input length, got " + batch_shape_to_string(in[0]));
  ids_per_sample_ = shape_size(in[0]);
  if (weights_.empty()) add_weight("embeddings", {input_dim_, output_dim_}, options_.embeddings_initializer);
  Shape out = in[0];
  out.push_back(output_dim_);
  return {out};
}

void EmbeddingLayer::check_input_values(const float* x, int64_t samples, int64_t per_sample, const char* what,
                                        size_t input) const {
  for (int64_t i = 0; i < samples * per_sample; ++i) {
    const float v = x[i];
    if (in_table(v) && v == std::floor(v)) continue;
    throw std::invalid_argument(std::string(what) + ": input " + std::to_string(input) + " feeds Embedding '" +
                                name_ + "', but its value " + callbacks::float_repr(v) + " in sample " +
                                std::to_string(i / per_sample) + " is not an index in [0, " +
                                std::to_string(input_dim_) + ")");
  }
}

void EmbeddingLayer::forward(ForwardContext& ctx) {
  const float* table = weights_[0].value.data();
  const int64_t n = ctx.batch * ids_per_sample_;
  for (int64_t i = 0; i < n; ++i) {
    const float v = ctx.inputs[0][i];
    float* row = ctx.outputs[0] + i * output_dim_;
    // Model entry points refuse such values before a run (check_input_values); a caller that
    // bypasses them gets zeros, as TensorFlow's GPU kernel gives, never a read out of bounds.
    if (!in_table(v)) {
      std::memset(row, 0, output_dim_ * sizeof(float));
      continue;
    }
    std::memcpy(row, table + static_cast<int64_t>(v) * output_dim_, output_dim_ * sizeof(float));
  }
}

void EmbeddingLayer::backward(BackwardContext& ctx) {
  // The indices have no gradient; the table's rows gather the output gradients of their uses.
  const float* dy = ctx.output_grads[0];
  if (!trainable_ || ctx.param_grads == nullptr || dy == nullptr) return;
  float* dtable = ctx.param_grads + weights_[0].offset;
  const int64_t n = ctx.batch * ids_per_sample_;
  for (int64_t i = 0; i < n; ++i) {
    const float v = ctx.inputs[0][i];
    if (!in_table(v)) continue;
    float* drow = dtable + static_cast<int64_t>(v) * output_dim_;
    const float* g = dy + i * output_dim_;
    for (int64_t j = 0; j < output_dim_; ++j) drow[j] += g[j];
  }
}

Node EmbeddingLayer::compute_mask(const std::vector<Node>& inputs, const CallOptions&) const {
  // Keras: ops.not_equal(inputs, 0). attn's masks keep the steps where they are nonzero, so the
  // ids are that mask as they are.
  return options_.mask_zero && !inputs.empty() ? inputs[0] : nullptr;
}

nlohmann::json EmbeddingLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["input_dim"] = input_dim_;
  c["output_dim"] = output_dim_;
  c["embeddings_initializer"] = initializer_config(options_.embeddings_initializer);
  c["embeddings_regularizer"] = nullptr;
  c["activity_regularizer"] = nullptr;
  c["embeddings_constraint"] = nullptr;
  c["mask_zero"] = options_.mask_zero;
  return c;
}

}  // namespace attn::layers
