// Conv1D (keras/src/layers/convolutional/conv1d.py) and GlobalAveragePooling1D's channels_first
// form: outputs against values worked out by hand for each padding, stride and dilation (the
// padding conventions TensorFlow and JAX use), a double-precision direct convolution on random
// shapes, finite-difference gradients, Keras configs, files, and a small timeseries model that
// learns (the layers of Keras' timeseries Transformer example).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "gradient_check.hpp"
#include "reload_check.hpp"

namespace {

namespace L = attn::layers;
using attn::Shape;
using attn::Tensor;
using attn::testing::check_layer_gradients;
using attn::testing::GradCheck;

class Conv1DTest : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(11);
  }
};

// y = Conv1D(x) for one model of that layer, with the kernel and bias given.
std::vector<float> convolve(const Tensor& x, int64_t filters, int64_t kernel_size, L::Conv1DOptions options,
                            const std::vector<float>& kernel, const std::vector<float>& bias) {
  auto in = attn::Input({x.dim(1), x.dim(2)});
  auto layer = std::make_shared<L::Conv1DLayer>(filters, kernel_size, options);
  auto out = layer->call({in});
  for (size_t i = 0; i < kernel.size(); ++i) layer->weights().at(0).value[static_cast<int64_t>(i)] = kernel[i];
  if (options.use_bias)
    for (size_t i = 0; i < bias.size(); ++i) layer->weights().at(1).value[static_cast<int64_t>(i)] = bias[i];
  attn::Model model(in, out[0]);
  return model.predict(x).to_vector();
}

TEST_F(Conv1DTest, PaddingStridesAndDilationByHand) {
  // One channel, one filter, x = 1 2 3 4 5, taps (1, 10), bias 0.5: y[t] = x[a] + 10 x[a + d] + 0.5
  // where a is output t's first input row; rows outside the sequence read 0.
  const Tensor x({1, 5, 1}, {1, 2, 3, 4, 5});
  const std::vector<float> taps = {1, 10}, bias = {0.5f};
  struct Case {
    const char* padding;
    int64_t strides, dilation;
    std::vector<float> want;
  };
  for (const Case& c : std::vector<Case>{
           {"valid", 1, 1, {21.5f, 32.5f, 43.5f, 54.5f}},
           {"same", 1, 1, {21.5f, 32.5f, 43.5f, 54.5f, 5.5f}},  // one padded row, after (smaller half first)
           {"causal", 1, 1, {10.5f, 21.5f, 32.5f, 43.5f, 54.5f}},  // the padded row before
           {"valid", 2, 1, {21.5f, 43.5f}},
           {"same", 2, 1, {21.5f, 43.5f, 5.5f}},  // ceil(5 / 2) outputs
           {"causal", 2, 1, {10.5f, 32.5f, 54.5f}},
           {"valid", 1, 2, {31.5f, 42.5f, 53.5f}},  // taps 2 apart
           {"same", 1, 2, {20.5f, 31.5f, 42.5f, 53.5f, 4.5f}},  // a padded row on each side
           {"causal", 1, 2, {10.5f, 20.5f, 31.5f, 42.5f, 53.5f}},
       }) {
    SCOPED_TRACE(std::string(c.padding) + " strides " + std::to_string(c.strides) + " dilation " +
                 std::to_string(c.dilation));
    attn::clear_session();
    const auto y = convolve(x, 1, 2, {.strides = c.strides, .padding = c.padding, .dilation_rate = c.dilation}, taps, bias);
    EXPECT_EQ(y, c.want);
  }
  // Three taps, "same": one padded row on each side.
  attn::clear_session();
  EXPECT_EQ(convolve(x, 1, 3, {.padding = "same", .use_bias = false}, {1, 10, 100}, {}),
            (std::vector<float>{210, 321, 432, 543, 54}));
}

