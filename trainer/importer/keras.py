"""A Keras model (Sequential or functional, from a .keras or legacy .h5 file) read into the
arrays and layer specs charwright rebuilds it from, one layer kind at a time.

Accepted, in this order: an Embedding or a one-hot CategoryEncoding; one or more GRU
(reset_after true or false) / LSTM / SimpleRNN layers with the activations of config.py's
ACTIVATIONS; one Dense layer of logits; optionally a softmax (the Dense's activation, or a
Softmax / Activation("softmax") layer), which is dropped. Dropout-like layers anywhere are
identities at inference. Anything else is refused with one line naming the layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charwright.runtime.errors import ConfigError

from charwright.trainer.config import ACTIVATIONS, layer_spec
from charwright.trainer.importer.archive import (IDENTITY_LAYERS, NOT_SUPPORTED, RECURRENT,
                                                 WHY_REFUSED, ImportRefused)
from charwright.trainer.network import cell_weights



def load_keras_model(path: Path):
    """The model of a .keras or .h5 file (compile=False; Lambda layers stay refused)."""
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as e:  # Keras raises ValueError, TypeError, OSError, KeyError...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: Keras cannot load this model ({first[:200]}); for a "
                          "weights-only file give the stack with --stack") from None


def _refuse(layer, why: str):
    raise ImportRefused(f"layer {layer.name!r} ({type(layer).__name__}): {why}")


def _act_name(keras, fn) -> str:
    name = fn if isinstance(fn, str) else keras.activations.serialize(fn)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    return str(name)


def parse_model(model) -> dict:
    """Walks the model's layers -> {embedding, one_hot, input_dim, specs, weights, dense,
    softmax, mask_zero, names}. Raises ImportRefused naming the layer."""
    import keras

    if len(getattr(model, "inputs", None) or [None]) != 1:
        raise ImportRefused(f"model {model.name!r} has {len(model.inputs)} inputs; charwright "
                            "imports a single integer input")
    out = {"embedding": None, "one_hot": False, "specs": [], "weights": {}, "dense": None,
           "softmax": None, "mask_zero": False, "names": []}
    stage = "input"  # input -> embedded -> recurrent -> dense (-> a softmax after it)
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in IDENTITY_LAYERS:
            continue
        if kind == "Masking":
            _refuse(layer, "masking skips time steps, which changes results; remove it")
        parse = _PARSERS.get(kind)
        if kind in ("Softmax", "Activation") and (stage != "dense" or out["softmax"] is not None):
            parse = None  # only one softmax, and only after the logits
        if parse is None:
            _refuse(layer, WHY_REFUSED.get(kind, NOT_SUPPORTED))
        stage = parse(keras, layer, out, stage)
    if stage == "input":
        raise ImportRefused(f"model {model.name!r}: no Embedding (or one-hot) input layer")
    if not out["specs"]:
        raise ImportRefused(f"model {model.name!r}: no recurrent layer (GRU, LSTM, SimpleRNN)")
    if out["dense"] is None:
        raise ImportRefused(f"model {model.name!r}: no Dense output layer after the recurrent "
                            "layers")
    return out


def _embedding(keras, layer, out: dict, stage: str) -> str:
    """Embedding (its table) or CategoryEncoding (one-hot: no table)."""
    if stage != "input":
        _refuse(layer, "an embedding must come first, before the recurrent layers")
    if type(layer).__name__ == "CategoryEncoding":
        if layer.output_mode != "one_hot":
            _refuse(layer, f"output_mode {layer.output_mode!r}: only one_hot is a "
                    "character input")
        out["one_hot"], out["input_dim"] = True, int(layer.num_tokens)
    else:
        emb = np.asarray(layer.embeddings.numpy(), np.float32)
        out["embedding"], out["input_dim"] = emb, emb.shape[0]
        out["mask_zero"] = bool(getattr(layer, "mask_zero", False))
        out["names"].append(layer.name)
    return "embedded"


def _recurrent(keras, layer, out: dict, stage: str) -> str:
    """GRU, LSTM or SimpleRNN: its spec (cell, units, activations) and its weights."""
    kind = type(layer).__name__
    if stage not in ("embedded", "recurrent"):
        _refuse(layer, "a recurrent layer must follow the embedding" if stage == "input"
                else "a recurrent layer after the output layer is not supported")
    if not layer.return_sequences:
        _refuse(layer, "return_sequences=False: charwright needs an output for every "
                "character (set return_sequences=True)")
    if getattr(layer, "go_backwards", False):
        _refuse(layer, "go_backwards=True reads the text backwards; a generator cannot")
    cell = layer.cell
    d = {"cell": RECURRENT[kind], "units": int(cell.units),
         "activation": _act_name(keras, cell.activation)}
    if kind != "SimpleRNN":
        d["recurrent_activation"] = _act_name(keras, cell.recurrent_activation)
    if kind == "GRU":
        d["reset_after"] = bool(cell.reset_after)
    for key in ("activation", "recurrent_activation"):
        if key in d and d[key] not in ACTIVATIONS:
            _refuse(layer, f"{key} {d[key]!r} is not supported (use {', '.join(ACTIVATIONS)})")
    i = len(out["specs"])
    out["specs"].append(layer_spec(d, f"layer {layer.name!r}"))
    out["weights"].update(cell_weights(cell, i))
    out["names"].append(layer.name)
    return "recurrent"


def _dense(keras, layer, out: dict, stage: str) -> str:
    """The Dense layer of logits (its softmax activation, if any, noted and dropped)."""
    if stage != "recurrent":
        _refuse(layer, "the Dense output layer must follow the recurrent layers"
                if stage != "dense" else "a second Dense layer is not supported "
                "(charwright's output is one Dense layer of logits)")
    act = _act_name(keras, layer.activation)
    if act not in ("linear", "softmax"):
        _refuse(layer, f"activation {act!r}: the output must be logits (linear) or a "
                "softmax over them")
    w = np.asarray(layer.kernel.numpy(), np.float32)
    b = (np.asarray(layer.bias.numpy(), np.float32) if layer.use_bias
         else np.zeros(w.shape[1], np.float32))
    out["dense"] = (w, b)
    if act == "softmax":
        out["softmax"] = f"activation='softmax' of Dense {layer.name!r}"
    out["names"].append(layer.name)
    return "dense"


def _softmax(keras, layer, out: dict, stage: str) -> str:
    """A Softmax or Activation layer after the logits: noted and dropped (linear: ignored)."""
    kind = type(layer).__name__
    act = "softmax" if kind == "Softmax" else _act_name(keras, layer.activation)
    if act == "linear":
        return stage
    if act != "softmax":
        _refuse(layer, f"activation {act!r} after the logits: only softmax is handled")
    if kind == "Softmax" and getattr(layer, "axis", -1) not in (-1, 2, [-1]):
        _refuse(layer, f"softmax over axis {layer.axis}, not over the vocabulary")
    out["softmax"] = f"{kind} layer {layer.name!r}"
    return stage


_PARSERS = {"Embedding": _embedding, "CategoryEncoding": _embedding,
            **dict.fromkeys(RECURRENT, _recurrent), "Dense": _dense,
            "Softmax": _softmax, "Activation": _softmax}
