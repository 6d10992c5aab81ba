// MultiHeadAttention forward/backward. The four projections are sgemms over the
// whole batch slice (an EinsumDense over rank-3 input is a matrix product once its
// (H, d) axes are flattened). The attention core runs, head by head, in the fused kernel of
// kernels/attention.cpp (no Tq x Tv matrix: memory linear in the sequence length) on
// head-major copies of the projections. The explicit loops below, which hold each head's
// probabilities, run what the kernel does not take, an attention_mask (any (query, key)
// pattern) and returned scores (themselves (H, Tq, Tv)), and the shortest sequences, where
// they are faster. Both paths draw the same dropout mask (kernels/dropout_hash.hpp), and both
// apply Keras 3's masked softmax: a fully masked row gives zero probabilities.
#include "attn/layers/multi_head_attention.hpp"

#include <cblas.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "attn/random.hpp"
#include "kernels/attention.hpp"
#include "kernels/dropout_hash.hpp"

namespace attn::layers {

namespace {

// C[m, n] (ldc) = alpha * op(A) op(B) + beta * C, row-major.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
          float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0f, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

// out[rows, n] = x[rows, k] @ w[k, n] (+ bias[n]).
void project(const float* x, int64_t rows, int64_t k, const float* w, const float* bias, int64_t n, float* out) {
  if (bias)
    for (int64_t r = 0; r < rows; ++r) std::memcpy(out + r * n, bias, n * sizeof(float));
  gemm(false, false, rows, n, k, x, k, w, n, bias ? 1.0f : 0.0f, out, n);
}

// Backward of project(): dw += xᵀ dy, dbias += Σ rows dy, dx += dy wᵀ (each when not null).
void project_backward(const float* x, int64_t rows, int64_t k, const float* w, int64_t n, const float* dy, float* dw,
                      float* dbias, float* dx) {
  if (rows == 0) return;
  if (dw) gemm(true, false, k, n, rows, x, k, dy, n, 1.0f, dw, n);
  if (dbias)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < n; ++j) dbias[j] += dy[r * n + j];
  if (dx) gemm(false, true, rows, k, n, dy, n, w, n, 1.0f, dx, k);
}

// (row, head, e) -> (head, row, e), for rows = batch x steps: each head's rows contiguous, as
// the kernel reads them.
void to_heads(const float* src, int64_t rows, int64_t heads, int64_t e, float* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < heads; ++h)
      std::memcpy(dst + (h * rows + r) * e, src + (r * heads + h) * e, e * sizeof(float));
}

// (head, row, e) -> (row, head, e).
void from_heads(const float* src, int64_t rows, int64_t heads, int64_t e, float* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < heads; ++h)
      std::memcpy(dst + (r * heads + h) * e, src + (h * rows + r) * e, e * sizeof(float));
}

int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

// Floats holding one byte per query and per key of a batch.
int64_t mask_floats(int64_t batch, int64_t tq, int64_t tv) { return round16((batch * (tq + tv) + 3) / 4); }

// The kernel's masks for the merged Keras mask (_compute_attention_mask: query mask, and value
// and key masks, ANDed, plus causal). A key is kept where every key-side mask keeps it. A query
// row is kept where its mask keeps it and at least one key is left to it: Keras 3's Softmax
// zeroes a fully masked row, which is what the kernel does with a masked query (output and
// gradient 0), while its key mask alone would make such a row uniform.
void kernel_masks(attn::kernels::AttentionConfig& cfg, const float* qm, const float* vm, const float* km,
                  uint8_t* bytes) {
  const int64_t batch = cfg.batch, tq = cfg.tq, tv = cfg.tv;
  uint8_t* qb = bytes;
  uint8_t* kb = bytes + batch * tq;
  bool any_row_masked = false;
  for (int64_t b = 0; b < batch; ++b) {
    int64_t first_kept = vm || km ? tv : 0;
    for (int64_t j = tv; j-- > 0;) {
      const bool keep = (!vm || vm[b * tv + j] != 0.0f) && (!km || km[b * tv + j] != 0.0f);
      kb[b * tv + j] = keep;
      if (keep) first_kept = j;
    }
    for (int64_t i = 0; i < tq; ++i) {
      const bool keys_left = cfg.causal ? first_kept <= i && first_kept < tv : first_kept < tv;
      qb[b * tq + i] = (!qm || qm[b * tq + i] != 0.0f) && keys_left;
      any_row_masked |= qb[b * tq + i] == 0;
    }
  }
  cfg.query_mask = any_row_masked ? qb : nullptr;
  cfg.value_mask = vm || km ? kb : nullptr;
}

