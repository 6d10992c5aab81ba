// Conv2D (keras/src/layers/convolutional/conv2d.py): outputs against values worked out by hand
// for each padding (TensorFlow's and JAX's split: the smaller half first), a double-precision
// direct convolution on random shapes (odd sizes, strides, dilation, 1x1), finite-difference
// gradients, Keras configs and files, refusals, and a small convolutional model that learns.
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
using attn::Shape;
using attn::Tensor;
using attn::testing::check_layer_gradients;
using attn::testing::GradCheck;
using Pair = std::array<int64_t, 2>;

class Conv2DTest : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(11);
  }
};

// y = Conv2D(x) for one model of that layer, with the kernel and bias given.
std::vector<float> convolve(const Tensor& x, int64_t filters, Pair kernel_size, L::Conv2DOptions options,
                            const std::vector<float>& kernel, const std::vector<float>& bias) {
  auto in = attn::Input({x.dim(1), x.dim(2), x.dim(3)});
  auto layer = std::make_shared<L::Conv2DLayer>(filters, kernel_size, options);
  auto out = layer->call({in});
  for (size_t i = 0; i < kernel.size(); ++i) layer->weights().at(0).value[static_cast<int64_t>(i)] = kernel[i];
  if (options.use_bias)
    for (size_t i = 0; i < bias.size(); ++i) layer->weights().at(1).value[static_cast<int64_t>(i)] = bias[i];
  attn::Model model(in, out[0]);
  return model.predict(x).to_vector();
}

TEST_F(Conv2DTest, PaddingAndStridesByHand) {
  // x = 1..9 in a 3x3 image, one channel; the 2x2 kernel (1, 10 / 100, 1000) and bias 0.5 put
  // each tap's input in its own decimal digit.
  const Tensor x({1, 3, 3, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  const std::vector<float> taps = {1, 10, 100, 1000}, bias = {0.5f};
  EXPECT_EQ(convolve(x, 1, {2, 2}, {}, taps, bias), (std::vector<float>{5421.5f, 6532.5f, 8754.5f, 9865.5f}));
  // same: 3x3 outputs, the one padded row and column after the image (the smaller half first).
  attn::clear_session();
  EXPECT_EQ(convolve(x, 1, {2, 2}, {.padding = "same"}, taps, bias),
            (std::vector<float>{5421.5f, 6532.5f, 603.5f, 8754.5f, 9865.5f, 906.5f, 87.5f, 98.5f, 9.5f}));
  // strides (2, 1), valid: rows 0 and (none past 1 for a 2-row kernel): one output row.
  attn::clear_session();
  EXPECT_EQ(convolve(x, 1, {2, 2}, {.strides = {2, 1}}, taps, bias), (std::vector<float>{5421.5f, 6532.5f}));
  // strides 2, same: ceil(3 / 2) = 2 per axis; the padding (1 per axis) goes after.
  attn::clear_session();
  EXPECT_EQ(convolve(x, 1, {2, 2}, {.strides = {2, 2}, .padding = "same"}, taps, bias),
            (std::vector<float>{5421.5f, 603.5f, 87.5f, 9.5f}));
  // dilation 2, a (1, 2) kernel: taps two columns apart.
  attn::clear_session();
  EXPECT_EQ(convolve(x, 1, {1, 2}, {.dilation_rate = {1, 2}, .use_bias = false}, {1, 10}, {}),
            (std::vector<float>{31, 64, 97}));
  // 3x3, same: one padded row and column on each side; the centre sees all nine.
  attn::clear_session();
  const auto ones = convolve(x, 1, {3, 3}, {.padding = "same", .use_bias = false}, std::vector<float>(9, 1.0f), {});
  EXPECT_EQ(ones, (std::vector<float>{12, 21, 16, 27, 45, 33, 24, 39, 28}));
}

// Direct double-precision convolution with Keras' padding, for random shapes.
std::vector<double> reference_conv(const std::vector<float>& x, int64_t batch, Pair size, int64_t channels,
                                   const std::vector<float>& w, const std::vector<float>& bias, Pair k,
                                   int64_t filters, Pair s, Pair d, bool same, Pair& out) {
  Pair pad{0, 0};
  for (int i = 0; i < 2; ++i) {
    const int64_t span = (k[i] - 1) * d[i] + 1;
    out[i] = same ? (size[i] + s[i] - 1) / s[i] : (size[i] - span) / s[i] + 1;
    pad[i] = same ? std::max<int64_t>(0, (out[i] - 1) * s[i] + span - size[i]) / 2 : 0;
  }
  std::vector<double> y(batch * out[0] * out[1] * filters);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < out[0]; ++i)
      for (int64_t j = 0; j < out[1]; ++j)
        for (int64_t f = 0; f < filters; ++f) {
          double sum = bias.empty() ? 0.0 : bias[f];
          for (int64_t a = 0; a < k[0]; ++a)
            for (int64_t e = 0; e < k[1]; ++e) {
              const int64_t r = i * s[0] + a * d[0] - pad[0], c = j * s[1] + e * d[1] - pad[1];
              if (r < 0 || r >= size[0] || c < 0 || c >= size[1]) continue;
              for (int64_t ch = 0; ch < channels; ++ch)
                sum += double(x[((b * size[0] + r) * size[1] + c) * channels + ch]) *
                       w[((a * k[1] + e) * channels + ch) * filters + f];
            }
          y[((b * out[0] + i) * out[1] + j) * filters + f] = sum;
        }
  return y;
}

TEST_F(Conv2DTest, MatchesADirectConvolutionOnRandomShapes) {
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  int cases = 0;
  for (const bool same : {false, true})
    for (const Pair size : {Pair{1, 1}, Pair{5, 7}, Pair{9, 4}, Pair{12, 12}})
      for (const Pair k : {Pair{1, 1}, Pair{3, 3}, Pair{2, 5}})
        for (const auto& [s, d] : {std::pair<Pair, Pair>{{1, 1}, {1, 1}}, {{2, 2}, {1, 1}}, {{1, 3}, {1, 1}},
                                   {{1, 1}, {2, 1}}, {{1, 1}, {1, 2}}}) {
          const int64_t span0 = (k[0] - 1) * d[0] + 1, span1 = (k[1] - 1) * d[1] + 1;
          if (!same && (span0 > size[0] || span1 > size[1])) continue;  // no output (refused; below)
          // Batches of 3 and of 40 (the product's row count past the small-row kernels).
          const int64_t channels = 1 + (size[0] + k[1]) % 4, filters = 1 + (size[1] * k[0] + s[1]) % 6;
          const int64_t batch = cases % 2 ? 3 : 40;
          SCOPED_TRACE(std::string(same ? "same" : "valid") + " size " + std::to_string(size[0]) + "x" +
                       std::to_string(size[1]) + " k " + std::to_string(k[0]) + "x" + std::to_string(k[1]) +
                       " s " + std::to_string(s[0]) + "," + std::to_string(s[1]) + " d " + std::to_string(d[0]) +
                       "," + std::to_string(d[1]));
          std::vector<float> x(batch * size[0] * size[1] * channels), w(k[0] * k[1] * channels * filters);
          std::vector<float> bias(filters);
          for (float& v : x) v = u(gen);
          for (float& v : w) v = u(gen);
          for (float& v : bias) v = u(gen);
          attn::clear_session();
          const auto got = convolve(Tensor({batch, size[0], size[1], channels}, x), filters, k,
                                    {.strides = s, .padding = same ? "same" : "valid", .dilation_rate = d}, w, bias);
          Pair out{};
          const auto want = reference_conv(x, batch, size, channels, w, bias, k, filters, s, d, same, out);
          ASSERT_EQ(got.size(), want.size());
          for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5 * (1 + std::fabs(want[i]))) << i;
          ++cases;
        }
  EXPECT_GT(cases, 85);
}

