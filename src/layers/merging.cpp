// Add: forward sums the inputs; backward hands the output's gradient to each of them.
#include "attn/layers/merging.hpp"

namespace attn::layers {

std::vector<Shape> AddLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.empty()) fail("expects a list of at least 1 input");
  for (const Shape& s : in)
    if (s != in[0])
      fail("inputs must all have one shape, got " + shape_to_string(in[0]) + " and " + shape_to_string(s) +
           " (broadcasting is not supported)");
  sample_size_ = shape_size(in[0]);
  return {in[0]};
}

Node AddLayer::compute_mask(const std::vector<Node>& inputs, const CallOptions&) const {
  Node mask;
  for (const Node& n : inputs) {
    if (!n->keras_mask) continue;
    if (mask && mask != n->keras_mask)
      fail("inputs carry different Keras masks; attn does not combine masks (give them one mask)");
    mask = n->keras_mask;
  }
  return mask;
}

void AddLayer::forward(ForwardContext& ctx) {
  const int64_t n = ctx.batch * sample_size_;
  float* y = ctx.outputs[0];
  const float* first = ctx.inputs[0];
  for (int64_t i = 0; i < n; ++i) y[i] = first[i];
  for (size_t k = 1; k < ctx.inputs.size(); ++k) {
    const float* x = ctx.inputs[k];
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
  }
}

void AddLayer::backward(BackwardContext& ctx) {
  const float* dy = ctx.output_grads[0];
  if (!dy) return;
  const int64_t n = ctx.batch * sample_size_;
  for (float* dx : ctx.input_grads)
    if (dx)
      for (int64_t i = 0; i < n; ++i) dx[i] += dy[i];
}

}  // namespace attn::layers
