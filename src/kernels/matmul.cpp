// Where a product goes: the small-m kernels up to kDenseSmallRows rows, sgemm
// beyond.
#include "kernels/matmul.hpp"

#include <cblas.h>

#include <cstring>

#include "kernels/dense_gemm.hpp"

namespace attn::kernels {

void matmul(const float *x, int64_t ldx, const float *w, const float *bias, float *y, int64_t m, int64_t k, int64_t n) {
  if (m <= kDenseSmallRows || k == 0) return dense_forward(x, w, bias, y, m, k, n, ldx);
  for (int64_t r = 0; r < m; ++r) {
    if (bias)
      std::memcpy(y + r * n, bias, n * sizeof(float));
    else
      std::memset(y + r * n, 0, n * sizeof(float));
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
              1.0f, x, static_cast<int>(ldx), w, static_cast<int>(n), 1.0f, y, static_cast<int>(n));
}

void matmul_add_grad_weight(const float *x, int64_t ldx, const float *dz, float *dw, int64_t m, int64_t k, int64_t n,
                            bool overwrite) {
  if (k == 0) return;
  if (m <= kDenseSmallRows) return dense_grad_weight(x, dz, dw, m, k, n, ldx, overwrite);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(k), static_cast<int>(n), static_cast<int>(m),
              1.0f, x, static_cast<int>(ldx), dz, static_cast<int>(n), overwrite ? 0.0f : 1.0f, dw,
              static_cast<int>(n));
}

void matmul_add_grad_input(const float *dz, const float *w, float *dx, int64_t ldx, int64_t m, int64_t k, int64_t n,
                           bool overwrite) {
  if (k == 0) return;
  if (m <= kDenseSmallRows) return dense_grad_input(dz, w, dx, m, k, n, ldx, overwrite);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(k), static_cast<int>(n),
              1.0f, dz, static_cast<int>(n), w, static_cast<int>(n), overwrite ? 0.0f : 1.0f, dx,
              static_cast<int>(ldx));
}

}  // namespace attn::kernels
