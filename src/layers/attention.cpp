// Attention layer: shape checks, weights and masks around the fused kernels in
// src/kernels/attention.cpp.
#include "attn/layers/attention.hpp"

#include "kernels/attention.hpp"

namespace attn::layers {

namespace {
kernels::AttentionConfig make_config(int64_t batch, int64_t tq, int64_t tv, int64_t d, int64_t dv, bool concat,
                                     bool causal, bool masks) {
  kernels::AttentionConfig cfg;
  cfg.batch = batch;
  cfg.tq = tq;
  cfg.tv = tv;
  cfg.d = d;
  cfg.dv = dv;
  cfg.mode = concat ? kernels::ScoreMode::kConcat : kernels::ScoreMode::kDot;
  cfg.causal = causal;
  (void)masks;
  return cfg;
}
// Bytes of the uint8 masks kept in scratch, in floats.
int64_t mask_floats(int64_t batch, int64_t tq, int64_t tv) { return (batch * (tq + tv) + 3) / 4; }
}  // namespace

AttentionLayer::AttentionLayer(AttentionOptions options) : Layer("attention", options.name), options_(std::move(options)) {
  if (options_.score_mode != "dot" && options_.score_mode != "concat")
    fail("score_mode must be 'dot' or 'concat', got '" + options_.score_mode + "'");
  if (!(options_.dropout >= 0.0f && options_.dropout < 1.0f))
    fail("dropout must be in [0, 1), got " + std::to_string(options_.dropout));
  concat_ = options_.score_mode == "concat";
}

void AttentionLayer::take_input_masks(const std::vector<Node>& inputs, CallOptions& options) const {
  if (inputs.size() < 2) return;
  if (!options.query_mask) options.query_mask = inputs[0]->keras_mask;
  if (!options.value_mask) options.value_mask = inputs[1]->keras_mask;
}

Node AttentionLayer::compute_mask(const std::vector<Node>&, const CallOptions& options) const {
  return options.query_mask;
}

std::vector<Shape> AttentionLayer::compute_build(const std::vector<Shape>& in, const CallOptions& call) {
  if (in.size() != 2 && in.size() != 3)
    fail("expects a list [query, value] or [query, value, key], got " + std::to_string(in.size()) + " inputs");
  for (const Shape& s : in)
    if (s.size() != 2) fail("inputs must be (batch, steps, features), got " + batch_shape_to_string(s));
  const Shape& q = in[0];
  const Shape& v = in[1];
  const Shape& k = in.size() == 3 ? in[2] : in[1];
  if (k[0] != v[0]) fail("key and value must have the same number of steps");
  if (q[1] != k[1]) fail("query and key must have the same number of features (" + std::to_string(q[1]) + " vs " +
                         std::to_string(k[1]) + ")");
  if (call.query_mask && call.query_mask->shape != Shape{q[0]})
    fail("query_mask must have shape (batch, " + std::to_string(q[0]) + ")");
  if (call.value_mask && call.value_mask->shape != Shape{v[0]})
    fail("value_mask must have shape (batch, " + std::to_string(v[0]) + ")");
  if (call.key_mask || call.attention_mask || call.mask)  // Keras' Attention takes mask=[query_mask, value_mask]
    fail("takes no key_mask, attention_mask or mask (query_mask and value_mask are its mask list)");
  if (!built_) {
    if (options_.use_scale) add_weight("scale", {}, "ones");
    if (concat_) add_weight("concat_score_weight", {}, "ones");
  }
  std::vector<Shape> out = {{q[0], v[1]}};
  if (call.return_attention_scores) out.push_back({q[0], v[0]});
  return out;
}

AttentionLayer::Dims AttentionLayer::dims() const {
  const auto& in = input_shapes_;
  return {in[0][0], in[1][0], in[0][1], in[1][1]};
}

int64_t AttentionLayer::saved_floats_per_sample(const CallOptions& call) const {
  Dims m = dims();
  return kernels::attention_saved_floats(make_config(1, m.tq, m.tv, m.d, m.dv, concat_, call.use_causal_mask, false));
}

int64_t AttentionLayer::scratch_floats(int64_t batch, const CallOptions& call) const {
  Dims m = dims();
  auto cfg = make_config(batch, m.tq, m.tv, m.d, m.dv, concat_, call.use_causal_mask, false);
  return kernels::attention_scratch_floats(cfg) + mask_floats(batch, m.tq, m.tv);
}

namespace {
// Fills the kernel's masks from the model's float masks, in the scratch tail.
void attach_masks(kernels::AttentionConfig& cfg, const float* qm, const float* vm, float* scratch_tail) {
  auto* bytes = reinterpret_cast<uint8_t*>(scratch_tail);
  if (qm) {
    for (int64_t i = 0; i < cfg.batch * cfg.tq; ++i) bytes[i] = qm[i] != 0.0f;
    cfg.query_mask = bytes;
  }
  if (vm) {
    uint8_t* vb = bytes + cfg.batch * cfg.tq;
    for (int64_t i = 0; i < cfg.batch * cfg.tv; ++i) vb[i] = vm[i] != 0.0f;
    cfg.value_mask = vb;
  }
}
}  // namespace

void AttentionLayer::forward(ForwardContext& ctx) {
  Dims m = dims();
  auto cfg = make_config(ctx.batch, m.tq, m.tv, m.d, m.dv, concat_, ctx.call->use_causal_mask, false);
  int w = 0;
  if (options_.use_scale) cfg.scale = weights_[w++].value[0];
  if (concat_) cfg.concat_weight = weights_[w++].value[0];
  if (ctx.training) {
    cfg.dropout = options_.dropout;
    cfg.dropout_seed = ctx.seed;
    cfg.sample_offset = ctx.sample_offset;
  }
  float* tail = ctx.scratch + kernels::attention_scratch_floats(cfg);
  attach_masks(cfg, ctx.query_mask, ctx.value_mask, tail);
  const float* q = ctx.inputs[0];
  const float* v = ctx.inputs[1];
  const float* k = ctx.inputs.size() > 2 ? ctx.inputs[2] : v;
  float* weights = ctx.outputs.size() > 1 ? ctx.outputs[1] : nullptr;
  kernels::attention_forward(cfg, q, k, v, ctx.outputs[0], ctx.saved, weights, ctx.scratch);
}

void AttentionLayer::backward(BackwardContext& ctx) {
  if (!ctx.output_grads[0]) return;
  Dims m = dims();
  auto cfg = make_config(ctx.batch, m.tq, m.tv, m.d, m.dv, concat_, ctx.call->use_causal_mask, false);
  float* dscale = nullptr;
  float* dconcat = nullptr;
  int w = 0;
  if (options_.use_scale) {
    cfg.scale = weights_[w].value[0];
    if (ctx.param_grads && trainable_) dscale = ctx.param_grads + weights_[w].offset;
    ++w;
  }
  if (concat_) {
    cfg.concat_weight = weights_[w].value[0];
    if (ctx.param_grads && trainable_) dconcat = ctx.param_grads + weights_[w].offset;
  }
  if (ctx.training) {
    cfg.dropout = options_.dropout;
    cfg.dropout_seed = ctx.seed;
    cfg.sample_offset = ctx.sample_offset;
  }
  float* tail = ctx.scratch + kernels::attention_scratch_floats(cfg);
  attach_masks(cfg, ctx.query_mask, ctx.value_mask, tail);
  const float* q = ctx.inputs[0];
  const float* v = ctx.inputs[1];
  const bool has_key = ctx.inputs.size() > 2;
  const float* k = has_key ? ctx.inputs[2] : v;
  float* dq = ctx.input_grads[0];
  float* dv = ctx.input_grads[1];
  float* dk = has_key ? ctx.input_grads[2] : dv;  // the key is the value when none is given
  if (!dq && !dk && !dv && !dscale && !dconcat) return;
  kernels::attention_backward(cfg, q, k, v, ctx.outputs[0], ctx.output_grads[0], ctx.saved, dq, dk, dv, dscale,
                              dconcat, ctx.scratch);
}

nlohmann::json AttentionLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["use_scale"] = options_.use_scale;
  c["score_mode"] = options_.score_mode;
  c["dropout"] = options_.dropout;
  if (options_.seed) c["seed"] = *options_.seed;
  return c;
}

}  // namespace attn::layers
