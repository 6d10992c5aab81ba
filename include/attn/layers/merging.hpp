// Add: the element-wise sum of its inputs, all of one shape (keras/src/layers/merging/add.py;
// Keras' broadcasting of size-1 axes is refused). The residual connection of a Transformer block.
// Its output's mask is the AND of the inputs' masks (Merge.compute_mask); attn takes inputs that
// carry one mask, or none.
#pragma once

#include "attn/layer.hpp"

namespace attn::layers {

class AddLayer : public Layer {
 public:
  explicit AddLayer(std::string name = "") : Layer("add", std::move(name)) {}
  std::string class_name() const override { return "Add"; }
  bool forward_is_per_sample() const override { return true; }
  Node compute_mask(const std::vector<Node>& inputs, const CallOptions& options) const override;
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  int64_t sample_size_ = 0;
};

class Add : public LayerHandle<AddLayer> {
 public:
  explicit Add(std::string name = "") : LayerHandle(std::make_shared<AddLayer>(std::move(name))) {}
};

}  // namespace attn::layers
