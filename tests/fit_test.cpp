// Model.fit against keras-semantics.md sections 6 and 7: a small attention network
// learns a separable problem; validation_split takes the last samples before any
// shuffling; the last partial batch is kept; epoch values are batch-size-weighted means
// (checked against per-sample losses computed by hand); validation_freq; History;
// bit-identical weights for the same seed and thread count; what verbose 0 and 2 print.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>

#include "attn/attn.hpp"

namespace {

namespace L = attn::layers;
namespace C = attn::callbacks;
using attn::Model;
using attn::Tensor;

class Fit : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(17);
  }
};

// Class 0: every token's first feature is positive; class 1: negative. Attention outputs
// convex combinations of the tokens, so the sign survives it: separable after attention.
struct Separable {
  Tensor x, y;
  Separable(int64_t n, uint32_t seed) : x({n, 4, 2}), y({n}) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int64_t i = 0; i < n; ++i) {
      const int c = static_cast<int>(gen() % 2);
      y[i] = static_cast<float>(c);
      for (int t = 0; t < 4; ++t) {
        x[(i * 4 + t) * 2 + 0] = (c == 0 ? 1.0f : -1.0f) * (0.2f + u(gen));
        x[(i * 4 + t) * 2 + 1] = 2.0f * u(gen) - 1.0f;
      }
    }
  }
};

Model attention_model() {
  auto in = attn::Input({4, 2});
  auto a = L::Attention({.use_scale = true})({in, in});
  auto h = L::Dense(8, {.activation = "relu"})(L::Flatten()(a));
  auto out = L::Dense(2, {.activation = "softmax"})(h);
  return Model(in, out);
}

struct BatchCounter : C::Callback {
  int batches = 0;
  void on_train_batch_end(int, const C::Logs&) override { ++batches; }
};

