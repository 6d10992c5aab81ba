// The global poolings' reductions, shared by the 1D layers (over steps) and the 2D ones (over
// cells): in each sample of `positions * channels` values, value (p, c) sits at
// p * position_stride + c * channel_stride, so one loop serves channels_last and channels_first.
#pragma once

#include <cstdint>

namespace attn::kernels {

struct PooledLayout {
  int64_t positions = 0, channels = 0, position_stride = 0, channel_stride = 0;
};

// y[b, c] = mean over the positions that mask[b, p] keeps (every position without a mask), summed
// in double; a sample with none kept gives 0 / 0 = NaN, as Keras' sum / sum(mask).
void global_average_forward(const PooledLayout& layout, const float* x, float* y, int64_t batch, const float* mask);
// dx += dy / kept count at each kept position (nothing for a sample with none kept).
void global_average_backward(const PooledLayout& layout, const float* dy, float* dx, int64_t batch, const float* mask);

// y[b, c] = the maximum over the positions; a NaN anywhere makes it NaN, as TensorFlow's reduce_max.
void global_max_forward(const PooledLayout& layout, const float* x, float* y, int64_t batch);
// dx += dy shared equally among the positions holding the maximum (reduce_max's gradient).
void global_max_backward(const PooledLayout& layout, const float* x, const float* y, const float* dy, float* dx,
                         int64_t batch);

}  // namespace attn::kernels
