// Elementwise activations and the row softmax, forward and backward, over
// [rows, width] buffers. Keras semantics (keras/src/activations/activations.py):
// gelu is the exact erf form, softmax subtracts the row max.
#pragma once

#include <cstdint>
#include <string>

namespace attn::kernels {

enum class Activation { kLinear, kRelu, kSigmoid, kTanh, kSoftmax, kGelu };

// Throws std::invalid_argument naming an unsupported activation.
Activation activation_from_string(const std::string& name);
std::string to_string(Activation a);

// y = act(x); x and y may alias. Softmax runs over each row of `width`.
void activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t width);
// dx += dy * act'(x), given x (pre-activation) and y (post-activation) from the forward.
void activation_backward(Activation a, const float* x, const float* y, const float* dy, float* dx,
                         int64_t rows, int64_t width);

}  // namespace attn::kernels
