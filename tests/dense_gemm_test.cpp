// The small-m Dense kernels against their double-accumulating scalar references on random data
// over many shapes (SIMD body, 4-lane and 1-lane column tails, partial row tiles), with outputs
// pre-filled so overwrite (forward) and accumulate (gradients) semantics are checked. The
// tolerance is the standard float32 bound for a sum of t products, t * eps * sum|terms|, which
// an indexing or semantics error exceeds by orders of magnitude.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/dense_gemm.hpp"

namespace {

namespace k = attn::kernels;

std::vector<float> random_vector(std::mt19937& gen, int64_t size) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(size);
  for (auto& e : v) e = normal(gen);
  return v;
}

// |got - want| <= (terms + 2) * eps * magnitude, magnitude = sum of |terms| (incl. the initial value).
void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& magnitude,
                  int64_t terms, const char* what, int64_t m, int64_t kk, int64_t n) {
  ASSERT_EQ(got.size(), want.size());
  int failures = 0;
  for (size_t e = 0; e < got.size() && failures < 5; ++e) {
    const double tol = (terms + 2) * static_cast<double>(FLT_EPSILON) * magnitude[e] + 1e-30;
    const double err = std::abs(static_cast<double>(got[e]) - want[e]);
    if (!(err <= tol)) {
      ++failures;
      ADD_FAILURE() << what << " m=" << m << " k=" << kk << " n=" << n << " element " << e << ": got " << got[e]
                    << ", want " << want[e] << " (tolerance " << tol << ")";
    }
  }
}

const int64_t kKs[] = {1, 3, 17, 784, 785};
const int64_t kNs[] = {1, 7, 10, 16, 17, 22, 100, 129};  // narrow (<= 16 units) and wide input-gradient paths

TEST(DenseGemm, ForwardMatchesReference) {
  std::mt19937 gen(11);
  for (int64_t m = 1; m <= 33; ++m)
    for (int64_t kk : kKs)
      for (int64_t n : kNs)
        for (bool with_bias : {true, false}) {
          auto x = random_vector(gen, m * kk), w = random_vector(gen, kk * n), bias = random_vector(gen, n);
          const float* b = with_bias ? bias.data() : nullptr;
          // Pre-filled with garbage: the forward product overwrites.
          auto y = random_vector(gen, m * n), want = y;
          k::dense_forward(x.data(), w.data(), b, y.data(), m, kk, n);
          k::dense_forward_reference(x.data(), w.data(), b, want.data(), m, kk, n);
          std::vector<double> mag(m * n, 0.0);
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
              double s = b ? std::abs(b[j]) : 0.0;
              for (int64_t p = 0; p < kk; ++p) s += std::abs(static_cast<double>(x[i * kk + p]) * w[p * n + j]);
              mag[i * n + j] = s;
            }
          expect_close(y, want, mag, kk + 1, with_bias ? "forward+bias" : "forward", m, kk, n);
          if (HasFailure()) return;
        }
}

TEST(DenseGemm, GradWeightAccumulatesLikeReference) {
  std::mt19937 gen(12);
  for (int64_t m = 1; m <= 33; ++m)
    for (int64_t kk : kKs)
      for (int64_t n : kNs) {
        auto x = random_vector(gen, m * kk), dz = random_vector(gen, m * n);
        auto dw = random_vector(gen, kk * n), want = dw;  // pre-filled: must accumulate
        std::vector<double> mag(kk * n);
        for (int64_t p = 0; p < kk; ++p)
          for (int64_t j = 0; j < n; ++j) {
            double s = std::abs(dw[p * n + j]);
            for (int64_t i = 0; i < m; ++i) s += std::abs(static_cast<double>(x[i * kk + p]) * dz[i * n + j]);
            mag[p * n + j] = s;
          }
        k::dense_grad_weight(x.data(), dz.data(), dw.data(), m, kk, n);
        k::dense_grad_weight_reference(x.data(), dz.data(), want.data(), m, kk, n);
        expect_close(dw, want, mag, m + 1, "grad_weight", m, kk, n);
        if (HasFailure()) return;
      }
}

