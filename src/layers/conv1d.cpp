// Conv1D: for each kernel tap, the outputs that tap reaches add their input row times the tap's
// (channels, filters) matrix; the inner loop runs over the filters, contiguous in both.
#include "attn/layers/conv1d.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/activations.hpp"
#include "layers/conv_config.hpp"

namespace attn::layers {

using kernels::Activation;

namespace {
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
}  // namespace

Conv1DLayer::Conv1DLayer(int64_t filters, int64_t kernel_size, Conv1DOptions options)
    : Layer("conv1d", options.name), filters_(filters), kernel_size_(kernel_size), options_(std::move(options)) {
  if (filters_ <= 0) fail("filters must be positive, got " + std::to_string(filters_));
  if (kernel_size_ <= 0) fail("kernel_size must be positive, got " + std::to_string(kernel_size_));
  if (options_.strides <= 0) fail("strides must be positive, got " + std::to_string(options_.strides));
  if (options_.dilation_rate <= 0)
    fail("dilation_rate must be positive, got " + std::to_string(options_.dilation_rate));
  if (options_.strides > 1 && options_.dilation_rate > 1)
    fail("strides > 1 with dilation_rate > 1 is not supported (as in Keras), got strides " +
         std::to_string(options_.strides) + " and dilation_rate " + std::to_string(options_.dilation_rate));
  if (options_.padding != "valid" && options_.padding != "same" && options_.padding != "causal")
    fail("padding must be \"valid\", \"same\" or \"causal\", got \"" + options_.padding + "\"");
  activation_ = static_cast<int>(kernels::activation_from_string(options_.activation));
  activation_name_ = kernels::to_string(static_cast<Activation>(activation_));
}

std::vector<Shape> Conv1DLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  if (in[0].size() != 2 || in[0][0] <= 0 || in[0][1] <= 0)
    fail("input must be (batch, steps, channels) with known sizes, got " + batch_shape_to_string(in[0]));
  steps_in_ = in[0][0];
  channels_ = in[0][1];
  const int64_t s = options_.strides, span = (kernel_size_ - 1) * options_.dilation_rate + 1;
  if (options_.padding == "valid") {
    steps_out_ = steps_in_ >= span ? (steps_in_ - span) / s + 1 : 0;
    pad_before_ = 0;
  } else {
    steps_out_ = (steps_in_ - 1) / s + 1;
    const int64_t total = std::max<int64_t>(0, (steps_out_ - 1) * s + span - steps_in_);
    pad_before_ = options_.padding == "causal" ? span - 1 : total / 2;
  }
  if (steps_out_ <= 0)
    fail("kernel of " + std::to_string(kernel_size_) + " taps (dilation " + std::to_string(options_.dilation_rate) +
         ") is longer than the " + std::to_string(steps_in_) + " input steps with \"valid\" padding");
  if (!built_) {
    add_weight("kernel", {kernel_size_, channels_, filters_}, options_.kernel_initializer);
    if (options_.use_bias) add_weight("bias", {filters_}, options_.bias_initializer);
  }
  return {{steps_out_, filters_}};
}

std::pair<int64_t, int64_t> Conv1DLayer::outputs_reading_tap(int64_t k) const {
  // Output t reads input row t * s + k * d - pad, which must lie in [0, steps_in).
  const int64_t s = options_.strides, offset = k * options_.dilation_rate - pad_before_;
  const int64_t first = std::max<int64_t>(0, floor_div(-offset + s - 1, s));
  const int64_t end = std::min(steps_out_, floor_div(steps_in_ - 1 - offset, s) + 1);
  return {first, std::max(first, end)};
}

int64_t Conv1DLayer::saved_floats_per_sample(const CallOptions&) const {
  // The pre-activation, for the activation's derivative (none for linear).
  return static_cast<Activation>(activation_) == Activation::kLinear ? 0 : steps_out_ * filters_;
}

int64_t Conv1DLayer::scratch_floats(int64_t batch, const CallOptions&) const {
  return batch * steps_out_ * filters_;  // d(pre-activation)
}

