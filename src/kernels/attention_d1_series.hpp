// The d = dv = 1 unmasked dot-attention path by series expansion, one sample at a time. With
// d = 1 every score is alpha_i k_j (alpha_i = scale q_i), so after sorting the keys into buckets
// of centre c_b and half-width r, exp(alpha_i k_j - m_i) = exp(alpha_i c_b - m_i) exp(t_i x_j)
// with t_i = alpha_i r and x_j = (k_j - c_b) / r, |t_i x_j| <= 1/2. The second factor is summed
// as its Taylor series, so a row needs one exponential and a few polynomials per bucket instead
// of one exponential per key, and the backward's column sums become per-bucket moments over the
// rows. The truncation is below 5e-10 relative (layout::kSeriesTerms), far under float rounding.
// The cost grows with the score spread max|alpha| (max k - min k), not with the number of keys.
#pragma once

#include "kernels/attention.hpp"

namespace attn::kernels {

// One sample: q [tq], k [tv], v [tv]. Writes out [tq] and the sample's saved statistics (same
// layout as the grouped path: m, l, c, w) and returns true; returns false having written
// nothing when the series does not apply (non-finite values, or a spread that would need more
// than layout::series_max_buckets buckets).
bool attention_d1_series_forward(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                                 float* out, float* saved, float* scratch);

// One sample: ADDS the column sums into dk [tv] and dv [tv] (either may be null, not both) from
// the forward's out and saved; true when done, false (nothing written) where the forward would
// also have refused. dq and dscale need no column sums: the caller takes them from saved.
bool attention_d1_series_backward(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                                  const float* out, const float* dout, const float* saved, float* dk, float* dv,
                                  float* scratch);

}  // namespace attn::kernels
