// The activations that need exp, log or erf, vectorised with Highway (one copy per SIMD target,
// chosen at run time): libm one element at a time made gelu alone about a sixth of a Transformer
// block's training step. Each stays within a few float ulp of the exact function (tested against
// double precision on random data), passes NaN through, and gives the exact limits at +-inf.
// Forward: y = f(x) over n elements (x and y may alias). Backward: dx += dy * f'(x).
#pragma once

#include <cstdint>

namespace attn::kernels {

void sigmoid_forward(const float* x, float* y, int64_t n);
void tanh_forward(const float* x, float* y, int64_t n);
// x Phi(x), Phi the standard normal distribution function (Keras' exact gelu).
void gelu_forward(const float* x, float* y, int64_t n);
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n);
// scale * (x > 0 ? x : alpha * (exp(x) - 1)): elu is scale 1, selu Klambauer et al.'s constants.
void elu_forward(const float* x, float* y, int64_t n, float alpha, float scale);
void elu_backward(const float* x, const float* dy, float* dx, int64_t n, float alpha, float scale);
// log(1 + exp(x)); its derivative is sigmoid(x).
void softplus_forward(const float* x, float* y, int64_t n);
void softplus_backward(const float* x, const float* dy, float* dx, int64_t n);
// x sigmoid(x) (Keras' silu and swish).
void silu_forward(const float* x, float* y, int64_t n);
void silu_backward(const float* x, const float* dy, float* dx, int64_t n);
// x tanh(softplus(x)).
void mish_forward(const float* x, float* y, int64_t n);
void mish_backward(const float* x, const float* dy, float* dx, int64_t n);
void exp_forward(const float* x, float* y, int64_t n);

}  // namespace attn::kernels