// The fused path's scratch: gradients of the head-major projections and context, one tensor
// in (row, head, feature) order, the kernel's masks and the kernel's own scratch.
struct FusedScratch {
  float *dq, *dk, *dv, *dc, *staged, *kernel;
  uint8_t* masks;
};
FusedScratch carve_fused(float* s, int64_t batch, int64_t q, int64_t k, int64_t v, int64_t c, int64_t tq, int64_t tv) {
  FusedScratch f;
  f.dq = s;
  f.dk = f.dq + batch * q;
  f.dv = f.dk + batch * k;
  f.dc = f.dv + batch * v;
  f.staged = s + round16(batch * (q + k + v + c));
  f.masks = reinterpret_cast<uint8_t*>(f.staged + round16(batch * std::max({q, k, v, c})));
  f.kernel = f.staged + round16(batch * std::max({q, k, v, c})) + mask_floats(batch, tq, tv);
  return f;
}

// The kernel's configuration for one call of either pass, heads aside (each head draws dropout
// with its own seed) and masks aside. The scale is 1: the saved query is already scaled, as
// Keras scales it.
template <class Context>
attn::kernels::AttentionConfig kernel_config(int64_t batch, int64_t tq, int64_t tv, int64_t dk, int64_t dv,
                                             float dropout, const Context& ctx) {
  attn::kernels::AttentionConfig cfg;
  cfg.batch = batch;
  cfg.tq = tq;
  cfg.tv = tv;
  cfg.d = dk;
  cfg.dv = dv;
  cfg.causal = ctx.call && ctx.call->use_causal_mask;
  if (ctx.training && dropout > 0.0f) {
    cfg.dropout = dropout;
    cfg.sample_offset = ctx.sample_offset;
  }
  return cfg;
}

// The four projections' weights, in Keras' creation order (query, key, value and output
// kernels, each followed by its bias when the layer has them), with their gradient slots (null
// where no parameter gradient is wanted).
enum Projection { kQuery, kKey, kValue, kOutput };
struct ProjectionWeights {
  const float* kernel[4] = {};
  const float* bias[4] = {};
  float* kernel_grad[4] = {};
  float* bias_grad[4] = {};
};
ProjectionWeights projection_weights(const std::vector<attn::Weight>& weights, bool use_bias, float* param_grads) {
  ProjectionWeights p;
  size_t w = 0;
  for (int k = kQuery; k <= kOutput; ++k) {
    p.kernel[k] = weights[w].value.data();
    p.kernel_grad[k] = param_grads ? param_grads + weights[w].offset : nullptr;
    ++w;
    if (!use_bias) continue;
    p.bias[k] = weights[w].value.data();
    p.bias_grad[k] = param_grads ? param_grads + weights[w].offset : nullptr;
    ++w;
  }
  return p;
}

// A backward call's query, key and value inputs and their gradients (the key is the value when
// none is given, and its gradient then adds into the value's).
struct Operands {
  const float *q, *k, *v;
  float *dq, *dk, *dv;
};
Operands operands(const attn::BackwardContext& ctx) {
  const bool has_key = ctx.inputs.size() > 2;
  const float* v = ctx.inputs[1];
  float* dv = ctx.input_grads[1];
  return {ctx.inputs[0], has_key ? ctx.inputs[2] : v, v, ctx.input_grads[0], has_key ? ctx.input_grads[2] : dv, dv};
}

// Keras stores float arguments as the Python float the user typed; the option is
// a float32, so write the shortest decimal that reads back as that float (0.1, not
// 0.10000000149011612).
double python_float(float f) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), f);
  if (ec != std::errc()) return static_cast<double>(f);
  double d = 0.0;
  std::from_chars(buf, end, d);
  return d;
}

