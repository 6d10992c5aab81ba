// BatchNormalization against Keras 3 (keras/src/layers/normalization/batch_normalization.py):
// in training, the batch's per-channel mean and biased variance over every axis but `axis`
// (computed here in double), moving statistics moved by moving * momentum + batch * (1 -
// momentum); in inference, and whenever the layer is frozen, the moving statistics. Gradients by
// finite differences in both modes and for every channel axis; the batch statistics of a model
// trained on 2 threads are the whole batch's; the Keras config and weights read back; what is
// not supported is refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "gradient_check.hpp"
#include "reload_check.hpp"

namespace {

namespace L = attn::layers;
using attn::CallOptions;
using attn::Shape;
using attn::Tensor;

class BatchNormalization : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(3);
  }
};

std::vector<float> random_values(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& e : v) e = u(gen);
  return v;
}

// The layer's forward on x (batch samples), in training or inference mode.
std::vector<float> forward(attn::Layer& layer, const std::vector<float>& x, int64_t batch, bool training) {
  CallOptions call;
  std::vector<float> out(x.size(), std::nanf(""));
  std::vector<float> saved(std::max<int64_t>(1, batch * layer.saved_floats_per_sample(call)));
  std::vector<float> scratch(std::max<int64_t>(1, layer.scratch_floats(batch, call)));
  attn::ForwardContext f;
  f.batch = batch;
  f.training = training;
  f.call = &call;
  f.inputs = {x.data()};
  f.outputs = {out.data()};
  f.saved = saved.data();
  f.scratch = scratch.data();
  layer.forward(f);
  return out;
}

// Per channel of a [batch, outer, channels, inner] layout: mean and biased variance in double.
struct Moments {
  std::vector<double> mean, var;
};
Moments moments(const std::vector<float>& x, int64_t groups, int64_t channels, int64_t inner) {
  Moments m{std::vector<double>(channels), std::vector<double>(channels)};
  const double n = static_cast<double>(groups * inner);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < inner; ++i) m.mean[c] += x[(g * channels + c) * inner + i] / n;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < inner; ++i) {
        const double d = x[(g * channels + c) * inner + i] - m.mean[c];
        m.var[c] += d * d / n;
      }
  return m;
}

struct Layout {
  Shape shape;  // per sample
  int64_t axis;
  int64_t outer, channels, inner;
};

const std::vector<Layout>& layouts() {
  static const std::vector<Layout> l = {
      {{3, 4}, -1, 3, 4, 1},     // channels last
      {{4, 3, 2}, 1, 1, 4, 6},   // channels first
      {{2, 3, 5}, 2, 2, 3, 5},   // a middle axis
      {{5}, -1, 1, 5, 1},        // features of a Dense output
      {{2, 2, 3}, -1, 4, 3, 1},  // a feature map, channels last
  };
  return l;
}