// With overwrite the kernel writes dW = x^T dz over whatever dw held (NaN here): the bits of
// accumulating into a cleared dw, which the team Dense relies on to skip the clearing.
TEST(DenseGemm, GradWeightOverwriteEqualsAccumulatingIntoZeros) {
  std::mt19937 gen(15);
  for (int64_t m : {0, 1, 5, 20, 33})
    for (int64_t kk : kKs)
      for (int64_t n : kNs) {
        auto x = random_vector(gen, m * kk), dz = random_vector(gen, m * n);
        std::vector<float> cleared(kk * n, 0.0f), written(kk * n, std::numeric_limits<float>::quiet_NaN());
        k::dense_grad_weight(x.data(), dz.data(), cleared.data(), m, kk, n);
        k::dense_grad_weight(x.data(), dz.data(), written.data(), m, kk, n, 0, true);
        ASSERT_EQ(0, std::memcmp(cleared.data(), written.data(), cleared.size() * sizeof(float)))
            << "m=" << m << " k=" << kk << " n=" << n;
      }
}

TEST(DenseGemm, GradInputAccumulatesLikeReference) {
  std::mt19937 gen(13);
  for (int64_t m = 1; m <= 33; ++m)
    for (int64_t kk : kKs)
      for (int64_t n : kNs) {
        auto dz = random_vector(gen, m * n), w = random_vector(gen, kk * n);
        auto dx = random_vector(gen, m * kk), want = dx;  // pre-filled: must accumulate
        std::vector<double> mag(m * kk);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t p = 0; p < kk; ++p) {
            double s = std::abs(dx[i * kk + p]);
            for (int64_t j = 0; j < n; ++j) s += std::abs(static_cast<double>(dz[i * n + j]) * w[p * n + j]);
            mag[i * kk + p] = s;
          }
        k::dense_grad_input(dz.data(), w.data(), dx.data(), m, kk, n);
        k::dense_grad_input_reference(dz.data(), w.data(), want.data(), m, kk, n);
        expect_close(dx, want, mag, n + 1, "grad_input", m, kk, n);
        if (HasFailure()) return;
      }
}

// The same for the input gradient, on a column range of a wider dx (as the team Dense writes its
// rows of W's features): the range gets the bits of accumulating into zeros over NaN, the other
// columns keep theirs. Zero rows of dz give +0 (0 + -0), as the cleared buffer would.
TEST(DenseGemm, GradInputOverwriteEqualsAccumulatingIntoZeros) {
  std::mt19937 gen(16);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t m : {1, 4, 5, 20, 33})
    for (int64_t kk : kKs)
      for (int64_t n : kNs)
        for (int64_t k0 : {0, 3}) {
          const int64_t ldx = kk + k0 + 2;
          auto dz = random_vector(gen, m * n), w = random_vector(gen, kk * n);
          for (int64_t j = 0; j < n; ++j) dz[j] = -0.0f;  // the first row's sums are -0 or +0
          std::vector<float> cleared(m * ldx, 0.0f), written(m * ldx, nan);
          for (int64_t i = 0; i < m; ++i)
            for (int64_t p = 0; p < ldx; ++p)
              if (p < k0 || p >= k0 + kk) cleared[i * ldx + p] = written[i * ldx + p] = static_cast<float>(p);
          k::dense_grad_input(dz.data(), w.data(), cleared.data() + k0, m, kk, n, ldx);
          k::dense_grad_input(dz.data(), w.data(), written.data() + k0, m, kk, n, ldx, true);
          ASSERT_EQ(0, std::memcmp(cleared.data(), written.data(), cleared.size() * sizeof(float)))
              << "m=" << m << " k=" << kk << " n=" << n << " k0=" << k0;
        }
}

