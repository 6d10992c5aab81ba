// GlobalAveragePooling1D and GlobalMaxPooling1D: the layout, masks and checks; the reductions
// (shared with the 2D global poolings) are in kernels/global_pooling.
#include "attn/layers/pooling.hpp"

#include "kernels/global_pooling.hpp"

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

void GlobalAveragePooling1DLayer::forward(ForwardContext& ctx) {
  const kernels::PooledLayout layout{steps_, features_, step_stride_, feature_stride_};
  kernels::global_average_forward(layout, ctx.inputs[0], ctx.outputs[0], ctx.batch, ctx.mask);
}

void GlobalAveragePooling1DLayer::backward(BackwardContext& ctx) {
  if (!ctx.input_grads[0] || !ctx.output_grads[0]) return;
  const kernels::PooledLayout layout{steps_, features_, step_stride_, feature_stride_};
  kernels::global_average_backward(layout, ctx.output_grads[0], ctx.input_grads[0], ctx.batch, ctx.mask);
}

std::vector<Shape> GlobalMaxPooling1DLayer::compute_build(const std::vector<Shape>& in, const CallOptions& call) {
  const Shape out = build_layout(in);
  if (call.mask || call.query_mask || call.value_mask || call.key_mask || call.attention_mask) fail("takes no mask");
  return {out};
}

void GlobalMaxPooling1DLayer::forward(ForwardContext& ctx) {
  const kernels::PooledLayout layout{steps_, features_, step_stride_, feature_stride_};
  kernels::global_max_forward(layout, ctx.inputs[0], ctx.outputs[0], ctx.batch);
}

void GlobalMaxPooling1DLayer::backward(BackwardContext& ctx) {
  if (!ctx.input_grads[0] || !ctx.output_grads[0]) return;
  const kernels::PooledLayout layout{steps_, features_, step_stride_, feature_stride_};
  kernels::global_max_backward(layout, ctx.inputs[0], ctx.outputs[0], ctx.output_grads[0], ctx.input_grads[0],
                               ctx.batch);
}

}  // namespace attn::layers
