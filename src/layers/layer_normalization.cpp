// LayerNormalization: row statistics in double, the affine part in float.
#include "attn/layers/layer_normalization.hpp"

#include <cmath>

namespace attn::layers {

namespace {
bool known_initializer(const std::string& name) { return name == "zeros" || name == "ones" || name == "glorot_uniform"; }
}  // namespace

LayerNormalizationLayer::LayerNormalizationLayer(LayerNormalizationOptions options)
    : Layer("layer_normalization", options.name), options_(std::move(options)) {
  if (!(options_.epsilon > 0.0) || !std::isfinite(options_.epsilon))
    fail("epsilon must be a positive number, got " + std::to_string(options_.epsilon));
  for (const std::string* init : {&options_.beta_initializer, &options_.gamma_initializer})
    if (!known_initializer(*init)) fail("unsupported initializer '" + *init + "' (zeros, ones or glorot_uniform)");
}

std::vector<Shape> LayerNormalizationLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  if (in[0].empty()) fail("input must have at least one axis besides the batch");
  const auto last = static_cast<int64_t>(in[0].size());  // counting the batch axis
  if (options_.axis != -1 && options_.axis != last)
    fail("only the last axis (-1 or " + std::to_string(last) + ") is supported, got axis " +
         std::to_string(options_.axis));
  width_ = in[0].back();
  rows_ = shape_size(in[0]) / width_;
  if (!built_) {
    if (options_.scale) add_weight("gamma", {width_}, options_.gamma_initializer);
    if (options_.center) add_weight("beta", {width_}, options_.beta_initializer);
  }
  return {in[0]};
}

void LayerNormalizationLayer::forward(ForwardContext& ctx) {
  const float* gamma = options_.scale ? weights_[0].value.data() : nullptr;
  const float* beta = options_.center ? weights_[options_.scale ? 1 : 0].value.data() : nullptr;
  const auto eps = static_cast<float>(options_.epsilon);
  const int64_t n = width_;
  for (int64_t r = 0; r < ctx.batch * rows_; ++r) {
    const float* x = ctx.inputs[0] + r * n;
    float* y = ctx.outputs[0] + r * n;
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) sum += x[j];
    const double mean = sum / static_cast<double>(n);
    double squares = 0.0;
    for (int64_t j = 0; j < n; ++j) squares += (x[j] - mean) * (x[j] - mean);
    // As Keras: the variance in the input's float type, epsilon added in float.
    const float var = static_cast<float>(squares / static_cast<double>(n));
    const float rstd = 1.0f / std::sqrt(var + eps);
    const auto m = static_cast<float>(mean);
    for (int64_t j = 0; j < n; ++j) {
      const float xhat = (x[j] - m) * rstd;
      y[j] = (gamma ? xhat * gamma[j] : xhat) + (beta ? beta[j] : 0.0f);
    }
    ctx.saved[2 * r] = m;
    ctx.saved[2 * r + 1] = rstd;
  }
}

void LayerNormalizationLayer::backward(BackwardContext& ctx) {
  const float* dy = ctx.output_grads[0];
  if (!dy) return;
  float* dx = ctx.input_grads[0];
  const bool params = ctx.param_grads && trainable_;
  const float* gamma = options_.scale ? weights_[0].value.data() : nullptr;
  float* dgamma = params && options_.scale ? ctx.param_grads + weights_[0].offset : nullptr;
  float* dbeta = params && options_.center ? ctx.param_grads + weights_[options_.scale ? 1 : 0].offset : nullptr;
  const int64_t n = width_;
  for (int64_t r = 0; r < ctx.batch * rows_; ++r) {
    const float* x = ctx.inputs[0] + r * n;
    const float* g = dy + r * n;
    const float m = ctx.saved[2 * r], rstd = ctx.saved[2 * r + 1];
    // With xhat = (x - mean) rstd and h = dy gamma:
    // dx = rstd (h - mean(h) - xhat mean(h xhat)), dgamma += dy xhat, dbeta += dy.
    double sum_h = 0.0, sum_hx = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      const float xhat = (x[j] - m) * rstd;
      const float h = gamma ? g[j] * gamma[j] : g[j];
      sum_h += h;
      sum_hx += static_cast<double>(h) * xhat;
      if (dgamma) dgamma[j] += g[j] * xhat;
      if (dbeta) dbeta[j] += g[j];
    }
    if (!dx) continue;
    const auto mean_h = static_cast<float>(sum_h / static_cast<double>(n));
    const auto mean_hx = static_cast<float>(sum_hx / static_cast<double>(n));
    float* dxr = dx + r * n;
    for (int64_t j = 0; j < n; ++j) {
      const float xhat = (x[j] - m) * rstd;
      const float h = gamma ? g[j] * gamma[j] : g[j];
      dxr[j] += rstd * (h - mean_h - xhat * mean_hx);
    }
  }
}

nlohmann::json LayerNormalizationLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  // A built Keras layer reports its axes as a list.
  c["axis"] = nlohmann::json::array({options_.axis});
  c["epsilon"] = options_.epsilon;
  c["center"] = options_.center;
  c["scale"] = options_.scale;
  c["rms_scaling"] = false;
  c["beta_initializer"] = initializer_config(options_.beta_initializer);
  c["gamma_initializer"] = initializer_config(options_.gamma_initializer);
  c["beta_regularizer"] = nullptr;
  c["gamma_regularizer"] = nullptr;
  c["beta_constraint"] = nullptr;
  c["gamma_constraint"] = nullptr;
  return c;
}

}  // namespace attn::layers
