// Accuracy: Keras' shape rule for which variant "accuracy" means, per-batch correct counts
// (first index on argmax ties, strict 0.5 threshold), and the float32 running Mean.
#include <gtest/gtest.h>

#include <vector>

#include "attn/metrics.hpp"

namespace attn::metrics {
namespace {

TEST(MetricResolve, ShapeRule) {
  // y_pred last dim 1 -> binary, whatever y_true looks like.
  EXPECT_EQ(resolve_accuracy({32, 1}, {32, 1}), AccuracyKind::kBinary);
  EXPECT_EQ(resolve_accuracy({32}, {32, 1}), AccuracyKind::kBinary);
  // Lower-rank labels, or a trailing 1 against several classes -> sparse.
  EXPECT_EQ(resolve_accuracy({32}, {32, 10}), AccuracyKind::kSparseCategorical);
  EXPECT_EQ(resolve_accuracy({32, 1}, {32, 10}), AccuracyKind::kSparseCategorical);
  EXPECT_EQ(resolve_accuracy({-1, 1}, {-1, 10}), AccuracyKind::kSparseCategorical);
  // Same shape, several classes -> categorical.
  EXPECT_EQ(resolve_accuracy({32, 10}, {32, 10}), AccuracyKind::kCategorical);
  EXPECT_EQ(resolve_accuracy({8, 5, 3}, {8, 5, 3}), AccuracyKind::kCategorical);
  EXPECT_EQ(resolve_accuracy({8, 5}, {8, 5, 3}), AccuracyKind::kSparseCategorical);
}

TEST(MetricResolve, Names) {
  EXPECT_EQ(to_string(AccuracyKind::kBinary), "binary_accuracy");
  EXPECT_EQ(to_string(AccuracyKind::kSparseCategorical), "sparse_categorical_accuracy");
  EXPECT_EQ(to_string(AccuracyKind::kCategorical), "categorical_accuracy");
}

TEST(MetricCount, SparseTiesPickTheFirstIndex) {
  const std::vector<float> pred = {0.4f, 0.4f, 0.2f,   // tie between 0 and 1 -> 0
                                   0.1f, 0.3f, 0.6f,   // 2
                                   -1.0f, 5.0f, 5.0f}; // tie between 1 and 2 -> 1
  EXPECT_EQ(count_correct(AccuracyKind::kSparseCategorical, pred.data(),
                          std::vector<float>{0, 2, 1}.data(), 3, 3), 3.0);
  EXPECT_EQ(count_correct(AccuracyKind::kSparseCategorical, pred.data(),
                          std::vector<float>{1, 2, 2}.data(), 3, 3), 1.0);
  // Labels are compared as floats: a fractional id never matches.
  EXPECT_EQ(count_correct(AccuracyKind::kSparseCategorical, pred.data(),
                          std::vector<float>{0.5f, 2, 1}.data(), 3, 3), 2.0);
}

TEST(MetricCount, KerasDocExamples) {
  // SparseCategoricalAccuracy docstring: [[2],[1]] vs [[0.1,0.6,0.3],[0.05,0.95,0]] -> 0.5.
  const std::vector<float> pred = {0.1f, 0.6f, 0.3f, 0.05f, 0.95f, 0.0f};
  EXPECT_EQ(count_correct(AccuracyKind::kSparseCategorical, pred.data(), std::vector<float>{2, 1}.data(), 2, 3),
            1.0);
  // CategoricalAccuracy docstring: [[0,0,1],[0,1,0]] vs [[0.1,0.9,0.8],[0.05,0.95,0]] -> 0.5.
  const std::vector<float> cpred = {0.1f, 0.9f, 0.8f, 0.05f, 0.95f, 0.0f};
  const std::vector<float> onehot = {0, 0, 1, 0, 1, 0};
  EXPECT_EQ(count_correct(AccuracyKind::kCategorical, cpred.data(), onehot.data(), 2, 3), 1.0);
  // BinaryAccuracy docstring: [[1],[1],[0],[0]] vs [[0.98],[1],[0],[0.6]] -> 0.75.
  const std::vector<float> bpred = {0.98f, 1.0f, 0.0f, 0.6f};
  EXPECT_EQ(count_correct(AccuracyKind::kBinary, bpred.data(), std::vector<float>{1, 1, 0, 0}.data(), 4, 1), 3.0);
}

TEST(MetricCount, CategoricalTiesOnBothSides) {
  const std::vector<float> pred = {0.5f, 0.5f, 0.0f};
  EXPECT_EQ(count_correct(AccuracyKind::kCategorical, pred.data(), std::vector<float>{1, 0, 0}.data(), 1, 3), 1.0);
  EXPECT_EQ(count_correct(AccuracyKind::kCategorical, pred.data(), std::vector<float>{0, 1, 0}.data(), 1, 3), 0.0);
  // Smoothed labels still pick their largest entry.
  EXPECT_EQ(count_correct(AccuracyKind::kCategorical, pred.data(), std::vector<float>{0.9f, 0.05f, 0.05f}.data(),
                          1, 3), 1.0);
}

TEST(MetricCount, BinaryThresholdIsStrictAndMeansOverWidth) {
  // p > 0.5 is 1; exactly 0.5 is 0. Labels are compared exactly, not thresholded.
  const std::vector<float> pred = {0.5f, 0.51f,  // -> 0, 1
                                   0.9f, 0.9f};  // -> 1, 1
  const std::vector<float> truth = {0.0f, 1.0f,
                                    1.0f, 0.7f};  // 0.7 never equals 0 or 1
  // Sample 0: 2/2 correct; sample 1: 1/2 -> 1.5 correct samples.
  EXPECT_EQ(count_correct(AccuracyKind::kBinary, pred.data(), truth.data(), 2, 2), 1.5);
}

TEST(MetricCount, EmptyBatch) {
  EXPECT_EQ(count_correct(AccuracyKind::kSparseCategorical, nullptr, nullptr, 0, 10), 0.0);
}

TEST(MetricMean, AccumulatesInFloat32) {
  // Keras' Mean keeps float32 total and count: 2^24 + 1 is not representable, so adding 1
  // to 2^24 is lost (a double total would give 8388608.5).
  Mean m;
  m.update_sum(16777216.0f, 1.0f);
  m.update_sum(1.0f, 1.0f);
  EXPECT_EQ(m.result(), 8388608.0f);
  EXPECT_EQ(m.count(), 2.0f);
  m.reset();
  EXPECT_EQ(m.result(), 0.0f);
  // Batch-size-weighted mean of batch losses: a short last batch weighs less.
  m.update(1.0f, 32.0f);
  m.update(4.0f, 8.0f);
  EXPECT_FLOAT_EQ(m.result(), (32.0f + 32.0f) / 40.0f);
}

}  // namespace
}  // namespace attn::metrics
