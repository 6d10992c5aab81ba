// save_model / load_model / save_weights / load_weights (see attn/io.hpp).
//
// Keras 3 weights tree (model.weights.h5 inside a .keras zip, or a .weights.h5 file):
//   layers/<snake_case(class)>[_k]/vars/<i>   (k counts earlier layers of that class)
//   optimizer/vars/0 = iterations (int64), 1 = learning_rate (float32; absent with a schedule),
//   then the slots
//   vars/                                      (the model's own variables: none)
// Legacy .h5: root attrs model_config / training_config and
// model_weights/<layer name>/<weight name> listed by the group's weight_names attr.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "attn/system.hpp"
#include "io/hdf5_file.hpp"
#include "io/io_internal.hpp"
#include "io/zip_archive.hpp"

namespace attn::io {
namespace {

using json = nlohmann::json;

constexpr const char* kKerasVersion = "3.10.0";  // the Keras 3 layout these files follow

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_text(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  if (s.size() == 1) out += ",";
  return out + ")";
}

void warn(const std::string& file, const std::string& what) {
  std::fprintf(stderr, "attn: warning: %s: %s\n", file.c_str(), what.c_str());
}

std::vector<char> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }

// ---- the Keras 3 weights tree ----

struct LayerGroup {
  std::string path;  // "layers/dense_1"
  Layer* layer;
};

// Keras 3 names layer groups from model.layers: snake_case(class name) plus a counter.
// Sequential's model.layers leaves out the InputLayer; a Functional's includes it.
std::vector<LayerGroup> layer_groups(const Model& model) {
  std::vector<LayerGroup> out;
  std::map<std::string, int> seen;
  for (const auto& l : model.layers()) {
    const std::string base = detail::snake_case(l->class_name());
    const int k = seen[base]++;
    out.push_back({"layers/" + (k == 0 ? base : base + "_" + std::to_string(k)), l.get()});
  }
  return out;
}

struct SlotVar {
  std::string slot;
  const optimizers::VariableSlice* var;
  Shape shape;
};

// Optimizer variables after iterations and learning_rate, in Keras 3's creation order.
// Adam/AdamW create momentum and velocity together, interleaved per model variable
// (add_optimizer_variables with two names); every other slot is one block per slot.
std::vector<SlotVar> optimizer_layout(Model& model) {
  std::vector<SlotVar> out;
  optimizers::Optimizer* opt = model.optimizer();
  if (!opt) return out;
  std::map<int64_t, Shape> shapes;
  for (Weight* w : model.weights()) shapes[w->offset] = w->shape;
  const auto& vars = model.trainable_variables();
  std::vector<std::vector<std::string>> blocks;
  std::vector<std::string> slots = opt->state_slots();
  const std::string cls = opt->class_name();
  size_t first = 0;
  if ((cls == "Adam" || cls == "AdamW") && slots.size() >= 2 && slots[0] == "momentum" && slots[1] == "velocity") {
    blocks.push_back({slots[0], slots[1]});
    first = 2;
  }
  for (size_t i = first; i < slots.size(); ++i) blocks.push_back({slots[i]});
  for (const auto& block : blocks)
    for (const auto& v : vars)
      for (const auto& slot : block) out.push_back({slot, &v, shapes[v.offset]});
  return out;
}

// Keras 3's path of a layer variable: "dense/kernel"; a Sequential model builds its layers
// inside its own name scope: "sequential/dense/kernel".
std::string variable_path(const Model& model, const Layer& layer, const Weight& w) {
  return (model.class_name() == "Sequential" ? model.name() + "/" : "") + layer.name() + "/" + w.name;
}

// The optimizer's variables in Keras 3's order (optimizer.variables): iterations, the learning
// rate (not with a schedule: its config holds it), then the slots once built, each written at
// path_of(index, Keras' variable name).
void write_optimizer_variables(h5::File& f, Model& model,
                               const std::function<std::string(size_t, const std::string&)>& path_of) {
  optimizers::Optimizer* opt = model.optimizer();
  size_t index = 0;
  f.write_int64(path_of(index++, "iteration"), opt->iterations());
  if (!opt->learning_rate_schedule()) {
    const float lr = opt->learning_rate();
    f.write_floats(path_of(index++, "learning_rate"), {}, &lr);
  }
  if (model.optimizer_built()) {
    std::map<int64_t, std::string> var_path;  // by offset: Keras' variable path, "dense/kernel"
    for (const auto& l : model.layers())
      for (const Weight& w : l->weights()) var_path[w.offset] = variable_path(model, *l, w);
    for (const SlotVar& sv : optimizer_layout(model)) {
      // Keras names a slot after its variable's path: "dense/kernel" -> "dense_kernel_momentum".
      std::string var = var_path[sv.var->offset];
      std::replace(var.begin(), var.end(), '/', '_');
      f.write_floats(path_of(index++, var + "_" + sv.slot), sv.shape, opt->state(sv.slot) + sv.var->offset);
    }
  }
}

void write_tree(h5::File& f, Model& model, bool with_optimizer) {
  f.ensure_group("layers");
  for (const LayerGroup& g : layer_groups(model)) {
    f.ensure_group(g.path + "/vars");
    f.write_string_attr(g.path + "/vars", "name", g.layer->name());
    const auto locs = detail::weight_locations(*g.layer);
    const auto& ws = g.layer->weights();
    for (size_t i = 0; i < ws.size(); ++i) {
      const std::string group = g.path + "/" + locs[i].group;
      if (!f.exists(group)) {
        f.ensure_group(group);
        f.write_string_attr(group, "name", ws[i].name.substr(0, ws[i].name.find('/')));
      }
      f.write_floats(group + "/" + locs[i].dataset, ws[i].shape, ws[i].value.data());
    }
  }
  if (with_optimizer && model.optimizer()) {
    optimizers::Optimizer* opt = model.optimizer();
    f.ensure_group("optimizer/vars");
    f.write_string_attr("optimizer/vars", "name", opt->get_config().value("name", opt->class_name()));
    write_optimizer_variables(f, model, [](size_t i, const std::string&) { return "optimizer/vars/" + std::to_string(i); });
  }
  f.ensure_group("vars");
  f.write_string_attr("vars", "name", model.name());
}

// The values of one weight's dataset, after checking it exists and has the weight's shape.
std::vector<float> read_weight(const h5::File& f, const std::string& path, const std::string& who, const Weight& w) {
  if (!f.exists(path)) f.fail("missing dataset '" + path + "' (" + who + ", weight '" + w.name + "')");
  h5::Array a = f.read_floats(path);
  if (a.shape != w.shape)
    f.fail("shape mismatch for " + who + " weight '" + w.name + "' (" + path + "): the file has " +
           shape_text(a.shape) + ", the model expects " + shape_text(w.shape));
  return std::move(a.values);
}

size_t count_datasets(const h5::File& f, const std::string& group) {
  if (!f.is_group(group)) return 0;
  size_t n = 0;
  for (const auto& c : f.children(group))
    if (f.is_dataset(group + "/" + c)) ++n;
  return n;
}

// Reads every layer's weights into a scratch copy first, so a failure leaves the model as it was.
void read_layers(const h5::File& f, Model& model) {
  std::vector<std::pair<Weight*, std::vector<float>>> staged;
  for (const LayerGroup& g : layer_groups(model)) {
    auto& ws = g.layer->weights();
    const std::string who = "layer '" + g.layer->name() + "' (" + g.layer->class_name() + ", group " + g.path + ")";
    if (ws.empty()) continue;
    if (!f.is_group(g.path)) f.fail("missing group '" + g.path + "' for " + who);
    bool old_names = false;
    if (g.layer->class_name() == "MultiHeadAttention" && !f.exists(g.path + "/query_dense") &&
        f.exists(g.path + "/_query_dense"))
      old_names = true;
    const auto locs = detail::weight_locations(*g.layer, old_names);
    if (g.layer->class_name() != "MultiHeadAttention") {
      const size_t n = count_datasets(f, g.path + "/vars");
      if (n != ws.size())
        f.fail(who + " has " + std::to_string(ws.size()) + " weights but the file has " + std::to_string(n));
    }
    for (size_t i = 0; i < ws.size(); ++i) {
      const std::string path = g.path + "/" + locs[i].group + "/" + locs[i].dataset;
      staged.emplace_back(&ws[i], read_weight(f, path, who, ws[i]));
    }
  }
  for (auto& [w, values] : staged)
    if (!values.empty()) std::copy(values.begin(), values.end(), w->value.data());
}

// Restores iterations, learning rate and slots from the optimizer variables at `paths` (in
// write_optimizer_variables' order) when they match the model's optimizer (as Keras 3 does, a
// mismatch is a warning and the optimizer starts fresh).
void read_optimizer_variables(const h5::File& f, Model& model, const std::vector<std::string>& paths) {
  const size_t n = paths.size();
  if (!model.optimizer() || n == 0) return;
  optimizers::Optimizer* opt = model.optimizer();
  const std::vector<SlotVar> layout = optimizer_layout(model);
  const bool has_rate = opt->learning_rate_schedule() == nullptr;  // else the schedule's config holds it
  const size_t first_slot = has_rate ? 2 : 1, expected = first_slot + layout.size();
  if (n != first_slot && n != expected) {
    warn(f.name(), "skipping the saved optimizer state: the file has " + std::to_string(n) +
                       " optimizer variables, the model's " + opt->class_name() + " has " + std::to_string(expected));
    return;
  }
  const int64_t iterations = f.read_int64(paths[0]);
  if (iterations < 0) f.fail(paths[0] + ": negative iteration count");
  float rate = 0.0f;
  if (has_rate) {
    const h5::Array lr = f.read_floats(paths[1]);
    if (lr.values.size() != 1) f.fail(paths[1] + ": the learning rate should be one number");
    rate = lr.values[0];
  }
  std::vector<std::vector<float>> slots;  // none when the model was saved before its first step
  for (size_t i = 0; n == expected && i < layout.size(); ++i) {
    const std::string& path = paths[i + first_slot];
    h5::Array a = f.read_floats(path);
    if (a.shape != layout[i].shape)
      f.fail("shape mismatch for optimizer variable " + path + " (" + layout[i].slot + " of '" + layout[i].var->name +
             "'): the file has " + shape_text(a.shape) + ", the model expects " + shape_text(layout[i].shape));
    slots.push_back(std::move(a.values));
  }
  opt->set_iterations(iterations);
  if (has_rate) opt->set_learning_rate(rate);
  if (slots.empty()) return;
  model.build_optimizer();
  for (size_t i = 0; i < layout.size(); ++i)
    std::copy(slots[i].begin(), slots[i].end(), opt->state(layout[i].slot) + layout[i].var->offset);
}

void read_optimizer(const h5::File& f, Model& model) {
  if (!model.optimizer() || !f.is_group("optimizer/vars")) return;
  std::vector<std::string> paths;
  for (size_t i = 0, n = count_datasets(f, "optimizer/vars"); i < n; ++i)
    paths.push_back("optimizer/vars/" + std::to_string(i));
  read_optimizer_variables(f, model, paths);
}

// ---- legacy .h5 ----

std::vector<std::string> chunked_attr(const h5::File& f, const std::string& path, const std::string& attr) {
  bool found = false;
  std::vector<std::string> v = f.read_string_attr(path, attr, &found);
  if (found) return v;
  // tf.keras splits attributes over 64 KiB into attr0, attr1, ...
  for (int i = 0;; ++i) {
    std::vector<std::string> part = f.read_string_attr(path, attr + std::to_string(i), &found);
    if (!found) break;
    v.insert(v.end(), part.begin(), part.end());
  }
  return v;
}

std::string strip_zero(const std::string& s) { return ends_with(s, ":0") ? s.substr(0, s.size() - 2) : s; }

void read_legacy_weights(const h5::File& f, const std::string& root, Model& model) {
  const std::string prefix = root.empty() ? "" : root + "/";
  std::vector<Layer*> with_weights;
  for (const auto& l : model.layers())
    if (!l->weights().empty()) with_weights.push_back(l.get());
  bool found = false;
  std::vector<std::string> names = f.read_string_attr(root, "layer_names", &found);
  if (!found) names = chunked_attr(f, root, "layer_names");
  // The file's layers that hold weights, in order.
  std::vector<std::string> file_layers;
  for (const auto& n : names)
    if (!chunked_attr(f, prefix + n, "weight_names").empty()) file_layers.push_back(n);
  // Match by name when every layer is there (load_model), else by position (tf.keras' load_weights).
  bool by_name = true;
  for (Layer* l : with_weights)
    if (std::find(file_layers.begin(), file_layers.end(), l->name()) == file_layers.end()) by_name = false;
  if (!by_name && file_layers.size() != with_weights.size())
    f.fail("the file has weights for " + std::to_string(file_layers.size()) + " layers, the model has " +
           std::to_string(with_weights.size()) + " layers with weights");
  std::vector<std::pair<Weight*, std::vector<float>>> staged;
  for (size_t li = 0; li < with_weights.size(); ++li) {
    Layer* l = with_weights[li];
    const std::string group = by_name ? l->name() : file_layers[li];
    const std::string who = "layer '" + l->name() + "' (" + l->class_name() + ", group " + prefix + group + ")";
    const std::vector<std::string> wnames = chunked_attr(f, prefix + group, "weight_names");
    auto& ws = l->weights();
    if (wnames.size() != ws.size())
      f.fail(who + " has " + std::to_string(ws.size()) + " weights but the file lists " + std::to_string(wnames.size()));
    // Pair by variable name ("kernel", "query/kernel") when that is unambiguous: a file
    // may list bias before kernel. Otherwise by position.
    std::vector<size_t> pick(ws.size());
    bool named = true;
    for (size_t i = 0; i < ws.size() && named; ++i) {
      int hits = 0;
      for (size_t j = 0; j < wnames.size(); ++j) {
        const std::string n = strip_zero(wnames[j]);
        if (n == ws[i].name || ends_with(n, "/" + ws[i].name)) {
          pick[i] = j;
          ++hits;
        }
      }
      if (hits != 1) named = false;
    }
    if (named) {
      std::set<size_t> distinct(pick.begin(), pick.end());
      if (distinct.size() != pick.size()) named = false;
    }
    if (!named)
      for (size_t i = 0; i < ws.size(); ++i) pick[i] = i;
    for (size_t i = 0; i < ws.size(); ++i) {
      const std::string path = prefix + group + "/" + wnames[pick[i]];
      staged.emplace_back(&ws[i], read_weight(f, path, who, ws[i]));
    }
  }
  for (auto& [w, values] : staged)
    if (!values.empty()) std::copy(values.begin(), values.end(), w->value.data());
}

json parse_json(const std::string& text, const std::string& file, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    detail::fail(file, what + " is not valid JSON (" + e.what() + ")");
  }
}

