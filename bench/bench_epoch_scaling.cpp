// Thread scaling on the reference epoch: full epochs of the reference model (60,000 MNIST images,
// batch 20, Adam, validation on the 10,000 test images), alternating between 1 thread and N, same
// seed and data, each model going on from its own last epoch. Prints each round's two epoch times
// and their ratio, then the median and overall ratios. Alternating (1 thread first in odd rounds,
// N first in even ones) puts both thread counts under the same machine conditions; on shared
// virtual machines the ratio still moves from round to round, so the rounds are all printed.
// Usage: bench_epoch_scaling [rounds (default 6)] [threads (default 2)]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "attn/attn.hpp"
#include "attn/reference_model.hpp"

namespace {

double seconds_of(const auto& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Independent multiply-add chains (vectorised by the compiler): arithmetic only, no memory traffic.
float arithmetic(int64_t iterations) {
  float x[64];
  for (int i = 0; i < 64; ++i) x[i] = 1.0f + static_cast<float>(i) * 1e-3f;
  for (int64_t k = 0; k < iterations; ++k)
    for (float& v : x) v = v * 0.999999f + 1e-6f;
  float sum = 0.0f;
  for (float v : x) sum += v;
  return sum;
}

// How much arithmetic throughput the machine gives `threads` threads at once against one, right
// now: about `threads` when each vCPU has a physical core to itself. On shared virtual machines
// this moves over time (other guests on the same cores), and so does every multi-thread timing.
double arithmetic_scaling(int threads) {
  constexpr int64_t kIterations = 400000;  // ~30 ms per thread
  volatile float sink = 0.0f;
  const double one = seconds_of([&] { sink = arithmetic(kIterations); });
  const double many = seconds_of([&] {
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back([&] { sink = arithmetic(kIterations); });
    sink = arithmetic(kIterations);
    for (auto& t : pool) t.join();
  });
  return threads * one / many;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 6;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  if (rounds < 1 || threads < 2) {
    std::fprintf(stderr, "usage: bench_epoch_scaling [rounds >= 1] [threads >= 2]\n");
    return 2;
  }
  attn::data::Mnist mnist;
  try {
    mnist = attn::data::load_mnist(attn::data::default_mnist_dir());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_epoch_scaling: needs MNIST (scripts/setup.sh): %s\n", e.what());
    return 1;
  }
  auto scaled = [](const attn::Tensor& images) {
    attn::Tensor x({images.dim(0), 784, 1});
    for (int64_t i = 0; i < x.size(); ++i) x[i] = images[i] / 255.0f;
    return x;
  };
  const attn::Tensor x = scaled(mnist.train.x), vx = scaled(mnist.test.x);
  std::vector<attn::Model> models;
  for (int t : {1, threads}) {
    attn::set_random_seed(1337);
    models.push_back(attn::reference_model());
    models.back().set_threads(t);
    models.back().compile(attn::optimizers::Adam(),
                          attn::losses::SparseCategoricalCrossentropy({.from_logits = true}), {"accuracy"},
                          {.warn = false});
  }
  std::printf("reference epoch with validation, 1 thread vs %d, alternating\n", threads);
  std::vector<double> ratios;
  double total[2] = {0.0, 0.0};
  for (int r = 0; r < rounds; ++r) {
    double seconds[2];
    for (int i = 0; i < 2; ++i) {
      const int k = (i + r) % 2;  // which model goes first alternates, so a drift favours neither
      attn::set_random_seed(1337 + r);
      attn::FitOptions fit{.epochs = 1, .batch_size = 20, .verbose = 0,
                           .validation_data = attn::Dataset{vx, mnist.test.y}};
      seconds[k] = models[k].fit(x, mnist.train.y, fit).seconds.at(0);
      total[k] += seconds[k];
    }
    ratios.push_back(seconds[0] / seconds[1]);
    std::printf("round %d: 1 thread %.3f s, %d threads %.3f s, ratio %.2f (pure arithmetic after it: %.2f)\n", r + 1,
                seconds[0], threads, seconds[1], ratios.back(), arithmetic_scaling(threads));
    std::fflush(stdout);
  }
  std::sort(ratios.begin(), ratios.end());
  const double median = rounds % 2 ? ratios[rounds / 2] : 0.5 * (ratios[rounds / 2 - 1] + ratios[rounds / 2]);
  std::printf("median ratio %.2f, overall %.2f (min %.2f, max %.2f)\n", median, total[0] / total[1], ratios.front(),
              ratios.back());
}
