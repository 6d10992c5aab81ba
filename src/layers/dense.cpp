// Dense forward/backward: the small-m kernels (kernels/dense_gemm.hpp) for a few rows, where
// BLAS would spend its time packing W; BLAS sgemm for many rows. On one thread, or for a small W,
// each thread runs its slice of the batch; on several threads a large W is split by rows
// instead (forward_team / backward_team), so each thread reads and updates only its share.
#include "attn/layers/dense.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/activations.hpp"
#include "kernels/dense_gemm.hpp"
#include "kernels/matmul.hpp"

namespace attn::layers {

using kernels::Activation;
using kernels::matmul;
using kernels::matmul_add_grad_input;
using kernels::matmul_add_grad_weight;

namespace {

// Rows of W per work item in the team backward (see backward_team). A thread runs its own items
// in long pieces; single items only end the step, where a thread that is done takes them from
// another: 16 rows (about 5k cycles here) rather than 32 halved the wait at the last barrier.
constexpr int64_t kBackwardBlockRows = 16;
constexpr int64_t kBackwardSgemmBlockRows = 64;

// Below this many weights a thread's share of W is too small to pay for the team's barriers.
constexpr int64_t kTeamMinWeights = 16384;

// Thread t's share [begin, end) of `count` items.
std::pair<int64_t, int64_t> share(int64_t count, int t, int threads) {
  return {count * t / threads, count * (t + 1) / threads};
}

}  // namespace

DenseLayer::DenseLayer(int64_t units, DenseOptions options)
    : Layer("dense", options.name), units_(units), options_(std::move(options)) {
  if (units_ <= 0) fail("units must be a positive integer, got " + std::to_string(units_));
  activation_ = static_cast<int>(kernels::activation_from_string(options_.activation));
  activation_name_ = kernels::to_string(static_cast<Activation>(activation_));
}

std::vector<Shape> DenseLayer::compute_build(const std::vector<Shape>& in, const CallOptions&) {
  if (in.size() != 1) fail("expects 1 input, got " + std::to_string(in.size()));
  if (in[0].empty()) fail("input must have at least one axis besides the batch");
  in_features_ = in[0].back();
  rows_per_sample_ = 1;
  for (size_t i = 0; i + 1 < in[0].size(); ++i) rows_per_sample_ *= in[0][i];
  if (!built_) {
    add_weight("kernel", {in_features_, units_}, options_.kernel_initializer);
    if (options_.use_bias) add_weight("bias", {units_}, options_.bias_initializer);
  }
  Shape out = in[0];
  out.back() = units_;
  return {out};
}

bool DenseLayer::has_keras_logits() const {
  auto a = static_cast<Activation>(activation_);
  return a == Activation::kSigmoid || a == Activation::kSoftmax;
}

int64_t DenseLayer::saved_floats_per_sample(const CallOptions&) const {
  // The pre-activation, needed by the activation's derivative (none for linear).
  return static_cast<Activation>(activation_) == Activation::kLinear ? 0 : rows_per_sample_ * units_;
}

int64_t DenseLayer::scratch_floats(int64_t batch, const CallOptions&) const {
  return batch * rows_per_sample_ * units_;  // d(pre-activation)
}

bool DenseLayer::runs_as_team() const { return in_features_ * units_ >= kTeamMinWeights; }

int64_t DenseLayer::team_floats(int64_t batch, int threads) const {
  // Each thread's partial pre-activation [rows, units], then d(pre-activation) for all rows.
  return (threads + 1) * batch * rows_per_sample_ * units_;
}

void DenseLayer::forward(ForwardContext& ctx) {
  const auto act = static_cast<Activation>(activation_);
  const int64_t rows = ctx.batch * rows_per_sample_;
  const float* x = ctx.inputs[0];
  float* y = ctx.outputs[0];
  float* z = act == Activation::kLinear ? y : ctx.saved;  // pre-activation
  if (ctx.team)
    forward_team(ctx, z);
  else
    matmul(x, in_features_, weights_[0].value.data(), options_.use_bias ? weights_[1].value.data() : nullptr, z, rows,
           in_features_, units_);
  if (act != Activation::kLinear) {
    if (ctx.logits) std::memcpy(ctx.logits, z, rows * units_ * sizeof(float));
    kernels::activation_forward(act, z, y, kernels::is_row_wise(act) ? rows : 1,
                                kernels::is_row_wise(act) ? units_ : rows * units_);
  } else if (ctx.logits) {
    std::memcpy(ctx.logits, y, rows * units_ * sizeof(float));
  }
}

void DenseLayer::backward(BackwardContext& ctx) {
  const auto act = static_cast<Activation>(activation_);
  const int64_t rows = ctx.batch * rows_per_sample_;
  if (rows == 0 || !ctx.output_grads[0]) return;
  const float* dy = ctx.output_grads[0];
  const float* dz = dy;
  if (act != Activation::kLinear && !ctx.output_grad_is_logits) {
    float* buf = ctx.scratch;
    std::memset(buf, 0, rows * units_ * sizeof(float));
    kernels::activation_backward(act, ctx.saved, ctx.outputs[0], dy, buf, kernels::is_row_wise(act) ? rows : 1,
                                 kernels::is_row_wise(act) ? units_ : rows * units_);
    dz = buf;
  }
  if (ctx.team) return backward_team(ctx, dz);
  const float* x = ctx.inputs[0];
  if (ctx.param_grads && trainable_) {
    matmul_add_grad_weight(x, in_features_, dz, ctx.param_grads + weights_[0].offset, rows, in_features_, units_);
    if (options_.use_bias) {
      float* dbias = ctx.param_grads + weights_[1].offset;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < units_; ++j) dbias[j] += dz[r * units_ + j];
    }
  }
  if (ctx.input_grads[0])
    matmul_add_grad_input(dz, weights_[0].value.data(), ctx.input_grads[0], in_features_, rows, in_features_, units_);
}

