// Fast fused attention (Keras layers.Attention semantics, see attention.hpp), flash style:
// scores exist only as [kBlockRows, kBlockCols] blocks in scratch; forward saves per-row max m
// and denominator l, backward recomputes the blocks. SIMD through Highway with run-time dispatch
// (this file is compiled once per target via foreach_target.h); the softmax terms use the d = 1
// path's exponential (exp_nonpositive-inl.h: arguments are scores minus the row max, so <= 0),
// which costs fewer instructions than Highway's general Exp. d = dv = 1 unmasked dot attention
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
#include "kernels/exp_nonpositive-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using layout::kBlockCols;
using layout::kBlockRows;
using DF = hn::ScalableTag<float>;

// Block products. One routine covers all seven: z [rows, ncols] (ld ldz) = (or +=, kAcc)
// A [rows, kdim] . y [kdim, ncols] (ld ldy), where A(r, k) = a[r * lda + k], or with kTransA
// A(r, k) = a[k * kBlockCols + r] (A is the transpose of a [kdim, kBlockCols] block, so P^T dO
// and dS^T Q need no explicit transpose: the kernel broadcasts single elements of A, and a
// strided broadcast costs the same as a contiguous one).
template <bool kTransA>
HWY_INLINE const float* a_at(const float* a, int64_t lda, int64_t r, int64_t k) {
  return kTransA ? a + k * kBlockCols + r : a + r * lda + k;
}

