// The d = 1 series path (see attention_d1_series.hpp). For a bucket b of keys and a row i:
//   sum_{j in b} f_j exp(alpha_i k_j - m_i) = E_ib sum_p t_i^p / p! mu_bp(f),  E_ib = exp(alpha_i c_b - m_i),
// with the key moments mu_bp(f) = sum_{j in b} x_j^p f_j for f in {1, v}; the sums against k and
// v k follow from k_j = c_b + r x_j. Backward, a key's column sum against row weights w is
//   sum_i w_i exp(alpha_i k_j - m_i) = sum_p x_j^p / p! nu_bp(w),  nu_bp(w) = sum_i E_ib w_i t_i^p.
// Compiled once per SIMD target by Highway.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/attention_d1_series.hpp"
#include "kernels/attention_layout.hpp"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention_d1_series.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/exp_nonpositive-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

constexpr int kTerms = layout::kSeriesTerms;

// How one sample's keys are cut into buckets.
struct Plan {
  int64_t buckets = 0;           // 0: the series is not used for this sample
  float kmin = 0.0f, kmax = 0.0f;
  float h = 0.0f, inv_h = 0.0f;  // bucket width (0 when all keys are equal)
  float r = 1.0f, inv_r = 1.0f;  // half-width; key offsets are kept divided by r
};

// Buckets of equal width over [min k, max k], as few as keep |alpha_i| r <= kSeriesRadius.
Plan make_plan(const AttentionConfig& cfg, const float* HWY_RESTRICT q, const float* HWY_RESTRICT k) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const float inf = std::numeric_limits<float>::infinity();
  auto vmin = hn::Set(df, inf), vmax = hn::Set(df, -inf), vq = hn::Zero(df), vsum = hn::Zero(df);
  int64_t j = 0;
  for (; j + n <= cfg.tv; j += n) {
    const auto kv = hn::LoadU(df, k + j);
    vmin = hn::Min(vmin, kv);
    vmax = hn::Max(vmax, kv);
    vsum = hn::Add(vsum, hn::Abs(kv));
  }
  float kmin = hn::GetLane(hn::MinOfLanes(df, vmin)), kmax = hn::GetLane(hn::MaxOfLanes(df, vmax));
  double sum = 0.0;  // sum of |q| and |k|: finite only when every value is (min and max may drop NaN)
  for (; j < cfg.tv; ++j) {
    kmin = std::min(kmin, k[j]);
    kmax = std::max(kmax, k[j]);
    sum += std::fabs(k[j]);
  }
  float qmax = std::max(-kmin, kmax);  // self-attention: the queries are the keys
  if (q != k || cfg.tq != cfg.tv) {
    int64_t i = 0;
    for (; i + n <= cfg.tq; i += n) {
      const auto qa = hn::Abs(hn::LoadU(df, q + i));
      vq = hn::Max(vq, qa);
      vsum = hn::Add(vsum, qa);
    }
    qmax = hn::GetLane(hn::MaxOfLanes(df, vq));
    for (; i < cfg.tq; ++i) {
      qmax = std::max(qmax, std::fabs(q[i]));
      sum += std::fabs(q[i]);
    }
  }
  sum += hn::GetLane(hn::SumOfLanes(df, vsum));
  Plan p;
  // The margin covers alpha_i = fl(scale q_i) and the rounding of the bucket centres.
  const double need = static_cast<double>(qmax) * std::fabs(static_cast<double>(cfg.scale)) *
                      (static_cast<double>(kmax) - kmin) * (1.0 + 1e-5) / (2.0 * layout::kSeriesRadius);
  const double amax = static_cast<double>(qmax) * std::fabs(static_cast<double>(cfg.scale));
  if (!std::isfinite(sum) || !(amax < 1e30) || !(need <= static_cast<double>(layout::series_max_buckets(cfg))))
    return p;
  const auto buckets = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(need)));
  const double h = (static_cast<double>(kmax) - kmin) / static_cast<double>(buckets);
  // Offsets are scaled by 1/r to lie in [-1, 1]. With one bucket any r keeps |t x| =
  // |alpha (k - c)| <= kSeriesRadius, so r = 1 where h / 2 is too small to invert.
  if (h / 2.0 >= 1e-30) {
    p.h = static_cast<float>(h);
    p.inv_h = static_cast<float>(1.0 / h);
    p.r = static_cast<float>(h / 2.0);
    p.inv_r = 1.0f / p.r;
  } else if (buckets > 1) {
    return p;
  }
  p.buckets = buckets;
  p.kmin = kmin;
  p.kmax = kmax;
  return p;
}