bool known_initializer(const std::string& name) {
  return name == "glorot_uniform" || name == "zeros" || name == "ones";
}

}  // namespace

MultiHeadAttentionLayer::MultiHeadAttentionLayer(MultiHeadAttentionOptions options)
    : Layer("multi_head_attention", options.name), options_(std::move(options)) {
  if (options_.num_heads <= 0) fail("num_heads must be a positive integer, got " + std::to_string(options_.num_heads));
  if (options_.key_dim <= 0) fail("key_dim must be a positive integer, got " + std::to_string(options_.key_dim));
  if (options_.value_dim && *options_.value_dim <= 0)
    fail("value_dim must be a positive integer, got " + std::to_string(*options_.value_dim));
  if (options_.output_shape && *options_.output_shape <= 0)
    fail("output_shape must be a positive integer, got " + std::to_string(*options_.output_shape));
  if (!(options_.dropout >= 0.0f && options_.dropout < 1.0f))
    fail("dropout must be in [0, 1), got " + std::to_string(options_.dropout));
  for (const std::string* init : {&options_.kernel_initializer, &options_.bias_initializer})
    if (!known_initializer(*init))
      fail("unsupported initializer '" + *init + "' (glorot_uniform, zeros or ones)");
}

void MultiHeadAttentionLayer::take_input_masks(const std::vector<Node>& inputs, CallOptions& options) const {
  if (inputs.size() < 2) return;
  if (!options.query_mask) options.query_mask = inputs[0]->keras_mask;
  if (!options.value_mask) options.value_mask = inputs[1]->keras_mask;
  if (inputs.size() == 3 && !options.key_mask) options.key_mask = inputs[2]->keras_mask;
}

Node MultiHeadAttentionLayer::compute_mask(const std::vector<Node>& inputs, const CallOptions&) const {
  return inputs.empty() ? nullptr : inputs[0]->keras_mask;
}

std::vector<Shape> MultiHeadAttentionLayer::compute_build(const std::vector<Shape>& in, const CallOptions& call) {
  if (in.size() != 2 && in.size() != 3)
    fail("expects a list [query, value] or [query, value, key], got " + std::to_string(in.size()) + " inputs");
  for (const Shape& s : in)
    if (s.size() != 2)
      fail("only rank-3 inputs (batch, steps, features) are supported, got " + batch_shape_to_string(s));
  const Shape& q = in[0];
  const Shape& v = in[1];
  const Shape& k = in.size() == 3 ? in[2] : in[1];
  // multi_head_attention.py build(): value and key agree on every axis but the last.
  if (k[0] != v[0])
    fail("all dimensions of value and key, except the last one, must be equal (" + std::to_string(v[0]) + " vs " +
         std::to_string(k[0]) + " steps)");
  if (call.query_mask && call.query_mask->shape != Shape{q[0]})
    fail("query_mask must have shape (batch, " + std::to_string(q[0]) + ")");
  if (call.value_mask && call.value_mask->shape != Shape{v[0]})
    fail("value_mask must have shape (batch, " + std::to_string(v[0]) + ")");
  if (call.mask) fail("takes query_mask, value_mask, key_mask and attention_mask, not mask");
  if (call.key_mask && call.key_mask->shape != Shape{k[0]})
    fail("key_mask must have shape (batch, " + std::to_string(k[0]) + ")");
  if (call.attention_mask && call.attention_mask->shape != Shape{q[0], v[0]})
    fail("attention_mask must have shape (batch, " + std::to_string(q[0]) + ", " + std::to_string(v[0]) + ")");
  Dims d;
  d.tq = q[0];
  d.tv = v[0];
  d.fq = q[1];
  d.fv = v[1];
  d.fk = k[1];
  d.h = options_.num_heads;
  d.dk = options_.key_dim;
  d.dv = value_dim();
  d.dout = options_.output_shape.value_or(q[1]);
  if (!built_) {
    dims_ = d;
    // Keras' creation order: the query, key and value EinsumDenses, then the output one.
    const std::string& ki = options_.kernel_initializer;
    const std::string& bi = options_.bias_initializer;
    add_weight("query/kernel", {d.fq, d.h, d.dk}, ki);
    if (options_.use_bias) add_weight("query/bias", {d.h, d.dk}, bi);
    add_weight("key/kernel", {d.fk, d.h, d.dk}, ki);
    if (options_.use_bias) add_weight("key/bias", {d.h, d.dk}, bi);
    add_weight("value/kernel", {d.fv, d.h, d.dv}, ki);
    if (options_.use_bias) add_weight("value/bias", {d.h, d.dv}, bi);
    add_weight("attention_output/kernel", {d.h, d.dv, d.dout}, ki);
    if (options_.use_bias) add_weight("attention_output/bias", {d.dout}, bi);
  }
  std::vector<Shape> out = {{d.tq, d.dout}};
  // Keras' compute_output_spec says (H, Tq, Tq); the tensor it returns is (H, Tq, Tv).
  if (call.return_attention_scores) out.push_back({d.h, d.tq, d.tv});
  return out;
}