// Register tile: R rows x NV vectors of z, accumulated over all of kdim in registers (6 x 2 on
// AVX2: 12 accumulators, enough independent FMA chains to cover FMA latency on two pipes, plus
// 2 loads of y and 1 broadcast register = 15 of the 16 ymm registers; 6 x 4 with AVX-512's 32
// registers: 24 + 4 + 1).
template <int R, int NV, bool kTransA, bool kAcc>
HWY_INLINE void gemm_tile(const float* HWY_RESTRICT a, int64_t lda, int64_t kdim, const float* HWY_RESTRICT y,
                          int64_t ldy, float* HWY_RESTRICT z, int64_t ldz) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  using V = hn::Vec<DF>;
  V acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = hn::Zero(df);
  for (int64_t k = 0; k < kdim; ++k) {
    V yv[NV];
    for (int v = 0; v < NV; ++v) yv[v] = hn::LoadU(df, y + k * ldy + v * n);
    for (int r = 0; r < R; ++r) {
      const V b = hn::Set(df, *a_at<kTransA>(a, lda, r, k));
      for (int v = 0; v < NV; ++v) acc[r][v] = hn::MulAdd(b, yv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      float* p = z + r * ldz + v * n;
      hn::StoreU(kAcc ? hn::Add(hn::LoadU(df, p), acc[r][v]) : acc[r][v], df, p);
    }
}

template <int NV, bool kTransA, bool kAcc>
void gemm_rows(const float* HWY_RESTRICT a, int64_t lda, int64_t rows, int64_t kdim, const float* HWY_RESTRICT y,
               int64_t ldy, float* HWY_RESTRICT z, int64_t ldz) {
  constexpr int kR = 6;
  int64_t r = 0;
  for (; r + kR <= rows; r += kR) gemm_tile<kR, NV, kTransA, kAcc>(a_at<kTransA>(a, lda, r, 0), lda, kdim, y, ldy, z + r * ldz, ldz);
  const float* ar = a_at<kTransA>(a, lda, r, 0);
  float* zr = z + r * ldz;
  switch (rows - r) {
    case 5: gemm_tile<5, NV, kTransA, kAcc>(ar, lda, kdim, y, ldy, zr, ldz); break;
    case 4: gemm_tile<4, NV, kTransA, kAcc>(ar, lda, kdim, y, ldy, zr, ldz); break;
    case 3: gemm_tile<3, NV, kTransA, kAcc>(ar, lda, kdim, y, ldy, zr, ldz); break;
    case 2: gemm_tile<2, NV, kTransA, kAcc>(ar, lda, kdim, y, ldy, zr, ldz); break;
    case 1: gemm_tile<1, NV, kTransA, kAcc>(ar, lda, kdim, y, ldy, zr, ldz); break;
    default: break;
  }
}

// Columns e0..ncols of the product below, one scalar dot product each (a partial last vector).
template <bool kTransA, bool kAcc>
HWY_NOINLINE void gemm_scalar_cols(const float* HWY_RESTRICT a, int64_t lda, int64_t rows, int64_t kdim,
                                   const float* HWY_RESTRICT y, int64_t ldy, int64_t e0, int64_t ncols,
                                   float* HWY_RESTRICT z, int64_t ldz) {
  for (int64_t e = e0; e < ncols; ++e)
    for (int64_t r = 0; r < rows; ++r) {
      float sum = 0.0f;
      for (int64_t k = 0; k < kdim; ++k) sum += *a_at<kTransA>(a, lda, r, k) * y[k * ldy + e];
      float* p = z + r * ldz + e;
      *p = kAcc ? *p + sum : sum;
    }
}

// The product described above. Columns go in 2-vector then 1-vector strips; a last partial
// vector of columns is scalar. Outputs narrower than one vector (d or dv < lanes) vectorise
// along kdim (rows of A contiguous: dot products of A rows with a column of y gathered into
// `gather` [kdim], kdim <= kBlockCols + kPad) or along rows (kTransA: rows of A are contiguous
// columns of the block, rows <= kBlockCols).
template <bool kTransA, bool kAcc>
void gemm(const float* HWY_RESTRICT a, int64_t lda, int64_t rows, int64_t kdim, const float* HWY_RESTRICT y,
          int64_t ldy, int64_t ncols, float* HWY_RESTRICT z, int64_t ldz, float* HWY_RESTRICT gather) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  if (ncols < n) {
    if (kTransA) {
      HWY_ALIGN float tmp[hn::MaxLanes(DF())];
      for (int64_t e = 0; e < ncols; ++e)
        for (int64_t r = 0; r < rows; r += n) {
          auto acc = hn::Zero(df);
          for (int64_t k = 0; k < kdim; ++k)
            acc = hn::MulAdd(hn::LoadU(df, a + k * kBlockCols + r), hn::Set(df, y[k * ldy + e]), acc);
          hn::Store(acc, df, tmp);
          for (int64_t i = 0; i < n && r + i < rows; ++i) {
            float* p = z + (r + i) * ldz + e;
            *p = kAcc ? *p + tmp[i] : tmp[i];
          }
        }
      return;
    }
    const int64_t kv = kdim / n * n;
    for (int64_t e = 0; e < ncols; ++e) {
      for (int64_t k = 0; k < kdim; ++k) gather[k] = y[k * ldy + e];
      for (int64_t r = 0; r < rows; ++r) {
        const float* ar = a + r * lda;
        auto acc = hn::Zero(df);
        for (int64_t k = 0; k < kv; k += n) acc = hn::MulAdd(hn::LoadU(df, ar + k), hn::LoadU(df, gather + k), acc);
        float sum = hn::GetLane(hn::SumOfLanes(df, acc));
        for (int64_t k = kv; k < kdim; ++k) sum += ar[k] * gather[k];
        float* p = z + r * ldz + e;
        *p = kAcc ? *p + sum : sum;
      }
    }
    return;
  }
  // With 32 vector registers, strips of 4 vectors: each broadcast of A then feeds 4 multiply-adds
  // instead of 2 (AVX-512 at d = 64: one strip covers a whole block row).
  constexpr int kWide = HWY_MAX_BYTES >= 64 ? 4 : 2;
  int64_t e = 0;
  for (; e + kWide * n <= ncols; e += kWide * n)
    gemm_rows<kWide, kTransA, kAcc>(a, lda, rows, kdim, y + e, ldy, z + e, ldz);
  if (kWide == 4 && e + 2 * n <= ncols) {  // at most one
    gemm_rows<2, kTransA, kAcc>(a, lda, rows, kdim, y + e, ldy, z + e, ldz);
    e += 2 * n;
  }
  if (e + n <= ncols) {  // at most one (fewer than 2 n columns are left)
    gemm_rows<1, kTransA, kAcc>(a, lda, rows, kdim, y + e, ldy, z + e, ldz);
    e += n;
  }
  if (e < ncols) gemm_scalar_cols<kTransA, kAcc>(a, lda, rows, kdim, y, ldy, e, ncols, z, ldz);
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
  const int64_t cw = layout::round_up(cols, n);
  float mult = cfg.scale;
  if (cfg.mode == ScoreMode::kDot) {
    gemm<false, false>(sm.q + i0 * cfg.d, cfg.d, rows, cfg.d, sm.kt + j0, sm.tvp, cw, raw, kBlockCols, nullptr);
  } else {
    mult = cfg.concat_weight;
    for (int64_t r = 0; r < rows; ++r) {
      const float* qi = sm.q + (i0 + r) * cfg.d;
      for (int64_t c = 0; c < cw; ++c) {
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
    for (int64_t c = 0; c < cw; c += n)
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
    for (int64_t c = cols; c < cw; ++c) s[r * kBlockCols + c] = -std::numeric_limits<float>::infinity();
}

// Skip of a block that is entirely causally masked for rows whose max is a real score: its
// terms are exp(about -1e9 - m), 0 in float (ExpNonPositive gives ~1e-38, negligible against
// the row's exp(0) = 1; assumes |scores| well below 1e8).
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
        const int64_t cw = layout::round_up(cols, n);  // live width: columns past it are not touched
        for (int64_t r = 0; r < rows; ++r) {
          float* sr = s + r * kBlockCols;
          auto vmax = hn::Set(df, ninf);
          for (int64_t c = 0; c < cw; c += n) vmax = hn::Max(vmax, hn::LoadU(df, sr + c));
          const float mnew = std::max(m[r], hn::GetLane(hn::MaxOfLanes(df, vmax)));
          const float alpha = m[r] == ninf ? 0.0f : std::exp(m[r] - mnew);
          const auto vm = hn::Set(df, mnew);
          auto vs = hn::Zero(df);
          for (int64_t c = 0; c < cw; c += n) {
            const auto e = ExpNonPositive(df, hn::Sub(hn::LoadU(df, sr + c), vm));
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
        gemm<false, true>(s, kBlockCols, rows, cols, sm.v + j0 * dv, dv, dv, ob + i0 * dv, dv, scratch + L.gather);
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
  if (layout::grouped_eligible(cfg))
    return attention_d1_backward(cfg, q, k, v, out, dout, saved, dq, dk, dv, dscale, scratch);
  const layout::ScratchLayout L = layout::scratch_layout(cfg);
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  float* raw = scratch + L.raw;
  float* s = scratch + L.s;
  float* dp = scratch + L.dp;
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
        const int64_t cw = layout::round_up(cols, n);  // live width: columns past it are not touched
        gemm<false, false>(gb + i0 * dvf, dvf, rows, dvf, vt + j0, L.tvp, cw, dp, kBlockCols, nullptr);
        // One pass per row: s becomes W (after dropout), dp becomes dS, and in dot mode dscale
        // takes sum dS * raw and dp is then multiplied by scale (the dS that dq and dk need).
        const auto vsc = hn::Set(df, concat ? 1.0f : cfg.scale);
        for (int64_t r = 0; r < rows; ++r) {
          float* sr = s + r * kBlockCols;
          float* dr = dp + r * kBlockCols;
          const float* rr = raw + r * kBlockCols;
          if (qm != nullptr && qm[i0 + r] == 0) {  // where(qm, out, 0): no gradient from this row
            std::fill(sr, sr + cw, 0.0f);
            std::fill(dr, dr + cw, 0.0f);
            continue;
          }
          const auto vm = hn::Set(df, ms[i0 + r]);
          const auto vinv = hn::Set(df, 1.0f / ls[i0 + r]);
          const auto vd = hn::Set(df, drow[i0 + r]);
          auto vdscale = hn::Zero(df);
          if (cfg.dropout <= 0.0f) {
            for (int64_t c = 0; c < cw; c += n) {
              const auto p = hn::Mul(ExpNonPositive(df, hn::Sub(hn::LoadU(df, sr + c), vm)), vinv);
              hn::StoreU(p, df, sr + c);
              const auto ds = hn::Mul(p, hn::Sub(hn::LoadU(df, dr + c), vd));
              vdscale = hn::MulAdd(ds, hn::LoadU(df, rr + c), vdscale);
              hn::StoreU(hn::Mul(ds, vsc), df, dr + c);
            }
          } else {
            for (int64_t c = 0; c < cw; c += n)
              hn::StoreU(hn::Mul(ExpNonPositive(df, hn::Sub(hn::LoadU(df, sr + c), vm)), vinv), df, sr + c);
            for (int64_t c = 0; c < cw; ++c) {
              const float f = c < cols ? dropout_factor(cfg.dropout, cfg.dropout_seed, sample, i0 + r, j0 + c) : 0.0f;
              dr[c] = sr[c] * (dr[c] * f - drow[i0 + r]);
              sr[c] *= f;
            }
            for (int64_t c = 0; c < cw; c += n) {
              const auto ds = hn::LoadU(df, dr + c);
              vdscale = hn::MulAdd(ds, hn::LoadU(df, rr + c), vdscale);
              hn::StoreU(hn::Mul(ds, vsc), df, dr + c);
            }
          }
          if (!concat) dscale_acc += hn::GetLane(hn::SumOfLanes(df, vdscale));  // concat: below
        }
        if (dvb != nullptr)
          gemm<true, true>(s, kBlockCols, cols, rows, gb + i0 * dvf, dvf, dvf, dvb + j0 * dvf, dvf, scratch + L.gather);
        if (!concat) {
          if (dqb == nullptr && dkb == nullptr) continue;
          if (dqb != nullptr)
            gemm<false, true>(dp, kBlockCols, rows, cols, sm.k + j0 * d, d, d, dqb + i0 * d, d, scratch + L.gather);
          if (dkb != nullptr) {
            gemm<true, true>(dp, kBlockCols, cols, rows, sm.q + i0 * d, d, d, dkb + j0 * d, d, scratch + L.gather);
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
