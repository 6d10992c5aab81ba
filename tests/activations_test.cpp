// The activation kernels against Keras' definitions (keras/src/activations/activations.py),
// worked out here in double, over a range that crosses every kink and saturation; their
// derivatives against central differences of those definitions; the names Keras writes. And
// activations pass NaN through, as TensorFlow and JAX do: relu(NaN) is NaN, not 0, so a model
// whose weights have diverged reports a NaN loss (and TerminateOnNaN stops it) instead of
// training on looking healthy.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "kernels/activations.hpp"
#include "reload_check.hpp"

namespace {
using attn::kernels::Activation;

// Every element-wise activation with Keras' definition in double.
const std::map<std::string, std::function<double(double)>>& keras_definitions() {
  static const std::map<std::string, std::function<double(double)>> d = {
      {"linear", [](double x) { return x; }},
      {"relu", [](double x) { return std::max(x, 0.0); }},
      {"sigmoid", [](double x) { return 1.0 / (1.0 + std::exp(-x)); }},
      {"tanh", [](double x) { return std::tanh(x); }},
      {"gelu", [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }},
      {"elu", [](double x) { return x > 0 ? x : std::exp(x) - 1.0; }},
      {"selu", [](double x) { return 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * (std::exp(x) - 1.0)); }},
      {"softplus", [](double x) { return std::log(std::exp(x) + 1.0); }},
      {"softsign", [](double x) { return x / (std::fabs(x) + 1.0); }},
      {"silu", [](double x) { return x / (1.0 + std::exp(-x)); }},
      {"leaky_relu", [](double x) { return x > 0 ? x : 0.2 * x; }},
      {"relu6", [](double x) { return std::min(std::max(x, 0.0), 6.0); }},
      {"hard_sigmoid", [](double x) { return x <= -3 ? 0.0 : x >= 3 ? 1.0 : x / 6.0 + 0.5; }},
      {"hard_silu", [](double x) { return x < -3 ? 0.0 : x > 3 ? x : x * (x + 3.0) / 6.0; }},
      {"exponential", [](double x) { return std::exp(x); }},
      {"mish", [](double x) { return x * std::tanh(std::log(std::exp(x) + 1.0)); }},
  };
  return d;
}

// Points on both sides of every kink (0, +-3, 6) and into the saturated tails.
const std::vector<double> kPoints = {-9.0, -4.5, -3.2, -2.9, -1.3, -0.4, -0.05, 0.07, 0.6, 1.9, 2.95, 3.3, 5.2, 6.4, 8.8};

TEST(Activations, ElementwiseMatchKerasDefinitions) {
  for (const auto& [name, f] : keras_definitions()) {
    const Activation a = attn::kernels::activation_from_string(name);
    EXPECT_EQ(attn::kernels::to_string(a), name);
    std::vector<float> x(kPoints.begin(), kPoints.end()), y(x.size());
    attn::kernels::activation_forward(a, x.data(), y.data(), 1, static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      const double want = f(x[i]);
      EXPECT_NEAR(y[i], want, 2e-6 * (1 + std::fabs(want))) << name << "(" << x[i] << ")";
    }
    // The derivative: central differences of the definition in double, away from the kinks.
    std::vector<float> dy(x.size(), 1.0f), dx(x.size(), 0.5f);
    attn::kernels::activation_backward(a, x.data(), y.data(), dy.data(), dx.data(), 1, static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      const double h = 1e-5, want = (f(x[i] + h) - f(x[i] - h)) / (2 * h);
      EXPECT_NEAR(dx[i] - 0.5f, want, 2e-5 * (1 + std::fabs(want))) << name << "'(" << x[i] << ") (backward adds)";
    }
  }
}

