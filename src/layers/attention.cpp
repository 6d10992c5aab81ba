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

std::vector<Shape> AttentionLayer::compute_build(const std::vector<Shape>& in, const CallOptions& call) {
  if (in.size() != 2 && in.size() != 3)
    fail("expects a list [query, value] or [query, value, key], got " + std::to_string(in.size()) + " inputs");
  for (const Shape& s : in)
    if (s.size() != 2) fail("inputs must be (batch, steps, features), got (None, " + shape_to_string(s).substr(1));
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

bool AttentionLayer::runs_as_team() const { return true; }

int64_t AttentionLayer::team_floats(int64_t batch, int) const { return 2 * batch; }

// Pointers of one call: a batch slice, or one sample of a team run.
struct AttentionLayer::Call {
  int64_t batch = 0, sample_offset = 0;
  const float *q = nullptr, *k = nullptr, *v = nullptr, *qmask = nullptr, *vmask = nullptr;
  float *out = nullptr, *weights = nullptr, *saved = nullptr;
  const float* dout = nullptr;
  float *dq = nullptr, *dk = nullptr, *dv = nullptr;
};

AttentionLayer::Call AttentionLayer::sample_call(const Team& team, const CallOptions& call,
                                                 const std::vector<float*>& input_grads, const float* qmask,
                                                 const float* vmask, int64_t b) const {
  const std::vector<const float*>& inputs = team.inputs;
  const Dims m = dims();
  Call c;
  c.batch = 1;
  c.sample_offset = b;
  const bool has_key = inputs.size() > 2;
  c.q = inputs[0] + b * m.tq * m.d;
  c.v = inputs[1] + b * m.tv * m.dv;
  c.k = has_key ? inputs[2] + b * m.tv * m.d : c.v;
  c.qmask = qmask ? qmask + b * m.tq : nullptr;
  c.vmask = vmask ? vmask + b * m.tv : nullptr;
  c.out = team.outputs[0] + b * m.tq * m.dv;
  c.weights = team.outputs.size() > 1 ? team.outputs[1] + b * m.tq * m.tv : nullptr;
  c.saved = team.saved + b * saved_floats_per_sample(call);
  c.dout = team.output_grads[0] ? team.output_grads[0] + b * m.tq * m.dv : nullptr;
  if (!input_grads.empty()) {
    c.dq = input_grads[0] ? input_grads[0] + b * m.tq * m.d : nullptr;
    c.dv = input_grads[1] ? input_grads[1] + b * m.tv * m.dv : nullptr;
    c.dk = has_key ? (input_grads[2] ? input_grads[2] + b * m.tv * m.d : nullptr) : c.dv;
  }
  return c;
}

void AttentionLayer::run_forward(const Call& c, bool causal, bool training, uint64_t seed, float* scratch) const {
  Dims m = dims();
  auto cfg = make_config(c.batch, m.tq, m.tv, m.d, m.dv, concat_, causal, false);
  int w = 0;
  if (options_.use_scale) cfg.scale = weights_[w++].value[0];
  if (concat_) cfg.concat_weight = weights_[w++].value[0];
  if (training) {
    cfg.dropout = options_.dropout;
    cfg.dropout_seed = seed;
    cfg.sample_offset = c.sample_offset;
  }
  float* tail = scratch + kernels::attention_scratch_floats(cfg);
  attach_masks(cfg, c.qmask, c.vmask, tail);
  kernels::attention_forward(cfg, c.q, c.k, c.v, c.out, c.saved, c.weights, scratch);
}

void AttentionLayer::run_backward(const Call& c, bool causal, bool training, uint64_t seed, float* dscale,
                                  float* dconcat, float* scratch) const {
  if (!c.dq && !c.dk && !c.dv && !dscale && !dconcat) return;
  Dims m = dims();
  auto cfg = make_config(c.batch, m.tq, m.tv, m.d, m.dv, concat_, causal, false);
  int w = 0;
  if (options_.use_scale) cfg.scale = weights_[w++].value[0];
  if (concat_) cfg.concat_weight = weights_[w++].value[0];
  if (training) {
    cfg.dropout = options_.dropout;
    cfg.dropout_seed = seed;
    cfg.sample_offset = c.sample_offset;
  }
  float* tail = scratch + kernels::attention_scratch_floats(cfg);
  attach_masks(cfg, c.qmask, c.vmask, tail);
  kernels::attention_backward(cfg, c.q, c.k, c.v, c.out, c.dout, c.saved, c.dq, c.dk, c.dv, dscale, dconcat, scratch);
}

void AttentionLayer::forward(ForwardContext& ctx) {
  const bool causal = ctx.call->use_causal_mask;
  if (ctx.team) {
    // Samples are handed out one at a time: on MNIST-like data a sample's cost grows with the
    // square of its number of distinct values, so equal slices would leave one thread waiting.
    Team& team = *ctx.team;
    const float* qmask = ctx.query_mask ? ctx.query_mask - team.slice_begin * dims().tq : nullptr;
    const float* vmask = ctx.value_mask ? ctx.value_mask - team.slice_begin * dims().tv : nullptr;
    team.barrier->wait();  // every thread's slice of the inputs is written
    for (int64_t b; (b = team.counters[0].fetch_add(1, std::memory_order_relaxed)) < team.batch;)
      run_forward(sample_call(team, *ctx.call, {}, qmask, vmask, b), causal, ctx.training, ctx.seed, ctx.scratch);
    team.barrier->wait();  // every sample's output is written
    return;
  }
  Call c;
  c.batch = ctx.batch;
  c.sample_offset = ctx.sample_offset;
  c.q = ctx.inputs[0];
  c.v = ctx.inputs[1];
  c.k = ctx.inputs.size() > 2 ? ctx.inputs[2] : c.v;
  c.qmask = ctx.query_mask;
  c.vmask = ctx.value_mask;
  c.out = ctx.outputs[0];
  c.weights = ctx.outputs.size() > 1 ? ctx.outputs[1] : nullptr;
  c.saved = ctx.saved;
  run_forward(c, causal, ctx.training, ctx.seed, ctx.scratch);
}

void AttentionLayer::backward(BackwardContext& ctx) {
  if (!ctx.output_grads[0]) return;
  const bool causal = ctx.call->use_causal_mask;
  // Offsets of the trainable scalars, or -1 where no gradient is wanted.
  int64_t scale_at = -1, concat_at = -1;
  int w = 0;
  if (options_.use_scale) {
    if (ctx.param_grads && trainable_) scale_at = weights_[w].offset;
    ++w;
  }
  if (concat_ && ctx.param_grads && trainable_) concat_at = weights_[w].offset;
  if (ctx.team) {
    // Per-sample scalar gradients go to team.shared and are summed in sample order afterwards,
    // so the result does not depend on which thread took which sample.
    Team& team = *ctx.team;
    const float* qmask = ctx.query_mask ? ctx.query_mask - team.slice_begin * dims().tq : nullptr;
    const float* vmask = ctx.value_mask ? ctx.value_mask - team.slice_begin * dims().tv : nullptr;
    float* per_sample = team.shared;  // [2, batch]: d(scale), d(concat_score_weight)
    team.barrier->wait();  // every thread's slice of the output gradient is written
    for (int64_t b; (b = team.counters[1].fetch_add(1, std::memory_order_relaxed)) < team.batch;) {
      per_sample[b] = per_sample[team.batch + b] = 0.0f;
      run_backward(sample_call(team, *ctx.call, team.input_grads, qmask, vmask, b), causal, ctx.training, ctx.seed,
                   scale_at >= 0 ? per_sample + b : nullptr, concat_at >= 0 ? per_sample + team.batch + b : nullptr,
                   ctx.scratch);
    }
    team.barrier->wait();  // every sample's gradients are written
    if (team.index == 0) {
      for (int64_t b = 0; b < team.batch; ++b) {
        if (scale_at >= 0) team.param_grads[scale_at] += per_sample[b];
        if (concat_at >= 0) team.param_grads[concat_at] += per_sample[team.batch + b];
      }
    }
    return;
  }
  Call c;
  c.batch = ctx.batch;
  c.sample_offset = ctx.sample_offset;
  c.q = ctx.inputs[0];
  c.v = ctx.inputs[1];
  const bool has_key = ctx.inputs.size() > 2;
  c.k = has_key ? ctx.inputs[2] : c.v;
  c.qmask = ctx.query_mask;
  c.vmask = ctx.value_mask;
  c.out = const_cast<float*>(ctx.outputs[0]);  // read only by the backward pass
  c.saved = ctx.saved;
  c.dout = ctx.output_grads[0];
  c.dq = ctx.input_grads[0];
  c.dv = ctx.input_grads[1];
  c.dk = has_key ? ctx.input_grads[2] : c.dv;  // the key is the value when none is given
  run_backward(c, causal, ctx.training, ctx.seed, scale_at >= 0 ? ctx.param_grads + scale_at : nullptr,
               concat_at >= 0 ? ctx.param_grads + concat_at : nullptr, ctx.scratch);
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
