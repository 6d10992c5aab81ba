// Keras model configs: model_to_config writes Keras 3's config.json (Functional or
// Sequential, Keras 3 node format); model_from_config reads Keras 3 and tf.keras 2
// configs (both node formats, "Model"/"Functional"/"Sequential", input shape from an
// InputLayer or a first layer's batch_input_shape).
#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "attn/layers/input.hpp"
#include "io/io_internal.hpp"

namespace attn::io {
namespace detail {
namespace {

using json = nlohmann::json;

json batch_shape_json(const Shape& s) {
  json j = json::array({nullptr});
  for (int64_t d : s) j.push_back(d);
  return j;
}

json dtype_policy() {
  return {{"module", "keras"}, {"class_name", "DTypePolicy"}, {"config", {{"name", "float32"}}}, {"registered_name", nullptr}};
}

bool is_input_layer(const Layer& l) { return l.class_name() == "InputLayer"; }

// Keras node indices count only the calls that belong to this model.
struct NodeIndex {
  std::map<const CallSite*, int> index;
  explicit NodeIndex(const Model& model) {
    std::map<const Layer*, std::vector<const CallSite*>> per_layer;
    for (const auto& site : model.call_sites()) per_layer[site->layer.get()].push_back(site.get());
    for (auto& [layer, sites] : per_layer) {
      std::sort(sites.begin(), sites.end(),
                [](const CallSite* a, const CallSite* b) { return a->index_in_layer < b->index_in_layer; });
      for (size_t i = 0; i < sites.size(); ++i) index[sites[i]] = static_cast<int>(i);
    }
  }
  json history(const Node& n) const {
    return json::array({n->site->layer->name(), index.at(n->site.get()), n->index});
  }
  json tensor(const Node& n) const {
    return {{"class_name", "__keras_tensor__"},
            {"config", {{"shape", batch_shape_json(n->shape)}, {"dtype", "float32"}, {"keras_history", history(n)}}}};
  }
};

json build_config(const Layer& layer) {
  const auto& shapes = layer.built_input_shapes();
  if (layer.class_name() == "MultiHeadAttention" && shapes.size() >= 2) {
    json d = {{"query_shape", batch_shape_json(shapes[0])}, {"value_shape", batch_shape_json(shapes[1])}};
    if (shapes.size() > 2) d["key_shape"] = batch_shape_json(shapes[2]);
    return {{"shapes_dict", d}};
  }
  if (shapes.size() == 1) return {{"input_shape", batch_shape_json(shapes[0])}};
  json list = json::array();
  for (const auto& s : shapes) list.push_back(batch_shape_json(s));
  return {{"input_shape", list}};
}

json serialize_call(const CallSite& site, const NodeIndex& nodes) {
  const Layer& layer = *site.layer;
  json args = json::array();
  json kwargs = json::object();
  const std::string cls = layer.class_name();
  // Masks the call took from its inputs' Keras masks are implicit in Keras too: not written.
  const auto explicit_mask = [&](size_t i) { return site.options.is_implicit(i) ? nullptr : *site.options.masks()[i]; };
  const Node query_mask = explicit_mask(0), value_mask = explicit_mask(1), key_mask = explicit_mask(2),
             attention_mask = explicit_mask(3), mask = explicit_mask(4);
  if (cls == "Attention") {
    json list = json::array();
    for (const Node& n : site.inputs) list.push_back(nodes.tensor(n));
    args.push_back(list);
    if (query_mask || value_mask)
      kwargs["mask"] = json::array({query_mask ? nodes.tensor(query_mask) : json(),
                                    value_mask ? nodes.tensor(value_mask) : json()});
  } else {
    for (const Node& n : site.inputs) args.push_back(nodes.tensor(n));
    if (query_mask) kwargs["query_mask"] = nodes.tensor(query_mask);
    if (value_mask) kwargs["value_mask"] = nodes.tensor(value_mask);
    if (key_mask) kwargs["key_mask"] = nodes.tensor(key_mask);
    if (attention_mask) kwargs["attention_mask"] = nodes.tensor(attention_mask);
    if (mask) kwargs["mask"] = nodes.tensor(mask);
  }
  if (site.options.use_causal_mask) kwargs["use_causal_mask"] = true;
  if (site.options.return_attention_scores) kwargs["return_attention_scores"] = true;
  if (site.options.training) kwargs["training"] = *site.options.training;
  return {{"args", args}, {"kwargs", kwargs}};
}

json layer_entry(const Layer& layer) {
  json e = {{"module", "keras.layers"}, {"class_name", layer.class_name()}, {"config", layer.get_config()},
            {"registered_name", nullptr}};
  if (layer.class_name() == "PositionEmbedding") {  // keras_hub's, registered under its package
    e["module"] = "keras_hub.src.layers.modeling.position_embedding";
    e["registered_name"] = "keras_hub>PositionEmbedding";
  }
  if (!is_input_layer(layer)) e["build_config"] = build_config(layer);
  return e;
}

}  // namespace

json compile_config(const Model& model) {
  if (!model.compiled()) return nullptr;
  json c;
  c["optimizer"] = {{"module", "keras.optimizers"},
                    {"class_name", model.optimizer()->class_name()},
                    {"config", model.optimizer()->get_config()},
                    {"registered_name", nullptr}};
  c["loss"] = {{"module", "keras.losses"},
               {"class_name", model.loss()->class_name()},
               {"config", model.loss()->get_config()},
               {"registered_name", nullptr}};
  c["loss_weights"] = nullptr;
  c["metrics"] = model.metric_names();
  c["weighted_metrics"] = nullptr;
  c["run_eagerly"] = false;
  c["steps_per_execution"] = 1;
  c["jit_compile"] = false;
  return c;
}

json model_to_config_impl(const Model& model) {
  json config;
  config["name"] = model.name();
  config["trainable"] = true;
  const bool sequential = model.class_name() == "Sequential";
  if (sequential) {
    config["dtype"] = dtype_policy();
    json layers = json::array();
    for (const auto& l : model.all_layers()) layers.push_back(layer_entry(*l));  // the InputLayer first
    config["layers"] = layers;
    config["build_input_shape"] = batch_shape_json(model.inputs().at(0)->shape);
    json out = {{"module", "keras"}, {"class_name", "Sequential"}, {"config", config}, {"registered_name", nullptr},
                {"build_config", {{"input_shape", config["build_input_shape"]}}}};
    return out;
  }
  const NodeIndex nodes(model);
  json layers = json::array();
  for (const auto& l : model.layers()) {
    json e = layer_entry(*l);
    e["name"] = l->name();
    json inbound = json::array();
    std::vector<const CallSite*> sites;
    for (const auto& s : model.call_sites())
      if (s->layer == l && !is_input_layer(*l)) sites.push_back(s.get());
    std::sort(sites.begin(), sites.end(),
              [](const CallSite* a, const CallSite* b) { return a->index_in_layer < b->index_in_layer; });
    for (const CallSite* s : sites) inbound.push_back(serialize_call(*s, nodes));
    e["inbound_nodes"] = inbound;
    layers.push_back(e);
  }
  config["layers"] = layers;
  json ins = json::array(), outs = json::array();
  for (const Node& n : model.inputs()) ins.push_back(nodes.history(n));
  for (const Node& n : model.outputs()) outs.push_back(nodes.history(n));
  config["input_layers"] = ins;
  config["output_layers"] = outs;
  json shapes = json::array();
  for (const Node& n : model.inputs()) shapes.push_back(batch_shape_json(n->shape));
  return {{"module", "keras"},
          {"class_name", "Functional"},
          {"config", config},
          {"registered_name", "Functional"},
          {"build_config", {{"input_shape", shapes.size() == 1 ? shapes[0] : shapes}}}};
}

namespace {

// ---- reading ----

struct Reader {
  std::string file;

