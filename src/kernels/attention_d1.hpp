// The d = dv = 1 unmasked dot-attention path (the reference model's configuration, see
// layout::grouped_eligible): exact, with equal key (and query) values grouped so a row costs one
// term per distinct key value. Called by attention.cpp's dispatchers; same contracts as
// attention_forward / attention_backward in attention.hpp.
#pragma once

#include <cstdint>

#include "kernels/attention.hpp"

namespace attn::kernels {

void attention_d1_forward(const AttentionConfig& cfg, const float* q, const float* k, const float* v, float* out,
                          float* saved, float* weights, float* scratch);

// Handles every subset of dq, dk, dv, dscale.
void attention_d1_backward(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                           const float* out, const float* dout, const float* saved, float* dq, float* dk, float* dv,
                           float* dscale, float* scratch);

// The path's exponential, exp(x) for x <= 0, on an array (exposed for its accuracy test).
void attention_d1_exp(const float* x, float* y, int64_t count);

}  // namespace attn::kernels
