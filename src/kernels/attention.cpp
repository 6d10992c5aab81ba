// Fast fused attention (Keras layers.Attention semantics, see attention.hpp), flash style:
// scores exist only as [kBlockRows, kBlockCols] blocks in scratch; forward saves per-row max m
// and denominator l, backward recomputes the blocks. SIMD through Highway with run-time dispatch
// (this file is compiled once per target via foreach_target.h). d = dv = 1 unmasked dot attention
// (the reference model) goes to attention_d1.cpp instead.
// Single-threaded by design (the caller splits the batch); no allocation anywhere.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/attention.hpp"
#include "kernels/attention_d1.hpp"
#include "kernels/attention_layout.hpp"
#include "kernels/dropout_hash.hpp"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using layout::kBlockCols;
using layout::kBlockRows;
using DF = hn::ScalableTag<float>;

// out [rows, kBlockCols] (ld kBlockCols) = x [rows, kdim] (ld ldx) . yt [kdim, kBlockCols] (ld ldyt).
// yt is zero padded past the real columns, so whole vectors are always valid.
void block_xyt(const float* HWY_RESTRICT x, int64_t ldx, int64_t rows, int64_t kdim,
               const float* HWY_RESTRICT yt, int64_t ldyt, float* HWY_RESTRICT out) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* x0 = x + r * ldx;
    for (int64_t c = 0; c < kBlockCols; c += 2 * n) {
      auto a00 = hn::Zero(df), a01 = hn::Zero(df), a10 = hn::Zero(df), a11 = hn::Zero(df);
      auto a20 = hn::Zero(df), a21 = hn::Zero(df), a30 = hn::Zero(df), a31 = hn::Zero(df);
      for (int64_t k = 0; k < kdim; ++k) {
        const auto y0 = hn::LoadU(df, yt + k * ldyt + c);
        const auto y1 = hn::LoadU(df, yt + k * ldyt + c + n);
        auto b = hn::Set(df, x0[k]);
        a00 = hn::MulAdd(b, y0, a00);
        a01 = hn::MulAdd(b, y1, a01);
        b = hn::Set(df, x0[ldx + k]);
        a10 = hn::MulAdd(b, y0, a10);
        a11 = hn::MulAdd(b, y1, a11);
        b = hn::Set(df, x0[2 * ldx + k]);
        a20 = hn::MulAdd(b, y0, a20);
        a21 = hn::MulAdd(b, y1, a21);
        b = hn::Set(df, x0[3 * ldx + k]);
        a30 = hn::MulAdd(b, y0, a30);
        a31 = hn::MulAdd(b, y1, a31);
      }
      float* o = out + r * kBlockCols + c;
      hn::StoreU(a00, df, o);
      hn::StoreU(a01, df, o + n);
      hn::StoreU(a10, df, o + kBlockCols);
      hn::StoreU(a11, df, o + kBlockCols + n);
      hn::StoreU(a20, df, o + 2 * kBlockCols);
      hn::StoreU(a21, df, o + 2 * kBlockCols + n);
      hn::StoreU(a30, df, o + 3 * kBlockCols);
      hn::StoreU(a31, df, o + 3 * kBlockCols + n);
    }
  }
  for (; r < rows; ++r) {
    for (int64_t c = 0; c < kBlockCols; c += n) {
      auto a = hn::Zero(df);
      for (int64_t k = 0; k < kdim; ++k) a = hn::MulAdd(hn::Set(df, x[r * ldx + k]), hn::LoadU(df, yt + k * ldyt + c), a);
      hn::StoreU(a, df, out + r * kBlockCols + c);
    }
  }
}

