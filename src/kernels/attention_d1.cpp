// The d = dv = 1 unmasked dot-attention path (see attention_d1.hpp). Scores are
// fl(fl(q_i k_j) scale) as Keras rounds them; equal key values give equal terms, so keys (and
// queries) are grouped by exact value and each query group needs one exp per key group. The row
// max has a closed form (rounding is monotone: the largest or smallest key), and dL/dscale and
// dL/dq reduce to per-row moments saved by the forward pass; dk and dv are column sums over query
// groups, one exp per (query group, key group). Each sample goes to the series method
// (attention_d1_series.cpp) first, and is grouped here when that one declines it.
// Compiled once per SIMD target by Highway.
#include <algorithm>
#include <bit>
#include <cmath>

#include "kernels/attention_d1.hpp"
#include "kernels/attention_d1_series.hpp"
#include "kernels/attention_layout.hpp"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention_d1.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include "kernels/exp_nonpositive-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

struct Groups {
  float* val;  // [G padded] distinct values
  float* cnt;  // [G padded] multiplicity
  float* sum;  // [G padded] sum of v over the group (keys only), or null
  float* nzi;  // [len + kPad] index of each nonzero element (as float, exact below 2^24)
  float* nzg;  // [len + kPad] group of each nonzero element
  int64_t g = 0;            // number of groups
  int64_t nnz = 0;          // number of nonzero elements
  int64_t zero_group = -1;  // group of the zeros (+0.0f), -1 if there are none
};

// Groups x [len] by exact bit pattern, groups numbered in order of first appearance. Zero (+0.0f,
// the common MNIST pixel) bypasses the hash table: the nonzero elements and their indices are
// first compacted branch-free, zeros are counted (and their v summed) in registers, and only the
// nonzeros are hashed. (Highway's CompressStore was tried: on AVX2 it copies its permutation
// table onto the stack at every call, and cost more than the whole scalar loop.)
void group_values(const float* HWY_RESTRICT x, const float* HWY_RESTRICT v, int64_t len, float* HWY_RESTRICT hkey,
                  float* HWY_RESTRICT hidx, int64_t hsize, Groups& gr) {
  float* HWY_RESTRICT nzi = gr.nzi;
  float* HWY_RESTRICT nzg = gr.nzg;  // compacted values first, overwritten by their groups below
  // Branch-free compaction: every element is written at the next free slot, which only advances
  // past nonzeros (a branch on the pixel value mispredicts at MNIST's stroke edges).
  int64_t nnz = 0;
  for (int64_t j = 0; j < len; ++j) {
    const float xv = x[j];
    nzi[nnz] = static_cast<float>(j);
    nzg[nnz] = xv;
    nnz += std::bit_cast<uint32_t>(xv) != 0 ? 1 : 0;
  }
  float zero_sum = 0.0f;  // sum of v over the zeros of x, in vector lanes
  if (v != nullptr && nnz < len) {
    const DF df;
    const hn::RebindToUnsigned<DF> du;
    const int64_t n = static_cast<int64_t>(hn::Lanes(df));
    auto acc = hn::Zero(df);
    int64_t j = 0;
    for (; j + n <= len; j += n) {
      const auto zero = hn::RebindMask(df, hn::Eq(hn::BitCast(du, hn::LoadU(df, x + j)), hn::Zero(du)));
      acc = hn::Add(acc, hn::IfThenElseZero(zero, hn::LoadU(df, v + j)));
    }
    zero_sum = hn::GetLane(hn::SumOfLanes(df, acc));
    for (; j < len; ++j)
      if (std::bit_cast<uint32_t>(x[j]) == 0) zero_sum += v[j];
  }
  int64_t first_zero = 0;
  while (first_zero < nnz && static_cast<int64_t>(nzi[first_zero]) == first_zero) ++first_zero;
  if (nnz == len) first_zero = len;
  std::fill(hidx, hidx + hsize, 0.0f);
  int shift = 32;
  for (int64_t h = hsize; h > 1; h >>= 1) --shift;
  gr.g = 0;
  gr.nnz = nnz;
  gr.zero_group = -1;
  auto new_group = [&](float value) {
    const int64_t g = gr.g++;
    gr.val[g] = value;
    gr.cnt[g] = 0.0f;
    if (gr.sum != nullptr) gr.sum[g] = 0.0f;
    return g;
  };
  auto add_zero_group = [&] {
    gr.zero_group = new_group(0.0f);
    gr.cnt[gr.zero_group] = static_cast<float>(len - nnz);
    if (gr.sum != nullptr) gr.sum[gr.zero_group] = zero_sum;
  };
  // All elements before the first zero are nonzero, so the zero group comes right after the
  // first `first_zero` nonzeros in order of appearance.
  const int64_t zero_at = first_zero < len ? first_zero : -1;
  for (int64_t r = 0; r < nnz; ++r) {
    if (r == zero_at) add_zero_group();
    const float xv = nzg[r];
    const uint32_t bits = std::bit_cast<uint32_t>(xv);
    int64_t g;
    uint32_t h = (bits * 0x9E3779B1u) >> shift;
    for (;;) {
      if (hidx[h] == 0.0f) {
        g = new_group(xv);
        hkey[h] = xv;
        hidx[h] = static_cast<float>(g + 1);
        break;
      }
      if (std::bit_cast<uint32_t>(hkey[h]) == bits) {
        g = static_cast<int64_t>(hidx[h]) - 1;
        break;
      }
      h = (h + 1) & static_cast<uint32_t>(hsize - 1);
    }
    gr.cnt[g] += 1.0f;
    if (gr.sum != nullptr) gr.sum[g] += v[static_cast<int64_t>(nzi[r])];
    nzg[r] = static_cast<float>(g);
  }
  if (zero_at == nnz) add_zero_group();
}

