// The model: Keras 3's summary text (as `rich` lays it out on a non-terminal console,
// derived from keras/src/utils/summary_utils.py and rich's table/wrap rules, checked
// against summaries Keras printed: 76 columns, widths 19/17/10/17 or 31/22/13, word
// wrap, ellipsis for words wider than a column, optimizer variables in the totals),
// parameter counts, Sequential vs Functional, a layer called twice, gradients summed
// where a node feeds several consumers (SGD step vs finite differences of evaluate),
// and the hidden logits of section 5 (loss values and gradient by hand, the warning).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>

#include "attn/attn.hpp"
#include "attn/reference_model.hpp"

namespace {

namespace L = attn::layers;
using attn::Model;
using attn::Tensor;

class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(11);
  }
};

TEST_F(ModelTest, ReferenceModelSummaryIsKeras) {
  Model model = attn::reference_model();
  model.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}),
                {"accuracy"}, {.warn = false});
  // Keras: the attention row's connections are one string "input_layer[0][0], input_layer[0][0]";
  // its first word (with the comma, 18 columns) is wider than the 17-column cell, so it gets
  // a line of its own, cut with an ellipsis.
  const std::string expected = R"(Model: "functional"
┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓
┃ Layer (type)        ┃ Output Shape      ┃    Param # ┃ Connected to      ┃
┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩
│ input_layer         │ (None, 784, 1)    │          0 │ -                 │
│ (InputLayer)        │                   │            │                   │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ attention           │ (None, 784, 1)    │          1 │ input_layer[0][0… │
│ (Attention)         │                   │            │ input_layer[0][0] │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ flatten (Flatten)   │ (None, 784)       │          0 │ attention[0][0]   │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ dense (Dense)       │ (None, 100)       │     78,500 │ flatten[0][0]     │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ dense_1 (Dense)     │ (None, 10)        │      1,010 │ dense[0][0]       │
└─────────────────────┴───────────────────┴────────────┴───────────────────┘
 Total params: 79,511 (310.59 KB)
 Trainable params: 79,511 (310.59 KB)
 Non-trainable params: 0 (0.00 B)
)";
  EXPECT_EQ(model.summary(), expected);
  std::ostringstream out;
  model.summary(out);
  EXPECT_EQ(out.str(), expected);
}

TEST_F(ModelTest, ReferenceModelParameterCount) {
  Model model = attn::reference_model();
  EXPECT_EQ(model.count_params(), 79511);
  EXPECT_EQ(model.count_trainable_params(), 79511);
  // Each weight starts on a 64-byte line of the parameter buffer; the floats between are padding.
  int64_t end = 0;
  for (attn::Weight* w : model.weights()) {
    EXPECT_EQ(w->offset % 16, 0) << w->name;
    EXPECT_GE(w->offset, end) << w->name;
    EXPECT_EQ(w->value.data(), model.parameter_buffer() + w->offset) << w->name;
    end = w->offset + w->value.size();
  }
  EXPECT_EQ(model.parameter_buffer_floats(), end);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(model.parameter_buffer()) % 64, 0u);
  std::vector<std::pair<std::string, int64_t>> layers;
  for (const auto& l : model.layers()) layers.emplace_back(l->name(), l->count_params());
  EXPECT_EQ(layers, (std::vector<std::pair<std::string, int64_t>>{
                        {"input_layer", 0}, {"attention", 1}, {"flatten", 0}, {"dense", 78500}, {"dense_1", 1010}}));
  // The Attention scale starts at 1 and Dense biases at 0; kernels are glorot-uniform.
  auto w = model.get_weights_flat();
  EXPECT_EQ(w[0], 1.0f);
  const float limit = std::sqrt(6.0f / (784 + 100));
  for (int64_t i = 1; i < 1 + 78400; ++i) ASSERT_LE(std::fabs(w[i]), limit);
  for (int64_t i = 1 + 78400; i < 1 + 78500; ++i) ASSERT_EQ(w[i], 0.0f);
  EXPECT_EQ(model.trainable_variables().size(), 5u);
  EXPECT_EQ(model.trainable_variables()[0].name, "scale");
}