TEST_F(BatchNormalization, TrainingNormalizesWithTheBatchAndMovesTheAverages) {
  for (const Layout& lay : layouts()) {
    SCOPED_TRACE("shape " + attn::shape_to_string(lay.shape) + ", axis " + std::to_string(lay.axis));
    attn::clear_session();
    auto layer = std::make_shared<L::BatchNormalizationLayer>(
        L::BatchNormalizationOptions{.axis = lay.axis, .momentum = 0.9, .epsilon = 0.01});
    layer->call({attn::Input(lay.shape)});
    ASSERT_EQ(layer->weights().size(), 4u);
    const char* names[] = {"gamma", "beta", "moving_mean", "moving_variance"};  // Keras' order
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_EQ(layer->weights()[i].name, names[i]);
      EXPECT_EQ(layer->weights()[i].shape, Shape{lay.channels});
      EXPECT_EQ(layer->weights()[i].trainable, i < 2);
      EXPECT_EQ(layer->weights()[i].value[0], i == 0 || i == 3 ? 1.0f : 0.0f);  // Keras' initializers
    }
    auto& w = layer->weights();
    const auto gamma = random_values(lay.channels, 1, 0.5f, 2.0f), beta = random_values(lay.channels, 2, -1.0f, 1.0f);
    const auto moving_mean = random_values(lay.channels, 3, -1.0f, 1.0f);
    const auto moving_var = random_values(lay.channels, 4, 0.5f, 2.0f);
    for (int64_t c = 0; c < lay.channels; ++c) {
      w[0].value[c] = gamma[c];
      w[1].value[c] = beta[c];
      w[2].value[c] = moving_mean[c];
      w[3].value[c] = moving_var[c];
    }
    const int64_t batch = 5;
    auto x = random_values(batch * attn::shape_size(lay.shape), 5, -3.0f, 5.0f);
    const Moments m = moments(x, batch * lay.outer, lay.channels, lay.inner);
    const auto y = forward(*layer, x, batch, true);
    for (int64_t g = 0; g < batch * lay.outer; ++g)
      for (int64_t c = 0; c < lay.channels; ++c)
        for (int64_t i = 0; i < lay.inner; ++i) {
          const int64_t e = (g * lay.channels + c) * lay.inner + i;
          const double want = (x[e] - m.mean[c]) / std::sqrt(m.var[c] + 0.01) * gamma[c] + beta[c];
          ASSERT_NEAR(y[e], want, 3e-6 * (1 + std::fabs(want))) << "element " << e;
        }
    for (int64_t c = 0; c < lay.channels; ++c) {
      EXPECT_NEAR(w[2].value[c], 0.9 * moving_mean[c] + 0.1 * m.mean[c], 1e-6) << "moving mean " << c;
      EXPECT_NEAR(w[3].value[c], 0.9 * moving_var[c] + 0.1 * m.var[c], 1e-5) << "moving variance " << c;
    }
    // Inference: the moving statistics as they are now; they do not move.
    const std::vector<float> mean_now(w[2].value.data(), w[2].value.data() + lay.channels);
    const std::vector<float> var_now(w[3].value.data(), w[3].value.data() + lay.channels);
    const auto z = forward(*layer, x, batch, false);
    for (int64_t g = 0; g < batch * lay.outer; ++g)
      for (int64_t c = 0; c < lay.channels; ++c)
        for (int64_t i = 0; i < lay.inner; ++i) {
          const int64_t e = (g * lay.channels + c) * lay.inner + i;
          const double want = (x[e] - double(mean_now[c])) / std::sqrt(double(var_now[c]) + 0.01) * gamma[c] + beta[c];
          ASSERT_NEAR(z[e], want, 3e-6 * (1 + std::fabs(want))) << "element " << e;
        }
    for (int64_t c = 0; c < lay.channels; ++c) {
      EXPECT_EQ(w[2].value[c], mean_now[c]);
      EXPECT_EQ(w[3].value[c], var_now[c]);
    }
  }
}

// Inputs far from zero with a small spread: the variance must not drown in cancellation (the
// sums are taken about a value of the data), and a constant channel gives beta.
TEST_F(BatchNormalization, LargeOffsetsAndConstantChannels) {
  auto layer = std::make_shared<L::BatchNormalizationLayer>(L::BatchNormalizationOptions{.momentum = 0.0});
  layer->call({attn::Input({2})});
  auto& w = layer->weights();
  w[1].value[0] = 0.25f;
  w[1].value[1] = -0.5f;
  const int64_t batch = 64;
  std::vector<float> x(batch * 2);
  std::mt19937 gen(8);
  std::normal_distribution<float> spread(0.0f, 0.05f);
  for (int64_t s = 0; s < batch; ++s) {
    x[2 * s] = 1000.0f + spread(gen);
    x[2 * s + 1] = 7.0f;
  }
  const auto y = forward(*layer, x, batch, true);
  const Moments m = moments(x, batch, 2, 1);
  for (int64_t s = 0; s < batch; ++s) {
    const double want = (x[2 * s] - m.mean[0]) / std::sqrt(m.var[0] + 1e-3) + 0.25;
    EXPECT_NEAR(y[2 * s], want, 2e-3) << s;
    EXPECT_EQ(y[2 * s + 1], -0.5f) << s;
  }
  EXPECT_NEAR(w[3].value[0], m.var[0], 1e-3 * m.var[0]);
  EXPECT_EQ(w[3].value[1], 0.0f);
}