  [[noreturn]] void fail(const std::string& what) const { detail::fail(file, what); }

  static std::string class_of(const json& entry) {
    std::string cls = entry.value("class_name", std::string());
    // tf.keras 2.11+ may prefix registered classes; built-in ones never are.
    return cls;
  }

  LayerConfig layer_config(const json& entry) const {
    if (!entry.is_object() || !entry.contains("class_name") || !entry.at("class_name").is_string())
      fail("a layer entry has no class_name: " + entry.dump().substr(0, 200));
    LayerConfig c{entry.at("class_name").get<std::string>(), entry.value("config", json::object()), file};
    if (!c.config.is_object()) fail("layer entry " + c.class_name + ": config is not an object");
    if (!c.config.contains("name") && entry.contains("name")) c.config["name"] = entry.at("name");
    return c;
  }

  Shape input_layer_shape(const LayerConfig& c) const {
    c.require_float32(/*or_integer=*/true);
    if (c.boolean("sparse", false)) c.fail("sparse", "sparse inputs are not supported");
    if (c.boolean("ragged", false)) c.fail("ragged", "ragged inputs are not supported");
    if (auto s = c.batch_shape()) return *s;
    if (c.has("shape") && c.config.at("shape").is_array()) {
      Shape s;
      for (const auto& d : c.config.at("shape")) {
        if (!d.is_number_integer() || d.get<int64_t>() <= 0) c.fail("shape", "every dimension must be a positive integer");
        s.push_back(d.get<int64_t>());
      }
      return s;
    }
    c.fail("batch_shape", "missing: the input shape is unknown");
  }

