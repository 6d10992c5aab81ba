// LayerNormalization: row sums in float vector lanes added up in double, the affine part in
// float (Keras computes the moments in float32).
#include "attn/layers/layer_normalization.hpp"

#include <cmath>

namespace attn::layers {

namespace {
bool known_initializer(const std::string& name) { return name == "zeros" || name == "ones" || name == "glorot_uniform"; }

// sum of term(j) over j in [0, n): kLanes independent float partial sums, which the compiler
// keeps in vector registers (a running double sum would be one scalar add at a time), added
// up in double.
constexpr int kLanes = 16;
template <class Term>
double lane_sum(int64_t n, Term term) {
  float partial[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) partial[l] += term(j + l);
  double total = 0.0;
  for (; j < n; ++j) total += term(j);
  for (const float p : partial) total += p;
  return total;
}
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
    const auto m = static_cast<float>(lane_sum(n, [x](int64_t j) { return x[j]; }) / static_cast<double>(n));
    const double squares = lane_sum(n, [x, m](int64_t j) { return (x[j] - m) * (x[j] - m); });
    // As Keras: the variance in the input's float type, epsilon added in float.
    const float var = static_cast<float>(squares / static_cast<double>(n));
    const float rstd = 1.0f / std::sqrt(var + eps);
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
    if (dgamma)
      for (int64_t j = 0; j < n; ++j) dgamma[j] += g[j] * ((x[j] - m) * rstd);
    if (dbeta)
      for (int64_t j = 0; j < n; ++j) dbeta[j] += g[j];
    if (!dx) continue;
    const auto h = [g, gamma](int64_t j) { return gamma ? g[j] * gamma[j] : g[j]; };
    const auto mean_h = static_cast<float>(lane_sum(n, h) / static_cast<double>(n));
    const auto mean_hx = static_cast<float>(
        lane_sum(n, [&](int64_t j) { return h(j) * ((x[j] - m) * rstd); }) / static_cast<double>(n));
    float* dxr = dx + r * n;
    for (int64_t j = 0; j < n; ++j) dxr[j] += rstd * (h(j) - mean_h - (x[j] - m) * rstd * mean_hx);
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