TEST_F(Fit, LearnsASeparableProblem) {
  Separable train(512, 1), test(256, 2);
  Model m = attention_model();
  m.set_threads(2);
  m.compile(attn::optimizers::Adam({.learning_rate = 0.01f}), attn::losses::SparseCategoricalCrossentropy(),
            {"accuracy"});
  auto h = m.fit(train.x, train.y, {.epochs = 8, .batch_size = 32, .verbose = 0,
                                    .validation_data = attn::Dataset{test.x, test.y}});
  ASSERT_EQ(h.history["accuracy"].size(), 8u);
  EXPECT_EQ(h.epoch, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(h.seconds.size(), 8u);
  EXPECT_FALSE(h.stopped_early);
  EXPECT_LT(h.history["loss"].back(), h.history["loss"].front());
  EXPECT_GE(h.history["val_accuracy"].back(), 0.95);
  auto r = m.evaluate(test.x, test.y);
  EXPECT_GE(r.at("accuracy"), 0.95);
  // History's val_ values are evaluate() on the end-of-epoch weights.
  EXPECT_EQ(r.at("accuracy"), h.history["val_accuracy"].back());
  EXPECT_EQ(r.at("loss"), h.history["val_loss"].back());
}

TEST_F(Fit, ValidationSplitTakesTheLastSamplesBeforeShuffling) {
  Separable d(10, 3);
  Model m = attention_model();
  m.compile(attn::optimizers::Adam({.learning_rate = 0.05f}), attn::losses::SparseCategoricalCrossentropy(),
            {"accuracy"});
  auto counter = std::make_shared<BatchCounter>();
  // floor(10 * (1 - 0.35)) = 6 training samples, the last 4 for validation.
  auto h = m.fit(d.x, d.y,
                 {.epochs = 2, .batch_size = 4, .verbose = 0, .validation_split = 0.35, .shuffle = true,
                  .callbacks = {counter}});
  EXPECT_EQ(counter->batches, 2 * 2);  // ceil(6 / 4) steps per epoch
  auto last4 = m.evaluate(d.x.rows(6, 10), d.y.rows(6, 10), {.batch_size = 4});
  EXPECT_EQ(h.history["val_loss"].back(), last4.at("loss"));
  EXPECT_EQ(h.history["val_accuracy"].back(), last4.at("accuracy"));
  auto last3 = m.evaluate(d.x.rows(7, 10), d.y.rows(7, 10), {.batch_size = 4});
  EXPECT_NE(h.history["val_loss"].back(), last3.at("loss"));
  EXPECT_THROW(m.fit(d.x, d.y, {.verbose = 0, .validation_split = 1.0}), std::invalid_argument);
}

// Input(2) -> Dense(3) logits, fixed weights; SGD with learning rate 0 keeps them.
Model frozen_linear() {
  auto in = attn::Input({2});
  auto out = L::Dense(3)(in);
  Model m(in, out);
  m.set_weights_flat({0.5f, -1.0f, 0.25f, 1.5f, 0.75f, -0.5f, 0.1f, 0.0f, -0.1f});
  m.compile(attn::optimizers::SGD({.learning_rate = 0.0f}),
            attn::losses::SparseCategoricalCrossentropy({.from_logits = true}), {"accuracy"});
  return m;
}

TEST_F(Fit, LastPartialBatchIsKeptAndEpochValuesAreSampleMeans) {
  const int64_t n = 10;
  Tensor x({n, 2}), y({n});
  for (int64_t i = 0; i < n; ++i) {
    const float big = i >= 8 ? 6.0f : 1.0f;  // the short last batch has much larger losses
    x[i * 2] = big * std::cos(1.3f * static_cast<float>(i));
    x[i * 2 + 1] = big * std::sin(0.7f * static_cast<float>(i));
    y[i] = static_cast<float>((i * 2) % 3);
  }
  Model m = frozen_linear();
  // Per-sample losses and hits by hand from the model's outputs (logits).
  Tensor logits = m.predict(x);
  std::vector<double> loss(n);
  double hits = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* z = logits.data() + i * 3;
    const double mx = std::max({z[0], z[1], z[2]});
    const double lse = mx + std::log(std::exp(z[0] - mx) + std::exp(z[1] - mx) + std::exp(z[2] - mx));
    loss[i] = lse - z[static_cast<int>(y[i])];
    hits += (std::max_element(z, z + 3) - z) == static_cast<int>(y[i]);
  }
  double sample_mean = 0;
  for (double l : loss) sample_mean += l / n;
  const double batch_means[3] = {(loss[0] + loss[1] + loss[2] + loss[3]) / 4,
                                 (loss[4] + loss[5] + loss[6] + loss[7]) / 4, (loss[8] + loss[9]) / 2};
  const double mean_of_batch_means = (batch_means[0] + batch_means[1] + batch_means[2]) / 3;
  ASSERT_GT(std::fabs(sample_mean - mean_of_batch_means), 0.05);

  auto counter = std::make_shared<BatchCounter>();
  auto h = m.fit(x, y, {.epochs = 2, .batch_size = 4, .verbose = 0, .shuffle = false, .callbacks = {counter}});
  EXPECT_EQ(counter->batches, 2 * 3);  // ceil(10 / 4) = 3 steps: 4, 4 and 2 samples
  for (int e = 0; e < 2; ++e) {
    EXPECT_NEAR(h.history["loss"][e], sample_mean, 1e-6 * sample_mean);
    EXPECT_NEAR(h.history["accuracy"][e], hits / n, 1e-7);
  }
  // Shuffling changes the batches but not the weighted mean (up to float rounding).
  auto hs = m.fit(x, y, {.epochs = 1, .batch_size = 4, .verbose = 0, .shuffle = true});
  EXPECT_NEAR(hs.history["loss"][0], sample_mean, 1e-5 * sample_mean);
  // evaluate() weighs its batches the same way.
  EXPECT_NEAR(m.evaluate(x, y, {.batch_size = 4}).at("loss"), sample_mean, 1e-6 * sample_mean);
  EXPECT_NEAR(m.evaluate(x, y, {.batch_size = 3}).at("loss"), sample_mean, 1e-6 * sample_mean);
}