  Model sequential(const json& config, const std::string& model_name) const {
    if (!config.contains("layers") || !config.at("layers").is_array()) fail("Sequential config has no 'layers' list");
    std::optional<Shape> shape;
    std::vector<std::shared_ptr<Layer>> layers;
    for (const auto& entry : config.at("layers")) {
      LayerConfig c = layer_config(entry);
      if (c.class_name == "InputLayer") {
        if (!layers.empty()) fail("Sequential: an InputLayer after other layers is not supported");
        shape = input_layer_shape(c);
        continue;
      }
      if (!shape && layers.empty()) shape = c.batch_shape();
      layers.push_back(layer_from_config(c));
    }
    if (!shape && config.contains("build_input_shape") && config.at("build_input_shape").is_array()) {
      LayerConfig c{"Sequential", {{"batch_shape", config.at("build_input_shape")}}, file};
      shape = c.batch_shape();
    }
    if (!shape) fail("Sequential model '" + model_name + "' has no input shape (no InputLayer and no batch_input_shape)");
    if (layers.empty()) fail("Sequential model '" + model_name + "' has no layers");
    try {
      return Sequential(*shape, layers, model_name);
    } catch (const FileError&) {
      throw;
    } catch (const std::exception& e) {
      fail(std::string("cannot build the model: ") + e.what());
    }
  }

  // A tensor reference: Keras 3 {"class_name": "__keras_tensor__", ...} or a Keras 2
  // [layer, node, tensor(, kwargs)] list.
  struct Ref {
    std::string layer;
    int node = 0;
    int tensor = 0;
  };
  static bool is_keras3_tensor(const json& j) {
    return j.is_object() && j.value("class_name", std::string()) == "__keras_tensor__";
  }
  static bool is_keras2_ref(const json& j) {
    return j.is_array() && (j.size() == 3 || j.size() == 4) && j[0].is_string() && j[1].is_number_integer() &&
           j[2].is_number_integer();
  }
  static bool is_ref(const json& j) { return is_keras3_tensor(j) || is_keras2_ref(j); }
  Ref ref(const json& j) const {
    if (is_keras2_ref(j)) return {j[0].get<std::string>(), j[1].get<int>(), j[2].get<int>()};
    if (is_keras3_tensor(j)) {
      const json& h = j.at("config").at("keras_history");
      if (is_keras2_ref(h)) return {h[0].get<std::string>(), h[1].get<int>(), h[2].get<int>()};
    }
    fail("bad tensor reference " + j.dump().substr(0, 200));
  }

  struct Pending {
    std::string name;
    std::string class_name;
    std::shared_ptr<Layer> layer;  // null for InputLayer
    std::vector<json> nodes;
    size_t done = 0;
  };

