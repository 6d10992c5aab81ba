// Keras' Dot (keras/src/layers/merging/dot.py) and the element-wise merges Subtract, Multiply,
// Average, Maximum, Minimum (merging/*.py): values against sums worked out here in double on
// every axis combination Dot takes, gradients by finite differences, ties in Maximum and Minimum
// sent to the first input holding the value (TensorFlow's gradients), Keras' refusals, and a
// hand-written attention (Dot, softmax, Dot) that learns a task and reads back from .keras and .h5.
#include <gtest/gtest.h>

#include <algorithm>
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

class DotAndMerges : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(21);
  }
};

struct LayerRun {
  std::vector<float> y;
  std::vector<std::vector<float>> dx;
};

// One forward and one backward of a built layer on whole-batch inputs, outside any model.
LayerRun run_layer(attn::Layer& layer, const std::vector<std::vector<float>>& xs, int64_t batch, size_t y_size,
              const std::vector<float>& dy) {
  LayerRun r;
  r.y.assign(y_size, 0.0f);
  attn::CallOptions call;
  std::vector<float> scratch(std::max<int64_t>(1, layer.scratch_floats(batch, call)));
  attn::ForwardContext f;
  f.batch = batch;
  f.call = &call;
  f.scratch = scratch.data();
  for (const auto& x : xs) f.inputs.push_back(x.data());
  f.outputs = {r.y.data()};
  layer.forward(f);
  attn::BackwardContext b;
  b.batch = batch;
  b.call = &call;
  b.scratch = scratch.data();
  for (const auto& x : xs) {
    b.inputs.push_back(x.data());
    r.dx.emplace_back(x.size(), 0.0f);
  }
  for (auto& d : r.dx) b.input_grads.push_back(d.data());
  b.outputs = {r.y.data()};
  b.output_grads = {dy.data()};
  layer.backward(b);
  return r;
}

