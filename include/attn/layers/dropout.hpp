// Dropout (keras/src/layers/regularization/dropout.py): in training keep each value
// with probability 1 - rate and scale it by 1 / (1 - rate); identity in inference.
// The mask is a hash of (step seed, sample, element), so backward recomputes it
// and the result does not depend on how the batch is split across threads.
#pragma once

#include "attn/layer.hpp"
#include "attn/random.hpp"

namespace attn::layers {

struct DropoutOptions {
  std::string name = "";
};

class DropoutLayer : public Layer {
 public:
  DropoutLayer(float rate, DropoutOptions options);
  std::string class_name() const override { return "Dropout"; }
  float rate() const { return rate_; }
  void forward(ForwardContext& ctx) override;
  bool forward_is_per_sample() const override { return true; }
  bool propagates_mask() const override { return true; }
  void backward(BackwardContext& ctx) override;
  nlohmann::json get_config() const override;

 protected:
  std::vector<Shape> compute_build(const std::vector<Shape>& in, const CallOptions&) override;

 private:
  // Whether element i is kept in the sample whose hash_prefix(step seed, sample) is sample_key.
  bool keep(uint64_t sample_key, int64_t i) const {
    return rate_ < 1.0f && hash_uniform(hash_combine_from(sample_key, static_cast<uint64_t>(i))) >= rate_;
  }
  float kept_scale() const { return rate_ < 1.0f ? 1.0f / (1.0f - rate_) : 0.0f; }
  float rate_;
  int64_t sample_size_ = 0;
};

class Dropout : public LayerHandle<DropoutLayer> {
 public:
  explicit Dropout(float rate, DropoutOptions options = {})
      : LayerHandle(std::make_shared<DropoutLayer>(rate, std::move(options))) {}
};

}  // namespace attn::layers
