// Keras' activation layers with arguments: element-wise loops over each layer's value() and
// derivative(), inlined into the loop (ELU's through its vectorised kernel), and Softmax through
// the row kernel.
#include "attn/layers/activation_layers.hpp"

#include <cmath>

#include "kernels/activations.hpp"
#include "kernels/transcendental_activations.hpp"

namespace attn::layers {

std::vector<Shape> ElementwiseActivationLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  sample_size_ = shape_size(in[0]);
  return {in[0]};
}

void ElementwiseActivationLayer::forward(ForwardContext& ctx) {
  forward_elements(ctx.inputs[0], ctx.outputs[0], ctx.batch * sample_size_);
}

void ElementwiseActivationLayer::backward(BackwardContext& ctx) {
  const float* dy = ctx.output_grads[0];
  float* dx = ctx.input_grads[0];
  if (!dy || !dx) return;
  backward_elements(ctx.inputs[0], dy, dx, ctx.batch * sample_size_);
}

namespace {
// Each rule is a function of the element and the layer's parameters, passed by value: a loop that
// read the parameters through `this` would reload them per element (the output could alias
// them). This file is compiled with -fno-trapping-math (CMakeLists.txt), which lets the compiler
// turn the choices into vector blends: it then need not avoid an arithmetic operation the scalar
// code does on one branch only. The values are the same; no floating-point flags are read.

// As Keras' relu op: x where x > threshold (at most max_value), negative_slope * (x - threshold)
// below it (0 without a slope, also at -inf); a NaN stays NaN.
inline float relu_value(float x, float threshold, float slope, float max) {
  if (x < threshold) return slope == 0.0f ? 0.0f : slope * (x - threshold);
  if (x == threshold) return 0.0f;
  return x > max ? max : x;
}
inline float relu_derivative(float x, float threshold, float slope, float max) {
  if (x < threshold) return slope;
  return x > threshold && x < max ? 1.0f : 0.0f;
}

inline float leaky_relu_value(float x, float slope) { return x < 0.0f ? slope * x : x; }
inline float leaky_relu_derivative(float x, float slope) { return x < 0.0f ? slope : 1.0f; }


template <class Rule>
void map_values(const float* x, float* y, int64_t n, Rule rule) {
  for (int64_t i = 0; i < n; ++i) y[i] = rule(x[i]);
}

template <class Rule>
void add_derivative_products(const float* x, const float* dy, float* dx, int64_t n, Rule derivative) {
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * derivative(x[i]);
}
}  // namespace

float ReLULayer::value(float x) const { return relu_value(x, threshold_, slope_, max_); }
float ReLULayer::derivative(float x) const { return relu_derivative(x, threshold_, slope_, max_); }
void ReLULayer::forward_elements(const float* x, float* y, int64_t n) const {
  map_values(x, y, n, [t = threshold_, s = slope_, m = max_](float v) { return relu_value(v, t, s, m); });
}
void ReLULayer::backward_elements(const float* x, const float* dy, float* dx, int64_t n) const {
  add_derivative_products(x, dy, dx, n,
                          [t = threshold_, s = slope_, m = max_](float v) { return relu_derivative(v, t, s, m); });
}

float LeakyReLULayer::value(float x) const { return leaky_relu_value(x, slope_); }
float LeakyReLULayer::derivative(float x) const { return leaky_relu_derivative(x, slope_); }
void LeakyReLULayer::forward_elements(const float* x, float* y, int64_t n) const {
  map_values(x, y, n, [s = slope_](float v) { return leaky_relu_value(v, s); });
}
void LeakyReLULayer::backward_elements(const float* x, const float* dy, float* dx, int64_t n) const {
  add_derivative_products(x, dy, dx, n, [s = slope_](float v) { return leaky_relu_derivative(v, s); });
}

// ELU's rule needs exp: the vectorised kernel is the rule, one element or a buffer.
float ELULayer::value(float x) const {
  float y = 0.0f;
  kernels::elu_forward(&x, &y, 1, a_, 1.0f);
  return y;
}
float ELULayer::derivative(float x) const {
  const float one = 1.0f;
  float slope = 0.0f;
  kernels::elu_backward(&x, &one, &slope, 1, a_, 1.0f);
  return slope;
}
void ELULayer::forward_elements(const float* x, float* y, int64_t n) const { kernels::elu_forward(x, y, n, a_, 1.0f); }
void ELULayer::backward_elements(const float* x, const float* dy, float* dx, int64_t n) const {
  kernels::elu_backward(x, dy, dx, n, a_, 1.0f);
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
