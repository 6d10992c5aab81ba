// InputLayer: holds the model input's shape; its output is filled by the model.
#include "attn/layers/input.hpp"

namespace attn {

InputLayer::InputLayer(Shape shape, std::string name) : Layer("input_layer", std::move(name)), shape_(std::move(shape)) {
  for (int64_t d : shape_)
    if (d <= 0) fail("every input dimension must be positive, got " + shape_to_string(shape_));
}

nlohmann::json InputLayer::get_config() const {
  nlohmann::json batch_shape = nlohmann::json::array({nullptr});
  for (int64_t d : shape_) batch_shape.push_back(d);
  return {{"batch_shape", batch_shape}, {"dtype", "float32"}, {"sparse", false}, {"ragged", false},
          {"name", name_}, {"optional", false}};
}

Node Input(Shape shape, std::string name) {
  auto layer = std::make_shared<InputLayer>(std::move(shape), std::move(name));
  Node output = layer->call({}).at(0);
  layer->output_ = output;
  return output;
}

}  // namespace attn
