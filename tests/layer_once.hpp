// One forward and one backward of a single built layer with one input, outside any model: for
// values worked out by hand (ties in a max, a NaN, a mask) that a model's input checks would
// refuse or that need the raw gradient.
#pragma once

#include <algorithm>
#include <vector>

#include "attn/layer.hpp"

namespace attn::testing {

struct LayerOnce {
  std::vector<float> y;   // the forward output
  std::vector<float> dx;  // the input gradient for dy (empty when no dy was given)
};

// x holds `batch` samples; the output has y_size values; `mask` (optional) is the call's mask.
inline LayerOnce run_layer_once(Layer& layer, const std::vector<float>& x, int64_t batch, size_t y_size,
                                const std::vector<float>& dy = {}, const float* mask = nullptr,
                                const CallOptions& call = {}) {
  LayerOnce r;
  r.y.assign(y_size, 0.0f);
  // What the executor gives a layer: its saved floats (kept from forward to backward) and scratch.
  std::vector<float> saved(std::max<int64_t>(1, batch * layer.saved_floats_per_sample(call)));
  std::vector<float> scratch(std::max<int64_t>(1, layer.scratch_floats(batch, call)));
  ForwardContext f;
  f.batch = batch;
  f.call = &call;
  f.inputs = {x.data()};
  f.outputs = {r.y.data()};
  f.mask = mask;
  f.saved = saved.data();
  f.scratch = scratch.data();
  layer.forward(f);
  if (dy.empty()) return r;
  r.dx.assign(x.size(), 0.0f);
  BackwardContext b;
  b.batch = batch;
  b.call = &call;
  b.inputs = {x.data()};
  b.outputs = {r.y.data()};
  b.output_grads = {dy.data()};
  b.input_grads = {r.dx.data()};
  b.mask = mask;
  b.saved = saved.data();
  b.scratch = scratch.data();
  layer.backward(b);
  return r;
}

}  // namespace attn::testing
