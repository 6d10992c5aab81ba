// MultiHeadAttention forward/backward. The four projections are sgemms over the
// whole batch slice (an EinsumDense over rank-3 input is a matrix product once its
// (H, d) axes are flattened); the per-head attention core is plain loops, since the
// sequence lengths this library targets are short (T = 2..16 in the MNIST models).
// Saved memory holds, per slice section by section: scaled Q, K, V, the
// probabilities before dropout and the context, so backward recomputes nothing
// but the dropout mask (a counter hash, as the Dropout layer draws it).
#include "attn/layers/multi_head_attention.hpp"

#include <cblas.h>

#include <charconv>
#include <cmath>
#include <cstring>

#include "attn/random.hpp"

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

nlohmann::json initializer_config(const std::string& name) {
  std::string cls = name == "glorot_uniform" ? "GlorotUniform" : name == "zeros" ? "Zeros" : "Ones";
  nlohmann::json cfg = nlohmann::json::object();
  if (cls == "GlorotUniform") cfg["seed"] = nullptr;
  return {{"module", "keras.initializers"}, {"class_name", cls}, {"config", cfg}, {"registered_name", nullptr}};
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

std::vector<Shape> MultiHeadAttentionLayer::compute_build(const std::vector<Shape>& in, const CallOptions& call) {
  if (in.size() != 2 && in.size() != 3)
    fail("expects a list [query, value] or [query, value, key], got " + std::to_string(in.size()) + " inputs");
  for (const Shape& s : in)
    if (s.size() != 2)
      fail("only rank-3 inputs (batch, steps, features) are supported, got (None, " + shape_to_string(s).substr(1));
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

int64_t MultiHeadAttentionLayer::saved_floats_per_sample(const CallOptions&) const {
  return q_size() + k_size() + v_size() + p_size() + c_size();
}

int64_t MultiHeadAttentionLayer::scratch_floats(int64_t batch, const CallOptions&) const {
  // Backward: gradients of the projected Q, K, V and of the context, plus one row of dP.
  return batch * (q_size() + k_size() + v_size() + c_size()) + dims_.tv;
}

float MultiHeadAttentionLayer::keep_factor(uint64_t seed, int64_t sample, int64_t position) const {
  float u = hash_uniform(hash_combine(seed, static_cast<uint64_t>(sample), static_cast<uint64_t>(position)));
  return u < options_.dropout ? 0.0f : 1.0f / (1.0f - options_.dropout);
}

void MultiHeadAttentionLayer::forward(ForwardContext& ctx) {
  const Dims& d = dims_;
  const int64_t batch = ctx.batch;
  if (batch == 0) return;
  const bool has_key = ctx.inputs.size() > 2;
  const float* xq = ctx.inputs[0];
  const float* xv = ctx.inputs[1];
  const float* xk = has_key ? ctx.inputs[2] : xv;
  float* qp = ctx.saved;
  float* kp = qp + batch * q_size();
  float* vp = kp + batch * k_size();
  float* probs = vp + batch * v_size();
  float* context = probs + batch * p_size();

  int w = 0;
  auto next = [&]() -> const float* { return weights_[w++].value.data(); };
  auto next_bias = [&]() -> const float* { return options_.use_bias ? next() : nullptr; };
  const float* wq = next();
  const float* bq = next_bias();
  const float* wk = next();
  const float* bk = next_bias();
  const float* wv = next();
  const float* bv = next_bias();
  const float* wo = next();
  const float* bo = next_bias();

  const int64_t hdk = d.h * d.dk, hdv = d.h * d.dv;
  project(xq, batch * d.tq, d.fq, wq, bq, hdk, qp);
  project(xk, batch * d.tv, d.fk, wk, bk, hdk, kp);
  project(xv, batch * d.tv, d.fv, wv, bv, hdv, vp);
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
          if (drop) pj *= keep_factor(ctx.seed, ctx.sample_offset + b, (h * d.tq + i) * d.tv + j);
          const float* vr = vb + (j * d.h + h) * d.dv;
          for (int64_t e = 0; e < d.dv; ++e) cr[e] += pj * vr[e];
        }
      }
  }
  // Returned scores are the probabilities before dropout (_compute_attention).
  if (ctx.outputs.size() > 1 && ctx.outputs[1])
    std::memcpy(ctx.outputs[1], probs, batch * p_size() * sizeof(float));
  project(context, batch * d.tq, hdv, wo, bo, d.dout, ctx.outputs[0]);
}

void MultiHeadAttentionLayer::backward(BackwardContext& ctx) {
  const Dims& d = dims_;
  const int64_t batch = ctx.batch;
  if (batch == 0) return;
  const float* dout = ctx.output_grads[0];
  const float* dscores = ctx.output_grads.size() > 1 ? ctx.output_grads[1] : nullptr;
  if (!dout && !dscores) return;
  const bool has_key = ctx.inputs.size() > 2;
  const float* xq = ctx.inputs[0];
  const float* xv = ctx.inputs[1];
  const float* xk = has_key ? ctx.inputs[2] : xv;
  float* dxq = ctx.input_grads[0];
  float* dxv = ctx.input_grads[1];
  float* dxk = has_key ? ctx.input_grads[2] : dxv;  // the key is the value when none is given
  const bool want_params = ctx.param_grads && trainable_;
  if (!dxq && !dxv && !dxk && !want_params) return;

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

  // Weight values and gradient slots, in creation order.
  struct Slot {
    const float* value = nullptr;
    float* grad = nullptr;
  };
  int w = 0;
  auto next = [&]() -> Slot {
    const Weight& wt = weights_[w++];
    return {wt.value.data(), want_params ? ctx.param_grads + wt.offset : nullptr};
  };
  auto next_bias = [&]() -> Slot { return options_.use_bias ? next() : Slot{}; };
  const Slot wq = next(), bq = next_bias(), wk = next(), bk = next_bias(), wv = next(), bv = next_bias(),
             wo = next(), bo = next_bias();

  const int64_t hdk = d.h * d.dk, hdv = d.h * d.dv;
  // Output projection.
  if (dout) {
    project_backward(context, batch * d.tq, hdv, wo.value, d.dout, dout, wo.grad, bo.grad, nullptr);
    gemm(false, true, batch * d.tq, hdv, d.dout, dout, d.dout, wo.value, d.dout, 0.0f, dc, hdv);
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
            const float keep = drop ? keep_factor(ctx.seed, ctx.sample_offset + b, row + j) : 1.0f;
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
  project_backward(xq, batch * d.tq, d.fq, wq.value, hdk, dq, wq.grad, bq.grad, dxq);
  project_backward(xk, batch * d.tv, d.fk, wk.value, hdk, dk, wk.grad, bk.grad, dxk);
  project_backward(xv, batch * d.tv, d.fv, wv.value, hdv, dv, wv.grad, bv.grad, dxv);
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