TEST_F(DotAndMerges, ElementwiseMergesByHand) {
  const std::vector<float> a = {1.0f, -2.0f, 3.0f, 0.5f}, b = {4.0f, -2.0f, -1.0f, 0.5f}, c = {0.0f, 5.0f, 3.0f, 0.5f};
  const std::vector<float> dy = {1.0f, 2.0f, 3.0f, 4.0f};
  struct Want {
    std::string name;
    std::vector<float> y;
    std::vector<std::vector<float>> dx;
  };
  const auto multiply = [&](size_t skip, size_t i) {
    float p = dy[i];
    for (size_t k = 0; k < 3; ++k)
      if (k != skip) p *= std::vector<std::vector<float>>{a, b, c}[k][i];
    return p;
  };
  std::vector<std::vector<float>> dmul(3, std::vector<float>(4));
  for (size_t k = 0; k < 3; ++k)
    for (size_t i = 0; i < 4; ++i) dmul[k][i] = multiply(k, i);
  const std::vector<Want> wants = {
      {"Multiply", {0.0f, 20.0f, -9.0f, 0.125f}, dmul},
      {"Average", {5.0f / 3, 1.0f / 3, 5.0f / 3, 0.5f}, {{1.0f / 3, 2.0f / 3, 1.0f, 4.0f / 3}, {1.0f / 3, 2.0f / 3, 1.0f, 4.0f / 3}, {1.0f / 3, 2.0f / 3, 1.0f, 4.0f / 3}}},
      // Ties (b = a at 1, c = a at 2 and 3 for the maximum): the first input holding the value.
      {"Maximum", {4.0f, 5.0f, 3.0f, 0.5f}, {{0, 0, 3, 4}, {1, 0, 0, 0}, {0, 2, 0, 0}}},
      {"Minimum", {0.0f, -2.0f, -1.0f, 0.5f}, {{0, 2, 0, 4}, {0, 0, 3, 0}, {1, 0, 0, 0}}},
  };
  for (const Want& w : wants) {
    SCOPED_TRACE(w.name);
    const auto op = w.name == "Multiply" ? L::MergeOp::kMultiply
                    : w.name == "Average" ? L::MergeOp::kAverage
                    : w.name == "Maximum" ? L::MergeOp::kMaximum
                                          : L::MergeOp::kMinimum;
    auto layer = std::make_shared<L::ElementwiseMergeLayer>(op);
    EXPECT_EQ(layer->class_name(), w.name);
    auto in = attn::Input({2});
    layer->call({in, attn::Input({2}), attn::Input({2})});
    const LayerRun r = run_layer(*layer, {a, b, c}, 2, 4, dy);
    for (size_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(r.y[i], w.y[i]) << i;
    for (size_t k = 0; k < 3; ++k)
      for (size_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(r.dx[k][i], w.dx[k][i]) << "input " << k << ", " << i;
  }
  auto sub = std::make_shared<L::ElementwiseMergeLayer>(L::MergeOp::kSubtract);
  sub->call({attn::Input({2}), attn::Input({2})});
  const LayerRun r = run_layer(*sub, {a, b}, 2, 4, dy);
  EXPECT_EQ(r.y, (std::vector<float>{-3.0f, 0.0f, 4.0f, 0.0f}));
  EXPECT_EQ(r.dx[0], dy);
  EXPECT_EQ(r.dx[1], (std::vector<float>{-1.0f, -2.0f, -3.0f, -4.0f}));
}

TEST_F(DotAndMerges, ElementwiseMergeGradients) {
  for (auto op : {L::MergeOp::kSubtract, L::MergeOp::kMultiply, L::MergeOp::kAverage, L::MergeOp::kMaximum,
                  L::MergeOp::kMinimum})
    for (size_t inputs : {2u, 3u}) {
      if (op == L::MergeOp::kSubtract && inputs == 3) continue;
      attn::testing::GradCheck g;
      g.layer = std::make_shared<L::ElementwiseMergeLayer>(op);
      SCOPED_TRACE(g.layer->class_name() + ", " + std::to_string(inputs) + " inputs");
      g.input_shapes.assign(inputs, Shape{3, 4});
      attn::testing::check_layer_gradients(g);
    }
}

TEST_F(DotAndMerges, ElementwiseMergesRefuse) {
  EXPECT_THROW(L::Subtract()({attn::Input({2}), attn::Input({2}), attn::Input({2})}), std::invalid_argument);
  EXPECT_THROW(L::Multiply()({attn::Input({2}), attn::Input({3})}), std::invalid_argument);
  EXPECT_THROW(L::Maximum()({attn::Input({2})}), std::invalid_argument);
}

struct DotCase {
  Shape x, y;
  std::vector<int64_t> axes;
  Shape out;
};

// Keras' shapes: the first input's remaining axes, then the second's; (1,) when none remain.
const std::vector<DotCase>& dot_cases() {
  static const std::vector<DotCase> c = {
      {{3, 4}, {5, 4}, {2}, {3, 5}},      // scores of 3 queries against 5 keys
      {{3, 4}, {4, 5}, {2, 1}, {3, 5}},   // weights times values
      {{4, 3}, {4, 5}, {1}, {3, 5}},      // contracted along the steps
      {{3, 4}, {5, 4}, {-1}, {3, 5}},     // a negative axis counts from the end
      {{4, 3}, {5, 4}, {1, -1}, {3, 5}},
      {{4}, {4}, {1}, {1}},               // two vectors: (batch, 1)
      {{4}, {5, 4}, {1, 2}, {5}},
      {{3, 4}, {4}, {2, 1}, {3}},
  };
  return c;
}

TEST_F(DotAndMerges, DotMatchesASumInDoubleOnEveryAxisChoice) {
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const DotCase& c : dot_cases()) {
    SCOPED_TRACE(attn::shape_to_string(c.x) + " . " + attn::shape_to_string(c.y));
    auto layer = std::make_shared<L::DotLayer>(c.axes);
    const auto out = layer->call({attn::Input(c.x), attn::Input(c.y)});
    ASSERT_EQ(out[0]->shape, c.out);
    const int64_t batch = 2;
    std::vector<float> x(batch * attn::shape_size(c.x)), y(batch * attn::shape_size(c.y));
    for (float& v : x) v = u(gen);
    for (float& v : y) v = u(gen);
    std::vector<float> dy(batch * attn::shape_size(c.out), 1.0f);
    const LayerRun r = run_layer(*layer, {x, y}, batch, dy.size(), dy);
    // The reference, written from the axes directly: element (i, j) of x with axis a contracted.
    const auto at = [](const std::vector<float>& v, int64_t s, const Shape& shape, int64_t axis, int64_t other,
                       int64_t k) {
      const int64_t size = attn::shape_size(shape);
      if (shape.size() == 1) return static_cast<double>(v[s * size + k]);
      return static_cast<double>(axis == 1 ? v[s * size + k * shape[1] + other] : v[s * size + other * shape[1] + k]);
    };
    const auto axis_of = [](const DotCase& d, size_t i, size_t rank) {
      const int64_t a = d.axes[d.axes.size() == 1 ? 0 : i];
      return a < 0 ? a + static_cast<int64_t>(rank) + 1 : a;
    };
    const int64_t ax = axis_of(c, 0, c.x.size()), ay = axis_of(c, 1, c.y.size());
    const int64_t depth = c.x[ax - 1];
    const int64_t mx = c.x.size() == 2 ? c.x[2 - ax] : 1, ny = c.y.size() == 2 ? c.y[2 - ay] : 1;
    for (int64_t s = 0; s < batch; ++s)
      for (int64_t m = 0; m < mx; ++m)
        for (int64_t n = 0; n < ny; ++n) {
          double want = 0;
          for (int64_t k = 0; k < depth; ++k) want += at(x, s, c.x, ax, m, k) * at(y, s, c.y, ay, n, k);
          EXPECT_NEAR(r.y[s * mx * ny + m * ny + n], want, 1e-5) << s << "," << m << "," << n;
        }
    attn::clear_session();
    attn::testing::GradCheck g;
    g.layer = std::make_shared<L::DotLayer>(c.axes);
    g.input_shapes = {c.x, c.y};
    attn::testing::check_layer_gradients(g);
    // The same node on both sides (self-similarity): both gradients add into one buffer.
    if (c.x == c.y) {
      attn::testing::GradCheck self;
      self.layer = std::make_shared<L::DotLayer>(c.axes);
      self.input_shapes = {c.x, c.y};
      self.input_source = {0, 0};
      attn::testing::check_layer_gradients(self);
    }
  }
}

TEST_F(DotAndMerges, DotRefusesWhatKerasRefusesOrAttnLacks) {
  const auto refused = [](const std::function<void()>& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "accepted; expected an error naming " << needle;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  refused([] { L::Dot(0)({attn::Input({3, 4}), attn::Input({3, 4})}); }, "axis 0");
  refused([] { L::Dot(2)({attn::Input({3, 4}), attn::Input({3, 5})}); }, "differ in size");
  refused([] { L::Dot(2)({attn::Input({3, 4, 2}), attn::Input({3, 4})}); }, "1 or 2 axes");
  refused([] { L::Dot(1)({attn::Input({3})}); }, "exactly 2 inputs");
  const auto config = [](const std::string& dot) {
    return nlohmann::json::parse(
        R"({"class_name": "Functional", "config": {"name": "m", "layers": [)"
        R"({"class_name": "InputLayer", "name": "a", "config": {"batch_shape": [null, 3, 4], "name": "a"}, "inbound_nodes": []},)"
        R"({"class_name": "Dot", "name": "dot", "config": {"name": "dot")" + dot +
        R"(}, "inbound_nodes": [{"args": [[{"class_name": "__keras_tensor__", "config": {"shape": [null, 3, 4], "dtype": "float32", "keras_history": ["a", 0, 0]}}, {"class_name": "__keras_tensor__", "config": {"shape": [null, 3, 4], "dtype": "float32", "keras_history": ["a", 0, 0]}}]], "kwargs": {}}]}],)"
        R"("input_layers": [["a", 0, 0]], "output_layers": [["dot", 0, 0]]}})");
  };
  EXPECT_EQ(attn::io::model_from_config(config(R"(, "axes": [2, 2], "normalize": false)")).outputs()[0]->shape,
            (Shape{3, 3}));
  refused([&] { attn::io::model_from_config(config(R"(, "axes": 2, "normalize": 1)")); }, "'normalize'");
  refused([&] { attn::io::model_from_config(config(R"(, "axes": [1, 2, 2])")); }, "'axes'");
}

// normalize=True: each input divided by its L2 norm along the contracted axis (Keras 3's
// ops.normalize), so the output is the cosine of the angle between rows; against the cosine worked
// out in double on every axis choice, and gradients by finite differences.
TEST_F(DotAndMerges, DotNormalizeIsTheCosineOnEveryAxisChoice) {
  std::mt19937 gen(9);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const DotCase& c : dot_cases()) {
    SCOPED_TRACE(attn::shape_to_string(c.x) + " . " + attn::shape_to_string(c.y));
    auto layer = std::make_shared<L::DotLayer>(c.axes, L::DotOptions{.normalize = true});
    const auto out = layer->call({attn::Input(c.x), attn::Input(c.y)});
    ASSERT_EQ(out[0]->shape, c.out);
    const int64_t batch = 3;
    std::vector<float> x(batch * attn::shape_size(c.x)), y(batch * attn::shape_size(c.y));
    for (float& v : x) v = u(gen);
    for (float& v : y) v = 3.0f * u(gen);  // the norms differ between the inputs
    std::vector<float> dy(batch * attn::shape_size(c.out), 1.0f);
    const LayerRun r = run_layer(*layer, {x, y}, batch, dy.size(), dy);
    const auto element = [](const std::vector<float>& v, int64_t s, const Shape& shape, int64_t axis, int64_t other,
                            int64_t k) {
      const int64_t size = attn::shape_size(shape);
      if (shape.size() == 1) return static_cast<double>(v[s * size + k]);
      return static_cast<double>(axis == 1 ? v[s * size + k * shape[1] + other] : v[s * size + other * shape[1] + k]);
    };
    const auto axis_of = [](const DotCase& d, size_t i, size_t rank) {
      const int64_t a = d.axes[d.axes.size() == 1 ? 0 : i];
      return a < 0 ? a + static_cast<int64_t>(rank) + 1 : a;
    };
    const int64_t ax = axis_of(c, 0, c.x.size()), ay = axis_of(c, 1, c.y.size());
    const int64_t depth = c.x[ax - 1];
    const int64_t mx = c.x.size() == 2 ? c.x[2 - ax] : 1, ny = c.y.size() == 2 ? c.y[2 - ay] : 1;
    for (int64_t s = 0; s < batch; ++s)
      for (int64_t m = 0; m < mx; ++m)
        for (int64_t n = 0; n < ny; ++n) {
          double dot = 0, xx = 0, yy = 0;
          for (int64_t k = 0; k < depth; ++k) {
            const double a = element(x, s, c.x, ax, m, k), b = element(y, s, c.y, ay, n, k);
            dot += a * b;
            xx += a * a;
            yy += b * b;
          }
          EXPECT_NEAR(r.y[s * mx * ny + m * ny + n], dot / std::sqrt(xx * yy), 2e-6) << s << "," << m << "," << n;
        }
    attn::clear_session();
    attn::testing::GradCheck g;
    g.layer = std::make_shared<L::DotLayer>(c.axes, L::DotOptions{.normalize = true});
    g.input_shapes = {c.x, c.y};
    attn::testing::check_layer_gradients(g);
    if (c.x == c.y) {  // cosine self-similarity: both paths add into one gradient buffer
      attn::testing::GradCheck self;
      self.layer = std::make_shared<L::DotLayer>(c.axes, L::DotOptions{.normalize = true});
      self.input_shapes = {c.x, c.y};
      self.input_source = {0, 0};
      attn::testing::check_layer_gradients(self);
    }
  }
}

// Worked by hand. x = (3, 4), y = (4, 3): out = 24 / 25, and with dout = 1
// dx = y / 25 - x out / 25 = (0.0448, -0.0336), orthogonal to x (scaling x changes nothing).
// A zero vector: Keras' norm floor of 1e-7 gives out = 0 and, since the clamped inverse norm is a
// constant, dx = 1e7 dout y / |y| (autodiff through min(rsqrt(0), 1e7)), dy = 0.
TEST_F(DotAndMerges, DotNormalizeByHandAndOnAZeroVector) {
  auto layer = std::make_shared<L::DotLayer>(std::vector<int64_t>{1}, L::DotOptions{.normalize = true});
  layer->call({attn::Input({2}), attn::Input({2})});
  const LayerRun r = run_layer(*layer, {{3.0f, 4.0f, 0.0f, 0.0f}, {4.0f, 3.0f, 3.0f, 4.0f}}, 2, 2, {1.0f, 1.0f});
  EXPECT_FLOAT_EQ(r.y[0], 0.96f);
  EXPECT_NEAR(r.dx[0][0], 0.0448f, 1e-7);
  EXPECT_NEAR(r.dx[0][1], -0.0336f, 1e-7);
  EXPECT_NEAR(r.dx[1][0], -0.0336f, 1e-7);  // dy = x / 25 - y out / 25, by symmetry
  EXPECT_NEAR(r.dx[1][1], 0.0448f, 1e-7);
  EXPECT_EQ(r.y[1], 0.0f);
  EXPECT_FLOAT_EQ(r.dx[0][2], 1e7f * 0.6f);
  EXPECT_FLOAT_EQ(r.dx[0][3], 1e7f * 0.8f);
  EXPECT_EQ(r.dx[1][2], 0.0f);
  EXPECT_EQ(r.dx[1][3], 0.0f);
  EXPECT_EQ(layer->get_config().at("normalize"), true);
}

// Cosine proximity between two learned projections, as Keras' similarity examples use it: the
// label is whether two vectors point the same way. Trains, and normalize=True survives .keras and
// .h5 (the reloaded model would predict differently without it).
TEST_F(DotAndMerges, CosineSimilarityModelLearnsAndReadsBack) {
  const int64_t n = 600, dims = 4;
  auto a = attn::Input({dims});
  auto b = attn::Input({dims});
  auto project = L::Dense(6, {.use_bias = false});
  auto cosine = L::Dot(1, {.normalize = true, .name = "cosine"})({project(a), project(b)});
  auto out = L::Dense(1, {.activation = "sigmoid"})(cosine);
  attn::Model model({a, b}, {out});
  model.compile(attn::optimizers::Adam({.learning_rate = 0.02f}), attn::losses::BinaryCrossentropy(), {"accuracy"},
                {.warn = false});
  std::mt19937 gen(4);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor xa({n, dims}), xb({n, dims}), labels({n, 1});
  for (int64_t s = 0; s < n; ++s) {
    const bool same = gen() % 2 == 0;
    const float scale = 0.5f + 2.0f * std::abs(normal(gen));  // lengths differ: only the angle counts
    for (int64_t k = 0; k < dims; ++k) {
      xa[s * dims + k] = normal(gen);
      xb[s * dims + k] = (same ? xa[s * dims + k] + 0.3f * normal(gen) : normal(gen)) * scale;
    }
    labels[s] = same ? 1.0f : 0.0f;
  }
  const attn::Dataset test{{xa.rows(500, 600), xb.rows(500, 600)}, labels.rows(500, 600)};
  const auto before = model.evaluate(test.xs, test.y);
  model.fit({xa.rows(0, 500), xb.rows(0, 500)}, labels.rows(0, 500), {.epochs = 40, .batch_size = 20, .verbose = 0});
  const auto after = model.evaluate(test.xs, test.y);
  EXPECT_LT(after.at("loss"), 0.7 * before.at("loss"));
  EXPECT_GT(after.at("accuracy"), 0.85);
  EXPECT_EQ(model.get_layer("cosine")->get_config().at("normalize"), true);
  attn::testing::expect_same_predictions_after_reload(model, test.xs);
}

// Attention written by hand, as Keras' seq2seq examples do: scores = Dot(axes=2)([q, k]),
// Activation("softmax"), context = Dot(axes=(2, 1))([weights, x]). The task needs the attention:
// the label is the value carried by the step whose marker is largest.
TEST_F(DotAndMerges, HandWrittenAttentionLearnsAndReadsBack) {
  const int64_t steps = 6, n = 600;
  auto x = attn::Input({steps, 2});
  auto q = L::Dense(8)(x);
  auto k = L::Dense(8)(x);
  auto weights = L::Activation("softmax")(L::Dot(2)({q, k}));
  auto context = L::Dot({2, 1})({weights, x});
  auto h = L::Multiply()({context, L::Dense(2, {.activation = "sigmoid"})(x)});
  h = L::Subtract()({L::Maximum()({context, h}), L::Minimum()({context, h})});
  auto out = L::Dense(2)(L::Flatten()(L::Average()({context, h})));
  attn::Model model(x, out);
  model.compile(attn::optimizers::Adam({.learning_rate = 0.01f}),
                attn::losses::SparseCategoricalCrossentropy({.from_logits = true}), {"accuracy"}, {.warn = false});
  std::mt19937 gen(2);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Tensor data({n, steps, 2}), labels({n});
  for (int64_t s = 0; s < n; ++s) {
    int64_t best = 0;
    for (int64_t t = 0; t < steps; ++t) {
      data[(s * steps + t) * 2] = u(gen);  // marker
      data[(s * steps + t) * 2 + 1] = static_cast<float>(gen() % 2);  // value
      if (data[(s * steps + t) * 2] > data[(s * steps + best) * 2]) best = t;
    }
    labels[s] = data[(s * steps + best) * 2 + 1];
  }
  const auto before = model.evaluate(data.rows(500, 600), labels.rows(500, 600));
  model.fit(data.rows(0, 500), labels.rows(0, 500), {.epochs = 30, .batch_size = 20, .verbose = 0});
  const auto after = model.evaluate(data.rows(500, 600), labels.rows(500, 600));
  EXPECT_LT(after.at("loss"), 0.5 * before.at("loss"));
  EXPECT_GT(after.at("accuracy"), 0.85);
  attn::testing::expect_same_predictions_after_reload(model, data.rows(500, 600));
}

}  // namespace
