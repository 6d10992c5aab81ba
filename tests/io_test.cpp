// Model files: .keras round trips (same predictions, same continued training with the
// optimizer state and iteration count restored), Keras 2 / Keras 3 configs, weights
// files, and every kind of damage reported as attn::io::FileError naming the file.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "attn/io.hpp"
#include "attn/layers/activation.hpp"
#include "attn/layers/attention.hpp"
#include "attn/layers/batch_normalization.hpp"
#include "attn/layers/conv1d.hpp"
#include "attn/layers/conv2d.hpp"
#include "attn/layers/dense.hpp"
#include "attn/layers/dropout.hpp"
#include "attn/layers/embedding.hpp"
#include "attn/layers/input.hpp"
#include "attn/layers/layer_normalization.hpp"
#include "attn/layers/merging.hpp"
#include "attn/layers/multi_head_attention.hpp"
#include "attn/layers/pooling.hpp"
#include "attn/layers/pooling2d.hpp"
#include "attn/layers/position_embedding.hpp"
#include "attn/layers/reshaping.hpp"
#include "attn/random.hpp"
#include "io/hdf5_file.hpp"
#include "io/io_internal.hpp"
#include "io/zip_archive.hpp"
#include "temp_dir.hpp"

namespace attn::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace attn::layers;

// Each test's files live in their own directory.
struct TempDir : attn::testing::TempDir {
  TempDir() : attn::testing::TempDir("attn-io-test") {}
};

Tensor random_tensor(Shape shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t(std::move(shape));
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (int64_t i = 0; i < t.size(); ++i) t[i] = d(g);
  return t;
}

Tensor random_labels(int64_t n, int classes, uint64_t seed) {
  Tensor t({n});
  std::mt19937_64 g(seed);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<float>(g() % static_cast<uint64_t>(classes));
  return t;
}

void expect_same(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  for (int64_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << what << " at " << i;
}

Model sequential_mlp() {
  set_random_seed(11);
  return Sequential({4, 5}, {Flatten().ptr(), Dense(16, {.activation = "relu"}).ptr(), Dropout(0.25f).ptr(),
                             Dense(3, {.activation = "softmax"}).ptr()});
}

// Self-attention over 4 steps: Dense, Attention (scale + causal + value mask), MHA, head.
Model attention_model() {
  set_random_seed(12);
  Node x = Input({4, 6}, "tokens");
  Node mask = Input({4}, "mask");
  Node h = Dense(8, {.activation = "tanh"})(x);
  Node a = Attention({.use_scale = true})({h, h}, {.use_causal_mask = true, .value_mask = mask});
  Node m = MultiHeadAttention(2, 3)({a, h});
  Node f = Flatten()(m);
  Node y = Dense(3, {.activation = "softmax"})(f);
  return Model({x, mask}, {y}, "attn_model");
}

FitOptions quiet(int epochs, int batch = 8) {
  FitOptions o;
  o.epochs = epochs;
  o.batch_size = batch;
  o.verbose = 0;
  return o;
}

TEST(KerasFile, SequentialRoundTripPredictsAndTrainsIdentically) {
  TempDir dir;
  Model m = sequential_mlp();
  m.compile(optimizers::Adam({.learning_rate = 0.01f}), losses::SparseCategoricalCrossentropy(), {"accuracy"});
  m.set_seed(5);
  const Tensor x = random_tensor({40, 4, 5}, 1);
  const Tensor y = random_labels(40, 3, 2);
  m.fit(x, y, quiet(2));
  ASSERT_EQ(m.optimizer()->iterations(), 10);
  const std::string path = dir.file("mlp.keras");
  save_model(m, path);
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"mlp.keras"}) << "no temporary file is left behind";

  Model r = load_model(path);
  EXPECT_EQ(r.class_name(), "Sequential");
  EXPECT_EQ(r.name(), m.name());
  ASSERT_TRUE(r.compiled());
  EXPECT_EQ(r.optimizer()->class_name(), "Adam");
  EXPECT_EQ(r.optimizer()->iterations(), 10);
  EXPECT_EQ(r.metric_names(), std::vector<std::string>{"accuracy"});
  expect_same(m.predict(x), r.predict(x), "predictions after load");

  // Continued training: same data -> bit-identical weights (needs m, v, t and the seed).
  EXPECT_EQ(r.seed(), 5u);
  m.fit(x, y, quiet(2));
  r.fit(x, y, quiet(2));
  EXPECT_EQ(r.optimizer()->iterations(), 20);
  EXPECT_EQ(m.get_weights_flat(), r.get_weights_flat());
}

// Every compiled metric comes back under its name (the loader kept only the first: a model
// compiled with sparse_categorical_accuracy and acc lost acc, and a monitor on val_acc).
TEST(KerasFile, EveryMetricNameSurvivesBothFormats) {
  TempDir dir;
  Model m = sequential_mlp();
  m.compile(optimizers::Adam(), losses::SparseCategoricalCrossentropy(), {"sparse_categorical_accuracy", "acc"});
  const Tensor x = random_tensor({12, 4, 5}, 3);
  const Tensor y = random_labels(12, 3, 4);
  const auto want = m.evaluate(x, y);
  ASSERT_EQ(want.size(), 3u);
  for (const char* name : {"m.keras", "m.h5"}) {
    save_model(m, dir.file(name));
    Model r = load_model(dir.file(name));
    EXPECT_EQ(r.metric_names(), (std::vector<std::string>{"sparse_categorical_accuracy", "acc"})) << name;
    EXPECT_EQ(r.evaluate(x, y), want) << name;
  }
}

// Saved after compile, before any step: the file has the iteration count and learning rate but
// no slots (as Keras writes it); it loads, and both models then train alike.
TEST(KerasFile, CompiledButUntrainedModelRoundTrips) {
  TempDir dir;
  Model m = sequential_mlp();
  m.compile(optimizers::Adam({.learning_rate = 0.01f}), losses::SparseCategoricalCrossentropy());
  m.set_seed(5);
  ASSERT_FALSE(m.optimizer_built());
  save_model(m, dir.file("fresh.keras"));
  Model r = load_model(dir.file("fresh.keras"));
  ASSERT_TRUE(r.compiled());
  EXPECT_FALSE(r.optimizer_built());
  EXPECT_EQ(r.optimizer()->iterations(), 0);
  const Tensor x = random_tensor({40, 4, 5}, 1);
  const Tensor y = random_labels(40, 3, 2);
  m.fit(x, y, quiet(1));
  r.fit(x, y, quiet(1));
  EXPECT_EQ(m.get_weights_flat(), r.get_weights_flat());
}

