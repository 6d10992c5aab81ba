// The tutorial's model, written as the Keras code reads.
#include "attn/reference_model.hpp"

#include "attn/attn.hpp"

namespace attn {

Model reference_model(int64_t sequence_length) {
  using namespace attn::layers;
  auto inputs = Input({sequence_length, 1});
  auto atten = Attention({.use_scale = true})({inputs, inputs}, {.training = false});
  auto flatten = Flatten()(atten);
  auto hidden = Dense(100, {.activation = "relu"})(flatten);
  auto outputs = Dense(10, {.activation = "sigmoid"})(hidden);
  return Model(inputs, outputs);
}

}  // namespace attn