TEST_F(Conv2DTest, GradientsMatchFiniteDifferences) {
  struct Case {
    Pair k, strides, dilation;
    const char* padding;
    const char* activation;
  };
  for (const Case& c : std::vector<Case>{{{3, 3}, {1, 1}, {1, 1}, "valid", "linear"},
                                         {{3, 2}, {1, 1}, {1, 1}, "same", "relu"},
                                         {{2, 2}, {2, 1}, {1, 1}, "same", "tanh"},
                                         {{2, 3}, {1, 1}, {2, 1}, "valid", "sigmoid"},
                                         {{1, 1}, {1, 1}, {1, 1}, "valid", "gelu"},  // the input is the patches
                                         {{1, 1}, {2, 2}, {1, 1}, "same", "linear"},
                                         {{3, 3}, {2, 2}, {1, 1}, "same", "softmax"}}) {
    SCOPED_TRACE(std::string(c.padding) + " k " + std::to_string(c.k[0]) + "x" + std::to_string(c.k[1]) + " " +
                 c.activation);
    GradCheck g;
    g.layer = std::make_shared<L::Conv2DLayer>(
        3, c.k, L::Conv2DOptions{.strides = c.strides, .padding = c.padding, .dilation_rate = c.dilation,
                                 .activation = c.activation});
    g.input_shapes = {{5, 6, 2}};
    g.min_abs_input = std::string(c.activation) == "relu" ? 0.05f : 0.0f;
    check_layer_gradients(g);
  }
  GradCheck no_bias;
  no_bias.layer = std::make_shared<L::Conv2DLayer>(2, 2, L::Conv2DOptions{.use_bias = false});
  no_bias.input_shapes = {{4, 3, 2}};
  check_layer_gradients(no_bias);
  EXPECT_EQ(no_bias.layer->weights().size(), 1u);
}