TEST_F(Fit, ValidationFreqAndHistoryKeys) {
  Separable d(12, 4), v(6, 5);
  Model m = attention_model();
  m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy(), {"accuracy"});
  auto h = m.fit(d.x, d.y,
                 {.epochs = 4, .batch_size = 5, .verbose = 0, .validation_data = attn::Dataset{v.x, v.y},
                  .validation_freq = 2});
  std::vector<std::string> keys;
  for (const auto& [k, values] : h.history) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"accuracy", "loss", "val_accuracy", "val_loss"}));
  EXPECT_EQ(h.history["loss"].size(), 4u);
  EXPECT_EQ(h.history["val_loss"].size(), 2u);  // after epochs 2 and 4 (1-based)
}

std::vector<float> train_weights(uint64_t model_seed, int threads) {
  attn::clear_session();
  attn::set_random_seed(17);
  Separable d(64, 6);
  Model m = attention_model();
  m.set_threads(threads);
  m.set_seed(model_seed);
  m.compile(attn::optimizers::Adam({.learning_rate = 0.01f}), attn::losses::SparseCategoricalCrossentropy(),
            {"accuracy"});
  m.fit(d.x, d.y, {.epochs = 2, .batch_size = 10, .verbose = 0});
  return m.get_weights_flat();
}

TEST_F(Fit, SameSeedAndThreadsGiveBitIdenticalWeights) {
  for (int threads : {1, 2}) {
    const auto a = train_weights(100, threads);
    const auto b = train_weights(100, threads);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << threads << " thread(s)";
    // Another seed shuffles differently, from the same initial weights.
    EXPECT_NE(a, train_weights(101, threads)) << threads << " thread(s)";
  }
}

TEST_F(Fit, VerboseZeroPrintsNothing) {
  Separable d(20, 7), v(8, 8);
  Model m = attention_model();
  m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy(), {"accuracy"});
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  m.fit(d.x, d.y, {.epochs = 3, .batch_size = 6, .verbose = 0, .validation_data = attn::Dataset{v.x, v.y}});
  m.evaluate(v.x, v.y);
  m.predict(v.x);
  const std::string err = ::testing::internal::GetCapturedStderr();
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(out, "");
  EXPECT_EQ(err, "");
}

// The layout of progress text: every run of digits becomes "9", every step-time unit "s".
std::string shape_of(const std::string& text) {
  std::string s;
  for (size_t i = 0; i < text.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(text[i]))) {
      if (s.empty() || s.back() != '9') s += '9';
    } else {
      s += text[i];
    }
  }
  for (const char* unit : {"9us/step", "9ms/step"})
    for (size_t at = s.find(unit); at != std::string::npos; at = s.find(unit)) s.replace(at, 8, "9s/step");
  return s;
}

// Keras 3's verbose=2 line: "{cur}/{target} - {elapsed}s - {t}ms/step - key: value ...".
constexpr const char* kEpochLine =
    "9/9 - 9s - 9s/step - accuracy: 9.9 - loss: 9.9 - val_accuracy: 9.9 - val_loss: 9.9\n";

TEST_F(Fit, VerboseTwoPrintsOneLinePerEpoch) {
  Separable d(20, 7), v(8, 8);
  Model m = attention_model();
  m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy(), {"accuracy"});
  ::testing::internal::CaptureStdout();
  m.fit(d.x, d.y, {.epochs = 2, .batch_size = 6, .verbose = 2, .validation_data = attn::Dataset{v.x, v.y}});
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(shape_of(out), "Epoch 9/9\n" + std::string(kEpochLine) + "Epoch 9/9\n" + kEpochLine) << out;
  EXPECT_EQ(out.substr(0, 10), "Epoch 1/2\n");
  EXPECT_NE(out.find("\nEpoch 2/2\n"), std::string::npos);
  EXPECT_EQ(out.find("\n4/4 - "), 9u);
  // Every value has four decimals.
  for (size_t at = out.find(": "); at != std::string::npos; at = out.find(": ", at + 1)) {
    const size_t dot = out.find('.', at);
    ASSERT_NE(dot, std::string::npos);
    EXPECT_EQ(out.find_first_not_of("0123456789", dot + 1), dot + 5) << out.substr(at);
  }
}

}  // namespace