TEST(Activations, LogSoftmaxPerRowAndItsGradient) {
  const Activation a = attn::kernels::activation_from_string("log_softmax");
  const std::vector<float> x = {0.5f, -2.0f, 3.0f, 1.0f, 40.0f, 41.0f, -3.0f, 0.0f};  // two rows of 4
  std::vector<float> y(8);
  attn::kernels::activation_forward(a, x.data(), y.data(), 2, 4);
  const auto log_softmax = [](const std::vector<double>& row) {
    double m = row[0], s = 0;
    for (double v : row) m = std::max(m, v);
    for (double v : row) s += std::exp(v - m);
    std::vector<double> out;
    for (double v : row) out.push_back(v - m - std::log(s));
    return out;
  };
  const std::vector<float> dy = {0.3f, -1.0f, 0.25f, 2.0f, -0.5f, 1.5f, 0.75f, -0.125f};
  std::vector<float> dx(8, 0.0f);
  attn::kernels::activation_backward(a, x.data(), y.data(), dy.data(), dx.data(), 2, 4);
  for (int r = 0; r < 2; ++r) {
    std::vector<double> row(x.begin() + 4 * r, x.begin() + 4 * r + 4);
    const auto want = log_softmax(row);
    for (int j = 0; j < 4; ++j) {
      EXPECT_NEAR(y[4 * r + j], want[j], 2e-6 * (1 + std::fabs(want[j]))) << r << "," << j;
      // d/dx_j of sum_k dy_k log_softmax(x)_k, by central differences in double.
      auto up = row, down = row;
      up[j] += 1e-5;
      down[j] -= 1e-5;
      double g = 0;
      const auto lu = log_softmax(up), ld = log_softmax(down);
      for (int k = 0; k < 4; ++k) g += dy[4 * r + k] * (lu[k] - ld[k]) / 2e-5;
      EXPECT_NEAR(dx[4 * r + j], g, 1e-4 * (1 + std::fabs(g))) << r << "," << j;
    }
  }
}

TEST(Activations, KerasAliasesAndUnknownNames) {
  EXPECT_EQ(attn::kernels::to_string(attn::kernels::activation_from_string("swish")), "silu");
  EXPECT_EQ(attn::kernels::to_string(attn::kernels::activation_from_string("hard_swish")), "hard_silu");
  try {
    attn::kernels::activation_from_string("sparsemax");
    FAIL() << "an unknown activation was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'sparsemax'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("mish"), std::string::npos) << e.what();  // lists what is supported
  }
}

// The new activations through layers: Dense, Conv1D and Activation configs name them as Keras
// does, and the model reads back with the same predictions.
TEST(Activations, ModelWithThemReadsBack) {
  namespace L = attn::layers;
  attn::clear_session();
  auto in = attn::Input({6, 3});
  auto h = L::Conv1D(4, 2, {.activation = "swish"})(in);
  h = L::Dense(5, {.activation = "mish"})(h);
  h = L::Activation("hard_silu")(L::Dense(4, {.activation = "selu"})(h));
  auto out = L::Dense(3, {.activation = "log_softmax"})(L::Flatten()(h));
  attn::Model model(in, out);
  EXPECT_EQ(model.get_layer("conv1d")->get_config().at("activation"), "silu");
  attn::Tensor x({5, 6, 3});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.7f * static_cast<float>(i));
  const attn::Tensor p = model.predict(x);
  for (int64_t s = 0; s < 5; ++s) {  // log-probabilities: their exps sum to 1 per sample
    double total = 0;
    for (int j = 0; j < 3; ++j) total += std::exp(p.data()[3 * s + j]);
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
  attn::testing::expect_same_predictions_after_reload(model, x);
}

TEST(Activations, NaNPassesThroughEveryActivation) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<Activation> all = {Activation::kSoftmax, Activation::kLogSoftmax};
  for (const auto& [name, f] : keras_definitions()) all.push_back(attn::kernels::activation_from_string(name));
  for (const Activation a : all) {
    const std::vector<float> x = {-1.0f, nan, 2.0f};
    std::vector<float> y(3, 0.0f);
    attn::kernels::activation_forward(a, x.data(), y.data(), 1, 3);
    EXPECT_TRUE(std::isnan(y[1])) << attn::kernels::to_string(a);
  }
  // and relu keeps what it always did elsewhere
  const std::vector<float> x = {-1.0f, 0.0f, 2.5f};
  std::vector<float> y(3);
  attn::kernels::activation_forward(Activation::kRelu, x.data(), y.data(), 1, 3);
  EXPECT_EQ(y, (std::vector<float>{0.0f, 0.0f, 2.5f}));
}

}  // namespace
