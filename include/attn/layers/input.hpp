// Input: the symbolic entry point of a functional model (Keras' InputLayer).
#pragma once

#include "attn/layer.hpp"

namespace attn {

class InputLayer : public Layer {
 public:
  InputLayer(Shape shape, std::string name);
  std::string class_name() const override { return "InputLayer"; }
  const Shape& shape() const { return shape_; }
  void forward(ForwardContext&) override {}
  bool forward_is_per_sample() const override { return true; }
  void backward(BackwardContext&) override {}
  nlohmann::json get_config() const override;
  Node output() const { return output_.lock(); }

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>&, const CallOptions&) override { return {shape_}; }

 private:
  friend Node Input(Shape, std::string);
  Shape shape_;
  // Weak: the symbolic tensor owns its layer, so a strong reference back would be a cycle.
  std::weak_ptr<SymbolicTensor> output_;
};

// A symbolic input of this shape (batch axis excluded), like keras.Input(shape=...).
Node Input(Shape shape, std::string name = "");

namespace layers {
using attn::Input;
}

}  // namespace attn
