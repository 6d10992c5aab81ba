// Global average and max pooling over the positions of each sample, any layout (see the header).
#include "kernels/global_pooling.hpp"

#include <limits>

namespace attn::kernels {

namespace {
// Positions of sample b that the mask keeps (all without a mask).
int64_t kept_positions(const float* mask, int64_t b, int64_t positions) {
  if (!mask) return positions;
  int64_t kept = 0;
  for (int64_t p = 0; p < positions; ++p) kept += mask[b * positions + p] != 0.0f;
  return kept;
}
}  // namespace

void global_average_forward(const PooledLayout& l, const float* x, float* y, int64_t batch, const float* mask) {
  const int64_t sample = l.positions * l.channels;
  for (int64_t b = 0; b < batch; ++b) {
    const float* xb = x + b * sample;
    const double count = static_cast<double>(kept_positions(mask, b, l.positions));
    for (int64_t c = 0; c < l.channels; ++c) {
      double sum = 0.0;
      for (int64_t p = 0; p < l.positions; ++p)
        if (!mask || mask[b * l.positions + p] != 0.0f) sum += xb[p * l.position_stride + c * l.channel_stride];
      y[b * l.channels + c] = count > 0 ? static_cast<float>(sum / count) : std::numeric_limits<float>::quiet_NaN();
    }
  }
}

void global_average_backward(const PooledLayout& l, const float* dy, float* dx, int64_t batch, const float* mask) {
  const int64_t sample = l.positions * l.channels;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t count = kept_positions(mask, b, l.positions);
    if (count == 0) continue;  // the output is NaN whatever the input: no finite gradient to pass
    const float inv = 1.0f / static_cast<float>(count);
    for (int64_t p = 0; p < l.positions; ++p) {
      if (mask && mask[b * l.positions + p] == 0.0f) continue;
      float* dxp = dx + b * sample + p * l.position_stride;
      for (int64_t c = 0; c < l.channels; ++c) dxp[c * l.channel_stride] += dy[b * l.channels + c] * inv;
    }
  }
}

void global_max_forward(const PooledLayout& l, const float* x, float* y, int64_t batch) {
  const int64_t sample = l.positions * l.channels;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < l.channels; ++c) {
      const float* xc = x + b * sample + c * l.channel_stride;
      float m = xc[0];
      for (int64_t p = 1; p < l.positions; ++p) {
        const float v = xc[p * l.position_stride];
        if (v > m || v != v) m = v;
      }
      y[b * l.channels + c] = m;
    }
}

void global_max_backward(const PooledLayout& l, const float* x, const float* y, const float* dy, float* dx,
                         int64_t batch) {
  const int64_t sample = l.positions * l.channels;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < l.channels; ++c) {
      const float m = y[b * l.channels + c];
      const float* xc = x + b * sample + c * l.channel_stride;
      float* dxc = dx + b * sample + c * l.channel_stride;
      int64_t ties = 0;
      for (int64_t p = 0; p < l.positions; ++p) ties += xc[p * l.position_stride] == m;
      if (ties == 0) continue;  // a NaN maximum: no position equals it
      const float share = dy[b * l.channels + c] / static_cast<float>(ties);
      for (int64_t p = 0; p < l.positions; ++p)
        if (xc[p * l.position_stride] == m) dxc[p * l.position_stride] += share;
    }
}

}  // namespace attn::kernels