TEST_F(ModelTest, SequentialSummaryHasNoInputRowAndNoConnections) {
  attn::Sequential model({4}, {L::Dense(3, {.activation = "relu"}), L::Dense(2)});
  EXPECT_EQ(model.class_name(), "Sequential");
  EXPECT_EQ(model.name(), "sequential");
  EXPECT_EQ(model.summary(), R"(Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ dense (Dense)                   │ (None, 3)              │            15 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 2)              │             8 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 23 (92.00 B)
 Trainable params: 23 (92.00 B)
 Non-trainable params: 0 (0.00 B)
)");
}

TEST_F(ModelTest, FunctionalChainSummaryIsSequentialLikeWithItsInputRow) {
  auto in = attn::Input({4});
  auto h = L::Dense(3, {.activation = "relu"})(in);
  auto out = L::Dense(2)(h);
  Model model(in, out);
  EXPECT_EQ(model.class_name(), "Functional");
  EXPECT_EQ(model.summary(), R"(Model: "functional"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ input_layer (InputLayer)        │ (None, 4)              │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense (Dense)                   │ (None, 3)              │            15 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 2)              │             8 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 23 (92.00 B)
 Trainable params: 23 (92.00 B)
 Non-trainable params: 0 (0.00 B)
)");
}

TEST_F(ModelTest, SummaryCountsTheOptimizerOnceBuilt) {
  // Keras: iteration (int64) + learning_rate (float32) + Adam's momentum and velocity per
  // trainable parameter, added to the total.
  attn::Sequential model({4}, {L::Dense(3), L::Dense(2)});
  model.compile(attn::optimizers::Adam(), attn::losses::MeanSquaredError());
  EXPECT_EQ(model.summary().find("Optimizer params"), std::string::npos);
  Tensor x({2, 4}), y({2, 2});
  model.train_on_batch({x}, y);
  const std::string s = model.summary();
  const std::string tail = " Total params: 71 (288.00 B)\n Trainable params: 23 (92.00 B)\n"
                           " Non-trainable params: 0 (0.00 B)\n Optimizer params: 48 (196.00 B)\n";
  ASSERT_GE(s.size(), tail.size());
  EXPECT_EQ(s.substr(s.size() - tail.size()), tail) << s;

  // Plain SGD has no slots: only its two scalars.
  attn::clear_session();
  attn::Sequential sgd_model({4}, {L::Dense(3)});
  sgd_model.compile(attn::optimizers::SGD(), attn::losses::MeanSquaredError());
  Tensor y3({2, 3});
  sgd_model.train_on_batch({x}, y3);
  const std::string s2 = sgd_model.summary();
  EXPECT_NE(s2.find(" Total params: 17 (72.00 B)\n"), std::string::npos) << s2;
  EXPECT_NE(s2.find(" Optimizer params: 2 (12.00 B)\n"), std::string::npos) << s2;
}