TEST(KerasFile, ContinuedTrainingDiffersWithoutOptimizerState) {
  // The check above can fail: fresh Adam state after a load gives different weights.
  TempDir dir;
  Model m = sequential_mlp();
  m.compile(optimizers::Adam({.learning_rate = 0.01f}), losses::SparseCategoricalCrossentropy());
  m.set_seed(5);
  const Tensor x = random_tensor({40, 4, 5}, 1);
  const Tensor y = random_labels(40, 3, 2);
  m.fit(x, y, quiet(1));
  save_model(m, dir.file("a.keras"));
  Model r = load_model(dir.file("a.keras"));
  r.compile(optimizers::Adam({.learning_rate = 0.01f}), losses::SparseCategoricalCrossentropy());
  r.set_seed(5);
  m.fit(x, y, quiet(1));
  r.fit(x, y, quiet(1));
  EXPECT_NE(m.get_weights_flat(), r.get_weights_flat());
}

TEST(KerasFile, FunctionalAttentionRoundTrip) {
  TempDir dir;
  Model m = attention_model();
  m.compile(optimizers::Adam({.amsgrad = true}), losses::SparseCategoricalCrossentropy(), {"accuracy"},
            {.logits_semantics = LogitsSemantics::kOutputs});
  m.set_seed(9);
  const Tensor x = random_tensor({16, 4, 6}, 3);
  Tensor mask({16, 4});
  for (int64_t i = 0; i < mask.size(); ++i) mask[i] = (i % 4 == 3 && i % 8 != 3) ? 0.0f : 1.0f;
  const Tensor y = random_labels(16, 3, 4);
  m.fit({x, mask}, y, quiet(1, 4));
  const std::string path = dir.file("attn.keras");
  save_model(m, path);
  Model r = load_model(path);
  EXPECT_EQ(r.class_name(), "Functional");
  EXPECT_EQ(r.compile_options().logits_semantics, LogitsSemantics::kOutputs);
  EXPECT_FALSE(r.uses_hidden_logits());
  EXPECT_EQ(model_to_config(r), model_to_config(m));
  expect_same(m.predict({x, mask})[0], r.predict({x, mask})[0], "predictions after load");
  m.fit({x, mask}, y, quiet(1, 4));
  r.fit({x, mask}, y, quiet(1, 4));
  EXPECT_EQ(m.get_weights_flat(), r.get_weights_flat());
}

// MultiHeadAttention called with a separate key, key_mask and attention_mask (model inputs): the
// masks reach the layer in training and prediction (a model without them predicts otherwise), are
// written as Keras call kwargs, and come back from the file.
TEST(KerasFile, MultiHeadAttentionMasksRoundTrip) {
  TempDir dir;
  set_random_seed(13);
  Node x = Input({4, 6}, "tokens");
  Node k = Input({4, 2}, "keys");
  Node key_mask = Input({4}, "key_mask");
  Node pairs = Input({4, 4}, "pairs");
  MultiHeadAttention mha(2, 3);
  Node a = mha({x, x, k}, {.key_mask = key_mask, .attention_mask = pairs});
  Model m({x, k, key_mask, pairs}, {Dense(3)(Flatten()(a))}, "masked");
  m.compile(optimizers::Adam(), losses::SparseCategoricalCrossentropy({.from_logits = true}));
  m.set_seed(2);
  const Tensor xs = random_tensor({8, 4, 6}, 5), ks = random_tensor({8, 4, 2}, 6);
  Tensor km({8, 4}), am({8, 4, 4}), ones_km({8, 4}), ones_am({8, 4, 4});
  for (int64_t i = 0; i < km.size(); ++i) km[i] = i % 5 == 1 ? 0.0f : 1.0f, ones_km[i] = 1.0f;
  for (int64_t i = 0; i < am.size(); ++i) am[i] = i % 3 == 2 ? 0.0f : 1.0f, ones_am[i] = 1.0f;
  const Tensor y = random_labels(8, 3, 7);
  m.fit({xs, ks, km, am}, y, quiet(1, 4));
  const json kwargs = model_to_config(m)["config"]["layers"][4]["inbound_nodes"][0]["kwargs"];
  EXPECT_EQ(kwargs["key_mask"]["config"]["keras_history"][0], "key_mask") << kwargs.dump();
  EXPECT_EQ(kwargs["attention_mask"]["config"]["keras_history"][0], "pairs") << kwargs.dump();
  save_model(m, dir.file("masked.keras"));
  Model r = load_model(dir.file("masked.keras"));
  EXPECT_EQ(model_to_config(r), model_to_config(m));
  const Tensor p = m.predict({xs, ks, km, am})[0];
  expect_same(p, r.predict({xs, ks, km, am})[0], "predictions after load");
  EXPECT_NE(p.to_vector(), m.predict({xs, ks, ones_km, ones_am})[0].to_vector());  // the masks matter
}

TEST(KerasFile, ConfigHasKerasLayout) {
  Model m = attention_model();
  const json c = model_to_config(m);
  EXPECT_EQ(c["class_name"], "Functional");
  EXPECT_EQ(c["module"], "keras");
  const json& layers = c["config"]["layers"];
  ASSERT_EQ(layers.size(), m.layers().size());
  EXPECT_EQ(layers[0]["class_name"], "InputLayer");
  EXPECT_EQ(layers[0]["inbound_nodes"], json::array());
  bool saw_attention = false;
  for (const auto& l : layers) {
    if (l["class_name"] != "Attention") continue;
    saw_attention = true;
    const json& node = l["inbound_nodes"][0];
    ASSERT_TRUE(node["args"][0].is_array());
    EXPECT_EQ(node["args"][0][0]["class_name"], "__keras_tensor__");
    EXPECT_EQ(node["args"][0][0]["config"]["keras_history"][1], 0);
    EXPECT_EQ(node["kwargs"]["use_causal_mask"], true);
    EXPECT_TRUE(node["kwargs"]["mask"][0].is_null());
    EXPECT_EQ(node["kwargs"]["mask"][1]["config"]["keras_history"][0], "mask");
  }
  EXPECT_TRUE(saw_attention);
  EXPECT_EQ(c["config"]["input_layers"], json::parse(R"([["tokens",0,0],["mask",0,0]])"));
  EXPECT_FALSE(c.contains("compile_config"));
  // From the config alone: an uncompiled model with the same graph.
  Model r = model_from_config(c);
  EXPECT_FALSE(r.compiled());
  EXPECT_EQ(model_to_config(r), c);
}

