// Activation layer: the activation kernels over the whole sample.
#include "attn/layers/activation.hpp"

#include <cstring>

#include "kernels/activations.hpp"

namespace attn::layers {

using Act = kernels::Activation;

ActivationLayer::ActivationLayer(std::string activation, std::string name) : Layer("activation", std::move(name)) {
  activation_ = static_cast<int>(kernels::activation_from_string(activation));
  activation_name_ = kernels::to_string(static_cast<Act>(activation_));
}

std::vector<Shape> ActivationLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  sample_size_ = shape_size(in[0]);
  width_ = in[0].empty() ? 1 : in[0].back();
  return {in[0]};
}

bool ActivationLayer::has_keras_logits() const {
  auto a = static_cast<Act>(activation_);
  return a == Act::kSigmoid || a == Act::kSoftmax;
}

void ActivationLayer::forward(ForwardContext& ctx) {
  const int64_t n = ctx.batch * sample_size_;
  std::memcpy(ctx.saved, ctx.inputs[0], n * sizeof(float));
  if (ctx.logits) std::memcpy(ctx.logits, ctx.inputs[0], n * sizeof(float));
  kernels::activation_forward(static_cast<Act>(activation_), ctx.inputs[0], ctx.outputs[0], n / width_, width_);
}

void ActivationLayer::backward(BackwardContext& ctx) {
  if (!ctx.input_grads[0] || !ctx.output_grads[0]) return;
  const int64_t n = ctx.batch * sample_size_;
  if (ctx.output_grad_is_logits) {
    for (int64_t i = 0; i < n; ++i) ctx.input_grads[0][i] += ctx.output_grads[0][i];
    return;
  }
  kernels::activation_backward(static_cast<Act>(activation_), ctx.saved, ctx.outputs[0], ctx.output_grads[0],
                               ctx.input_grads[0], n / width_, width_);
}

nlohmann::json ActivationLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["activation"] = activation_name_;
  return c;
}

}  // namespace attn::layers