// pos [len] = the group of each element.
void expand_groups(const Groups& gr, int64_t len, float* HWY_RESTRICT pos) {
  std::fill(pos, pos + len, static_cast<float>(gr.zero_group));
  for (int64_t t = 0; t < gr.nnz; ++t) pos[static_cast<int64_t>(gr.nzi[t])] = gr.nzg[t];
}

// Row statistics of query group a (value u) against the key groups (val, cnt, sum [gp], gp a
// multiple of the vector length, padding with zero count and sum): m, l, out, c, w (see
// layout::saved_floats). Exp-bound: two query groups per pass sharing the key loads measured the
// same on AVX2, so one it is.
void row_stats(float u, int64_t a, const float* HWY_RESTRICT val, const float* HWY_RESTRICT cnt,
               const float* HWY_RESTRICT sum, int64_t gp, float kmin, float kmax, float scale, float* HWY_RESTRICT rm,
               float* HWY_RESTRICT rl, float* HWY_RESTRICT ro, float* HWY_RESTRICT rc, float* HWY_RESTRICT rw) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const auto vscale = hn::Set(df, scale);
  const auto vu = hn::Set(df, u);
  // Scores as Keras rounds them: fl(fl(u * k) * scale).
  // Rounding is monotone, so the row max is attained at the largest or smallest key.
  const float m = std::max((u * kmax) * scale, (u * kmin) * scale);
  const auto vm = hn::Set(df, m);
  auto sl = hn::Zero(df), snum = hn::Zero(df), skb = hn::Zero(df), svk = hn::Zero(df);
  for (int64_t g = 0; g < gp; g += n) {
    const auto kv = hn::LoadU(df, val + g);
    const auto e = ExpNonPositive(df, hn::Sub(hn::Mul(hn::Mul(vu, kv), vscale), vm));
    const auto ne = hn::Mul(hn::LoadU(df, cnt + g), e);
    const auto se = hn::Mul(hn::LoadU(df, sum + g), e);
    sl = hn::Add(sl, ne);
    snum = hn::Add(snum, se);
    skb = hn::MulAdd(ne, kv, skb);
    svk = hn::MulAdd(se, kv, svk);
  }
  const double l = hn::GetLane(hn::SumOfLanes(df, sl));
  const double o = hn::GetLane(hn::SumOfLanes(df, snum)) / l;
  const double kbar = hn::GetLane(hn::SumOfLanes(df, skb)) / l;
  const double vk = hn::GetLane(hn::SumOfLanes(df, svk)) / l;
  rm[a] = m;
  rl[a] = static_cast<float>(l);
  ro[a] = static_cast<float>(o);
  // sum_j dS_ij raw_ij / dout_i = u (E_P[v k] - out E_P[k]); dq_i / (scale dout_i) = w.
  rc[a] = static_cast<float>(static_cast<double>(u) * (vk - o * kbar));
  rw[a] = static_cast<float>(vk - o * kbar);
}