// ---- compiling from a saved compile/training config ----

std::vector<std::string> metric_names(const json& m, std::vector<std::string>& dropped) {
  static const std::set<std::string> ok = {"accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy",
                                           "binary_accuracy"};
  std::vector<std::string> out;
  std::function<void(const json&)> walk = [&](const json& j) {
    if (j.is_null()) return;
    if (j.is_array()) {
      for (const auto& v : j) walk(v);
    } else if (j.is_object() && !j.contains("class_name")) {
      for (const auto& [k, v] : j.items()) walk(v);  // per-output dict
    } else if (j.is_string()) {
      (ok.count(j.get<std::string>()) ? out : dropped).push_back(j.get<std::string>());
    } else if (j.is_object()) {
      const json c = j.value("config", json::object());
      std::string name = c.is_object() ? c.value("name", std::string()) : std::string();
      const std::string fn = c.is_object() ? c.value("fn", std::string()) : std::string();
      const std::string cls = j.value("class_name", std::string());
      if (ok.count(name)) {
        out.push_back(name);
      } else if (ok.count(fn)) {
        out.push_back(fn);
      } else {
        dropped.push_back(name.empty() ? cls : name);
      }
    }
  };
  walk(m);
  std::vector<std::string> unique;
  for (const auto& s : out)
    if (std::find(unique.begin(), unique.end(), s) == unique.end()) unique.push_back(s);
  return unique;
}