// A non-finite input value is refused before anything runs, naming the call, input and sample,
// and the weights stay as they were.
TEST_F(Fit, NonFiniteInputIsRefusedNamingTheSample) {
  Separable d(12, 5);
  Model m = attention_model();
  m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy(), {"accuracy"});
  const auto before = m.get_weights_flat();
  const float bad_values[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity()};
  for (const float bad : bad_values) {
    Tensor x = d.x.clone();
    x[7 * 8 + 5] = bad;  // sample 7 of [12, 4, 2]
    const auto expect_refused = [&](const std::function<void()>& call, const std::string& what) {
      try {
        call();
        ADD_FAILURE() << what << " accepted " << bad;
      } catch (const std::invalid_argument& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(what + ": input 0 has a non-finite value"), std::string::npos) << msg;
        EXPECT_NE(msg.find("in sample 7"), std::string::npos) << msg;
      }
    };
    expect_refused([&] { m.predict(x); }, "predict");
    expect_refused([&] { m.evaluate(x, d.y); }, "evaluate");
    expect_refused([&] { m.fit(x, d.y, {.epochs = 1, .verbose = 0}); }, "fit");
  }
  EXPECT_EQ(m.get_weights_flat(), before);
  EXPECT_NO_THROW(m.predict(d.x));  // and the clean data still passes the same check
  // The check reads exponent bits: the largest, smallest and signed finite values all pass, and
  // a NaN with its sign bit set is still refused.
  Tensor edge = d.x.clone();
  const float finite[] = {std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::denorm_min(), -0.0f, std::numeric_limits<float>::min()};
  for (int i = 0; i < 5; ++i) edge[3 * 8 + i] = finite[i];
  EXPECT_NO_THROW(m.predict(edge));
  edge[11 * 8 + 7] = -std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(m.predict(edge), std::invalid_argument);
}

// No samples: fit and evaluate say so (there is no loss to report); predict returns no rows.
TEST_F(Fit, NoSamplesIsRefused) {
  Model m = attention_model();
  m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy(), {"accuracy"});
  const Tensor x({0, 4, 2}), y({0});
  for (const auto& [what, call] : std::vector<std::pair<std::string, std::function<void()>>>{
           {"fit", [&] { m.fit(x, y, {.epochs = 1, .verbose = 0}); }}, {"evaluate", [&] { m.evaluate(x, y); }}}) {
    try {
      call();
      ADD_FAILURE() << what << " accepted no samples";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(what + ": no samples"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(m.predict(x).dim(0), 0);
}

// A batch larger than the data is the whole data, as in Keras: the same numbers as batch = n,
// and no buffers sized for the requested batch (INT_MAX samples would not fit in memory).
TEST_F(Fit, BatchLargerThanTheDataIsTheData) {
  Separable d(12, 5);
  const int huge = std::numeric_limits<int>::max();
  const auto run = [&](int batch) {
    attn::set_random_seed(17);
    Model m = attention_model();
    m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy(), {"accuracy"});
    const attn::History h =
        m.fit(d.x, d.y, {.epochs = 2, .batch_size = batch, .verbose = 0, .validation_data = attn::Dataset{d.x, d.y}});
    const auto e = m.evaluate(d.x, d.y, {.batch_size = batch});
    return std::make_tuple(h.history.at("loss"), h.history.at("val_loss"), e.at("loss"),
                           m.predict(d.x, {.batch_size = batch}));
  };
  const auto [loss, val_loss, eval_loss, pred] = run(huge);
  const auto [loss_n, val_loss_n, eval_loss_n, pred_n] = run(12);
  EXPECT_EQ(loss, loss_n);
  EXPECT_EQ(val_loss, val_loss_n);
  EXPECT_EQ(eval_loss, eval_loss_n);
  ASSERT_EQ(pred.shape(), pred_n.shape());
  for (int64_t i = 0; i < pred.size(); ++i) EXPECT_EQ(pred[i], pred_n[i]) << i;
}

// A label that is not a class id is named as Python prints it (2.5, 7.0), with its sample.
TEST_F(Fit, BadLabelIsNamedAsWritten) {
  Separable d(12, 5);
  Model m = attention_model();
  m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy(), {"accuracy"});
  for (const auto& [bad, text] : std::vector<std::pair<float, std::string>>{{2.5f, "label 2.5 of sample 3"},
                                                                          {7.0f, "label 7.0 of sample 3"}}) {
    Tensor y = d.y.clone();
    y[3] = bad;
    try {
      m.fit(d.x, y, {.epochs = 1, .verbose = 0});
      ADD_FAILURE() << "label " << bad << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("fit: " + text + " is not a class id in [0, "), std::string::npos)
          << e.what();
    }
  }
}

