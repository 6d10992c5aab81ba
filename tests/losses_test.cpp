// Losses: values against hand-computed numbers and Keras' documented examples, gradients
// against central finite differences, reductions, configs and JSON parsing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "attn/losses.hpp"

namespace attn::losses {
namespace {

struct Case {
  std::vector<float> y_pred;
  std::vector<float> y_true;
  int64_t batch;
  int64_t width;
  LossBatch view() const { return {y_pred.data(), y_true.data(), batch, width}; }
};

double loss_sum(const Loss& loss, const Case& c, bool logits = false) {
  return loss.sum_and_gradient(c.view(), logits, nullptr, 1.0f);
}

// Central differences on the float implementation. The loss is evaluated in double inside,
// so a step of 1e-3 leaves an O(h^2) truncation error around 1e-6.
void expect_gradient_matches_fd(const Loss& loss, Case c, bool logits = false, double h = 1e-3) {
  std::vector<float> grad(c.y_pred.size(), 0.0f);
  const float scale = 0.5f;  // checks grad_scale is applied
  loss.sum_and_gradient(c.view(), logits, grad.data(), scale);
  for (size_t k = 0; k < c.y_pred.size(); ++k) {
    const float x = c.y_pred[k];
    const float xp = static_cast<float>(x + h), xm = static_cast<float>(x - h);
    c.y_pred[k] = xp;
    const double fp = loss_sum(loss, c, logits);
    c.y_pred[k] = xm;
    const double fm = loss_sum(loss, c, logits);
    c.y_pred[k] = x;
    const double fd = scale * (fp - fm) / (static_cast<double>(xp) - static_cast<double>(xm));
    EXPECT_NEAR(grad[k], fd, 2e-4 + 1e-3 * std::abs(fd)) << "element " << k;
  }
}

std::vector<float> random_values(size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

CrossentropyOptions opts(bool from_logits, float ls = 0.0f, std::string reduction = "sum_over_batch_size") {
  CrossentropyOptions o;
  o.from_logits = from_logits;
  o.label_smoothing = ls;
  o.reduction = std::move(reduction);
  return o;
}

// ---- SparseCategoricalCrossentropy ----

TEST(LossSparse, LogitsValueIsLogSumExpMinusTarget) {
  auto loss = SparseCategoricalCrossentropy(opts(true));
  Case c{{1, 2, 3}, {2}, 1, 3};
  const double e = std::exp(1.0);
  EXPECT_NEAR(loss_sum(*loss, c), std::log(e + e * e + e * e * e) - 3.0, 1e-12);
  std::vector<float> g(3);
  loss->sum_and_gradient(c.view(), false, g.data(), 1.0f);
  const double z = e + e * e + e * e * e;
  EXPECT_NEAR(g[0], e / z, 1e-7);
  EXPECT_NEAR(g[1], e * e / z, 1e-7);
  EXPECT_NEAR(g[2], e * e * e / z - 1.0, 1e-7);
}

TEST(LossSparse, LogitsStableForLargeValues) {
  auto loss = SparseCategoricalCrossentropy(opts(true));
  Case c{{1000, 0, -1000}, {0}, 1, 3};
  EXPECT_NEAR(loss_sum(*loss, c), std::log1p(std::exp(-1000.0)), 1e-12);
  c.y_true = {1};
  EXPECT_NEAR(loss_sum(*loss, c), 1000.0, 1e-9);
}

TEST(LossSparse, LogitsGradientMatchesFiniteDifferences) {
  auto loss = SparseCategoricalCrossentropy(opts(true));
  Case c{random_values(4 * 5, -3, 3, 1), {0, 4, 2, 3}, 4, 5};
  expect_gradient_matches_fd(*loss, c);
}

// Rows wider than the loss keeps exps for on the stack (64) take the recomputing path.
TEST(LossSparse, WideLogitsGradientMatchesFiniteDifferences) {
  auto loss = SparseCategoricalCrossentropy(opts(true));
  Case c{random_values(2 * 70, -3, 3, 2), {69, 5}, 2, 70};
  expect_gradient_matches_fd(*loss, c);
}

TEST(LossCategorical, WideLogitsGradientMatchesFiniteDifferences) {
  std::vector<float> onehot(2 * 70, 0.0f);
  onehot[0 * 70 + 3] = onehot[1 * 70 + 66] = 1.0f;
  auto loss = CategoricalCrossentropy(opts(true, 0.1f));
  Case c{random_values(2 * 70, -3, 3, 3), onehot, 2, 70};
  expect_gradient_matches_fd(*loss, c);
}

TEST(LossSparse, ProbabilityPathRenormalisesClippedProbabilities) {
  // TF backend: log(clip(p)) fed to softmax xent == log(sum p) - log(p_y) for unclipped p.
  auto loss = SparseCategoricalCrossentropy(opts(false));
  Case c{{0.2f, 0.5f, 0.1f, 0.15f}, {1}, 1, 4};
  const double sum = double(0.2f) + double(0.5f) + double(0.1f) + double(0.15f);
  EXPECT_NEAR(loss_sum(*loss, c), std::log(sum) - std::log(double(0.5f)), 1e-12);
}

TEST(LossSparse, ProbabilityGradientMatchesFiniteDifferences) {
  auto loss = SparseCategoricalCrossentropy(opts(false));
  Case c{random_values(3 * 4, 0.05f, 0.9f, 2), {0, 3, 1}, 3, 4};
  expect_gradient_matches_fd(*loss, c);
}

TEST(LossSparse, ProbabilityPathCapsNear16) {
  // p_y -> 0 is clipped to 1e-7: loss = log(1e-7 + (1 - 1e-7) + 1e-7) - log(1e-7) ~ 16.118.
  auto loss = SparseCategoricalCrossentropy(opts(false));
  Case c{{0.0f, 1.0f, 0.0f}, {0}, 1, 3};
  const double lo = 1e-7f, hi = 1.0f - 1e-7f;
  const double expected = std::log(lo + hi + lo) - std::log(lo);
  EXPECT_NEAR(loss_sum(*loss, c), expected, 1e-9);
  EXPECT_NEAR(loss_sum(*loss, c), 16.118, 1e-3);
  // Clipped entries get no gradient (clip_by_value blocks it).
  std::vector<float> g(3, 42.0f);
  loss->sum_and_gradient(c.view(), false, g.data(), 1.0f);
  EXPECT_EQ(g[0], 0.0f);
  EXPECT_EQ(g[1], 0.0f);
  EXPECT_EQ(g[2], 0.0f);
}

TEST(LossSparse, SigmoidOutputsFedAsLogitsHaveAFloor) {
  // torch/JAX behaviour of a sigmoid head with from_logits=True: values in (0,1) as logits.
  // The best case (1 at the target, 0 elsewhere) gives ln(1 + (C-1)/e) for C = 10.
  auto loss = SparseCategoricalCrossentropy(opts(true));
  const double floor = std::log(1.0 + 9.0 / std::exp(1.0));
  EXPECT_NEAR(floor, 1.46, 0.01);
  std::vector<float> best(10, 0.0f);
  best[3] = 1.0f;
  Case c{best, {3}, 1, 10};
  EXPECT_NEAR(loss_sum(*loss, c), floor, 1e-9);
  Case r{random_values(8 * 10, 0.0f, 1.0f, 3), {0, 1, 2, 3, 4, 5, 6, 7}, 8, 10};
  for (int64_t i = 0; i < r.batch; ++i) r.y_pred[i * 10 + static_cast<int64_t>(r.y_true[i])] = 0.999f;
  EXPECT_GT(loss_sum(*loss, r) / 8.0, floor);
}

TEST(LossSparse, HiddenLogitsOverrideFromLogitsFalse) {
  auto prob = SparseCategoricalCrossentropy(opts(false));
  auto logit = SparseCategoricalCrossentropy(opts(true));
  Case c{{3.0f, -1.0f, 0.5f}, {2}, 1, 3};
  EXPECT_DOUBLE_EQ(prob->sum_and_gradient(c.view(), true, nullptr, 1.0f), loss_sum(*logit, c));
}

TEST(LossSparse, LabelOutsideRangeThrowsNamingIt) {
  auto loss = SparseCategoricalCrossentropy(opts(true));
  for (float bad : {3.0f, -1.0f, 7.5f}) {
    Case c{{1, 2, 3}, {bad}, 1, 3};
    try {
      loss_sum(*loss, c);
      FAIL() << "no throw for " << bad;
    } catch (const std::invalid_argument& e) {
      std::string what = e.what();
      std::string text = bad == 3.0f ? "3" : bad == -1.0f ? "-1" : "7.5";
      EXPECT_NE(what.find(text), std::string::npos) << what;
    }
  }
  Case nan{{1, 2, 3}, {std::nanf("")}, 1, 3};
  EXPECT_THROW(loss_sum(*loss, nan), std::invalid_argument);
}

TEST(LossSparse, KerasDocExample) {
  // keras/src/losses/losses.py SparseCategoricalCrossentropy docstring: 1.177 (mean).
  auto loss = SparseCategoricalCrossentropy(opts(false));
  Case c{{0.05f, 0.95f, 0.0f, 0.1f, 0.8f, 0.1f}, {1, 2}, 2, 3};
  EXPECT_NEAR(loss_sum(*loss, c) / loss->reduction_divisor(2), 1.177, 1e-3);
}

// ---- CategoricalCrossentropy ----

TEST(LossCategorical, KerasDocExample) {
  // Docstring: per-sample [0.0513, 2.303], sum 2.354, mean 1.177.
  auto loss = CategoricalCrossentropy(opts(false));
  Case c{{0.05f, 0.95f, 0.0f, 0.1f, 0.8f, 0.1f}, {0, 1, 0, 0, 0, 1}, 2, 3};
  EXPECT_NEAR(loss_sum(*loss, c), 2.354, 1e-3);
  Case first{{0.05f, 0.95f, 0.0f}, {0, 1, 0}, 1, 3};
  EXPECT_NEAR(loss_sum(*loss, first), 0.0513, 1e-4);
}

TEST(LossCategorical, ProbabilitiesAreNormalisedFirst) {
  auto loss = CategoricalCrossentropy(opts(false));
  Case c{{1.0f, 3.0f}, {0, 1}, 1, 2};  // q = [0.25, 0.75]
  EXPECT_NEAR(loss_sum(*loss, c), -std::log(0.75), 1e-7);
}

TEST(LossCategorical, LogitsValueWithLabelSmoothing) {
  const float ls = 0.2f;
  auto loss = CategoricalCrossentropy(opts(true, ls));
  Case c{{1, 2, 3}, {0, 0, 1}, 1, 3};
  const double e = std::exp(1.0), lse = std::log(e + e * e + e * e * e);
  const double off = double(ls) / 3.0, on = 1.0 - double(ls) + off;
  const double expected = off * (lse - 1) + off * (lse - 2) + on * (lse - 3);
  EXPECT_NEAR(loss_sum(*loss, c), expected, 1e-7);
}

TEST(LossCategorical, GradientsMatchFiniteDifferences) {
  std::vector<float> onehot(3 * 4, 0.0f);
  onehot[0 * 4 + 2] = onehot[1 * 4 + 0] = onehot[2 * 4 + 3] = 1.0f;
  for (bool logits : {true, false}) {
    for (float ls : {0.0f, 0.1f}) {
      SCOPED_TRACE(std::string(logits ? "logits" : "probs") + " ls=" + std::to_string(ls));
      auto loss = CategoricalCrossentropy(opts(logits, ls));
      Case c{logits ? random_values(12, -2, 2, 4) : random_values(12, 0.1f, 0.9f, 5), onehot, 3, 4};
      expect_gradient_matches_fd(*loss, c);
    }
  }
}

TEST(LossCategorical, SoftLabelsGradientIsExact) {
  // Labels that do not sum to 1: the gradient is softmax * sum(y) - y, not softmax - y.
  auto loss = CategoricalCrossentropy(opts(true));
  Case c{{0.3f, -0.2f, 1.1f}, {0.5f, 0.25f, 0.75f}, 1, 3};
  expect_gradient_matches_fd(*loss, c);
}

// ---- BinaryCrossentropy ----

TEST(LossBinary, KerasDocExampleLogits) {
  // Docstring: per-sample [0.235, 1.496], sum 1.730, sum_over_batch_size 0.8654.
  auto loss = BinaryCrossentropy(opts(true));
  Case c{{-18.6f, 0.51f, 2.94f, -12.8f}, {0, 1, 0, 0}, 2, 2};
  const double sum = loss_sum(*loss, c);
  EXPECT_NEAR(sum, 1.730, 1e-3);
  EXPECT_NEAR(sum / loss->reduction_divisor(2), 0.8654, 1e-4);
  Case first{{-18.6f, 0.51f}, {0, 1}, 1, 2};
  EXPECT_NEAR(loss_sum(*loss, first), 0.235, 1e-3);
}

TEST(LossBinary, ProbabilityValueAndClip) {
  auto loss = BinaryCrossentropy(opts(false));
  Case c{{0.6f, 0.3f}, {1, 0}, 1, 2};
  EXPECT_NEAR(loss_sum(*loss, c), 0.5 * (-std::log(double(0.6f)) - std::log(1.0 - double(0.3f))), 1e-7);
  // p = 1 with y = 0 is clipped to 1 - 1e-7: finite loss, no gradient.
  Case sat{{1.0f}, {0}, 1, 1};
  const double hi = 1.0f - 1e-7f;
  EXPECT_NEAR(loss_sum(*loss, sat), -std::log(1.0 - hi), 1e-6);
  float g = 1.0f;
  loss->sum_and_gradient(sat.view(), false, &g, 1.0f);
  EXPECT_EQ(g, 0.0f);
}

TEST(LossBinary, LabelSmoothingTowardsHalf) {
  const float ls = 0.2f;
  auto loss = BinaryCrossentropy(opts(false, ls));
  Case c{{0.7f}, {1}, 1, 1};
  const double y = 1.0 - double(ls) + 0.5 * double(ls);  // 0.9
  const double p = 0.7f;
  EXPECT_NEAR(loss_sum(*loss, c), -(y * std::log(p) + (1 - y) * std::log(1 - p)), 1e-7);
}

TEST(LossBinary, GradientsMatchFiniteDifferences) {
  const std::vector<float> labels = {1, 0, 0, 1, 1, 0};
  for (bool logits : {true, false}) {
    for (float ls : {0.0f, 0.2f}) {
      SCOPED_TRACE(std::string(logits ? "logits" : "probs") + " ls=" + std::to_string(ls));
      auto loss = BinaryCrossentropy(opts(logits, ls));
      Case c{logits ? random_values(6, -4, 4, 6) : random_values(6, 0.05f, 0.95f, 7), labels, 2, 3};
      expect_gradient_matches_fd(*loss, c);
    }
  }
}

TEST(LossBinary, HiddenLogitsOverride) {
  auto prob = BinaryCrossentropy(opts(false));
  auto logit = BinaryCrossentropy(opts(true));
  Case c{{0.3f, -2.0f}, {1, 0}, 1, 2};
  EXPECT_DOUBLE_EQ(prob->sum_and_gradient(c.view(), true, nullptr, 1.0f), loss_sum(*logit, c));
}

// ---- MeanSquaredError ----

TEST(LossMse, ValueIsMeanOverWidth) {
  auto loss = MeanSquaredError();
  Case c{{1, 2, 3, 0}, {0, 0, 1, 1}, 2, 2};
  EXPECT_NEAR(loss_sum(*loss, c), (1 + 4) / 2.0 + (4 + 1) / 2.0, 1e-12);
  Case r{random_values(6, -1, 1, 8), random_values(6, -1, 1, 9), 3, 2};
  expect_gradient_matches_fd(*loss, r);
  // The logits flag means nothing for a regression loss.
  EXPECT_DOUBLE_EQ(loss->sum_and_gradient(c.view(), true, nullptr, 1.0f), loss_sum(*loss, c));
}

// ---- Reductions ----

TEST(LossReduction, Divisors) {
  EXPECT_EQ(SparseCategoricalCrossentropy(opts(true))->reduction_divisor(32), 32.0);
  EXPECT_EQ(SparseCategoricalCrossentropy(opts(true, 0, "mean"))->reduction_divisor(7), 7.0);
  EXPECT_EQ(SparseCategoricalCrossentropy(opts(true, 0, "sum"))->reduction_divisor(32), 1.0);
  EXPECT_EQ(SparseCategoricalCrossentropy(opts(true, 0, "none"))->reduction_divisor(32), 1.0);
  EXPECT_EQ(MeanSquaredError("sum")->reduction_divisor(5), 1.0);
  EXPECT_EQ(MeanSquaredError()->reduction_divisor(5), 5.0);
  // Reported (the loss tracker): "none" is averaged, the others as reduced.
  EXPECT_EQ(SparseCategoricalCrossentropy(opts(true, 0, "none"))->reported_divisor(32), 32.0);
  EXPECT_EQ(SparseCategoricalCrossentropy(opts(true, 0, "sum"))->reported_divisor(32), 1.0);
  EXPECT_EQ(MeanSquaredError()->reported_divisor(5), 5.0);
}

TEST(LossReduction, Strings) {
  for (auto r : {Reduction::kSumOverBatchSize, Reduction::kSum, Reduction::kMean, Reduction::kNone})
    EXPECT_EQ(reduction_from_string(to_string(r)), r);
  EXPECT_EQ(reduction_from_string("auto"), Reduction::kSumOverBatchSize);  // tf.keras configs
  try {
    reduction_from_string("average");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("average"), std::string::npos);
  }
  EXPECT_THROW(SparseCategoricalCrossentropy(opts(true, 0, "bogus")), std::invalid_argument);
}

TEST(LossReduction, GradScaleAndNullGradGiveSameSum) {
  auto loss = SparseCategoricalCrossentropy(opts(true));
  Case c{random_values(8, -1, 1, 10), {0, 3}, 2, 4};
  std::vector<float> g1(8), g2(8);
  const double s1 = loss->sum_and_gradient(c.view(), false, g1.data(), 1.0f);
  const double s2 = loss->sum_and_gradient(c.view(), false, g2.data(), 0.5f);
  EXPECT_EQ(s1, s2);
  EXPECT_EQ(s1, loss_sum(*loss, c));
  for (int k = 0; k < 8; ++k) EXPECT_FLOAT_EQ(g2[k], 0.5f * g1[k]);
}

// ---- Configs and JSON ----

TEST(LossConfig, MatchesKeras3Keys) {
  EXPECT_EQ(SparseCategoricalCrossentropy(opts(true))->get_config(),
            nlohmann::json::parse(R"({"name": "sparse_categorical_crossentropy",
              "reduction": "sum_over_batch_size", "from_logits": true, "ignore_class": null})"));
  EXPECT_EQ(CategoricalCrossentropy(opts(false, 0.1f))->get_config(),
            nlohmann::json({{"name", "categorical_crossentropy"}, {"reduction", "sum_over_batch_size"},
                            {"from_logits", false}, {"label_smoothing", 0.1}, {"axis", -1}}));
  EXPECT_EQ(BinaryCrossentropy()->get_config(),
            nlohmann::json::parse(R"({"name": "binary_crossentropy", "reduction": "sum_over_batch_size",
              "from_logits": false, "label_smoothing": 0.0, "axis": -1})"));
  EXPECT_EQ(MeanSquaredError()->get_config(),
            nlohmann::json::parse(R"({"name": "mean_squared_error", "reduction": "sum_over_batch_size"})"));
  EXPECT_EQ(SparseCategoricalCrossentropy()->class_name(), "SparseCategoricalCrossentropy");
  EXPECT_TRUE(SparseCategoricalCrossentropy()->sparse_labels());
  EXPECT_FALSE(CategoricalCrossentropy()->sparse_labels());
  EXPECT_TRUE(BinaryCrossentropy()->is_crossentropy());
  EXPECT_FALSE(MeanSquaredError()->is_crossentropy());
}

TEST(LossConfig, FromNames) {
  EXPECT_EQ(loss_from_json("sparse_categorical_crossentropy")->class_name(), "SparseCategoricalCrossentropy");
  EXPECT_FALSE(loss_from_json("sparse_categorical_crossentropy")->from_logits());
  EXPECT_EQ(loss_from_json("categorical_crossentropy")->class_name(), "CategoricalCrossentropy");
  EXPECT_EQ(loss_from_json("binary_crossentropy")->class_name(), "BinaryCrossentropy");
  EXPECT_EQ(loss_from_json("mse")->class_name(), "MeanSquaredError");
  EXPECT_EQ(loss_from_json("mean_squared_error")->class_name(), "MeanSquaredError");
  try {
    loss_from_json("hinge");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("hinge"), std::string::npos);
  }
}

TEST(LossConfig, FromSerializedObjects) {
  auto j = nlohmann::json::parse(R"({"module": "keras.losses", "class_name": "SparseCategoricalCrossentropy",
      "config": {"name": "my_loss", "reduction": "sum", "from_logits": true, "ignore_class": null},
      "registered_name": null})");
  auto loss = loss_from_json(j);
  EXPECT_TRUE(loss->from_logits());
  EXPECT_EQ(loss->reduction(), Reduction::kSum);
  EXPECT_EQ(loss->get_config()["name"], "my_loss");
  EXPECT_EQ(loss->get_config(), j["config"]);

