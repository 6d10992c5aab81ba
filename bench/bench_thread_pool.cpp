// The thread pool's synchronisation alone, as a training step meets it: an empty run() (start
// and end: twice per step) and a barrier (four per step of the reference model on 2 threads).
// On these virtual machines what they cost follows the time a cache line takes between the two
// cores (about 100 ns in some minutes, 0.3-1.5 us in others), so compare builds in alternation.
#include <benchmark/benchmark.h>

#include "model/thread_pool.hpp"

namespace {

void BM_PoolRun(benchmark::State& state) {
  attn::ThreadPool pool(static_cast<int>(state.range(0)));
  int sink = 0;
  auto fn = [&sink](int t) {
    if (t == 0) ++sink;
  };
  for (auto _ : state) pool.run(fn);
  benchmark::DoNotOptimize(sink);
}
BENCHMARK(BM_PoolRun)->Arg(2)->UseRealTime();

// Time per barrier: one run of 1,000 barriers per iteration.
void BM_PoolBarrier(benchmark::State& state) {
  attn::ThreadPool pool(static_cast<int>(state.range(0)));
  constexpr int kBarriers = 1000;
  auto fn = [&pool](int) {
    for (int i = 0; i < kBarriers; ++i) pool.barrier();
  };
  for (auto _ : state) pool.run(fn);
  state.SetItemsProcessed(state.iterations() * kBarriers);
}
BENCHMARK(BM_PoolBarrier)->Arg(2)->UseRealTime();

// As in a step: one thread arrives late (each in turn), after about 2 us more work than the
// other; the time per barrier beyond that work is what the wait costs the later thread.
void BM_PoolBarrierLateArrival(benchmark::State& state) {
  attn::ThreadPool pool(2);
  constexpr int kBarriers = 200;
  auto fn = [&pool](int t) {
    for (int i = 0; i < kBarriers; ++i) {
      if (i % 2 == t)
        for (int k = 0; k < 2000; ++k) benchmark::DoNotOptimize(k);
      pool.barrier();
    }
  };
  for (auto _ : state) pool.run(fn);
  state.SetItemsProcessed(state.iterations() * kBarriers);
}
BENCHMARK(BM_PoolBarrierLateArrival)->UseRealTime();

// The same work without a pool, for the difference.
void BM_LateArrivalWorkAlone(benchmark::State& state) {
  for (auto _ : state)
    for (int i = 0; i < 200; ++i)
      for (int k = 0; k < 2000; ++k) benchmark::DoNotOptimize(k);
  state.SetItemsProcessed(state.iterations() * 200);
}
BENCHMARK(BM_LateArrivalWorkAlone)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