// train_on_batch checks its batch as fit checks its data, on the calling thread: a bad label
// used to be found inside the step, on a worker thread, which ended the program.
TEST_F(Fit, TrainOnBatchChecksItsBatch) {
  Separable d(12, 5);
  Model m = attention_model();
  m.set_threads(2);
  m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}));
  const auto before = m.get_weights_flat();
  const auto refused = [&](const std::vector<Tensor>& xs, const Tensor& y, const std::string& fragment) {
    try {
      m.train_on_batch(xs, y);
      ADD_FAILURE() << "accepted: " << fragment;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("train_on_batch: " + fragment), std::string::npos) << e.what();
    }
  };
  Tensor bad_label = d.y.clone();
  bad_label[7] = 5.0f;
  refused({d.x}, bad_label, "label 5.0 of sample 7");
  refused({d.x}, d.y.rows(0, 1), "12 samples but y has shape (1,)");
  refused({Tensor({12, 3})}, d.y, "input 0 has shape (12, 3)");
  refused({Tensor({0, 4, 2})}, Tensor({0}), "no samples");
  Tensor nan_x = d.x.clone();
  nan_x[3] = std::numeric_limits<float>::quiet_NaN();
  refused({nan_x}, d.y, "input 0 has a non-finite value");
  EXPECT_EQ(m.get_weights_flat(), before);
  EXPECT_NO_THROW(m.train_on_batch({d.x}, d.y));
}

// Options fit cannot honour are refused before any work, naming the option.
TEST_F(Fit, NonsenseOptionsAreRefused) {
  Separable d(12, 5);
  Model m = attention_model();
  m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy());
  const auto refused = [&](attn::FitOptions o, const std::string& fragment) {
    o.verbose = o.verbose == 1 ? 0 : o.verbose;
    try {
      m.fit(d.x, d.y, o);
      ADD_FAILURE() << "accepted: " << fragment;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  refused({.validation_split = 0.25, .validation_batch_size = 0}, "validation_batch_size must be positive");
  refused({.verbose = 7}, "verbose must be 0, 1 or 2");
  refused({.verbose = -1}, "verbose must be 0, 1 or 2");
  refused({.callbacks = {nullptr}}, "a callback is null");
  EXPECT_THROW(m.evaluate(d.x, d.y, {.verbose = 3}), std::invalid_argument);
}

// Inputs are matched by shape as Keras matches them (Functional._adjust_input_rank): the same
// shape, or a trailing axis of size 1 more or less. The same number of values in another
// layout, (2, 4) or (8,) for an input of (4, 2), is refused instead of read as if it fitted.
TEST_F(Fit, InputsMustHaveTheInputsShape) {
  Separable d(12, 5);
  Model m = attention_model();  // Input (4, 2)
  m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy());
  for (const attn::Shape& wrong : {attn::Shape{12, 2, 4}, attn::Shape{12, 8}, attn::Shape{12, 4, 2, 2}}) {
    const Tensor x(wrong);
    try {
      m.predict(x.rows(0, 12).reshaped(wrong));
      ADD_FAILURE() << attn::shape_to_string(wrong) << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("but the model expects (None, 4, 2)"), std::string::npos) << e.what();
    }
  }
  const Tensor p = m.predict(d.x);
  const Tensor q = m.predict(d.x.reshaped({12, 4, 2, 1}));  // one trailing axis of 1 more: accepted
  EXPECT_EQ(p.to_vector(), q.to_vector());
}