TEST_F(ModelTest, SharedLayerIsListedOnceWithEveryCall) {
  // The same Dense called twice: not sequential-like; one row naming both inputs, showing
  // the shape of its last call.
  auto in = attn::Input({2});
  L::Dense d(2, {.name = "shared_dense_layer"});
  auto once = d(in);
  auto twice = d(once);
  Model model(in, twice, "twice");
  EXPECT_EQ(model.layers().size(), 2u);
  EXPECT_EQ(model.count_params(), 6);
  EXPECT_EQ(model.summary(), R"(Model: "twice"
┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓
┃ Layer (type)        ┃ Output Shape      ┃    Param # ┃ Connected to      ┃
┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩
│ input_layer         │ (None, 2)         │          0 │ -                 │
│ (InputLayer)        │                   │            │                   │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ shared_dense_layer  │ (None, 2)         │          6 │ input_layer[0][0… │
│ (Dense)             │                   │            │ shared_dense_lay… │
└─────────────────────┴───────────────────┴────────────┴───────────────────┘
 Total params: 6 (24.00 B)
 Trainable params: 6 (24.00 B)
 Non-trainable params: 0 (0.00 B)
)");
  // Applying it twice is W(Wx + b) + b.
  auto w = model.get_weights_flat();  // kernel (2,2) row-major, bias (2)
  Tensor x({1, 2}, {0.5f, -1.5f});
  Tensor out = model.predict(x);
  float h[2], o[2];
  for (int j = 0; j < 2; ++j) h[j] = x[0] * w[0 * 2 + j] + x[1] * w[1 * 2 + j] + w[4 + j];
  for (int j = 0; j < 2; ++j) o[j] = h[0] * w[0 * 2 + j] + h[1] * w[1 * 2 + j] + w[4 + j];
  EXPECT_NEAR(out[0], o[0], 1e-6);
  EXPECT_NEAR(out[1], o[1], 1e-6);
}

TEST_F(ModelTest, SequentialAndFunctionalAreTheSameNetwork) {
  attn::set_random_seed(5);
  attn::clear_session();
  attn::Sequential seq({3, 2}, {L::Flatten(), L::Dense(4, {.activation = "tanh"}), L::Dense(2)});
  attn::set_random_seed(5);
  attn::clear_session();
  auto in = attn::Input({3, 2});
  auto out = L::Dense(2)(L::Dense(4, {.activation = "tanh"})(L::Flatten()(in)));
  Model fun(in, out);
  EXPECT_EQ(seq.class_name(), "Sequential");
  EXPECT_EQ(fun.class_name(), "Functional");
  // Keras: a Sequential's layers leave out its generated InputLayer, a Functional's list it.
  ASSERT_EQ(seq.layers().size() + 1, fun.layers().size());
  EXPECT_EQ(seq.layers()[0]->class_name(), "Flatten");
  EXPECT_EQ(fun.layers()[0]->class_name(), "InputLayer");
  EXPECT_EQ(seq.all_layers().size(), fun.layers().size());
  EXPECT_EQ(seq.get_weights_flat(), fun.get_weights_flat());
  Tensor x({5, 3, 2});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.7f * static_cast<float>(i));
  EXPECT_EQ(seq.predict(x).to_vector(), fun.predict(x).to_vector());
}

// Model::activations: a hidden layer's values, checked by hand, for several batches and thread
// counts; the model's own output read this way equals predict's.
TEST_F(ModelTest, ActivationsReturnAnyLayersValues) {
  attn::set_random_seed(7);
  auto in = attn::Input({3});
  L::Dense hidden(4, {.activation = "relu"});
  auto h = hidden(in);
  auto out = L::Dense(2)(h);
  Model model(in, out);
  Tensor x({7, 3});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = std::cos(1.3f * static_cast<float>(i));
  const auto w = hidden->weights()[0].value.to_vector();  // [3, 4]
  const auto b = hidden->weights()[1].value.to_vector();
  for (int threads : {1, 2, 3}) {
    model.set_threads(threads);
    attn::PredictOptions options;
    options.batch_size = 3;  // three runs, the last one short
    const auto values = model.activations({x}, {h, in, out}, options);
    ASSERT_EQ(values.size(), 3u);
    ASSERT_EQ(values[0].shape(), (attn::Shape{7, 4}));
    for (int64_t r = 0; r < 7; ++r)
      for (int64_t j = 0; j < 4; ++j) {
        double z = b[j];
        for (int64_t k = 0; k < 3; ++k) z += x[r * 3 + k] * w[k * 4 + j];
        EXPECT_NEAR(values[0][r * 4 + j], std::max(z, 0.0), 1e-6) << threads << ": " << r << "," << j;
      }
    EXPECT_EQ(values[1].to_vector(), x.to_vector());
    EXPECT_EQ(values[2].to_vector(), model.predict(x).to_vector());
  }
  auto other = attn::Input({3});
  auto foreign = L::Dense(1)(other);
  EXPECT_THROW(model.activations({x}, {foreign}), std::invalid_argument);
  EXPECT_THROW(model.activations({Tensor({7, 2})}, {h}), std::invalid_argument);  // wrong input shape
}

