// BatchNormalization: per-channel moments from each thread's slice (float sums over blocks of
// rows, added up in double), combined in thread order (so a thread count is bit-reproducible);
// the normalization itself in float.
#include "attn/layers/batch_normalization.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <new>

namespace attn::layers {

namespace {
bool known_initializer(const std::string& name) {
  return name == "zeros" || name == "ones" || name == "glorot_uniform" || name == "random_uniform";
}

int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

// The first 64-byte boundary at or after p, for doubles in the executor's float buffers.
double* doubles_at(float* p) {
  return reinterpret_cast<double*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63});
}

// n zeroed doubles at d (placement new starts their lifetime in float storage).
double* zeroed(double* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) new (d + i) double(0.0);
  return d;
}

// One thread's moments as it publishes them: its element count per channel, then per channel
// the shift, the sum of (x - shift) and the sum of its squares.
int64_t moments_doubles(int64_t channels) { return round_up(1 + 3 * channels, 8); }  // 64-byte blocks

// Thread t's block in a team's shared memory (blocks 64 bytes apart: no line written by two).
double* team_block(const Team& team, int t, int64_t doubles) { return doubles_at(team.shared) + t * doubles; }

// Adds, for every channel c, the sums of a(c, e) and of b(c, e) over the slice's elements e of
// that channel to sums[c] and sums[channels + c]. Elements are laid out [rows, channels, inner].
// Float sums over short stretches (the compiler keeps them in vector registers; a double per
// element would halve the lanes), added into double.
template <class TermA, class TermB>
void add_channel_sums(int64_t rows, int64_t channels, int64_t inner, double* sums, float* partial, TermA a, TermB b) {
  double* sa = sums;
  double* sb = sums + channels;
  if (inner == 1) {  // channels last: the channel loop vectorizes
    constexpr int64_t kRows = 32;
    float* pa = partial;
    float* pb = partial + channels;
    for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
      std::fill(partial, partial + 2 * channels, 0.0f);
      for (int64_t r = r0; r < std::min(rows, r0 + kRows); ++r) {
        const int64_t base = r * channels;
        for (int64_t c = 0; c < channels; ++c) {
          pa[c] += a(c, base + c);
          pb[c] += b(c, base + c);
        }
      }
      for (int64_t c = 0; c < channels; ++c) {
        sa[c] += pa[c];
        sb[c] += pb[c];
      }
    }
    return;
  }
  constexpr int kLanes = 16;  // a channel's run of `inner` elements, in independent lanes
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t base = (r * channels + c) * inner;
      float la[kLanes] = {}, lb[kLanes] = {};
      int64_t i = 0;
      for (; i + kLanes <= inner; i += kLanes)
        for (int l = 0; l < kLanes; ++l) {
          la[l] += a(c, base + i + l);
          lb[l] += b(c, base + i + l);
        }
      double ta = 0.0, tb = 0.0;
      for (; i < inner; ++i) {
        ta += a(c, base + i);
        tb += b(c, base + i);
      }
      for (int l = 0; l < kLanes; ++l) {
        ta += la[l];
        tb += lb[l];
      }
      sa[c] += ta;
      sb[c] += tb;
    }
}

// f(c, e) for every element e of the slice, c its channel.
template <class F>
void for_each_element(int64_t rows, int64_t channels, int64_t inner, F f) {
  if (inner == 1) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < channels; ++c) f(c, r * channels + c);
    return;
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t base = (r * channels + c) * inner;
      for (int64_t i = 0; i < inner; ++i) f(c, base + i);
    }
}
}  // namespace

BatchNormalizationLayer::BatchNormalizationLayer(BatchNormalizationOptions options)
    : Layer("batch_normalization", options.name), options_(std::move(options)) {
  if (!(options_.epsilon > 0.0) || !std::isfinite(options_.epsilon))
    fail("epsilon must be a positive number, got " + std::to_string(options_.epsilon));
  if (!std::isfinite(options_.momentum)) fail("momentum must be a finite number");
  for (const std::string* init : {&options_.beta_initializer, &options_.gamma_initializer,
                                  &options_.moving_mean_initializer, &options_.moving_variance_initializer})
    if (!known_initializer(*init))
      fail("unsupported initializer '" + *init + "' (zeros, ones, glorot_uniform or random_uniform)");
}