// A Model whose contents were moved to another says so (predict used to crash, fit to ask for a
// compile), and the Model it moved to works.
TEST_F(Fit, MovedFromModelSaysSo) {
  Separable d(12, 5);
  Model m = attention_model();
  m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy());
  Model moved = std::move(m);
  const auto says_moved = [](const std::function<void()>& call, const std::string& what) {
    try {
      call();
      ADD_FAILURE() << what << " ran on a moved-from Model";
    } catch (const std::logic_error& e) {
      EXPECT_NE(std::string(e.what()).find("moved from"), std::string::npos) << what << ": " << e.what();
    }
  };
  says_moved([&] { m.predict(d.x); }, "predict");
  says_moved([&] { m.fit(d.x, d.y, {.epochs = 1, .verbose = 0}); }, "fit");
  says_moved([&] { m.evaluate(d.x, d.y); }, "evaluate");
  says_moved([&] { m.train_on_batch({d.x}, d.y); }, "train_on_batch");
  says_moved([&] {
    std::ostringstream out;
    m.summary(out);
  }, "summary");
  EXPECT_EQ(moved.predict(d.x).dim(0), 12);
}

namespace {
// Two inputs: query (3, 2) and value (5, 2), as an attention over two sequences.
Model two_input_model() {
  auto q = attn::Input({3, 2});
  auto v = attn::Input({5, 2});
  auto a = L::Attention()({q, v});
  return Model({q, v}, {L::Dense(2, {.activation = "softmax"})(L::Flatten()(a))});
}
Tensor filled(attn::Shape shape, float step) {
  Tensor t(std::move(shape));
  for (int64_t i = 0; i < t.size(); ++i) t[i] = std::sin(step * static_cast<float>(i));
  return t;
}
}  // namespace

// Keras' check_data_cardinality: input arrays with different sample counts were read past the
// end of the shorter one (a segfault for a large difference).
TEST_F(Fit, InputArraysMustHoldTheSameSamples) {
  Model m = two_input_model();
  m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy());
  const Tensor q = filled({10, 3, 2}, 0.3f), v = filled({7, 5, 2}, 0.7f), y({10});
  for (const auto& call : std::vector<std::function<void()>>{
           [&] { m.predict({q, v}); }, [&] { m.evaluate({q, v}, y); },
           [&] { m.fit({q, v}, y, {.verbose = 0}); }, [&] { m.train_on_batch({q, v}, y); }}) {
    try {
      call();
      ADD_FAILURE() << "10 and 7 samples accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("input 1 has 7 samples but input 0 has 10"), std::string::npos)
          << e.what();
    }
  }
}

// validation_split splits every input (it took only the first, then refused the model); a
// Dataset holds one array per input, and one array for a two-input model is refused by name.
TEST_F(Fit, ValidationSplitSplitsEveryInput) {
  Model m = two_input_model();
  m.compile(attn::optimizers::SGD({.learning_rate = 0.0f}), attn::losses::SparseCategoricalCrossentropy(),
            {"accuracy"});
  const Tensor q = filled({10, 3, 2}, 0.3f), v = filled({10, 5, 2}, 0.7f);
  Tensor y({10});
  for (int i = 0; i < 10; ++i) y[i] = static_cast<float>(i % 2);
  auto h = m.fit({q, v}, y, {.epochs = 1, .batch_size = 4, .verbose = 0, .validation_split = 0.3});
  const auto last3 = m.evaluate({q.rows(7, 10), v.rows(7, 10)}, y.rows(7, 10), {.batch_size = 4});
  EXPECT_EQ(h.history["val_loss"].at(0), last3.at("loss"));
  const auto given = m.fit({q, v}, y, {.epochs = 1, .batch_size = 4, .verbose = 0,
                                       .validation_data = attn::Dataset{{q.rows(7, 10), v.rows(7, 10)}, y.rows(7, 10)}});
  EXPECT_EQ(given.history.at("val_loss").at(0), last3.at("loss"));  // SGD at rate 0: the weights stay
  try {
    m.fit({q, v}, y, {.verbose = 0, .validation_data = attn::Dataset{q, y}});
    ADD_FAILURE() << "one validation array accepted for two inputs";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("fit (validation data): the model has 2 inputs but 1 arrays were given"),
              std::string::npos)
        << e.what();
  }
}

