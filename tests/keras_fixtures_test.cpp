// Real Keras files (../shared/fixtures/keras, see its MANIFEST.md): each is loaded with
// attn::load_model and run on the 10,000 MNIST test images (pixel / 255, reshaped to the
// model's input); top-1 accuracy must be within 0.0002 of the value the manifest gives
// (computed by an independent float64 implementation). Skips with a message when the
// fixtures or MNIST are absent.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "attn/data.hpp"
#include "attn/io.hpp"
#include "io/hdf5_file.hpp"
#include "temp_dir.hpp"

namespace attn {
namespace {

namespace fs = std::filesystem;

std::string fixtures_dir() { return std::string(ATTN_SOURCE_DIR) + "/../shared/fixtures/keras"; }

const data::Split* mnist_test() {
  static bool tried = false;
  static data::Split test;
  static bool ok = false;
  if (!tried) {
    tried = true;
    const std::string dir = data::default_mnist_dir();
    try {
      test.x = data::load_idx_images(dir + "/t10k-images-idx3-ubyte");
      test.y = data::load_idx_labels(dir + "/t10k-labels-idx1-ubyte");
      ok = true;
    } catch (const std::exception&) {
      try {
        test = data::load_mnist(dir).test;
        ok = true;
      } catch (const std::exception&) {
        ok = false;
      }
    }
  }
  return ok ? &test : nullptr;
}

struct Fixture {
  const char* file;
  double accuracy;
};

class KerasFixture : public ::testing::TestWithParam<Fixture> {};

TEST_P(KerasFixture, AccuracyOnMnistTestSetMatchesManifest) {
  const Fixture& fx = GetParam();
  const std::string path = fixtures_dir() + "/" + fx.file;
  if (!fs::exists(path)) GTEST_SKIP() << "fixture not present: " << path;
  const data::Split* test = mnist_test();
  if (!test) GTEST_SKIP() << "MNIST test images not found in " << data::default_mnist_dir()
                          << " (run scripts/setup.sh or set ATTN_DATA_DIR)";
  Model model = load_model(path);
  ASSERT_EQ(model.inputs().size(), 1u);
  const int64_t n = test->x.dim(0);
  Shape in_shape = {n};
  for (int64_t d : model.inputs()[0]->shape) in_shape.push_back(d);
  Tensor x = test->x.clone();
  ASSERT_EQ(x.size(), shape_size(in_shape)) << "model input " << fx.file;
  for (int64_t i = 0; i < x.size(); ++i) x[i] = x[i] / 255.0f;
  x = x.reshaped(in_shape);
  Tensor p = model.predict(x, {.batch_size = 500});
  ASSERT_EQ(p.dim(0), n);
  const int64_t classes = p.dim(1);
  ASSERT_EQ(classes, 10);
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = p.data() + i * classes;
    int64_t best = 0;
    for (int64_t c = 1; c < classes; ++c)
      if (row[c] > row[best]) best = c;
    if (best == static_cast<int64_t>(test->y[i])) ++correct;
  }
  const double acc = static_cast<double>(correct) / static_cast<double>(n);
  std::printf("[ fixture  ] %s: accuracy %.4f (manifest %.4f)\n", fx.file, acc, fx.accuracy);
  EXPECT_LE(std::fabs(acc - fx.accuracy), 0.0002 + 1e-12) << fx.file;
}

// Each real Keras model written back by attn, as .keras and as legacy .h5, loads again and
// predicts the same bits on 500 test images.
TEST_P(KerasFixture, RewrittenAsKerasAndLegacyH5PredictsTheSame) {
  const Fixture& fx = GetParam();
  const std::string path = fixtures_dir() + "/" + fx.file;
  if (!fs::exists(path)) GTEST_SKIP() << "fixture not present: " << path;
  const data::Split* test = mnist_test();
  if (!test) GTEST_SKIP() << "MNIST test images not found in " << data::default_mnist_dir();
  Model model = load_model(path);
  Shape in_shape = {500};
  for (int64_t d : model.inputs()[0]->shape) in_shape.push_back(d);
  Tensor x(in_shape);
  for (int64_t i = 0; i < x.size(); ++i) x[i] = test->x[i] / 255.0f;
  const Tensor want = model.predict(x, {.batch_size = 100});
  testing::TempDir dir("attn-fixture-test");
  for (const char* name : {"again.keras", "again.h5"}) {
    io::save_model(model, dir.file(name));
    Model again = load_model(dir.file(name));
    const Tensor got = again.predict(x, {.batch_size = 100});
    ASSERT_EQ(got.shape(), want.shape()) << name;
    for (int64_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << fx.file << " as " << name << " at " << i;
  }
}

// The model's optimizer `slot` of layer/var holds exactly `want`.
void expect_slot_equals(const Model& m, const std::string& layer, const std::string& var, const std::string& slot,
                        const io::h5::Array& want) {
  for (const auto& l : m.layers())
    for (const Weight& w : l->weights())
      if (l->name() == layer && w.name == var) {
        const float* got = m.optimizer()->state(slot) + w.offset;
        ASSERT_EQ(static_cast<size_t>(shape_size(w.shape)), want.values.size()) << layer << "/" << var;
        EXPECT_EQ(std::vector<float>(got, got + want.values.size()), want.values) << layer << "/" << var << " " << slot;
        return;
      }
  ADD_FAILURE() << "no variable " << layer << "/" << var;
}

// A legacy .h5 written by Keras 3.8 with its optimizer state: the iteration count and every Adam
// slot come back in place (Keras 3 lists optimizer.variables in order: iteration, learning_rate,
// then momentum and velocity of each variable in turn), and a rewrite keeps them.
TEST(KerasLegacyH5, Keras3OptimizerStateIsRestored) {
  const std::string path = fixtures_dir() + "/payalsolanki02__EAI6010A5__mnist_model.h5";
  if (!fs::exists(path)) GTEST_SKIP() << "fixture not present: " << path;
  Model model = load_model(path);
  ASSERT_TRUE(model.compiled());
  const io::h5::File f = io::h5::File::open(path);
  EXPECT_EQ(model.optimizer()->iterations(), f.read_int64("optimizer_weights/adam/iteration"));
  EXPECT_GT(model.optimizer()->iterations(), 0);
  const auto expect_slot = [&](const Model& m, const std::string& layer, const std::string& var, const std::string& slot) {
    expect_slot_equals(m, layer, var, slot,
                       f.read_floats("optimizer_weights/adam/sequential_" + layer + "_" + var + "_" + slot));
  };
  for (const char* layer : {"dense", "dense_1", "dense_2"})
    for (const char* var : {"kernel", "bias"})
      for (const char* slot : {"momentum", "velocity"}) expect_slot(model, layer, var, slot);
  testing::TempDir dir("attn-fixture-test");
  io::save_model(model, dir.file("again.h5"));
  Model again = load_model(dir.file("again.h5"));
  EXPECT_EQ(again.optimizer()->iterations(), model.optimizer()->iterations());
  for (const char* slot : {"momentum", "velocity"}) expect_slot(again, "dense_1", "kernel", slot);
}

// A legacy .h5 written by tf.keras 2.9 (Adam; a Dense, MultiHeadAttention, Dense model): its
// optimizer lists "Adam/iter:0", every variable's m, then every variable's v, by variable path.
// The iteration count and each slot come back on the model's variable of that path, and a
// rewrite (Keras 3's layout) keeps them.
TEST(KerasLegacyH5, TfKeras2OptimizerStateIsRestored) {
  const std::string path =
      fixtures_dir() + "/NeuralNetworkVerification__bounding-softmax__self-attention-mnist-small.h5";
  if (!fs::exists(path)) GTEST_SKIP() << "fixture not present: " << path;
  Model model = load_model(path);
  ASSERT_TRUE(model.compiled());
  ASSERT_EQ(model.optimizer()->class_name(), "Adam");
  const io::h5::File f = io::h5::File::open(path);
  EXPECT_EQ(model.optimizer()->iterations(), f.read_int64("optimizer_weights/Adam/iter:0"));
  EXPECT_GT(model.optimizer()->iterations(), 0);
  const auto expect_slot = [&](const Model& m, const std::string& layer, const std::string& var, const char* tf2,
                               const std::string& slot) {
    expect_slot_equals(m, layer, var, slot,
                       f.read_floats("optimizer_weights/Adam/" + layer + "/" + var + "/" + tf2 + ":0"));
  };
  const std::vector<std::pair<std::string, std::string>> vars = {
      {"dense", "kernel"},
      {"dense", "bias"},
      {"multi_head_attention", "query/kernel"},
      {"multi_head_attention", "attention_output/bias"},
      {"dense_1", "kernel"}};
  for (const auto& [layer, var] : vars) {
    expect_slot(model, layer, var, "m", "momentum");
    expect_slot(model, layer, var, "v", "velocity");
  }
  testing::TempDir dir("attn-fixture-test");
  io::save_model(model, dir.file("again.h5"));
  Model again = load_model(dir.file("again.h5"));
  EXPECT_EQ(again.optimizer()->iterations(), model.optimizer()->iterations());
  expect_slot(again, "multi_head_attention", "query/kernel", "v", "velocity");
}

// A legacy .h5 written by standalone Keras 2.3.1 (SGD, momentum 0): its optimizer lists
// "SGD_1/iterations:0" and one "training/SGD/moment_<i>_1:0" per variable, by position. The
// iteration count comes back; the moments are dropped without a warning, as Keras 3's SGD keeps
// none at momentum 0 (and Keras 2's update never read them there).
TEST(KerasLegacyH5, StandaloneKeras2OptimizerStateIsRead) {
  const std::string path = fixtures_dir() + "/26future__Designing_AI_through_Analyzing_Big_Data__mnist_model.h5";
  if (!fs::exists(path)) GTEST_SKIP() << "fixture not present: " << path;
  ::testing::internal::CaptureStderr();
  Model model = load_model(path);
  const std::string warnings = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(model.compiled());
  ASSERT_EQ(model.optimizer()->class_name(), "SGD");
  EXPECT_EQ(warnings.find("optimizer state"), std::string::npos) << warnings;
  const io::h5::File f = io::h5::File::open(path);
  EXPECT_EQ(model.optimizer()->iterations(), f.read_int64("optimizer_weights/SGD_1/iterations:0"));
  EXPECT_GT(model.optimizer()->iterations(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Manifest, KerasFixture,
    ::testing::Values(
        Fixture{"Ammar-Asim-23__Handwritten-Digit-Recognizer__model.keras", 0.9733},
        Fixture{"DIVYA-eng21__mnist-ann-baseline__mnist_model.keras", 0.9758},
        Fixture{"Carvas91__ANN_practice__mnist_model.keras", 0.9773},
        Fixture{"DONGRYEOLLEE1__WIL__keras_mnist_model.h5", 0.9604},
        Fixture{"payalsolanki02__EAI6010A5__mnist_model.h5", 0.9755},
        Fixture{"26future__Designing_AI_through_Analyzing_Big_Data__mnist_model.h5", 0.9182},
        Fixture{"NeuralNetworkVerification__bounding-softmax__self-attention-mnist-small.h5", 0.9437},
        Fixture{"NeuralNetworkVerification__bounding-softmax__self-attention-mnist-pgd-small-single-head-no-bias.h5",
                0.9020},
        Fixture{"NeuralNetworkVerification__bounding-softmax__self-attention-mnist-medium.h5", 0.9727}),
    [](const ::testing::TestParamInfo<Fixture>& info) {
      std::string name = info.param.file;
      name = name.substr(0, name.find("__"));
      for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      return name + "_" + std::to_string(info.index);
    });

}  // namespace
}  // namespace attn
