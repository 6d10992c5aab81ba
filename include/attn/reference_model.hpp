// The reference model of the project: the Keras tutorial's "Attention + ANN" on
// MNIST as 784-step sequences of 1 feature. Shared by the CLI, examples and tests.
#pragma once

#include "attn/model.hpp"

namespace attn {

// Input (784, 1) -> Attention(use_scale) [x, x] -> Flatten -> Dense(100, relu) -> Dense(10, sigmoid).
// 79,511 parameters. Weights are drawn from the global generator (attn::set_random_seed).
Model reference_model(int64_t sequence_length = 784);

}  // namespace attn
