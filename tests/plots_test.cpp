// Training curves and attention maps: the SVG puts each metric's points where its values say
// (epochs left to right, larger values higher), refuses histories it cannot draw; the attention
// weights of the reference model match softmax(scale q k) computed here in double precision;
// the map colours the query pixel and the most-attended key as documented; PNGs read back.
#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "attn/reference_model.hpp"

namespace {

namespace fs = std::filesystem;
namespace L = attn::layers;
using attn::Tensor;

// The (x, y) points of the polyline whose class is `name`.
std::vector<std::pair<double, double>> polyline(const std::string& svg, const std::string& name) {
  const std::string tag = "<polyline class=\"" + name + "\"";
  const size_t at = svg.find(tag);
  if (at == std::string::npos) return {};
  const size_t p = svg.find("points=\"", at) + 8;
  std::istringstream in(svg.substr(p, svg.find('"', p) - p));
  std::vector<std::pair<double, double>> points;
  double x, y;
  char comma;
  while (in >> x >> comma >> y) points.emplace_back(x, y);
  return points;
}

TEST(Plots, TrainingCurvesPlaceEveryEpochWhereItsValueSays) {
  const std::map<std::string, std::vector<double>> h = {{"loss", {2.0, 1.0, 0.5, 0.4}},
                                                        {"val_loss", {2.2, 1.5, 0.9, 0.95}},
                                                        {"accuracy", {0.5, 0.7, 0.8, 0.9}},
                                                        {"val_accuracy", {0.4, 0.6, 0.7, NAN}}};
  const std::string svg = attn::plots::training_curves_svg(h);
  EXPECT_EQ(svg.rfind("<svg ", 0), 0u);
  EXPECT_LT(svg.find(">loss</text>"), svg.find(">accuracy</text>"));  // loss is the first panel
  for (const char* name : {"loss", "val_loss", "accuracy"}) {
    const auto pts = polyline(svg, name);
    ASSERT_EQ(pts.size(), 4u) << name;
    const std::vector<double>& v = h.at(name);
    for (size_t i = 1; i < pts.size(); ++i) {
      EXPECT_GT(pts[i].first, pts[i - 1].first) << name << " epoch " << i + 1;
      // SVG's y grows downwards: a larger value sits higher, at a smaller y.
      EXPECT_EQ(v[i] > v[i - 1], pts[i].second < pts[i - 1].second) << name << " epoch " << i + 1;
    }
  }
  // Equal steps in value are equal steps on the chart (a linear axis).
  const auto loss = polyline(svg, "loss");
  EXPECT_NEAR((loss[1].second - loss[0].second) / (loss[2].second - loss[1].second), 2.0, 1e-2);
  // The NaN epoch is left out of its line.
  EXPECT_EQ(polyline(svg, "val_accuracy").size(), 3u);
  // So are values whose span the axis cannot hold (a diverged run's 1e308): no NaN coordinates.
  const std::string wild = attn::plots::training_curves_svg({{"loss", {1e308, 0.5, -1e308, 0.25}}});
  EXPECT_EQ(wild.find("nan"), std::string::npos);
  EXPECT_EQ(wild.find("inf"), std::string::npos);
  EXPECT_EQ(polyline(wild, "loss").size(), 2u);
}

TEST(Plots, HistoriesThatCannotBeDrawnAreRefused) {
  using attn::plots::history_from_json;
  using attn::plots::training_curves_svg;
  EXPECT_THROW(training_curves_svg({}), std::invalid_argument);
  EXPECT_THROW(training_curves_svg({{"loss", {1.0, 2.0}}, {"val_loss", {1.0}}}), std::invalid_argument);
  auto message = [](const std::string& text) {
    try {
      history_from_json(text, "h.json");
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("{not json").find("h.json: not valid JSON"), std::string::npos);
  EXPECT_NE(message("{\"loss\": [1, 2]}").find("h.json: no \"epochs\""), std::string::npos);
  EXPECT_NE(message("{\"epochs\": [{\"loss\": 1}, {\"accuracy\": 0.5}]}").find("missing"), std::string::npos);
  EXPECT_NE(message("{\"epochs\": [{\"loss\": \"low\"}]}").find("'loss' is not a number"), std::string::npos);
  const auto h = history_from_json(R"({"epochs": [{"epoch": 1, "seconds": 2.5, "loss": 1.5}, {"epoch": 2, "seconds": 2.4, "loss": null}]})",
                                   "h.json");
  ASSERT_EQ(h.size(), 1u);  // epoch and seconds are not metrics
  ASSERT_EQ(h.at("loss").size(), 2u);
  EXPECT_EQ(h.at("loss")[0], 1.5);
  EXPECT_TRUE(std::isnan(h.at("loss")[1]));
}

// A resumed run's history starts at a later epoch, and its chart is numbered from there.
TEST(Plots, ResumedHistoryKeepsItsEpochNumbers) {
  int first = 0;
  const auto h = attn::plots::history_from_json(
      R"({"epochs": [{"epoch": 3, "loss": 0.5}, {"epoch": 4, "loss": 0.4}]})", "h.json", &first);
  EXPECT_EQ(first, 3);
  const std::string svg = attn::plots::training_curves_svg(h, first);
  EXPECT_NE(svg.find(">3</text>"), std::string::npos);
  EXPECT_NE(svg.find(">4</text>"), std::string::npos);
  EXPECT_EQ(svg.find(">1</text>"), std::string::npos) << "numbered from 1";
  EXPECT_THROW(attn::plots::history_from_json(R"({"epochs": [{"epoch": -2, "loss": 0.5}]})", "h.json", &first),
               std::invalid_argument);
}

TEST(Plots, AttentionWeightsAreTheReferenceModelsSoftmax) {
  attn::set_random_seed(4);
  attn::Model model = attn::reference_model();
  for (const auto& layer : model.layers())
    if (layer->class_name() == "Attention") layer->weights()[0].value[0] = 2.5f;  // not its initial 1
  std::mt19937 gen(8);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Tensor x({1, 784, 1});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = gen() % 4 == 0 ? u(gen) : 0.0f;
  const Tensor w = attn::plots::attention_weights(model, x);
  ASSERT_EQ(w.shape(), (attn::Shape{784, 784}));
  double worst = 0.0;
  for (int64_t i = 0; i < 784; i += 7) {  // every 7th query row, against double precision
    double top = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < 784; ++j) top = std::max(top, 2.5 * x[i] * x[j]);
    for (int64_t j = 0; j < 784; ++j) sum += std::exp(2.5 * x[i] * x[j] - top);
    for (int64_t j = 0; j < 784; ++j)
      worst = std::max(worst, std::fabs(w[i * 784 + j] - std::exp(2.5 * x[i] * x[j] - top) / sum));
  }
  EXPECT_LT(worst, 1e-7);  // weights are about 1/784; float rounding is ~1e-10 of that
}

TEST(Plots, AttentionWeightsNeedAnAttentionLayerAndTheModelsInputShape) {
  auto in = attn::Input({4, 1});
  attn::Model dense_only(in, L::Dense(2)(L::Flatten()(in)));
  Tensor x({1, 4, 1});
  EXPECT_THROW(attn::plots::attention_weights(dense_only, x), std::invalid_argument);
  attn::Model reference = attn::reference_model();
  EXPECT_THROW(attn::plots::attention_weights(reference, x), std::invalid_argument);  // wrong shape
  EXPECT_THROW(attn::plots::attention_weights(reference, Tensor({1, 784, 1}), "no_such_layer"), std::invalid_argument);
  EXPECT_THROW(attn::plots::attention_weights(reference, Tensor({1, 784, 1}), "", 1), std::invalid_argument);  // one head
}

// A layer deep in the model: its inputs are what the model computes before it, so the weights
// are the softmax of the scores of the Dense layer's per-position outputs.
TEST(Plots, AttentionWeightsOfALayerAfterOthers) {
  attn::set_random_seed(5);
  auto in = attn::Input({6, 2});
  L::Dense proj(3);
  auto h = proj(in);
  attn::Model model(in, L::Flatten()(L::Attention()({h, h})));
  Tensor x({1, 6, 2});
  std::mt19937 gen(9);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < x.size(); ++i) x[i] = u(gen);
  const Tensor w = attn::plots::attention_weights(model, x);
  ASSERT_EQ(w.shape(), (attn::Shape{6, 6}));
  const Tensor& kernel = proj->weights()[0].value;  // [2, 3]
  const Tensor& bias = proj->weights()[1].value;
  double hv[6][3];
  for (int t = 0; t < 6; ++t)
    for (int j = 0; j < 3; ++j) hv[t][j] = bias[j] + x[t * 2] * kernel[j] + x[t * 2 + 1] * kernel[3 + j];
  for (int i = 0; i < 6; ++i) {
    double s[6], top = -INFINITY, sum = 0.0;
    for (int j = 0; j < 6; ++j) {
      s[j] = hv[i][0] * hv[j][0] + hv[i][1] * hv[j][1] + hv[i][2] * hv[j][2];
      top = std::max(top, s[j]);
    }
    for (int j = 0; j < 6; ++j) sum += std::exp(s[j] - top);
    for (int j = 0; j < 6; ++j) EXPECT_NEAR(w[i * 6 + j], std::exp(s[j] - top) / sum, 1e-6) << i << "," << j;
  }
}

