// Row-major matrix products for the layers that multiply by a weight matrix
// W[k, n] (Dense, Conv2D's patches): the small-m kernels of dense_gemm.hpp for
// a few rows, where BLAS would spend its time packing W, and BLAS sgemm for
// many. They allocate nothing.
#pragma once

#include <cstdint>

namespace attn::kernels {

// y[m,n] = bias[n] + x[m,k] w[k,n] (x rows ldx apart; bias may be null: 0).
void matmul(const float *x, int64_t ldx, const float *w, const float *bias, float *y, int64_t m, int64_t k, int64_t n);

// dw[k,n] += x[m,k]^T dz[m,n] (x rows ldx apart); with overwrite, dw = x^T dz.
void matmul_add_grad_weight(const float *x, int64_t ldx, const float *dz, float *dw, int64_t m, int64_t k, int64_t n,
                            bool overwrite = false);

// dx[m,k] += dz[m,n] w[k,n]^T (dx rows ldx apart); with overwrite, dx = dz w^T.
void matmul_add_grad_input(const float *dz, const float *w, float *dx, int64_t ldx, int64_t m, int64_t k, int64_t n,
                           bool overwrite = false);

}  // namespace attn::kernels