// Loss of a model on one batch, by evaluate (float32 forward).
double batch_loss(Model& m, const Tensor& x, const Tensor& y) {
  return m.evaluate(x, y, {.batch_size = static_cast<int>(x.dim(0))}).at("loss");
}

// Gradient of the mean batch loss from one SGD step with learning rate 1: g = w - w'.
std::vector<double> sgd_gradient(Model& m, const Tensor& x, const Tensor& y) {
  auto before = m.get_weights_flat();
  m.train_on_batch({x}, y);
  auto after = m.get_weights_flat();
  m.set_weights_flat(before);
  std::vector<double> g(before.size());
  for (size_t i = 0; i < g.size(); ++i) g[i] = double(before[i]) - double(after[i]);
  return g;
}

// h feeds three consumers: the query and value of one Attention call (the same node
// twice) and the value of another; the attention output feeds the second Attention too.
Model fan_out_model() {
  auto in = attn::Input({3, 2});
  auto h = L::Dense(3, {.activation = "tanh"})(in);
  auto a = L::Attention({.use_scale = true})({h, h});
  auto b = L::Attention({.use_scale = true})({a, h});
  auto out = L::Dense(2)(L::Flatten()(b));
  return Model(in, out);
}

// One SGD step's gradient (learning rate 1) against central finite differences of the batch
// loss, on 1 and 2 threads.
void expect_gradient_matches_finite_differences(Model (*build)(), const Tensor& x, const Tensor& y) {
  for (int threads : {1, 2}) {
    attn::clear_session();
    attn::set_random_seed(21);
    Model m = build();
    m.set_threads(threads);
    auto w0 = m.get_weights_flat();
    m.compile(attn::optimizers::SGD({.learning_rate = 1.0f}),
              attn::losses::SparseCategoricalCrossentropy({.from_logits = true}));
    const std::vector<double> g = sgd_gradient(m, x, y);
    ASSERT_EQ(m.get_weights_flat(), w0);
    double max_fd = 0;
    std::vector<double> fd(g.size());
    const double eps = 2e-3;
    for (size_t i = 0; i < g.size(); ++i) {
      auto w = w0;
      w[i] = w0[i] + static_cast<float>(eps);
      m.set_weights_flat(w);
      const double up = batch_loss(m, x, y);
      w[i] = w0[i] - static_cast<float>(eps);
      m.set_weights_flat(w);
      const double down = batch_loss(m, x, y);
      const double step = double(w0[i] + static_cast<float>(eps)) - double(w0[i] - static_cast<float>(eps));
      fd[i] = (up - down) / step;
      max_fd = std::max(max_fd, std::fabs(fd[i]));
    }
    m.set_weights_flat(w0);
    ASSERT_GT(max_fd, 1e-2);
    for (size_t i = 0; i < g.size(); ++i)
      EXPECT_NEAR(g[i], fd[i], 2e-3 * max_fd + 2e-2 * std::fabs(fd[i])) << "parameter " << i << ", " << threads
                                                                          << " thread(s)";
  }
}

