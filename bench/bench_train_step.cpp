// One training step of the reference model (batch 20, Adam) through Model::train_on_batch,
// on real MNIST test images when available (else synthetic digit-like data), at 1 and 2
// threads; inference over a batch of 20 (split across the threads); evaluate over 2,000 images
// (whole batches per thread). Per-step time x 3000 = one epoch of training.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>

#include "attn/attn.hpp"
#include "attn/reference_model.hpp"

namespace {

struct Batch {
  attn::Tensor x{{20, 784, 1}};
  attn::Tensor y{{20}};
};

Batch make_batch(int index) {
  Batch b;
  try {
    static attn::data::Mnist mnist = attn::data::load_mnist(attn::data::default_mnist_dir());
    for (int64_t i = 0; i < 20 * 784; ++i) b.x[i] = mnist.test.x[index * 20 * 784 + i] / 255.0f;
    for (int i = 0; i < 20; ++i) b.y[i] = mnist.test.y[index * 20 + i];
  } catch (const std::exception&) {
    // Synthetic: a filled disc of random radius, ~80% zeros like MNIST.
    std::mt19937 gen(index);
    for (int s = 0; s < 20; ++s) {
      int r = 5 + static_cast<int>(gen() % 5);
      for (int i = 0; i < 28; ++i)
        for (int j = 0; j < 28; ++j)
          b.x[s * 784 + i * 28 + j] = (i - 14) * (i - 14) + (j - 14) * (j - 14) < r * r ? (gen() % 255) / 255.0f : 0.0f;
      b.y[s] = static_cast<float>(r - 5);
    }
  }
  return b;
}

// The reference model as the tutorial compiles it, on `threads` threads, from seed 1.
attn::Model compiled_reference_model(int threads) {
  attn::set_random_seed(1);
  attn::Model model = attn::reference_model();
  model.set_threads(threads);
  model.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}),
                {"accuracy"}, {.warn = false});
  return model;
}

void BM_ReferenceTrainStep(benchmark::State& state) {
  attn::Model model = compiled_reference_model(static_cast<int>(state.range(0)));
  std::vector<Batch> batches;
  for (int i = 0; i < 50; ++i) batches.push_back(make_batch(i));
  size_t k = 0;
  for (auto _ : state) {
    const Batch& b = batches[k++ % batches.size()];
    auto logs = model.train_step({b.x}, b.y);
    benchmark::DoNotOptimize(logs);
  }
  state.counters["epoch_s"] = benchmark::Counter(state.iterations() / 3000.0, benchmark::Counter::kIsRate |
                                                                                  benchmark::Counter::kInvert);
}
BENCHMARK(BM_ReferenceTrainStep)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_ReferencePredictBatch(benchmark::State& state) {
  attn::set_random_seed(1);
  attn::Model model = attn::reference_model();
  model.set_threads(static_cast<int>(state.range(0)));
  Batch b = make_batch(0);
  for (auto _ : state) benchmark::DoNotOptimize(model.predict(b.x, {.batch_size = 20}));
}
BENCHMARK(BM_ReferencePredictBatch)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();

// evaluate over 2,000 images (100 batches of 20): forward passes alone, whole batches per thread.
void BM_ReferenceEvaluate(benchmark::State& state) {
  attn::Model model = compiled_reference_model(static_cast<int>(state.range(0)));
  attn::Tensor x({2000, 784, 1}), y({2000});
  for (int i = 0; i < 100; ++i) {
    const Batch b = make_batch(i);
    std::copy(b.x.data(), b.x.data() + b.x.size(), x.data() + i * b.x.size());
    std::copy(b.y.data(), b.y.data() + 20, y.data() + i * 20);
  }
  for (auto _ : state) benchmark::DoNotOptimize(model.evaluate(x, y, {.batch_size = 20, .verbose = 0}));
}
BENCHMARK(BM_ReferenceEvaluate)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