std::vector<Shape> BatchNormalizationLayer::compute_build(const std::vector<Shape>& in, const CallOptions& options) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  if (in[0].empty()) fail("input must have at least one axis besides the batch");
  // Keras would normalize with the batch's statistics in a forward pass alone, and update the
  // moving ones there; attn runs forward passes on slices of the batch.
  if (options.training.value_or(false))
    fail("training=True in the call is not supported (fit trains it; evaluate and predict use the moving statistics)");
  const auto rank = static_cast<int64_t>(in[0].size()) + 1;  // with the batch axis
  const int64_t axis = options_.axis < 0 ? options_.axis + rank : options_.axis;
  if (axis < 1 || axis >= rank)
    fail("axis " + std::to_string(options_.axis) + " is not a feature axis of inputs of rank " + std::to_string(rank));
  const auto k = static_cast<size_t>(axis - 1);
  outer_ = inner_ = 1;
  for (size_t i = 0; i < k; ++i) outer_ *= in[0][i];
  channels_ = in[0][k];
  for (size_t i = k + 1; i < in[0].size(); ++i) inner_ *= in[0][i];
  if (!built_) {
    if (options_.scale) add_weight("gamma", {channels_}, options_.gamma_initializer);
    if (options_.center) add_weight("beta", {channels_}, options_.beta_initializer);
    add_weight("moving_mean", {channels_}, options_.moving_mean_initializer, false);
    add_weight("moving_variance", {channels_}, options_.moving_variance_initializer, false);
  }
  return {in[0]};
}

void BatchNormalizationLayer::take_input_masks(const std::vector<Node>& inputs, CallOptions&) const {
  // Keras weights the batch statistics by the mask; attn does not.
  if (!inputs.empty() && inputs[0] && inputs[0]->keras_mask)
    fail("its input carries a Keras mask (Embedding mask_zero): masked batch statistics are not supported");
}

int BatchNormalizationLayer::weight_index(const char* name) const {
  for (size_t i = 0; i < weights_.size(); ++i)
    if (weights_[i].name == name) return static_cast<int>(i);
  return -1;
}

// Per thread: its moments block (or, in backward, two channel sums) in double at a 64-byte
// boundary, then five per-channel floats.
int64_t BatchNormalizationLayer::scratch_floats(int64_t, const CallOptions&) const {
  return 16 + 2 * moments_doubles(channels_) + 5 * channels_;
}

// Every thread's moments (forward) or channel sums (backward), 64-byte blocks apart.
int64_t BatchNormalizationLayer::team_floats(int64_t, int threads) const {
  return 16 + 2 * threads * moments_doubles(channels_);
}