void random_batch(Tensor& x, Tensor& y) {
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  for (int64_t i = 0; i < x.size(); ++i) x[i] = u(gen);
  for (int64_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(i % 2);
}

TEST_F(ModelTest, GradientsAreSummedOverEveryConsumer) {
  Tensor x({4, 3, 2}), y({4});
  random_batch(x, y);
  expect_gradient_matches_finite_differences(fan_out_model, x, y);
}

// Flatten and Reshape share their input's buffers: h feeds an Attention query directly and its
// value through Flatten then Reshape (views, whose gradient adds into h's own), and the model
// output is a Reshape (which keeps its own buffer: the loss writes its gradient).
Model reshape_view_model() {
  auto in = attn::Input({3, 2});
  auto h = L::Dense(3, {.activation = "tanh"})(in);
  auto back = L::Reshape({3, 3})(L::Flatten()(h));
  auto a = L::Attention({.use_scale = true})({h, back});
  auto logits = L::Dense(2)(L::Flatten()(a));
  return Model(in, L::Reshape({2})(logits));
}

TEST_F(ModelTest, ReshapeViewsPassGradientsToEveryConsumer) {
  Tensor x({5, 3, 2}), y({5});
  random_batch(x, y);
  expect_gradient_matches_finite_differences(reshape_view_model, x, y);
}

// Input(3) -> Dense(4, activation) named "head", with fixed weights.
Model head_model(const std::string& activation) {
  auto in = attn::Input({3});
  auto out = L::Dense(4, {.activation = activation, .name = "head"})(in);
  Model m(in, out);
  std::vector<float> w(16);
  for (int i = 0; i < 12; ++i) w[i] = 0.25f * static_cast<float>((i * 5) % 7) - 0.7f;  // kernel (3,4)
  for (int j = 0; j < 4; ++j) w[12 + j] = 0.1f * static_cast<float>(j) - 0.15f;         // bias
  m.set_weights_flat(w);
  return m;
}

struct HeadData {
  Tensor x{{2, 3}, {0.3f, -1.2f, 0.8f, 1.1f, 0.4f, -0.6f}};
  Tensor y{{2}, {2.0f, 0.0f}};
};

// Pre-activation logits of head_model for sample i.
std::vector<double> head_logits(Model& m, const Tensor& x, int i) {
  auto w = m.get_weights_flat();
  std::vector<double> z(4);
  for (int j = 0; j < 4; ++j) {
    z[j] = w[12 + j];
    for (int k = 0; k < 3; ++k) z[j] += double(x[i * 3 + k]) * w[k * 4 + j];
  }
  return z;
}

double xent_from_logits(const std::vector<double>& z, int label) {
  double m = *std::max_element(z.begin(), z.end()), s = 0;
  for (double v : z) s += std::exp(v - m);
  return m + std::log(s) - z[label];
}

std::vector<double> sigmoid(std::vector<double> z) {
  for (double& v : z) v = 1.0 / (1.0 + std::exp(-v));
  return z;
}

int count_lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

TEST_F(ModelTest, HiddenLogitsSigmoidHeadFromLogitsUsesPreActivation) {
  Model m = head_model("sigmoid");
  HeadData d;
  ::testing::internal::CaptureStderr();
  m.compile(attn::optimizers::SGD({.learning_rate = 1.0f}),
            attn::losses::SparseCategoricalCrossentropy({.from_logits = true}));
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(m.uses_hidden_logits());
  EXPECT_EQ(count_lines(err), 1) << err;
  EXPECT_EQ(err.back(), '\n');
  EXPECT_NE(err.find("warning"), std::string::npos);
  EXPECT_NE(err.find("head"), std::string::npos);
  EXPECT_NE(err.find("from_logits"), std::string::npos);

  double expected = 0;
  for (int i = 0; i < 2; ++i) expected += xent_from_logits(head_logits(m, d.x, i), int(d.y[i])) / 2;
  EXPECT_NEAR(batch_loss(m, d.x, d.y), expected, 1e-5 * expected);
  // Not the loss of the sigmoid outputs taken as logits.
  double outputs_as_logits = 0;
  for (int i = 0; i < 2; ++i) outputs_as_logits += xent_from_logits(sigmoid(head_logits(m, d.x, i)), int(d.y[i])) / 2;
  EXPECT_GT(std::fabs(expected - outputs_as_logits), 0.05);

  // predict() still returns the sigmoid outputs.
  Tensor p = m.predict(d.x);
  auto s0 = sigmoid(head_logits(m, d.x, 0));
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(p[j], s0[j], 1e-6);

  // The gradient reaches the bias as softmax(z) - onehot, averaged over the batch
  // (no sigmoid derivative in between).
  auto before = m.get_weights_flat();
  std::vector<double> expected_db(4, 0.0);
  for (int i = 0; i < 2; ++i) {
    auto z = head_logits(m, d.x, i);
    double mx = *std::max_element(z.begin(), z.end()), s = 0;
    for (double v : z) s += std::exp(v - mx);
    for (int j = 0; j < 4; ++j) expected_db[j] += (std::exp(z[j] - mx) / s - (j == int(d.y[i]) ? 1 : 0)) / 2;
  }
  m.train_on_batch({d.x}, d.y);
  auto after = m.get_weights_flat();
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(before[12 + j] - after[12 + j], expected_db[j], 1e-6);
}

TEST_F(ModelTest, HiddenLogitsOutputsSemanticsFeedsTheOutputsAsLogits) {
  Model m = head_model("sigmoid");
  HeadData d;
  ::testing::internal::CaptureStderr();
  m.compile(attn::optimizers::SGD(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}), {},
            {.logits_semantics = attn::LogitsSemantics::kOutputs});
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(m.uses_hidden_logits());
  EXPECT_EQ(count_lines(err), 1) << err;
  double expected = 0;
  for (int i = 0; i < 2; ++i) expected += xent_from_logits(sigmoid(head_logits(m, d.x, i)), int(d.y[i])) / 2;
  EXPECT_NEAR(batch_loss(m, d.x, d.y), expected, 1e-5 * expected);
}

