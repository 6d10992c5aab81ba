// The config keys Conv1D and Conv2D write alike after their geometry: activation, bias, the
// initializers, and Keras' regularizers and constraints (none implemented: null).
#pragma once

#include <string>

#include "attn/layer.hpp"

namespace attn::layers {

template <class ConvOptions>
void add_conv_weight_config(nlohmann::json& c, const std::string& activation, const ConvOptions& options) {
  c["activation"] = activation;
  c["use_bias"] = options.use_bias;
  c["kernel_initializer"] = initializer_config(options.kernel_initializer);
  c["bias_initializer"] = initializer_config(options.bias_initializer);
  for (const char* key :
       {"kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint"})
    c[key] = nullptr;
}

}  // namespace attn::layers
