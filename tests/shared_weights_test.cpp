// Weights shared between models, and weights the user replaces: a layer in two models holds one
// set of weights (Keras: an encoder Model and the full Model over the same layers train the
// same variables), whichever model was built or run last; a Weight::value replaced by a tensor
// of the weight's shape is what the next run uses (Keras' variable.assign), one of another shape
// is refused with the layer and weight named.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "attn/attn.hpp"
#include "temp_dir.hpp"
#include "test_tensors.hpp"

namespace {

namespace L = attn::layers;
using attn::Model;
using attn::Tensor;

class SharedWeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    attn::clear_session();
    attn::set_random_seed(5);
  }
};

using attn::testing::ramp;

// in(4) -> first Dense(3) -> second Dense(2): the shared `second` sits after `first` in the full
// model but first (offset 0) in the head model, so their parameter layouts differ.
struct Stack {
  L::Dense first = L::Dense(3, {.activation = "tanh"});
  L::Dense second = L::Dense(2);
  Model full;
  Model head;
  Stack()
      : full([this] {
          auto in = attn::Input({4});
          return Model(in, second(first(in)));
        }()),
        head([this] {
          auto in = attn::Input({3});
          return Model(in, second(in));
        }()) {}
};

void compile_sgd(Model& m) {
  m.compile(attn::optimizers::SGD({.learning_rate = 0.1}), attn::losses::MeanSquaredError(), {});
}

// The full model's weights after training, with the same start and data, alone or beside a model
// that shares its last layer (built after it, so holding that layer's weights at first).
TEST_F(SharedWeightsTest, ModelSharingALayerTrainsAsIfAlone) {
  const Tensor x = ramp({12, 4}, 0.17f, -0.9f), y = ramp({12, 2}, 0.3f, -1.0f);
  std::vector<float> start;
  std::vector<float> alone;
  {
    attn::set_random_seed(5);
    auto in = attn::Input({4});
    Model m(in, L::Dense(2)(L::Dense(3, {.activation = "tanh"})(in)));
    start = m.get_weights_flat();
    compile_sgd(m);
    m.set_threads(1);
    m.fit(x, y, {.epochs = 3, .batch_size = 4, .verbose = 0, .shuffle = false});
    alone = m.get_weights_flat();
  }
  Stack s;
  s.full.set_weights_flat(start);
  compile_sgd(s.full);
  s.full.set_threads(1);
  s.full.fit(x, y, {.epochs = 3, .batch_size = 4, .verbose = 0, .shuffle = false});
  EXPECT_EQ(s.full.get_weights_flat(), alone);
  EXPECT_NE(alone, start);
  // The head model sees the trained layer: its weights are the full model's last 8 values.
  const std::vector<float> head = s.head.get_weights_flat();
  EXPECT_EQ(head, std::vector<float>(alone.end() - 8, alone.end()));
}

TEST_F(SharedWeightsTest, TrainingEitherModelMovesTheSharedWeights) {
  Stack s;
  auto in = attn::Input({4});
  Model later(in, s.second(s.first(in)));  // built last: holds the layers' weights at first
  compile_sgd(s.head);
  const Tensor h = ramp({10, 3}, 0.2f, -1.0f), y = ramp({10, 2}, 0.25f, -0.5f);
  const double before = s.head.evaluate(h, y, {.verbose = 0}).at("loss");
  s.head.fit(h, y, {.epochs = 20, .batch_size = 5, .verbose = 0});
  const double after = s.head.evaluate(h, y, {.verbose = 0}).at("loss");
  EXPECT_LT(after, 0.5 * before);  // was: the head's updates went to a buffer nobody read
  // The other models compute with what the head learned: their output is `second` applied to
  // `first`'s output, which the head model reproduces.
  const Tensor x = ramp({3, 4}, 0.13f, -0.4f);
  auto in2 = attn::Input({4});
  Model first_only(in2, s.first(in2));
  const Tensor via_head = s.head.predict(first_only.predict(x));
  EXPECT_EQ(later.predict(x).to_vector(), via_head.to_vector());
  EXPECT_EQ(s.full.predict(x).to_vector(), via_head.to_vector());
}