void compile_from(Model& model, const json& cfg, const std::string& optimizer_key, const std::string& file,
                  CompileOptions options = {}) {
  if (!cfg.is_object()) return;
  json loss = cfg.value("loss", json());
  if (loss.is_null()) {
    warn(file, "the saved compile config has no loss; the model is not compiled");
    return;
  }
  if (loss.is_object() && !loss.contains("class_name")) {
    if (loss.size() != 1) {
      warn(file, "per-output losses are not supported; the model is not compiled");
      return;
    }
    loss = loss.begin().value();
  }
  json opt = cfg.value(optimizer_key, json());
  if (opt.is_null()) opt = "rmsprop";  // Keras' compile() default
  if (opt.is_object() && opt.contains("class_name") && opt.at("class_name").is_string()) {
    std::string cls = opt.at("class_name").get<std::string>();
    if (cls.rfind("Custom>", 0) == 0) opt["class_name"] = cls.substr(7);  // tf.keras 2.11+ spelling
  }
  std::vector<std::string> dropped;
  const std::vector<std::string> metrics = metric_names(cfg.value("metrics", json()), dropped);
  try {
    model.compile(optimizers::optimizer_from_json(opt), losses::loss_from_json(loss), metrics, options);
  } catch (const std::exception& e) {
    warn(file, std::string("the model is not compiled: ") + e.what());
    return;
  }
  for (const auto& d : dropped) warn(file, "metric '" + d + "' is not supported and was left out");
}