TEST_F(Conv2DTest, RefusesWhatKerasRefusesAndWhatIsNotImplemented) {
  const auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message([] { L::Conv2DLayer(0, 3); }).find("filters"), std::string::npos);
  EXPECT_NE(message([] { L::Conv2DLayer(4, {3, 0}); }).find("kernel_size must be positive, got (3, 0)"),
            std::string::npos);
  EXPECT_NE(message([] { L::Conv2DLayer(4, 3, {.strides = {2, 1}, .dilation_rate = {1, 2}}); }).find("dilation_rate"),
            std::string::npos);
  EXPECT_NE(message([] { L::Conv2DLayer(4, 3, {.padding = "causal"}); }).find("padding"), std::string::npos);
  EXPECT_THROW(L::Conv2DLayer(4, 3, {.activation = "swish2"}), std::invalid_argument);
  // valid: a kernel wider than the image leaves no output column.
  EXPECT_NE(message([] { L::Conv2DLayer(4, {2, 6}).call({attn::Input({8, 5, 1})}); }).find("5 input columns"),
            std::string::npos);
  EXPECT_NE(message([] { L::Conv2DLayer(4, 2).call({attn::Input({8, 5})}); }).find("(batch, rows, columns, channels)"),
            std::string::npos);
}

TEST_F(Conv2DTest, KerasConfigAndFiles) {
  auto in = attn::Input({9, 8, 3});
  auto conv = L::Conv2D(5, {3, 2}, {.strides = {2, 1}, .padding = "same", .activation = "relu", .name = "conv"});
  auto out = L::Dense(2)(L::Flatten()(conv(in)));
  attn::Model model(in, out);
  const nlohmann::json config = attn::io::model_to_config(model);
  nlohmann::json layer;
  for (const auto& l : config["config"]["layers"])
    if (l["config"]["name"] == "conv") layer = l["config"];
  EXPECT_EQ(layer["filters"], 5);
  EXPECT_EQ(layer["kernel_size"], nlohmann::json::array({3, 2}));
  EXPECT_EQ(layer["strides"], nlohmann::json::array({2, 1}));
  EXPECT_EQ(layer["dilation_rate"], nlohmann::json::array({1, 1}));
  EXPECT_EQ(layer["padding"], "same");
  EXPECT_EQ(layer["data_format"], "channels_last");
  EXPECT_EQ(layer["groups"], 1);
  EXPECT_EQ(layer["activation"], "relu");
  for (const auto& l : model.layers())  // Keras' (kernel rows, kernel columns, in, filters)
    if (l->name() == "conv") {
      EXPECT_EQ(l->weights().at(0).shape, (Shape{3, 2, 3, 5}));
    }
  Tensor x({4, 9, 8, 3});
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
  refused([](nlohmann::json& l) { l["dilation_rate"] = nlohmann::json::array({2, 2}); }, "option 'strides'");
  refused([](nlohmann::json& l) { l["kernel_size"] = nlohmann::json::array({3, 0}); }, "option 'kernel_size'");
  refused([](nlohmann::json& l) { l["kernel_size"] = nlohmann::json::array({3, 3, 3}); }, "option 'kernel_size'");
  refused([](nlohmann::json& l) { l["padding"] = "causal"; }, "option 'padding'");
  refused([](nlohmann::json& l) { l["kernel_regularizer"] = "l2"; }, "option 'kernel_regularizer'");
}

// A small convolutional network tells horizontal from vertical bars in noisy 8x8 images.
TEST_F(Conv2DTest, SmallConvNetLearnsBarOrientation) {
  const auto make = [](int64_t n, uint32_t seed, Tensor& x, Tensor& y) {
    x = Tensor({n, 8, 8, 1});
    y = Tensor({n});
    std::mt19937 gen(seed);
    std::normal_distribution<float> noise(0.0f, 0.3f);
    std::uniform_int_distribution<int> line(0, 7);
    std::bernoulli_distribution vertical(0.5);
    for (int64_t s = 0; s < n; ++s) {
      const bool v = vertical(gen);
      const int at = line(gen);
      y[s] = v ? 1.0f : 0.0f;
      for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j) x[s * 64 + i * 8 + j] = ((v ? j : i) == at ? 1.0f : 0.0f) + noise(gen);
    }
  };
  Tensor x, y, xv, yv;
  make(512, 1, x, y);
  make(256, 2, xv, yv);
  auto in = attn::Input({8, 8, 1});
  auto h = L::Conv2D(4, 3, {.activation = "relu"})(in);
  h = L::Conv2D(4, 3, {.strides = {2, 2}, .padding = "same", .activation = "relu"})(h);
  auto out = L::Dense(2, {.activation = "softmax"})(L::Flatten()(h));
  attn::Model model(in, out);
  model.compile(attn::optimizers::Adam({.learning_rate = 1e-2f}), attn::losses::SparseCategoricalCrossentropy(),
                {"accuracy"});
  model.fit(x, y, {.epochs = 10, .batch_size = 32, .verbose = 0});
  EXPECT_GT(model.evaluate(xv, yv).at("accuracy"), 0.9);
}

}  // namespace