void Conv1DLayer::forward(ForwardContext& ctx) {
  const auto act = static_cast<Activation>(activation_);
  const float* kernel = weights_[0].value.data();
  const float* bias = options_.use_bias ? weights_[1].value.data() : nullptr;
  const int64_t s = options_.strides, out_floats = steps_out_ * filters_;
  float* y = ctx.outputs[0];
  float* z = act == Activation::kLinear ? y : ctx.saved;  // pre-activation
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* x = ctx.inputs[0] + b * steps_in_ * channels_;
    float* zb = z + b * out_floats;
    for (int64_t t = 0; t < steps_out_; ++t)
      for (int64_t f = 0; f < filters_; ++f) zb[t * filters_ + f] = bias ? bias[f] : 0.0f;
    for (int64_t k = 0; k < kernel_size_; ++k) {
      const auto [first, end] = outputs_reading_tap(k);
      const float* tap = kernel + k * channels_ * filters_;
      for (int64_t t = first; t < end; ++t) {
        const float* row = x + (t * s + k * options_.dilation_rate - pad_before_) * channels_;
        float* out = zb + t * filters_;
        for (int64_t c = 0; c < channels_; ++c) {
          const float v = row[c];
          const float* w = tap + c * filters_;
          for (int64_t f = 0; f < filters_; ++f) out[f] += v * w[f];
        }
      }
    }
  }
  if (act == Activation::kLinear) return;
  const bool row_wise = kernels::is_row_wise(act);
  kernels::activation_forward(act, z, y, row_wise ? ctx.batch * steps_out_ : 1,
                              row_wise ? filters_ : ctx.batch * out_floats);
}

void Conv1DLayer::backward(BackwardContext& ctx) {
  const auto act = static_cast<Activation>(activation_);
  const int64_t s = options_.strides, out_floats = steps_out_ * filters_;
  if (ctx.batch == 0 || !ctx.output_grads[0]) return;
  const float* dz = ctx.output_grads[0];
  if (act != Activation::kLinear && !ctx.output_grad_is_logits) {
    float* buf = ctx.scratch;
    std::memset(buf, 0, ctx.batch * out_floats * sizeof(float));
    const bool row_wise = kernels::is_row_wise(act);
    kernels::activation_backward(act, ctx.saved, ctx.outputs[0], dz, buf, row_wise ? ctx.batch * steps_out_ : 1,
                                 row_wise ? filters_ : ctx.batch * out_floats);
    dz = buf;
  }
  const float* kernel = weights_[0].value.data();
  const bool weight_grads = ctx.param_grads && trainable_;
  float* dkernel = weight_grads ? ctx.param_grads + weights_[0].offset : nullptr;
  float* dbias = weight_grads && options_.use_bias ? ctx.param_grads + weights_[1].offset : nullptr;
  float* dx_all = ctx.input_grads[0];
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* x = ctx.inputs[0] + b * steps_in_ * channels_;
    const float* dzb = dz + b * out_floats;
    if (dbias)
      for (int64_t t = 0; t < steps_out_; ++t)
        for (int64_t f = 0; f < filters_; ++f) dbias[f] += dzb[t * filters_ + f];
    for (int64_t k = 0; k < kernel_size_; ++k) {
      const auto [first, end] = outputs_reading_tap(k);
      const float* tap = kernel + k * channels_ * filters_;
      float* dtap = dkernel ? dkernel + k * channels_ * filters_ : nullptr;
      for (int64_t t = first; t < end; ++t) {
        const int64_t r = t * s + k * options_.dilation_rate - pad_before_;
        const float* row = x + r * channels_;
        const float* g = dzb + t * filters_;
        for (int64_t c = 0; c < channels_; ++c) {
          if (dtap) {
            const float v = row[c];
            float* dw = dtap + c * filters_;
            for (int64_t f = 0; f < filters_; ++f) dw[f] += v * g[f];
          }
          if (dx_all) {
            const float* w = tap + c * filters_;
            float sum = 0.0f;
            for (int64_t f = 0; f < filters_; ++f) sum += g[f] * w[f];
            dx_all[(b * steps_in_ + r) * channels_ + c] += sum;
          }
        }
      }
    }
  }
}

nlohmann::json Conv1DLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["filters"] = filters_;
  c["kernel_size"] = nlohmann::json::array({kernel_size_});
  c["strides"] = nlohmann::json::array({options_.strides});
  c["padding"] = options_.padding;
  c["data_format"] = "channels_last";
  c["dilation_rate"] = nlohmann::json::array({options_.dilation_rate});
  c["groups"] = 1;
  add_conv_weight_config(c, activation_name_, options_);
  return c;
}

}  // namespace attn::layers
