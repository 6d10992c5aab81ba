// Keras' activation layers with arguments (keras/src/layers/activations/): ReLU with max_value,
// negative_slope and threshold, LeakyReLU, ELU and Softmax, against their definitions worked out
// here; derivatives on both sides of every kink; finite differences through the layers; Keras'
// configs (tf.keras' alpha for LeakyReLU too) and refusals; a Softmax output feeding a cross-entropy
// its logits, as Keras on TensorFlow does.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "gradient_check.hpp"
#include "layer_once.hpp"
#include "reload_check.hpp"

namespace {

namespace L = attn::layers;
using attn::Shape;
using attn::Tensor;

class ActivationLayers : public ::testing::Test {
 protected:
  void SetUp() override { attn::clear_session(); }
};

const std::vector<float> kPoints = {-4.0f, -1.5f, -0.7f, -0.2f, 0.3f, 0.9f, 1.6f, 2.4f, 3.5f, 7.0f};

// Values and derivatives of a built element-wise layer at kPoints against f and df.
void expect_matches(attn::Layer& layer, const std::function<double(double)>& f, const std::function<double(double)>& df) {
  layer.call({attn::Input({static_cast<int64_t>(kPoints.size())})});
  const std::vector<float> dy(kPoints.size(), 1.0f);
  const auto r = attn::testing::run_layer_once(layer, kPoints, 1, kPoints.size(), dy);
  for (size_t i = 0; i < kPoints.size(); ++i) {
    EXPECT_NEAR(r.y[i], f(kPoints[i]), 1e-6 * (1 + std::fabs(f(kPoints[i])))) << layer.name() << "(" << kPoints[i] << ")";
    EXPECT_NEAR(r.dx[i], df(kPoints[i]), 1e-6 * (1 + std::fabs(df(kPoints[i])))) << layer.name() << "'(" << kPoints[i] << ")";
  }
}

TEST_F(ActivationLayers, MatchKerasDefinitions) {
  // ReLU(max_value=2, negative_slope=0.1, threshold=0.5): kinks at 0.5 and 2.
  auto capped = std::make_shared<L::ReLULayer>(L::ReLUOptions{.max_value = 2.0, .negative_slope = 0.1, .threshold = 0.5});
  expect_matches(
      *capped, [](double x) { return x < 0.5 ? 0.1 * (x - 0.5) : std::min(x, 2.0); },
      [](double x) { return x < 0.5 ? 0.1 : x < 2.0 ? 1.0 : 0.0; });
  auto plain = std::make_shared<L::ReLULayer>();
  expect_matches(*plain, [](double x) { return std::max(x, 0.0); }, [](double x) { return x > 0 ? 1.0 : 0.0; });
  EXPECT_EQ(capped->name(), "re_lu");  // Keras' snake_case of the class name
  auto leaky = std::make_shared<L::LeakyReLULayer>();  // the layer's default slope: 0.3
  expect_matches(*leaky, [](double x) { return x < 0 ? 0.3 * x : x; }, [](double x) { return x < 0 ? 0.3 : 1.0; });
  EXPECT_EQ(leaky->name(), "leaky_re_lu");
  auto elu = std::make_shared<L::ELULayer>(0.5);
  expect_matches(
      *elu, [](double x) { return x > 0 ? x : 0.5 * (std::exp(x) - 1); },
      [](double x) { return x > 0 ? 1.0 : 0.5 * std::exp(x); });
}

// The layers run their element rule in loops the compiler vectorizes: against the rule applied
// one element at a time (value(), derivative()), bit for bit, on random values mixed with the
// kinks, signed zeros, infinities, NaN and subnormals, over sizes that leave vector remainders.
TEST_F(ActivationLayers, BufferLoopsMatchTheScalarRuleOnEveryElement) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> specials = {0.0f, -0.0f, 0.5f, 2.0f, inf, -inf, nan, 1e-40f, -1e-40f, 6.0f, -6.0f};
  std::mt19937 gen(17);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  const auto same = [](float a, float b) {
    return (std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b));
  };
  const auto check = [&](const auto& make) {
    for (int64_t width : {1, 3, 7, 17, 64, 1001}) {
      attn::clear_session();
      const auto layer_ptr = make();
      auto& layer = *layer_ptr;
      const auto& concrete = *layer_ptr;
      SCOPED_TRACE(layer.class_name() + " over " + std::to_string(width));
      layer.call({attn::Input({width})});
      const int64_t batch = 3;
      std::vector<float> x(batch * width), dy(x.size());
      for (size_t i = 0; i < x.size(); ++i) {
        x[i] = gen() % 4 == 0 ? specials[gen() % specials.size()] : normal(gen);
        dy[i] = normal(gen);
      }
      const auto r = attn::testing::run_layer_once(layer, x, batch, x.size(), dy);
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_TRUE(same(r.y[i], concrete.value(x[i]))) << "value(" << x[i] << ") = " << r.y[i];
        ASSERT_TRUE(same(r.dx[i], 0.0f + dy[i] * concrete.derivative(x[i]))) << "derivative at " << x[i];
      }
    }
  };
  // Each layer is built anew per width (clear_session), so each check gets a fresh one.
  const auto plain_layer = [] { return std::make_shared<L::ReLULayer>(); };
  const auto capped_layer = [] {
    return std::make_shared<L::ReLULayer>(L::ReLUOptions{.max_value = 2.0, .negative_slope = 0.1, .threshold = 0.5});
  };
  const auto leaky_layer = [] { return std::make_shared<L::LeakyReLULayer>(0.1); };
  const auto elu_layer = [] { return std::make_shared<L::ELULayer>(0.5); };
  check(plain_layer);
  check(capped_layer);
  check(leaky_layer);
  check(elu_layer);
  const auto plain_kept = plain_layer(), capped_kept = capped_layer();
  const auto leaky_kept = leaky_layer();
  const auto elu_kept = elu_layer();
  const L::ReLULayer &plain = *plain_kept, &capped = *capped_kept;
  const L::LeakyReLULayer& leaky = *leaky_kept;
  const L::ELULayer& elu = *elu_kept;
  // The special values themselves, from Keras' definitions: relu(-inf) = 0, relu(inf) = inf, NaN
  // stays NaN; leaky_relu(-inf) = -inf.
  EXPECT_EQ(plain.value(-inf), 0.0f);
  EXPECT_EQ(plain.value(inf), inf);
  EXPECT_TRUE(std::isnan(plain.value(nan)));
  EXPECT_EQ(capped.value(inf), 2.0f);
  EXPECT_EQ(capped.value(-inf), -inf);
  EXPECT_EQ(capped.value(0.5f), 0.0f);
  EXPECT_EQ(leaky.value(-inf), -inf);
  EXPECT_TRUE(std::isnan(leaky.value(nan)));
  EXPECT_EQ(elu.value(-inf), -0.5f);
}