// A column range [k0, k0 + kk) of a wider row-major x (stride ldx), as threads use when they split
// W by rows: equal to the contiguous call on the extracted columns, and the other columns of dx
// untouched.
TEST(DenseGemm, StridedColumnRangeMatchesContiguous) {
  std::mt19937 gen(14);
  const int64_t ldx = 29;
  for (int64_t m : {1, 3, 4, 10, 20})
    for (int64_t k0 : {0, 5, 16})
      for (int64_t kk : {1, 4, 13})
        for (int64_t n : {1, 7, 100}) {
          auto xw = random_vector(gen, m * ldx), w = random_vector(gen, kk * n), dz = random_vector(gen, m * n);
          std::vector<float> xc(m * kk);
          for (int64_t i = 0; i < m; ++i)
            for (int64_t p = 0; p < kk; ++p) xc[i * kk + p] = xw[i * ldx + k0 + p];
          std::vector<float> y1(m * n), y2(m * n);
          k::dense_forward(xw.data() + k0, w.data(), nullptr, y1.data(), m, kk, n, ldx);
          k::dense_forward(xc.data(), w.data(), nullptr, y2.data(), m, kk, n);
          EXPECT_EQ(y1, y2) << "forward m=" << m << " k0=" << k0 << " k=" << kk << " n=" << n;
          std::vector<float> dw1(kk * n, 0.5f), dw2(kk * n, 0.5f);
          k::dense_grad_weight(xw.data() + k0, dz.data(), dw1.data(), m, kk, n, ldx);
          k::dense_grad_weight(xc.data(), dz.data(), dw2.data(), m, kk, n);
          EXPECT_EQ(dw1, dw2) << "grad_weight m=" << m << " k0=" << k0 << " k=" << kk << " n=" << n;
          auto dxw = random_vector(gen, m * ldx), before = dxw;
          std::vector<float> dxc(m * kk);
          for (int64_t i = 0; i < m; ++i)
            for (int64_t p = 0; p < kk; ++p) dxc[i * kk + p] = dxw[i * ldx + k0 + p];
          k::dense_grad_input(dz.data(), w.data(), dxw.data() + k0, m, kk, n, ldx);
          k::dense_grad_input(dz.data(), w.data(), dxc.data(), m, kk, n);
          for (int64_t i = 0; i < m; ++i)
            for (int64_t p = 0; p < ldx; ++p) {
              const bool inside = p >= k0 && p < k0 + kk;
              const float want = inside ? dxc[i * kk + p - k0] : before[i * ldx + p];
              ASSERT_EQ(dxw[i * ldx + p], want) << "grad_input m=" << m << " k0=" << k0 << " k=" << kk << " n=" << n
                                                << " at " << i << "," << p;
            }
          if (HasFailure()) return;
        }
}

// The references themselves, on a product small enough to write out.
TEST(DenseGemm, ReferencesOnAHandExample) {
  const float x[] = {1, 2, 3, 4, 5, 6};           // [2, 3]
  const float w[] = {1, 0, 2, -1, 1, 0.5f};       // [3, 2]
  const float b[] = {10, 20};
  float y[4] = {99, 99, 99, 99};
  k::dense_forward_reference(x, w, b, y, 2, 3, 2);
  EXPECT_FLOAT_EQ(y[0], 10 + 1 * 1 + 2 * 2 + 3 * 1);
  EXPECT_FLOAT_EQ(y[1], 20 + 1 * 0 - 2 * 1 + 3 * 0.5f);
  EXPECT_FLOAT_EQ(y[2], 10 + 4 * 1 + 5 * 2 + 6 * 1);
  EXPECT_FLOAT_EQ(y[3], 20 + 4 * 0 - 5 * 1 + 6 * 0.5f);
  float dw[6] = {1, 1, 1, 1, 1, 1};
  const float dz[] = {1, 2, 3, 4};                 // [2, 2]
  k::dense_grad_weight_reference(x, dz, dw, 2, 3, 2);
  EXPECT_FLOAT_EQ(dw[0], 1 + 1 * 1 + 4 * 3);
  EXPECT_FLOAT_EQ(dw[5], 1 + 3 * 2 + 6 * 4);
  float dx[6] = {1, 1, 1, 1, 1, 1};
  k::dense_grad_input_reference(dz, w, dx, 2, 3, 2);
  EXPECT_FLOAT_EQ(dx[0], 1 + 1 * 1 + 2 * 0);
  EXPECT_FLOAT_EQ(dx[4], 1 + 3 * 2 + 4 * -1);
  // The kernels agree on it exactly (small integers and halves).
  float y2[4] = {-7, -7, -7, -7};
  k::dense_forward(x, w, b, y2, 2, 3, 2);
  for (int e = 0; e < 4; ++e) EXPECT_EQ(y2[e], y[e]);
}

}  // namespace