// Keras' fit splits only when validation_data is None: given both, the data given is the
// validation, and every sample trains.
TEST_F(Fit, ValidationDataWinsOverValidationSplit) {
  Separable d(20, 4), val(6, 9);
  Model m = attention_model();
  m.compile(attn::optimizers::SGD({.learning_rate = 0.0f}), attn::losses::SparseCategoricalCrossentropy());
  auto counter = std::make_shared<BatchCounter>();
  auto h = m.fit(d.x, d.y,
                 {.epochs = 1, .batch_size = 5, .verbose = 0, .validation_data = attn::Dataset{val.x, val.y},
                  .validation_split = 0.5, .callbacks = {counter}});
  EXPECT_EQ(counter->batches, 4);  // 20 samples: none held out
  EXPECT_EQ(h.history["val_loss"].at(0), m.evaluate(val.x, val.y, {.batch_size = 5}).at("loss"));
}

// A callback that predicts with the model mid-epoch (a common way to watch training) switched
// the training accuracy off for the rest of the epoch.
struct PredictsEveryBatch : C::Callback {
  Tensor x;
  void on_train_batch_end(int, const C::Logs&) override { model_->predict(x, {.batch_size = 3}); }
};

TEST_F(Fit, PredictFromACallbackLeavesTheTrainingMetricsAlone) {
  Separable d(24, 6);
  const auto run = [&](bool with_callback) {
    attn::set_random_seed(17);
    Model m = attention_model();
    m.set_threads(1);
    m.compile(attn::optimizers::Adam({.learning_rate = 0.05f}), attn::losses::SparseCategoricalCrossentropy(),
              {"accuracy"});
    auto spy = std::make_shared<PredictsEveryBatch>();
    spy->x = d.x.rows(0, 5);
    std::vector<std::shared_ptr<C::Callback>> cbs;
    if (with_callback) cbs.push_back(spy);
    return m.fit(d.x, d.y, {.epochs = 2, .batch_size = 4, .verbose = 0, .shuffle = false, .callbacks = cbs}).history;
  };
  const auto plain = run(false), watched = run(true);
  EXPECT_EQ(watched.at("accuracy"), plain.at("accuracy"));
  EXPECT_EQ(watched.at("loss"), plain.at("loss"));
  EXPECT_GT(plain.at("accuracy").back(), 0.5);
}

// Keras passes the last epoch's logs to on_train_end (they were empty).
struct RecordsTrainEnd : C::Callback {
  C::Logs end;
  void on_train_end(const C::Logs& logs) override { end = logs; }
};

TEST_F(Fit, TrainEndGetsTheLastEpochsLogs) {
  Separable d(12, 2);
  Model m = attention_model();
  m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy(), {"accuracy"});
  auto rec = std::make_shared<RecordsTrainEnd>();
  auto h = m.fit(d.x, d.y, {.epochs = 2, .batch_size = 4, .verbose = 0, .validation_split = 0.25, .callbacks = {rec}});
  ASSERT_EQ(rec->end.size(), 4u);
  for (const auto& [key, values] : h.history) EXPECT_EQ(rec->end.at(key), values.back()) << key;
}

