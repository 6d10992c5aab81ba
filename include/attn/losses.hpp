// Losses with Keras semantics (keras-semantics.md section 5): per-sample losses,
// reduction sum_over_batch_size by default. The model may hand a cross-entropy the
// hidden pre-activation logits of a sigmoid/softmax output (TensorFlow's behaviour);
// that choice is the model's, a loss only sees `y_pred_are_logits`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace attn::losses {

enum class Reduction { kSumOverBatchSize, kSum, kMean, kNone };
Reduction reduction_from_string(const std::string& name);  // throws naming the value
std::string to_string(Reduction r);

// One batch (or a thread's slice of one) as the loss sees it.
struct LossBatch {
  const float* y_pred = nullptr;  // [batch, width]
  const float* y_true = nullptr;  // [batch] class ids (sparse losses) or [batch, width]
  int64_t batch = 0;
  int64_t width = 0;              // features per sample in y_pred (last axis, classes)
};

class Loss {
 public:
  virtual ~Loss() = default;
  virtual std::string class_name() const = 0;   // "SparseCategoricalCrossentropy"
  virtual nlohmann::json get_config() const = 0;  // Keras get_config()
  virtual bool is_crossentropy() const { return false; }
  virtual bool sparse_labels() const { return false; }  // y_true holds class ids
  bool from_logits() const { return from_logits_; }
  Reduction reduction() const { return reduction_; }

  // Sum over the samples of the per-sample losses (sample weight 1). When grad is not
  // null, writes grad_scale * d(sum)/d(y_pred) into grad [batch, width] (overwrites).
  // y_pred_are_logits overrides from_logits (the TensorFlow hidden-logits path).
  virtual double sum_and_gradient(const LossBatch& b, bool y_pred_are_logits, float* grad,
                                  float grad_scale) const = 0;
  // The reduced loss of a whole batch is sum / reduction_divisor(batch): what is differentiated.
  double reduction_divisor(int64_t batch) const;
  // The batch's loss as fit, evaluate and train_on_batch report it: sum / reported_divisor.
  // The same but for "none", whose loss vector Keras' loss tracker averages (its gradient is
  // the sum's, as TensorFlow differentiates a vector).
  double reported_divisor(int64_t batch) const;

 protected:
  bool from_logits_ = false;
  Reduction reduction_ = Reduction::kSumOverBatchSize;
};

struct CrossentropyOptions {
  bool from_logits = false;
  std::string reduction = "sum_over_batch_size";
  float label_smoothing = 0.0f;  // Categorical and Binary only
};

std::shared_ptr<Loss> SparseCategoricalCrossentropy(CrossentropyOptions options = {});
std::shared_ptr<Loss> CategoricalCrossentropy(CrossentropyOptions options = {});
std::shared_ptr<Loss> BinaryCrossentropy(CrossentropyOptions options = {});
std::shared_ptr<Loss> MeanSquaredError(std::string reduction = "sum_over_batch_size");

// Builds a loss from a Keras name ("sparse_categorical_crossentropy", "mse", ...) or a
// serialized {"class_name":..., "config":...}; throws naming an unknown loss.
std::shared_ptr<Loss> loss_from_json(const nlohmann::json& j);

}  // namespace attn::losses
