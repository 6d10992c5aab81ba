// Dropout with a counter-based mask.
#include "attn/layers/dropout.hpp"

#include <cstring>

#include "attn/random.hpp"

namespace attn::layers {

DropoutLayer::DropoutLayer(float rate, DropoutOptions options) : Layer("dropout", options.name), rate_(rate) {
  if (!(rate_ >= 0.0f && rate_ <= 1.0f)) fail("rate must be in [0, 1], got " + std::to_string(rate_));
}

std::vector<Shape> DropoutLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  sample_size_ = shape_size(in[0]);
  return {in[0]};
}

// The mask is hash_combine(step seed, sample, i), its per-sample part hashed once per sample; a
// kept value is scaled by 1 / (1 - rate), worked out once per call.
void DropoutLayer::forward(ForwardContext& ctx) {
  const float* x = ctx.inputs[0];
  float* y = ctx.outputs[0];
  if (!ctx.training || rate_ == 0.0f) {
    std::memcpy(y, x, ctx.batch * sample_size_ * sizeof(float));
    return;
  }
  const float scale = kept_scale();
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const uint64_t key = hash_prefix(ctx.seed, static_cast<uint64_t>(ctx.sample_offset + b));
    const float* xb = x + b * sample_size_;
    float* yb = y + b * sample_size_;
    for (int64_t i = 0; i < sample_size_; ++i) yb[i] = xb[i] * (keep(key, i) ? scale : 0.0f);
  }
}

void DropoutLayer::backward(BackwardContext& ctx) {
  if (!ctx.input_grads[0] || !ctx.output_grads[0]) return;
  float* dx = ctx.input_grads[0];
  const float* dy = ctx.output_grads[0];
  if (!ctx.training || rate_ == 0.0f) {
    for (int64_t k = 0; k < ctx.batch * sample_size_; ++k) dx[k] += dy[k];
    return;
  }
  const float scale = kept_scale();
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const uint64_t key = hash_prefix(ctx.seed, static_cast<uint64_t>(ctx.sample_offset + b));
    const float* dyb = dy + b * sample_size_;
    float* dxb = dx + b * sample_size_;
    for (int64_t i = 0; i < sample_size_; ++i) dxb[i] += dyb[i] * (keep(key, i) ? scale : 0.0f);
  }
}

nlohmann::json DropoutLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["rate"] = rate_;
  c["seed"] = nullptr;
  c["noise_shape"] = nullptr;
  return c;
}

}  // namespace attn::layers