TEST_F(BatchNormalization, GradientsInBothModesOnEveryAxis) {
  for (const Layout& lay : layouts())
    for (bool training : {true, false})
      for (const auto& [scale, center] : {std::pair{true, true}, {true, false}, {false, true}, {false, false}}) {
        SCOPED_TRACE("shape " + attn::shape_to_string(lay.shape) + ", axis " + std::to_string(lay.axis) +
                     (training ? ", training" : ", inference") + ", scale " + (scale ? "on" : "off") +
                     ", center " + (center ? "on" : "off"));
        attn::clear_session();
        attn::testing::GradCheck g;
        g.layer = std::make_shared<L::BatchNormalizationLayer>(
            L::BatchNormalizationOptions{.axis = lay.axis, .center = center, .scale = scale});
        g.input_shapes = {lay.shape};
        g.batch = 3;
        g.training = training;
        g.set_weight = [](attn::Weight& w) {
          if (w.name == "moving_variance")
            for (int64_t i = 0; i < w.value.size(); ++i) w.value[i] = 0.5f + std::fabs(w.value[i]);
        };
        attn::testing::check_layer_gradients(g);
        EXPECT_EQ(g.layer->weights().size(), 2u + scale + center);
      }
}

// momentum 0 leaves the last batch's statistics in the moving ones: on 2 and 3 threads (a team,
// each thread summing its slice) and with a batch smaller than the threads (one thread runs it)
// they must be the whole batch's, for a channel far from zero too.
TEST_F(BatchNormalization, ModelTrainingUsesTheWholeBatchOnEveryThreadCount) {
  for (int threads : {1, 2, 3})
    for (int64_t batch : {1, 2, 7, 40}) {
      SCOPED_TRACE(std::to_string(threads) + " threads, batch " + std::to_string(batch));
      attn::clear_session();
      auto in = attn::Input({3, 4});
      L::BatchNormalization bn({.momentum = 0.0});
      auto model = attn::Model(in, L::Dense(2)(L::Flatten()(bn(in))));
      model.set_threads(threads);
      model.compile(attn::optimizers::SGD({.learning_rate = 0.1f}),
                    attn::losses::SparseCategoricalCrossentropy({.from_logits = true}), {}, {.warn = false});
      auto values = random_values(batch * 12, static_cast<uint32_t>(batch), -2.0f, 3.0f);
      for (int64_t i = 0; i < batch * 3; ++i) values[i * 4] += 1000.0f;  // channel 0 far from zero
      Tensor x({batch, 3, 4}), y({batch});
      for (int64_t i = 0; i < x.size(); ++i) x[i] = values[i];
      for (int64_t i = 0; i < batch; ++i) y[i] = static_cast<float>(i % 2);
      model.train_on_batch({x}, y);
      const Moments m = moments(values, batch * 3, 4, 1);
      const auto& w = bn->weights();
      for (int64_t c = 0; c < 4; ++c) {
        EXPECT_NEAR(w[2].value[c], m.mean[c], 1e-6 * (1 + std::fabs(m.mean[c]))) << "moving mean " << c;
        EXPECT_NEAR(w[3].value[c], m.var[c], 1e-5 * (1 + m.var[c])) << "moving variance " << c;
      }
    }
}

