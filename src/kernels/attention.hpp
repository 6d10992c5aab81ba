// Luong dot-product / concat attention kernels (Keras layers.Attention semantics,
// keras-semantics.md section 1). Pure functions over raw buffers: no allocation
// visible to the caller, no threads, no layers. Every fast kernel has a scalar
// twin (attention_*_reference) that materialises the score matrix; tests compare them.
#pragma once

#include <cstdint>

namespace attn::kernels {

enum class ScoreMode { kDot, kConcat };

struct AttentionConfig {
  int64_t batch = 1;  // samples in this call
  int64_t tq = 1;     // query length
  int64_t tv = 1;     // key/value length
  int64_t d = 1;      // query/key features
  int64_t dv = 1;     // value features
  ScoreMode mode = ScoreMode::kDot;
  float scale = 1.0f;          // trainable scale (1 when use_scale is false)
  float concat_weight = 1.0f;  // concat_score_weight (concat mode only)
  bool causal = false;         // keep score (i, j) only where i >= j
  const uint8_t* query_mask = nullptr;  // [batch, tq], nonzero = keep; masked rows output 0
  // [batch, tv], nonzero = keep. A masked score (value mask or causal) becomes fl(S - 1e9f) as in
  // Keras' _apply_scores, so a fully masked row is uniform (|S| < 32), and the backward is Keras'
  // autodiff: the offset passes dS through, so such a row still sends gradient to q, k and the
  // scalars (the float forward is flat there; finite differences see 0).
  const uint8_t* value_mask = nullptr;
  float dropout = 0.0f;                 // rate on the weights; > 0 only in training
  uint64_t dropout_seed = 0;            // dropout mask = hash(seed, sample_offset + b, i, j)
  int64_t sample_offset = 0;            // global index of sample 0 of this call
};

// Floats per sample the forward pass saves for the backward pass (in `saved`).
int64_t attention_saved_floats(const AttentionConfig& cfg);
// Floats of scratch the kernels need per call (caller-provided, reused).
int64_t attention_scratch_floats(const AttentionConfig& cfg);

// q [batch, tq, d], k [batch, tv, d], v [batch, tv, dv] -> out [batch, tq, dv] (overwritten).
// saved [batch * attention_saved_floats]: statistics for the backward pass.
// weights: optional [batch, tq, tv], the attention weights after dropout.
void attention_forward(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                       float* out, float* saved, float* weights, float* scratch);

// ADDS into every non-null gradient: dq [batch, tq, d], dk [batch, tv, d], dv [batch, tv, dv],
// dscale and dconcat_weight (scalars). dout [batch, tq, dv]; out and saved from the forward pass.
void attention_backward(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                        const float* out, const float* dout, const float* saved, float* dq, float* dk,
                        float* dv, float* dscale, float* dconcat_weight, float* scratch);

// Scalar references with the same contract, computed with a materialised score matrix.
void attention_forward_reference(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                                 float* out, float* weights);
void attention_backward_reference(const AttentionConfig& cfg, const float* q, const float* k, const float* v,
                                  const float* dout, float* dq, float* dk, float* dv, float* dscale,
                                  float* dconcat_weight);

}  // namespace attn::kernels