  auto cce = loss_from_json(nlohmann::json::parse(
      R"({"class_name": "CategoricalCrossentropy", "config": {"from_logits": false, "label_smoothing": 0.1,
          "axis": -1, "reduction": "sum_over_batch_size", "name": "categorical_crossentropy"}})"));
  EXPECT_EQ(cce->get_config()["label_smoothing"].get<double>(), 0.1);

  // Keras 3 serializes a loss function passed by name this way.
  auto fn = loss_from_json(nlohmann::json::parse(R"({"module": "keras.losses", "class_name": "function",
      "config": "binary_crossentropy", "registered_name": "binary_crossentropy"})"));
  EXPECT_EQ(fn->class_name(), "BinaryCrossentropy");

  // Round trip through get_config for every loss.
  for (auto l : {SparseCategoricalCrossentropy(opts(true)), CategoricalCrossentropy(opts(false, 0.2f)),
                 BinaryCrossentropy(opts(true, 0.1f, "sum")), MeanSquaredError("mean")}) {
    auto back = loss_from_json({{"class_name", l->class_name()}, {"config", l->get_config()}});
    EXPECT_EQ(back->get_config(), l->get_config());
  }
}

TEST(LossConfig, RejectsWhatItCannotHonour) {
  EXPECT_THROW(loss_from_json(nlohmann::json::parse(
                   R"({"class_name": "SparseCategoricalCrossentropy", "config": {"ignore_class": 0}})")),
               std::invalid_argument);
  EXPECT_THROW(loss_from_json(nlohmann::json::parse(
                   R"({"class_name": "CategoricalCrossentropy", "config": {"axis": 1}})")),
               std::invalid_argument);
  EXPECT_THROW(loss_from_json(nlohmann::json::parse(
                   R"({"class_name": "BinaryCrossentropy", "config": {"focal": true}})")),
               std::invalid_argument);
  EXPECT_THROW(loss_from_json(nlohmann::json::parse(R"({"class_name": "Huber", "config": {}})")),
               std::invalid_argument);
  EXPECT_THROW(loss_from_json(42), std::invalid_argument);
}

}  // namespace
}  // namespace attn::losses