// A .keras file's config.json carries its compile_config; built from it alone, the model comes
// back compiled as it says (Keras' deserialization does the same), and without it, uncompiled.
TEST(KerasFile, ConfigJsonWithCompileConfigComesBackCompiled) {
  TempDir dir;
  Model m = sequential_mlp();
  m.compile(optimizers::SGD({.learning_rate = 0.05f}), losses::CategoricalCrossentropy(), {"accuracy"});
  save_model(m, dir.file("m.keras"));
  const std::vector<char> bytes = zip::Reader(dir.file("m.keras")).read("config.json");
  json config = json::parse(std::string(bytes.begin(), bytes.end()));
  ASSERT_TRUE(config.contains("compile_config"));
  Model compiled = model_from_config(config, "config.json");
  ASSERT_TRUE(compiled.compiled());
  EXPECT_EQ(compiled.optimizer()->class_name(), "SGD");
  EXPECT_FLOAT_EQ(compiled.optimizer()->learning_rate(), 0.05f);
  EXPECT_EQ(compiled.loss()->class_name(), "CategoricalCrossentropy");
  config.erase("compile_config");
  EXPECT_FALSE(model_from_config(config, "config.json").compiled());
}

TEST(KerasFile, WeightsTreeFollowsKeras3Names) {
  TempDir dir;
  Model m = attention_model();
  m.compile(optimizers::Adam(), losses::SparseCategoricalCrossentropy());
  m.build_optimizer();
  save_weights(m, dir.file("w.weights.h5"));
  h5::File f = h5::File::open(dir.file("w.weights.h5"));
  for (const char* p : {"layers/input_layer/vars", "layers/input_layer_1/vars", "layers/dense/vars/0",
                        "layers/dense/vars/1", "layers/attention/vars/0", "layers/multi_head_attention/vars",
                        "layers/multi_head_attention/query_dense/vars/0", "layers/multi_head_attention/output_dense/vars/1",
                        "layers/flatten/vars", "layers/dense_1/vars/1", "optimizer/vars/0", "vars"})
    EXPECT_TRUE(f.exists(p)) << p;
  EXPECT_EQ(f.read_floats("layers/attention/vars/0").shape, Shape{});
  EXPECT_EQ(f.read_floats("layers/multi_head_attention/key_dense/vars/0").shape, (Shape{8, 2, 3}));
  // iterations, learning_rate, then (m, v) per variable.
  EXPECT_EQ(f.read_int64("optimizer/vars/0"), 0);
  EXPECT_EQ(f.read_floats("optimizer/vars/2").shape, (Shape{6, 8}));
  EXPECT_EQ(f.read_floats("optimizer/vars/3").shape, (Shape{6, 8}));
  EXPECT_EQ(f.read_floats("optimizer/vars/4").shape, (Shape{8}));
  EXPECT_EQ(f.read_string_attr("layers/dense_1/vars", "name"), std::vector<std::string>{m.layers().back()->name()});
}

TEST(KerasFile, SaveWeightsLoadWeights) {
  TempDir dir;
  Model a = sequential_mlp();
  Model b = sequential_mlp();  // same seed: same init; perturb b
  std::vector<float> w = b.get_weights_flat();
  for (float& v : w) v += 0.5f;
  b.set_weights_flat(w);
  const Tensor x = random_tensor({5, 4, 5}, 7);
  save_weights(a, dir.file("a.weights.h5"));
  load_weights(b, dir.file("a.weights.h5"));
  expect_same(a.predict(x), b.predict(x), "after load_weights");
  EXPECT_THROW(save_weights(a, dir.file("a.h5")), FileError);  // must end in .weights.h5
  // load_weights also reads the weights inside a .keras file.
  save_model(a, dir.file("a.keras"));
  b.set_weights_flat(w);
  load_weights(b, dir.file("a.keras"));
  expect_same(a.predict(x), b.predict(x), "after load_weights(.keras)");
}

// Writes a tf.keras 2 style legacy .h5: model_config + model_weights/<layer>/<layer>/<w>:0,
// weight_names listing bias before kernel.
void write_legacy_h5(const std::string& path, const json& config, const std::vector<float>& kernel,
                     const std::vector<float>& bias) {
  h5::File f = h5::File::create(path, path);
  f.write_string_attr("", "model_config", config.dump());
  f.write_string_attr("", "keras_version", "2.9.0");
  f.ensure_group("model_weights");
  f.write_string_attr("model_weights", "layer_names", "out");  // a scalar string works as a one-item list
  f.ensure_group("model_weights/out");
  f.write_string_list_attr("model_weights/out", "weight_names", {"out/bias:0", "out/kernel:0"});
  f.write_floats("model_weights/out/out/bias:0", {2}, bias.data());
  f.write_floats("model_weights/out/out/kernel:0", {3, 2}, kernel.data());
  f.close();
}