int64_t bucket_of(const Plan& p, float key) {
  const auto b = static_cast<int64_t>((key - p.kmin) * p.inv_h);  // >= 0: key >= kmin
  return std::min(b, p.buckets - 1);
}

float centre_of(const Plan& p, int64_t b) { return p.kmin + (static_cast<float>(b) + 0.5f) * p.h; }

// Keys by bucket (a counting sort): sx = offset from the bucket centre / r, sv = value, si =
// original index (float, exact below 2^24), bucket b in [bstart[b], bstart[b + 1]). With one
// bucket the keys stay in place (all of them, si unset). With several, zero keys (most MNIST
// pixels) are left out of the sort and only counted, with their values summed: they share one
// offset, so their terms are added per bucket in closed form (see ZeroKeys).
struct ZeroKeys {
  int64_t count = 0;
  double vsum = 0.0;    // sum of v over the zero keys
  int64_t bucket = -1;  // the bucket 0 falls in
  float x = 0.0f;       // its offset from that bucket's centre / r
};

// For each mask of up to 8 lanes, the numbers of its set lanes in order, 4 bits each from the
// lowest (a left-pack table, built at compile time).
struct LeftPack {
  uint32_t lanes[256];
};
constexpr LeftPack make_left_pack() {
  LeftPack t{};
  for (uint32_t m = 0; m < 256; ++m) {
    uint32_t packed = 0, at = 0;
    for (uint32_t b = 0; b < 8; ++b)
      if ((m >> b) & 1u) packed |= b << (4 * at++);
    t.lanes[m] = packed;
  }
  return t;
}
constexpr LeftPack kLeftPack = make_left_pack();

// The lanes of v where `mask` (bit i: lane i) is set, moved to the front in order.
template <class D>
HWY_INLINE hn::Vec<D> LeftPack(D d, hn::Vec<D> v, unsigned mask) {
  const hn::RebindToUnsigned<D> du;
  const auto lanes = hn::And(hn::Shr(hn::Set(du, kLeftPack.lanes[mask]), hn::ShiftLeft<2>(hn::Iota(du, 0))),
                             hn::Set(du, 15u));
  return hn::TableLookupLanes(v, hn::IndicesFromVec(d, hn::BitCast(hn::RebindToSigned<D>(), lanes)));
}

// The mask's lanes as bits (bit i: lane i); at most 8 lanes.
template <class D>
HWY_INLINE unsigned MaskBits(D d, hn::Mask<D> m) {
  uint8_t bits = 0;
  hn::StoreMaskBits(d, m, &bits);
  return bits;
}

// Lists the nonzero elements of x in order: their indices (as float, exact below 2^24) in idx,
// and when asked their values in xval and the matching elements of v in vval. No branch on the
// value (it mispredicts at MNIST's stroke edges): 8 elements at a time, the nonzero lanes are
// left-packed with kLeftPack and all 8 slots written at the next free one, which then advances
// by their count (the scalar form carried that dependency from element to element, at about 3
// cycles each). +0 and -0 both count as zero. Writes up to 7 slots past the count; returns it.
int64_t list_nonzero(const float* HWY_RESTRICT x, const float* HWY_RESTRICT v, int64_t len, float* HWY_RESTRICT idx,
                     float* HWY_RESTRICT xval, float* HWY_RESTRICT vval) {
  const hn::CappedTag<float, 8> d;
  const hn::RebindToUnsigned<decltype(d)> du;
  const hn::RebindToSigned<decltype(d)> di;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  int64_t count = 0, j = 0;
  for (; j + n <= len; j += n) {
    const auto xv = hn::LoadU(d, x + j);
    const auto nonzero = hn::Ne(hn::ShiftLeft<1>(hn::BitCast(du, xv)), hn::Zero(du));
    const unsigned mask = MaskBits(du, nonzero);
    const auto index = hn::ConvertTo(d, hn::Add(hn::Iota(di, 0), hn::Set(di, static_cast<int32_t>(j))));
    hn::StoreU(LeftPack(d, index, mask), d, idx + count);
    if (xval != nullptr) hn::StoreU(LeftPack(d, xv, mask), d, xval + count);
    if (vval != nullptr) hn::StoreU(LeftPack(d, hn::LoadU(d, v + j), mask), d, vval + count);
    count += static_cast<int64_t>(hwy::PopCount(mask));
  }
  for (; j < len; ++j) {
    uint32_t bits;
    std::memcpy(&bits, x + j, sizeof(bits));
    idx[count] = static_cast<float>(j);
    if (xval != nullptr) xval[count] = x[j];
    if (vval != nullptr) vval[count] = v[j];
    count += (bits << 1) != 0 ? 1 : 0;
  }
  return count;
}

