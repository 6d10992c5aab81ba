// Flatten and Reshape. Data is already row-major, so both are copies. Permute walks the output
// in order with an odometer over its axes, the input offset following by strides.
#include "attn/layers/reshaping.hpp"

#include <algorithm>
#include <cstring>

namespace attn::layers {

void ReshapeLayerBase::forward(ForwardContext& ctx) {
  std::memcpy(ctx.outputs[0], ctx.inputs[0], ctx.batch * sample_size_ * sizeof(float));
}

void ReshapeLayerBase::backward(BackwardContext& ctx) {
  if (!ctx.input_grads[0] || !ctx.output_grads[0]) return;
  const int64_t n = ctx.batch * sample_size_;
  for (int64_t i = 0; i < n; ++i) ctx.input_grads[0][i] += ctx.output_grads[0][i];
}

std::vector<Shape> FlattenLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  sample_size_ = shape_size(in[0]);
  return {{sample_size_}};
}

nlohmann::json FlattenLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["data_format"] = "channels_last";
  return c;
}

std::vector<Shape> ReshapeLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  sample_size_ = shape_size(in[0]);
  Shape out = target_;
  int64_t known = 1;
  int unknown = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      if (unknown >= 0) fail("target_shape " + shape_to_string(target_) + " has more than one -1");
      unknown = static_cast<int>(i);
    } else if (out[i] <= 0) {
      fail("target_shape " + shape_to_string(target_) + " has a non-positive dimension");
    } else {
      known *= out[i];
    }
  }
  if (unknown >= 0) {
    if (sample_size_ % known) fail("cannot reshape " + shape_to_string(in[0]) + " to " + shape_to_string(target_));
    out[unknown] = sample_size_ / known;
  }
  if (shape_size(out) != sample_size_)
    fail("cannot reshape " + shape_to_string(in[0]) + " (" + std::to_string(sample_size_) + " values) to " +
         shape_to_string(target_));
  return {out};
}

nlohmann::json ReshapeLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["target_shape"] = target_;
  return c;
}

PermuteLayer::PermuteLayer(std::vector<int64_t> dims, std::string name)
    : Layer("permute", std::move(name)), dims_(std::move(dims)) {
  std::vector<int64_t> sorted = dims_;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    if (sorted[i] != static_cast<int64_t>(i) + 1)
      fail("dims must be a permutation of 1.." + std::to_string(dims_.size()) + " (the batch axis is not counted), got " +
           shape_to_string(dims_));
  if (dims_.empty() || dims_.size() > kMaxRank)
    fail("dims must name 1 to " + std::to_string(kMaxRank) + " axes, got " + shape_to_string(dims_));
}

std::vector<Shape> PermuteLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  if (in[0].size() != dims_.size())
    fail("dims " + shape_to_string(dims_) + " need an input of " + std::to_string(dims_.size()) + " axes, got " +
         batch_shape_to_string(in[0]));
  const size_t rank = dims_.size();
  std::vector<int64_t> strides(rank, 1);
  for (size_t a = rank - 1; a > 0; --a) strides[a - 1] = strides[a] * in[0][a];
  out_shape_.assign(rank, 0);
  in_strides_.assign(rank, 0);
  for (size_t i = 0; i < rank; ++i) {
    out_shape_[i] = in[0][dims_[i] - 1];
    in_strides_[i] = strides[dims_[i] - 1];
  }
  sample_size_ = shape_size(in[0]);
  return {out_shape_};
}

template <class Visit>
void PermuteLayer::for_each_value(Visit&& visit) const {
  const size_t rank = out_shape_.size();
  int64_t idx[kMaxRank] = {};  // on the stack: a step allocates nothing
  const int64_t inner = out_shape_.back(), inner_stride = in_strides_.back();
  int64_t in_offset = 0;
  for (int64_t out = 0; out < sample_size_; out += inner) {
    for (int64_t j = 0; j < inner; ++j) visit(out + j, in_offset + j * inner_stride);
    // Advance the odometer over the axes before the last.
    for (size_t a = rank - 1; a-- > 0;) {
      in_offset += in_strides_[a];
      if (++idx[a] < out_shape_[a]) break;
      in_offset -= in_strides_[a] * out_shape_[a];
      idx[a] = 0;
    }
  }
}

void PermuteLayer::forward(ForwardContext& ctx) {
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* x = ctx.inputs[0] + b * sample_size_;
    float* y = ctx.outputs[0] + b * sample_size_;
    for_each_value([&](int64_t out, int64_t in) { y[out] = x[in]; });
  }
}

void PermuteLayer::backward(BackwardContext& ctx) {
  if (!ctx.input_grads[0] || !ctx.output_grads[0]) return;
  for (int64_t b = 0; b < ctx.batch; ++b) {
    const float* dy = ctx.output_grads[0] + b * sample_size_;
    float* dx = ctx.input_grads[0] + b * sample_size_;
    for_each_value([&](int64_t out, int64_t in) { dx[in] += dy[out]; });
  }
}

nlohmann::json PermuteLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["dims"] = dims_;
  return c;
}

}  // namespace attn::layers
