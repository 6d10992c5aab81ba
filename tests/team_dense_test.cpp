// Dense split by weights across threads (Layer::split_by_weights, the executor's team runs) must
// compute what one thread computes: predictions and one step's gradients (SGD with learning rate
// 1: g = w - w') against the 1-thread run, for batches that do and do not divide among the
// threads, fewer samples than threads (the team falls back to batch slices), more rows than the
// small-batch kernels take (BLAS), Dense on 3-D inputs, a large Dense called at two sites, a
// softmax output whose logits feed the loss, and the clipping optimizer path. Summation order
// differs between thread counts, so the comparison has a float32 tolerance; the same thread
// count must reproduce bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>

#include "attn/attn.hpp"
#include "attn/reference_model.hpp"

namespace {

namespace L = attn::layers;
using attn::Model;
using attn::Tensor;

struct Case {
  std::string name;
  std::function<Model()> build;
  attn::Shape input;  // per sample
  int classes;
  std::function<std::shared_ptr<attn::losses::Loss>()> loss;
  bool clip = false;
};

std::vector<Case> cases() {
  const auto sparse_logits = [] { return attn::losses::SparseCategoricalCrossentropy({.from_logits = true}); };
  return {
      {"reference model", [] { return attn::reference_model(); }, {784, 1}, 10, sparse_logits},
      {"dense on 3-D input",
       [] {
         auto in = attn::Input({6, 40});
         auto h = L::Dense(500, {.activation = "tanh"})(in);  // 20,000 weights, 6 rows per sample
         return Model(in, L::Dense(3)(L::Flatten()(h)));
       },
       {6, 40}, 3, sparse_logits},
      {"one large Dense at two sites",
       [] {
         auto in = attn::Input({150});
         L::Dense shared(150, {.activation = "tanh"});  // 22,500 weights, gradients from both calls
         return Model(in, L::Dense(4)(shared(shared(in))));
       },
       {150}, 4, sparse_logits},
      {"softmax output, logits to the loss, clipping",
       [] {
         auto in = attn::Input({100});
         return Model(in, L::Dense(300, {.activation = "softmax"})(in));  // 30,000 weights
       },
       {100}, 300, sparse_logits, true},
  };
}

struct Data {
  Tensor x, y;
};

Data make_data(const Case& c, int64_t batch, uint32_t seed) {
  attn::Shape shape{batch};
  for (int64_t d : c.input) shape.push_back(d);
  Data d{Tensor(shape), Tensor({batch})};
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < d.x.size(); ++i) d.x[i] = u(gen);
  for (int64_t i = 0; i < batch; ++i) d.y[i] = static_cast<float>(gen() % c.classes);
  return d;
}

struct Result {
  std::vector<float> pred;
  std::vector<double> grad;
  std::vector<float> after;
};

Result run(const Case& c, const Data& d, int threads) {
  attn::clear_session();
  attn::set_random_seed(5);
  Model m = c.build();
  m.set_threads(threads);
  attn::optimizers::ClipOptions clip;
  if (c.clip) clip.global_clipnorm = 1e9f;  // never binds, but takes the reduce-then-update path
  m.compile(attn::optimizers::SGD({.learning_rate = 1.0f, .clip = clip}), c.loss(), {}, {.warn = false});
  Result r;
  r.pred = m.predict(d.x, {.batch_size = static_cast<int>(d.x.dim(0))}).to_vector();
  const auto before = m.get_weights_flat();
  m.train_on_batch({d.x}, d.y);
  r.after = m.get_weights_flat();
  for (size_t i = 0; i < before.size(); ++i) r.grad.push_back(double(before[i]) - double(r.after[i]));
  return r;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0.0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  ASSERT_GT(scale, 0.0) << what << ": nothing to compare";
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 5; ++i)
    if (!(std::fabs(got[i] - want[i]) <= 2e-5 * scale + 1e-4 * std::fabs(want[i]))) {
      ++failures;
      ADD_FAILURE() << what << ": element " << i << " got " << got[i] << ", want " << want[i];
    }
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

TEST(TeamDense, MatchesOneThread) {
  for (const Case& c : cases())
    for (int64_t batch : {1, 2, 3, 7, 20, 40, 70}) {
      const Data d = make_data(c, batch, static_cast<uint32_t>(batch));
      const Result one = run(c, d, 1);
      for (int threads : {2, 3}) {
        const std::string what = c.name + ", batch " + std::to_string(batch) + ", " + std::to_string(threads) +
                                 " threads";
        const Result many = run(c, d, threads);
        expect_close(widen(many.pred), widen(one.pred), what + ", predictions");
        expect_close(many.grad, one.grad, what + ", gradients");
        if (HasFailure()) return;
      }
    }
}

TEST(TeamDense, SameThreadCountIsBitIdentical) {
  for (const Case& c : cases()) {
    const Data d = make_data(c, 20, 99);
    const Result a = run(c, d, 2), b = run(c, d, 2);
    ASSERT_EQ(a.after.size(), b.after.size());
    EXPECT_EQ(0, std::memcmp(a.after.data(), b.after.data(), a.after.size() * sizeof(float))) << c.name;
  }
}

}  // namespace
