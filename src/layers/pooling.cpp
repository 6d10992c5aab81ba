// GlobalAveragePooling1D: sums in double, one division per feature.
#include "attn/layers/pooling.hpp"

namespace attn::layers {

std::vector<Shape> GlobalAveragePooling1DLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  if (in[0].size() != 2)
    fail("input must be (batch, steps, features), got (None, " + shape_to_string(in[0]).substr(1));
  steps_ = in[0][0];
  features_ = in[0][1];
  if (options_.keepdims) return {{1, features_}};
  return {{features_}};
}

void GlobalAveragePooling1DLayer::forward(ForwardContext& ctx) {
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* x = ctx.inputs[0] + b * steps_ * features_;
    float* y = ctx.outputs[0] + b * features_;
    for (int64_t f = 0; f < features_; ++f) {
      double sum = 0.0;
      for (int64_t t = 0; t < steps_; ++t) sum += x[t * features_ + f];
      y[f] = static_cast<float>(sum / static_cast<double>(steps_));
    }
  }
}

void GlobalAveragePooling1DLayer::backward(BackwardContext& ctx) {
  float* dx = ctx.input_grads[0];
  const float* dy = ctx.output_grads[0];
  if (!dx || !dy) return;
  const float inv = 1.0f / static_cast<float>(steps_);
  for (int64_t b = 0; b < ctx.batch; ++b)
    for (int64_t t = 0; t < steps_; ++t)
      for (int64_t f = 0; f < features_; ++f) dx[(b * steps_ + t) * features_ + f] += dy[b * features_ + f] * inv;
}

nlohmann::json GlobalAveragePooling1DLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["data_format"] = "channels_last";
  c["keepdims"] = options_.keepdims;
  return c;
}

}  // namespace attn::layers