// sum of v_j over the j with k_j == 0.
double sum_where_zero(const float* HWY_RESTRICT k, const float* HWY_RESTRICT v, int64_t tv) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  auto acc = hn::Zero(df);
  int64_t j = 0;
  for (; j + n <= tv; j += n)
    acc = hn::Add(acc, hn::IfThenElseZero(hn::Eq(hn::LoadU(df, k + j), hn::Zero(df)), hn::LoadU(df, v + j)));
  double sum = hn::GetLane(hn::SumOfLanes(df, acc));
  for (; j < tv; ++j) sum += k[j] == 0.0f ? v[j] : 0.0f;
  return sum;
}

// nz, nzk, nzv [tv + kPad] hold the nonzero keys' indices, keys and values in between.
// Returns the number of nonzero keys listed in nz, -1 when none were listed (one bucket).
int64_t sort_keys(const Plan& p, const float* HWY_RESTRICT k, const float* HWY_RESTRICT v, int64_t tv,
                  float* HWY_RESTRICT sx, float* HWY_RESTRICT sv, float* HWY_RESTRICT si, float* HWY_RESTRICT bstart,
                  float* HWY_RESTRICT nz, float* HWY_RESTRICT nzk, float* HWY_RESTRICT nzv, ZeroKeys& zero) {
  zero = ZeroKeys{};
  if (p.buckets == 1) {
    const float c = centre_of(p, 0);
    for (int64_t j = 0; j < tv; ++j) sx[j] = (k[j] - c) * p.inv_r;
    if (v != nullptr) std::memcpy(sv, v, static_cast<size_t>(tv) * sizeof(float));
    bstart[0] = 0.0f;
    bstart[1] = static_cast<float>(tv);
    return -1;
  }
  const int64_t nnz = list_nonzero(k, v, tv, nz, nzk, v != nullptr ? nzv : nullptr);
  if (nnz < tv) {
    zero.count = tv - nnz;
    zero.bucket = bucket_of(p, 0.0f);
    zero.x = (0.0f - centre_of(p, zero.bucket)) * p.inv_r;
    if (v != nullptr) zero.vsum = sum_where_zero(k, v, tv);
  }
  // Few buckets: one pass per bucket over the nonzero keys, 8 at a time, left-packing those in
  // the bucket (bucket_of and the offsets in vector form, same operations). Many buckets: a
  // counting sort.
  int64_t at = 0;
  if (p.buckets <= 8) {
    const hn::CappedTag<float, 8> d;
    const hn::RebindToSigned<decltype(d)> di;
    const int64_t n = static_cast<int64_t>(hn::Lanes(d));
    const auto kmin = hn::Set(d, p.kmin), inv_h = hn::Set(d, p.inv_h), inv_r = hn::Set(d, p.inv_r);
    const auto last = hn::Set(di, static_cast<int32_t>(p.buckets - 1));
    for (int64_t b = 0; b < p.buckets; ++b) {
      bstart[b] = static_cast<float>(at);
      const auto c = hn::Set(d, centre_of(p, b));
      const auto vb = hn::Set(di, static_cast<int32_t>(b));
      for (int64_t t = 0; t < nnz; t += n) {
        const auto kv = hn::LoadU(d, nzk + t);
        const auto bucket = hn::Min(hn::ConvertTo(di, hn::Mul(hn::Sub(kv, kmin), inv_h)), last);
        const auto in = hn::And(hn::RebindMask(d, hn::Eq(bucket, vb)), hn::FirstN(d, static_cast<size_t>(nnz - t)));
        const unsigned mask = MaskBits(d, in);
        hn::StoreU(LeftPack(d, hn::Mul(hn::Sub(kv, c), inv_r), mask), d, sx + at);
        if (v != nullptr) hn::StoreU(LeftPack(d, hn::LoadU(d, nzv + t), mask), d, sv + at);
        hn::StoreU(LeftPack(d, hn::LoadU(d, nz + t), mask), d, si + at);
        at += static_cast<int64_t>(hwy::PopCount(mask));
      }
    }
  } else {
    std::fill(bstart, bstart + p.buckets + 1, 0.0f);
    for (int64_t t = 0; t < nnz; ++t) bstart[bucket_of(p, nzk[t]) + 1] += 1.0f;
    for (int64_t b = 0; b < p.buckets; ++b) bstart[b + 1] += bstart[b];
    // bstart[b] is used as bucket b's cursor; afterwards it holds bucket b + 1's start.
    for (int64_t t = 0; t < nnz; ++t) {
      const int64_t b = bucket_of(p, nzk[t]);
      at = static_cast<int64_t>(bstart[b]);
      bstart[b] += 1.0f;
      sx[at] = (nzk[t] - centre_of(p, b)) * p.inv_r;
      if (v != nullptr) sv[at] = nzv[t];
      si[at] = nz[t];
    }
    for (int64_t b = p.buckets; b > 0; --b) bstart[b] = bstart[b - 1];
    bstart[0] = 0.0f;
  }
  bstart[p.buckets] = static_cast<float>(nnz);
  return nnz;
}

