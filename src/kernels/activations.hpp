// Elementwise activations and the row softmax and log_softmax, forward and backward, over
// [rows, width] buffers. Keras semantics (keras/src/activations/activations.py): gelu is the exact
// erf form, softmax subtracts the row max, leaky_relu's slope is 0.2, elu's alpha 1, selu's
// constants those of Klambauer et al., hard_sigmoid is clip(x / 6 + 0.5, 0, 1), swish is silu
// and hard_swish hard_silu.
#pragma once

#include <cstdint>
#include <string>

namespace attn::kernels {

enum class Activation {
  kLinear, kRelu, kSigmoid, kTanh, kSoftmax, kGelu,
  kElu, kSelu, kSoftplus, kSoftsign, kSilu, kLeakyRelu, kRelu6, kHardSigmoid, kHardSilu, kExponential,
  kMish, kLogSoftmax,
};

// True for the activations taken over each row of the last axis (softmax, log_softmax).
inline bool is_row_wise(Activation a) { return a == Activation::kSoftmax || a == Activation::kLogSoftmax; }

// Throws std::invalid_argument naming an unsupported activation.
Activation activation_from_string(const std::string& name);
std::string to_string(Activation a);

// y = act(x); x and y may alias. Softmax and log_softmax run over each row of `width`.
void activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t width);
// dx += dy * act'(x), given x (pre-activation) and y (post-activation) from the forward.
void activation_backward(Activation a, const float* x, const float* y, const float* dy, float* dx,
                         int64_t rows, int64_t width);

}  // namespace attn::kernels