void BatchNormalizationLayer::forward(ForwardContext& ctx) {
  const int64_t channels = channels_, rows = ctx.batch * outer_;
  const float* x = ctx.inputs[0];
  float* y = ctx.outputs[0];
  float* mean = ctx.saved;  // kept for backward, which recomputes xhat from x
  float* inv_std = ctx.saved + channels;
  float* partial = ctx.scratch + 16 + 2 * moments_doubles(channels);
  float* moving_mean = weights_[weight_index("moving_mean")].value.data();
  float* moving_variance = weights_[weight_index("moving_variance")].value.data();
  Team* team = ctx.team;

  if (ctx.training && trainable_) {
    // The slice's sums of d = x - shift and of d^2, the shift being the slice's first value in
    // each channel: with d of the data's own spread, the variance E[d^2] - E[d]^2 does not
    // cancel away however far the data sit from zero.
    const int64_t block = moments_doubles(channels);
    double* own = zeroed(team ? team_block(*team, team->index, block) : doubles_at(ctx.scratch), block);
    double* shift = own + 1;
    own[0] = static_cast<double>(rows * inner_);
    for (int64_t c = 0; c < channels; ++c) shift[c] = x[c * inner_];
    for (int64_t c = 0; c < channels; ++c) mean[c] = x[c * inner_];  // the float shift, as the sums see it
    const auto d = [x, mean](int64_t c, int64_t e) { return x[e] - mean[c]; };
    add_channel_sums(rows, channels, inner_, own + 1 + channels, partial, d, [&](int64_t c, int64_t e) {
      const float v = d(c, e);
      return v * v;
    });
    if (team) team->barrier->wait();
    // Chan et al.'s pairwise combination, in thread order: every thread gets the same bits.
    const int threads = team ? team->size : 1;
    const auto block_of = [&](int t) { return team ? team_block(*team, t, block) : own; };
    double n = 0.0;
    for (int t = 0; t < threads; ++t) n += block_of(t)[0];
    const bool updates_moving = !team || team->index == 0;
    const auto momentum = static_cast<float>(options_.momentum), rest = static_cast<float>(1.0 - options_.momentum);
    for (int64_t c = 0; c < channels; ++c) {
      double total = 0.0;
      for (int t = 0; t < threads; ++t) {
        const double* m = block_of(t);
        total += m[0] * m[1 + c] + m[1 + channels + c];
      }
      const double batch_mean = total / n;
      double m2 = 0.0;
      for (int t = 0; t < threads; ++t) {
        const double* m = block_of(t);
        const double count = m[0], sum = m[1 + channels + c], squares = m[1 + 2 * channels + c];
        const double slice_mean = m[1 + c] + sum / count;
        m2 += std::max(0.0, squares - sum * sum / count) + count * (slice_mean - batch_mean) * (slice_mean - batch_mean);
      }
      const double var = m2 / n;
      mean[c] = static_cast<float>(batch_mean);
      inv_std[c] = static_cast<float>(1.0 / std::sqrt(var + options_.epsilon));
      if (updates_moving) {  // as Keras, in float
        moving_mean[c] = moving_mean[c] * momentum + mean[c] * rest;
        moving_variance[c] = moving_variance[c] * momentum + static_cast<float>(var) * rest;
      }
    }
  } else {
    for (int64_t c = 0; c < channels; ++c) {
      mean[c] = moving_mean[c];
      inv_std[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(moving_variance[c]) + options_.epsilon));
    }
    // Nothing to share, but every team phase meets the others once (Team::shared: the next
    // phase's writes go to the buffer the previous phase may still be read from).
    if (team) team->barrier->wait();
  }
  // As Keras' batch_normalization op: y = x * scale + (beta - mean * scale), scale = gamma / sqrt(var + epsilon).
  const int gi = weight_index("gamma"), bi = weight_index("beta");
  float* scale = partial;
  float* offset = partial + channels;
  for (int64_t c = 0; c < channels; ++c) {
    scale[c] = gi >= 0 ? weights_[gi].value.data()[c] * inv_std[c] : inv_std[c];
    offset[c] = (bi >= 0 ? weights_[bi].value.data()[c] : 0.0f) - mean[c] * scale[c];
  }
  for_each_element(rows, channels, inner_, [&](int64_t c, int64_t e) { y[e] = x[e] * scale[c] + offset[c]; });
}

