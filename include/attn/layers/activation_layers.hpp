// Keras' activation layers with arguments (keras/src/layers/activations/): ReLU (max_value,
// negative_slope, threshold: x above the threshold, capped at max_value; negative_slope * (x -
// threshold) below it), LeakyReLU (negative_slope, 0.3 by default as the layer, where the
// leaky_relu activation's is 0.2), ELU (alpha) and Softmax (over the last axis; its output feeds a
// cross-entropy its logits, as the softmax activation's does). ReLU, LeakyReLU and ELU pass a mask
// on; Softmax refuses a masked input (Keras would push the masked steps to zero).
#pragma once

#include <optional>

#include "attn/layer.hpp"

namespace attn::layers {

// The element-wise ones. Each subclass has value(x) and derivative(x), its rule for one element,
// and runs the same rule over whole buffers in loops that vectorize.
class ElementwiseActivationLayer : public Layer {
 public:
  using Layer::Layer;
  bool forward_is_per_sample() const override { return true; }
  bool propagates_mask() const override { return true; }
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;
  // y[i] = value(x[i]) and dx[i] += dy[i] * derivative(x[i]) for i < n.
  virtual void forward_elements(const float* x, float* y, int64_t n) const = 0;
  virtual void backward_elements(const float* x, const float* dy, float* dx, int64_t n) const = 0;

 private:
  int64_t sample_size_ = 0;
};

struct ReLUOptions {
  std::optional<double> max_value = std::nullopt;  // none: no cap
  double negative_slope = 0.0;
  double threshold = 0.0;
  std::string name = "";
};

class ReLULayer : public ElementwiseActivationLayer {
 public:
  explicit ReLULayer(ReLUOptions options = {});
  std::string class_name() const override { return "ReLU"; }
  nlohmann::json get_config() const override;
  float value(float x) const;
  float derivative(float x) const;

 protected:
  void forward_elements(const float* x, float* y, int64_t n) const override;
  void backward_elements(const float* x, const float* dy, float* dx, int64_t n) const override;

 private:
  ReLUOptions options_;
  float max_ = 0.0f, slope_ = 0.0f, threshold_ = 0.0f;
};

class LeakyReLULayer : public ElementwiseActivationLayer {
 public:
  explicit LeakyReLULayer(double negative_slope = 0.3, std::string name = "");
  std::string class_name() const override { return "LeakyReLU"; }
  nlohmann::json get_config() const override;
  float value(float x) const;
  float derivative(float x) const;

 protected:
  void forward_elements(const float* x, float* y, int64_t n) const override;
  void backward_elements(const float* x, const float* dy, float* dx, int64_t n) const override;

 private:
  double negative_slope_;
  float slope_;
};

class ELULayer : public ElementwiseActivationLayer {
 public:
  explicit ELULayer(double alpha = 1.0, std::string name = "");
  std::string class_name() const override { return "ELU"; }
  nlohmann::json get_config() const override;
  float value(float x) const;
  float derivative(float x) const;

 protected:
  void forward_elements(const float* x, float* y, int64_t n) const override;
  void backward_elements(const float* x, const float* dy, float* dx, int64_t n) const override;

 private:
  double alpha_;
  float a_;
};

class SoftmaxLayer : public Layer {
 public:
  explicit SoftmaxLayer(int64_t axis = -1, std::string name = "");
  std::string class_name() const override { return "Softmax"; }
  bool forward_is_per_sample() const override { return true; }
  bool has_keras_logits() const override { return true; }
  std::string keras_logits_activation() const override { return "softmax"; }
  void take_input_masks(const std::vector<Node>& inputs, CallOptions& options) const override;
  void forward(ForwardContext& ctx) override;
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  int64_t axis_;
  int64_t sample_size_ = 0, width_ = 1;
};

class ReLU : public LayerHandle<ReLULayer> {
 public:
  explicit ReLU(ReLUOptions options = {}) : LayerHandle(std::make_shared<ReLULayer>(std::move(options))) {}
};
class LeakyReLU : public LayerHandle<LeakyReLULayer> {
 public:
  explicit LeakyReLU(double negative_slope = 0.3, std::string name = "")
      : LayerHandle(std::make_shared<LeakyReLULayer>(negative_slope, std::move(name))) {}
};
class ELU : public LayerHandle<ELULayer> {
 public:
  explicit ELU(double alpha = 1.0, std::string name = "")
      : LayerHandle(std::make_shared<ELULayer>(alpha, std::move(name))) {}
};
class Softmax : public LayerHandle<SoftmaxLayer> {
 public:
  explicit Softmax(int64_t axis = -1, std::string name = "")
      : LayerHandle(std::make_shared<SoftmaxLayer>(axis, std::move(name))) {}
};

}  // namespace attn::layers
