// Dot (keras/src/layers/merging/dot.py): the batched dot product of two inputs along one axis of
// each, the building block of attention written by hand in Keras (scores = Dot(axes=2)([q, k]),
// softmax, context = Dot(axes=(2, 1))([weights, v])). Axes count the batch axis (which cannot be
// contracted); a negative axis counts from the end. The output is the first input's remaining
// axes, then the second's, or (1,) when none remain. Each input has one or two axes besides the
// batch. normalize=True divides each input by its L2 norm along the contracted axis first, so
// the output is the cosine proximity; as Keras 3 (ops.normalize), a norm below 1e-7 is taken as
// 1e-7 (a zero vector scores 0). Keras' Dot gives its output no mask.
#pragma once

#include <array>
#include <string>

#include "attn/layer.hpp"

namespace attn::layers {

struct DotOptions {
  bool normalize = false;
  std::string name = "";
};

class DotLayer : public Layer {
 public:
  // axes: one integer for both inputs, or one per input.
  explicit DotLayer(std::vector<int64_t> axes, DotOptions options = {});
  std::string class_name() const override { return "Dot"; }
  const std::vector<int64_t>& axes() const { return axes_; }
  bool normalize() const { return normalize_; }
  int64_t scratch_floats(int64_t batch, const CallOptions&) const override;
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
  // Per row of each operand: its inverse norm, and that squared where the norm was not clamped
  // (the factor of the gradient through the norm; 0 where the clamp makes the norm a constant).
  void inverse_norms(const float* v, const Operand& o, float* inverse, float* through_norm) const;
  std::vector<int64_t> axes_;
  bool normalize_ = false;
  std::array<Operand, 2> operand_;
};

class Dot : public LayerHandle<DotLayer> {
 public:
  explicit Dot(int64_t axes, DotOptions options = {})
      : LayerHandle(std::make_shared<DotLayer>(std::vector<int64_t>{axes}, std::move(options))) {}
  Dot(std::array<int64_t, 2> axes, DotOptions options = {})
      : LayerHandle(std::make_shared<DotLayer>(std::vector<int64_t>{axes[0], axes[1]}, std::move(options))) {}
  Dot(int64_t axes, std::string name) : Dot(axes, DotOptions{.name = std::move(name)}) {}
  Dot(std::array<int64_t, 2> axes, std::string name) : Dot(axes, DotOptions{.name = std::move(name)}) {}
};

}  // namespace attn::layers
