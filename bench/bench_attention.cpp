// Google Benchmarks of the attention kernels, forward + backward per call: the reference
// model's configuration (MNIST test images if found, else synthetic digit-like images), dense
// inputs at d = 1, 16, 64 and lengths 784 / 4096 with and without masks (d = 1 and 64 at T = 784
// also with the batch split over 2 threads), d = 1 over a range of score spreads (the series
// path's cost driver, up to where grouping takes over), the scalar reference at small sizes, and
// one-thread OpenBLAS sgemm as the machine's matrix-product yardstick.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention.hpp"
#include "model/thread_pool.hpp"

extern "C" void openblas_set_num_threads(int);

namespace {

using attn::kernels::AttentionConfig;

// n images of 784 pixels / 255 from $ATTN_DATA_DIR or ~/.cache/attn/mnist (raw IDX), else
// synthetic strokes with ~81% zeros.
std::vector<float> mnist_like(int64_t n) {
  std::vector<float> x(static_cast<size_t>(n * 784), 0.0f);
  std::vector<std::string> dirs;
  if (const char* d = std::getenv("ATTN_DATA_DIR")) dirs.push_back(std::string(d) + "/");
  if (const char* h = std::getenv("HOME")) dirs.push_back(std::string(h) + "/.cache/attn/mnist/");
  for (const auto& dir : dirs) {
    std::ifstream f(dir + "t10k-images-idx3-ubyte", std::ios::binary);
    if (!f) continue;
    f.seekg(16);
    std::vector<unsigned char> px(x.size());
    if (!f.read(reinterpret_cast<char*>(px.data()), static_cast<std::streamsize>(px.size()))) continue;
    for (size_t i = 0; i < px.size(); ++i) x[i] = static_cast<float>(px[i]) / 255.0f;
    return x;
  }
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> pos(6, 21), len(4, 12), val(1, 255);
  for (int64_t s = 0; s < n; ++s) {
    float* img = x.data() + s * 784;
    for (int stroke = 0; stroke < 3; ++stroke) {  // thick strokes, ~19% of pixels lit
      int r = pos(rng), c = pos(rng);
      const int dr = static_cast<int>(rng() % 3) - 1, dc = static_cast<int>(rng() % 3) - 1, l = len(rng);
      for (int t = 0; t < l; ++t, r += dr, c += dc)
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b) {
            const int rr = (r + a) % 28, cc = (c + b) % 28;
            img[rr * 28 + cc] = static_cast<float>(val(rng)) / 255.0f;
          }
    }
  }
  return x;
}

struct Problem {
  AttentionConfig cfg;
  std::vector<float> q, k, v, out, saved, scratch, dout, dq, dk, dv;
  std::vector<uint8_t> qmask, vmask;
  float dscale = 0.0f;
};

Problem dense_problem(int64_t batch, int64_t t, int64_t d, bool masks) {
  Problem p;
  p.cfg.batch = batch;
  p.cfg.tq = p.cfg.tv = t;
  p.cfg.d = p.cfg.dv = d;
  p.cfg.scale = 0.5f;
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const auto fill = [&](std::vector<float>& a, int64_t n) {
    a.resize(static_cast<size_t>(n));
    for (auto& x : a) x = u(rng);
  };
  fill(p.q, batch * t * d);
  fill(p.k, batch * t * d);
  fill(p.v, batch * t * d);
  fill(p.dout, batch * t * d);
  p.dq.assign(p.q.size(), 0.0f);
  p.dk.assign(p.k.size(), 0.0f);
  p.dv.assign(p.v.size(), 0.0f);
  if (masks) {
    p.qmask.assign(static_cast<size_t>(batch * t), 1);
    p.vmask.assign(static_cast<size_t>(batch * t), 1);
    for (size_t i = 0; i < p.vmask.size(); i += 7) p.vmask[i] = 0;
    for (size_t i = 0; i < p.qmask.size(); i += 11) p.qmask[i] = 0;
    p.cfg.query_mask = p.qmask.data();
    p.cfg.value_mask = p.vmask.data();
  }
  p.out.resize(p.dout.size());
  p.saved.resize(static_cast<size_t>(batch * attn::kernels::attention_saved_floats(p.cfg)));
  p.scratch.resize(static_cast<size_t>(attn::kernels::attention_scratch_floats(p.cfg)));
  return p;
}