bool MultiHeadAttentionLayer::fused(const CallOptions& call) const {
  // Up to 32 scores per head (T = 4 and 4 as in the MNIST fixtures) the loops are faster (53 vs
  // 68 us forward + backward for 8 samples of 4 heads at T = 4, bench_mha) and their quadratic
  // memory is a few floats; from T = 8 the kernel is.
  constexpr int64_t kLoopsMaxScores = 32;
  return !call.attention_mask && !call.return_attention_scores && dims_.tq * dims_.tv > kLoopsMaxScores;
}

int64_t MultiHeadAttentionLayer::fused_stats_floats() const { return 4 * dims_.tq; }  // the most the kernel keeps

int64_t MultiHeadAttentionLayer::fused_kernel_scratch() const {
  // Without masks or dropout a head of key_dim = value_dim = 1 takes the kernel's d = 1 paths,
  // whose scratch is the larger.
  kernels::AttentionConfig cfg;
  cfg.tq = dims_.tq;
  cfg.tv = dims_.tv;
  cfg.d = dims_.dk;
  cfg.dv = dims_.dv;
  return round16(kernels::attention_scratch_floats(cfg));
}

int64_t MultiHeadAttentionLayer::saved_floats_per_sample(const CallOptions& call) const {
  // Fused, per head: the projections and the context head-major, and the kernel's row
  // statistics; the loops keep the probabilities instead.
  if (fused(call)) return q_size() + k_size() + v_size() + c_size() + dims_.h * fused_stats_floats();
  return q_size() + k_size() + v_size() + p_size() + c_size();
}

int64_t MultiHeadAttentionLayer::scratch_floats(int64_t batch, const CallOptions& call) const {
  // Backward: gradients of the projected Q, K, V and of the context; fused, also one tensor in
  // (row, head, feature) order, the masks and the kernel's scratch; else one row of dP.
  const int64_t grads = batch * (q_size() + k_size() + v_size() + c_size());
  if (!fused(call)) return grads + dims_.tv;
  const int64_t staged = batch * std::max({q_size(), k_size(), v_size(), c_size()});
  return round16(grads) + round16(staged) + mask_floats(batch, dims_.tq, dims_.tv) + fused_kernel_scratch();
}

float MultiHeadAttentionLayer::keep_factor(uint64_t seed, int64_t head, int64_t sample, int64_t i, int64_t j) const {
  return kernels::dropout_factor(options_.dropout, hash_combine(seed, static_cast<uint64_t>(head)), sample, i, j);
}

