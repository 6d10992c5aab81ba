// Add: the element-wise sum of its inputs, all of one shape (keras/src/layers/merging/add.py;
// Keras' broadcasting of size-1 axes is refused). The residual connection of a Transformer block.
// Its output's mask is the AND of the inputs' masks (Merge.compute_mask); attn takes inputs that
// carry one mask, or none.
// Concatenate: the inputs joined along one axis (keras/src/layers/merging/concatenate.py; axis
// counts the batch axis, -1 the last), every other axis equal. Masks: as for Add, one mask among
// the inputs, and only when joining the last axis (features), where Keras' concatenated mask
// reduces to it; a mask joined along the steps is refused.
// Subtract, Multiply, Average, Maximum, Minimum: Keras' other element-wise merges
// (keras/src/layers/merging/{subtract,multiply,average,maximum,minimum}.py), inputs of one shape
// and masks as for Add. Subtract takes exactly 2 inputs. Maximum and Minimum fold the inputs left
// to right, and where inputs tie the gradient goes to the first of them (TensorFlow's
// Maximum/Minimum gradients give a tie to their first operand).
#pragma once

#include "attn/layer.hpp"

namespace attn::layers {

// What Add and the other element-wise merges share: inputs of one shape (at least min_inputs of
// them) and Keras' mask rule.
class SameShapeMergeLayer : public Layer {
 public:
  SameShapeMergeLayer(std::string name_prefix, std::string name, size_t min_inputs)
      : Layer(std::move(name_prefix), std::move(name)), min_inputs_(min_inputs) {}
  bool forward_is_per_sample() const override { return true; }
  Node compute_mask(const std::vector<Node>& inputs, const CallOptions& options) const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;
  int64_t sample_size_ = 0;

 private:
  size_t min_inputs_;
};

class AddLayer : public SameShapeMergeLayer {
 public:
  explicit AddLayer(std::string name = "") : SameShapeMergeLayer("add", std::move(name), 1) {}
  std::string class_name() const override { return "Add"; }
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
};

class Add : public LayerHandle<AddLayer> {
 public:
  explicit Add(std::string name = "") : LayerHandle(std::make_shared<AddLayer>(std::move(name))) {}
};

enum class MergeOp { kSubtract, kMultiply, kAverage, kMaximum, kMinimum };

class ElementwiseMergeLayer : public SameShapeMergeLayer {
 public:
  explicit ElementwiseMergeLayer(MergeOp op, std::string name = "");
  std::string class_name() const override;
  MergeOp op() const { return op_; }
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions& options) override;

 private:
  MergeOp op_;
};

template <MergeOp kOp>
class ElementwiseMerge : public LayerHandle<ElementwiseMergeLayer> {
 public:
  explicit ElementwiseMerge(std::string name = "")
      : LayerHandle(std::make_shared<ElementwiseMergeLayer>(kOp, std::move(name))) {}
};
using Subtract = ElementwiseMerge<MergeOp::kSubtract>;
using Multiply = ElementwiseMerge<MergeOp::kMultiply>;
using Average = ElementwiseMerge<MergeOp::kAverage>;
using Maximum = ElementwiseMerge<MergeOp::kMaximum>;
using Minimum = ElementwiseMerge<MergeOp::kMinimum>;

class ConcatenateLayer : public Layer {
 public:
  explicit ConcatenateLayer(int64_t axis = -1, std::string name = "")
      : Layer("concatenate", std::move(name)), axis_(axis) {}
  std::string class_name() const override { return "Concatenate"; }
  bool forward_is_per_sample() const override { return true; }
  Node compute_mask(const std::vector<Node>& inputs, const CallOptions& options) const override;
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  int64_t axis_;
  size_t sample_axis_ = 0;     // axis_ among the sample's axes (the batch axis not counted)
  int64_t outer_ = 1;           // product of the sample axes before it
  std::vector<int64_t> block_;  // per input: its values per outer index (its axis length x inner)
  int64_t out_block_ = 0;       // the output's values per outer index
};

class Concatenate : public LayerHandle<ConcatenateLayer> {
 public:
  explicit Concatenate(int64_t axis = -1, std::string name = "")
      : LayerHandle(std::make_shared<ConcatenateLayer>(axis, std::move(name))) {}
};

}  // namespace attn::layers
