// The activations that need exp, log or erf (src/kernels/transcendental_activations.cpp), forward
// and forward + backward through the kernels' entry point, beside the same functions from libm
// one element at a time (what attn did before they were vectorised): gelu in double, as the
// exact erf form was, the others in float. 65,536 values (a Transformer block's MLP
// activations, batch 20 x 16 tokens x 204 units, give about that), normal with spread 2.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/activations.hpp"

namespace {

using attn::kernels::Activation;
constexpr int64_t kCount = 65536;

struct Buffers {
  std::vector<float> x, y, dy, dx;
  Buffers() : x(kCount), y(kCount), dy(kCount), dx(kCount, 0.0f) {
    std::mt19937 gen(3);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    for (float& v : x) v = normal(gen);
    for (float& v : dy) v = normal(gen);
  }
};

void run_kernel(benchmark::State& state, Activation a) {
  Buffers b;
  const bool backward = state.range(0) == 1;
  for (auto _ : state) {
    attn::kernels::activation_forward(a, b.x.data(), b.y.data(), 1, kCount);
    if (backward) attn::kernels::activation_backward(a, b.x.data(), b.y.data(), b.dy.data(), b.dx.data(), 1, kCount);
    benchmark::DoNotOptimize(b.dx.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kCount);
}

void BM_Gelu(benchmark::State& state) { run_kernel(state, Activation::kGelu); }
void BM_Sigmoid(benchmark::State& state) { run_kernel(state, Activation::kSigmoid); }
void BM_Tanh(benchmark::State& state) { run_kernel(state, Activation::kTanh); }
void BM_Silu(benchmark::State& state) { run_kernel(state, Activation::kSilu); }
void BM_Elu(benchmark::State& state) { run_kernel(state, Activation::kElu); }
void BM_Softplus(benchmark::State& state) { run_kernel(state, Activation::kSoftplus); }
void BM_Mish(benchmark::State& state) { run_kernel(state, Activation::kMish); }

// libm per element, forward only.
template <class F>
void run_libm(benchmark::State& state, F f) {
  Buffers b;
  for (auto _ : state) {
    for (int64_t i = 0; i < kCount; ++i) b.y[i] = f(b.x[i]);
    benchmark::DoNotOptimize(b.y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kCount);
}

void BM_GeluLibm(benchmark::State& state) {
  run_libm(state, [](float x) { return static_cast<float>(0.5 * x * (1.0 + std::erf(x * 0.70710678118654752440))); });
}
void BM_SigmoidLibm(benchmark::State& state) {
  run_libm(state, [](float x) { return 1.0f / (1.0f + std::exp(-x)); });
}
void BM_TanhLibm(benchmark::State& state) {
  run_libm(state, [](float x) { return std::tanh(x); });
}
void BM_EluLibm(benchmark::State& state) {
  run_libm(state, [](float x) { return x > 0.0f ? x : std::expm1(x); });
}

// Argument: 0 forward only, 1 forward and backward.
BENCHMARK(BM_Gelu)->Arg(0)->Arg(1);
BENCHMARK(BM_GeluLibm);
BENCHMARK(BM_Sigmoid)->Arg(0)->Arg(1);
BENCHMARK(BM_SigmoidLibm);
BENCHMARK(BM_Tanh)->Arg(0)->Arg(1);
BENCHMARK(BM_TanhLibm);
BENCHMARK(BM_Elu)->Arg(0)->Arg(1);
BENCHMARK(BM_EluLibm);
BENCHMARK(BM_Silu)->Arg(0)->Arg(1);
BENCHMARK(BM_Softplus)->Arg(0)->Arg(1);
BENCHMARK(BM_Mish)->Arg(0)->Arg(1);

}  // namespace

BENCHMARK_MAIN();