TEST(LegacyH5, Keras2FunctionalWithBiasListedFirst) {
  TempDir dir;
  const json config = json::parse(R"({"class_name": "Model", "config": {"name": "legacy", "layers": [
      {"class_name": "InputLayer", "config": {"batch_input_shape": [null, 3], "dtype": "float32", "name": "in"},
       "name": "in", "inbound_nodes": []},
      {"class_name": "Dense", "config": {"name": "out", "trainable": true, "dtype": "float32", "units": 2,
       "activation": "linear", "use_bias": true,
       "kernel_initializer": {"class_name": "VarianceScaling", "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": null}},
       "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": null, "bias_regularizer": null,
       "activity_regularizer": null, "kernel_constraint": null, "bias_constraint": null},
       "name": "out", "inbound_nodes": [[["in", 0, 0, {}]]]}],
      "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]]}})");
  const std::vector<float> kernel = {1, 2, 3, 4, 5, 6};  // (3, 2)
  const std::vector<float> bias = {10, 20};
  write_legacy_h5(dir.file("legacy.h5"), config, kernel, bias);
  Model m = load_model(dir.file("legacy.h5"));
  EXPECT_EQ(m.name(), "legacy");
  EXPECT_FALSE(m.compiled());  // no training_config
  const Tensor p = m.predict(Tensor({1, 3}, {1, 1, 1}));
  EXPECT_EQ(p.to_vector(), (std::vector<float>{1 + 3 + 5 + 10, 2 + 4 + 6 + 20}));
}

TEST(ModelConfig, Keras2MultiHeadAttentionValueKwarg) {
  const json config = json::parse(R"({"class_name": "Functional", "config": {"name": "m", "layers": [
      {"class_name": "InputLayer", "config": {"batch_input_shape": [null, 2, 8], "name": "input_1"}, "name": "input_1", "inbound_nodes": []},
      {"class_name": "MultiHeadAttention", "config": {"name": "mha", "trainable": true, "dtype": "float32", "num_heads": 2,
        "key_dim": 4, "value_dim": 4, "dropout": 0.0, "use_bias": false, "output_shape": null, "attention_axes": [1],
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": null}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": null, "bias_regularizer": null,
        "activity_regularizer": null, "kernel_constraint": null, "bias_constraint": null,
        "query_shape": [null, 2, 8], "key_shape": [null, 2, 8], "value_shape": [null, 2, 8]},
       "name": "mha", "inbound_nodes": [[["input_1", 0, 0, {"value": ["input_1", 0, 0]}]]]}],
      "input_layers": [["input_1", 0, 0]], "output_layers": [["mha", 0, 0]]}})");
  Model m = model_from_config(config);
  ASSERT_EQ(m.call_sites().size(), 2u);
  const auto& site = m.call_sites()[1];
  EXPECT_EQ(site->layer->class_name(), "MultiHeadAttention");
  ASSERT_EQ(site->inputs.size(), 2u);
  EXPECT_EQ(site->inputs[0], site->inputs[1]);
  EXPECT_EQ(site->layer->weights().size(), 4u);  // no biases
  EXPECT_EQ(m.outputs()[0]->shape, (Shape{2, 8}));
}

TEST(ModelConfig, Keras3SingleTensorEndpointsAndSequentialWithoutInputLayer) {
  const json functional = json::parse(R"({"class_name": "Functional", "config": {"name": "f", "layers": [
      {"class_name": "InputLayer", "config": {"batch_shape": [null, 5], "name": "x"}, "name": "x", "inbound_nodes": []},
      {"class_name": "Dense", "config": {"name": "d", "units": 3}, "name": "d", "inbound_nodes": [
        {"args": [{"class_name": "__keras_tensor__", "config": {"shape": [null, 5], "dtype": "float32", "keras_history": ["x", 0, 0]}}],
         "kwargs": {}}]}],
      "input_layers": ["x", 0, 0], "output_layers": ["d", 0, 0]}})");
  Model f = model_from_config(functional);
  EXPECT_EQ(f.outputs()[0]->shape, Shape{3});
  const json seq = json::parse(R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
      {"class_name": "Dense", "config": {"name": "a", "units": 4, "batch_input_shape": [null, 7], "activation": "relu"}},
      {"class_name": "Dense", "config": {"name": "b", "units": 2}}]}})");
  Model s = model_from_config(seq);
  EXPECT_EQ(s.class_name(), "Sequential");
  EXPECT_EQ(s.inputs()[0]->shape, Shape{7});
  EXPECT_EQ(s.count_params(), 7 * 4 + 4 + 4 * 2 + 2);
}

TEST(ModelConfig, SnakeCaseMatchesKeras) {
  // Expected values from Keras' regex to_snake_case run in Python.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"MultiHeadAttention", "multi_head_attention"}, {"InputLayer", "input_layer"}, {"GRU", "gru"},
      {"ABcDe", "a_bc_de"}, {"BcDEf", "bc_d_ef"}, {"Conv2DTranspose", "conv2d_transpose"},
      {"HTTPServer2X", "http_server2x"}, {"aBCdEF", "a_b_cd_ef"}, {"Layer-Norm", "layer_norm"}};
  for (const auto& [in, out] : cases) EXPECT_EQ(detail::snake_case(in), out) << in;
}

// ---- errors ----

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const FileError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("WRONG EXCEPTION TYPE: ") + e.what();
  }
  return "NO ERROR";
}

#define EXPECT_FILE_ERROR(expr, file, fragment)                                   \
  do {                                                                            \
    const std::string msg_ = error_of([&] { (void)(expr); });                     \
    EXPECT_NE(msg_.find(file), std::string::npos) << "no file name in: " << msg_; \
    EXPECT_NE(msg_.find(fragment), std::string::npos) << msg_;                    \
    EXPECT_EQ(msg_.find('\n'), std::string::npos) << "not one line: " << msg_;    \
  } while (0)

json dense_model_config(const json& dense_config) {
  json c = json::parse(R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
      {"class_name": "InputLayer", "config": {"batch_shape": [null, 3], "name": "in"}}]}})");
  c["config"]["layers"].push_back({{"class_name", "Dense"}, {"config", dense_config}});
  return c;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string keras_with_config(const TempDir& dir, const std::string& name, const json& config) {
  Model m = sequential_mlp();
  const std::string good = dir.file("good-" + name);
  save_model(m, good);
  zip::Reader z(good);
  const std::string path = dir.file(name);
  zip::write(path,
             {{"metadata.json", z.read("metadata.json")},
              {"config.json", [&] {
                 const std::string s = config.dump();
                 return std::vector<char>(s.begin(), s.end());
               }()},
              {"model.weights.h5", z.read("model.weights.h5")}},
             path);
  return path;
}