TEST_F(ModelTest, HiddenLogitsWarningCanBeSilencedAndIsNotGivenWithoutFromLogits) {
  HeadData d;
  {
    Model m = head_model("sigmoid");
    ::testing::internal::CaptureStderr();
    m.compile(attn::optimizers::SGD(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}), {},
              {.warn = false});
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
    EXPECT_TRUE(m.uses_hidden_logits());
  }
  {
    // from_logits=False with a sigmoid head: TensorFlow still takes the hidden logits, silently.
    Model m = head_model("sigmoid");
    ::testing::internal::CaptureStderr();
    m.compile(attn::optimizers::SGD(), attn::losses::SparseCategoricalCrossentropy({.from_logits = false}));
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
    EXPECT_TRUE(m.uses_hidden_logits());
    double expected = 0;
    for (int i = 0; i < 2; ++i) expected += xent_from_logits(head_logits(m, d.x, i), int(d.y[i])) / 2;
    EXPECT_NEAR(batch_loss(m, d.x, d.y), expected, 1e-5 * expected);
  }
  {
    // A linear head has no hidden logits: nothing to warn about.
    Model m = head_model("linear");
    ::testing::internal::CaptureStderr();
    m.compile(attn::optimizers::SGD(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}));
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
    EXPECT_FALSE(m.uses_hidden_logits());
  }
}

TEST_F(ModelTest, HiddenLogitsSoftmaxHeadSkipsTheProbabilityClip) {
  // z = (0, 0, 0, 50) for label 0: exact cross-entropy ~50; through clipped probabilities
  // (the JAX/PyTorch path) it is capped at -log(1e-7) ~ 16.118.
  auto make = [] {
    auto in = attn::Input({1});
    auto out = L::Dense(4, {.activation = "softmax"})(in);
    Model m(in, out);
    m.set_weights_flat({0, 0, 0, 50, 0, 0, 0, 0});
    return m;
  };
  Tensor x({1, 1}, {1.0f}), y({1}, {0.0f});
  Model tf = make();
  tf.compile(attn::optimizers::SGD(), attn::losses::SparseCategoricalCrossentropy());
  EXPECT_TRUE(tf.uses_hidden_logits());
  EXPECT_NEAR(batch_loss(tf, x, y), 50.0, 1e-3);
  Model outputs = make();
  outputs.compile(attn::optimizers::SGD(), attn::losses::SparseCategoricalCrossentropy(), {},
                  {.logits_semantics = attn::LogitsSemantics::kOutputs});
  EXPECT_FALSE(outputs.uses_hidden_logits());
  EXPECT_NEAR(batch_loss(outputs, x, y), -std::log(1e-7), 1e-3);
}

}  // namespace
