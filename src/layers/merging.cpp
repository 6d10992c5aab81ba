// Add: forward sums the inputs; backward hands the output's gradient to each of them.
// The other element-wise merges: each element on its own, the gradient of each input by hand.
// Concatenate: forward copies each input's block into its place; backward adds it back out.
#include "attn/layers/merging.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace attn::layers {

namespace {
// The one Keras mask among the inputs (Merge.compute_mask ANDs them; attn takes one), or null.
// Returns false when two inputs carry different masks.
bool single_mask(const std::vector<Node>& inputs, Node& mask) {
  mask = nullptr;
  for (const Node& n : inputs) {
    if (!n->keras_mask) continue;
    if (mask && mask != n->keras_mask) return false;
    mask = n->keras_mask;
  }
  return true;
}
constexpr const char* kTwoMasks = "inputs carry different Keras masks; attn does not combine masks (give them one mask)";
}  // namespace

std::vector<Shape> SameShapeMergeLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() < min_inputs_)
    fail("expects a list of at least " + std::to_string(min_inputs_) + (min_inputs_ == 1 ? " input" : " inputs") +
         ", got " + std::to_string(in.size()));
  for (const Shape& s : in)
    if (s != in[0])
      fail("inputs must all have one shape, got " + shape_to_string(in[0]) + " and " + shape_to_string(s) +
           " (broadcasting is not supported)");
  sample_size_ = shape_size(in[0]);
  return {in[0]};
}

Node SameShapeMergeLayer::compute_mask(const std::vector<Node>& inputs, const CallOptions&) const {
  Node mask;
  if (!single_mask(inputs, mask)) fail(kTwoMasks);
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

namespace {
// Keras' names and layer-name prefixes, in MergeOp order.
constexpr const char* kMergeClass[] = {"Subtract", "Multiply", "Average", "Maximum", "Minimum"};
constexpr const char* kMergePrefix[] = {"subtract", "multiply", "average", "maximum", "minimum"};
}  // namespace

ElementwiseMergeLayer::ElementwiseMergeLayer(MergeOp op, std::string name)
    : SameShapeMergeLayer(kMergePrefix[static_cast<int>(op)], std::move(name), 2), op_(op) {}

std::string ElementwiseMergeLayer::class_name() const { return kMergeClass[static_cast<int>(op_)]; }

std::vector<Shape> ElementwiseMergeLayer::compute_build(const std::vector<Shape>& in, const CallOptions& options) {
  if (op_ == MergeOp::kSubtract && in.size() != 2)
    fail("expects exactly 2 inputs, got " + std::to_string(in.size()));
  return SameShapeMergeLayer::compute_build(in, options);
}

void ElementwiseMergeLayer::forward(ForwardContext& ctx) {
  const int64_t n = ctx.batch * sample_size_;
  float* y = ctx.outputs[0];
  const float* first = ctx.inputs[0];
  std::copy(first, first + n, y);
  for (size_t k = 1; k < ctx.inputs.size(); ++k) {
    const float* x = ctx.inputs[k];
    switch (op_) {
      case MergeOp::kSubtract:
        for (int64_t i = 0; i < n; ++i) y[i] -= x[i];
        break;
      case MergeOp::kMultiply:
        for (int64_t i = 0; i < n; ++i) y[i] *= x[i];
        break;
      case MergeOp::kAverage:  // summed here, divided below, as Keras' Average
        for (int64_t i = 0; i < n; ++i) y[i] += x[i];
        break;
      case MergeOp::kMaximum:  // a NaN wins, so it shows
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] > y[i] || std::isnan(x[i]) ? x[i] : y[i];
        break;
      case MergeOp::kMinimum:
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] < y[i] || std::isnan(x[i]) ? x[i] : y[i];
        break;
    }
  }
  if (op_ == MergeOp::kAverage) {
    const auto count = static_cast<float>(ctx.inputs.size());
    for (int64_t i = 0; i < n; ++i) y[i] /= count;
  }
}

