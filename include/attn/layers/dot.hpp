// Dot (keras/src/layers/merging/dot.py): the batched dot product of two inputs along one axis of
// each, the building block of attention written by hand in Keras (scores = Dot(axes=2)([q, k]),
// softmax, context = Dot(axes=(2, 1))([weights, v])). Axes count the batch axis (which cannot be
// contracted); a negative axis counts from the end. The output is the first input's remaining
// axes, then the second's, or (1,) when none remain. Each input has one or two axes besides the
// batch; normalize=True (cosine proximity) is not implemented. Keras' Dot gives its output no mask.
#pragma once

#include <array>

#include "attn/layer.hpp"

namespace attn::layers {

class DotLayer : public Layer {
 public:
  // axes: one integer for both inputs, or one per input.
  explicit DotLayer(std::vector<int64_t> axes, std::string name = "");
  std::string class_name() const override { return "Dot"; }
  const std::vector<int64_t>& axes() const { return axes_; }
  bool forward_is_per_sample() const override { return true; }
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  // One input as a matrix of `rows` x `depth` (depth the contracted axis), by strides.
  struct Operand {
    int64_t rows = 1, depth = 0, row_stride = 0, depth_stride = 1, size = 0;
  };
  std::vector<int64_t> axes_;
  std::array<Operand, 2> operand_;
};

class Dot : public LayerHandle<DotLayer> {
 public:
  explicit Dot(int64_t axes, std::string name = "")
      : LayerHandle(std::make_shared<DotLayer>(std::vector<int64_t>{axes}, std::move(name))) {}
  Dot(std::array<int64_t, 2> axes, std::string name = "")
      : LayerHandle(std::make_shared<DotLayer>(std::vector<int64_t>{axes[0], axes[1]}, std::move(name))) {}
};

}  // namespace attn::layers
