// The small-m Dense kernels against single-threaded OpenBLAS sgemm for the reference model's
// Dense(784 -> 100) and Dense(100 -> 10), at the batch slice of one of 2 threads (m = 10) and of
// 1 thread (m = 20): forward y = x W + b, weight gradient dW += x^T dz, input gradient dx += dz W^T.
#include <benchmark/benchmark.h>

#if __has_include(<cblas.h>)
#include <cblas.h>
#else
#include <openblas-pthread/cblas.h>
#endif

#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "kernels/dense_gemm.hpp"

extern "C" void openblas_set_num_threads(int);

namespace {

struct Data {
  int kK, kN;
  std::vector<float> x, w, b, y, dz, dw, dx;
  Data(int m, int k, int n) : kK(k), kN(n) {
    std::mt19937 gen(5);
    std::normal_distribution<float> normal(0.0f, 0.1f);
    auto fill = [&](std::vector<float>& v, size_t size) {
      v.resize(size);
      for (auto& e : v) e = normal(gen);
    };
    fill(x, size_t(m) * kK);
    fill(w, size_t(kK) * kN);
    fill(b, kN);
    fill(y, size_t(m) * kN);
    fill(dz, size_t(m) * kN);
    fill(dw, size_t(kK) * kN);
    fill(dx, size_t(m) * kK);
  }
};

enum Product { kForward, kGradWeight, kGradInput };

void run_kernel(Data& d, int m, Product p) {
  const int kK = d.kK, kN = d.kN;
  switch (p) {
    case kForward: attn::kernels::dense_forward(d.x.data(), d.w.data(), d.b.data(), d.y.data(), m, kK, kN); break;
    case kGradWeight: attn::kernels::dense_grad_weight(d.x.data(), d.dz.data(), d.dw.data(), m, kK, kN); break;
    case kGradInput: attn::kernels::dense_grad_input(d.dz.data(), d.w.data(), d.dx.data(), m, kK, kN); break;
  }
}

// What src/layers/dense.cpp did with sgemm (the forward includes the bias broadcast).
void run_sgemm(Data& d, int m, Product p) {
  const int kK = d.kK, kN = d.kN;
  switch (p) {
    case kForward:
      for (int r = 0; r < m; ++r) std::memcpy(d.y.data() + r * kN, d.b.data(), kN * sizeof(float));
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, kN, kK, 1.0f, d.x.data(), kK, d.w.data(), kN, 1.0f,
                  d.y.data(), kN);
      break;
    case kGradWeight:
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kK, kN, m, 1.0f, d.x.data(), kK, d.dz.data(), kN, 1.0f,
                  d.dw.data(), kN);
      break;
    case kGradInput:
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kK, kN, 1.0f, d.dz.data(), kN, d.w.data(), kN, 1.0f,
                  d.dx.data(), kK);
      break;
  }
}

template <bool kKernel>
void BM_Dense(benchmark::State& state) {
  openblas_set_num_threads(1);
  const int m = static_cast<int>(state.range(0));
  const auto p = static_cast<Product>(state.range(1));
  const int k = static_cast<int>(state.range(2)), n = static_cast<int>(state.range(3));
  Data d(m, k, n);
  for (auto _ : state) {
    if (kKernel)
      run_kernel(d, m, p);
    else
      run_sgemm(d, m, p);
    benchmark::ClobberMemory();
  }
  state.SetLabel(p == kForward ? "forward" : p == kGradWeight ? "grad_weight" : "grad_input");
  state.counters["GFLOPS"] =
      benchmark::Counter(2.0 * m * k * n, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void shapes(benchmark::internal::Benchmark* b) {
  for (auto [k, n] : {std::pair{784, 100}, std::pair{100, 10}})
    for (int p : {kForward, kGradWeight, kGradInput})
      for (int m : {10, 20}) b->Args({m, p, k, n});
  b->ArgNames({"m", "product", "k", "n"})->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_Dense<true>)->Name("BM_DenseKernel")->Apply(shapes);
BENCHMARK(BM_Dense<false>)->Name("BM_DenseSgemm")->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