// z [rows, ncols] (ld ldz) += x [rows, inner] (ld ldx) . y [inner, ncols] (ld ldy).
// Wide outputs broadcast x and stream rows of y; narrow outputs (ncols < lanes) gather one
// column of y into `gather` [inner] and take dot products along `inner` instead.
void block_add_xy(const float* HWY_RESTRICT x, int64_t ldx, int64_t rows, int64_t inner,
                  const float* HWY_RESTRICT y, int64_t ldy, int64_t ncols, float* HWY_RESTRICT z,
                  int64_t ldz, float* HWY_RESTRICT gather) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  if (ncols >= n) {
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
      const float* x0 = x + r * ldx;
      float* z0 = z + r * ldz;
      int64_t e = 0;
      for (; e + 2 * n <= ncols; e += 2 * n) {
        auto a00 = hn::Zero(df), a01 = hn::Zero(df), a10 = hn::Zero(df), a11 = hn::Zero(df);
        auto a20 = hn::Zero(df), a21 = hn::Zero(df), a30 = hn::Zero(df), a31 = hn::Zero(df);
        for (int64_t c = 0; c < inner; ++c) {
          const auto y0 = hn::LoadU(df, y + c * ldy + e);
          const auto y1 = hn::LoadU(df, y + c * ldy + e + n);
          auto b = hn::Set(df, x0[c]);
          a00 = hn::MulAdd(b, y0, a00);
          a01 = hn::MulAdd(b, y1, a01);
          b = hn::Set(df, x0[ldx + c]);
          a10 = hn::MulAdd(b, y0, a10);
          a11 = hn::MulAdd(b, y1, a11);
          b = hn::Set(df, x0[2 * ldx + c]);
          a20 = hn::MulAdd(b, y0, a20);
          a21 = hn::MulAdd(b, y1, a21);
          b = hn::Set(df, x0[3 * ldx + c]);
          a30 = hn::MulAdd(b, y0, a30);
          a31 = hn::MulAdd(b, y1, a31);
        }
        const auto acc = [&](float* p, decltype(a00) v) { hn::StoreU(hn::Add(hn::LoadU(df, p), v), df, p); };
        acc(z0 + e, a00);
        acc(z0 + e + n, a01);
        acc(z0 + ldz + e, a10);
        acc(z0 + ldz + e + n, a11);
        acc(z0 + 2 * ldz + e, a20);
        acc(z0 + 2 * ldz + e + n, a21);
        acc(z0 + 3 * ldz + e, a30);
        acc(z0 + 3 * ldz + e + n, a31);
      }
      for (; e + n <= ncols; e += n) {
        auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
        for (int64_t c = 0; c < inner; ++c) {
          const auto y0 = hn::LoadU(df, y + c * ldy + e);
          a0 = hn::MulAdd(hn::Set(df, x0[c]), y0, a0);
          a1 = hn::MulAdd(hn::Set(df, x0[ldx + c]), y0, a1);
          a2 = hn::MulAdd(hn::Set(df, x0[2 * ldx + c]), y0, a2);
          a3 = hn::MulAdd(hn::Set(df, x0[3 * ldx + c]), y0, a3);
        }
        hn::StoreU(hn::Add(hn::LoadU(df, z0 + e), a0), df, z0 + e);
        hn::StoreU(hn::Add(hn::LoadU(df, z0 + ldz + e), a1), df, z0 + ldz + e);
        hn::StoreU(hn::Add(hn::LoadU(df, z0 + 2 * ldz + e), a2), df, z0 + 2 * ldz + e);
        hn::StoreU(hn::Add(hn::LoadU(df, z0 + 3 * ldz + e), a3), df, z0 + 3 * ldz + e);
      }
      for (; e < ncols; ++e) {
        for (int64_t rr = 0; rr < 4; ++rr) {
          float a = 0.0f;
          for (int64_t c = 0; c < inner; ++c) a += x0[rr * ldx + c] * y[c * ldy + e];
          z0[rr * ldz + e] += a;
        }
      }
    }
    for (; r < rows; ++r) {
      int64_t e = 0;
      for (; e + n <= ncols; e += n) {
        auto a = hn::Zero(df);
        for (int64_t c = 0; c < inner; ++c) a = hn::MulAdd(hn::Set(df, x[r * ldx + c]), hn::LoadU(df, y + c * ldy + e), a);
        hn::StoreU(hn::Add(hn::LoadU(df, z + r * ldz + e), a), df, z + r * ldz + e);
      }
      for (; e < ncols; ++e) {
        float a = 0.0f;
        for (int64_t c = 0; c < inner; ++c) a += x[r * ldx + c] * y[c * ldy + e];
        z[r * ldz + e] += a;
      }
    }
    return;
  }
  const int64_t innerv = inner / n * n;
  for (int64_t e = 0; e < ncols; ++e) {
    for (int64_t c = 0; c < inner; ++c) gather[c] = y[c * ldy + e];
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * ldx;
      auto a = hn::Zero(df);
      for (int64_t c = 0; c < innerv; c += n) a = hn::MulAdd(hn::LoadU(df, xr + c), hn::LoadU(df, gather + c), a);
      float s = hn::GetLane(hn::SumOfLanes(df, a));
      for (int64_t c = innerv; c < inner; ++c) s += xr[c] * gather[c];
      z[r * ldz + e] += s;
    }
  }
}

