// The activation layers with arguments (ReLU, LeakyReLU, ELU) forward and backward over a conv
// block's activations (batch 20 of 26 x 26 x 32, as a Conv2D(32, 3) on MNIST gives), beside the
// relu that Dense and Conv2D apply inside their own kernels: how much a separate activation layer
// costs on top of the layer before it.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <vector>

#include "attn/attn.hpp"
#include "kernels/activations.hpp"

namespace {

namespace L = attn::layers;

constexpr int64_t kBatch = 20;
const attn::Shape kShape = {26, 26, 32};

struct Buffers {
  std::vector<float> x, y, dy, dx;
  Buffers() {
    const size_t n = kBatch * attn::shape_size(kShape);
    std::mt19937 gen(3);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    x.resize(n);
    dy.resize(n);
    for (float& v : x) v = normal(gen);
    for (float& v : dy) v = normal(gen);
    y.assign(n, 0.0f);
    dx.assign(n, 0.0f);
  }
};

void run_layer(benchmark::State& state, const std::shared_ptr<attn::Layer>& layer) {
  attn::clear_session();
  layer->call({attn::Input(kShape)});
  Buffers b;
  attn::CallOptions call;
  attn::ForwardContext f;
  f.batch = kBatch;
  f.call = &call;
  f.inputs = {b.x.data()};
  f.outputs = {b.y.data()};
  attn::BackwardContext g;
  g.batch = kBatch;
  g.call = &call;
  g.inputs = {b.x.data()};
  g.outputs = {b.y.data()};
  g.output_grads = {b.dy.data()};
  g.input_grads = {b.dx.data()};
  const bool backward = state.range(0) == 1;
  for (auto _ : state) {
    layer->forward(f);
    if (backward) layer->backward(g);
    benchmark::DoNotOptimize(b.dx.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(b.x.size()));
}

void BM_ReLULayer(benchmark::State& state) { run_layer(state, std::make_shared<L::ReLULayer>()); }
void BM_ReLULayerCapped(benchmark::State& state) {
  run_layer(state, std::make_shared<L::ReLULayer>(L::ReLUOptions{.max_value = 6.0, .negative_slope = 0.1}));
}
void BM_LeakyReLULayer(benchmark::State& state) { run_layer(state, std::make_shared<L::LeakyReLULayer>()); }
void BM_ELULayer(benchmark::State& state) { run_layer(state, std::make_shared<L::ELULayer>()); }

// The fused relu kernel Dense and Conv2D call: the floor for a separate ReLU layer.
void BM_ReluKernel(benchmark::State& state) {
  Buffers b;
  const bool backward = state.range(0) == 1;
  const auto n = static_cast<int64_t>(b.x.size());
  for (auto _ : state) {
    attn::kernels::activation_forward(attn::kernels::Activation::kRelu, b.x.data(), b.y.data(), 1, n);
    if (backward)
      attn::kernels::activation_backward(attn::kernels::Activation::kRelu, b.x.data(), b.y.data(), b.dy.data(),
                                         b.dx.data(), 1, n);
    benchmark::DoNotOptimize(b.dx.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n);
}

// Argument: 0 forward only, 1 forward and backward.
BENCHMARK(BM_ReLULayer)->Arg(0)->Arg(1);
BENCHMARK(BM_ReLULayerCapped)->Arg(0)->Arg(1);
BENCHMARK(BM_LeakyReLULayer)->Arg(0)->Arg(1);
BENCHMARK(BM_ELULayer)->Arg(0)->Arg(1);
BENCHMARK(BM_ReluKernel)->Arg(0)->Arg(1);

}  // namespace

BENCHMARK_MAIN();