TEST(ModelFileErrors, UnsupportedLayerOptionActivationNameTheFile) {
  TempDir dir;
  json conv = dense_model_config({{"name", "d"}, {"units", 2}});
  conv["config"]["layers"][1]["class_name"] = "LSTM";
  std::string p = keras_with_config(dir, "conv.keras", conv);
  EXPECT_FILE_ERROR(load_model(p), p, "unsupported layer LSTM");
  p = keras_with_config(dir, "act.keras", dense_model_config({{"name", "d"}, {"units", 2}, {"activation", "swishy"}}));
  EXPECT_FILE_ERROR(load_model(p), p, "'activation'");
  p = keras_with_config(dir, "reg.keras",
                        dense_model_config({{"name", "d"}, {"units", 2}, {"kernel_regularizer", {{"class_name", "L2"}}}}));
  EXPECT_FILE_ERROR(load_model(p), p, "kernel_regularizer");
  p = keras_with_config(dir, "dtype.keras", dense_model_config({{"name", "d"}, {"units", 2}, {"dtype", "float16"}}));
  EXPECT_FILE_ERROR(load_model(p), p, "float32");
}

TEST(ModelFileErrors, DamagedArchives) {
  TempDir dir;
  Model m = sequential_mlp();
  const std::string good = dir.file("good.keras");
  save_model(m, good);
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  const std::string truncated = dir.file("truncated.keras");
  write_text(truncated, bytes.substr(0, bytes.size() / 2));
  EXPECT_FILE_ERROR(load_model(truncated), truncated, "zip");

  const std::string garbage = dir.file("garbage.keras");
  write_text(garbage, "this is not a zip file at all");
  EXPECT_FILE_ERROR(load_model(garbage), garbage, "not a zip");

  // A flipped byte inside the stored weights fails the member's CRC.
  std::string flipped = bytes;
  const size_t at = flipped.find("\x89HDF");
  ASSERT_NE(at, std::string::npos);
  flipped[at + 2000] = static_cast<char>(flipped[at + 2000] ^ 0x5a);
  const std::string crc = dir.file("crc.keras");
  write_text(crc, flipped);
  EXPECT_FILE_ERROR(load_model(crc), crc, "damaged");

  zip::Reader z(good);
  const std::string missing = dir.file("missing.keras");
  zip::write(missing, {{"metadata.json", z.read("metadata.json")}, {"config.json", z.read("config.json")}}, missing);
  EXPECT_FILE_ERROR(load_model(missing), missing, "missing member 'model.weights.h5'");

  const std::string bad_h5 = dir.file("badh5.keras");
  zip::write(bad_h5,
             {{"config.json", z.read("config.json")}, {"model.weights.h5", std::vector<char>(100, 'x')}}, bad_h5);
  EXPECT_FILE_ERROR(load_model(bad_h5), bad_h5, "not an HDF5 file");

  const std::string bad_json = dir.file("badjson.keras");
  zip::write(bad_json, {{"config.json", std::vector<char>{'{', 'x'}}, {"model.weights.h5", z.read("model.weights.h5")}},
             bad_json);
  EXPECT_FILE_ERROR(load_model(bad_json), bad_json, "config.json is not valid JSON");

  EXPECT_FILE_ERROR(load_model(dir.file("nope.keras")), "nope.keras", "no such file");
}

