// Model files: Keras 3 `.keras` archives (zip of metadata.json, config.json and
// model.weights.h5), legacy Keras `.h5` files, and `.weights.h5` weight files.
// Files are written to a temporary name and renamed, so an interrupted save never
// leaves a damaged file under the final name. Errors throw attn::io::FileError
// naming the file and what is wrong (unsupported layer, missing dataset, shape...).
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "attn/model.hpp"

namespace attn::io {

class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Calls write(tmp) with a temporary path next to `path`, then renames it to `path`: if write
// throws, the temporary file is removed and `path` is left as it was. Through a symbolic link the
// file it points to is replaced; a device or FIFO (/dev/null, a pipe) is written into, not replaced.
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp)>& write);
// write_atomically with the bytes of `text`.
void write_text_atomically(const std::string& path, const std::string& text);

// Saves architecture, weights, compile config and optimizer state (Keras 3 layout; Adam's
// slots interleaved m, v per variable). metadata.json also holds an "attn" entry (seed,
// logits choice) that Keras ignores and load_model restores. A path ending in .h5 or .hdf5
// writes Keras' legacy HDF5 format instead, as Keras 3's model.save does: architecture, compile
// config, weights and the optimizer's variables (optimizer_weights, Keras 3's order).
void save_model(Model& model, const std::string& path);
// Loads a `.keras` or legacy `.h5` file; compiles it when the file has a compile config
// (unsupported metrics or an unknown optimizer are a warning on stderr, not an error).
// Optimizer state is restored when it matches the compiled optimizer: from .keras files and
// from legacy .h5 files in Keras 3's, tf.keras 2's and standalone Keras 2's layouts.
Model load_model(const std::string& path);
// Builds a model from a Keras model config (the "config.json" of a .keras file, or a legacy
// model_config): {"class_name": "Functional"|"Sequential", "config": ...}. Compiled as its
// "compile_config" says when it has one (as Keras' deserialization does), else uncompiled.
// Errors name `source` (the file the config came from).
Model model_from_config(const nlohmann::json& config, const std::string& source = "model config");
// Keras config JSON of a model (what config.json holds).
nlohmann::json model_to_config(const Model& model);

void save_weights(Model& model, const std::string& path);  // path must end in .weights.h5
void load_weights(Model& model, const std::string& path);  // .weights.h5 or legacy .h5

}  // namespace attn::io

namespace attn {
using io::load_model;
}