void ElementwiseMergeLayer::backward(BackwardContext& ctx) {
  const float* dy = ctx.output_grads[0];
  if (!dy) return;
  const int64_t n = ctx.batch * sample_size_;
  const size_t inputs = ctx.inputs.size();
  for (size_t k = 0; k < inputs; ++k) {
    float* dx = ctx.input_grads[k];
    if (!dx) continue;
    switch (op_) {
      case MergeOp::kSubtract:
        if (k == 0)
          for (int64_t i = 0; i < n; ++i) dx[i] += dy[i];
        else
          for (int64_t i = 0; i < n; ++i) dx[i] -= dy[i];
        break;
      case MergeOp::kMultiply:  // the product of the other inputs
        for (int64_t i = 0; i < n; ++i) {
          float g = dy[i];
          for (size_t j = 0; j < inputs; ++j)
            if (j != k) g *= ctx.inputs[j][i];
          dx[i] += g;
        }
        break;
      case MergeOp::kAverage: {
        const auto count = static_cast<float>(inputs);
        for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] / count;
        break;
      }
      case MergeOp::kMaximum:
      case MergeOp::kMinimum: {
        // The output's element came from the first input holding its value.
        const float* y = ctx.outputs[0];
        for (int64_t i = 0; i < n; ++i) {
          size_t first = 0;
          while (first < inputs && !(ctx.inputs[first][i] == y[i])) ++first;
          if (first == k) dx[i] += dy[i];
        }
        break;
      }
    }
  }
}

std::vector<Shape> ConcatenateLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() < 2) fail("expects a list of at least 2 inputs, got " + std::to_string(in.size()));
  const auto rank = static_cast<int64_t>(in[0].size());
  // Keras' axis counts the batch axis: 1 is the first sample axis, -1 the last.
  const int64_t axis = axis_ < 0 ? axis_ + rank + 1 : axis_;
  if (rank == 0 || axis < 1 || axis > rank)
    fail("axis " + std::to_string(axis_) + " is not an axis of inputs " + batch_shape_to_string(in[0]) +
         " (the batch axis cannot be joined)");
  sample_axis_ = static_cast<size_t>(axis - 1);
  Shape out = in[0];
  out[sample_axis_] = 0;
  for (const Shape& s : in) {
    bool same = s.size() == in[0].size();
    for (size_t a = 0; same && a < s.size(); ++a) same = a == sample_axis_ || s[a] == in[0][a];
    if (!same)
      fail("inputs must match except along axis " + std::to_string(axis_) + ", got " + batch_shape_to_string(in[0]) +
           " and " + batch_shape_to_string(s));
    out[sample_axis_] += s[sample_axis_];
  }
  outer_ = 1;
  for (size_t a = 0; a < sample_axis_; ++a) outer_ *= out[a];
  int64_t inner = 1;
  for (size_t a = sample_axis_ + 1; a < out.size(); ++a) inner *= out[a];
  block_.clear();
  for (const Shape& s : in) block_.push_back(s[sample_axis_] * inner);
  out_block_ = out[sample_axis_] * inner;
  return {out};
}

Node ConcatenateLayer::compute_mask(const std::vector<Node>& inputs, const CallOptions&) const {
  Node mask;
  if (!single_mask(inputs, mask)) fail(kTwoMasks);
  if (mask && sample_axis_ + 1 != inputs[0]->shape.size())
    fail("joining masked inputs along their steps is not supported (Keras would join their masks too)");
  return mask;
}

void ConcatenateLayer::forward(ForwardContext& ctx) {
  for (int64_t o = 0; o < ctx.batch * outer_; ++o) {
    float* y = ctx.outputs[0] + o * out_block_;
    for (size_t k = 0; k < ctx.inputs.size(); ++k) {
      std::memcpy(y, ctx.inputs[k] + o * block_[k], block_[k] * sizeof(float));
      y += block_[k];
    }
  }
}

void ConcatenateLayer::backward(BackwardContext& ctx) {
  const float* dy_all = ctx.output_grads[0];
  if (!dy_all) return;
  for (int64_t o = 0; o < ctx.batch * outer_; ++o) {
    const float* dy = dy_all + o * out_block_;
    for (size_t k = 0; k < ctx.input_grads.size(); ++k) {
      if (float* dx = ctx.input_grads[k]) {
        dx += o * block_[k];
        for (int64_t i = 0; i < block_[k]; ++i) dx[i] += dy[i];
      }
      dy += block_[k];
    }
  }
}

nlohmann::json ConcatenateLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["axis"] = axis_;
  return c;
}

}  // namespace attn::layers