TEST(ModelFileErrors, WeightsFilesMissingDatasetShapeMismatchNotHdf5) {
  TempDir dir;
  Model a = sequential_mlp();
  const std::string w = dir.file("a.weights.h5");
  save_weights(a, w);

  // A model with a different Dense width: shape mismatch, and the model is left untouched.
  set_random_seed(3);
  Model b = Sequential({4, 5}, {Flatten().ptr(), Dense(17, {.activation = "relu"}).ptr(), Dropout(0.25f).ptr(),
                                Dense(3, {.activation = "softmax"}).ptr()});
  const std::vector<float> before = b.get_weights_flat();
  EXPECT_FILE_ERROR(load_weights(b, w), w, "shape mismatch");
  EXPECT_EQ(b.get_weights_flat(), before);

  // Remove one dataset.
  {
    hid_t f = H5Fopen(w.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    ASSERT_GE(H5Ldelete(f, "layers/dense_1/vars/1", H5P_DEFAULT), 0);
    H5Fclose(f);
  }
  Model c = sequential_mlp();
  EXPECT_FILE_ERROR(load_weights(c, w), w, "layers/dense_1");

  const std::string text = dir.file("text.h5");
  write_text(text, "hello, not HDF5\n");
  EXPECT_FILE_ERROR(load_weights(c, text), text, "not an HDF5 file");
  EXPECT_FILE_ERROR(load_model(text), text, "not an HDF5 file");

  // A weights file is not a model file.
  save_weights(a, w);
  EXPECT_FILE_ERROR(load_model(w), w, "load_weights");
}

TEST(ModelFileErrors, FailedSaveLeavesExistingFileIntact) {
  TempDir dir;
  Model m = sequential_mlp();
  const std::string path = dir.file("m.keras");
  save_model(m, path);
  const auto size = fs::file_size(path);
  // The final name is a directory now: the rename fails and nothing else is touched.
  const std::string blocked = dir.file("blocked.keras");
  fs::create_directory(blocked);
  EXPECT_FILE_ERROR(save_model(m, blocked), blocked, "directory");
  EXPECT_FILE_ERROR(save_model(m, dir.file("no/such/dir/m.keras")), "m.keras", "does not exist");
  EXPECT_FILE_ERROR(save_model(m, dir.file("m.zip")), "m.zip", ".keras");
  EXPECT_EQ(fs::file_size(path), size);
  EXPECT_EQ(dir.listing(), (std::vector<std::string>{"blocked.keras", "m.keras"}));
  EXPECT_NO_THROW(load_model(path));
}

// ---- legacy .h5 writing (Keras' model.save("x.h5")) ----

TEST(LegacyH5, SaveLoadRoundTripKeepsWeightsAndCompileConfig) {
  TempDir dir;
  Model m = attention_model();
  m.compile(optimizers::Adam({.learning_rate = 0.002f}), losses::SparseCategoricalCrossentropy(), {"accuracy"},
            {.logits_semantics = LogitsSemantics::kOutputs});
  m.set_seed(9);
  const Tensor x = random_tensor({16, 4, 6}, 3);
  Tensor mask({16, 4});
  for (int64_t i = 0; i < mask.size(); ++i) mask[i] = (i % 4 == 3) ? 0.0f : 1.0f;
  m.fit({x, mask}, random_labels(16, 3, 4), quiet(1, 4));
  const std::string path = dir.file("attn.h5");
  save_model(m, path);
  Model r = load_model(path);
  EXPECT_EQ(model_to_config(r), model_to_config(m));
  EXPECT_EQ(r.get_weights_flat(), m.get_weights_flat());
  expect_same(m.predict({x, mask})[0], r.predict({x, mask})[0], "predictions after load");
  ASSERT_TRUE(r.compiled());
  EXPECT_EQ(r.compile_options().logits_semantics, LogitsSemantics::kOutputs);
  EXPECT_EQ(r.optimizer()->class_name(), "Adam");
  EXPECT_EQ(r.optimizer()->learning_rate(), 0.002f);
  EXPECT_EQ(r.optimizer()->iterations(), 4);
  EXPECT_EQ(r.metric_names(), m.metric_names());
  EXPECT_EQ(r.seed(), 9u);
  // Continued training: Adam's m and v came back too, so both go on identically.
  m.fit({x, mask}, random_labels(16, 3, 4), quiet(1, 4));
  r.fit({x, mask}, random_labels(16, 3, 4), quiet(1, 4));
  EXPECT_EQ(r.optimizer()->iterations(), 8);
  EXPECT_EQ(m.get_weights_flat(), r.get_weights_flat());

  // Uncompiled, Sequential, .hdf5: no training_config, loads uncompiled.
  Model s = sequential_mlp();
  save_model(s, dir.file("mlp.hdf5"));
  Model t = load_model(dir.file("mlp.hdf5"));
  EXPECT_FALSE(t.compiled());
  EXPECT_EQ(t.class_name(), "Sequential");
  const Tensor xs = random_tensor({5, 4, 5}, 8);
  expect_same(s.predict(xs), t.predict(xs), "sequential predictions after load");
}

TEST(LegacyH5, LayoutAsKerasWritesIt) {
  TempDir dir;
  set_random_seed(3);
  Node in = Input({6}, "features");
  Node h = Dense(4, {.activation = "relu", .name = "hidden"})(in);
  Model m(in, Dense(2, {.name = "out"})(Flatten()(h)), "small");
  m.compile(optimizers::SGD(), losses::MeanSquaredError());
  save_model(m, dir.file("small.h5"));
  const h5::File f = h5::File::open(dir.file("small.h5"));
  const json config = json::parse(f.read_string_attr("", "model_config").at(0));
  EXPECT_EQ(config.at("class_name"), "Functional");
  EXPECT_FALSE(config.contains("module"));
  EXPECT_EQ(config.at("config").at("name"), "small");
  const json training = json::parse(f.read_string_attr("", "training_config").at(0));
  EXPECT_EQ(training.at("optimizer_config").at("class_name"), "SGD");
  EXPECT_FALSE(training.contains("optimizer"));
  EXPECT_EQ(training.at("loss").at("class_name"), "MeanSquaredError");
  EXPECT_EQ(f.read_string_attr("", "backend"), std::vector<std::string>{"tensorflow"});
  const auto layers = f.read_string_attr("model_weights", "layer_names");
  EXPECT_EQ(layers, (std::vector<std::string>{"features", "hidden", m.layers()[2]->name(), "out"}));
  EXPECT_TRUE(f.read_string_attr("model_weights/features", "weight_names").empty());
  EXPECT_EQ(f.read_string_attr("model_weights/hidden", "weight_names"),
            (std::vector<std::string>{"hidden/kernel", "hidden/bias"}));
  const h5::Array kernel = f.read_floats("model_weights/hidden/hidden/kernel");
  EXPECT_EQ(kernel.shape, (Shape{6, 4}));
  const auto& w = m.layers()[1]->weights()[0];
  EXPECT_EQ(kernel.values, std::vector<float>(w.value.data(), w.value.data() + 24));
  // The optimizer's variables as Keras names them (SGD without momentum: no slots).
  EXPECT_EQ(f.read_string_attr("optimizer_weights", "weight_names"),
            (std::vector<std::string>{"SGD/iteration", "SGD/learning_rate"}));
  EXPECT_EQ(f.read_int64("optimizer_weights/SGD/iteration"), 0);
}

// Writes `names` as the group's weight_names attribute: fixed-length strings, as h5py writes them.
void write_weight_names(hid_t file, const char* group, const std::vector<std::string>& names) {
  size_t width = 1;
  for (const std::string& n : names) width = std::max(width, n.size());
  std::string packed;
  for (const std::string& n : names) packed += n + std::string(width - n.size(), '\0');
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, width);
  const hsize_t count = names.size();
  const hid_t space = H5Screate_simple(1, &count, nullptr);
  const hid_t a = H5Acreate_by_name(file, group, "weight_names", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  EXPECT_GE(H5Awrite(a, type, packed.data()), 0);
  H5Aclose(a);
  H5Sclose(space);
  H5Tclose(type);
}

// tf.keras 2 wrote its optimizer's own variables ("Adam/iter:0", every m, then every v), matched
// by variable path (restored from a real tf.keras 2.9 file in keras_fixtures_test). A list that
// does not fit the model (a slot of a variable it lacks) leaves the optimizer fresh rather than
// misread; one naming a dataset the file lacks is an error that names it.
TEST(LegacyH5, Keras2OptimizerWeightsThatDoNotFitAreNotRestored) {
  TempDir dir;
  Model m = sequential_mlp();
  m.compile(optimizers::Adam(), losses::SparseCategoricalCrossentropy());
  m.fit(random_tensor({8, 4, 5}, 1), random_labels(8, 3, 2), quiet(1, 4));
  const std::string path = dir.file("old.h5");
  const auto write_names = [&](const std::vector<std::string>& names) {
    save_model(m, path);
    const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    ASSERT_GE(H5Adelete_by_name(file, "optimizer_weights", "weight_names", H5P_DEFAULT), 0);
    write_weight_names(file, "optimizer_weights", names);
    H5Fclose(file);
  };
  write_names({"Adam/dense_9/kernel/m:0", "Adam/iter:0"});
  Model r = load_model(path);
  EXPECT_EQ(r.optimizer()->iterations(), 0);
  EXPECT_FALSE(r.optimizer_built());
  EXPECT_EQ(r.get_weights_flat(), m.get_weights_flat());
  write_names({"Adam/iter:0"});
  try {
    load_model(path);
    ADD_FAILURE() << "a listed optimizer variable the file lacks was not an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer_weights/Adam/iter:0"), std::string::npos) << e.what();
  }
}

