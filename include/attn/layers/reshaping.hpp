// Flatten and Reshape: row-major reshapes with no weights (keras/src/layers/reshaping).
#pragma once

#include "attn/layer.hpp"

namespace attn::layers {

// Its output is its input with another shape (the executor shares the buffer; forward and
// backward copy, for the one case it does not: a reshape as the model's output).
class ReshapeLayerBase : public Layer {
 public:
  using Layer::Layer;
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  bool output_is_input_view() const override { return true; }
  bool forward_is_per_sample() const override { return true; }

 protected:
  int64_t sample_size_ = 0;
};

class FlattenLayer : public ReshapeLayerBase {
 public:
  explicit FlattenLayer(std::string name = "") : ReshapeLayerBase("flatten", std::move(name)) {}
  std::string class_name() const override { return "Flatten"; }
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;
};

class ReshapeLayer : public ReshapeLayerBase {
 public:
  // target_shape excludes the batch axis; one entry may be -1 (inferred).
  explicit ReshapeLayer(Shape target_shape, std::string name = "")
      : ReshapeLayerBase("reshape", std::move(name)), target_(std::move(target_shape)) {}
  std::string class_name() const override { return "Reshape"; }
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  Shape target_;
};

class Flatten : public LayerHandle<FlattenLayer> {
 public:
  explicit Flatten(std::string name = "") : LayerHandle(std::make_shared<FlattenLayer>(std::move(name))) {}
};

class Reshape : public LayerHandle<ReshapeLayer> {
 public:
  explicit Reshape(Shape target_shape, std::string name = "")
      : LayerHandle(std::make_shared<ReshapeLayer>(std::move(target_shape), std::move(name))) {}
};

}  // namespace attn::layers
