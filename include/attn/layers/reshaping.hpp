// Flatten and Reshape: row-major reshapes with no weights (keras/src/layers/reshaping); Permute:
// the sample's axes reordered (its values moved, not only its shape).
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

// Permute(dims): output axis i is input axis dims[i], counted from 1 as Keras does (the batch
// axis stays first): Permute({2, 1}) transposes each sample's matrix. With Reshape it cuts an
// image into patches: (28, 28) -> Reshape(4, 7, 4, 7) -> Permute(1, 3, 2, 4) -> Reshape(16, 49).
class PermuteLayer : public Layer {
 public:
  static constexpr size_t kMaxRank = 8;
  explicit PermuteLayer(std::vector<int64_t> dims, std::string name = "");
  std::string class_name() const override { return "Permute"; }
  bool forward_is_per_sample() const override { return true; }
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  // Calls visit(output offset, input offset) for every value of one sample, in output order.
  template <class Visit>
  void for_each_value(Visit&& visit) const;

  std::vector<int64_t> dims_;
  Shape out_shape_;
  std::vector<int64_t> in_strides_;  // the input stride of each output axis
  int64_t sample_size_ = 0;
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

class Permute : public LayerHandle<PermuteLayer> {
 public:
  explicit Permute(std::vector<int64_t> dims, std::string name = "")
      : LayerHandle(std::make_shared<PermuteLayer>(std::move(dims), std::move(name))) {}
};

}  // namespace attn::layers
