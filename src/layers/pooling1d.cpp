// MaxPooling1D and AveragePooling1D: each output step reduces its window feature by feature.
#include "attn/layers/pooling1d.hpp"

#include <algorithm>

namespace attn::layers {

Pooling1DLayer::Pooling1DLayer(std::string class_name, std::string prefix, int64_t pool_size, Pooling1DOptions options)
    : Layer(std::move(prefix), options.name),
      class_name_(std::move(class_name)),
      pool_size_(pool_size),
      options_(std::move(options)) {
  if (pool_size_ <= 0) fail("pool_size must be positive, got " + std::to_string(pool_size_));
  if (options_.strides == 0) options_.strides = pool_size_;
  if (options_.strides < 0) fail("strides must be positive, got " + std::to_string(options_.strides));
  if (options_.padding != "valid" && options_.padding != "same")
    fail("padding must be \"valid\" or \"same\", got \"" + options_.padding + "\"");
}

std::vector<Shape> Pooling1DLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  if (in[0].size() != 2) fail("input must be (batch, steps, features), got " + batch_shape_to_string(in[0]));
  steps_in_ = in[0][0];
  features_ = in[0][1];
  const int64_t s = options_.strides;
  if (options_.padding == "valid") {
    steps_out_ = steps_in_ >= pool_size_ ? (steps_in_ - pool_size_) / s + 1 : 0;
    pad_before_ = 0;
  } else {
    steps_out_ = (steps_in_ - 1) / s + 1;
    pad_before_ = std::max<int64_t>(0, (steps_out_ - 1) * s + pool_size_ - steps_in_) / 2;
  }
  if (steps_out_ <= 0)
    fail("pool_size " + std::to_string(pool_size_) + " is longer than the " + std::to_string(steps_in_) +
         " input steps with \"valid\" padding");
  return {{steps_out_, features_}};
}

std::pair<int64_t, int64_t> Pooling1DLayer::window(int64_t t) const {
  const int64_t start = t * options_.strides - pad_before_;
  return {std::max<int64_t>(0, start), std::min(steps_in_, start + pool_size_)};
}

nlohmann::json Pooling1DLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["pool_size"] = nlohmann::json::array({pool_size_});
  c["padding"] = options_.padding;
  c["strides"] = nlohmann::json::array({options_.strides});
  c["data_format"] = "channels_last";
  return c;
}

void MaxPooling1DLayer::forward(ForwardContext& ctx) {
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* x = ctx.inputs[0] + b * steps_in_ * features_;
    float* y = ctx.outputs[0] + b * steps_out_ * features_;
    for (int64_t t = 0; t < steps_out_; ++t) {
      const auto [first, end] = window(t);
      float* out = y + t * features_;
      for (int64_t f = 0; f < features_; ++f) out[f] = x[first * features_ + f];
      for (int64_t r = first + 1; r < end; ++r)
        for (int64_t f = 0; f < features_; ++f) {
          const float v = x[r * features_ + f];
          if (v > out[f] || v != v) out[f] = v;  // a NaN in the window makes its maximum NaN
        }
    }
  }
}

void MaxPooling1DLayer::backward(BackwardContext& ctx) {
  float* dx_all = ctx.input_grads[0];
  const float* dy_all = ctx.output_grads[0];
  if (!dx_all || !dy_all) return;
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* x = ctx.inputs[0] + b * steps_in_ * features_;
    const float* y = ctx.outputs[0] + b * steps_out_ * features_;
    const float* dy = dy_all + b * steps_out_ * features_;
    float* dx = dx_all + b * steps_in_ * features_;
    for (int64_t t = 0; t < steps_out_; ++t) {
      const auto [first, end] = window(t);
      for (int64_t f = 0; f < features_; ++f) {
        const float m = y[t * features_ + f];
        for (int64_t r = first; r < end; ++r) {
          const float v = x[r * features_ + f];
          if (v == m || (v != v && m != m)) {  // the first step holding the maximum
            dx[r * features_ + f] += dy[t * features_ + f];
            break;
          }
        }
      }
    }
  }
}

void AveragePooling1DLayer::forward(ForwardContext& ctx) {
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* x = ctx.inputs[0] + b * steps_in_ * features_;
    float* y = ctx.outputs[0] + b * steps_out_ * features_;
    for (int64_t t = 0; t < steps_out_; ++t) {
      const auto [first, end] = window(t);
      float* out = y + t * features_;
      for (int64_t f = 0; f < features_; ++f) out[f] = 0.0f;
      for (int64_t r = first; r < end; ++r)
        for (int64_t f = 0; f < features_; ++f) out[f] += x[r * features_ + f];
      const auto count = static_cast<float>(end - first);
      for (int64_t f = 0; f < features_; ++f) out[f] /= count;
    }
  }
}

void AveragePooling1DLayer::backward(BackwardContext& ctx) {
  float* dx_all = ctx.input_grads[0];
  const float* dy_all = ctx.output_grads[0];
  if (!dx_all || !dy_all) return;
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* dy = dy_all + b * steps_out_ * features_;
    float* dx = dx_all + b * steps_in_ * features_;
    for (int64_t t = 0; t < steps_out_; ++t) {
      const auto [first, end] = window(t);
      const float inv = 1.0f / static_cast<float>(end - first);
      for (int64_t r = first; r < end; ++r)
        for (int64_t f = 0; f < features_; ++f) dx[r * features_ + f] += dy[t * features_ + f] * inv;
    }
  }
}

}  // namespace attn::layers
