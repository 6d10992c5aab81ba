// Scalar reference twin of the fused attention kernels (attention.hpp): materialises the
// [tq, tv] score matrix of one sample at a time with plain loops, dot products in double.
// Written for clarity and as the oracle of the tests, deliberately not for speed.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention.hpp"
#include "kernels/dropout_hash.hpp"

namespace attn::kernels {
namespace {

bool is_masked(const AttentionConfig& cfg, int64_t b, int64_t i, int64_t j) {
  if (cfg.value_mask != nullptr && cfg.value_mask[b * cfg.tv + j] == 0) return true;
  return cfg.causal && j > i;
}

bool row_kept(const AttentionConfig& cfg, int64_t b, int64_t i) {
  return cfg.query_mask == nullptr || cfg.query_mask[b * cfg.tq + i] != 0;
}

// Raw score before scale/mask for dot mode (q_i . k_j), the pre-weight sum for concat mode
// (sum_d tanh(scale (q + k))). Returned in float as Keras' float32 graph would hold it.
float raw_score(const AttentionConfig& cfg, const float* qi, const float* kj) {
  double acc = 0.0;
  if (cfg.mode == ScoreMode::kDot) {
    for (int64_t c = 0; c < cfg.d; ++c) acc += static_cast<double>(qi[c]) * kj[c];
  } else {
    for (int64_t c = 0; c < cfg.d; ++c) acc += std::tanh(static_cast<double>(cfg.scale) * (qi[c] + kj[c]));
  }
  return static_cast<float>(acc);
}

// Final (masked) score: dot -> scale * raw, concat -> concat_weight * raw; masked -> S - 1e9f.
float final_score(const AttentionConfig& cfg, float raw, bool masked) {
  float s = cfg.mode == ScoreMode::kDot ? raw * cfg.scale : raw * cfg.concat_weight;
  if (masked) s = s - 1e9f;
  return s;
}

// Softmax of row i of sample b into p [tv] (before dropout); raw [tv] receives the raw scores.
void softmax_row(const AttentionConfig& cfg, int64_t b, int64_t i, const float* qs, const float* ks,
                 std::vector<float>& raw, std::vector<double>& p) {
  const float* qi = qs + i * cfg.d;
  float mx = -INFINITY;
  std::vector<float> s(static_cast<size_t>(cfg.tv));
  for (int64_t j = 0; j < cfg.tv; ++j) {
    raw[j] = raw_score(cfg, qi, ks + j * cfg.d);
    s[j] = final_score(cfg, raw[j], is_masked(cfg, b, i, j));
    mx = std::max(mx, s[j]);
  }
  double sum = 0.0;
  for (int64_t j = 0; j < cfg.tv; ++j) {
    p[j] = std::exp(static_cast<double>(s[j]) - mx);
    sum += p[j];
  }
  for (int64_t j = 0; j < cfg.tv; ++j) p[j] /= sum;
}

}  // namespace

void attention_forward_reference(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                                 float* out, float* weights) {
  std::vector<float> raw(static_cast<size_t>(cfg.tv));
  std::vector<double> p(static_cast<size_t>(cfg.tv));
  for (int64_t b = 0; b < cfg.batch; ++b) {
    const float* qs = q + b * cfg.tq * cfg.d;
    const float* ks = k + b * cfg.tv * cfg.d;
    const float* vs = v + b * cfg.tv * cfg.dv;
    for (int64_t i = 0; i < cfg.tq; ++i) {
      softmax_row(cfg, b, i, qs, ks, raw, p);
      for (int64_t j = 0; j < cfg.tv; ++j)
        p[j] *= dropout_factor(cfg.dropout, cfg.dropout_seed, cfg.sample_offset + b, i, j);
      if (weights != nullptr) {
        float* w = weights + (b * cfg.tq + i) * cfg.tv;
        for (int64_t j = 0; j < cfg.tv; ++j) w[j] = static_cast<float>(p[j]);
      }
      float* o = out + (b * cfg.tq + i) * cfg.dv;
      const bool keep = row_kept(cfg, b, i);
      for (int64_t e = 0; e < cfg.dv; ++e) {
        double acc = 0.0;
        for (int64_t j = 0; j < cfg.tv; ++j) acc += p[j] * vs[j * cfg.dv + e];
        o[e] = keep ? static_cast<float>(acc) : 0.0f;
      }
    }
  }
}

void attention_backward_reference(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                                  const float* dout, float* dq, float* dk, float* dv, float* dscale,
                                  float* dconcat_weight) {
  std::vector<float> raw(static_cast<size_t>(cfg.tv));
  std::vector<double> p(static_cast<size_t>(cfg.tv)), drop(static_cast<size_t>(cfg.tv)),
      ds(static_cast<size_t>(cfg.tv));
  double dscale_acc = 0.0, dcw_acc = 0.0;
  for (int64_t b = 0; b < cfg.batch; ++b) {
    const float* qs = q + b * cfg.tq * cfg.d;
    const float* ks = k + b * cfg.tv * cfg.d;
    const float* vs = v + b * cfg.tv * cfg.dv;
    for (int64_t i = 0; i < cfg.tq; ++i) {
      if (!row_kept(cfg, b, i)) continue;  // where(qm, out, 0): no gradient from this row
      softmax_row(cfg, b, i, qs, ks, raw, p);
      const float* g = dout + (b * cfg.tq + i) * cfg.dv;
      // dW_ij = g . v_j; W = P * drop; dP = dW * drop; dS = P (dP - sum_j P dP).
      double pdp = 0.0;
      for (int64_t j = 0; j < cfg.tv; ++j) {
        drop[j] = dropout_factor(cfg.dropout, cfg.dropout_seed, cfg.sample_offset + b, i, j);
        double dw = 0.0;
        for (int64_t e = 0; e < cfg.dv; ++e) dw += static_cast<double>(g[e]) * vs[j * cfg.dv + e];
        if (dv != nullptr)
          for (int64_t e = 0; e < cfg.dv; ++e) dv[(b * cfg.tv + j) * cfg.dv + e] += static_cast<float>(p[j] * drop[j] * g[e]);
        ds[j] = dw * drop[j];
        pdp += p[j] * ds[j];
      }
      for (int64_t j = 0; j < cfg.tv; ++j) ds[j] = p[j] * (ds[j] - pdp);
      const float* qi = qs + i * cfg.d;
      for (int64_t j = 0; j < cfg.tv; ++j) {
        const float* kj = ks + j * cfg.d;
        if (cfg.mode == ScoreMode::kDot) {
          // S = scale * raw (the -1e9 of a mask is a constant offset: dS passes through).
          dscale_acc += ds[j] * raw[j];
          const double dr = ds[j] * cfg.scale;
          for (int64_t c = 0; c < cfg.d; ++c) {
            if (dq != nullptr) dq[(b * cfg.tq + i) * cfg.d + c] += static_cast<float>(dr * kj[c]);
            if (dk != nullptr) dk[(b * cfg.tv + j) * cfg.d + c] += static_cast<float>(dr * qi[c]);
          }
        } else {
          // S = cw * sum_c tanh(scale (q_c + k_c)).
          dcw_acc += ds[j] * raw[j];
          for (int64_t c = 0; c < cfg.d; ++c) {
            const double x = static_cast<double>(qi[c]) + kj[c];
            const double t = std::tanh(static_cast<double>(cfg.scale) * x);
            const double gt = ds[j] * cfg.concat_weight * (1.0 - t * t);
            dscale_acc += gt * x;
            if (dq != nullptr) dq[(b * cfg.tq + i) * cfg.d + c] += static_cast<float>(gt * cfg.scale);
            if (dk != nullptr) dk[(b * cfg.tv + j) * cfg.d + c] += static_cast<float>(gt * cfg.scale);
          }
        }
      }
    }
  }
  if (dscale != nullptr) *dscale += static_cast<float>(dscale_acc);
  if (dconcat_weight != nullptr && cfg.mode == ScoreMode::kConcat) *dconcat_weight += static_cast<float>(dcw_acc);
}

}  // namespace attn::kernels