// Reference model: q = k = v = x [20, 784, 1], use_scale (1.0), only dscale needed.
void BM_AttentionReferenceModel(benchmark::State& state) {
  Problem p;
  p.cfg.batch = 20;
  p.cfg.tq = p.cfg.tv = 784;
  const std::vector<float> images = mnist_like(200);
  p.out.resize(20 * 784);
  p.dout.assign(20 * 784, 0.01f);
  p.saved.resize(static_cast<size_t>(20 * attn::kernels::attention_saved_floats(p.cfg)));
  p.scratch.resize(static_cast<size_t>(attn::kernels::attention_scratch_floats(p.cfg)));
  int64_t batch_index = 0;
  for (auto _ : state) {
    const float* x = images.data() + (batch_index++ % 10) * 20 * 784;
    attn::kernels::attention_forward(p.cfg, x, x, x, p.out.data(), p.saved.data(), nullptr, p.scratch.data());
    attn::kernels::attention_backward(p.cfg, x, x, x, p.out.data(), p.dout.data(), p.saved.data(), nullptr, nullptr,
                                      nullptr, &p.dscale, nullptr, p.scratch.data());
    benchmark::DoNotOptimize(p.dscale);
  }
  state.SetItemsProcessed(state.iterations() * 20);  // samples
}
BENCHMARK(BM_AttentionReferenceModel)->Unit(benchmark::kMicrosecond);

// Score-matrix FLOPs of forward + backward: q.k and p.v forward (2 t^2 d each), and q.k, dout.v,
// dv, dq, dk backward (5 x 2 t^2 d): 14 t^2 d per sample (exp and softmax arithmetic not counted).
void set_flops(benchmark::State& state, const AttentionConfig& cfg) {
  const double flops = 14.0 * static_cast<double>(cfg.tq) * cfg.tv * cfg.d * cfg.batch;
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9 * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
  state.SetItemsProcessed(state.iterations() * cfg.batch);
}

// Args: d, t, masks (0/1), batch.
void BM_AttentionDense(benchmark::State& state) {
  Problem p = dense_problem(state.range(3), state.range(1), state.range(0), state.range(2) != 0);
  for (auto _ : state) {
    attn::kernels::attention_forward(p.cfg, p.q.data(), p.k.data(), p.v.data(), p.out.data(), p.saved.data(), nullptr,
                                     p.scratch.data());
    attn::kernels::attention_backward(p.cfg, p.q.data(), p.k.data(), p.v.data(), p.out.data(), p.dout.data(),
                                      p.saved.data(), p.dq.data(), p.dk.data(), p.dv.data(), &p.dscale, nullptr,
                                      p.scratch.data());
    benchmark::DoNotOptimize(p.dscale);
  }
  set_flops(state, p.cfg);
}
BENCHMARK(BM_AttentionDense)
    ->ArgNames({"d", "T", "masks", "batch"})
    ->Args({1, 784, 0, 20})
    ->Args({16, 784, 0, 20})
    ->Args({64, 784, 0, 20})
    ->Args({1, 784, 1, 20})
    ->Args({64, 784, 1, 20})
    ->Args({1, 784, 0, 1})
    ->Args({64, 784, 0, 1})
    ->Args({1, 4096, 0, 1})
    ->Args({16, 4096, 0, 1})
    ->Args({64, 4096, 0, 1})
    ->Args({1, 16384, 0, 1})
    ->Args({64, 16384, 0, 1})
    ->Unit(benchmark::kMillisecond);

// d = 1 dense inputs by score spread, max|scale q| (max k - min k): the series path needs about
// one key bucket per unit of spread, and gives way to grouping past tv / 4 buckets (here 196).
// Arg: scale x 10 on values in [-1, 1] (spread about 2 x scale).
void BM_AttentionD1Spread(benchmark::State& state) {
  Problem p = dense_problem(20, 784, 1, false);
  p.cfg.scale = static_cast<float>(state.range(0)) / 10.0f;
  for (auto _ : state) {
    attn::kernels::attention_forward(p.cfg, p.q.data(), p.k.data(), p.v.data(), p.out.data(), p.saved.data(), nullptr,
                                     p.scratch.data());
    attn::kernels::attention_backward(p.cfg, p.q.data(), p.k.data(), p.v.data(), p.out.data(), p.dout.data(),
                                      p.saved.data(), p.dq.data(), p.dk.data(), p.dv.data(), &p.dscale, nullptr,
                                      p.scratch.data());
    benchmark::DoNotOptimize(p.dscale);
  }
  state.counters["spread"] = 2.0 * p.cfg.scale;
  set_flops(state, p.cfg);
}
BENCHMARK(BM_AttentionD1Spread)->ArgName("scale_x10")->Arg(5)->Arg(50)->Arg(200)->Arg(900)->Arg(1100)->Unit(
    benchmark::kMillisecond);