// Team forward: thread t multiplies its input features [k0, k1) of every sample by its rows of
// W into its own partial, then sums the partials (in thread order: reproducible) for its slice.
// When the inputs are not known to be ready, its own samples go before the barrier and the
// others' after it.
void DenseLayer::forward_team(ForwardContext& ctx, float* z) {
  Team& team = *ctx.team;
  const int64_t all_rows = team.batch * rows_per_sample_;
  const auto [k0, k1] = share(in_features_, team.index, team.size);
  const int64_t partial_size = all_rows * units_;
  const float* w = weights_[0].value.data() + k0 * units_;
  float* partial = team.shared + team.index * partial_size;
  const int64_t first = team.slice_begin * rows_per_sample_, mine = ctx.batch * rows_per_sample_;
  const auto rows_of = [&](int64_t r0, int64_t r1) {
    if (r1 > r0)
      matmul(team.inputs[0] + r0 * in_features_ + k0, in_features_, w, nullptr, partial + r0 * units_, r1 - r0,
             k1 - k0, units_);
  };
  if (team.inputs_ready) {
    rows_of(0, all_rows);  // one pass: each row of W is loaded once per block of rows
  } else {
    // This thread's own samples first: they are ready, and working on them hides the wait for
    // the others' slices.
    rows_of(first, first + mine);
    team.barrier->wait();  // every thread's slice of the input is written
    rows_of(0, first);
    rows_of(first + mine, all_rows);
  }
  team.barrier->wait();  // every partial is complete
  const float* bias = options_.use_bias ? weights_[1].value.data() : nullptr;
  for (int64_t r = 0; r < mine; ++r) {
    float* zr = z + r * units_;
    const float* part = team.shared + (first + r) * units_;
    for (int64_t j = 0; j < units_; ++j) zr[j] = bias ? bias[j] : 0.0f;
    for (int t = 0; t < team.size; ++t)
      for (int64_t j = 0; j < units_; ++j) zr[j] += part[t * partial_size + j];
  }
}