// Standalone Keras 2 (2.0-2.3) named its optimizer's slots by position ("training/Adam/m_0_1:0",
// the "_1" being TensorFlow's) and restored them by position: every m in the model's variable
// order, then every v, then Adam's one-float "vhat" placeholders. Written here as that Keras
// writes them (the real fixture of this layout has SGD without momentum, so no state to check).
// Out of order, the state is not restored; a slot of the wrong shape is an error naming it.
TEST(LegacyH5, StandaloneKeras2OptimizerStateIsRestoredByPosition) {
  TempDir dir;
  Model m = sequential_mlp();
  m.compile(optimizers::Adam(), losses::SparseCategoricalCrossentropy());
  m.fit(random_tensor({16, 4, 5}, 1), random_labels(16, 3, 2), quiet(1, 4));
  const auto& vars = m.trainable_variables();
  ASSERT_EQ(vars.size(), 4u);
  std::map<int64_t, Shape> shapes;
  for (Weight* w : m.weights()) shapes[w->offset] = w->shape;

  const std::string path = dir.file("keras2.h5");
  // order[k] is the variable whose slots the k-th entry of each kind holds; `kernel_shape` that of
  // the first kind's entry 0. `kinds` pairs Keras 2's slot kinds with ours.
  using Kinds = std::vector<std::pair<std::string, std::string>>;
  const auto write_keras2 = [&](const std::vector<size_t>& order, const Shape& kernel_shape,
                                const Kinds& kinds = {{"m", "momentum"}, {"v", "velocity"}}) {
    optimizers::Optimizer& opt = *m.optimizer();  // Adam, then RMSprop below
    const std::string scope = opt.class_name();
    save_model(m, path);
    const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    ASSERT_GE(H5Ldelete(file, "optimizer_weights", H5P_DEFAULT), 0);
    const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    std::vector<std::string> names = {scope + "/iterations:0"};
    const int64_t iterations = opt.iterations();
    const hid_t scalar = H5Screate(H5S_SCALAR);
    const hid_t it = H5Dcreate2(file, ("optimizer_weights/" + names[0]).c_str(), H5T_STD_I64LE, scalar, lcpl,
                                H5P_DEFAULT, H5P_DEFAULT);
    EXPECT_GE(H5Dwrite(it, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &iterations), 0);
    H5Dclose(it);
    H5Sclose(scalar);
    const auto write = [&](const std::string& name, Shape shape, const float* values) {
      names.push_back(name);
      std::vector<hsize_t> dims(shape.begin(), shape.end());
      const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
      const hid_t d = H5Dcreate2(file, ("optimizer_weights/" + name).c_str(), H5T_IEEE_F32LE, space, lcpl,
                                 H5P_DEFAULT, H5P_DEFAULT);
      EXPECT_GE(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), 0);
      H5Dclose(d);
      H5Sclose(space);
    };
    for (const auto& [kind, slot] : kinds)
      for (size_t k = 0; k < order.size(); ++k) {
        const auto& var = vars[order[k]];
        write("training/" + scope + "/" + kind + "_" + std::to_string(order[k]) + "_1:0",
              order[k] == 0 && kind == kinds[0].first ? kernel_shape : shapes[var.offset], opt.state(slot) + var.offset);
      }
    const float zero = 0.0f;
    if (scope == "Adam")
      for (size_t k = 0; k < order.size(); ++k) write("training/Adam/vhat_" + std::to_string(k) + "_1:0", {1}, &zero);
    write_weight_names(file, "optimizer_weights", names);
    H5Pclose(lcpl);
    H5Fclose(file);
  };
  const Shape kernel = shapes[vars[0].offset];
  write_keras2({0, 1, 2, 3}, kernel);
  Model r = load_model(path);
  ASSERT_TRUE(r.optimizer_built());
  const auto expect_restored = [&](const Model& loaded, const std::vector<std::string>& slots) {
    const optimizers::Optimizer& opt = *m.optimizer();
    EXPECT_EQ(loaded.optimizer()->iterations(), opt.iterations());
    EXPECT_GT(opt.iterations(), 0);
    for (const std::string& slot : slots)
      for (const auto& var : vars) {
        const float* want = m.optimizer()->state(slot) + var.offset;
        const float* got = loaded.optimizer()->state(slot) + var.offset;
        EXPECT_EQ(std::vector<float>(got, got + var.size), std::vector<float>(want, want + var.size))
            << slot << " at offset " << var.offset;
      }
  };
  expect_restored(r, {"momentum", "velocity"});
  write_keras2({1, 0, 2, 3}, kernel);  // m_1 listed before m_0
  Model shuffled = load_model(path);
  EXPECT_FALSE(shuffled.optimizer_built());
  EXPECT_EQ(shuffled.optimizer()->iterations(), 0);
  write_keras2({0, 1, 2, 3}, {kernel[1], kernel[0]});
  EXPECT_FILE_ERROR(load_model(path), "optimizer_weights/training/Adam/m_0_1:0", "shape mismatch");
  // RMSprop kept one "accumulator_<i>" per variable: Keras 3's velocity.
  m.compile(optimizers::RMSprop(), losses::SparseCategoricalCrossentropy());
  m.fit(random_tensor({16, 4, 5}, 3), random_labels(16, 3, 4), quiet(1, 4));
  write_keras2({0, 1, 2, 3}, kernel, {{"accumulator", "velocity"}});
  Model rms = load_model(path);
  ASSERT_EQ(rms.optimizer()->class_name(), "RMSprop");
  ASSERT_TRUE(rms.optimizer_built());
  expect_restored(rms, {"velocity"});
}