  Model functional(const json& config, const std::string& model_name) const {
    if (!config.contains("layers") || !config.at("layers").is_array()) fail("Functional config has no 'layers' list");
    std::vector<Pending> pending;
    std::map<std::pair<std::string, int>, std::vector<Node>> produced;
    std::set<std::string> names;
    for (const auto& entry : config.at("layers")) {
      LayerConfig c = layer_config(entry);
      Pending p;
      p.name = entry.contains("name") && entry.at("name").is_string() ? entry.at("name").get<std::string>() : c.layer_name();
      p.class_name = c.class_name;
      if (!names.insert(p.name).second) fail("two layers are named '" + p.name + "'");
      if (c.class_name == "InputLayer") {
        Node n = Input(input_layer_shape(c), p.name);
        produced[{p.name, 0}] = {n};
      } else {
        p.layer = layer_from_config(c);
        if (entry.contains("inbound_nodes")) {
          if (!entry.at("inbound_nodes").is_array()) fail("layer '" + p.name + "': inbound_nodes is not a list");
          for (const auto& n : entry.at("inbound_nodes")) p.nodes.push_back(n);
        }
      }
      pending.push_back(std::move(p));
    }
    auto lookup = [&](const Ref& r) -> const Node* {
      auto it = produced.find({r.layer, r.node});
      if (it == produced.end() || r.tensor < 0 || r.tensor >= static_cast<int>(it->second.size())) return nullptr;
      return &it->second[static_cast<size_t>(r.tensor)];
    };
    // Every tensor reference inside a node (to know when it can be called). A reference to no layer
    // of the model is a mask Keras derived from an input's Keras mask (Keras 3 records the mask
    // arguments it fills, made by operations such as not_equal): call_node leaves it out.
    std::function<void(const json&, std::vector<Ref>&)> collect = [&](const json& j, std::vector<Ref>& out) {
      if (is_keras3_tensor(j) || is_keras2_ref(j)) {
        if (names.count(ref(j).layer)) out.push_back(ref(j));
        if (is_keras2_ref(j) && j.size() == 4) collect(j[3], out);
        return;
      }
      if (j.is_array() || j.is_object())
        for (const auto& v : j) collect(v, out);
    };
    bool progress = true;
    while (progress) {
      progress = false;
      for (auto& p : pending) {
        while (p.layer && p.done < p.nodes.size()) {
          std::vector<Ref> refs;
          collect(p.nodes[p.done], refs);
          bool ready = true;
          for (const Ref& r : refs) ready = ready && lookup(r);
          if (!ready) break;
          std::vector<Node> outs = call_node(p, p.nodes[p.done], lookup, names);
          produced[{p.name, static_cast<int>(p.done)}] = outs;
          ++p.done;
          progress = true;
        }
      }
    }
    for (const auto& p : pending)
      if (p.layer && p.done < p.nodes.size())
        fail("layer '" + p.name + "': its inputs are never produced (the inbound_nodes do not form a graph)");
    auto endpoints = [&](const char* key) {
      std::vector<Node> out;
      if (!config.contains(key) || !config.at(key).is_array() || config.at(key).empty())
        fail(std::string("Functional config has no '") + key + "'");
      const json& list = config.at(key);
      std::vector<json> items;
      if (list[0].is_string()) {
        items.push_back(list);  // a single [name, node, tensor]
      } else {
        for (const auto& v : list) items.push_back(v);
      }
      for (const auto& v : items) {
        if (!is_keras2_ref(v)) fail(std::string("bad entry in '") + key + "': " + v.dump());
        const Node* n = lookup(ref(v));
        if (!n) fail(std::string("'") + key + "' names " + v.dump() + ", which the graph does not produce");
        out.push_back(*n);
      }
      return out;
    };
    std::vector<Node> ins = endpoints("input_layers");
    std::vector<Node> outs = endpoints("output_layers");
    if (outs.size() != 1) fail("models with " + std::to_string(outs.size()) + " outputs are not supported (one output only)");
    try {
      return Model(ins, outs, model_name);
    } catch (const FileError&) {
      throw;
    } catch (const std::exception& e) {
      fail(std::string("cannot build the model: ") + e.what());
    }
  }

