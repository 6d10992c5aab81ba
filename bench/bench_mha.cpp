// Google Benchmark of the MultiHeadAttention layer, forward + backward (all gradients) per batch
// of 8: self-attention over T steps of 64 features, 4 heads of key_dim 16, at T = 4 .. 1024,
// without masks, causal, and with returned scores (which take the layer's explicit-probabilities
// path, as T = 4 does); on 1 thread, and on 2 with each thread running half the batch, as training splits a
// batch (bench/compare.sh times PyTorch's nn.MultiheadAttention on the same problem). The
// counter saved_MB is what the layer keeps from forward to backward for the batch: linear in T
// on the fused path, quadratic with returned scores.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "attn/attn.hpp"
#include "model/thread_pool.hpp"

extern "C" void openblas_set_num_threads(int);

namespace {

namespace L = attn::layers;

void BM_MultiHeadAttention(benchmark::State& state) {
  openblas_set_num_threads(1);  // as a Model does: its threads split the batch
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
  const int64_t probs_per_sample = scores ? attn::shape_size(outs[1]->shape) : 0;
  std::vector<float> probs(static_cast<size_t>(kBatch * probs_per_sample));
  const int64_t saved_per_sample = layer->saved_floats_per_sample(call);
  std::vector<float> saved(static_cast<size_t>(kBatch * saved_per_sample));
  int64_t params = 0;
  for (attn::Weight& w : layer->weights()) {
    w.offset = params;
    params += w.value.size();
  }
  // Each thread: its half of the batch, its own scratch and parameter gradients.
  const int threads = static_cast<int>(state.range(2));
  std::vector<attn::ForwardContext> fwd(static_cast<size_t>(threads));
  std::vector<attn::BackwardContext> bwd(static_cast<size_t>(threads));
  std::vector<std::vector<float>> scratch(static_cast<size_t>(threads)), dw(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) {
    const auto u = static_cast<size_t>(i);
    const int64_t first = kBatch * i / threads, count = kBatch * (i + 1) / threads - first;
    const int64_t off = first * t * kFeatures;
    scratch[u].resize(static_cast<size_t>(layer->scratch_floats(count, call)));
    dw[u].resize(static_cast<size_t>(params));
    attn::ForwardContext& f = fwd[u];
    f.batch = count;
    f.sample_offset = first;
    f.call = &call;
    f.training = true;
    f.inputs = {x.data() + off, x.data() + off};
    f.outputs = {out.data() + off};
    if (scores) f.outputs.push_back(probs.data() + first * probs_per_sample);
    f.saved = saved.data() + first * saved_per_sample;
    f.scratch = scratch[u].data();
    attn::BackwardContext& b = bwd[u];
    b.batch = count;
    b.sample_offset = first;
    b.call = &call;
    b.training = true;
    b.inputs = f.inputs;
    b.outputs = {out.data() + off};
    b.output_grads = {dout.data() + off};
    if (scores) {
      b.outputs.push_back(f.outputs[1]);
      b.output_grads.push_back(nullptr);
    }
    b.input_grads = {dx.data() + off, dx.data() + off};
    b.param_grads = dw[u].data();
    b.saved = f.saved;
    b.scratch = scratch[u].data();
  }
  attn::ThreadPool pool(threads);
  auto work = [&](int i) {
    layer->forward(fwd[static_cast<size_t>(i)]);
    layer->backward(bwd[static_cast<size_t>(i)]);
  };
  for (auto _ : state) {
    pool.run(work);
    benchmark::DoNotOptimize(dx.data());
  }
  state.counters["saved_MB"] = static_cast<double>(saved.size() + probs.size()) * sizeof(float) / 1e6;
}
BENCHMARK(BM_MultiHeadAttention)
    ->ArgNames({"T", "mode", "threads"})  // mode 0: no mask, 1: causal, 2: returned scores
    ->ArgsProduct({{4, 8, 16, 64, 196, 1024}, {0, 1, 2}, {1}})
    ->ArgsProduct({{196, 1024}, {0}, {2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
