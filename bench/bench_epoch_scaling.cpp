// Thread scaling on the reference epoch: full epochs of the reference model (60,000 MNIST images,
// batch 20, Adam, validation on the 10,000 test images) at 1 thread and at N, same seed and data,
// each model going on from its own last epoch. Each round also trains N independent 1-thread
// models at once, each on a thread pinned to its own core: N times the 1-thread epoch over that
// is what the N cores give this round with nothing shared and nothing to wait for (the ceiling
// for any split of the work), and the N-thread ratio is printed against it. The order of the
// three runs rotates from round to round, so a drift of the machine favours none.
//
// On shared virtual machines each virtual core's own speed moves: the same arithmetic, pinned to
// one core, takes from 1x to about 1.8x as long from moment to moment (the host runs something
// else on the physical core), independently on the two cores. So before each run and after each
// round the program times a fixed amount of arithmetic on every core at once (pinned, sharing
// nothing) and prints the slowest core's speed against the fastest time seen, beside the round
// trip of a cache line between two threads. It then prints the ratios over all rounds and over
// the rounds whose every probe found every core at full speed (the machine the target assumes).
// Usage: bench_epoch_scaling [rounds (default 6)] [threads (default 2)]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <pthread.h>
#include <sched.h>
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

// Seconds for a fixed amount of arithmetic that touches no memory: 12 independent chains of
// 8-wide fused multiply-adds, enough to keep both of a core's FMA units busy. Plain multiply-adds
// where the processor has no FMA.
using Floats8 = float __attribute__((vector_size(32)));
template <class Vec>
double chains_seconds(long iters) {
  Vec a[12];
  for (int i = 0; i < 12; ++i) a[i] = Vec{} + (1.0f + 1e-3f * static_cast<float>(i));
  const auto start = std::chrono::steady_clock::now();
  for (long k = 0; k < iters; ++k)
    for (Vec& v : a) v = v * 0.9999f + 1e-4f;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  volatile float sink = 0.0f;
  for (const Vec& v : a) sink = sink + v[0];
  return seconds;
}
__attribute__((target("avx2,fma"))) double fma_chains_seconds(long iters) { return chains_seconds<Floats8>(iters); }
double arithmetic_seconds() {
  constexpr long kIters = 1 << 20;  // a few milliseconds
  static const bool fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return fma ? fma_chains_seconds(kIters) : chains_seconds<Floats8>(kIters);
}

// Runs seconds_on(c) on a thread pinned to each core c of the first `cores`, all starting
// together, and returns the slowest one's result (0 where a core could not be pinned).
template <class SecondsOn>
double slowest_pinned(int cores, SecondsOn seconds_on) {
  std::atomic<int> ready{0};
  std::atomic<bool> pinned{true};
  std::vector<double> seconds(cores, 0.0);
  std::vector<std::thread> runs;
  for (int c = 0; c < cores; ++c)
    runs.emplace_back([&, c] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(c, &set);
      if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) pinned = false;
      ready.fetch_add(1);
      while (ready.load() < cores) {
      }
      seconds[c] = seconds_on(c);
    });
  for (auto& r : runs) r.join();
  return pinned ? *std::max_element(seconds.begin(), seconds.end()) : 0.0;
}

