// Thread scaling on the reference epoch: full epochs of the reference model (60,000 MNIST images,
// batch 20, Adam, validation on the 10,000 test images), alternating between 1 thread and N, same
// seed and data, each model going on from its own last epoch. Prints each round's two epoch times,
// their ratio and the cross-core round trip measured before the round's 2-thread epoch, then the
// median and overall ratios. Alternating (1 thread first in odd rounds,
// N first in even ones) puts both thread counts under the same machine conditions; on shared
// virtual machines the ratio still moves from round to round, so the rounds are all printed.
// Usage: bench_epoch_scaling [rounds (default 6)] [threads (default 2)]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "attn/attn.hpp"
#include "attn/reference_model.hpp"

namespace {

// The time of one cache line's round trip between two threads (ns), as a view of where the host
// placed the vCPUs at this moment: on these virtual machines it moves between ~100 ns and ~500
// ns (cores sharing a cache, or not), and the 2-thread step with it, since the threads exchange
// activations, partial products and barrier flags several times a step.
double round_trip_ns() {
  constexpr int kTrips = 20000;
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // until the models' idle workers sleep
  alignas(64) std::atomic<int> ball{0};
  std::thread other([&] {
    for (int i = 0; i < kTrips; ++i) {
      while (ball.load(std::memory_order_acquire) != 2 * i + 1) {
      }
      ball.store(2 * i + 2, std::memory_order_release);
    }
  });
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kTrips; ++i) {
    ball.store(2 * i + 1, std::memory_order_release);
    while (ball.load(std::memory_order_acquire) != 2 * i + 2) {
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  other.join();
  return seconds / kTrips * 1e9;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
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
    double seconds[2], trip[2];
    for (int i = 0; i < 2; ++i) {
      const int k = (i + r) % 2;  // which model goes first alternates, so a drift favours neither
      trip[k] = round_trip_ns();  // where the host has the vCPUs, just before the epoch
      attn::set_random_seed(1337 + r);
      attn::FitOptions fit{.epochs = 1, .batch_size = 20, .verbose = 0,
                           .validation_data = attn::Dataset{vx, mnist.test.y}};
      seconds[k] = models[k].fit(x, mnist.train.y, fit).seconds.at(0);
      total[k] += seconds[k];
    }
    ratios.push_back(seconds[0] / seconds[1]);
    std::printf("round %d: 1 thread %.3f s, %d threads %.3f s (core round trip before it %.0f ns), ratio %.2f\n",
                r + 1, seconds[0], threads, seconds[1], trip[1], ratios.back());
    std::fflush(stdout);
  }
  std::printf("median ratio %.2f, overall %.2f (min %.2f, max %.2f)\n", median_of(ratios), total[0] / total[1],
              *std::min_element(ratios.begin(), ratios.end()), *std::max_element(ratios.begin(), ratios.end()));
}