void MultiHeadAttentionLayer::forward(ForwardContext& ctx) {
  const Dims& d = dims_;
  const int64_t batch = ctx.batch;
  if (batch == 0) return;
  if (fused(ctx.call ? *ctx.call : CallOptions{})) return forward_fused(ctx);
  const bool has_key = ctx.inputs.size() > 2;
  const float* xq = ctx.inputs[0];
  const float* xv = ctx.inputs[1];
  const float* xk = has_key ? ctx.inputs[2] : xv;
  float* qp = ctx.saved;
  float* kp = qp + batch * q_size();
  float* vp = kp + batch * k_size();
  float* probs = vp + batch * v_size();
  float* context = probs + batch * p_size();

  const ProjectionWeights pw = projection_weights(weights_, options_.use_bias, nullptr);

  const int64_t hdk = d.h * d.dk, hdv = d.h * d.dv;
  project(xq, batch * d.tq, d.fq, pw.kernel[kQuery], pw.bias[kQuery], hdk, qp);
  project(xk, batch * d.tv, d.fk, pw.kernel[kKey], pw.bias[kKey], hdk, kp);
  project(xv, batch * d.tv, d.fv, pw.kernel[kValue], pw.bias[kValue], hdv, vp);
  // Keras scales the projected query (after its bias), not the logits:
  // query = multiply(query, 1/sqrt(key_dim)) in _compute_attention.
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.dk)));
  for (int64_t i = 0; i < batch * q_size(); ++i) qp[i] *= scale;

  const bool causal = ctx.call && ctx.call->use_causal_mask;
  const bool drop = ctx.training && options_.dropout > 0.0f;
  const float* qm = ctx.query_mask;
  const float* vm = ctx.value_mask;
  // _compute_attention_mask: the key's mask counts only for a key that is not the value.
  const float* km = has_key && xk != xv ? ctx.key_mask : nullptr;
  const float* am = ctx.attention_mask;
  for (int64_t b = 0; b < batch; ++b) {
    const float* qb = qp + b * q_size();
    const float* kb = kp + b * k_size();
    const float* vb = vp + b * v_size();
    float* cb = context + b * c_size();
    std::memset(cb, 0, c_size() * sizeof(float));
    for (int64_t h = 0; h < d.h; ++h)
      for (int64_t i = 0; i < d.tq; ++i) {
        float* p = probs + b * p_size() + (h * d.tq + i) * d.tv;
        const bool row_on = !qm || qm[b * d.tq + i] != 0.0f;
        // Masked softmax as keras/src/layers/activations/softmax.py: masked logits
        // sink to -1e9 and the output is then multiplied by the mask, so masked
        // entries are exactly 0 and a fully masked row is all zeros.
        // Every mask given is ANDed, as _compute_attention_mask merges them.
        auto on = [&](int64_t j) {
          return row_on && (!vm || vm[b * d.tv + j] != 0.0f) && (!km || km[b * d.tv + j] != 0.0f) &&
                 (!am || am[(b * d.tq + i) * d.tv + j] != 0.0f) && (!causal || j <= i);
        };
        float mx = -INFINITY;
        for (int64_t j = 0; j < d.tv; ++j) {
          if (!on(j)) continue;
          const float* qr = qb + (i * d.h + h) * d.dk;
          const float* kr = kb + (j * d.h + h) * d.dk;
          float s = 0.0f;
          for (int64_t e = 0; e < d.dk; ++e) s += qr[e] * kr[e];
          p[j] = s;
          mx = std::max(mx, s);
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < d.tv; ++j) {
          if (!on(j)) {
            p[j] = 0.0f;
            continue;
          }
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        if (sum > 0.0f)
          for (int64_t j = 0; j < d.tv; ++j) p[j] /= sum;
        // context[i, h, :] = Σ_j dropout(p)[j] · V[j, h, :]
        float* cr = cb + (i * d.h + h) * d.dv;
        for (int64_t j = 0; j < d.tv; ++j) {
          float pj = p[j];
          if (pj == 0.0f) continue;
          if (drop) pj *= keep_factor(ctx.seed, h, ctx.sample_offset + b, i, j);
          const float* vr = vb + (j * d.h + h) * d.dv;
          for (int64_t e = 0; e < d.dv; ++e) cr[e] += pj * vr[e];
        }
      }
  }
  // Returned scores are the probabilities before dropout (_compute_attention).
  if (ctx.outputs.size() > 1 && ctx.outputs[1])
    std::memcpy(ctx.outputs[1], probs, batch * p_size() * sizeof(float));
  project(context, batch * d.tq, hdv, pw.kernel[kOutput], pw.bias[kOutput], d.dout, ctx.outputs[0]);
}