std::string date_saved() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d@%H:%M:%S", &tm);
  return buf;
}

bool starts_with_bytes(const std::string& path, const char* magic, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string buf(n, '\0');
  if (!in.read(buf.data(), static_cast<std::streamsize>(n))) return false;
  return buf.compare(0, n, magic, n) == 0;
}

// attn's own additions to a model file (metadata.json's "attn" entry in a .keras file, the
// root attribute "attn" of a legacy .h5; Keras ignores both): the training seed, so a resumed
// run shuffles and drops out as the uninterrupted one would, and the logits choice.
json attn_metadata(const Model& model) {
  json extra = {{"version", attn::version()}, {"seed", model.seed()}};
  if (model.compiled())
    extra["logits_semantics"] =
        model.compile_options().logits_semantics == LogitsSemantics::kOutputs ? "outputs" : "tensorflow";
  return extra;
}

CompileOptions compile_options_from(const json& attn_meta) {
  CompileOptions options;
  if (attn_meta.value("logits_semantics", std::string()) == "outputs") options.logits_semantics = LogitsSemantics::kOutputs;
  options.warn = false;  // the user saw the warning when the model was first compiled
  return options;
}

void restore_seed(Model& model, const json& attn_meta) {
  if (attn_meta.contains("seed") && attn_meta.at("seed").is_number_unsigned())
    model.set_seed(attn_meta.at("seed").get<uint64_t>());
}