// dst [kBlockCols, kBlockRows] = src [kBlockRows, kBlockCols] transposed; rows past `rows` -> 0.
void transpose_block(const float* HWY_RESTRICT src, int64_t rows, int64_t cols, float* HWY_RESTRICT dst) {
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < rows; ++r) dst[c * kBlockRows + r] = src[r * kBlockCols + c];
    for (int64_t r = rows; r < kBlockRows; ++r) dst[c * kBlockRows + r] = 0.0f;
  }
}

// xt [width, tvp] = x [tv, width] transposed, columns tv..tvp zero.
void pack_transposed(const float* HWY_RESTRICT x, int64_t tv, int64_t width, int64_t tvp, float* HWY_RESTRICT xt) {
  for (int64_t f = 0; f < width; ++f) {
    float* row = xt + f * tvp;
    for (int64_t j = 0; j < tv; ++j) row[j] = x[j * width + f];
    for (int64_t j = tv; j < tvp; ++j) row[j] = 0.0f;
  }
}

struct Sample {
  const AttentionConfig* cfg;
  int64_t b;  // index within the call
  const float *q, *k, *v;  // this sample's [tq, d], [tv, d], [tv, dv]
  const float* kt;         // [d, tvp] (dot mode)
  int64_t tvp;
};

// A block's raw scores into raw [rows, kBlockCols] (dot: q.k, concat: sum tanh(scale (q + k)))
// and final scores into s: scaled, masked literally as S - 1e9f, -inf on padding columns.
void block_scores(const Sample& sm, int64_t i0, int64_t rows, int64_t j0, int64_t cols, float* HWY_RESTRICT raw,
                  float* HWY_RESTRICT s) {
  const AttentionConfig& cfg = *sm.cfg;
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  float mult = cfg.scale;
  if (cfg.mode == ScoreMode::kDot) {
    block_xyt(sm.q + i0 * cfg.d, cfg.d, rows, cfg.d, sm.kt + j0, sm.tvp, raw);
  } else {
    mult = cfg.concat_weight;
    for (int64_t r = 0; r < rows; ++r) {
      const float* qi = sm.q + (i0 + r) * cfg.d;
      for (int64_t c = 0; c < kBlockCols; ++c) {
        float acc = 0.0f;
        if (c < cols) {
          const float* kj = sm.k + (j0 + c) * cfg.d;
          for (int64_t f = 0; f < cfg.d; ++f) acc += std::tanh(cfg.scale * (qi[f] + kj[f]));
        }
        raw[r * kBlockCols + c] = acc;
      }
    }
  }
  const auto vm = hn::Set(df, mult);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < kBlockCols; c += n)
      hn::StoreU(hn::Mul(hn::LoadU(df, raw + r * kBlockCols + c), vm), df, s + r * kBlockCols + c);
  const uint8_t* vmask = cfg.value_mask != nullptr ? cfg.value_mask + sm.b * cfg.tv : nullptr;
  if (vmask != nullptr || cfg.causal) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const bool masked = (vmask != nullptr && vmask[j0 + c] == 0) || (cfg.causal && j0 + c > i0 + r);
        if (masked) s[r * kBlockCols + c] = s[r * kBlockCols + c] - 1e9f;
      }
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = cols; c < kBlockCols; ++c) s[r * kBlockCols + c] = -std::numeric_limits<float>::infinity();
}

// Exact skip of a block that is entirely causally masked for rows whose max is a real score:
// its terms are exp(about -1e9 - m) = 0 in float (assumes |scores| well below 1e8).
bool causal_skip(const AttentionConfig& cfg, int64_t i0, int64_t rows, int64_t j0, const float* m) {
  if (!cfg.causal || j0 <= i0 + rows - 1) return false;
  for (int64_t r = 0; r < rows; ++r)
    if (!(m[r] > -1e8f)) return false;
  return true;
}