  std::vector<Node> call_node(const Pending& p, const json& node, const std::function<const Node*(const Ref&)>& lookup,
                              const std::set<std::string>& names) const {
    const std::string where = "layer '" + p.name + "' (" + p.class_name + ")";
    std::vector<Node> inputs;
    json kwargs = json::object();
    auto tensor = [&](const json& j) -> Node {
      const Node* n = lookup(ref(j));
      if (!n) fail(where + ": unresolved input " + j.dump().substr(0, 200));
      return *n;
    };
    // A mask argument naming no layer of the model is one Keras derived from an input's Keras mask
    // (see functional()): null here, and the layer takes it from its inputs again when called.
    auto mask_tensor = [&](const json& j) -> Node {
      if (!is_ref(j)) fail(where + ": a mask argument is not a tensor: " + j.dump().substr(0, 200));
      return names.count(ref(j).layer) ? tensor(j) : nullptr;
    };
    std::function<void(const json&)> flatten = [&](const json& a) {
      if (is_ref(a)) {
        inputs.push_back(tensor(a));
      } else if (a.is_array()) {
        for (const auto& v : a) flatten(v);
      } else {
        fail(where + ": unsupported positional call argument " + a.dump().substr(0, 200));
      }
    };
    if (node.is_object()) {  // Keras 3 {"args": [...], "kwargs": {...}}
      flatten(node.value("args", json::array()));
      kwargs = node.value("kwargs", json::object());
    } else if (node.is_array()) {  // tf.keras 2 [[layer, node, tensor, kwargs], ...]
      for (const auto& e : node) {
        if (!is_keras2_ref(e)) fail(where + ": bad inbound node entry " + e.dump().substr(0, 200));
        inputs.push_back(tensor(e));
        if (e.size() == 4 && e[3].is_object())
          for (const auto& [k, v] : e[3].items()) kwargs[k] = v;
      }
    } else {
      fail(where + ": bad inbound node " + node.dump().substr(0, 200));
    }
    if (!kwargs.is_object()) fail(where + ": call kwargs are not an object");
    CallOptions opt;
    const bool attention = p.class_name == "Attention";
    const bool mha = p.class_name == "MultiHeadAttention";
    // MultiHeadAttention(query, value, key): keyword tensors join in that order.
    if (mha) {
      for (const char* k : {"query", "value", "key"})
        if (kwargs.contains(k) && !kwargs.at(k).is_null()) {
          if (std::string(k) == "query" && !inputs.empty()) fail(where + ": query given twice");
          inputs.push_back(tensor(kwargs.at(k)));
        }
    }
    for (const auto& [k, v] : kwargs.items()) {
      if (v.is_null()) continue;
      if (mha && (k == "query" || k == "value" || k == "key")) continue;
      if (k == "training") {
        if (!v.is_boolean()) fail(where + ": call argument 'training' must be true/false");
        opt.training = v.get<bool>();
      } else if ((attention || mha) && k == "use_causal_mask") {
        if (!v.is_boolean()) fail(where + ": call argument 'use_causal_mask' must be true/false");
        opt.use_causal_mask = v.get<bool>();
      } else if ((attention || mha) && k == "return_attention_scores") {
        if (!v.is_boolean()) fail(where + ": call argument 'return_attention_scores' must be true/false");
        opt.return_attention_scores = v.get<bool>();
      } else if (attention && k == "mask") {
        if (!v.is_array() || v.size() < 1 || v.size() > 3) fail(where + ": call argument 'mask' must be a list");
        if (!v[0].is_null()) opt.query_mask = mask_tensor(v[0]);
        if (v.size() > 1 && !v[1].is_null()) opt.value_mask = mask_tensor(v[1]);
        if (v.size() > 2 && !v[2].is_null() && mask_tensor(v[2])) fail(where + ": a key mask is not supported");
      } else if (mha && (k == "query_mask" || k == "value_mask" || k == "key_mask" || k == "attention_mask")) {
        (k == "query_mask" ? opt.query_mask
         : k == "value_mask" ? opt.value_mask
         : k == "key_mask"   ? opt.key_mask
                             : opt.attention_mask) = k == "attention_mask" ? tensor(v) : mask_tensor(v);
      } else if (k == "mask" && p.class_name == "GlobalAveragePooling1D" && is_ref(v)) {
        opt.mask = mask_tensor(v);
      } else if (k == "mask" && v.is_array() && std::all_of(v.begin(), v.end(), [](const json& m) { return m.is_null(); })) {
        // An all-None mask list carries nothing.
      } else {
        fail(where + ": unsupported call argument '" + k + "' = " + v.dump().substr(0, 200));
      }
    }
    try {
      return p.layer->call(inputs, opt);
    } catch (const FileError&) {
      throw;
    } catch (const std::exception& e) {
      fail(where + ": " + e.what());
    }
  }
};

}  // namespace

Model model_from_config(const nlohmann::json& j, const std::string& file) {
  const Reader r{file};
  if (!j.is_object()) r.fail("the model config is not a JSON object");
  if (!j.contains("class_name") || !j.at("class_name").is_string())
    r.fail("the model config has no class_name (expected Functional or Sequential)");
  const std::string cls = j.at("class_name").get<std::string>();
  const json config = j.value("config", json::object());
  if (!config.is_object()) r.fail("the model config's 'config' is not an object");
  const std::string name = config.contains("name") && config.at("name").is_string() ? config.at("name").get<std::string>() : "";
  try {
    if (cls == "Sequential") return r.sequential(config, name);
    if (cls == "Functional" || cls == "Model") return r.functional(config, name);
  } catch (const FileError&) {
    throw;
  } catch (const std::exception& e) {
    r.fail(e.what());
  }
  r.fail("unsupported model class " + cls + " (supported: Sequential, Functional)");
}

}  // namespace detail

nlohmann::json model_to_config(const Model& model) {
  nlohmann::json j = detail::model_to_config_impl(model);
  if (model.compiled()) j["compile_config"] = detail::compile_config(model);
  return j;
}

}  // namespace attn::io