Model load_keras(const std::string& path) {
  zip::Reader z(path);
  for (const char* m : {"config.json", "model.weights.h5"})
    if (!z.has(m)) detail::fail(path, std::string("missing member '") + m + "' in the archive (not a Keras 3 .keras file?)");
  const std::vector<char> cfg_bytes = z.read("config.json");
  const json config = parse_json(std::string(cfg_bytes.begin(), cfg_bytes.end()), path, "config.json");
  json attn_meta = json::object();
  if (z.has("metadata.json")) {
    const std::vector<char> m = z.read("metadata.json");
    const json meta = parse_json(std::string(m.begin(), m.end()), path, "metadata.json");
    if (meta.is_object() && meta.contains("attn") && meta.at("attn").is_object()) attn_meta = meta.at("attn");
  }
  Model model = detail::model_from_config(config, path);
  if (config.contains("compile_config") && !config.at("compile_config").is_null())
    compile_from(model, config.at("compile_config"), "optimizer", path, compile_options_from(attn_meta));
  restore_seed(model, attn_meta);
  h5::File f = h5::File::open_image(z.read("model.weights.h5"), path + " (model.weights.h5)");
  read_layers(f, model);
  read_optimizer(f, model);
  return model;
}

// Keras 2's name of an optimizer variable without ":0", a "training/" scope and the optimizer's
// own name: "training/Adam/dense/kernel/m:0" -> "dense/kernel/m"; "" when nothing is left.
std::string keras2_slot_path(const std::string& name) {
  std::string rest = name;
  if (ends_with(rest, ":0")) rest.resize(rest.size() - 2);
  if (rest.rfind("training/", 0) == 0) rest = rest.substr(9);
  const size_t scope = rest.find('/');
  return scope == std::string::npos ? "" : rest.substr(scope + 1);
}

// tf.keras 2's legacy files list the optimizer's own variables instead: "Adam/iter:0", then
// every variable's first slot ("Adam/dense/kernel/m:0"), then every variable's second (".../v:0"),
// sometimes under a "training/" scope; the learning rate lives in the optimizer's config. Slots
// are matched to the model's by variable path and slot name. Anything that does not match (another
// optimizer, a missing or unknown slot) leaves the optimizer fresh, with a warning, as a mismatch
// does for Keras 3 files.
void read_tf2_optimizer_weights(const h5::File& f, Model& model, const std::vector<std::string>& names) {
  optimizers::Optimizer* opt = model.optimizer();
  const auto skip = [&](const std::string& why) {
    warn(f.name(), "skipping the saved optimizer state (tf.keras 2 layout): " + why);
  };
  // tf.keras 2's slot names and Keras 3's (ours) for the same state.
  const std::map<std::string, std::string> slot_names = {{"m", "momentum"},        {"v", "velocity"},
                                                         {"vhat", "velocity_hat"}, {"momentum", "momentum"},
                                                         {"rms", "velocity"},      {"mg", "average_gradient"}};
  std::map<std::string, const Weight*> by_path;  // "dense/kernel"
  for (const auto& layer : model.layers())
    for (const Weight& w : layer->weights()) by_path[layer->name() + "/" + w.name] = &w;
  std::set<int64_t> trainable;
  for (const auto& v : model.trainable_variables()) trainable.insert(v.offset);
  int64_t iterations = -1;
  struct Slot {
    std::string path, slot;
    const Weight* weight;
  };
  std::vector<Slot> slots;
  std::set<std::pair<std::string, int64_t>> seen;
  for (const std::string& name : names) {
    const std::string rest = keras2_slot_path(name);
    if (rest == "iter" || rest == "iterations") {  // the latter from standalone Keras 2
      iterations = f.read_int64("optimizer_weights/" + name);
      if (iterations < 0) f.fail("optimizer_weights/" + name + ": negative iteration count");
      continue;
    }
    const size_t cut = rest.rfind('/');
    const auto slot = cut == std::string::npos ? slot_names.end() : slot_names.find(rest.substr(cut + 1));
    const auto weight = cut == std::string::npos ? by_path.end() : by_path.find(rest.substr(0, cut));
    if (slot == slot_names.end() || weight == by_path.end() || !trainable.count(weight->second->offset))
      return skip("'" + name + "' is not a known slot of one of this model's trainable variables");
    if (!seen.insert({slot->second, weight->second->offset}).second) return skip("'" + name + "' comes twice");
    slots.push_back({"optimizer_weights/" + name, slot->second, weight->second});
  }
  if (iterations < 0) return skip("no iteration count");
  const std::vector<std::string> ours = opt->state_slots();
  for (const Slot& s : slots)
    if (std::find(ours.begin(), ours.end(), s.slot) == ours.end())
      return skip("the model's " + opt->class_name() + " has no '" + s.slot + "' slot");
  if (!slots.empty() && slots.size() != ours.size() * trainable.size())
    return skip("the file has " + std::to_string(slots.size()) + " slots, the model's " + opt->class_name() + " " +
                std::to_string(ours.size() * trainable.size()));
  std::vector<h5::Array> values;
  for (const Slot& s : slots) {
    h5::Array a = f.read_floats(s.path);
    if (a.shape != s.weight->shape)
      f.fail("shape mismatch for optimizer variable " + s.path + ": the file has " + shape_text(a.shape) +
             ", the model expects " + shape_text(s.weight->shape));
    values.push_back(std::move(a));
  }
  opt->set_iterations(iterations);
  if (slots.empty()) return;
  model.build_optimizer();
  for (size_t i = 0; i < slots.size(); ++i)
    std::copy(values[i].values.begin(), values[i].values.end(), opt->state(slots[i].slot) + slots[i].weight->offset);
}

