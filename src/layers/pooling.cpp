// GlobalAveragePooling1D: sums in double, one division per feature; with a mask, over the kept
// steps only. GlobalMaxPooling1D: the maximum, its gradient shared among the steps that hold it.
#include "attn/layers/pooling.hpp"

#include <limits>

namespace attn::layers {

GlobalPooling1DLayer::GlobalPooling1DLayer(std::string class_name, std::string prefix, GlobalPooling1DOptions options)
    : Layer(std::move(prefix), options.name), class_name_(std::move(class_name)), options_(std::move(options)) {
  if (options_.data_format != "channels_last" && options_.data_format != "channels_first")
    fail("data_format must be \"channels_last\" or \"channels_first\", got \"" + options_.data_format + "\"");
}

Shape GlobalPooling1DLayer::build_layout(const std::vector<Shape>& in) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  const bool first = options_.data_format == "channels_first";
  if (in[0].size() != 2)
    fail(std::string("input must be (batch, ") + (first ? "features, steps" : "steps, features") + "), got " +
         batch_shape_to_string(in[0]));
  steps_ = in[0][first ? 1 : 0];
  features_ = in[0][first ? 0 : 1];
  step_stride_ = first ? 1 : features_;
  feature_stride_ = first ? steps_ : 1;
  if (options_.keepdims) return first ? Shape{features_, 1} : Shape{1, features_};
  return {features_};
}

nlohmann::json GlobalPooling1DLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["data_format"] = options_.data_format;
  c["keepdims"] = options_.keepdims;
  return c;
}

void GlobalAveragePooling1DLayer::take_input_masks(const std::vector<Node>& inputs, CallOptions& options) const {
  if (!options.mask && inputs.size() == 1) options.mask = inputs[0]->keras_mask;
}

std::vector<Shape> GlobalAveragePooling1DLayer::compute_build(const std::vector<Shape>& in, const CallOptions& call) {
  const Shape out = build_layout(in);
  if (call.query_mask || call.value_mask || call.key_mask || call.attention_mask)
    fail("takes one mask (mask), not attention masks");
  if (call.mask && options_.data_format == "channels_first")
    fail("a mask with data_format \"channels_first\" is not supported");
  if (call.mask && call.mask->shape != Shape{steps_})
    fail("mask must have shape (batch, " + std::to_string(steps_) + "), got " +
         batch_shape_to_string(call.mask->shape));
  return {out};
}

namespace {
// Steps of sample b that the mask keeps (all without a mask).
int64_t kept_steps(const float* mask, int64_t b, int64_t steps) {
  if (!mask) return steps;
  int64_t kept = 0;
  for (int64_t t = 0; t < steps; ++t) kept += mask[b * steps + t] != 0.0f;
  return kept;
}
}  // namespace

void GlobalAveragePooling1DLayer::forward(ForwardContext& ctx) {
  const float* mask = ctx.mask;
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* x = ctx.inputs[0] + b * steps_ * features_;
    float* y = ctx.outputs[0] + b * features_;
    const double count = static_cast<double>(kept_steps(mask, b, steps_));
    for (int64_t f = 0; f < features_; ++f) {
      double sum = 0.0;
      for (int64_t t = 0; t < steps_; ++t)
        if (!mask || mask[b * steps_ + t] != 0.0f) sum += x[t * step_stride_ + f * feature_stride_];
      // count == 0: 0 / 0, NaN, as Keras' sum / sum(mask).
      y[f] = count > 0 ? static_cast<float>(sum / count) : std::numeric_limits<float>::quiet_NaN();
    }
  }
}

void GlobalAveragePooling1DLayer::backward(BackwardContext& ctx) {
  float* dx = ctx.input_grads[0];
  const float* dy = ctx.output_grads[0];
  if (!dx || !dy) return;
  const float* mask = ctx.mask;
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const int64_t count = kept_steps(mask, b, steps_);
    if (count == 0) continue;  // the output is NaN whatever the input: no finite gradient to pass
    const float inv = 1.0f / static_cast<float>(count);
    for (int64_t t = 0; t < steps_; ++t) {
      if (mask && mask[b * steps_ + t] == 0.0f) continue;
      float* dxb = dx + b * steps_ * features_ + t * step_stride_;
      for (int64_t f = 0; f < features_; ++f) dxb[f * feature_stride_] += dy[b * features_ + f] * inv;
    }
  }
}

std::vector<Shape> GlobalMaxPooling1DLayer::compute_build(const std::vector<Shape>& in, const CallOptions& call) {
  const Shape out = build_layout(in);
  if (call.mask || call.query_mask || call.value_mask || call.key_mask || call.attention_mask) fail("takes no mask");
  return {out};
}

void GlobalMaxPooling1DLayer::forward(ForwardContext& ctx) {
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* x = ctx.inputs[0] + b * steps_ * features_;
    float* y = ctx.outputs[0] + b * features_;
    for (int64_t f = 0; f < features_; ++f) {
      const float* xf = x + f * feature_stride_;
      float m = xf[0];
      for (int64_t t = 1; t < steps_; ++t) {
        const float v = xf[t * step_stride_];
        if (v > m || v != v) m = v;  // a NaN anywhere makes the maximum NaN, as TensorFlow's reduce_max
      }
      y[f] = m;
    }
  }
}

void GlobalMaxPooling1DLayer::backward(BackwardContext& ctx) {
  float* dx_all = ctx.input_grads[0];
  const float* dy = ctx.output_grads[0];
  if (!dx_all || !dy) return;
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* x = ctx.inputs[0] + b * steps_ * features_;
    float* dx = dx_all + b * steps_ * features_;
    for (int64_t f = 0; f < features_; ++f) {
      const float m = ctx.outputs[0][b * features_ + f];
      int64_t ties = 0;
      for (int64_t t = 0; t < steps_; ++t) ties += x[t * step_stride_ + f * feature_stride_] == m;
      if (ties == 0) continue;  // a NaN maximum: no step equals it
      const float share = dy[b * features_ + f] / static_cast<float>(ties);
      for (int64_t t = 0; t < steps_; ++t)
        if (x[t * step_stride_ + f * feature_stride_] == m) dx[t * step_stride_ + f * feature_stride_] += share;
    }
  }
}

}  // namespace attn::layers