void forward_grouped_sample(const AttentionConfig& cfg, const layout::ScratchLayout& L, const float* qb,
                            const float* kb, const float* vb, float* ob, float* sv, float* scratch) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const int64_t hs = layout::hash_size(cfg);
  const int64_t tq = cfg.tq, tv = cfg.tv;
  Groups kg{scratch + L.gval, scratch + L.gcnt, scratch + L.gsum, scratch + L.knzi, scratch + L.knzg};
  group_values(kb, vb, tv, scratch + L.hkey, scratch + L.hidx, hs, kg);
  const int64_t gp = layout::round_up(kg.g, n);
  for (int64_t g = kg.g; g < gp; ++g) {  // padding: a real value with zero weight
    kg.val[g] = kg.val[0];
    kg.cnt[g] = 0.0f;
    kg.sum[g] = 0.0f;
  }
  float kmin = kg.val[0], kmax = kg.val[0];
  for (int64_t g = 1; g < kg.g; ++g) {
    kmin = std::min(kmin, kg.val[g]);
    kmax = std::max(kmax, kg.val[g]);
  }
  const Groups* qs = &kg;
  // rl doubles as the query groups' count array here
  Groups qg{scratch + L.qval, scratch + L.rl, nullptr, scratch + L.qnzi, scratch + L.qnzg};
  if (qb != kb || tq != tv) {
    group_values(qb, nullptr, tq, scratch + L.hkey, scratch + L.hidx, hs, qg);
    qs = &qg;
  }
  const int64_t nq = qs->g;
  float* rm = scratch + L.rm;
  float* rl = scratch + L.rl;
  float* ro = scratch + L.ro;
  float* rc = scratch + L.rc;
  float* rw = scratch + L.rw;
  for (int64_t a = 0; a < nq; ++a)
    row_stats(qs->val[a], a, kg.val, kg.cnt, kg.sum, gp, kmin, kmax, cfg.scale, rm, rl, ro, rc, rw);
  // Scatter: the zero queries' rows all at once, then each nonzero query's.
  if (qs->zero_group >= 0) {
    const int64_t z = qs->zero_group;
    std::fill(ob, ob + tq, ro[z]);
    std::fill(sv, sv + tq, rm[z]);
    std::fill(sv + tq, sv + 2 * tq, rl[z]);
    std::fill(sv + 2 * tq, sv + 3 * tq, rc[z]);
    std::fill(sv + 3 * tq, sv + 4 * tq, rw[z]);
  }
  for (int64_t t = 0; t < qs->nnz; ++t) {
    const int64_t i = static_cast<int64_t>(qs->nzi[t]);
    const int64_t g = static_cast<int64_t>(qs->nzg[t]);
    ob[i] = ro[g];
    sv[i] = rm[g];
    sv[tq + i] = rl[g];
    sv[2 * tq + i] = rc[g];
    sv[3 * tq + i] = rw[g];
  }
}

