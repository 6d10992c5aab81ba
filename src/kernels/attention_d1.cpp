// The d = dv = 1 unmasked dot-attention path (see attention_d1.hpp). Scores are
// fl(fl(q_i k_j) scale) as Keras rounds them; equal key values give equal terms, so keys (and
// queries) are grouped by exact value and each query group needs one exp per key group. The row
// max has a closed form (rounding is monotone: the largest or smallest key), and dL/dscale
// reduces to per-row moments saved by the forward pass. Compiled once per SIMD target by Highway.
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
      // sum_j dS_ij raw_ij / dout_i = u (E_P[v k] - out E_P[k])
      rc[a] = static_cast<float>(static_cast<double>(u) * (vk - o * kbar));
    }
    float* sv = saved + b * layout::saved_floats(cfg);
    float* ob = out + b * tq;
    for (int64_t i = 0; i < tq; ++i) {
      const int64_t a = static_cast<int64_t>(qpos[i]);
      ob[i] = ro[a];
      sv[i] = rm[a];
      sv[tq + i] = rl[a];
      sv[2 * tq + i] = rc[a];
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

bool backward_impl(const AttentionConfig& cfg, const float* q, const float* k, const float* v, const float* out,
                   const float* dout, const float* saved, float* dq, float* dk, float* dv, float* dscale,
                   float* scratch) {
  (void)q, (void)k, (void)v, (void)out, (void)scratch;
  if (dq != nullptr || dk != nullptr || dv != nullptr) return false;
  const int64_t tq = cfg.tq;
  // dL/dscale = sum_i dout_i c_i with c from the grouped forward.
  double acc = 0.0;
  for (int64_t b = 0; b < cfg.batch; ++b) {
    const float* c = saved + b * layout::saved_floats(cfg) + 2 * tq;
    const float* g = dout + b * tq;
    const DF df;
    const int64_t n = static_cast<int64_t>(hn::Lanes(df));
    auto va = hn::Zero(df);
    int64_t i = 0;
    for (; i + n <= tq; i += n) va = hn::MulAdd(hn::LoadU(df, g + i), hn::LoadU(df, c + i), va);
    acc += hn::GetLane(hn::SumOfLanes(df, va));
    for (; i < tq; ++i) acc += static_cast<double>(g[i]) * c[i];
  }
  if (dscale != nullptr) *dscale += static_cast<float>(acc);
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
