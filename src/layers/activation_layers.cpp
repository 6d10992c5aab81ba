// Keras' activation layers with arguments: element-wise loops through value() and derivative(),
// and Softmax through the row kernel.
#include "attn/layers/activation_layers.hpp"

#include <cmath>

#include "kernels/activations.hpp"

namespace attn::layers {

std::vector<Shape> ElementwiseActivationLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  sample_size_ = shape_size(in[0]);
  return {in[0]};
}

void ElementwiseActivationLayer::forward(ForwardContext& ctx) {
  const float* x = ctx.inputs[0];
  float* y = ctx.outputs[0];
  for (int64_t i = 0; i < ctx.batch * sample_size_; ++i) y[i] = value(x[i]);
}

void ElementwiseActivationLayer::backward(BackwardContext& ctx) {
  const float* dy = ctx.output_grads[0];
  float* dx = ctx.input_grads[0];
  if (!dy || !dx) return;
  const float* x = ctx.inputs[0];
  for (int64_t i = 0; i < ctx.batch * sample_size_; ++i) dx[i] += dy[i] * derivative(x[i]);
}

ReLULayer::ReLULayer(ReLUOptions options) : ElementwiseActivationLayer("re_lu", options.name), options_(options) {
  if (options_.max_value && !(*options_.max_value >= 0.0))
    fail("max_value must be >= 0, got " + std::to_string(*options_.max_value));
  if (!(options_.negative_slope >= 0.0)) fail("negative_slope must be >= 0, got " + std::to_string(options_.negative_slope));
  if (!(options_.threshold >= 0.0) || !std::isfinite(options_.threshold))
    fail("threshold must be >= 0, got " + std::to_string(options_.threshold));
  max_ = options_.max_value ? static_cast<float>(*options_.max_value) : INFINITY;
  slope_ = static_cast<float>(options_.negative_slope);
  threshold_ = static_cast<float>(options_.threshold);
}

// As Keras' relu op: x where x > threshold (at most max_value), negative_slope * (x - threshold)
// below it; a NaN stays NaN.
float ReLULayer::value(float x) const {
  if (x < threshold_) return slope_ * (x - threshold_);
  if (x == threshold_) return 0.0f;
  return x > max_ ? max_ : x;
}

float ReLULayer::derivative(float x) const {
  if (x < threshold_) return slope_;
  return x > threshold_ && x < max_ ? 1.0f : 0.0f;
}

nlohmann::json ReLULayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["max_value"] = options_.max_value ? nlohmann::json(*options_.max_value) : nlohmann::json(nullptr);
  c["negative_slope"] = options_.negative_slope;
  c["threshold"] = options_.threshold;
  return c;
}

LeakyReLULayer::LeakyReLULayer(double negative_slope, std::string name)
    : ElementwiseActivationLayer("leaky_re_lu", std::move(name)), negative_slope_(negative_slope) {
  if (!(negative_slope >= 0.0)) fail("negative_slope must be >= 0, got " + std::to_string(negative_slope));
  slope_ = static_cast<float>(negative_slope);
}

nlohmann::json LeakyReLULayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["negative_slope"] = negative_slope_;
  return c;
}

ELULayer::ELULayer(double alpha, std::string name) : ElementwiseActivationLayer("elu", std::move(name)), alpha_(alpha) {
  if (!std::isfinite(alpha)) fail("alpha must be a finite number");
  a_ = static_cast<float>(alpha);
}

float ELULayer::value(float x) const { return x > 0.0f ? x : a_ * std::expm1(x); }
float ELULayer::derivative(float x) const { return x > 0.0f ? 1.0f : a_ * std::exp(x); }

nlohmann::json ELULayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["alpha"] = alpha_;
  return c;
}

SoftmaxLayer::SoftmaxLayer(int64_t axis, std::string name) : Layer("softmax", std::move(name)), axis_(axis) {}

std::vector<Shape> SoftmaxLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  if (in[0].empty()) fail("input must have at least one axis besides the batch");
  const auto last = static_cast<int64_t>(in[0].size());  // counting the batch axis
  if (axis_ != -1 && axis_ != last)
    fail("only the last axis (-1 or " + std::to_string(last) + ") is supported, got axis " + std::to_string(axis_));
  sample_size_ = shape_size(in[0]);
  width_ = in[0].back();
  return {in[0]};
}

void SoftmaxLayer::take_input_masks(const std::vector<Node>& inputs, CallOptions&) const {
  if (!inputs.empty() && inputs[0] && inputs[0]->keras_mask)
    fail("its input carries a Keras mask: a masked softmax is not supported");
}

void SoftmaxLayer::forward(ForwardContext& ctx) {
  const int64_t n = ctx.batch * sample_size_;
  if (ctx.logits)
    for (int64_t i = 0; i < n; ++i) ctx.logits[i] = ctx.inputs[0][i];
  kernels::activation_forward(kernels::Activation::kSoftmax, ctx.inputs[0], ctx.outputs[0], n / width_, width_);
}

void SoftmaxLayer::backward(BackwardContext& ctx) {
  const float* dy = ctx.output_grads[0];
  float* dx = ctx.input_grads[0];
  if (!dy || !dx) return;
  const int64_t n = ctx.batch * sample_size_;
  if (ctx.output_grad_is_logits) {  // the loss differentiated the logits itself
    for (int64_t i = 0; i < n; ++i) dx[i] += dy[i];
    return;
  }
  kernels::activation_backward(kernels::Activation::kSoftmax, ctx.inputs[0], ctx.outputs[0], dy, dx, n / width_, width_);
}

nlohmann::json SoftmaxLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["axis"] = axis_;
  return c;
}

}  // namespace attn::layers