// The same work split across threads the way the model does it: each thread takes a contiguous
// share of the batch with its own scratch (the kernels are single-threaded). Args: d, T, masks,
// batch, threads; the "threads:N" in the name is what bench/compare.sh looks for at N threads.
void BM_AttentionDenseThreaded(benchmark::State& state) {
  Problem p = dense_problem(state.range(3), state.range(1), state.range(0), state.range(2) != 0);
  const int threads = static_cast<int>(state.range(4));
  const int64_t batch = p.cfg.batch, t = p.cfg.tq, d = p.cfg.d;
  const int64_t saved_per_sample = attn::kernels::attention_saved_floats(p.cfg);
  std::vector<AttentionConfig> cfgs(static_cast<size_t>(threads));
  std::vector<std::vector<float>> scratch(static_cast<size_t>(threads));
  std::vector<int64_t> first(static_cast<size_t>(threads) + 1);
  std::vector<float> dscale(static_cast<size_t>(threads), 0.0f);
  for (int i = 0; i <= threads; ++i) first[static_cast<size_t>(i)] = batch * i / threads;
  for (int i = 0; i < threads; ++i) {
    AttentionConfig& c = cfgs[static_cast<size_t>(i)];
    c = p.cfg;
    c.batch = first[static_cast<size_t>(i) + 1] - first[static_cast<size_t>(i)];
    c.sample_offset = first[static_cast<size_t>(i)];
    if (c.query_mask != nullptr) c.query_mask += first[static_cast<size_t>(i)] * t;
    if (c.value_mask != nullptr) c.value_mask += first[static_cast<size_t>(i)] * t;
    scratch[static_cast<size_t>(i)].resize(static_cast<size_t>(attn::kernels::attention_scratch_floats(c)));
  }
  attn::ThreadPool pool(threads);
  auto work = [&](int i) {
    const auto u = static_cast<size_t>(i);
    const AttentionConfig& c = cfgs[u];
    const int64_t off = first[u] * t * d;  // q, k, v, out, dout, dq, dk, dv: [batch, t, d]
    float* saved = p.saved.data() + first[u] * saved_per_sample;
    attn::kernels::attention_forward(c, p.q.data() + off, p.k.data() + off, p.v.data() + off, p.out.data() + off,
                                     saved, nullptr, scratch[u].data());
    attn::kernels::attention_backward(c, p.q.data() + off, p.k.data() + off, p.v.data() + off, p.out.data() + off,
                                      p.dout.data() + off, saved, p.dq.data() + off, p.dk.data() + off,
                                      p.dv.data() + off, &dscale[u], nullptr, scratch[u].data());
  };
  for (auto _ : state) {
    pool.run(work);
    benchmark::DoNotOptimize(dscale.data());
  }
  set_flops(state, p.cfg);
}
BENCHMARK(BM_AttentionDenseThreaded)
    ->ArgNames({"d", "T", "masks", "batch", "threads"})
    ->Args({1, 784, 0, 20, 2})
    ->Args({64, 784, 0, 20, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_AttentionDenseReference(benchmark::State& state) {
  Problem p = dense_problem(1, state.range(1), state.range(0), false);
  for (auto _ : state) {
    attn::kernels::attention_forward_reference(p.cfg, p.q.data(), p.k.data(), p.v.data(), p.out.data(), nullptr);
    attn::kernels::attention_backward_reference(p.cfg, p.q.data(), p.k.data(), p.v.data(), p.dout.data(), p.dq.data(),
                                                p.dk.data(), p.dv.data(), &p.dscale, nullptr);
    benchmark::DoNotOptimize(p.dscale);
  }
  set_flops(state, p.cfg);
}
BENCHMARK(BM_AttentionDenseReference)->ArgNames({"d", "T"})->Args({1, 784})->Args({64, 256})->Unit(benchmark::kMillisecond);

void BM_Sgemm1024(benchmark::State& state) {
  openblas_set_num_threads(1);
  const int n = 1024;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n, 0.0f);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * n * n * n * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Sgemm1024)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
