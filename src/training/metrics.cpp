// Keras' "accuracy": which variant the shapes select (keras/src/trainers/compile_utils.py
// get_metric) and the per-batch count of correct samples each variant adds to its Mean
// (keras/src/metrics/accuracy_metrics.py). Deliberately not here: sample weights, top-k.
#include "attn/metrics.hpp"

#include <stdexcept>

namespace attn::metrics {
namespace {

// First index of the maximum, as numpy/JAX/TF-CPU argmax break ties.
int64_t argmax_first(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t j = 1; j < n; ++j)
    if (x[j] > x[best]) best = j;
  return best;
}

}  // namespace

AccuracyKind resolve_accuracy(const Shape& y_true_shape, const Shape& y_pred_shape) {
  if (y_pred_shape.empty() || y_true_shape.empty())
    throw std::invalid_argument("resolve_accuracy: shapes need a batch axis");
  const int64_t pred_last = y_pred_shape.back();
  const int64_t true_last = y_true_shape.back();
  if (pred_last == 1) return AccuracyKind::kBinary;
  if (y_true_shape.size() < y_pred_shape.size() || (true_last == 1 && pred_last > 1))
    return AccuracyKind::kSparseCategorical;
  return AccuracyKind::kCategorical;
}

std::string to_string(AccuracyKind kind) {
  switch (kind) {
    case AccuracyKind::kBinary: return "binary_accuracy";
    case AccuracyKind::kSparseCategorical: return "sparse_categorical_accuracy";
    case AccuracyKind::kCategorical: return "categorical_accuracy";
  }
  return "accuracy";
}

double count_correct(AccuracyKind kind, const float* y_pred, const float* y_true, int64_t batch,
                     int64_t width) {
  if (batch <= 0) return 0.0;
  if (width <= 0) throw std::invalid_argument("count_correct: width must be positive");
  double correct = 0.0;
  switch (kind) {
    case AccuracyKind::kSparseCategorical:
      // y_true is cast to the float dtype and compared with float(argmax): a non-integral
      // or out-of-range label simply never matches.
      for (int64_t i = 0; i < batch; ++i)
        if (static_cast<float>(argmax_first(y_pred + i * width, width)) == y_true[i]) correct += 1.0;
      break;
    case AccuracyKind::kCategorical:
      for (int64_t i = 0; i < batch; ++i)
        if (argmax_first(y_pred + i * width, width) == argmax_first(y_true + i * width, width)) correct += 1.0;
      break;
    case AccuracyKind::kBinary:
      // binary_accuracy: y_true == float(y_pred > 0.5) per element (labels are not
      // thresholded, so 0.7 never matches), then the mean over the last axis per sample.
      for (int64_t i = 0; i < batch; ++i) {
        int64_t hits = 0;
        for (int64_t j = 0; j < width; ++j) {
          const float p = y_pred[i * width + j] > 0.5f ? 1.0f : 0.0f;
          if (p == y_true[i * width + j]) ++hits;
        }
        correct += static_cast<double>(static_cast<float>(hits) / static_cast<float>(width));
      }
      break;
  }
  return correct;
}

}  // namespace attn::metrics