void MultiHeadAttentionLayer::backward(BackwardContext& ctx) {
  const Dims& d = dims_;
  const int64_t batch = ctx.batch;
  if (batch == 0) return;
  const float* dout = ctx.output_grads[0];
  const float* dscores = ctx.output_grads.size() > 1 ? ctx.output_grads[1] : nullptr;
  if (!dout && !dscores) return;
  const auto [xq, xk, xv, dxq, dxk, dxv] = operands(ctx);
  const bool want_params = ctx.param_grads && trainable_;
  if (!dxq && !dxv && !dxk && !want_params) return;
  if (fused(ctx.call ? *ctx.call : CallOptions{})) return backward_fused(ctx);

  const float* qp = ctx.saved;
  const float* kp = qp + batch * q_size();
  const float* vp = kp + batch * k_size();
  const float* probs = vp + batch * v_size();
  const float* context = probs + batch * p_size();
  float* dq = ctx.scratch;
  float* dk = dq + batch * q_size();
  float* dv = dk + batch * k_size();
  float* dc = dv + batch * v_size();
  float* dp = dc + batch * c_size();  // one row of dP

  const ProjectionWeights pw = projection_weights(weights_, options_.use_bias, want_params ? ctx.param_grads : nullptr);

  const int64_t hdk = d.h * d.dk, hdv = d.h * d.dv;
  // Output projection.
  if (dout) {
    project_backward(context, batch * d.tq, hdv, pw.kernel[kOutput], d.dout, dout, pw.kernel_grad[kOutput],
                     pw.bias_grad[kOutput], nullptr);
    gemm(false, true, batch * d.tq, hdv, d.dout, dout, d.dout, pw.kernel[kOutput], d.dout, 0.0f, dc, hdv);
  } else {
    std::memset(dc, 0, batch * c_size() * sizeof(float));
  }
  std::memset(dq, 0, batch * (q_size() + k_size() + v_size()) * sizeof(float));

  const bool drop = ctx.training && options_.dropout > 0.0f;
  for (int64_t b = 0; b < batch; ++b) {
    const float* qb = qp + b * q_size();
    const float* kb = kp + b * k_size();
    const float* vb = vp + b * v_size();
    const float* dcb = dc + b * c_size();
    float* dqb = dq + b * q_size();
    float* dkb = dk + b * k_size();
    float* dvb = dv + b * v_size();
    for (int64_t h = 0; h < d.h; ++h)
      for (int64_t i = 0; i < d.tq; ++i) {
        const int64_t row = (h * d.tq + i) * d.tv;
        const float* p = probs + b * p_size() + row;
        const float* dsr = dscores ? dscores + b * p_size() + row : nullptr;
        const float* dcr = dcb + (i * d.h + h) * d.dv;
        // Through context = dropout(P) V: dP and dV.
        float dot = 0.0f;
        for (int64_t j = 0; j < d.tv; ++j) {
          float g = 0.0f;
          if (p[j] != 0.0f) {
            const float keep = drop ? keep_factor(ctx.seed, h, ctx.sample_offset + b, i, j) : 1.0f;
            const float* vr = vb + (j * d.h + h) * d.dv;
            float* dvr = dvb + (j * d.h + h) * d.dv;
            const float pk = p[j] * keep;
            for (int64_t e = 0; e < d.dv; ++e) {
              g += dcr[e] * vr[e];
              dvr[e] += pk * dcr[e];
            }
            g *= keep;
            if (dsr) g += dsr[j];
          }
          dp[j] = g;
          dot += p[j] * g;
        }
        // Softmax backward; masked entries have p = 0 and so no gradient.
        const float* qr = qb + (i * d.h + h) * d.dk;
        float* dqr = dqb + (i * d.h + h) * d.dk;
        for (int64_t j = 0; j < d.tv; ++j) {
          if (p[j] == 0.0f) continue;
          const float ds = p[j] * (dp[j] - dot);
          const float* kr = kb + (j * d.h + h) * d.dk;
          float* dkr = dkb + (j * d.h + h) * d.dk;
          for (int64_t e = 0; e < d.dk; ++e) {
            dqr[e] += ds * kr[e];
            dkr[e] += ds * qr[e];
          }
        }
      }
  }
  // The saved Q is already scaled, so d(projected Q) = scale · d(scaled Q).
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.dk)));
  for (int64_t i = 0; i < batch * q_size(); ++i) dq[i] *= scale;
  project_backward(xq, batch * d.tq, d.fq, pw.kernel[kQuery], hdk, dq, pw.kernel_grad[kQuery], pw.bias_grad[kQuery], dxq);
  project_backward(xk, batch * d.tv, d.fk, pw.kernel[kKey], hdk, dk, pw.kernel_grad[kKey], pw.bias_grad[kKey], dxk);
  project_backward(xv, batch * d.tv, d.fv, pw.kernel[kValue], hdv, dv, pw.kernel_grad[kValue], pw.bias_grad[kValue], dxv);
}