// A value mask computed from the input (Reshape of it): keys where the input is 0 get no weight.
TEST(Plots, AttentionWeightsApplyTheLayersMasks) {
  auto in = attn::Input({5, 1});
  auto mask = L::Reshape({5})(in);
  attn::CallOptions call;
  call.value_mask = mask;
  attn::Model model(in, L::Flatten()(L::Attention()({in, in}, call)));
  Tensor x({1, 5, 1}, {0.5f, 0.0f, 1.0f, 0.0f, 0.25f});
  const Tensor w = attn::plots::attention_weights(model, x);
  for (int i = 0; i < 5; ++i) {
    double sum = 0.0;
    for (int j = 0; j < 5; ++j) {
      if (x[j] == 0.0f) {
        EXPECT_EQ(w[i * 5 + j], 0.0f) << i << "," << j;
      }
      sum += w[i * 5 + j];
    }
    EXPECT_NEAR(sum, 1.0, 1e-6);
  }
}

// MultiHeadAttention: each head's weights against a double-precision softmax of its projected
// query and key; head -1 is the mean of the heads.
TEST(Plots, AttentionWeightsOfMultiHeadAttentionHeads) {
  attn::set_random_seed(6);
  constexpr int T = 5, F = 2, H = 2, K = 3;
  auto in = attn::Input({T, F});
  L::MultiHeadAttention mha(H, K);
  attn::Model model(in, L::Flatten()(mha({in, in})));
  Tensor x({1, T, F});
  std::mt19937 gen(10);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < x.size(); ++i) x[i] = u(gen);
  const auto& wts = mha->weights();  // query/kernel [F, H, K], query/bias [H, K], key/kernel, key/bias, ...
  const auto project = [&](const Tensor& kernel, const Tensor& bias, int t, int h, int k) {
    double v = bias[h * K + k];
    for (int f = 0; f < F; ++f) v += x[t * F + f] * kernel[(f * H + h) * K + k];
    return v;
  };
  std::vector<Tensor> per_head;
  for (int h = 0; h < H; ++h) {
    per_head.push_back(attn::plots::attention_weights(model, x, "", h));
    const Tensor& w = per_head.back();
    ASSERT_EQ(w.shape(), (attn::Shape{T, T}));
    for (int i = 0; i < T; ++i) {
      double s[T], top = -INFINITY, sum = 0.0;
      for (int j = 0; j < T; ++j) {
        s[j] = 0.0;
        for (int k = 0; k < K; ++k)
          s[j] += project(wts[0].value, wts[1].value, i, h, k) * project(wts[2].value, wts[3].value, j, h, k);
        s[j] /= std::sqrt(static_cast<double>(K));
        top = std::max(top, s[j]);
      }
      for (int j = 0; j < T; ++j) sum += std::exp(s[j] - top);
      for (int j = 0; j < T; ++j) EXPECT_NEAR(w[i * T + j], std::exp(s[j] - top) / sum, 1e-6) << h << ":" << i << "," << j;
    }
  }
  const Tensor mean = attn::plots::attention_weights(model, x);
  for (int64_t i = 0; i < mean.size(); ++i) EXPECT_NEAR(mean[i], 0.5f * (per_head[0][i] + per_head[1][i]), 1e-7);
  EXPECT_THROW(attn::plots::attention_weights(model, x, "", H), std::invalid_argument);
}

