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

TEST(Plots, AttentionWeightsNeedAnAttentionLayerOnTheModelInput) {
  auto in = attn::Input({4, 1});
  attn::Model dense_only(in, L::Dense(2)(L::Flatten()(in)));
  Tensor x({1, 4, 1});
  EXPECT_THROW(attn::plots::attention_weights(dense_only, x), std::invalid_argument);
  auto in2 = attn::Input({4, 1});
  auto h = L::Dense(1)(in2);
  attn::Model inner(in2, L::Flatten()(L::Attention()({h, h})));
  EXPECT_THROW(attn::plots::attention_weights(inner, x), std::invalid_argument);
  EXPECT_THROW(attn::plots::attention_weights(attn::reference_model(), x), std::invalid_argument);  // wrong shape
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