// Each sample by the series where it applies (unless told otherwise), else by grouping.
void forward_samples(const AttentionConfig& cfg, const float* q, const float* k, const float* v, float* out,
                     float* saved, float* weights, float* scratch, D1Method method) {
  const layout::ScratchLayout L = layout::scratch_layout(cfg);
  const int64_t tq = cfg.tq, tv = cfg.tv;
  for (int64_t b = 0; b < cfg.batch; ++b) {
    const float* qb = q + b * tq;
    const float* kb = k + b * tv;
    const float* vb = v + b * tv;
    float* sv = saved + b * layout::saved_floats(cfg);
    float* ob = out + b * tq;
    if (method == D1Method::kGrouped || !attention_d1_series_forward(cfg, qb, kb, vb, ob, sv, scratch))
      forward_grouped_sample(cfg, L, qb, kb, vb, ob, sv, scratch);
    if (weights != nullptr) {
      for (int64_t i = 0; i < tq; ++i) {
        float* w = weights + (b * tq + i) * tv;
        const float inv = 1.0f / sv[tq + i];
        for (int64_t j = 0; j < tv; ++j) w[j] = std::exp((qb[i] * kb[j]) * cfg.scale - sv[i]) * inv;
      }
    }
  }
}

// Column sums over query groups for every key group (kval [gp], gp a multiple of 2 vectors):
// A(k) = sum_a E_a(k) wa_a, B(k) = sum_a E_a(k) wb_a, C(k) = sum_a E_a(k) wc_a with
// E_a(k) = exp(fl(fl(u_a k) scale) - m_a), the forward's terms. Two key vectors stay in registers
// with their six accumulators while the query groups stream past as broadcast scalars.
void column_sums(const float* HWY_RESTRICT kval, int64_t gp, const float* HWY_RESTRICT qu,
                 const float* HWY_RESTRICT qm, const float* HWY_RESTRICT wa, const float* HWY_RESTRICT wb,
                 const float* HWY_RESTRICT wc, int64_t nq, float scale, float* HWY_RESTRICT ca,
                 float* HWY_RESTRICT cb, float* HWY_RESTRICT cc) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const auto vs = hn::Set(df, scale);
  for (int64_t g0 = 0; g0 < gp; g0 += 2 * n) {
    const auto k0 = hn::LoadU(df, kval + g0);
    const auto k1 = hn::LoadU(df, kval + g0 + n);
    auto a0 = hn::Zero(df), a1 = hn::Zero(df), b0 = hn::Zero(df), b1 = hn::Zero(df), c0 = hn::Zero(df),
         c1 = hn::Zero(df);
    for (int64_t a = 0; a < nq; ++a) {
      const auto vu = hn::Set(df, qu[a]);
      const auto vm = hn::Set(df, qm[a]);
      const auto e0 = ExpNonPositive(df, hn::Sub(hn::Mul(hn::Mul(vu, k0), vs), vm));
      const auto e1 = ExpNonPositive(df, hn::Sub(hn::Mul(hn::Mul(vu, k1), vs), vm));
      const auto va = hn::Set(df, wa[a]);
      a0 = hn::MulAdd(va, e0, a0);
      a1 = hn::MulAdd(va, e1, a1);
      const auto vb = hn::Set(df, wb[a]);
      b0 = hn::MulAdd(vb, e0, b0);
      b1 = hn::MulAdd(vb, e1, b1);
      const auto vc = hn::Set(df, wc[a]);
      c0 = hn::MulAdd(vc, e0, c0);
      c1 = hn::MulAdd(vc, e1, c1);
    }
    hn::StoreU(a0, df, ca + g0);
    hn::StoreU(a1, df, ca + g0 + n);
    hn::StoreU(b0, df, cb + g0);
    hn::StoreU(b1, df, cb + g0 + n);
    hn::StoreU(c0, df, cc + g0);
    hn::StoreU(c1, df, cc + g0 + n);
  }
}