// sums[p] = sum_{i in [begin, end)} f_i x_i^p for p < kCount (f null: all ones).
template <int kCount>
void power_sums(const float* HWY_RESTRICT x, const float* HWY_RESTRICT f, int64_t begin, int64_t end, double* sums) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  VF acc[kCount];
  for (int p = 0; p < kCount; ++p) acc[p] = hn::Zero(df);
  for (int64_t i = begin; i < end; i += n) {
    const auto live = hn::FirstN(df, static_cast<size_t>(end - i));
    const auto xv = hn::IfThenElseZero(live, hn::LoadU(df, x + i));
    auto pw = hn::IfThenElseZero(live, f != nullptr ? hn::LoadU(df, f + i) : hn::Set(df, 1.0f));
    for (int p = 0; p < kCount; ++p) {
      acc[p] = hn::Add(acc[p], pw);
      pw = hn::Mul(pw, xv);
    }
  }
  for (int p = 0; p < kCount; ++p) sums[p] = hn::GetLane(hn::SumOfLanes(df, acc[p]));
}

// Horner: sum_p c[p] t^p, p < kTerms.
HWY_INLINE VF series(DF df, const float* HWY_RESTRICT c, VF t) {
  auto h = hn::Set(df, c[kTerms - 1]);
  for (int p = kTerms - 2; p >= 0; --p) h = hn::MulAdd(h, t, hn::Set(df, c[p]));
  return h;
}

double inverse_factorial(int p) {
  double f = 1.0;
  for (int i = 2; i <= p; ++i) f *= i;
  return 1.0 / f;
}

// For the rows' queries ru [count] (written by the caller): ralpha = fl(scale u) and rt =
// ralpha r, all zero padded to a whole vector. Returns the padded row count.
int64_t prepare_rows(const AttentionConfig& cfg, const Plan& p, int64_t count, const layout::ScratchLayout& L,
                     float* scratch) {
  const DF df;
  float* ru = scratch + L.ru;
  float* ra = scratch + L.ralpha;
  float* rt = scratch + L.rt;
  const int64_t padded = layout::round_up(count, hn::Lanes(df));
  std::fill(ru + count, ru + padded, 0.0f);
  const auto scale = hn::Set(df, cfg.scale), r = hn::Set(df, p.r);
  for (int64_t i = 0; i < padded; i += hn::Lanes(df)) {
    const auto a = hn::Mul(hn::LoadU(df, ru + i), scale);
    hn::StoreU(a, df, ra + i);
    hn::StoreU(hn::Mul(a, r), df, rt + i);
  }
  return padded;
}

// The bucket's keys are [begin, end) of the sorted arrays, plus the zero keys if it holds 0.
bool bucket_empty(const ZeroKeys& zero, int64_t b, int64_t begin, int64_t end) {
  return begin == end && !(zero.count > 0 && zero.bucket == b);
}