// ---------------------------------------------------------------- general flash path

void forward_impl(const AttentionConfig& cfg, const float* q, const float* k, const float* v, float* out,
                  float* saved, float* weights, float* scratch) {
  if (layout::grouped_eligible(cfg)) return attention_d1_forward(cfg, q, k, v, out, saved, weights, scratch);
  const layout::ScratchLayout L = layout::scratch_layout(cfg);
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const int64_t tq = cfg.tq, tv = cfg.tv, d = cfg.d, dv = cfg.dv;
  float* raw = scratch + L.raw;
  float* s = scratch + L.s;
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0; b < cfg.batch; ++b) {
    Sample sm{&cfg, b, q + b * tq * d, k + b * tv * d, v + b * tv * dv, scratch + L.kt, L.tvp};
    if (cfg.mode == ScoreMode::kDot) pack_transposed(sm.k, tv, d, L.tvp, scratch + L.kt);
    float* ms = saved + b * layout::saved_floats(cfg);
    float* ls = ms + tq;
    float* ob = out + b * tq * dv;
    const int64_t sample = cfg.sample_offset + b;
    for (int64_t i0 = 0; i0 < tq; i0 += kBlockRows) {
      const int64_t rows = std::min(kBlockRows, tq - i0);
      float* m = ms + i0;
      float* l = ls + i0;
      for (int64_t r = 0; r < rows; ++r) {
        m[r] = ninf;
        l[r] = 0.0f;
      }
      std::fill(ob + i0 * dv, ob + (i0 + rows) * dv, 0.0f);
      for (int64_t j0 = 0; j0 < tv; j0 += kBlockCols) {
        const int64_t cols = std::min(kBlockCols, tv - j0);
        if (causal_skip(cfg, i0, rows, j0, m)) break;
        block_scores(sm, i0, rows, j0, cols, raw, s);
        for (int64_t r = 0; r < rows; ++r) {
          float* sr = s + r * kBlockCols;
          auto vmax = hn::Set(df, ninf);
          for (int64_t c = 0; c < kBlockCols; c += n) vmax = hn::Max(vmax, hn::LoadU(df, sr + c));
          const float mnew = std::max(m[r], hn::GetLane(hn::MaxOfLanes(df, vmax)));
          const float alpha = m[r] == ninf ? 0.0f : std::exp(m[r] - mnew);
          const auto vm = hn::Set(df, mnew);
          auto vs = hn::Zero(df);
          for (int64_t c = 0; c < kBlockCols; c += n) {
            const auto e = hn::Exp(df, hn::Sub(hn::LoadU(df, sr + c), vm));
            vs = hn::Add(vs, e);
            hn::StoreU(e, df, sr + c);
          }
          l[r] = l[r] * alpha + hn::GetLane(hn::SumOfLanes(df, vs));
          m[r] = mnew;
          if (alpha != 1.0f)
            for (int64_t e = 0; e < dv; ++e) ob[(i0 + r) * dv + e] *= alpha;
          if (cfg.dropout > 0.0f)
            for (int64_t c = 0; c < cols; ++c)
              sr[c] *= dropout_factor(cfg.dropout, cfg.dropout_seed, sample, i0 + r, j0 + c);
        }
        block_add_xy(s, kBlockCols, rows, cols, sm.v + j0 * dv, dv, dv, ob + i0 * dv, dv, scratch + L.gather);
      }
      for (int64_t r = 0; r < rows; ++r) {
        const bool keep = cfg.query_mask == nullptr || cfg.query_mask[b * tq + i0 + r] != 0;
        const float inv = keep ? 1.0f / l[r] : 0.0f;
        for (int64_t e = 0; e < dv; ++e) ob[(i0 + r) * dv + e] *= inv;
      }
      if (weights != nullptr) {
        for (int64_t j0 = 0; j0 < tv; j0 += kBlockCols) {
          const int64_t cols = std::min(kBlockCols, tv - j0);
          block_scores(sm, i0, rows, j0, cols, raw, s);
          for (int64_t r = 0; r < rows; ++r) {
            float* w = weights + (b * tq + i0 + r) * tv + j0;
            const float inv = 1.0f / l[r];
            for (int64_t c = 0; c < cols; ++c)
              w[c] = std::exp(s[r * kBlockCols + c] - m[r]) * inv *
                     dropout_factor(cfg.dropout, cfg.dropout_seed, sample, i0 + r, j0 + c);
          }
        }
      }
    }
  }
}