// libhdf5 1.10 copies a global heap object (Keras' model_config string lives in one) by the size
// its header claims: one damaged size byte crashed it. Such a file is refused, naming it.
TEST(LegacyH5, DamagedGlobalHeapIsRefusedNotCrashed) {
  TempDir dir;
  Model m = sequential_mlp();
  const std::string path = dir.file("heap.h5");
  save_model(m, path);
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const size_t gcol = bytes.find(std::string("GCOL\1\0\0\0", 8));
  ASSERT_NE(gcol, std::string::npos) << "no global heap in the file";
  // The first object's size (8 bytes at +8 of the object, which starts 16 bytes in): make it 1 GB.
  bytes[gcol + 16 + 8 + 3] = '\x40';
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_FILE_ERROR(load_model(path), "heap.h5", "global heap");
}

TEST(LegacyH5, FailedSaveLeavesExistingFileIntact) {
  TempDir dir;
  Model m = sequential_mlp();
  const std::string path = dir.file("m.h5");
  save_model(m, path);
  const auto size = fs::file_size(path);
  fs::create_directory(dir.file("blocked.h5"));
  EXPECT_FILE_ERROR(save_model(m, dir.file("blocked.h5")), "blocked.h5", "directory");
  EXPECT_EQ(fs::file_size(path), size);
  EXPECT_EQ(dir.listing(), (std::vector<std::string>{"blocked.h5", "m.h5"}));
  EXPECT_NO_THROW(load_model(path));
}

// ---- the layout checked by an independent reader (h5py) ----

TEST(KerasFile, PythonLayoutCheck) {
  if (std::system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 with h5py is not available";
  TempDir dir;
  const std::string script = std::string(ATTN_SOURCE_DIR) + "/tests/scripts/check_keras_file.py";
  Model m = attention_model();
  m.compile(optimizers::Adam(), losses::SparseCategoricalCrossentropy(), {"accuracy"});
  m.build_optimizer();
  save_model(m, dir.file("attn.keras"));
  Model s = sequential_mlp();
  save_model(s, dir.file("mlp.keras"));
  // Token ids: Embedding (mask_zero), keras_hub's PositionEmbedding, MultiHeadAttention,
  // LayerNormalization.
  {
    auto ids = Input({6});
    auto x = layers::Embedding(12, 8, {.mask_zero = true})(ids);
    x = layers::Add()({x, layers::PositionEmbedding(6)(x)});
    x = layers::LayerNormalization()(layers::Add()({x, layers::MultiHeadAttention(2, 4)({x, x})}));
    Model t(ids, layers::Dense(3)(layers::GlobalAveragePooling1D()(x)));
    t.compile(optimizers::Adam(), losses::SparseCategoricalCrossentropy({.from_logits = true}));
    t.build_optimizer();
    save_model(t, dir.file("tokens.keras"));
  }
  // A series: Permute, Conv1D with and without bias.
  {
    auto series = Input({5, 12});
    auto x = layers::Permute({2, 1})(series);
    x = layers::Conv1D(3, 1, {.use_bias = false})(layers::Conv1D(4, 3, {.padding = "causal", .activation = "relu"})(x));
    Model c(series, layers::Dense(2)(layers::Flatten()(x)));
    c.compile(optimizers::Adam(), losses::MeanSquaredError());
    c.build_optimizer();
    save_model(c, dir.file("series.keras"));
  }
  // An image: Conv2D with and without bias, 2D poolings, BatchNormalization (the moving
  // statistics have no Adam slots).
  {
    auto image = Input({9, 8, 2});
    auto x = layers::Conv2D(4, {3, 2}, {.padding = "same", .activation = "relu"})(image);
    x = layers::BatchNormalization({.center = false})(x);  // gamma, moving mean and variance
    x = layers::Conv2D(3, 1, {.use_bias = false})(layers::MaxPooling2D(2)(x));
    x = layers::BatchNormalization({.axis = 1})(x);
    Model c(image, layers::Dense(2)(layers::GlobalAveragePooling2D()(x)));
    c.compile(optimizers::Adam(), losses::MeanSquaredError());
    c.build_optimizer();
    save_model(c, dir.file("image.keras"));
  }
  for (const char* f : {"attn.keras", "mlp.keras", "tokens.keras", "series.keras", "image.keras"}) {
    const std::string cmd = "/usr/bin/python3 " + script + " " + dir.file(f);
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  // And it can fail: a zip without the weights member is rejected.
  zip::Reader z(dir.file("mlp.keras"));
  zip::write(dir.file("bad.keras"), {{"metadata.json", z.read("metadata.json")}, {"config.json", z.read("config.json")}},
             "bad.keras");
  const std::string bad = "/usr/bin/python3 " + script + " " + dir.file("bad.keras") + " 2>/dev/null";
  EXPECT_NE(std::system(bad.c_str()), 0);
}

// A legacy .h5 read the way Keras' legacy loader reads it; and the check can fail (a .keras
// weights file, with no model_config, is rejected).
TEST(LegacyH5, PythonLayoutCheck) {
  if (std::system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 with h5py is not available";
  TempDir dir;
  const std::string script = std::string(ATTN_SOURCE_DIR) + "/tests/scripts/check_legacy_h5.py";
  Model m = attention_model();
  m.compile(optimizers::Adam(), losses::SparseCategoricalCrossentropy(), {"accuracy"});
  save_model(m, dir.file("attn.h5"));
  Model s = sequential_mlp();
  save_model(s, dir.file("mlp.h5"));
  for (const char* f : {"attn.h5", "mlp.h5"}) {
    const std::string cmd = "/usr/bin/python3 " + script + " " + dir.file(f);
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  Model w = sequential_mlp();
  save_weights(w, dir.file("w.weights.h5"));
  const std::string bad = "/usr/bin/python3 " + script + " " + dir.file("w.weights.h5") + " >/dev/null";
  EXPECT_NE(std::system(bad.c_str()), 0);
}

}  // namespace
}  // namespace attn::io