// Keras 3: a frozen BatchNormalization runs in inference mode, and nothing of it changes.
TEST_F(BatchNormalization, FrozenLayerUsesTheMovingStatisticsInFit) {
  auto in = attn::Input({4});
  L::BatchNormalization bn;
  auto h = bn(L::Dense(4)(in));
  auto model = attn::Model(in, L::Dense(2)(h));
  bn->set_trainable(false);
  model.set_threads(2);
  model.compile(attn::optimizers::SGD({.learning_rate = 0.5f}),
                attn::losses::SparseCategoricalCrossentropy({.from_logits = true}), {}, {.warn = false});
  EXPECT_EQ(model.count_params(), 20 + 16 + 10);
  EXPECT_EQ(model.count_trainable_params(), 20 + 10);
  for (attn::Weight& w : bn->weights())
    for (int64_t c = 0; c < 4; ++c) w.value[c] = 0.5f + 0.25f * static_cast<float>(c);
  std::vector<std::vector<float>> frozen;  // copies (a Weight's value is a view)
  for (const attn::Weight& w : bn->weights()) frozen.emplace_back(w.value.data(), w.value.data() + 4);
  Tensor x({8, 4}), y({8});
  const auto values = random_values(32, 9, -1.0f, 1.0f);
  for (int64_t i = 0; i < 32; ++i) x[i] = values[i];
  for (int64_t i = 0; i < 8; ++i) y[i] = static_cast<float>(i % 2);
  const auto before = model.get_weights_flat();
  model.train_on_batch({x}, y);
  const auto after = model.get_weights_flat();
  for (size_t i = 0; i < 4; ++i)
    for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(bn->weights()[i].value[c], frozen[i][c]) << bn->weights()[i].name;
  EXPECT_NE(before, after) << "the Dense layers around it still train";
}

// Unfrozen after compile, the layer trains with batch statistics at once (Keras would wait for
// the next compile): the run is planned again, so they are still the whole batch's on 2 threads.
TEST_F(BatchNormalization, UnfreezingReplansTheRun) {
  auto in = attn::Input({3});
  L::BatchNormalization bn({.momentum = 0.0});
  auto model = attn::Model(in, L::Dense(2)(bn(in)));
  bn->set_trainable(false);
  model.set_threads(2);
  model.compile(attn::optimizers::SGD(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}), {},
                {.warn = false});
  Tensor x({10, 3}), y({10});
  const auto values = random_values(30, 12, -1.0f, 4.0f);
  for (int64_t i = 0; i < 30; ++i) x[i] = values[i];
  for (int64_t i = 0; i < 10; ++i) y[i] = static_cast<float>(i % 2);
  model.train_on_batch({x}, y);
  EXPECT_EQ(bn->weights()[2].value[0], 0.0f) << "frozen: the moving mean stays";
  bn->set_trainable(true);
  model.train_on_batch({x}, y);
  const Moments m = moments(values, 10, 3, 1);
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_NEAR(bn->weights()[2].value[c], m.mean[c], 1e-6 * (1 + std::fabs(m.mean[c]))) << "moving mean " << c;
    EXPECT_NEAR(bn->weights()[3].value[c], m.var[c], 1e-5 * (1 + m.var[c])) << "moving variance " << c;
  }
}