// "m_12_1" -> kind "m", index 12 (a trailing "_1" is TensorFlow making a graph name unique).
bool parse_keras2_slot(const std::string& name, std::string* kind, int64_t* index) {
  size_t p = 0;
  const auto digit = [&](size_t i) { return i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])); };
  while ((p = name.find('_', p)) != std::string::npos && !digit(p + 1)) ++p;
  if (p == std::string::npos || p == 0) return false;
  *kind = name.substr(0, p);
  size_t end = p + 1;
  while (digit(end)) ++end;
  if (end - p - 1 > 9) return false;
  *index = std::stoll(name.substr(p + 1, end - p - 1));
  if (end == name.size()) return true;
  if (name[end] != '_' || end + 1 == name.size()) return false;  // a uniquifying suffix: "_1"
  for (size_t i = end + 1; i < name.size(); ++i)
    if (!digit(i)) return false;
  return true;
}

// Standalone Keras 2 (before tf.keras) named its optimizer's slots by position instead of by
// variable: "Adam/iterations:0", then "training/Adam/m_0", "m_1", ... one per trainable variable in
// the model's order, then every "v_i", then every "vhat_i" (TensorFlow may add a "_1" to a name),
// and restored them by position (optimizer.set_weights). Each kind of slot must hold one entry per
// trainable variable, in order, with the variable's shape. Slots that Keras 3 does not keep are
// dropped: SGD's moments when its momentum is 0 (the update never reads them) and Adam's one-float
// "vhat" placeholders without amsgrad.
void read_keras2_optimizer_weights(const h5::File& f, Model& model, const std::vector<std::string>& names) {
  optimizers::Optimizer* opt = model.optimizer();
  const auto skip = [&](const std::string& why) {
    warn(f.name(), "skipping the saved optimizer state (standalone Keras 2 layout): " + why);
  };
  // Keras 2's slot kinds and Keras 3's (ours) for the same state, per optimizer.
  const std::map<std::string, std::map<std::string, std::string>> kinds = {
      {"SGD", {{"moment", "momentum"}}},
      {"Adam", {{"m", "momentum"}, {"v", "velocity"}, {"vhat", "velocity_hat"}}},
      {"RMSprop", {{"accumulator", "velocity"}}}};
  const auto known = kinds.find(opt->class_name());
  if (known == kinds.end()) return skip("no mapping of Keras 2's slots for " + opt->class_name());
  const std::vector<std::string> ours = opt->state_slots();
  const auto& vars = model.trainable_variables();
  std::map<int64_t, Shape> shapes;
  for (Weight* w : model.weights()) shapes[w->offset] = w->shape;
  int64_t iterations = -1;
  std::map<std::string, std::vector<std::string>> paths;  // our slot -> dataset per variable, in order
  for (const std::string& name : names) {
    const std::string rest = keras2_slot_path(name);
    if (rest == "iterations" || rest == "iter") {
      iterations = f.read_int64("optimizer_weights/" + name);
      if (iterations < 0) f.fail("optimizer_weights/" + name + ": negative iteration count");
      continue;
    }
    std::string kind;
    int64_t index = 0;
    if (!parse_keras2_slot(rest, &kind, &index)) return skip("'" + name + "' is not a slot name Keras 2 writes");
    const auto slot = known->second.find(kind);
    if (slot == known->second.end())
      return skip("'" + name + "': Keras 2's " + opt->class_name() + " has no '" + kind + "' slots");
    std::vector<std::string>& list = paths[slot->second];
    if (index != static_cast<int64_t>(list.size()))
      return skip("'" + name + "' is out of order (expected " + kind + "_" + std::to_string(list.size()) + ")");
    list.push_back("optimizer_weights/" + name);
  }
  if (iterations < 0) return skip("no iteration count");
  for (const auto& [slot, list] : paths)
    if (list.size() != vars.size())
      return skip("the file has " + std::to_string(list.size()) + " '" + slot + "' slots, the model " +
                  std::to_string(vars.size()) + " trainable variables");
  for (const std::string& slot : ours)
    if (!paths.count(slot))
      return skip("the file has no slots for the model's " + opt->class_name() + " '" + slot + "'");
  std::vector<std::pair<std::string, std::vector<std::vector<float>>>> values;
  for (const std::string& slot : ours) {
    values.push_back({slot, {}});
    for (size_t i = 0; i < vars.size(); ++i) {
      const std::string& path = paths[slot][i];
      h5::Array a = f.read_floats(path);
      if (a.shape != shapes[vars[i].offset])
        f.fail("shape mismatch for optimizer variable " + path + " (" + slot + " of '" + vars[i].name +
               "'): the file has " + shape_text(a.shape) + ", the model expects " + shape_text(shapes[vars[i].offset]));
      values.back().second.push_back(std::move(a.values));
    }
  }
  opt->set_iterations(iterations);
  if (values.empty()) return;
  model.build_optimizer();
  for (const auto& [slot, per_var] : values)
    for (size_t i = 0; i < vars.size(); ++i)
      std::copy(per_var[i].begin(), per_var[i].end(), opt->state(slot) + vars[i].offset);
}