// Saving reads each weight's offset (the optimizer's slots are found by it): after the other
// model ran, the legacy .h5 writer found the other's offsets and failed ("cannot create dataset
// 'optimizer_weights/adam/_momentum'"). Both formats now save this model's state.
TEST_F(SharedWeightsTest, SavingAfterTheOtherModelRanSavesThisOne) {
  attn::testing::TempDir dir("attn-shared-weights-test");
  Stack s;
  const Tensor x = ramp({10, 4}, 0.17f, -0.9f), h = ramp({10, 3}, 0.2f, -1.0f), y = ramp({10, 2}, 0.3f, -1.0f);
  for (Model* m : {&s.full, &s.head})
    m->compile(attn::optimizers::Adam({.learning_rate = 0.01f}), attn::losses::MeanSquaredError(), {});
  s.full.fit(x, y, {.epochs = 2, .batch_size = 5, .verbose = 0});
  s.head.fit(h, y, {.epochs = 1, .batch_size = 5, .verbose = 0});  // the head ran last
  const Tensor expected = s.full.predict(x);
  for (const char* name : {"m.h5", "m.keras"}) {
    s.head.predict(h);  // the head holds the shared weights again
    attn::io::save_model(s.full, dir.file(name));
    Model back = attn::io::load_model(dir.file(name));
    EXPECT_EQ(back.predict(x).to_vector(), expected.to_vector()) << name;
    EXPECT_EQ(back.optimizer()->iterations(), s.full.optimizer()->iterations()) << name;
  }
}

TEST_F(SharedWeightsTest, SharedLayerOutlivesTheModelThatHeldItsWeights) {
  auto in = attn::Input({3});
  L::Dense shared(2);
  Model kept(in, shared(in));
  const Tensor x = ramp({4, 3}, 0.3f, -0.6f);
  const Tensor expected = kept.predict(x);
  {
    auto in2 = attn::Input({3});
    Model gone(in2, shared(in2));
    gone.predict(x);  // the layer's weights now live in this model's buffer
  }
  EXPECT_EQ(kept.predict(x).to_vector(), expected.to_vector());  // ASan: no read of freed memory
}

TEST_F(SharedWeightsTest, ReplacedValueOfTheRightShapeIsUsed) {
  auto in = attn::Input({3});
  Model m(in, L::Dense(2)(in));
  attn::Weight* kernel = m.weights()[0];
  ASSERT_EQ(kernel->name, "kernel");
  kernel->value = Tensor({3, 2}, {1, 0, 0, 1, 1, 1});
  const Tensor out = m.predict(Tensor({1, 3}, {2, 3, 5}));
  EXPECT_EQ(out.to_vector(), (std::vector<float>{7, 8}));  // bias 0
  EXPECT_EQ(m.weights()[0]->value.data(), m.parameter_buffer() + m.weights()[0]->offset);
  EXPECT_EQ(m.get_weights_flat()[0], 1.0f);
}

TEST_F(SharedWeightsTest, ReplacedValueOfAnotherShapeIsRefusedByName) {
  auto in = attn::Input({3});
  Model m(in, L::Dense(2, {.name = "proj"})(in));
  m.compile(attn::optimizers::SGD(), attn::losses::MeanSquaredError(), {});
  m.weights()[0]->value = Tensor({5});
  const auto expect_refused = [](auto&& call) {
    try {
      call();
      ADD_FAILURE() << "accepted a kernel of shape (5,)";
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("'proj'"), std::string::npos) << what;
      EXPECT_NE(what.find("'kernel'"), std::string::npos) << what;
      EXPECT_NE(what.find("(3, 2)"), std::string::npos) << what;
      EXPECT_NE(what.find("(5,)"), std::string::npos) << what;
    }
  };
  const Tensor x({2, 3}), y({2, 2});
  expect_refused([&] { m.predict(x); });
  expect_refused([&] { m.fit(x, y, {.epochs = 1, .verbose = 0}); });
  expect_refused([&] { m.get_weights_flat(); });
  expect_refused([&] { m.weights(); });
}

}  // namespace
