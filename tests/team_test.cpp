// A model on several threads (Dense layers with large W run as a team split by weights, the other
// layers on batch slices around them) must compute what one thread computes: predictions and
// one step's gradients (SGD with learning rate 1: g = w - w') against the 1-thread run, for
// batches that do and do not divide among the threads, fewer samples than threads (the team
// falls back to batch slices), more rows than the small-batch kernels take (BLAS), Dense on 3-D
// inputs, a large Dense called at two sites, a team Dense applying its own update among small
// layers updated after the run, a team Dense writing its input gradient (alone, as in the
// reference model, or before another site adds to it) or adding to one another site wrote, a
// softmax output whose logits feed the loss, the clipping optimizer path, and Attention with
// masks, causal, concat scores, dropout, a key input and returned scores, and BatchNormalization
// (its batch statistics summed over the team; moving statistics compared as weights). Summation
// order differs between thread counts, so the comparison has a
// float32 tolerance; the same thread count must reproduce bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "attn/attn.hpp"
#include "attn/reference_model.hpp"

namespace {

namespace L = attn::layers;
using attn::Model;
using attn::Tensor;

struct Case {
  std::string name;
  std::function<Model()> build;
  std::vector<attn::Shape> inputs;  // per sample; inputs after the first are 0/1 masks
  int classes;
  std::function<std::shared_ptr<attn::losses::Loss>()> loss;
  bool clip = false;
};

std::vector<Case> cases() {
  const auto sparse_logits = [] { return attn::losses::SparseCategoricalCrossentropy({.from_logits = true}); };
  return {
      {"reference model", [] { return attn::reference_model(); }, {{784, 1}}, 10, sparse_logits},
      {"attention: masks, causal, key input, dropout",
       [] {
         auto x = attn::Input({9, 4});
         auto qm = attn::Input({9});
         auto vm = attn::Input({9});
         auto q = L::Dense(4, {.activation = "tanh"})(x);
         auto k = L::Dense(4)(x);
         auto a = L::Attention({.use_scale = true, .dropout = 0.3f})(
             {q, x, k}, {.training = true, .use_causal_mask = true, .query_mask = qm, .value_mask = vm});
         return Model({x, qm, vm}, {L::Dense(3)(L::Flatten()(a))});
       },
       {{9, 4}, {9}, {9}}, 3, sparse_logits},
      {"attention: concat scores, returned scores",
       [] {
         auto x = attn::Input({7, 3});
         auto outs = L::Attention({.use_scale = true, .score_mode = "concat"})
                         .call({x, x}, {.return_attention_scores = true});
         auto h = L::Dense(5, {.activation = "relu"})(L::Flatten()(outs[0]));
         auto s = L::Flatten()(outs[1]);
         return Model(x, L::Dense(2)(L::Flatten()(L::Attention()({L::Reshape({5, 1})(h), L::Reshape({49, 1})(s)}))));
       },
       {{7, 3}}, 2, sparse_logits},
      {"dense on 3-D input",
       [] {
         auto in = attn::Input({6, 40});
         auto h = L::Dense(500, {.activation = "tanh"})(in);  // 20,000 weights, 6 rows per sample
         return Model(in, L::Dense(3)(L::Flatten()(h)));
       },
       {{6, 40}}, 3, sparse_logits},
      {"one large Dense at two sites",
       [] {
         auto in = attn::Input({150});
         L::Dense shared(150, {.activation = "tanh"});  // 22,500 weights, gradients from both calls
         return Model(in, L::Dense(4)(shared(shared(in))));
       },
       {{150}}, 4, sparse_logits},
      {"a team Dense among small ones (over 16,384 parameters left to update after the run)",
       [] {
         auto in = attn::Input({200});
         auto h = L::Dense(100, {.activation = "relu"})(in);  // 20,000 weights: a team, updated inside
         h = L::Dense(120, {.activation = "tanh"})(h);        // 12,000: batch slices
         h = L::Dense(60, {.activation = "relu"})(h);         // 7,200: batch slices
         return Model(in, L::Dense(5)(h));
       },
       {{200}}, 5, sparse_logits},
      {"a team Dense writing an input gradient that an earlier site then adds to",
       [] {
         auto in = attn::Input({10, 8});
         auto h = L::Dense(8, {.activation = "tanh"})(in);                   // [10, 8] on batch slices
         auto self = L::Attention()({h, h});                                 // adds to h's gradient last
         auto big = L::Dense(240, {.activation = "tanh"})(L::Flatten()(h));  // 19,200 weights: a team
         auto a = L::Attention()({L::Reshape({30, 8})(big), self});
         return Model(in, L::Dense(3)(L::Flatten()(a)));
       },
       {{10, 8}}, 3, sparse_logits},
      {"a team Dense adding to an input gradient that a later site wrote first",
       [] {
         auto in = attn::Input({10, 8});
         auto h = L::Dense(8, {.activation = "tanh"})(in);
         auto big = L::Dense(240, {.activation = "tanh"})(L::Flatten()(h));
         auto a = L::Attention()({L::Reshape({30, 8})(big), h});  // h's gradient from here first
         return Model(in, L::Dense(3)(L::Flatten()(a)));
       },
       {{10, 8}}, 3, sparse_logits},
      {"three team Dense layers in a row",
       [] {
         auto in = attn::Input({784});
         auto h = L::Dense(512, {.activation = "relu"})(in);  // 401,408 weights
         h = L::Dense(512, {.activation = "tanh"})(h);         // 262,144
         h = L::Dense(512, {.activation = "relu"})(h);         // 262,144
         return Model(in, L::Dense(3)(h));
       },
       {{784}}, 3, sparse_logits},
      {"batch normalization after a team Dense and on slices' outputs",
       [] {
         auto in = attn::Input({200});
         auto h = L::Dense(100, {.activation = "relu"})(in);  // 20,000 weights: a team
         h = L::BatchNormalization({.momentum = 0.5})(h);      // statistics of the whole batch
         h = L::Dense(12, {.activation = "tanh"})(h);
         h = L::BatchNormalization({.center = false})(h);
         return Model(in, L::Dense(5)(h));
       },
       {{200}}, 5, sparse_logits},
      {"batch normalization of feature maps: first layer, channels first, inference pinned",
       [] {
         auto in = attn::Input({6, 5, 4});
         auto h = L::BatchNormalization()(in);
         h = L::BatchNormalization({.axis = 1, .scale = false})(h);
         h = L::BatchNormalization()(h, {.training = false});  // moving statistics, gamma and beta train
         return Model(in, L::Dense(3)(L::Flatten()(h)));
       },
       {{6, 5, 4}}, 3, sparse_logits},
      {"softmax output, logits to the loss, clipping",
       [] {
         auto in = attn::Input({100});
         return Model(in, L::Dense(300, {.activation = "softmax"})(in));  // 30,000 weights
       },
       {{100}}, 300, sparse_logits, true},
  };
}

struct Data {
  std::vector<Tensor> xs;
  Tensor y;
};

Data make_data(const Case& c, int64_t batch, uint32_t seed) {
  Data d{{}, Tensor({batch})};
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (size_t in = 0; in < c.inputs.size(); ++in) {
    attn::Shape shape{batch};
    for (int64_t e : c.inputs[in]) shape.push_back(e);
    Tensor x(shape);
    for (int64_t i = 0; i < x.size(); ++i) x[i] = in == 0 ? u(gen) : static_cast<float>(gen() % 4 != 0);
    d.xs.push_back(std::move(x));
  }
  for (int64_t i = 0; i < batch; ++i) d.y[i] = static_cast<float>(gen() % c.classes);
  return d;
}

struct Result {
  std::vector<float> pred;
  double loss = 0.0;  // of the training step: the team forward's output
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
  r.pred = m.predict(d.xs, {.batch_size = static_cast<int>(d.y.dim(0))}).at(0).to_vector();
  const auto before = m.get_weights_flat();
  r.loss = m.train_on_batch(d.xs, d.y).at("loss");
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

TEST(Team, MatchesOneThread) {
  for (const Case& c : cases())
    for (int64_t batch : {1, 2, 3, 7, 20, 40, 70}) {
      const Data d = make_data(c, batch, static_cast<uint32_t>(batch));
      const Result one = run(c, d, 1);
      for (int threads : {2, 3}) {
        const std::string what = c.name + ", batch " + std::to_string(batch) + ", " + std::to_string(threads) +
                                 " threads";
        const Result many = run(c, d, threads);
        expect_close(widen(many.pred), widen(one.pred), what + ", predictions");
        expect_close({many.loss}, {one.loss}, what + ", training loss");
        expect_close(many.grad, one.grad, what + ", gradients");
        if (HasFailure()) return;
      }
    }
}

// Threads take work from each other as timing allows, so runs are repeated, over several steps;
// batch 64 puts the team Dense products on sgemm, whose rounding depends on a product's shape.
TEST(Team, SameThreadCountIsBitIdentical) {
  const auto train = [](const Case& c, const Data& d) {
    attn::clear_session();
    attn::set_random_seed(5);
    Model m = c.build();
    m.set_threads(2);
    m.compile(attn::optimizers::Adam(), c.loss(), {}, {.warn = false});
    for (int step = 0; step < 4; ++step) m.train_on_batch(d.xs, d.y);
    return m.get_weights_flat();
  };
  for (const Case& c : cases()) {
    for (int64_t batch : {20, 64}) {
      const Data d = make_data(c, batch, 99);
      const std::vector<float> first = train(c, d);
      for (int repeat = 0; repeat < 4; ++repeat) {
        const std::vector<float> again = train(c, d);
        ASSERT_EQ(first.size(), again.size());
        EXPECT_EQ(0, std::memcmp(first.data(), again.data(), first.size() * sizeof(float)))
            << c.name << ", batch " << batch << ", repeat " << repeat;
      }
    }
  }
}

// Without clipping, a team Dense applies the optimizer to its rows of W inside its backward
// (fused: gradients written, not cleared and added to) and the small layers are updated after
// the run; with clipping (never binding here) every gradient is complete first and the step is
// reduce-then-update. Both orders of work must give the same bits, over several Adam steps
// (its moments carry any difference forward).
TEST(Team, FusedStepIsTheSameBitsAsReduceThenUpdate) {
  const Case reference = cases().at(0);
  const Data d = make_data(reference, 20, 7);
  std::vector<std::vector<float>> after;
  for (bool clip : {false, true}) {
    attn::clear_session();
    attn::set_random_seed(5);
    Model m = reference.build();
    m.set_threads(2);
    attn::optimizers::ClipOptions options;
    if (clip) options.global_clipnorm = 1e9f;
    m.compile(attn::optimizers::Adam({.clip = options}), reference.loss(), {}, {.warn = false});
    for (int step = 0; step < 3; ++step) m.train_on_batch(d.xs, d.y);
    after.push_back(m.get_weights_flat());
  }
  ASSERT_EQ(after[0].size(), after[1].size());
  EXPECT_EQ(0, std::memcmp(after[0].data(), after[1].data(), after[0].size() * sizeof(float)));
}

// Forward passes alone (predict, evaluate, validation) run whole batches per thread when there
// are at least as many batches as threads, so every sample gets the bits a 1-thread run gives
// it, whatever the thread count and batch size (BLAS-sized batches included, a short last
// batch too), and evaluate's running means of loss and accuracy as well. Fewer batches are
// split across the threads: the same bits while the slices and the batch stay within the
// small-batch Dense kernels (one batch of 30 here).
TEST(Team, ForwardPassesAreTheSameBitsOnAnyThreadCount) {
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Tensor x({57, 784, 1}), y({57});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = gen() % 5 == 0 ? u(gen) : 0.0f;  // mostly zeros, like MNIST
  for (int64_t i = 0; i < 57; ++i) y[i] = static_cast<float>(gen() % 10);
  struct Run {
    int batch;
    std::vector<int> threads;
  };
  for (const Run& r : {Run{20, {1, 2, 3}}, Run{12, {1, 2, 3, 4}}, Run{40, {1, 2}}, Run{57, {1, 2, 3}}}) {
    const Tensor xs = r.batch == 57 ? x.rows(0, 30) : x;  // one batch of 30: split across the threads
    const Tensor ys = r.batch == 57 ? y.rows(0, 30) : y;
    std::vector<std::vector<float>> preds;
    std::vector<std::map<std::string, double>> evals;
    for (int threads : r.threads) {
      attn::set_random_seed(11);
      Model m = attn::reference_model();
      m.set_threads(threads);
      m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}),
                {"accuracy"}, {.warn = false});
      preds.push_back(m.predict(xs, {.batch_size = r.batch}).to_vector());
      evals.push_back(m.evaluate(xs, ys, {.batch_size = r.batch, .verbose = 0}));
    }
    ASSERT_EQ(preds[0].size(), static_cast<size_t>(xs.dim(0)) * 10);
    for (size_t t = 1; t < preds.size(); ++t) {
      EXPECT_EQ(0, std::memcmp(preds[t].data(), preds[0].data(), preds[0].size() * sizeof(float)))
          << "batch " << r.batch << ", " << r.threads[t] << " threads";
      EXPECT_EQ(evals[t], evals[0]) << "batch " << r.batch << ", " << r.threads[t] << " threads";
    }
  }
}

}  // namespace