void backward_impl(const AttentionConfig& cfg, const float* q, const float* k, const float* v, const float* out,
                   const float* dout, const float* saved, float* dq, float* dk, float* dv, float* dscale,
                   float* dconcat_weight, float* scratch) {
  const int64_t tq = cfg.tq, tv = cfg.tv, d = cfg.d, dvf = cfg.dv;
  const bool concat = cfg.mode == ScoreMode::kConcat;
  if (!concat) dconcat_weight = nullptr;
  if (dq == nullptr && dk == nullptr && dv == nullptr && dscale == nullptr && dconcat_weight == nullptr) return;
  if (layout::grouped_eligible(cfg) && attention_d1_backward(cfg, q, k, v, out, dout, saved, dq, dk, dv, dscale, scratch))
    return;
  const layout::ScratchLayout L = layout::scratch_layout(cfg);
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  float* raw = scratch + L.raw;
  float* s = scratch + L.s;
  float* dp = scratch + L.dp;
  float* tr = scratch + L.tr;
  float* drow = scratch + L.drow;
  float* vt = scratch + L.vt;
  double dscale_acc = 0.0, dcw_acc = 0.0;
  for (int64_t b = 0; b < cfg.batch; ++b) {
    Sample sm{&cfg, b, q + b * tq * d, k + b * tv * d, v + b * tv * dvf, scratch + L.kt, L.tvp};
    if (!concat) pack_transposed(sm.k, tv, d, L.tvp, scratch + L.kt);
    pack_transposed(sm.v, tv, dvf, L.tvp, vt);
    const float* ms = saved + b * layout::saved_floats(cfg);
    const float* ls = ms + tq;
    const float* gb = dout + b * tq * dvf;
    const float* ob = out + b * tq * dvf;
    const uint8_t* qm = cfg.query_mask != nullptr ? cfg.query_mask + b * tq : nullptr;
    for (int64_t i = 0; i < tq; ++i) {
      double a = 0.0;
      for (int64_t e = 0; e < dvf; ++e) a += static_cast<double>(gb[i * dvf + e]) * ob[i * dvf + e];
      drow[i] = static_cast<float>(a);
    }
    float* dqb = dq != nullptr ? dq + b * tq * d : nullptr;
    float* dkb = dk != nullptr ? dk + b * tv * d : nullptr;
    float* dvb = dv != nullptr ? dv + b * tv * dvf : nullptr;
    const int64_t sample = cfg.sample_offset + b;
    for (int64_t j0 = 0; j0 < tv; j0 += kBlockCols) {
      const int64_t cols = std::min(kBlockCols, tv - j0);
      for (int64_t i0 = 0; i0 < tq; i0 += kBlockRows) {
        const int64_t rows = std::min(kBlockRows, tq - i0);
        if (causal_skip(cfg, i0, rows, j0, ms + i0)) continue;
        block_scores(sm, i0, rows, j0, cols, raw, s);
        block_xyt(gb + i0 * dvf, dvf, rows, dvf, vt + j0, L.tvp, dp);
        for (int64_t r = 0; r < rows; ++r) {
          float* sr = s + r * kBlockCols;
          float* dr = dp + r * kBlockCols;
          if (qm != nullptr && qm[i0 + r] == 0) {  // where(qm, out, 0): no gradient from this row
            std::fill(sr, sr + kBlockCols, 0.0f);
            std::fill(dr, dr + kBlockCols, 0.0f);
            continue;
          }
          const auto vm = hn::Set(df, ms[i0 + r]);
          const auto vinv = hn::Set(df, 1.0f / ls[i0 + r]);
          const auto vd = hn::Set(df, drow[i0 + r]);
          for (int64_t c = 0; c < kBlockCols; c += n) {
            const auto p = hn::Mul(hn::Exp(df, hn::Sub(hn::LoadU(df, sr + c), vm)), vinv);
            hn::StoreU(p, df, sr + c);
            if (cfg.dropout <= 0.0f) hn::StoreU(hn::Mul(p, hn::Sub(hn::LoadU(df, dr + c), vd)), df, dr + c);
          }
          if (cfg.dropout > 0.0f) {
            for (int64_t c = 0; c < kBlockCols; ++c) {
              const float f = c < cols ? dropout_factor(cfg.dropout, cfg.dropout_seed, sample, i0 + r, j0 + c) : 0.0f;
              dr[c] = sr[c] * (dr[c] * f - drow[i0 + r]);
              sr[c] *= f;
            }
          }
        }
        // s now holds W (after dropout), dp holds dS.
        if (dvb != nullptr) {
          transpose_block(s, rows, cols, tr);
          block_add_xy(tr, kBlockRows, cols, rows, gb + i0 * dvf, dvf, dvf, dvb + j0 * dvf, dvf, scratch + L.gather);
        }
        if (!concat) {
          if (dscale != nullptr) {
            for (int64_t r = 0; r < rows; ++r) {
              auto acc = hn::Zero(df);
              for (int64_t c = 0; c < kBlockCols; c += n)
                acc = hn::MulAdd(hn::LoadU(df, dp + r * kBlockCols + c), hn::LoadU(df, raw + r * kBlockCols + c), acc);
              dscale_acc += hn::GetLane(hn::SumOfLanes(df, acc));
            }
          }
          if (dqb == nullptr && dkb == nullptr) continue;
          const auto vsc = hn::Set(df, cfg.scale);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < kBlockCols; c += n)
              hn::StoreU(hn::Mul(hn::LoadU(df, dp + r * kBlockCols + c), vsc), df, dp + r * kBlockCols + c);
          if (dqb != nullptr)
            block_add_xy(dp, kBlockCols, rows, cols, sm.k + j0 * d, d, d, dqb + i0 * d, d, scratch + L.gather);
          if (dkb != nullptr) {
            transpose_block(dp, rows, cols, tr);
            block_add_xy(tr, kBlockRows, cols, rows, sm.q + i0 * d, d, d, dkb + j0 * d, d, scratch + L.gather);
          }
        } else {
          for (int64_t r = 0; r < rows; ++r) {
            const float* qi = sm.q + (i0 + r) * d;
            for (int64_t c = 0; c < cols; ++c) {
              const float ds = dp[r * kBlockCols + c];
              if (ds == 0.0f) continue;
              dcw_acc += static_cast<double>(ds) * raw[r * kBlockCols + c];
              const float* kj = sm.k + (j0 + c) * d;
              for (int64_t f = 0; f < d; ++f) {
                const float x = qi[f] + kj[f];
                const float t = std::tanh(cfg.scale * x);
                const float gt = ds * cfg.concat_weight * (1.0f - t * t);
                dscale_acc += static_cast<double>(gt) * x;
                if (dqb != nullptr) dqb[(i0 + r) * d + f] += gt * cfg.scale;
                if (dkb != nullptr) dkb[(j0 + c) * d + f] += gt * cfg.scale;
              }
            }
          }
        }
      }
    }
  }
  if (dscale != nullptr) *dscale += static_cast<float>(dscale_acc);
  if (dconcat_weight != nullptr) *dconcat_weight += static_cast<float>(dcw_acc);
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::kernels {

HWY_EXPORT(forward_impl);
HWY_EXPORT(backward_impl);

int64_t attention_saved_floats(const AttentionConfig& cfg) { return layout::saved_floats(cfg); }
int64_t attention_scratch_floats(const AttentionConfig& cfg) { return layout::scratch_layout(cfg).total; }

void attention_forward(const AttentionConfig& cfg, const float* q, const float* k, const float* v, float* out,
                       float* saved, float* weights, float* scratch) {
  HWY_DYNAMIC_DISPATCH(forward_impl)(cfg, q, k, v, out, saved, weights, scratch);
}

void attention_backward(const AttentionConfig& cfg, const float* q, const float* k, const float* v, const float* out,
                        const float* dout, const float* saved, float* dq, float* dk, float* dv, float* dscale,
                        float* dconcat_weight, float* scratch) {
  HWY_DYNAMIC_DISPATCH(backward_impl)(cfg, q, k, v, out, dout, saved, dq, dk, dv, dscale, dconcat_weight, scratch);
}

}  // namespace attn::kernels
#endif  // HWY_ONCE