TEST(Plots, AttentionMapColoursQueryAndWeights) {
  // 2 x 2 positions; query 1 puts most weight on key 2; key 3 receives the most on average.
  const float image[4] = {0.0f, 1.0f, 0.5f, 0.0f};
  const float weights[16] = {0.1f, 0.1f, 0.1f, 0.7f,   //
                             0.1f, 0.1f, 0.6f, 0.2f,   //
                             0.1f, 0.1f, 0.1f, 0.7f,   //
                             0.1f, 0.1f, 0.1f, 0.7f};
  const int zoom = 3;
  const auto img = attn::plots::attention_map_image(image, weights, 2, 1, zoom);
  const int64_t panel = 2 * zoom, gap = 2 * zoom;
  ASSERT_EQ(img.width, 3 * panel + 4 * gap);
  ASSERT_EQ(img.height, panel + 2 * gap);
  auto pixel = [&](int p, int64_t k) {  // centre of position k in panel p
    const int64_t x = gap + p * (panel + gap) + (k % 2) * zoom + zoom / 2, y = gap + (k / 2) * zoom + zoom / 2;
    const uint8_t* c = img.rgb.data() + (y * img.width + x) * 3;
    return std::vector<int>{c[0], c[1], c[2]};
  };
  EXPECT_EQ(pixel(0, 1), (std::vector<int>{255, 0, 0}));      // the query, marked
  EXPECT_EQ(pixel(0, 2), (std::vector<int>{128, 128, 128}));  // 0.5 grey
  EXPECT_EQ(pixel(0, 0), (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(pixel(1, 2), (std::vector<int>{252, 255, 164}));  // the query's largest weight: brightest
  EXPECT_EQ(pixel(2, 3), (std::vector<int>{252, 255, 164}));  // most received on average
  EXPECT_LT(pixel(1, 0)[0] + pixel(1, 0)[1], pixel(1, 3)[0] + pixel(1, 3)[1]);  // 0.1 darker than 0.2
  EXPECT_THROW(attn::plots::attention_map_image(image, weights, 2, 4), std::invalid_argument);
}

// Attention over 2 queries x 3 keys (not the image's pixels): the 2 x 2 image, then the matrix.
TEST(Plots, AttentionMatrixPanelsTheImageAndEveryWeight) {
  const float image[4] = {0.0f, 1.0f, 0.5f, 0.0f};
  const float weights[6] = {0.2f, 0.3f, 0.5f,  //
                            0.0f, 0.9f, 0.1f};
  const auto img = attn::plots::attention_matrix_image(image, 2, weights, 2, 3, 30);
  const int64_t gap = 16, zoom = 15, cell = 10;  // 30 px panels: 2 image pixels, 3 keys
  ASSERT_EQ(img.width, gap + 2 * zoom + gap + 3 * cell + gap);
  ASSERT_EQ(img.height, 2 * gap + 2 * zoom);
  auto at = [&](int64_t x, int64_t y) {
    const uint8_t* c = img.rgb.data() + (y * img.width + x) * 3;
    return std::vector<int>{c[0], c[1], c[2]};
  };
  EXPECT_EQ(at(gap + zoom + 7, gap + 7), (std::vector<int>{255, 255, 255}));  // image pixel 1: white
  EXPECT_EQ(at(gap + 7, gap + zoom + 7), (std::vector<int>{128, 128, 128}));  // image pixel 2: grey
  const int64_t x0 = gap + 2 * zoom + gap;
  auto weight = [&](int64_t i, int64_t j) { return at(x0 + j * cell + 5, gap + i * cell + 5); };
  EXPECT_EQ(weight(1, 1), (std::vector<int>{252, 255, 164}));  // the largest weight: brightest
  EXPECT_EQ(weight(1, 0), (std::vector<int>{0, 0, 4}));        // zero: darkest
  EXPECT_LT(weight(0, 0)[0] + weight(0, 0)[1], weight(0, 2)[0] + weight(0, 2)[1]);  // 0.2 darker than 0.5
  const auto no_image = attn::plots::attention_matrix_image(nullptr, 0, weights, 2, 3, 30);
  EXPECT_EQ(no_image.width, gap + 3 * cell + gap);
  EXPECT_THROW(attn::plots::attention_matrix_image(image, 2, weights, 0, 3), std::invalid_argument);
}

TEST(Plots, PngReadsBackAndBadPathsAreNamed) {
  const fs::path dir = fs::temp_directory_path() / ("attn_plots_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  attn::plots::RgbImage img{5, 3, std::vector<uint8_t>(45, 0)};
  img.rgb[3 * (1 * 5 + 2) + 1] = 200;  // one green pixel at (2, 1)
  const std::string path = (dir / "map.png").string();
  attn::plots::write_png(img, path);
  png_image back{};
  back.version = PNG_IMAGE_VERSION;
  ASSERT_TRUE(png_image_begin_read_from_file(&back, path.c_str())) << back.message;
  back.format = PNG_FORMAT_RGB;
  std::vector<uint8_t> rgb(PNG_IMAGE_SIZE(back));
  ASSERT_TRUE(png_image_finish_read(&back, nullptr, rgb.data(), 0, nullptr)) << back.message;
  EXPECT_EQ(back.width, 5u);
  EXPECT_EQ(back.height, 3u);
  EXPECT_EQ(rgb, img.rgb);
  const std::string bad = (dir / "missing" / "map.png").string();
  try {
    attn::plots::write_png(img, bad);
    ADD_FAILURE() << "no error for " << bad;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(bad + ".tmp"));
  fs::remove_all(dir);
}

}  // namespace
