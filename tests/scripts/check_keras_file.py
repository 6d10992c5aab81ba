#!/usr/bin/python3
"""Checks that a .keras file written by attn has the layout Keras 3 writes and reads.

Usage: check_keras_file.py FILE.keras

An independent reader (zipfile, json, h5py; no Keras needed): zip members and their
order, stored compression, metadata.json and config.json keys, node format, and the
model.weights.h5 tree (layer group names from class names with occurrence counters,
dataset names and shapes derived from the layer configs, optimizer variables).
Exits 0 when everything matches, 1 and one line per problem otherwise.
"""
import io
import json
import re
import sys
import zipfile

import h5py

problems = []


def problem(msg):
    problems.append(msg)


def snake_case(name):
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub(r"([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


def check_tensor(t, layer_names, where):
    if not isinstance(t, dict) or t.get("class_name") != "__keras_tensor__":
        problem(f"{where}: expected a __keras_tensor__ dict, got {str(t)[:80]}")
        return
    cfg = t.get("config", {})
    for key in ("shape", "dtype", "keras_history"):
        if key not in cfg:
            problem(f"{where}: tensor config lacks '{key}'")
    hist = cfg.get("keras_history", [])
    if len(hist) != 3 or hist[0] not in layer_names:
        problem(f"{where}: keras_history {hist} does not name a layer of the model")
    shape = cfg.get("shape", [])
    if not shape or shape[0] is not None:
        problem(f"{where}: tensor shape {shape} should start with the batch axis (null)")


def walk_tensors(value, fn):
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        fn(value)
    elif isinstance(value, list):
        for v in value:
            walk_tensors(v, fn)
    elif isinstance(value, dict):
        for v in value.values():
            walk_tensors(v, fn)


def last_dim(shape):
    # build_config input_shape: [null, ..., d] or a list of such shapes (first one).
    if shape and isinstance(shape[0], list):
        shape = shape[0]
    return shape[-1]


def expected_vars(layer):
    """{relative dataset path: shape} for one layer entry, from its config."""
    cls = layer["class_name"]
    cfg = layer["config"]
    build = layer.get("build_config", {})
    out = {}
    if cls == "Dense":
        d_in = last_dim(build["input_shape"])
        out["vars/0"] = (d_in, cfg["units"])
        if cfg.get("use_bias", True):
            out["vars/1"] = (cfg["units"],)
    elif cls == "Attention":
        i = 0
        if cfg.get("use_scale"):
            out[f"vars/{i}"] = ()
            i += 1
        if cfg.get("score_mode", "dot") == "concat":
            out[f"vars/{i}"] = ()
    elif cls == "LayerNormalization":  # gamma is created before beta
        d = last_dim(build["input_shape"])
        i = 0
        for flag in ("scale", "center"):
            if cfg.get(flag, True):
                out[f"vars/{i}"] = (d,)
                i += 1
    elif cls == "BatchNormalization":  # gamma, beta, then the moving mean and variance
        shape = build["input_shape"]
        shape = shape[0] if shape and isinstance(shape[0], list) else shape
        d = shape[cfg.get("axis", -1)]
        flags = [cfg.get("scale", True), cfg.get("center", True), True, True]
        for i in range(sum(flags)):
            out[f"vars/{i}"] = (d,)
    elif cls == "Conv1D":  # kernel (kernel_size, channels, filters)
        k = cfg["kernel_size"]
        k = k[0] if isinstance(k, list) else k
        out["vars/0"] = (k, last_dim(build["input_shape"]), cfg["filters"])
        if cfg.get("use_bias", True):
            out["vars/1"] = (cfg["filters"],)
    elif cls == "Conv2D":  # kernel (rows, columns, channels, filters)
        k = cfg["kernel_size"]
        k = k if isinstance(k, list) else [k, k]
        out["vars/0"] = (k[0], k[1], last_dim(build["input_shape"]), cfg["filters"])
        if cfg.get("use_bias", True):
            out["vars/1"] = (cfg["filters"],)
    elif cls == "Embedding":
        out["vars/0"] = (cfg["input_dim"], cfg["output_dim"])
    elif cls == "PositionEmbedding":
        out["vars/0"] = (cfg["sequence_length"], last_dim(build["input_shape"]))
    elif cls == "MultiHeadAttention":
        shapes = build["shapes_dict"]
        q = shapes["query_shape"][-1]
        v = shapes["value_shape"][-1]
        k = shapes.get("key_shape", shapes["value_shape"])[-1]
        h, dk = cfg["num_heads"], cfg["key_dim"]
        dv = cfg.get("value_dim") or dk
        dout = cfg.get("output_shape")
        dout = q if dout is None else (dout[0] if isinstance(dout, list) else dout)
        bias = cfg.get("use_bias", True)
        for sub, kern, b in (("query_dense", (q, h, dk), (h, dk)), ("key_dense", (k, h, dk), (h, dk)),
                             ("value_dense", (v, h, dv), (h, dv)), ("output_dense", (h, dv, dout), (dout,))):
            out[f"{sub}/vars/0"] = kern
            if bias:
                out[f"{sub}/vars/1"] = b
    return out


def main(path):
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        problem(f"not a zip archive: {e}")
        return
    infos = z.infolist()
    names = [i.filename for i in infos]
    if names[:3] != ["metadata.json", "config.json", "model.weights.h5"]:
        problem(f"members are {names}, expected metadata.json, config.json, model.weights.h5 in that order")
    for i in infos:
        if i.compress_type != zipfile.ZIP_STORED:
            problem(f"member {i.filename} is compressed (Keras stores members uncompressed)")
    if "metadata.json" not in names or "config.json" not in names or "model.weights.h5" not in names:
        return
    if z.testzip() is not None:
        problem(f"bad CRC in member {z.testzip()}")

    meta = json.loads(z.read("metadata.json"))
    if not re.fullmatch(r"3\.\d+\.\d+", str(meta.get("keras_version", ""))):
        problem(f"metadata keras_version {meta.get('keras_version')!r} is not a Keras 3 version")
    if not re.fullmatch(r"\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d", str(meta.get("date_saved", ""))):
        problem(f"metadata date_saved {meta.get('date_saved')!r} is not YYYY-MM-DD@HH:MM:SS")

    config = json.loads(z.read("config.json"))
    for key in ("module", "class_name", "config"):
        if key not in config:
            problem(f"config.json lacks '{key}'")
    cls = config.get("class_name")
    if cls not in ("Functional", "Sequential"):
        problem(f"config.json class_name {cls!r}")
        return
    mcfg = config["config"]
    layers = mcfg.get("layers", [])
    layer_names = [l.get("config", {}).get("name") for l in layers]
    for l in layers:
        for key in ("module", "class_name", "config", "registered_name"):
            if key not in l:
                problem(f"layer {l.get('class_name')} lacks '{key}'")
        if l.get("class_name") in ("Dense", "Attention", "MultiHeadAttention") and "build_config" not in l:
            problem(f"layer {l['config'].get('name')} lacks build_config")
        if cls == "Functional":
            if l.get("name") != l["config"].get("name"):
                problem(f"layer entry name {l.get('name')!r} differs from its config name")
            nodes = l.get("inbound_nodes")
            if not isinstance(nodes, list):
                problem(f"layer {l.get('name')} lacks inbound_nodes")
                continue
            if l["class_name"] == "InputLayer" and nodes:
                problem("an InputLayer has inbound nodes")
            for n in nodes:
                if not isinstance(n, dict) or set(n) != {"args", "kwargs"}:
                    problem(f"layer {l.get('name')}: node {str(n)[:80]} is not {{args, kwargs}}")
                    continue
                walk_tensors(n, lambda t, w=l.get("name"): check_tensor(t, layer_names, f"layer {w}"))
    if cls == "Functional":
        for key in ("input_layers", "output_layers"):
            ends = mcfg.get(key)
            if not ends or not all(isinstance(e, list) and len(e) == 3 and e[0] in layer_names for e in ends):
                problem(f"{key} {ends} should list [layer, node, tensor] of the model's layers")
    if "compile_config" in config:
        cc = config["compile_config"]
        for key in ("optimizer", "loss", "metrics"):
            if key not in cc:
                problem(f"compile_config lacks '{key}'")

    h5 = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
    for group in ("layers", "vars"):
        if group not in h5:
            problem(f"model.weights.h5 lacks the '{group}' group")
    if "layers" not in h5:
        return
    seen = {}
    expected_groups = set()
    trainable = []  # shapes of trainable variables in model order
    for l in layers:
        if cls == "Sequential" and l["class_name"] == "InputLayer":
            continue
        base = snake_case(l["class_name"])
        k = seen.get(base, 0)
        seen[base] = k + 1
        gname = base if k == 0 else f"{base}_{k}"
        expected_groups.add(gname)
        if gname not in h5["layers"]:
            problem(f"missing group layers/{gname} for layer {l['config'].get('name')}")
            continue
        g = h5["layers"][gname]
        if "vars" not in g:
            problem(f"layers/{gname} lacks 'vars'")
        want = expected_vars(l)
        for rel, shape in want.items():
            if rel not in g or not isinstance(g[rel], h5py.Dataset):
                problem(f"missing dataset layers/{gname}/{rel}")
                continue
            ds = g[rel]
            if tuple(ds.shape) != tuple(shape):
                problem(f"layers/{gname}/{rel} has shape {ds.shape}, expected {tuple(shape)}")
            if ds.dtype != "float32":
                problem(f"layers/{gname}/{rel} has dtype {ds.dtype}, expected float32")
        found = []
        g.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) else None)
        extra = sorted(set(found) - set(want))
        if extra:
            problem(f"layers/{gname} has unexpected datasets {extra}")
        if l["config"].get("trainable", True):
            frozen = non_trainable_vars(l)
            trainable.extend(shape for rel, shape in sorted(want.items(), key=lambda kv: order_key(kv[0]))
                             if rel not in frozen)
    extra_groups = sorted(set(h5["layers"]) - expected_groups)
    if extra_groups:
        problem(f"unexpected layer groups {extra_groups}")

    if "optimizer" in h5:
        ov = h5["optimizer"]["vars"]
        n = len(ov)
        if "0" not in ov or ov["0"].shape != () or ov["0"].dtype != "int64":
            problem("optimizer/vars/0 should be the int64 scalar iteration count")
        if "1" not in ov or ov["1"].shape != () or ov["1"].dtype != "float32":
            problem("optimizer/vars/1 should be the float32 scalar learning rate")
        if n > 2:
            opt = config.get("compile_config", {}).get("optimizer", {})
            ocls = opt.get("class_name") if isinstance(opt, dict) else None
            if ocls in ("Adam", "AdamW"):
                per = [s for s in trainable for _ in (0, 1)]  # momentum, velocity interleaved
                if opt.get("config", {}).get("amsgrad"):
                    per += trainable
                got = [tuple(ov[str(i)].shape) for i in range(2, n) if str(i) in ov]
                if got != [tuple(s) for s in per]:
                    problem(f"optimizer slot shapes {got} differ from Keras' order {[tuple(s) for s in per]}")


def non_trainable_vars(layer):
    """Relative paths of a layer's variables that have no optimizer slots."""
    if layer["class_name"] == "BatchNormalization":  # the moving statistics come last
        cfg = layer["config"]
        n = sum([cfg.get("scale", True), cfg.get("center", True)])
        return {f"vars/{n}", f"vars/{n + 1}"}
    return set()


def order_key(rel):
    # Model variable order: query, key, value, output sublayers; kernel (0) before bias (1).
    subs = ["vars", "query_dense", "key_dense", "value_dense", "output_dense"]
    head = rel.split("/")[0]
    return (subs.index(head) if head in subs else 99, rel)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        sys.exit(2)
    try:
        main(sys.argv[1])
    except Exception as e:  # a malformed file is a failed check, not a crash
        problem(f"{type(e).__name__}: {e}")
    for p in problems:
        print(f"{sys.argv[1]}: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)