// Standalone Keras 2's slot names carry no variable path ("training/SGD/moment_0_1:0").
bool is_keras2_layout(const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    const std::string rest = keras2_slot_path(name);
    if (rest.empty()) return false;
    if (rest == "iterations" || rest == "iter") continue;
    std::string kind;
    int64_t index = 0;
    return rest.find('/') == std::string::npos && parse_keras2_slot(rest, &kind, &index);
  }
  return false;
}

Model load_legacy_h5(const std::string& path) {
  h5::File f = h5::File::open(path);
  bool found = false;
  const std::vector<std::string> cfg = f.read_string_attr("", "model_config", &found);
  if (!found || cfg.size() != 1) {
    if (f.is_group("layers") || f.is_group("optimizer"))
      f.fail("this is a weights file (no model_config); build the model and use load_weights");
    f.fail("no 'model_config' attribute: not a Keras model file");
  }
  const json config = parse_json(cfg[0], path, "the model_config attribute");
  json attn_meta = json::object();
  if (const std::vector<std::string> a = f.read_string_attr("", "attn", &found); found && a.size() == 1)
    attn_meta = parse_json(a[0], path, "the attn attribute");
  if (!attn_meta.is_object()) attn_meta = json::object();
  Model model = detail::model_from_config(config, path);
  const std::vector<std::string> training = f.read_string_attr("", "training_config", &found);
  if (found && training.size() == 1) {
    const json tc = parse_json(training[0], path, "the training_config attribute");
    // A file from Keras has no attn entry: compile as the user would, warnings included.
    compile_from(model, tc, "optimizer_config", path,
                 attn_meta.empty() ? CompileOptions{} : compile_options_from(attn_meta));
  }
  restore_seed(model, attn_meta);
  const std::string root = f.is_group("model_weights") ? "model_weights" : "";
  read_legacy_weights(f, root, model);
  if (model.optimizer() && f.is_group("optimizer_weights")) {
    // Keras 3 lists optimizer.variables ("adam/iteration", "adam/learning_rate", the slots);
    // tf.keras 2 its own variables in another order ("Adam/iter:0", every m, then every v).
    const std::vector<std::string> names = chunked_attr(f, "optimizer_weights", "weight_names");
    if (!names.empty() && ends_with(names[0], "/iteration")) {
      std::vector<std::string> paths;
      for (const std::string& n : names) paths.push_back("optimizer_weights/" + n);
      read_optimizer_variables(f, model, paths);
    } else if (is_keras2_layout(names)) {
      read_keras2_optimizer_weights(f, model, names);
    } else if (!names.empty()) {
      read_tf2_optimizer_weights(f, model, names);
    }
  }
  return model;
}

// Keras 3's legacy_h5_format.save_model_to_hdf5: the model config and training config as JSON
// root attributes, each layer's weights under model_weights/<layer>/<layer>/<variable> (Keras'
// variable paths) with the names listed in weight_names, and the optimizer's variables under
// optimizer_weights.
void save_legacy_h5(Model& model, const std::string& path) {
  const json full = model_to_config(model);
  const json model_config = {{"class_name", full.at("class_name")}, {"config", full.at("config")}};
  json training_config = nullptr;
  if (model.compiled()) {
    training_config = detail::compile_config(model);
    const json optimizer = training_config.at("optimizer");
    training_config.erase("optimizer");
    training_config["optimizer_config"] = {{"class_name", optimizer.at("class_name")},
                                           {"config", optimizer.at("config")}};
  }
  write_atomically(path, [&](const std::string& tmp) {
    h5::File f = h5::File::create(tmp, path);
    f.write_string_attr("", "keras_version", kKerasVersion);
    f.write_string_attr("", "backend", "tensorflow");
    f.write_string_attr("", "model_config", model_config.dump());
    f.write_string_attr("", "attn", attn_metadata(model).dump());
    if (!training_config.is_null()) f.write_string_attr("", "training_config", training_config.dump());
    f.ensure_group("model_weights");
    std::vector<const Layer*> layers;  // model.layers as Keras lists them (see layer_groups)
    for (const LayerGroup& g : layer_groups(model)) layers.push_back(g.layer);
    std::vector<std::string> layer_names;
    for (const Layer* l : layers) layer_names.push_back(l->name());
    f.write_string_list_attr("model_weights", "layer_names", layer_names);
    f.write_string_attr("model_weights", "backend", "tensorflow");
    f.write_string_attr("model_weights", "keras_version", kKerasVersion);
    for (const Layer* l : layers) {
      const std::string group = "model_weights/" + l->name();
      f.ensure_group(group);
      std::vector<std::string> names;
      for (const Weight& w : l->weights()) {
        names.push_back(variable_path(model, *l, w));
        f.write_floats(group + "/" + names.back(), w.shape, w.value.data());
      }
      f.write_string_list_attr(group, "weight_names", names);
    }
    f.ensure_group("model_weights/top_level_model_weights");  // the model's own variables: none
    f.write_string_list_attr("model_weights/top_level_model_weights", "weight_names", {});
    if (model.compiled()) {
      // As Keras' save_optimizer_weights_to_hdf5_group: optimizer.variables by path, in order.
      const std::string prefix = model.optimizer()->get_config().value("name", std::string("optimizer")) + "/";
      f.ensure_group("optimizer_weights");
      std::vector<std::string> names;
      write_optimizer_variables(f, model, [&](size_t, const std::string& name) {
        names.push_back(prefix + name);
        return "optimizer_weights/" + names.back();
      });
      f.write_string_list_attr("optimizer_weights", "weight_names", names);
    }
    f.close();
  });
}

}  // namespace

