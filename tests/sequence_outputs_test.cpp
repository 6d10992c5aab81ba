// Outputs with more than one axis per sample (per-timestep classification: (T, C) per sample).
// Keras reduces the loss and the accuracy over the last axis: cross-entropy per (sample, t) row,
// averaged over batch x T; sparse labels are one class id per row; accuracy counts rows. The
// loss and accuracy here are computed by hand in double from the model's own predictions, and
// one SGD step's gradient is compared with central finite differences of the loss. (attn used to
// treat the whole T x C output as one row of classes: silently wrong loss and accuracy.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "attn/attn.hpp"

namespace {

namespace L = attn::layers;
using attn::Model;
using attn::Tensor;

constexpr int64_t kN = 6, kT = 3, kC = 4;

class SequenceOutputs : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(8);
  }
};

// (T, 2) tokens -> attention over them -> Dense(C) per token: (T, C) per sample.
Model per_token_model(const std::string& activation) {
  auto in = attn::Input({kT, 2});
  auto a = L::Attention({.use_scale = true})({in, in});
  return Model(in, L::Dense(kC, {.activation = activation})(a));
}

Tensor tokens(uint32_t seed) {
  Tensor x({kN, kT, 2});
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < x.size(); ++i) x[i] = u(gen);
  return x;
}

Tensor class_ids(uint32_t seed) {
  Tensor y({kN, kT});
  std::mt19937 gen(seed);
  for (int64_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(gen() % kC);
  return y;
}

int64_t argmax(const float* p, int64_t n) { return std::max_element(p, p + n) - p; }

TEST_F(SequenceOutputs, CrossEntropyAndAccuracyArePerRowAsKerasReducesThem) {
  Model m = per_token_model("softmax");
  const Tensor x = tokens(1), ids = class_ids(2);
  Tensor one_hot({kN, kT, kC});
  for (int64_t r = 0; r < kN * kT; ++r) one_hot[r * kC + static_cast<int64_t>(ids[r])] = 1.0f;
  const Tensor p = m.predict(x);
  double ce = 0, mse = 0;
  int64_t hits = 0;
  for (int64_t r = 0; r < kN * kT; ++r) {
    const int64_t label = static_cast<int64_t>(ids[r]);
    ce -= std::log(std::clamp(double(p[r * kC + label]), 1e-7, 1 - 1e-7));
    hits += argmax(p.data() + r * kC, kC) == label;
    for (int64_t c = 0; c < kC; ++c) mse += std::pow(double(p[r * kC + c]) - one_hot[r * kC + c], 2);
  }
  ce /= kN * kT;
  mse /= kN * kT * kC;
  const double accuracy = double(hits) / (kN * kT);
  ASSERT_GT(hits, 0);
  ASSERT_LT(hits, kN * kT);

  m.compile(attn::optimizers::SGD(), attn::losses::SparseCategoricalCrossentropy(), {"accuracy"});
  auto sparse = m.evaluate(x, ids, {.batch_size = 4});  // batches of 4 and 2 samples
  EXPECT_NEAR(sparse.at("loss"), ce, 1e-5 * ce);
  EXPECT_NEAR(sparse.at("accuracy"), accuracy, 1e-6);

  m.compile(attn::optimizers::SGD(), attn::losses::CategoricalCrossentropy(), {"accuracy"});
  auto dense = m.evaluate(x, one_hot, {.batch_size = 4});
  EXPECT_NEAR(dense.at("loss"), ce, 1e-5 * ce);
  EXPECT_NEAR(dense.at("accuracy"), accuracy, 1e-6);

  m.compile(attn::optimizers::SGD(), attn::losses::MeanSquaredError(), {"categorical_accuracy"});
  auto squared = m.evaluate(x, one_hot, {.batch_size = 4});
  EXPECT_NEAR(squared.at("loss"), mse, 1e-5 * mse);
  EXPECT_NEAR(squared.at("categorical_accuracy"), accuracy, 1e-6);

  // Sparse labels are one class id per row: (N,) is refused, naming the rows wanted.
  m.compile(attn::optimizers::SGD(), attn::losses::SparseCategoricalCrossentropy(), {"accuracy"});
  try {
    m.evaluate(x, Tensor({kN}));
    ADD_FAILURE() << "one label per sample accepted for a (3, 4) output";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("one class id per output row (3 per sample)"), std::string::npos)
        << e.what();
  }
}

TEST_F(SequenceOutputs, BinaryAccuracyCountsEveryTimestep) {
  auto in = attn::Input({kT, 2});
  Model m(in, L::Dense(1, {.activation = "sigmoid"})(in));  // (T, 1) per sample
  const Tensor x = tokens(3);
  Tensor y({kN, kT, 1});
  for (int64_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(i % 2);
  const Tensor p = m.predict(x);
  double bce = 0;
  int64_t hits = 0;
  for (int64_t r = 0; r < kN * kT; ++r) {
    const double q = std::clamp(double(p[r]), 1e-7, 1 - 1e-7);
    bce -= y[r] * std::log(q) + (1 - y[r]) * std::log(1 - q);
    hits += (p[r] > 0.5f ? 1.0f : 0.0f) == y[r];
  }
  m.compile(attn::optimizers::SGD(), attn::losses::BinaryCrossentropy(), {"accuracy"});
  auto r = m.evaluate(x, y);
  EXPECT_NEAR(r.at("loss"), bce / (kN * kT), 1e-5);
  EXPECT_NEAR(r.at("accuracy"), double(hits) / (kN * kT), 1e-6);
}

// One SGD step (learning rate 1) moves each weight by minus its gradient of the mean per-row
// loss; central differences of evaluate's loss give that gradient independently.
TEST_F(SequenceOutputs, GradientOfThePerRowLossMatchesFiniteDifferences) {
  const Tensor x = tokens(5), ids = class_ids(6);
  for (int threads : {1, 2}) {
    attn::set_random_seed(8);
    Model m = per_token_model("linear");
    m.set_threads(threads);
    m.compile(attn::optimizers::SGD({.learning_rate = 1.0f}),
              attn::losses::SparseCategoricalCrossentropy({.from_logits = true}));
    const std::vector<float> w0 = m.get_weights_flat();
    const auto loss_at = [&](const std::vector<float>& w) {
      m.set_weights_flat(w);
      return m.evaluate(x, ids, {.batch_size = kN}).at("loss");
    };
    m.fit(x, ids, {.epochs = 1, .batch_size = kN, .verbose = 0, .shuffle = false});
    const std::vector<float> w1 = m.get_weights_flat();
    double largest = 0;
    std::vector<double> fd(w0.size());
    for (size_t i = 0; i < w0.size(); ++i) {
      const float eps = 2e-3f;
      auto w = w0;
      w[i] = w0[i] + eps;
      const double up = loss_at(w);
      w[i] = w0[i] - eps;
      const double down = loss_at(w);
      fd[i] = (up - down) / (double(w0[i] + eps) - double(w0[i] - eps));
      largest = std::max(largest, std::fabs(fd[i]));
    }
    ASSERT_GT(largest, 1e-2);
    for (size_t i = 0; i < w0.size(); ++i)
      EXPECT_NEAR(double(w0[i]) - double(w1[i]), fd[i], 2e-3 * largest + 2e-2 * std::fabs(fd[i]))
          << "weight " << i << ", " << threads << " thread(s)";
  }
}

}  // namespace
