// The d = dv = 1 unmasked dot-attention path (see attention_d1.hpp). Scores are
// fl(fl(q_i k_j) scale) as Keras rounds them; equal key values give equal terms, so keys (and
// queries) are grouped by exact value and each query group needs one exp per key group. The row
// max has a closed form (rounding is monotone: the largest or smallest key), and dL/dscale and
// dL/dq reduce to per-row moments saved by the forward pass; dk and dv are column sums over query
// groups, one exp per (query group, key group). Compiled once per SIMD target by Highway.
#include <algorithm>
#include <bit>
#include <cmath>

#include "kernels/attention_d1.hpp"
#include "kernels/attention_layout.hpp"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention_d1.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

struct Groups {
  float* val;  // [G padded] distinct values
  float* cnt;  // [G padded] multiplicity
  float* sum;  // [G padded] sum of v over the group (keys only)
  int64_t g = 0;
};

// Groups x [len] by exact bit pattern; pos [len] receives each element's group (as float, exact
// below 2^24). Zero (the common MNIST pixel) bypasses the hash table.
void group_values(const float* HWY_RESTRICT x, const float* HWY_RESTRICT v, int64_t len, float* hkey, float* hidx,
                  int64_t hsize, Groups& gr, float* HWY_RESTRICT pos) {
  std::fill(hidx, hidx + hsize, 0.0f);
  int shift = 32;
  for (int64_t h = hsize; h > 1; h >>= 1) --shift;
  int64_t zero_group = -1;
  gr.g = 0;
  auto new_group = [&](float value) {
    const int64_t g = gr.g++;
    gr.val[g] = value;
    gr.cnt[g] = 0.0f;
    if (gr.sum != nullptr) gr.sum[g] = 0.0f;
    return g;
  };
  // Zeros are counted in registers: a shared in-memory counter would serialise on store-to-load
  // forwarding for 80% of the elements.
  int64_t zero_count = 0;
  float zero_sum = 0.0f;
  for (int64_t j = 0; j < len; ++j) {
    const uint32_t bits = std::bit_cast<uint32_t>(x[j]);
    if (bits == 0) {
      if (zero_group < 0) zero_group = new_group(0.0f);
      ++zero_count;
      if (v != nullptr && v[j] != 0.0f) zero_sum += v[j];  // v = k = x: never taken
      pos[j] = static_cast<float>(zero_group);
      continue;
    }
    int64_t g;
    uint32_t h = (bits * 0x9E3779B1u) >> shift;
    for (;;) {
      if (hidx[h] == 0.0f) {
        g = new_group(x[j]);
        hkey[h] = x[j];
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
    if (gr.sum != nullptr) gr.sum[g] += v[j];
    pos[j] = static_cast<float>(g);
  }
  if (zero_group >= 0) {
    gr.cnt[zero_group] = static_cast<float>(zero_count);
    if (gr.sum != nullptr) gr.sum[zero_group] = zero_sum;
  }
}

void forward_grouped(const AttentionConfig& cfg, const float* q, const float* k, const float* v, float* out,
                     float* saved, float* weights, float* scratch) {
  const layout::ScratchLayout L = layout::scratch_layout(cfg);
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const int64_t hs = layout::hash_size(cfg);
  const int64_t tq = cfg.tq, tv = cfg.tv;
  const auto vscale = hn::Set(df, cfg.scale);
  for (int64_t b = 0; b < cfg.batch; ++b) {
    const float* qb = q + b * tq;
    const float* kb = k + b * tv;
    const float* vb = v + b * tv;
    Groups kg{scratch + L.gval, scratch + L.gcnt, scratch + L.gsum};
    group_values(kb, vb, tv, scratch + L.hkey, scratch + L.hidx, hs, kg, scratch + L.kpos);
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
    const float* qval = kg.val;
    const float* qpos = scratch + L.kpos;
    int64_t nq = kg.g;
    if (qb != kb || tq != tv) {
      Groups qg{scratch + L.qval, scratch + L.rl, nullptr};  // rl doubles as a count array here
      group_values(qb, nullptr, tq, scratch + L.hkey, scratch + L.hidx, hs, qg, scratch + L.qpos);
      qval = qg.val;
      qpos = scratch + L.qpos;
      nq = qg.g;
    }
    float* rm = scratch + L.rm;
    float* rl = scratch + L.rl;
    float* ro = scratch + L.ro;
    float* rc = scratch + L.rc;
    float* rw = scratch + L.rw;
    for (int64_t a = 0; a < nq; ++a) {
      const float u = qval[a];
      const auto vu = hn::Set(df, u);
      // Scores as Keras rounds them: fl(fl(u * k) * scale).
      // Rounding is monotone, so the row max is attained at the largest or smallest key.
      const float m = std::max((u * kmax) * cfg.scale, (u * kmin) * cfg.scale);
      const auto vm = hn::Set(df, m);
      auto sl = hn::Zero(df), snum = hn::Zero(df), skb = hn::Zero(df), svk = hn::Zero(df);
      for (int64_t g = 0; g < gp; g += n) {
        const auto kv = hn::LoadU(df, kg.val + g);
        const auto e = hn::Exp(df, hn::Sub(hn::Mul(hn::Mul(vu, kv), vscale), vm));
        const auto ne = hn::Mul(hn::LoadU(df, kg.cnt + g), e);
        const auto se = hn::Mul(hn::LoadU(df, kg.sum + g), e);
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
    float* sv = saved + b * layout::saved_floats(cfg);
    float* ob = out + b * tq;
    for (int64_t i = 0; i < tq; ++i) {
      const int64_t a = static_cast<int64_t>(qpos[i]);
      ob[i] = ro[a];
      sv[i] = rm[a];
      sv[tq + i] = rl[a];
      sv[2 * tq + i] = rc[a];
      sv[3 * tq + i] = rw[a];
    }
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
      const auto e0 = hn::Exp(df, hn::Sub(hn::Mul(hn::Mul(vu, k0), vs), vm));
      const auto e1 = hn::Exp(df, hn::Sub(hn::Mul(hn::Mul(vu, k1), vs), vm));
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
  Groups kg{scratch + L.gval, scratch + L.gcnt, nullptr};
  group_values(kb, nullptr, tv, scratch + L.hkey, scratch + L.hidx, hs, kg, kpos);
  const int64_t gp = layout::round_up(kg.g, 2 * n);
  for (int64_t g = kg.g; g < gp; ++g) kg.val[g] = kg.val[0];  // padding: a real value, result unused
  const float* qval = kg.val;
  const float* qpos = kpos;
  int64_t nq = kg.g;
  if (qb != kb || tq != tv) {
    Groups qg{scratch + L.qval, scratch + L.rl, nullptr};  // rl doubles as a count array here
    group_values(qb, nullptr, tq, scratch + L.hkey, scratch + L.hidx, hs, qg, scratch + L.qpos);
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

bool backward_impl(const AttentionConfig& cfg, const float* q, const float* k, const float* v, const float* out,
                   const float* dout, const float* saved, float* dq, float* dk, float* dv, float* dscale,
                   float* scratch) {
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
    for (int64_t b = 0; b < cfg.batch; ++b)
      backward_keys(cfg, L, q + b * tq, k + b * tv, v + b * tv, out + b * tq, dout + b * tq, saved + b * sf,
                    dk != nullptr ? dk + b * tv : nullptr, dv != nullptr ? dv + b * tv : nullptr, scratch);
  }
  return true;
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::kernels {

HWY_EXPORT(forward_grouped);
HWY_EXPORT(backward_impl);

void attention_d1_forward(const AttentionConfig& cfg, const float* q, const float* k, const float* v, float* out,
                          float* saved, float* weights, float* scratch) {
  HWY_DYNAMIC_DISPATCH(forward_grouped)(cfg, q, k, v, out, saved, weights, scratch);
}

bool attention_d1_backward(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                           const float* out, const float* dout, const float* saved, float* dq, float* dk, float* dv,
                           float* dscale, float* scratch) {
  return HWY_DYNAMIC_DISPATCH(backward_impl)(cfg, q, k, v, out, dout, saved, dq, dk, dv, dscale, scratch);
}

}  // namespace attn::kernels
#endif  // HWY_ONCE