// dk and dv of one sample. With P the softmax, g = dout, o = out, s = scale:
// dv_j = sum_i P_ij g_i = A(k_j), dk_j = s sum_i P_ij g_i q_i (v_j - o_i) = s (v_j B(k_j) - C(k_j)),
// where P_ij = E_i(k_j) / l_i and the column sums take per query weights g_i / l_i (A),
// g_i q_i / l_i (B), g_i q_i o_i / l_i (C). Queries of one group share u, m and l, so their
// weights are summed first; keys of one group share A, B and C.
void backward_keys(const AttentionConfig& cfg, const layout::ScratchLayout& L, const float* qb, const float* kb,
                   const float* vb, const float* ob, const float* gb, const float* sv, float* dkb, float* dvb,
                   float* scratch) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const int64_t hs = layout::hash_size(cfg);
  const int64_t tq = cfg.tq, tv = cfg.tv;
  float* kpos = scratch + L.kpos;
  Groups kg{scratch + L.gval, scratch + L.gcnt, nullptr, scratch + L.knzi, scratch + L.knzg};
  group_values(kb, nullptr, tv, scratch + L.hkey, scratch + L.hidx, hs, kg);
  expand_groups(kg, tv, kpos);
  const int64_t gp = layout::round_up(kg.g, 2 * n);
  for (int64_t g = kg.g; g < gp; ++g) kg.val[g] = kg.val[0];  // padding: a real value, result unused
  const float* qval = kg.val;
  const float* qpos = kpos;
  int64_t nq = kg.g;
  if (qb != kb || tq != tv) {
    // rl doubles as a count array here
    Groups qg{scratch + L.qval, scratch + L.rl, nullptr, scratch + L.qnzi, scratch + L.qnzg};
    group_values(qb, nullptr, tq, scratch + L.hkey, scratch + L.hidx, hs, qg);
    expand_groups(qg, tq, scratch + L.qpos);
    qval = qg.val;
    qpos = scratch + L.qpos;
    nq = qg.g;
  }
  float* rm = scratch + L.rm;  // m per query group
  float* rl = scratch + L.rl;  // l per query group
  float* ra = scratch + L.ro;  // sum g, then weight A
  float* rb = scratch + L.rc;  // weight B
  float* rc = scratch + L.rw;  // sum g o, then weight C
  for (int64_t a = 0; a < nq; ++a) ra[a] = rc[a] = 0.0f;
  for (int64_t i = 0; i < tq; ++i) {
    const int64_t a = static_cast<int64_t>(qpos[i]);
    rm[a] = sv[i];
    rl[a] = sv[tq + i];
    ra[a] += gb[i];
    rc[a] += gb[i] * ob[i];
  }
  for (int64_t a = 0; a < nq; ++a) {
    const float inv = 1.0f / rl[a];
    ra[a] *= inv;
    rb[a] = ra[a] * qval[a];
    rc[a] = rc[a] * inv * qval[a];
  }
  float* ca = scratch + L.ka;
  float* cb = scratch + L.kb;
  float* cc = scratch + L.kc;
  column_sums(kg.val, gp, qval, rm, ra, rb, rc, nq, cfg.scale, ca, cb, cc);
  for (int64_t j = 0; j < tv; ++j) {
    const int64_t g = static_cast<int64_t>(kpos[j]);
    if (dvb != nullptr) dvb[j] += ca[g];
    if (dkb != nullptr) dkb[j] += cfg.scale * (vb[j] * cb[g] - cc[g]);
  }
}

