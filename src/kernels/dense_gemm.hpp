// Small-batch matrix products for Dense (row-major throughout, W as Keras stores it, [k, n]):
//   forward      y[m,n]   = b[n] + x[m,k] W[k,n]     (y overwritten; bias may be null -> 0)
//   weight grad  dW[k,n] += x[m,k]^T dz[m,n]
//   input grad   dx[m,k] += dz[m,n] W[k,n]^T
// The gradients have an overwrite mode: the bits of adding to a cleared buffer, without
// clearing or reading it.
// For few rows (a batch slice of one thread) BLAS spends most of its time packing W, and that
// cost does not shrink with the slice. These kernels read W in place, register-blocked so each
// W element is loaded once per block of rows, with Highway's run-time dispatch. They allocate
// nothing, and the summation order depends only on the shapes (deterministic for a target).
// Results are not bit-identical to sgemm or to the references (FMA and order differ), only
// within float32 accumulation error. Any m works; they beat sgemm for m <= kDenseSmallRows.
#pragma once

#include <cstdint>

namespace attn::kernels {

inline constexpr int64_t kDenseSmallRows = 32;

// ldx: row stride of x (forward, weight grad) and dx (input grad); 0 means k. A stride > k
// works on a column range of a wider x, as when threads split W by rows.
void dense_forward(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k, int64_t n,
                   int64_t ldx = 0);
// dw += x^T dz; with overwrite, dw = x^T dz (the bits of adding to a cleared dw, without
// clearing it first).
void dense_grad_weight(const float* x, const float* dz, float* dw, int64_t m, int64_t k, int64_t n, int64_t ldx = 0,
                       bool overwrite = false);
// dx += dz w^T; with overwrite, dx = 0 + dz w^T (as dense_grad_weight's overwrite).
void dense_grad_input(const float* dz, const float* w, float* dx, int64_t m, int64_t k, int64_t n, int64_t ldx = 0,
                      bool overwrite = false);

// Scalar references (double accumulation), same semantics.
void dense_forward_reference(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k,
                             int64_t n);
void dense_grad_weight_reference(const float* x, const float* dz, float* dw, int64_t m, int64_t k, int64_t n);
void dense_grad_input_reference(const float* dz, const float* w, float* dx, int64_t m, int64_t k, int64_t n);

}  // namespace attn::kernels