void MultiHeadAttentionLayer::forward_fused(ForwardContext& ctx) {
  const Dims& d = dims_;
  const int64_t batch = ctx.batch;
  const bool has_key = ctx.inputs.size() > 2;
  const float* xq = ctx.inputs[0];
  const float* xv = ctx.inputs[1];
  const float* xk = has_key ? ctx.inputs[2] : xv;
  const int64_t rq = batch * d.tq, rv = batch * d.tv;  // rows of the projections
  float* qh = ctx.saved;
  float* kh = qh + batch * q_size();
  float* vh = kh + batch * k_size();
  float* ch = vh + batch * v_size();
  float* stats = ch + batch * c_size();
  const FusedScratch sc = carve_fused(ctx.scratch, batch, q_size(), k_size(), v_size(), c_size(), d.tq, d.tv);
  const ProjectionWeights pw = projection_weights(weights_, options_.use_bias, nullptr);
  const int64_t hdk = d.h * d.dk, hdv = d.h * d.dv;
  project(xq, rq, d.fq, pw.kernel[kQuery], pw.bias[kQuery], hdk, sc.staged);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.dk)));  // as the loops
  for (int64_t i = 0; i < rq * hdk; ++i) sc.staged[i] *= scale;
  to_heads(sc.staged, rq, d.h, d.dk, qh);
  project(xk, rv, d.fk, pw.kernel[kKey], pw.bias[kKey], hdk, sc.staged);
  to_heads(sc.staged, rv, d.h, d.dk, kh);
  project(xv, rv, d.fv, pw.kernel[kValue], pw.bias[kValue], hdv, sc.staged);
  to_heads(sc.staged, rv, d.h, d.dv, vh);
  const float* km = has_key && xk != xv ? ctx.key_mask : nullptr;
  kernels::AttentionConfig cfg = kernel_config(batch, d.tq, d.tv, d.dk, d.dv, options_.dropout, ctx);
  if (ctx.query_mask || ctx.value_mask || km) kernel_masks(cfg, ctx.query_mask, ctx.value_mask, km, sc.masks);
  for (int64_t h = 0; h < d.h; ++h) {
    cfg.dropout_seed = hash_combine(ctx.seed, static_cast<uint64_t>(h));
    kernels::attention_forward(cfg, qh + h * rq * d.dk, kh + h * rv * d.dk, vh + h * rv * d.dv, ch + h * rq * d.dv,
                               stats + h * batch * fused_stats_floats(), nullptr, sc.kernel);
  }
  from_heads(ch, rq, d.h, d.dv, sc.staged);
  project(sc.staged, rq, hdv, pw.kernel[kOutput], pw.bias[kOutput], d.dout, ctx.outputs[0]);
}

