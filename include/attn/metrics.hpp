// The "accuracy" metric resolved from shapes as Keras does (keras-semantics.md section 6),
// and Keras' float32 running mean used for every per-epoch value.
#pragma once

#include <cstdint>
#include <string>

#include "attn/tensor.hpp"

namespace attn::metrics {

enum class AccuracyKind { kBinary, kSparseCategorical, kCategorical };

// y_true_shape / y_pred_shape include the batch axis, as Keras' get_metric sees them.
AccuracyKind resolve_accuracy(const Shape& y_true_shape, const Shape& y_pred_shape);
std::string to_string(AccuracyKind kind);  // "binary_accuracy", ...

// Number of correct samples in a batch (ties in argmax pick the first index; binary uses
// threshold 0.5 per element and counts matches / width per sample, as Keras' mean does).
// y_pred [batch, width]; y_true [batch] (sparse) or [batch, width].
double count_correct(AccuracyKind kind, const float* y_pred, const float* y_true, int64_t batch,
                     int64_t width);

// Keras' reduction metric Mean: float32 total and count, result = total / count.
class Mean {
 public:
  void reset() { total_ = 0.0f; count_ = 0.0f; }
  void update(float value, float weight = 1.0f) { total_ += value * weight; count_ += weight; }
  void update_sum(float sum, float count) { total_ += sum; count_ += count; }
  float result() const { return count_ == 0.0f ? 0.0f : total_ / count_; }
  float count() const { return count_; }

 private:
  float total_ = 0.0f;
  float count_ = 0.0f;
};

}  // namespace attn::metrics
