// Google Benchmark of the MultiHeadAttention layer, forward + backward (all gradients) per batch
// of 8 on one thread: self-attention over T steps of 64 features, 4 heads of key_dim 16, at
// T = 16 .. 1024, without masks, causal, and with returned scores (which take the layer's
// explicit-probabilities path). The counter saved_MB is what the layer keeps from forward to
// backward for the batch: linear in T on the fused path, quadratic with returned scores.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "attn/attn.hpp"

namespace {

namespace L = attn::layers;

void BM_MultiHeadAttention(benchmark::State& state) {
  const int64_t t = state.range(0);
  const bool causal = state.range(1) == 1, scores = state.range(1) == 2;
  constexpr int64_t kBatch = 8, kFeatures = 64;
  attn::clear_session();
  attn::set_random_seed(3);
  auto layer = std::make_shared<L::MultiHeadAttentionLayer>(L::MultiHeadAttentionOptions{.num_heads = 4, .key_dim = 16});
  attn::CallOptions call{.use_causal_mask = causal, .return_attention_scores = scores};
  auto outs = layer->call({attn::Input({t, kFeatures}), attn::Input({t, kFeatures})}, call);
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const auto random = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = u(rng);
    return v;
  };
  const int64_t n = kBatch * t * kFeatures;
  auto x = random(n), dout = random(n);
  std::vector<float> out(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
  std::vector<float> probs(scores ? static_cast<size_t>(kBatch * attn::shape_size(outs[1]->shape)) : 0);
  std::vector<float> saved(static_cast<size_t>(kBatch * layer->saved_floats_per_sample(call)));
  std::vector<float> scratch(static_cast<size_t>(layer->scratch_floats(kBatch, call)));
  int64_t params = 0;
  for (attn::Weight& w : layer->weights()) {
    w.offset = params;
    params += w.value.size();
  }
  std::vector<float> dw(static_cast<size_t>(params));
  attn::ForwardContext f;
  f.batch = kBatch;
  f.call = &call;
  f.training = true;
  f.inputs = {x.data(), x.data()};
  f.outputs = {out.data()};
  if (scores) f.outputs.push_back(probs.data());
  f.saved = saved.data();
  f.scratch = scratch.data();
  attn::BackwardContext b;
  b.batch = kBatch;
  b.call = &call;
  b.training = true;
  b.inputs = {x.data(), x.data()};
  b.outputs = {out.data()};
  b.output_grads = {dout.data()};
  if (scores) {
    b.outputs.push_back(probs.data());
    b.output_grads.push_back(nullptr);
  }
  b.input_grads = {dx.data(), dx.data()};
  b.param_grads = dw.data();
  b.saved = saved.data();
  b.scratch = scratch.data();
  for (auto _ : state) {
    layer->forward(f);
    layer->backward(b);
    benchmark::DoNotOptimize(dx.data());
  }
  state.counters["saved_MB"] = static_cast<double>(saved.size() + probs.size()) * sizeof(float) / 1e6;
}
BENCHMARK(BM_MultiHeadAttention)
    ->ArgNames({"T", "mode"})  // mode 0: no mask, 1: causal, 2: returned scores
    ->ArgsProduct({{16, 64, 196, 1024}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