// Keras logs each metric under the name it was compiled with (compile_utils.get_metric sets
// the metric's name to the identifier): "acc" gives acc / val_acc, which callbacks can monitor.
// They were all logged as "accuracy", so EarlyStopping(monitor="val_acc") never acted.
TEST_F(Fit, MetricsAreLoggedUnderTheNamesGiven) {
  Separable d(16, 8);
  Model m = attention_model();
  m.compile(attn::optimizers::Adam({.learning_rate = 0.05f}), attn::losses::SparseCategoricalCrossentropy(),
            {"acc", "sparse_categorical_accuracy"});
  auto stop = C::EarlyStopping({.monitor = "val_acc", .patience = 0, .mode = "max", .baseline = 2.0});
  auto h = m.fit(d.x, d.y, {.epochs = 5, .batch_size = 4, .verbose = 0, .validation_split = 0.25, .callbacks = {stop}});
  // A baseline of 2 is never reached: stops as early as Keras can (epoch > 0), not after all 5.
  EXPECT_EQ(h.epoch.size(), 2u);
  std::vector<std::string> keys;
  for (const auto& [k, v] : h.history) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"acc", "loss", "sparse_categorical_accuracy", "val_acc", "val_loss",
                                            "val_sparse_categorical_accuracy"}));
  EXPECT_EQ(h.history["acc"], h.history["sparse_categorical_accuracy"]);
  const auto e = m.evaluate(d.x, d.y);
  EXPECT_EQ(e.count("acc"), 1u);
  EXPECT_EQ(e.count("accuracy"), 0u);
  EXPECT_EQ(m.train_on_batch({d.x.rows(0, 4)}, d.y.rows(0, 4)).count("acc"), 1u);
}

// A named accuracy is used as named, not chosen by the shapes; one that cannot read the labels,
// or two that differ, are refused by name.
TEST_F(Fit, NamedAccuracyIsUsedAsNamed) {
  auto in = attn::Input({2});
  Model m(in, L::Dense(3, {.activation = "softmax"})(in));
  const Tensor x({4, 2}, {1, 0, 0, 1, 1, 1, -1, 0});
  const Tensor ids({4}, {0, 1, 2, 0});
  const auto refused = [&](std::vector<std::string> metrics, const std::string& says) {
    m.compile(attn::optimizers::SGD(), attn::losses::SparseCategoricalCrossentropy(), std::move(metrics));
    try {
      m.evaluate(x, ids);
      ADD_FAILURE() << "accepted; wanted: " << says;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  refused({"categorical_accuracy"}, "metric 'categorical_accuracy' needs labels of the output's shape (4, 3)");
  refused({"accuracy", "binary_accuracy"}, "metrics 'accuracy' and 'binary_accuracy' are different accuracies");
  // binary_accuracy on a one-unit output with labels (n,): as Keras, element by element.
  Model b(in, L::Dense(1, {.activation = "sigmoid"})(in));
  b.set_weights_flat({1, 0, 0});
  b.compile(attn::optimizers::SGD(), attn::losses::BinaryCrossentropy(), {"binary_accuracy"});
  // Outputs sigmoid(1), sigmoid(0), sigmoid(1), sigmoid(-1): > 0.5 for samples 0 and 2.
  EXPECT_EQ(b.evaluate(x, Tensor({4}, {1, 0, 0, 0})).at("binary_accuracy"), 0.75);
}

// reduction "none": Keras differentiates the loss vector (the gradient of its sum, as "sum")
// but its loss tracker reports the vector's mean (as "sum_over_batch_size"). attn reported the
// sum, batch-size times too large in the History, the progress line and every monitor.
TEST_F(Fit, ReductionNoneReportsTheMeanAndStepsWithTheSum) {
  const Tensor x({4, 2}, {1, 0, 0, 1, 1, 1, -1, 2}), y({4}, {0, 2, 1, 0});
  const auto trained = [&](const std::string& reduction) {
    auto in = attn::Input({2});
    Model m(in, L::Dense(3)(in));
    m.set_weights_flat({0.5f, -1.0f, 0.25f, 1.5f, 0.75f, -0.5f, 0.1f, 0.0f, -0.1f});
    m.compile(attn::optimizers::SGD({.learning_rate = 0.1f}),
              attn::losses::SparseCategoricalCrossentropy({.from_logits = true, .reduction = reduction}));
    const double loss = m.train_on_batch({x}, y).at("loss");
    return std::make_pair(loss, m.get_weights_flat());
  };
  const auto none = trained("none"), sum = trained("sum"), mean = trained("sum_over_batch_size");
  EXPECT_EQ(none.second, sum.second);
  EXPECT_NEAR(none.first, mean.first, 1e-6);
  EXPECT_NEAR(sum.first, 4 * mean.first, 1e-5);
}