TEST_F(BatchNormalization, KerasConfigAndSummary) {
  auto layer = std::make_shared<L::BatchNormalizationLayer>(L::BatchNormalizationOptions{.axis = 1, .center = false});
  auto in = attn::Input({6, 5});
  auto model = attn::Model(in, attn::LayerHandle<L::BatchNormalizationLayer>(layer)(in));
  const auto c = layer->get_config();
  EXPECT_EQ(c.at("axis"), 1);
  EXPECT_EQ(c.at("momentum"), 0.99);
  EXPECT_EQ(c.at("epsilon"), 0.001);
  EXPECT_EQ(c.at("center"), false);
  EXPECT_EQ(c.at("scale"), true);
  EXPECT_EQ(c.at("gamma_initializer").at("class_name"), "Ones");
  EXPECT_EQ(c.at("moving_variance_initializer").at("class_name"), "Ones");
  EXPECT_EQ(c.at("moving_mean_initializer").at("class_name"), "Zeros");
  EXPECT_EQ(c.at("synchronized"), false);
  EXPECT_TRUE(c.at("gamma_regularizer").is_null());
  // Keras' summary: gamma, moving mean and variance of 6 channels; 6 trainable, 12 not.
  const std::string s = model.summary();
  EXPECT_NE(s.find("Trainable params: 6 "), std::string::npos) << s;
  EXPECT_NE(s.find("Non-trainable params: 12 "), std::string::npos) << s;
}

// Trained weights and moving statistics read back from .keras and .h5: the same predictions.
TEST_F(BatchNormalization, TrainedModelReadsBack) {
  auto in = attn::Input({4, 4, 2});
  auto h = L::BatchNormalization({.axis = -1})(L::Conv2D(3, 3, {.padding = "same"})(in));
  h = L::BatchNormalization({.axis = 1, .momentum = 0.5})(h);
  auto model = attn::Model(in, L::Dense(3)(L::Flatten()(h)));
  model.set_threads(2);
  model.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}), {},
                {.warn = false});
  Tensor x({24, 4, 4, 2}), y({24});
  const auto values = random_values(x.size(), 10, -1.0f, 2.0f);
  for (int64_t i = 0; i < x.size(); ++i) x[i] = values[i];
  for (int64_t i = 0; i < 24; ++i) y[i] = static_cast<float>(i % 3);
  model.fit(x, y, {.epochs = 2, .batch_size = 8, .verbose = 0});
  attn::testing::expect_same_predictions_after_reload(model, x);
}

// Keras' configs: what attn does not implement is refused by name.
TEST_F(BatchNormalization, UnsupportedOptionsAreRefused) {
  const auto expect_refused = [](const std::function<void()>& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "accepted; expected an error naming " << needle;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_refused([] { L::BatchNormalization({.axis = 0})(attn::Input({3})); }, "axis 0");
  expect_refused([] { L::BatchNormalization({.axis = 3})(attn::Input({3, 2})); }, "axis 3");
  expect_refused([] { L::BatchNormalization({.epsilon = 0.0}); }, "epsilon");
  expect_refused([] { L::BatchNormalization()(attn::Input({3}), {.training = true}); }, "training=True");
  expect_refused(
      [] {
        auto ids = attn::Input({5});
        L::BatchNormalization()(L::Embedding(9, 4, {.mask_zero = true})(ids));
      },
      "mask");
  EXPECT_NO_THROW(L::BatchNormalization()(attn::Input({3}), {.training = false}));

  const auto config_with = [](const std::string& extra) {
    return nlohmann::json::parse(
        R"({"class_name": "Sequential", "config": {"name": "s", "layers": [)"
        R"({"class_name": "InputLayer", "config": {"batch_shape": [null, 4], "name": "in"}},)"
        R"({"class_name": "BatchNormalization", "config": {"name": "bn")" + extra + "}}]}}");
  };
  EXPECT_NO_THROW(attn::io::model_from_config(config_with(R"(, "axis": [1], "fused": true, "momentum": 0.9)")));
  expect_refused([&] { attn::io::model_from_config(config_with(R"(, "renorm": true)")); }, "'renorm'");
  expect_refused([&] { attn::io::model_from_config(config_with(R"(, "gamma_regularizer": {"class_name": "L2"})")); },
                 "'gamma_regularizer'");
  expect_refused([&] { attn::io::model_from_config(config_with(R"(, "axis": [1, 2])")); }, "'axis'");
  expect_refused([&] { attn::io::model_from_config(config_with(R"(, "virtual_batch_size": 4)")); }, "'virtual_batch_size'");
}

}  // namespace