// Team backward: every thread publishes d(pre-activation) of its slice, then the threads compute
// the input gradient's features and W's gradient rows block by block (rows of W) from all
// samples, each its share of blocks first, and each its share of the bias columns; the next
// layer reads input gradients of its slice only after the last barrier. A thread's share is
// the rows it multiplied in the forward, cut into blocks from its first row: its own blocks
// are the rows of W, and of the optimizer's state, that it already holds, and the shares are
// equal (784 rows as 25 blocks from row 0 gave one thread half a block more, which the other
// then fetched across cores every step).
void DenseLayer::backward_team(BackwardContext& ctx, const float* dz) {
  Team& team = *ctx.team;
  const int64_t all_rows = team.batch * rows_per_sample_;
  const int64_t rows = ctx.batch * rows_per_sample_;
  float* dz_all = team.shared + team.size * all_rows * units_;
  std::memcpy(dz_all + team.slice_begin * rows_per_sample_ * units_, dz, rows * units_ * sizeof(float));
  // sgemm's rounding depends on the product's shape (its small-matrix path, its tiles), and the
  // pieces a thread takes depend on timing: there each block is a product of its own, so a block
  // of rows gets the same bits in every run, and blocks are larger, as each product repacks
  // d(pre-activation). The small-row kernels' results do not depend on the shape.
  const bool one_block_per_product = all_rows > kernels::kDenseSmallRows;
  const int64_t block = one_block_per_product ? kBackwardSgemmBlockRows : kBackwardBlockRows;
  const auto blocks_in = [&](int t) {
    const auto [r0, r1] = share(in_features_, t, team.size);
    return (r1 - r0 + block - 1) / block;
  };
  // Block b's rows of W: blocks are numbered thread share by thread share.
  const auto block_rows = [&](int64_t b) {
    for (int t = 0;; ++t) {
      const int64_t n = blocks_in(t);
      if (b < n || t + 1 == team.size) {
        const auto [r0, r1] = share(in_features_, t, team.size);
        const int64_t first = r0 + b * block;
        return std::pair<int64_t, int64_t>{first, std::min(r1, first + block)};
      }
      b -= n;
    }
  };
  int64_t b0 = 0;
  for (int t = 0; t < team.index; ++t) b0 += blocks_in(t);
  team.work[team.index].reset(static_cast<uint32_t>(b0), static_cast<uint32_t>(b0 + blocks_in(team.index)));
  team.barrier->wait();  // d(pre-activation) of every sample is published, every share is reset
  const auto [j0, j1] = share(units_, team.index, team.size);
  const float* w = weights_[0].value.data();
  float* dw = team.param_grads + weights_[0].offset;
  float* dbias = options_.use_bias ? team.param_grads + weights_[1].offset : nullptr;
  const bool update = team.update != nullptr && trainable_;
  if (trainable_ && dbias != nullptr) {
    if (update) std::fill(dbias + j0, dbias + j1, 0.0f);  // not cleared beforehand: see Team::update
    for (int64_t r = 0; r < all_rows; ++r)
      for (int64_t j = j0; j < j1; ++j) dbias[j] += dz_all[r * units_ + j];
    if (update) team.update->apply(weights_[1].offset + j0, weights_[1].offset + j1);
  }
  // Rows [r0, r1) of W: the input gradient's features [r0, r1) (with W as it was), then W's
  // gradient rows, then (fused) the optimizer step on them, all on one thread.
  const auto rows_of_w = [&](int64_t r0, int64_t r1) {
    if (team.input_grads[0])
      matmul_add_grad_input(dz_all, w + r0 * units_, team.input_grads[0] + r0, in_features_, all_rows, r1 - r0,
                            units_, team.write_input_grads);
    if (trainable_) {
      // Fused, these rows were not cleared beforehand (see Team::update): written, not added to.
      matmul_add_grad_weight(team.inputs[0] + r0, in_features_, dz_all, dw + r0 * units_, all_rows, r1 - r0, units_,
                             update);
      if (update) team.update->apply(weights_[0].offset + r0 * units_, weights_[0].offset + r1 * units_);
    }
  };
  // Blocks of W's rows: this thread's share first, in shrinking pieces (long passes while they
  // last), then single blocks from the ends of the other threads' shares. A row's result does
  // not depend on the thread, and each block's rows are read, differentiated and updated by the
  // thread that took it.
  take_team_work(team.work, team.index, team.size, [&](int64_t first, int64_t count) {
    if (one_block_per_product) {
      for (int64_t b = first; b < first + count; ++b) rows_of_w(block_rows(b).first, block_rows(b).second);
    } else {
      rows_of_w(block_rows(first).first, block_rows(first + count - 1).second);  // blocks of one share
    }
  });
  team.barrier->wait();  // input gradients and parameter gradients are complete
}

nlohmann::json DenseLayer::get_config() const {
  nlohmann::json c = Layer::get_config();
  c["units"] = units_;
  c["activation"] = activation_name_;
  c["use_bias"] = options_.use_bias;
  c["kernel_initializer"] = initializer_config(options_.kernel_initializer);
  c["bias_initializer"] = initializer_config(options_.bias_initializer);
  c["kernel_regularizer"] = nullptr;
  c["bias_regularizer"] = nullptr;
  c["kernel_constraint"] = nullptr;
  c["bias_constraint"] = nullptr;
  return c;
}

}  // namespace attn::layers
