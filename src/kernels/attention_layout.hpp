// Buffer layout shared by the fast attention kernel's targets (attention.cpp is compiled once
// per SIMD target by Highway, so target-independent pieces live here): block sizes, which
// configurations take the grouped d = 1 path, and where each piece of saved/scratch lives.
// Holds no code that depends on the SIMD width beyond the widest x86 vector (16 floats).
#pragma once

#include <cstdint>

#include "kernels/attention.hpp"

namespace attn::kernels::layout {

inline constexpr int64_t kBlockRows = 64;  // query rows per block (BR)
inline constexpr int64_t kBlockCols = 64;  // key columns per block (BC), a multiple of 2 x 16 lanes
inline constexpr int64_t kPad = 64;        // slack so every vector load of a group array stays in bounds

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// d = dv = 1 dot attention without masks or dropout: keys (and queries) with equal values give
// equal terms, so they are grouped by value and each row needs one term per distinct key value.
inline bool grouped_eligible(const AttentionConfig& cfg) {
  return cfg.mode == ScoreMode::kDot && cfg.d == 1 && cfg.dv == 1 && !cfg.causal &&
         cfg.query_mask == nullptr && cfg.value_mask == nullptr && cfg.dropout <= 0.0f;
}

// Per-sample saved: m [tq] row max, l [tq] softmax denominator (before dropout), and for the
// grouped path c [tq] with dL/dscale = sum_i dout_i c_i and w [tq] = E_P[v k]_i - out_i E_P[k]_i
// with dL/dq_i = scale dout_i w_i (c_i = q_i w_i, kept apart so dscale rounds as before).
inline int64_t saved_floats(const AttentionConfig& cfg) {
  return (grouped_eligible(cfg) ? 4 : 2) * cfg.tq;
}

// The d = 1 series path (attention_d1_series.cpp): keys fall in buckets of half-width r with
// |scale q_i| r <= kSeriesRadius, and exp(scale q_i (k_j - c_b)) is summed as its Taylor series
// to kSeriesTerms terms (truncation below 5e-10 relative). A sample whose score spread needs more
// buckets than series_max_buckets goes to the grouped path, which is then as cheap or cheaper.
inline constexpr int kSeriesTerms = 10;
inline constexpr float kSeriesRadius = 0.5f;

inline int64_t series_max_buckets(const AttentionConfig& cfg) {
  const int64_t b = cfg.tv / 4;
  return b < 1 ? 1 : b > 256 ? 256 : b;
}

inline int64_t hash_size(const AttentionConfig& cfg) {
  int64_t h = 16;
  const int64_t n = cfg.tq > cfg.tv ? cfg.tq : cfg.tv;
  while (h < 2 * n) h *= 2;
  return h;
}

// Scratch, in floats, all offsets multiples of 16 floats.
struct ScratchLayout {
  int64_t tvp = 0;                          // tv rounded up to kBlockCols
  int64_t kt = 0;                           // [d, tvp] keys transposed, zero padded
  int64_t vt = 0;                           // [dv, tvp] values transposed, zero padded
  int64_t raw = 0, s = 0, dp = 0;           // [kBlockRows, kBlockCols] blocks
  int64_t gather = 0;                       // [kBlockCols + kPad] one column gathered contiguously
  int64_t drow = 0;                         // [tq] D_i = dout_i . out_i (backward)
  // grouped path
  int64_t hkey = 0, hidx = 0;               // [hash_size] open-addressing table: key value, group + 1
  int64_t gval = 0, gcnt = 0, gsum = 0;     // [tv + kPad] per key group: value, count, sum of v
  int64_t qval = 0, qpos = 0;               // [tq + kPad] query group values; [tq] group of each query
  int64_t kpos = 0;                         // [tv] group of each key
  int64_t knzi = 0, knzg = 0;               // [tv + kPad] nonzero keys: index, group
  int64_t qnzi = 0, qnzg = 0;               // [tq + kPad] nonzero queries: index, group
  int64_t rm = 0, rl = 0, ro = 0, rc = 0;   // [tq + kPad] per query group: m, l, out, c
  int64_t rw = 0;                           // [tq + kPad] per query group: w (forward), weight (backward)
  int64_t ka = 0, kb = 0, kc = 0;           // [tv + kPad] per key group: column sums A, B, C (backward)
  // series path
  int64_t ru = 0, ralpha = 0, rt = 0;      // [tq + kPad] queries, scale * queries, that times r (0 padded)
  int64_t rea = 0, reb = 0, rec = 0;        // [tq + kPad] per row: one bucket's term times weights A, B, C
  int64_t sx = 0, sv = 0, si = 0;           // [tv + kPad] keys by bucket: offset / r, value, index
  int64_t nzk = 0, nzv = 0;                 // [tv + kPad] nonzero keys in order: key, value (nzi: knzi)
  int64_t bstart = 0;                       // [max buckets + 1] first key of each bucket
  int64_t bcentre = 0;                      // [max buckets] centre of each nonempty bucket
  int64_t bcoef = 0;                        // [max buckets, 4, kSeriesTerms] series coefficients
  int64_t total = 0;
};

inline ScratchLayout scratch_layout(const AttentionConfig& cfg) {
  ScratchLayout s;
  int64_t at = 0;
  auto take = [&at](int64_t n) {
    const int64_t o = at;
    at += round_up(n, 16);
    return o;
  };
  s.tvp = round_up(cfg.tv, kBlockCols);
  s.kt = take(cfg.d * s.tvp);
  s.vt = take(cfg.dv * s.tvp);
  s.raw = take(kBlockRows * kBlockCols);
  s.s = take(kBlockRows * kBlockCols);
  s.dp = take(kBlockRows * kBlockCols);
  s.gather = take(kBlockCols + kPad);
  s.drow = take(cfg.tq);
  if (grouped_eligible(cfg)) {
    const int64_t h = hash_size(cfg);
    s.hkey = take(h);
    s.hidx = take(h);
    s.gval = take(cfg.tv + kPad);
    s.gcnt = take(cfg.tv + kPad);
    s.gsum = take(cfg.tv + kPad);
    s.qval = take(cfg.tq + kPad);
    s.qpos = take(cfg.tq);
    s.kpos = take(cfg.tv);
    s.knzi = take(cfg.tv + kPad);
    s.knzg = take(cfg.tv + kPad);
    s.qnzi = take(cfg.tq + kPad);
    s.qnzg = take(cfg.tq + kPad);
    s.rm = take(cfg.tq + kPad);
    s.rl = take(cfg.tq + kPad);
    s.ro = take(cfg.tq + kPad);
    s.rc = take(cfg.tq + kPad);
    s.rw = take(cfg.tq + kPad);
    s.ka = take(cfg.tv + kPad);
    s.kb = take(cfg.tv + kPad);
    s.kc = take(cfg.tv + kPad);
    const int64_t nb = series_max_buckets(cfg);
    s.ru = take(cfg.tq + kPad);
    s.ralpha = take(cfg.tq + kPad);
    s.rt = take(cfg.tq + kPad);
    s.rea = take(cfg.tq + kPad);
    s.reb = take(cfg.tq + kPad);
    s.rec = take(cfg.tq + kPad);
    s.sx = take(cfg.tv + kPad);
    s.sv = take(cfg.tv + kPad);
    s.si = take(cfg.tv + kPad);
    s.nzk = take(cfg.tv + kPad);
    s.nzv = take(cfg.tv + kPad);
    s.bstart = take(nb + 1);
    s.bcentre = take(nb);
    s.bcoef = take(nb * 4 * kSeriesTerms);
  }
  s.total = at + 16;
  return s;
}

}  // namespace attn::kernels::layout