// TeamWork, the claims behind balanced team work: the owner takes half of what is left of its
// range from the front, others take single items from the back, and every item goes to exactly
// one thread.
TEST(TeamWork, OwnerTakesHalvesOthersTakeTheLastItem) {
  attn::TeamWork w;
  w.reset(3, 13);
  EXPECT_EQ(w.take_back(), 12);
  std::vector<std::pair<int64_t, int64_t>> pieces;
  for (auto p = w.take_front(); p.second > 0; p = w.take_front()) pieces.push_back(p);
  const std::vector<std::pair<int64_t, int64_t>> want = {{3, 4}, {7, 2}, {9, 1}, {10, 1}, {11, 1}};
  EXPECT_EQ(pieces, want);
  EXPECT_EQ(w.take_back(), -1);
  w.reset(5, 5);
  EXPECT_EQ(w.take_front().second, 0);
}

TEST(TeamWork, EveryItemIsTakenOnceUnderContention) {
  constexpr int kThreads = 3, kItemsPerThread = 40;
  for (int round = 0; round < 200; ++round) {
    std::vector<attn::TeamWork> work(kThreads);
    for (int t = 0; t < kThreads; ++t) work[t].reset(t * kItemsPerThread, (t + 1) * kItemsPerThread);
    std::vector<std::vector<int64_t>> taken(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        // Thread 0 dawdles so the others run out first and take from its end.
        if (t == 0) std::this_thread::sleep_for(std::chrono::microseconds(round % 7 * 10));
        attn::take_team_work(work.data(), t, kThreads, [&](int64_t first, int64_t count) {
          for (int64_t i = first; i < first + count; ++i) taken[t].push_back(i);
        });
      });
    for (auto& th : threads) th.join();
    std::vector<int64_t> all;
    for (const auto& v : taken) all.insert(all.end(), v.begin(), v.end());
    std::sort(all.begin(), all.end());
    ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kItemsPerThread)) << "round " << round;
    for (int64_t i = 0; i < kThreads * kItemsPerThread; ++i) ASSERT_EQ(all[i], i) << "round " << round;
  }
}