// Direct double-precision convolution with Keras' padding, for random shapes.
std::vector<double> reference_conv(const std::vector<float>& x, int64_t batch, int64_t steps, int64_t channels,
                                   const std::vector<float>& w, const std::vector<float>& bias, int64_t k,
                                   int64_t filters, int64_t s, int64_t d, const std::string& padding,
                                   int64_t& steps_out) {
  const int64_t span = (k - 1) * d + 1;
  int64_t pad = 0;
  if (padding == "valid") {
    steps_out = (steps - span) / s + 1;
  } else {
    steps_out = (steps + s - 1) / s;
    pad = padding == "causal" ? span - 1 : std::max<int64_t>(0, (steps_out - 1) * s + span - steps) / 2;
  }
  std::vector<double> y(batch * steps_out * filters);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < steps_out; ++t)
      for (int64_t f = 0; f < filters; ++f) {
        double sum = bias.empty() ? 0.0 : bias[f];
        for (int64_t j = 0; j < k; ++j) {
          const int64_t r = t * s + j * d - pad;
          if (r < 0 || r >= steps) continue;
          for (int64_t c = 0; c < channels; ++c)
            sum += double(x[(b * steps + r) * channels + c]) * w[(j * channels + c) * filters + f];
        }
        y[(b * steps_out + t) * filters + f] = sum;
      }
  return y;
}

TEST_F(Conv1DTest, MatchesADirectConvolutionOnRandomShapes) {
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  int cases = 0;
  for (const std::string padding : {"valid", "same", "causal"})
    for (int64_t steps : {1, 7, 16, 33})
      for (int64_t k : {1, 2, 5})
        for (const auto& [s, d] : {std::pair<int64_t, int64_t>{1, 1}, {2, 1}, {3, 1}, {1, 3}}) {
          if (padding == "valid" && (k - 1) * d + 1 > steps) continue;  // no output (refused; below)
          const int64_t channels = 1 + (steps + k) % 4, filters = 1 + (steps * k + s) % 6, batch = 3;
          SCOPED_TRACE(padding + " steps " + std::to_string(steps) + " k " + std::to_string(k) + " s " +
                       std::to_string(s) + " d " + std::to_string(d));
          std::vector<float> x(batch * steps * channels), w(k * channels * filters), bias(filters);
          for (float& v : x) v = u(gen);
          for (float& v : w) v = u(gen);
          for (float& v : bias) v = u(gen);
          attn::clear_session();
          const auto got = convolve(Tensor({batch, steps, channels}, x), filters, k,
                                    {.strides = s, .padding = padding, .dilation_rate = d}, w, bias);
          int64_t steps_out = 0;
          const auto want = reference_conv(x, batch, steps, channels, w, bias, k, filters, s, d, padding, steps_out);
          ASSERT_EQ(got.size(), want.size());
          for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5 * (1 + std::fabs(want[i]))) << i;
          ++cases;
        }
  EXPECT_GT(cases, 100);
}

TEST_F(Conv1DTest, GradientsMatchFiniteDifferences) {
  struct Case {
    const char* padding;
    int64_t k, strides, dilation;
    const char* activation;
  };
  for (const Case& c : std::vector<Case>{{"valid", 3, 1, 1, "linear"},
                                         {"same", 4, 1, 1, "relu"},
                                         {"causal", 2, 1, 2, "tanh"},
                                         {"same", 3, 2, 1, "sigmoid"},
                                         {"valid", 2, 3, 1, "gelu"},
                                         {"causal", 3, 2, 1, "softmax"}}) {
    SCOPED_TRACE(std::string(c.padding) + " k " + std::to_string(c.k) + " " + c.activation);
    GradCheck g;
    g.layer = std::make_shared<L::Conv1DLayer>(
        4, c.k, L::Conv1DOptions{.strides = c.strides, .padding = c.padding, .dilation_rate = c.dilation,
                                 .activation = c.activation});
    g.input_shapes = {{9, 3}};
    g.min_abs_input = std::string(c.activation) == "relu" ? 0.05f : 0.0f;
    check_layer_gradients(g);
  }
  GradCheck no_bias;
  no_bias.layer = std::make_shared<L::Conv1DLayer>(2, 2, L::Conv1DOptions{.use_bias = false});
  no_bias.input_shapes = {{5, 2}};
  check_layer_gradients(no_bias);
  EXPECT_EQ(no_bias.layer->weights().size(), 1u);
}