void backward_impl(const AttentionConfig& cfg, const float* q, const float* k, const float* v, const float* out,
                   const float* dout, const float* saved, float* dq, float* dk, float* dv, float* dscale,
                   float* scratch, D1Method method) {
  const int64_t tq = cfg.tq, tv = cfg.tv;
  const int64_t sf = layout::saved_floats(cfg);
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  // dL/dscale = sum_i dout_i c_i with c from the grouped forward (the reference model needs
  // nothing else: this loop is all its backward costs).
  if (dscale != nullptr) {
    double acc = 0.0;
    for (int64_t b = 0; b < cfg.batch; ++b) {
      const float* c = saved + b * sf + 2 * tq;
      const float* g = dout + b * tq;
      auto va = hn::Zero(df);
      int64_t i = 0;
      for (; i + n <= tq; i += n) va = hn::MulAdd(hn::LoadU(df, g + i), hn::LoadU(df, c + i), va);
      acc += hn::GetLane(hn::SumOfLanes(df, va));
      for (; i < tq; ++i) acc += static_cast<double>(g[i]) * c[i];
    }
    *dscale += static_cast<float>(acc);
  }
  // dq_i = s sum_j dS_ij k_j = s g_i (E_P[v k]_i - o_i E_P[k]_i) = s g_i w_i.
  if (dq != nullptr) {
    const auto vs = hn::Set(df, cfg.scale);
    for (int64_t b = 0; b < cfg.batch; ++b) {
      const float* w = saved + b * sf + 3 * tq;
      const float* g = dout + b * tq;
      float* d = dq + b * tq;
      int64_t i = 0;
      for (; i + n <= tq; i += n)
        hn::StoreU(hn::MulAdd(hn::Mul(vs, hn::LoadU(df, g + i)), hn::LoadU(df, w + i), hn::LoadU(df, d + i)), df,
                   d + i);
      for (; i < tq; ++i) d[i] += (cfg.scale * g[i]) * w[i];
    }
  }
  if (dk != nullptr || dv != nullptr) {
    const layout::ScratchLayout L = layout::scratch_layout(cfg);
    for (int64_t b = 0; b < cfg.batch; ++b) {
      const float *qb = q + b * tq, *kb = k + b * tv, *vb = v + b * tv, *ob = out + b * tq, *gb = dout + b * tq;
      float* dkb = dk != nullptr ? dk + b * tv : nullptr;
      float* dvb = dv != nullptr ? dv + b * tv : nullptr;
      if (method == D1Method::kGrouped ||
          !attention_d1_series_backward(cfg, qb, kb, vb, ob, gb, saved + b * sf, dkb, dvb, scratch))
        backward_keys(cfg, L, qb, kb, vb, ob, gb, saved + b * sf, dkb, dvb, scratch);
    }
  }
}

// y[i] = exp(x[i]) for x[i] <= 0 with the kernel's exponential (for its tests).
void exp_nonpositive_impl(const float* HWY_RESTRICT x, float* HWY_RESTRICT y, int64_t count) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + n <= count; i += n) hn::StoreU(ExpNonPositive(df, hn::LoadU(df, x + i)), df, y + i);
  for (; i < count; ++i) {
    const hn::CappedTag<float, 1> d1;
    hn::StoreU(ExpNonPositive(d1, hn::LoadU(d1, x + i)), d1, y + i);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::kernels {

HWY_EXPORT(forward_samples);
HWY_EXPORT(backward_impl);
HWY_EXPORT(exp_nonpositive_impl);

void attention_d1_exp(const float* x, float* y, int64_t count) {
  HWY_DYNAMIC_DISPATCH(exp_nonpositive_impl)(x, y, count);
}

void attention_d1_forward(const AttentionConfig& cfg, const float* q, const float* k, const float* v, float* out,
                          float* saved, float* weights, float* scratch, D1Method method) {
  HWY_DYNAMIC_DISPATCH(forward_samples)(cfg, q, k, v, out, saved, weights, scratch, method);
}

void attention_d1_backward(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                           const float* out, const float* dout, const float* saved, float* dq, float* dk, float* dv,
                           float* dscale, float* scratch, D1Method method) {
  HWY_DYNAMIC_DISPATCH(backward_impl)(cfg, q, k, v, out, dout, saved, dq, dk, dv, dscale, scratch, method);
}

}  // namespace attn::kernels
#endif  // HWY_ONCE
