#!/usr/bin/python3
"""Checks that a legacy .h5 model file written by attn reads as Keras' legacy loader reads it.

Usage: check_legacy_h5.py FILE.h5

An independent reader (h5py and json; no Keras needed) that follows the steps of Keras 3's
legacy_h5_format.load_model_from_hdf5 / load_weights_from_hdf5_group: the model_config and
training_config root attributes decode to JSON of the expected shape, model_weights lists
every layer in layer_names, each listed layer has a group with a weight_names attribute, and
each weight name is a float32 dataset in that group named by the variable's path
("<layer>/<variable>", with the model's name first in a Sequential model), and the optimizer's
variables are listed in order, the iteration count first. Dense kernels are checked against
the units in the layer's config.
Exits 0 when everything matches, 1 and one line per problem otherwise.
"""
import json
import sys

import h5py

problems = []


def problem(msg):
    problems.append(msg)


def text(value):
    return value.decode("utf8") if hasattr(value, "decode") else value


def attribute_list(group, name):
    # As Keras' load_attributes_from_hdf5_group (no chunked attributes in these small files).
    if name not in group.attrs:
        problem(f"{group.name}: no attribute {name}")
        return []
    return [text(n) for n in group.attrs[name]]


def main(path):
    with h5py.File(path, "r") as f:
        for key in ("keras_version", "backend", "model_config"):
            if key not in f.attrs:
                problem(f"root: no attribute {key}")
        if problems:
            return
        config = json.loads(text(f.attrs["model_config"]))
        if set(config) != {"class_name", "config"}:
            problem(f"model_config keys {sorted(config)}, expected class_name and config")
        layers = {layer["config"]["name"]: layer for layer in config["config"]["layers"]}
        if "training_config" in f.attrs:
            training = json.loads(text(f.attrs["training_config"]))
            if "optimizer_config" not in training or "optimizer" in training:
                problem("training_config: expected optimizer_config (and no optimizer)")
            elif set(training["optimizer_config"]) != {"class_name", "config"}:
                problem("training_config: optimizer_config must be {class_name, config}")
            if "loss" not in training:
                problem("training_config: no loss")
        if "model_weights" not in f:
            problem("no model_weights group")
            return
        weights = f["model_weights"]
        names = attribute_list(weights, "layer_names")
        if sorted(names) != sorted(layers) and sorted(names) != sorted(n for n in layers if layers[n]["class_name"] != "InputLayer"):
            problem(f"layer_names {names} differ from the config's layers {sorted(layers)}")
        for name in names:
            if name not in weights:
                problem(f"layer {name}: no group")
                continue
            for weight in attribute_list(weights[name], "weight_names"):
                # A variable path: "<layer>/<variable>", under a Sequential model's name too.
                if not (weight.startswith(name + "/") or f"/{name}/" in weight):
                    problem(f"layer {name}: weight name {weight} is not under the layer's name")
                if weight not in weights[name]:
                    problem(f"layer {name}: no dataset {weight}")
                    continue
                data = weights[name][weight]
                if data.dtype != "float32":
                    problem(f"{data.name}: dtype {data.dtype}, expected float32")
                layer = layers.get(name)
                if layer and layer["class_name"] == "Dense" and weight.endswith("/kernel"):
                    if data.shape[-1] != layer["config"]["units"]:
                        problem(f"{data.name}: shape {data.shape} does not end in units {layer['config']['units']}")
        if "training_config" in f.attrs and "optimizer_weights" in f:
            # Keras 3 restores these by position: iteration first, every listed name a dataset.
            group = f["optimizer_weights"]
            names = attribute_list(group, "weight_names")
            if not names or not names[0].endswith("/iteration"):
                problem(f"optimizer_weights: expected the iteration count first, got {names[:1]}")
            for n in names:
                if n not in group:
                    problem(f"optimizer_weights: no dataset {n}")


if __name__ == "__main__":
    main(sys.argv[1])
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)