// As Keras' deserialize_keras_object: a config that carries a compile_config (a .keras file's
// config.json does) comes back compiled as it says.
Model model_from_config(const nlohmann::json& config, const std::string& source) {
  Model model = detail::model_from_config(config, source);
  if (config.is_object() && config.contains("compile_config") && !config.at("compile_config").is_null())
    compile_from(model, config.at("compile_config"), "optimizer", source);
  return model;
}

void save_model(Model& model, const std::string& path) {
  // A layer shared with another model may hold that model's weight views and offsets: this
  // model's own first (Model::weights claims them), as its runs do.
  model.weights();
  if (ends_with(path, ".h5") || ends_with(path, ".hdf5")) return save_legacy_h5(model, path);  // as Keras' model.save
  if (!ends_with(path, ".keras"))
    throw FileError(path + ": the file name must end in .keras (or .h5 for the legacy format; use save_weights for "
                    ".weights.h5)");
  json metadata = {{"keras_version", kKerasVersion}, {"date_saved", date_saved()}};
  metadata["attn"] = attn_metadata(model);
  const std::string config = model_to_config(model).dump();
  h5::File f = h5::File::create_in_memory(path + " (model.weights.h5)");
  write_tree(f, model, true);
  std::vector<char> weights = f.image();
  f.close();
  write_atomically(path, [&](const std::string& tmp) {
    zip::write(tmp,
               {{"metadata.json", to_bytes(metadata.dump())},
                {"config.json", to_bytes(config)},
                {"model.weights.h5", std::move(weights)}},
               path);
  });
}

Model load_model(const std::string& path) {
  h5::silence_errors();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw FileError(path + ": no such file");
  if (std::filesystem::is_directory(path, ec)) throw FileError(path + ": is a directory, not a model file");
  if (starts_with_bytes(path, "PK", 2)) return load_keras(path);
  if (starts_with_bytes(path, "\x89HDF", 4) || ends_with(path, ".h5") || ends_with(path, ".hdf5"))
    return load_legacy_h5(path);
  if (ends_with(path, ".keras")) return load_keras(path);  // reports what is wrong with the zip
  throw FileError(path + ": not a Keras model file (expected a .keras zip or a legacy .h5 HDF5 file)");
}

void save_weights(Model& model, const std::string& path) {
  if (!ends_with(path, ".weights.h5")) throw FileError(path + ": the file name must end in .weights.h5");
  // A layer shared with another model may hold that model's weight views and offsets: this
  // model's own first (Model::weights claims them), as its runs do.
  model.weights();
  write_atomically(path, [&](const std::string& tmp) {
    h5::File f = h5::File::create(tmp, path);
    write_tree(f, model, true);
    f.close();
  });
}

void load_weights(Model& model, const std::string& path) {
  h5::silence_errors();
  // A layer shared with another model may hold that model's weight views and offsets: this
  // model's own first (Model::weights claims them), as its runs do.
  model.weights();
  if (starts_with_bytes(path, "PK", 2)) {
    zip::Reader z(path);
    h5::File f = h5::File::open_image(z.read("model.weights.h5"), path + " (model.weights.h5)");
    read_layers(f, model);
    read_optimizer(f, model);
    return;
  }
  h5::File f = h5::File::open(path);
  if (f.is_group("layers") || f.is_group("vars")) {
    read_layers(f, model);
    read_optimizer(f, model);
    return;
  }
  if (f.is_group("model_weights")) return read_legacy_weights(f, "model_weights", model);
  if (f.has_attr("", "layer_names") || f.has_attr("", "layer_names0")) return read_legacy_weights(f, "", model);
  f.fail("no Keras weights in this HDF5 file (no 'layers' group, 'model_weights' group or layer_names attribute)");
}

}  // namespace attn::io
