// PositionEmbedding: the table's first rows copied to every sample; backward sums the samples'
// output gradients into those rows.
#include "attn/layers/position_embedding.hpp"

#include <cstring>

namespace attn::layers {

PositionEmbeddingLayer::PositionEmbeddingLayer(int64_t sequence_length, PositionEmbeddingOptions options)
    : Layer("position_embedding", options.name), sequence_length_(sequence_length), options_(std::move(options)) {
  if (sequence_length_ <= 0) fail("sequence_length must be positive, got " + std::to_string(sequence_length_));
}

std::vector<Shape> PositionEmbeddingLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  if (in[0].size() != 2)
    fail("input must be (batch, steps, features), got " + batch_shape_to_string(in[0]));
  const int64_t steps = in[0][0], features = in[0][1];
  if (steps > sequence_length_)
    fail("input has " + std::to_string(steps) + " steps but sequence_length is " + std::to_string(sequence_length_) +
         " (keras_hub's extension past sequence_length is not implemented)");
  if (weights_.empty()) {
    add_weight("embeddings", {sequence_length_, features}, options_.initializer);
  } else if (weights_[0].shape[1] != features) {
    fail("built for " + std::to_string(weights_[0].shape[1]) + " features, called on " + std::to_string(features));
  }
  used_ = steps * features;
  return {in[0]};
}

void PositionEmbeddingLayer::forward(ForwardContext& ctx) {
  const float* table = weights_[0].value.data();
  for (int64_t b = 0; b < ctx.batch; ++b) std::memcpy(ctx.outputs[0] + b * used_, table, used_ * sizeof(float));
}

void PositionEmbeddingLayer::backward(BackwardContext& ctx) {
  // The output does not depend on the input's values: no input gradient.
  const float* dy = ctx.output_grads[0];
  if (!trainable_ || ctx.param_grads == nullptr || dy == nullptr) return;
  float* dtable = ctx.param_grads + weights_[0].offset;
  for (int64_t b = 0; b < ctx.batch; ++b)
    for (int64_t i = 0; i < used_; ++i) dtable[i] += dy[b * used_ + i];
}

nlohmann::json PositionEmbeddingLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["sequence_length"] = sequence_length_;
  c["initializer"] = initializer_config(options_.initializer);
  return c;
}

}  // namespace attn::layers
