// The d = dv = 1 unmasked dot-attention path (the reference model's configuration, see
// layout::grouped_eligible): exact, with equal key (and query) values grouped so a row costs one
// term per distinct key value. Called by attention.cpp's dispatchers; same contracts as
// attention_forward / attention_backward in attention.hpp.
#pragma once

#include <cstdint>

#include "kernels/attention.hpp"

namespace attn::kernels {

// How a sample's terms are summed. kSeries (the default): one exponential per (row, key bucket)
// and a Taylor series within the bucket (attention_d1_series.hpp) where the sample's score
// spread allows it, else by grouping. kGrouped: always one term per (query value, key value)
// pair, exact grouping of equal values (attention_d1.cpp); for tests and benchmarks.
enum class D1Method { kSeries, kGrouped };

void attention_d1_forward(const AttentionConfig& cfg, const float* q, const float* k, const float* v, float* out,
                          float* saved, float* weights, float* scratch, D1Method method = D1Method::kSeries);

// Handles every subset of dq, dk, dv, dscale.
void attention_d1_backward(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                           const float* out, const float* dout, const float* saved, float* dq, float* dk, float* dv,
                           float* dscale, float* scratch, D1Method method = D1Method::kSeries);

// The path's exponential, exp(x) for x <= 0, on an array (exposed for its accuracy test).
void attention_d1_exp(const float* x, float* y, int64_t count);

}  // namespace attn::kernels