// Every core's time for arithmetic_seconds() at once: the slowest.
double slowest_core_seconds(int cores) {
  return slowest_pinned(cores, [](int) { return arithmetic_seconds(); });
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
  if (threads > static_cast<int>(std::thread::hardware_concurrency())) {
    std::fprintf(stderr, "bench_epoch_scaling: %d threads need %d cores, this machine has %u\n", threads, threads,
                 std::thread::hardware_concurrency());
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
  const auto make_model = [](int t) {
    attn::set_random_seed(1337);
    attn::Model m = attn::reference_model();
    m.set_threads(t);
    m.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}),
              {"accuracy"}, {.warn = false});
    return m;
  };
  std::vector<attn::Model> models;  // 1 thread, `threads` threads
  for (int t : {1, threads}) models.push_back(make_model(t));
  std::vector<attn::Model> independent;  // one 1-thread model per core, trained at once
  for (int c = 0; c < threads; ++c) independent.push_back(make_model(1));
  const attn::FitOptions fit{.epochs = 1, .batch_size = 20, .verbose = 0,
                             .validation_data = attn::Dataset{vx, mnist.test.y}};
  // The slowest of the independent models' epochs, each on a thread pinned to its own core.
  const auto independent_epoch_seconds = [&] {
    return slowest_pinned(threads, [&](int c) { return independent[c].fit(x, mnist.train.y, fit).seconds.at(0); });
  };
  std::printf("reference epoch with validation: 1 thread, %d threads, and %d 1-thread models at once "
              "(one per core), in rotating order\n", threads, threads);
  // Every core at full speed: the probe within this fraction of the fastest time seen.
  constexpr double kFullSpeed = 0.9;
  double fastest = 1e9;
  const auto probe = [&] {  // the slowest core's time now; keeps the fastest seen
    const double t = slowest_core_seconds(threads);
    if (t > 0.0) fastest = std::min(fastest, t);
    return t;
  };
  for (int i = 0; i < 5; ++i) probe();
  std::vector<double> ratios, full_ratios, ceilings, shares;
  double total[3] = {0.0, 0.0, 0.0}, full_total[3] = {0.0, 0.0, 0.0};
  for (int r = 0; r < rounds; ++r) {
    double seconds[3], trip = 0.0, slowest = 0.0;
    for (int i = 0; i < 3; ++i) {
      const int k = (i + r) % 3;  // which run goes first rotates, so a drift favours none
      slowest = std::max(slowest, probe());
      if (k == 1) trip = round_trip_ns();
      attn::set_random_seed(1337 + r);
      seconds[k] = k == 2 ? independent_epoch_seconds() : models[k].fit(x, mnist.train.y, fit).seconds.at(0);
      total[k] += seconds[k];
    }
    slowest = std::max(slowest, probe());
    const double speed = slowest > 0.0 ? fastest / slowest : 0.0;  // slowest core, slowest probe
    ratios.push_back(seconds[0] / seconds[1]);
    // What `threads` cores gave this round with nothing shared: the zero-communication ceiling.
    ceilings.push_back(threads * seconds[0] / seconds[2]);
    shares.push_back(ratios.back() / ceilings.back());
    if (speed >= kFullSpeed) {
      full_ratios.push_back(ratios.back());
      for (int k = 0; k < 3; ++k) full_total[k] += seconds[k];
    }
    std::printf("round %d: 1 thread %.3f s, %d threads %.3f s, ratio %.2f | %d at once %.3f s, ceiling %.2f | "
                "slowest core %.2f, round trip %.0f ns\n",
                r + 1, seconds[0], threads, seconds[1], ratios.back(), threads, seconds[2], ceilings.back(), speed,
                trip);
    std::fflush(stdout);
  }
  const auto summary = [](const char* what, const std::vector<double>& v, const double* sums) {
    std::printf("%s (%zu): median ratio %.2f, overall %.2f (min %.2f, max %.2f)\n", what, v.size(), median_of(v),
                sums[0] / sums[1], *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
  };
  summary("all rounds", ratios, total);
  std::printf("ceiling (%d x 1-thread epoch / slowest of %d at once): median %.2f, overall %.2f; "
              "ratio / ceiling: median %.2f, overall %.2f\n",
              threads, threads, median_of(ceilings), threads * total[0] / total[2], median_of(shares),
              (total[0] / total[1]) / (threads * total[0] / total[2]));
  if (full_ratios.empty())
    std::printf("no round found every core at full speed (>= %.1f) in all its probes\n", kFullSpeed);
  else
    summary("rounds with every core at full speed", full_ratios, full_total);
}