void MultiHeadAttentionLayer::backward_fused(BackwardContext& ctx) {
  const Dims& d = dims_;
  const int64_t batch = ctx.batch;
  const float* dout = ctx.output_grads[0];
  const auto [xq, xk, xv, dxq, dxk, dxv] = operands(ctx);
  const bool want_params = ctx.param_grads && trainable_;
  const int64_t rq = batch * d.tq, rv = batch * d.tv;
  const float* qh = ctx.saved;
  const float* kh = qh + batch * q_size();
  const float* vh = kh + batch * k_size();
  const float* ch = vh + batch * v_size();
  const float* stats = ch + batch * c_size();
  const FusedScratch sc = carve_fused(ctx.scratch, batch, q_size(), k_size(), v_size(), c_size(), d.tq, d.tv);
  const ProjectionWeights pw = projection_weights(weights_, options_.use_bias, want_params ? ctx.param_grads : nullptr);
  const int64_t hdk = d.h * d.dk, hdv = d.h * d.dv;
  // Output projection, then d(context) head-major.
  from_heads(ch, rq, d.h, d.dv, sc.staged);
  project_backward(sc.staged, rq, hdv, pw.kernel[kOutput], d.dout, dout, pw.kernel_grad[kOutput], pw.bias_grad[kOutput],
                   nullptr);
  gemm(false, true, rq, hdv, d.dout, dout, d.dout, pw.kernel[kOutput], d.dout, 0.0f, sc.staged, hdv);
  to_heads(sc.staged, rq, d.h, d.dv, sc.dc);
  std::memset(sc.dq, 0, batch * (q_size() + k_size() + v_size()) * sizeof(float));
  const float* km = xk != xv ? ctx.key_mask : nullptr;
  kernels::AttentionConfig cfg = kernel_config(batch, d.tq, d.tv, d.dk, d.dv, options_.dropout, ctx);
  if (ctx.query_mask || ctx.value_mask || km) kernel_masks(cfg, ctx.query_mask, ctx.value_mask, km, sc.masks);
  for (int64_t h = 0; h < d.h; ++h) {
    cfg.dropout_seed = hash_combine(ctx.seed, static_cast<uint64_t>(h));
    kernels::attention_backward(cfg, qh + h * rq * d.dk, kh + h * rv * d.dk, vh + h * rv * d.dv, ch + h * rq * d.dv,
                                sc.dc + h * rq * d.dv, stats + h * batch * fused_stats_floats(), sc.dq + h * rq * d.dk,
                                sc.dk + h * rv * d.dk, sc.dv + h * rv * d.dv, nullptr, nullptr, sc.kernel);
  }
  // The saved Q is already scaled, so d(projected Q) = scale · d(scaled Q).
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.dk)));
  for (int64_t i = 0; i < rq * hdk; ++i) sc.dq[i] *= scale;
  from_heads(sc.dq, rq, d.h, d.dk, sc.staged);
  project_backward(xq, rq, d.fq, pw.kernel[kQuery], hdk, sc.staged, pw.kernel_grad[kQuery], pw.bias_grad[kQuery], dxq);
  from_heads(sc.dk, rv, d.h, d.dk, sc.staged);
  project_backward(xk, rv, d.fk, pw.kernel[kKey], hdk, sc.staged, pw.kernel_grad[kKey], pw.bias_grad[kKey], dxk);
  from_heads(sc.dv, rv, d.h, d.dv, sc.staged);
  project_backward(xv, rv, d.fv, pw.kernel[kValue], hdv, sc.staged, pw.kernel_grad[kValue], pw.bias_grad[kValue], dxv);
}

nlohmann::json MultiHeadAttentionLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["num_heads"] = options_.num_heads;
  c["key_dim"] = options_.key_dim;
  c["value_dim"] = value_dim();  // Keras stores the resolved value (value_dim or key_dim)
  c["dropout"] = python_float(options_.dropout);
  c["use_bias"] = options_.use_bias;
  // Keras keeps output_shape as the tuple it normalised an int to, or None.
  c["output_shape"] = options_.output_shape ? nlohmann::json::array({*options_.output_shape}) : nlohmann::json();
  // _build_attention() replaces None with (1,) for rank-3 inputs, so a built layer
  // (every saved one) reports the resolved axes.
  c["attention_axes"] = built_ ? nlohmann::json::array({1}) : nlohmann::json();
  c["kernel_initializer"] = initializer_config(options_.kernel_initializer);
  c["bias_initializer"] = initializer_config(options_.bias_initializer);
  c["kernel_regularizer"] = nullptr;
  c["bias_regularizer"] = nullptr;
  c["activity_regularizer"] = nullptr;
  c["kernel_constraint"] = nullptr;
  c["bias_constraint"] = nullptr;
  c["seed"] = options_.seed ? nlohmann::json(*options_.seed) : nlohmann::json();
  return c;
}

}  // namespace attn::layers