bool forward_sample(const AttentionConfig& cfg, const float* q, const float* k, const float* v, float* out,
                    float* saved, float* scratch) {
  const Plan p = make_plan(cfg, q, k);
  if (p.buckets == 0) return false;
  const layout::ScratchLayout L = layout::scratch_layout(cfg);
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const int64_t tq = cfg.tq, tv = cfg.tv;
  float* sx = scratch + L.sx;
  float* sv = scratch + L.sv;
  float* bstart = scratch + L.bstart;
  ZeroKeys zero;
  const int64_t nonzero_keys = sort_keys(p, k, v, tv, sx, sv, scratch + L.si, bstart, scratch + L.knzi,
                                             scratch + L.nzk, scratch + L.nzv, zero);
  // Per nonempty bucket: its centre and the coefficients (in t) of the sums against 1, v, k, v k.
  float* centre = scratch + L.bcentre;
  float* coef = scratch + L.bcoef;
  int64_t used = 0;
  for (int64_t b = 0; b < p.buckets; ++b) {
    const auto begin = static_cast<int64_t>(bstart[b]), end = static_cast<int64_t>(bstart[b + 1]);
    if (bucket_empty(zero, b, begin, end)) continue;
    double m1[kTerms + 1], mv[kTerms + 1];
    power_sums<kTerms + 1>(sx, nullptr, begin, end, m1);
    power_sums<kTerms + 1>(sx, sv, begin, end, mv);
    if (zero.count > 0 && zero.bucket == b) {
      double pw = 1.0;
      for (int t = 0; t <= kTerms; ++t, pw *= zero.x) {
        m1[t] += static_cast<double>(zero.count) * pw;
        mv[t] += zero.vsum * pw;
      }
    }
    const double c = centre_of(p, b), r = p.r;
    centre[used] = static_cast<float>(c);
    float* cb = coef + used * 4 * kTerms;
    for (int t = 0; t < kTerms; ++t) {
      const double f = inverse_factorial(t);
      cb[t] = static_cast<float>(m1[t] * f);
      cb[kTerms + t] = static_cast<float>(mv[t] * f);
      cb[2 * kTerms + t] = static_cast<float>((c * m1[t] + r * m1[t + 1]) * f);
      cb[3 * kTerms + t] = static_cast<float>((c * mv[t] + r * mv[t + 1]) * f);
    }
    ++used;
  }
  // Rows: zero queries all give the same (uniform) row, so when there are any, the nonzero rows
  // are listed (branch-free, as the keys) with their queries, and one zero row stands for the
  // rest. Self-attention (q is k) has that list from the keys already.
  float* rows = scratch + L.qnzi;
  float* ru_rows = scratch + L.ru;
  int64_t nnz = 0;
  if (q == k && tq == tv && nonzero_keys >= 0) {
    nnz = nonzero_keys;
    std::memcpy(rows, scratch + L.knzi, static_cast<size_t>(nnz) * sizeof(float));
    std::memcpy(ru_rows, scratch + L.nzk, static_cast<size_t>(nnz) * sizeof(float));
  } else {
    nnz = list_nonzero(q, nullptr, tq, rows, ru_rows, nullptr);
  }
  const bool listed = nnz < tq;
  if (listed) ru_rows[nnz] = 0.0f;  // the zero row
  const int64_t count = listed ? nnz + 1 : tq;
  const int64_t padded = prepare_rows(cfg, p, count, L, scratch);
  const float* ru = scratch + L.ru;
  const float* ra = scratch + L.ralpha;
  const float* rt = scratch + L.rt;
  float* rm = scratch + L.rm;
  float* rl = scratch + L.rl;
  float* ro = scratch + L.ro;
  float* rc = scratch + L.rc;
  float* rw = scratch + L.rw;
  const auto vscale = hn::Set(df, cfg.scale);
  const auto vkmax = hn::Set(df, p.kmax), vkmin = hn::Set(df, p.kmin);
  for (int64_t i = 0; i < padded; i += n) {
    const auto u = hn::LoadU(df, ru + i);
    const auto a = hn::LoadU(df, ra + i);
    const auto t = hn::LoadU(df, rt + i);
    // The row max as Keras rounds scores, fl(fl(u k) scale), at the largest or smallest key.
    const auto m = hn::Max(hn::Mul(hn::Mul(u, vkmax), vscale), hn::Mul(hn::Mul(u, vkmin), vscale));
    auto l = hn::Zero(df), num = hn::Zero(df), sk = hn::Zero(df), svk = hn::Zero(df);
    for (int64_t b = 0; b < used; ++b) {
      const auto e = ExpNonPositive(df, hn::MulSub(a, hn::Set(df, centre[b]), m));
      const float* cb = coef + b * 4 * kTerms;
      l = hn::MulAdd(e, series(df, cb, t), l);
      num = hn::MulAdd(e, series(df, cb + kTerms, t), num);
      sk = hn::MulAdd(e, series(df, cb + 2 * kTerms, t), sk);
      svk = hn::MulAdd(e, series(df, cb + 3 * kTerms, t), svk);
    }
    const auto inv = hn::Div(hn::Set(df, 1.0f), l);
    const auto o = hn::Mul(num, inv);
    // w = E_P[v k] - out E_P[k]: dq_i = scale dout_i w_i, dscale = sum_i dout_i u_i w_i.
    const auto w = hn::NegMulAdd(o, hn::Mul(sk, inv), hn::Mul(svk, inv));
    hn::StoreU(m, df, rm + i);
    hn::StoreU(l, df, rl + i);
    hn::StoreU(o, df, ro + i);
    hn::StoreU(hn::Mul(u, w), df, rc + i);
    hn::StoreU(w, df, rw + i);
  }
  if (!listed) {
    const auto bytes = static_cast<size_t>(tq) * sizeof(float);
    std::memcpy(out, ro, bytes);
    std::memcpy(saved, rm, bytes);
    std::memcpy(saved + tq, rl, bytes);
    std::memcpy(saved + 2 * tq, rc, bytes);
    std::memcpy(saved + 3 * tq, rw, bytes);
    return true;
  }
  std::fill(out, out + tq, ro[nnz]);
  std::fill(saved, saved + tq, rm[nnz]);
  std::fill(saved + tq, saved + 2 * tq, rl[nnz]);
  std::fill(saved + 2 * tq, saved + 3 * tq, rc[nnz]);
  std::fill(saved + 3 * tq, saved + 4 * tq, rw[nnz]);
  for (int64_t t = 0; t < nnz; ++t) {
    const auto i = static_cast<int64_t>(rows[t]);
    out[i] = ro[t];
    saved[i] = rm[t];
    saved[tq + i] = rl[t];
    saved[2 * tq + i] = rc[t];
    saved[3 * tq + i] = rw[t];
  }
  return true;
}

