// Flatten and Reshape. Data is already row-major, so both are copies.
#include "attn/layers/reshaping.hpp"

#include <cstring>

namespace attn::layers {

void ReshapeLayerBase::forward(ForwardContext& ctx) {
  std::memcpy(ctx.outputs[0], ctx.inputs[0], ctx.batch * sample_size_ * sizeof(float));
}

void ReshapeLayerBase::backward(BackwardContext& ctx) {
  if (!ctx.input_grads[0] || !ctx.output_grads[0]) return;
  const int64_t n = ctx.batch * sample_size_;
  for (int64_t i = 0; i < n; ++i) ctx.input_grads[0][i] += ctx.output_grads[0][i];
}

std::vector<Shape> FlattenLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  sample_size_ = shape_size(in[0]);
  return {{sample_size_}};
}

nlohmann::json FlattenLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["data_format"] = "channels_last";
  return c;
}

std::vector<Shape> ReshapeLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  sample_size_ = shape_size(in[0]);
  Shape out = target_;
  int64_t known = 1;
  int unknown = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      if (unknown >= 0) fail("target_shape " + shape_to_string(target_) + " has more than one -1");
      unknown = static_cast<int>(i);
    } else if (out[i] <= 0) {
      fail("target_shape " + shape_to_string(target_) + " has a non-positive dimension");
    } else {
      known *= out[i];
    }
  }
  if (unknown >= 0) {
    if (sample_size_ % known) fail("cannot reshape " + shape_to_string(in[0]) + " to " + shape_to_string(target_));
    out[unknown] = sample_size_ / known;
  }
  if (shape_size(out) != sample_size_)
    fail("cannot reshape " + shape_to_string(in[0]) + " (" + std::to_string(sample_size_) + " values) to " +
         shape_to_string(target_));
  return {out};
}

nlohmann::json ReshapeLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["target_shape"] = target_;
  return c;
}

}  // namespace attn::layers