TEST_F(ActivationLayers, GradientsByFiniteDifferences) {
  const std::vector<std::shared_ptr<attn::Layer>> layers = {
      std::make_shared<L::ReLULayer>(L::ReLUOptions{.negative_slope = 0.2}),
      std::make_shared<L::LeakyReLULayer>(0.1),
      std::make_shared<L::ELULayer>(1.3),
      std::make_shared<L::SoftmaxLayer>(),
  };
  for (const auto& layer : layers) {
    SCOPED_TRACE(layer->class_name());
    attn::testing::GradCheck g;
    g.layer = layer;
    g.input_shapes = {{3, 5}};
    g.min_abs_input = 0.05f;  // the kinks at 0 stay out of the step
    attn::testing::check_layer_gradients(g);
  }
}

TEST_F(ActivationLayers, ConfigsAndRefusals) {
  L::ReLULayer relu({.max_value = 6.0, .negative_slope = 0.0, .threshold = 1.0});
  EXPECT_EQ(relu.get_config().at("max_value"), 6.0);
  EXPECT_EQ(relu.get_config().at("threshold"), 1.0);
  EXPECT_TRUE(L::ReLULayer().get_config().at("max_value").is_null());
  EXPECT_EQ(L::LeakyReLULayer(0.25).get_config().at("negative_slope"), 0.25);
  EXPECT_EQ(L::ELULayer(2.0).get_config().at("alpha"), 2.0);
  EXPECT_THROW(L::ReLULayer({.max_value = -1.0}), std::invalid_argument);  // as Keras
  EXPECT_THROW(L::ReLULayer({.threshold = -0.5}), std::invalid_argument);
  EXPECT_THROW(L::LeakyReLULayer(-0.1), std::invalid_argument);
  EXPECT_THROW(L::Softmax(1)(attn::Input({3, 4})), std::invalid_argument);  // not the last axis
  EXPECT_NO_THROW(L::Softmax(2)(attn::Input({3, 4})));
  EXPECT_THROW(L::Softmax()(L::Embedding(5, 3, {.mask_zero = true})(attn::Input({4}))), std::invalid_argument);
  // tf.keras 2 wrote LeakyReLU's slope as alpha.
  const auto model_with = [](const std::string& layer) {
    return attn::io::model_from_config(nlohmann::json::parse(
        R"({"class_name": "Sequential", "config": {"name": "s", "layers": [)"
        R"({"class_name": "InputLayer", "config": {"batch_shape": [null, 3], "name": "in"}},)" +
        layer + "]}}"));
  };
  auto tf_keras = model_with(R"({"class_name": "LeakyReLU", "config": {"name": "l", "alpha": 0.125}})");
  EXPECT_EQ(tf_keras.get_layer("l")->get_config().at("negative_slope"), 0.125);
  try {
    model_with(R"({"class_name": "ReLU", "config": {"name": "r", "max_value": -2.0}})");
    FAIL() << "a negative max_value was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("'max_value'"), std::string::npos) << e.what();
  }
}

// A Softmax layer at the output hands the cross-entropy its logits (Keras on TensorFlow): the
// same loss and training as Dense(..., activation="softmax"), and the model reads back.
TEST_F(ActivationLayers, SoftmaxOutputTrainsLikeTheSoftmaxActivation) {
  Tensor x({40, 4}), y({40});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = std::sin(1.3f * static_cast<float>(i));
  for (int64_t i = 0; i < 40; ++i) y[i] = static_cast<float>(i % 3);
  std::vector<std::vector<float>> weights;
  std::vector<double> losses;
  for (bool layer : {true, false}) {
    attn::clear_session();
    attn::set_random_seed(4);
    auto in = attn::Input({4});
    auto h = L::ELU()(L::LeakyReLU()(L::ReLU({.negative_slope = 0.05})(L::Dense(6)(in))));
    auto out = layer ? L::Softmax()(L::Dense(3)(h)) : L::Dense(3, {.activation = "softmax"})(h);
    attn::Model model(in, out);
    model.compile(attn::optimizers::SGD({.learning_rate = 0.1f}), attn::losses::SparseCategoricalCrossentropy(), {},
                  {.warn = false});
    const auto history = model.fit(x, y, {.epochs = 3, .batch_size = 8, .verbose = 0});
    losses.push_back(history.history.at("loss").back());
    weights.push_back(model.get_weights_flat());
    if (layer) attn::testing::expect_same_predictions_after_reload(model, x);
  }
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_EQ(weights[0], weights[1]);
}

}  // namespace