TEST_F(Conv1DTest, RefusesWhatKerasRefusesAndWhatIsNotImplemented) {
  EXPECT_THROW(L::Conv1DLayer(0, 3), std::invalid_argument);
  EXPECT_THROW(L::Conv1DLayer(4, 0), std::invalid_argument);
  EXPECT_THROW(L::Conv1DLayer(4, 3, {.strides = 2, .dilation_rate = 2}), std::invalid_argument);
  EXPECT_THROW(L::Conv1DLayer(4, 3, {.padding = "full"}), std::invalid_argument);
  EXPECT_THROW(L::Conv1DLayer(4, 3, {.activation = "swish2"}), std::invalid_argument);
  auto too_long = std::make_shared<L::Conv1DLayer>(4, 6);
  EXPECT_THROW(too_long->call({attn::Input({5, 2})}), std::invalid_argument);  // valid: no output step
  auto flat = std::make_shared<L::Conv1DLayer>(4, 2);
  EXPECT_THROW(flat->call({attn::Input({5})}), std::invalid_argument);
}

TEST_F(Conv1DTest, KerasConfigAndFiles) {
  auto in = attn::Input({12, 3});
  auto conv = L::Conv1D(5, 3, {.strides = 2, .padding = "same", .activation = "relu", .name = "conv"});
  auto out = L::Dense(2)(L::Flatten()(conv(in)));
  attn::Model model(in, out);
  const nlohmann::json config = attn::io::model_to_config(model);
  nlohmann::json layer;
  for (const auto& l : config["config"]["layers"])
    if (l["config"]["name"] == "conv") layer = l["config"];
  EXPECT_EQ(layer["filters"], 5);
  EXPECT_EQ(layer["kernel_size"], nlohmann::json::array({3}));
  EXPECT_EQ(layer["strides"], nlohmann::json::array({2}));
  EXPECT_EQ(layer["dilation_rate"], nlohmann::json::array({1}));
  EXPECT_EQ(layer["padding"], "same");
  EXPECT_EQ(layer["data_format"], "channels_last");
  EXPECT_EQ(layer["groups"], 1);
  for (const auto& l : model.layers())  // Keras' (kernel_size, in, filters)
    if (l->name() == "conv") {
      EXPECT_EQ(l->weights().at(0).shape, (Shape{3, 3, 5}));
    }
  Tensor x({4, 12, 3});
  std::mt19937 gen(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < x.size(); ++i) x[i] = u(gen);
  attn::testing::expect_same_predictions_after_reload(model, x);

  // Keras' own spellings read; what is not implemented refused by option.
  const auto read = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json c = config;
    for (auto& l : c["config"]["layers"])
      if (l["config"]["name"] == "conv") edit(l["config"]);
    return attn::io::model_from_config(c, "edited.json");
  };
  EXPECT_NO_THROW(read([](nlohmann::json& l) { l["kernel_size"] = 3; }));  // a bare integer, as a user may write
  const auto refused = [&](const std::function<void(nlohmann::json&)>& edit, const std::string& part) {
    try {
      read(edit);
      ADD_FAILURE() << "accepted; expected an error naming " << part;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  refused([](nlohmann::json& l) { l["groups"] = 3; }, "option 'groups'");
  refused([](nlohmann::json& l) { l["data_format"] = "channels_first"; }, "option 'data_format'");
  refused([](nlohmann::json& l) { l["dilation_rate"] = nlohmann::json::array({2}); }, "option 'strides'");
  refused([](nlohmann::json& l) { l["padding"] = "full"; }, "option 'padding'");
  refused([](nlohmann::json& l) { l["kernel_regularizer"] = "l2"; }, "option 'kernel_regularizer'");
}

TEST_F(Conv1DTest, GlobalAveragePoolingChannelsFirstAveragesTheLastAxis) {
  // (features 2, steps 3): means over the steps are (1 + 2 + 6) / 3 and (4 + 5 + 0) / 3.
  auto in = attn::Input({2, 3});
  auto pool = std::make_shared<L::GlobalAveragePooling1DLayer>(L::GlobalAveragePooling1DOptions{.data_format = "channels_first"});
  attn::Model model(in, pool->call({in})[0]);
  EXPECT_EQ(model.predict(Tensor({1, 2, 3}, {1, 2, 6, 4, 5, 0})).to_vector(), (std::vector<float>{3, 3}));
  auto keep = std::make_shared<L::GlobalAveragePooling1DLayer>(
      L::GlobalAveragePooling1DOptions{.keepdims = true, .data_format = "channels_first"});
  EXPECT_EQ(keep->call({attn::Input({2, 3})})[0]->shape, (Shape{2, 1}));
  GradCheck g;
  g.layer = std::make_shared<L::GlobalAveragePooling1DLayer>(L::GlobalAveragePooling1DOptions{.data_format = "channels_first"});
  g.input_shapes = {{4, 5}};
  check_layer_gradients(g);
  EXPECT_THROW(L::GlobalAveragePooling1DLayer({.data_format = "channels_middle"}), std::invalid_argument);
}

// The blocks of Keras' "Timeseries classification with a Transformer model" example: attention,
// LayerNormalization, a Conv1D(kernel_size=1) feed-forward, channels_first pooling. The task:
// does the series (noise around a level) step up or down halfway? About half do each.
TEST_F(Conv1DTest, TimeseriesTransformerLearns) {
  const int64_t steps = 32;
  const auto make = [&](int64_t n, uint32_t seed, Tensor& x, Tensor& y) {
    x = Tensor({n, steps, 1});
    y = Tensor({n});
    std::mt19937 gen(seed);
    std::normal_distribution<float> noise(0.0f, 0.3f);
    std::bernoulli_distribution up(0.5);
    for (int64_t s = 0; s < n; ++s) {
      const bool u = up(gen);
      y[s] = u ? 1.0f : 0.0f;
      for (int64_t t = 0; t < steps; ++t) x[s * steps + t] = (t >= steps / 2 ? (u ? 1.0f : -1.0f) : 0.0f) + noise(gen);
    }
  };
  Tensor x, y, xv, yv;
  make(512, 1, x, y);
  make(256, 2, xv, yv);
  auto in = attn::Input({steps, 1});
  auto h = L::LayerNormalization({.epsilon = 1e-6})(in);
  h = L::MultiHeadAttention(2, 8)({h, h});
  auto res = L::Add()({h, in});
  h = L::LayerNormalization({.epsilon = 1e-6})(res);
  h = L::Conv1D(4, 1, {.activation = "relu"})(h);
  h = L::Conv1D(1, 1)(h);
  h = L::Add()({h, res});
  h = L::GlobalAveragePooling1D({.data_format = "channels_first"})(h);
  auto out = L::Dense(2, {.activation = "softmax"})(L::Dense(16, {.activation = "relu"})(h));
  attn::Model model(in, out);
  model.compile(attn::optimizers::Adam({.learning_rate = 3e-3f}), attn::losses::SparseCategoricalCrossentropy(),
                {"sparse_categorical_accuracy"});
  model.fit(x, y, {.epochs = 10, .batch_size = 32, .verbose = 0});
  const auto logs = model.evaluate(xv, yv);
  EXPECT_GT(logs.at("sparse_categorical_accuracy"), 0.9);
  attn::testing::expect_same_predictions_after_reload(model, xv.rows(0, 8));
}

}  // namespace
