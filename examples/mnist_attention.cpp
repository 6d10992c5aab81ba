// The Keras tutorial "Attention + ANN" on MNIST, written with the attn C++ API.
// Reads MNIST from $ATTN_DATA_DIR or ~/.cache/attn/mnist (scripts/setup.sh fetches it).
#include <cstdio>
#include <iostream>

#include "attn/attn.hpp"

int main() {
  using namespace attn;
  using namespace attn::layers;

  auto mnist = data::load_mnist(data::default_mnist_dir());
  auto prepare = [](Tensor images) {  // x / 255, as (n, 784, 1) sequences
    Tensor x = images.clone().reshaped({images.dim(0), 28 * 28, 1});
    for (int64_t i = 0; i < x.size(); ++i) x[i] /= 255.0f;
    return x;
  };
  Tensor x_train = prepare(mnist.train.x), x_test = prepare(mnist.test.x);

  auto inputs = Input({28 * 28, 1});
  auto atten = Attention({.use_scale = true})({inputs, inputs}, {.training = false});
  auto flatten = Flatten()(atten);
  auto hidden = Dense(100, {.activation = "relu"})(flatten);
  auto outputs = Dense(10, {.activation = "sigmoid"})(hidden);
  Model model(inputs, outputs);
  model.compile(optimizers::Adam(), losses::SparseCategoricalCrossentropy({.from_logits = true}), {"accuracy"});
  model.summary(std::cout);

  auto es = callbacks::EarlyStopping({.monitor = "loss", .patience = 3, .start_from_epoch = 0});
  auto history = model.fit(x_train, mnist.train.y,
                           {.epochs = 5, .batch_size = 20, .validation_data = Dataset{x_test, mnist.test.y},
                            .callbacks = {es}});
  std::printf("final val_accuracy: %.4f\n", history.history["val_accuracy"].back());
  return 0;
}