// Horner in double at one point: sum_p c[p] x^p, p < kTerms.
double series_at(const float* c, double x) {
  double h = c[kTerms - 1];
  for (int p = kTerms - 2; p >= 0; --p) h = h * x + c[p];
  return h;
}

bool backward_sample(const AttentionConfig& cfg, const float* q, const float* k, const float* v, const float* out,
                     const float* dout, const float* saved, float* dk, float* dv, float* scratch) {
  const Plan p = make_plan(cfg, q, k);
  if (p.buckets == 0) return false;
  const layout::ScratchLayout L = layout::scratch_layout(cfg);
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const int64_t tq = cfg.tq, tv = cfg.tv;
  float* sx = scratch + L.sx;
  float* si = scratch + L.si;
  float* bstart = scratch + L.bstart;
  ZeroKeys zero;
  sort_keys(p, k, nullptr, tv, sx, nullptr, si, bstart, scratch + L.knzi, scratch + L.nzk, nullptr, zero);
  std::memcpy(scratch + L.ru, q, static_cast<size_t>(tq) * sizeof(float));
  const int64_t padded = prepare_rows(cfg, p, tq, L, scratch);
  const float* ru = scratch + L.ru;
  const float* ra = scratch + L.ralpha;
  const float* rt = scratch + L.rt;
  // Row weights (zero on the padding): A = dout / l, B = A q, C = B out, so that
  // dv_j = sum_i P_ij dout_i = A(k_j) and dk_j = scale (v_j B(k_j) - C(k_j)).
  float* rm = scratch + L.rm;
  float* wa = scratch + L.ro;
  float* wb = scratch + L.rc;
  float* wc = scratch + L.rw;
  for (int64_t i = 0; i < padded; ++i) {
    const bool live = i < tq;
    rm[i] = live ? saved[i] : 0.0f;
    wa[i] = live ? dout[i] / saved[tq + i] : 0.0f;
    wb[i] = wa[i] * ru[i];
    wc[i] = live ? wb[i] * out[i] : 0.0f;
  }
  float* ea = scratch + L.rea;
  float* eb = scratch + L.reb;
  float* ec = scratch + L.rec;
  float* ka = scratch + L.ka;
  float* kb = scratch + L.kb;
  float* kc = scratch + L.kc;
  double zero_a = 0.0, zero_b = 0.0, zero_c = 0.0;  // the column sums of every zero key
  for (int64_t b = 0; b < p.buckets; ++b) {
    const auto begin = static_cast<int64_t>(bstart[b]), end = static_cast<int64_t>(bstart[b + 1]);
    if (bucket_empty(zero, b, begin, end)) continue;
    const auto vc = hn::Set(df, centre_of(p, b));
    for (int64_t i = 0; i < padded; i += n) {
      const auto e = ExpNonPositive(df, hn::MulSub(hn::LoadU(df, ra + i), vc, hn::LoadU(df, rm + i)));
      hn::StoreU(hn::Mul(e, hn::LoadU(df, wa + i)), df, ea + i);
      hn::StoreU(hn::Mul(e, hn::LoadU(df, wb + i)), df, eb + i);
      hn::StoreU(hn::Mul(e, hn::LoadU(df, wc + i)), df, ec + i);
    }
    double nu[3][kTerms];
    power_sums<kTerms>(rt, ea, 0, padded, nu[0]);
    power_sums<kTerms>(rt, eb, 0, padded, nu[1]);
    power_sums<kTerms>(rt, ec, 0, padded, nu[2]);
    float cf[3][kTerms];
    for (int w = 0; w < 3; ++w)
      for (int t = 0; t < kTerms; ++t) cf[w][t] = static_cast<float>(nu[w][t] * inverse_factorial(t));
    // The bucket's keys (by sorted position): lanes past its end belong to the next bucket or
    // the padding and are overwritten or ignored.
    for (int64_t j = begin; j < end; j += n) {
      const auto x = hn::LoadU(df, sx + j);
      hn::StoreU(series(df, cf[0], x), df, ka + j);
      hn::StoreU(series(df, cf[1], x), df, kb + j);
      hn::StoreU(series(df, cf[2], x), df, kc + j);
    }
    if (zero.count > 0 && zero.bucket == b) {
      zero_a = series_at(cf[0], zero.x);
      zero_b = series_at(cf[1], zero.x);
      zero_c = series_at(cf[2], zero.x);
    }
  }
  const float s = cfg.scale;
  if (p.buckets == 1) {
    if (dv != nullptr)
      for (int64_t j = 0; j < tv; ++j) dv[j] += ka[j];
    if (dk != nullptr)
      for (int64_t j = 0; j < tv; ++j) dk[j] += s * (v[j] * kb[j] - kc[j]);
    return true;
  }
  const auto nnz = static_cast<int64_t>(bstart[p.buckets]);
  for (int64_t at = 0; at < nnz; ++at) {
    const auto j = static_cast<int64_t>(si[at]);
    if (dv != nullptr) dv[j] += ka[at];
    if (dk != nullptr) dk[j] += s * (v[j] * kb[at] - kc[at]);
  }
  if (zero.count > 0) {
    const auto a0 = static_cast<float>(zero_a), b0 = static_cast<float>(zero_b), c0 = static_cast<float>(zero_c);
    for (int64_t j = 0; j < tv; ++j) {
      if (k[j] != 0.0f) continue;
      if (dv != nullptr) dv[j] += a0;
      if (dk != nullptr) dk[j] += s * (v[j] * b0 - c0);
    }
  }
  return true;
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::kernels {

HWY_EXPORT(forward_sample);
HWY_EXPORT(backward_sample);

bool attention_d1_series_forward(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                                 float* out, float* saved, float* scratch) {
  return HWY_DYNAMIC_DISPATCH(forward_sample)(cfg, q, k, v, out, saved, scratch);
}

bool attention_d1_series_backward(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                                  const float* out, const float* dout, const float* saved, float* dk, float* dv,
                                  float* scratch) {
  return HWY_DYNAMIC_DISPATCH(backward_sample)(cfg, q, k, v, out, dout, saved, dk, dv, scratch);
}

}  // namespace attn::kernels
#endif  // HWY_ONCE