void BatchNormalizationLayer::backward(BackwardContext& ctx) {
  Team* team = ctx.team;
  float* dx = ctx.input_grads[0];
  const bool write_dx = team && team->write_input_grads;  // this site alone: write, not add
  const int64_t channels = channels_, rows = ctx.batch * outer_;
  const float* dy = ctx.output_grads[0];
  if (!dy) {  // the same on every thread of a team
    if (dx && write_dx) std::fill(dx, dx + rows * channels * inner_, 0.0f);
    if (team) team->barrier->wait();
    return;
  }
  const float* x = ctx.inputs[0];
  const float* mean = ctx.saved;
  const float* inv_std = ctx.saved + channels;
  float* partial = ctx.scratch + 16 + 2 * moments_doubles(channels);
  float* coef = partial + 2 * channels;  // gamma / sqrt(var + epsilon)
  float* mean_dy = coef + channels;
  float* mean_dy_xhat = mean_dy + channels;
  const int gi = weight_index("gamma"), bi = weight_index("beta");
  const float* gamma = gi >= 0 ? weights_[gi].value.data() : nullptr;
  // Read gamma before the barrier: with a fused step, thread 0 updates it right after.
  for (int64_t c = 0; c < channels; ++c) coef[c] = gamma ? gamma[c] * inv_std[c] : inv_std[c];

  const int64_t block = moments_doubles(channels);
  double* sums = zeroed(team ? team_block(*team, team->index, block) : doubles_at(ctx.scratch), 2 * channels);
  const auto xhat = [x, mean, inv_std](int64_t c, int64_t e) { return (x[e] - mean[c]) * inv_std[c]; };
  add_channel_sums(
      rows, channels, inner_, sums, partial, [dy](int64_t, int64_t e) { return dy[e]; },
      [dy, &xhat](int64_t c, int64_t e) { return dy[e] * xhat(c, e); });
  double* totals = sums;
  if (team) {
    team->barrier->wait();
    totals = zeroed(doubles_at(ctx.scratch), 2 * channels);
    for (int t = 0; t < team->size; ++t) {  // thread order: every thread gets the same bits
      const double* other = team_block(*team, t, block);
      for (int64_t i = 0; i < 2 * channels; ++i) totals[i] += other[i];
    }
  }
  // dbeta = sum dy, dgamma = sum dy xhat: written by one thread of a team.
  float* param_grads = team ? team->param_grads : ctx.param_grads;
  if (trainable_ && param_grads && (!team || team->index == 0)) {
    const bool write = team && team->update;  // a fused step: not cleared, written here
    for (const auto& [index, sum] : {std::pair{gi, totals + channels}, std::pair{bi, totals}}) {
      if (index < 0) continue;
      const Weight& w = weights_[index];
      float* g = param_grads + w.offset;
      for (int64_t c = 0; c < channels; ++c) g[c] = (write ? 0.0f : g[c]) + static_cast<float>(sum[c]);
      if (write) team->update->apply(w.offset, w.offset + channels);
    }
  }
  if (!dx) return;
  // In training the batch's mean and variance depend on x:
  // dx = gamma / sqrt(var + epsilon) * (dy - mean(dy) - xhat * mean(dy * xhat));
  // in inference the moving statistics are constants: dx = gamma / sqrt(var + epsilon) * dy.
  const bool batch_statistics = ctx.training && trainable_;
  const double n = static_cast<double>((team ? team->batch : ctx.batch) * outer_ * inner_);
  for (int64_t c = 0; c < channels; ++c) {
    mean_dy[c] = batch_statistics ? static_cast<float>(totals[c] / n) : 0.0f;
    mean_dy_xhat[c] = batch_statistics ? static_cast<float>(totals[channels + c] / n) : 0.0f;
  }
  const auto grad = [&](int64_t c, int64_t e) { return coef[c] * (dy[e] - mean_dy[c] - xhat(c, e) * mean_dy_xhat[c]); };
  if (write_dx)
    for_each_element(rows, channels, inner_, [&](int64_t c, int64_t e) { dx[e] = grad(c, e); });
  else
    for_each_element(rows, channels, inner_, [&](int64_t c, int64_t e) { dx[e] += grad(c, e); });
}

nlohmann::json BatchNormalizationLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["axis"] = options_.axis;
  c["momentum"] = options_.momentum;
  c["epsilon"] = options_.epsilon;
  c["center"] = options_.center;
  c["scale"] = options_.scale;
  c["beta_initializer"] = initializer_config(options_.beta_initializer);
  c["gamma_initializer"] = initializer_config(options_.gamma_initializer);
  c["moving_mean_initializer"] = initializer_config(options_.moving_mean_initializer);
  c["moving_variance_initializer"] = initializer_config(options_.moving_variance_initializer);
  c["beta_regularizer"] = nullptr;
  c["gamma_regularizer"] = nullptr;
  c["beta_constraint"] = nullptr;
  c["gamma_constraint"] = nullptr;
  c["synchronized"] = options_.synchronized;
  return c;
}

}  // namespace attn::layers
