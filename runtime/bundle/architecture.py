"""The model's architecture as numbers: the one parser of a manifest's `architecture` into layers,
and the facts every implementation of the step shares (numpy backend, emit-c, the trainer's and
export's step graphs). numpy only.

    layer_specs(arch)        one {cell, units, reset_after, activation, recurrent_activation}
                             per layer
    weight_shapes(arch)      the weights.npz contract: name -> shape
    GATES[cell]              gate blocks per layer: GRU z, r, h; LSTM i, f, c, o; SimpleRNN one
    STATE_PARTS[cell]        vectors a layer keeps in the flat state: h, or h and c (LSTM)
    run_stack(specs, x, state, layer)
                             the layer loop every implementation of the step shares
    input_bias, folded_input_table
                             layer 0's input projection folded with the embedding: one gather
                             from a [V, G*H] table replaces the lookup, its matmul and the bias
"""

from __future__ import annotations

import numpy as np

from charwright.runtime.errors import BundleError

GATES = {"gru": 3, "lstm": 4, "rnn": 1}
STATE_PARTS = {"gru": 1, "lstm": 2, "rnn": 1}
ACTIVATIONS = ("tanh", "sigmoid", "relu", "linear", "hard_sigmoid")  # Keras 3's, by name
KERAS_DEFAULTS = {"reset_after": True, "activation": "tanh", "recurrent_activation": "sigmoid"}


def layer_specs(arch: dict) -> list[dict]:
    """One spec per layer: the architecture's `stack` when present (the truth), else `layers` x
    the uniform cell (bundles written before the stack existed). A key a layer leaves out takes
    the architecture's own value, then Keras 3's default."""
    stack = arch.get("stack")
    if stack is None:
        layers = arch.get("layers")
        if type(layers) is not int or layers < 1:
            raise BundleError(f"architecture.layers must be a positive integer, got {layers!r}")
        stack = [{"cell": arch.get("cell"), "units": arch.get("units")}] * layers
    if not isinstance(stack, list) or not stack:
        raise BundleError("architecture.stack must be a non-empty list of layers")
    out = []
    for i, d in enumerate(stack):
        if not isinstance(d, dict) or d.get("cell") not in GATES or type(d.get("units")) is not int:
            raise BundleError(f"architecture.stack[{i}] must name a cell (gru, lstm, rnn) and units")
        out.append({"cell": d["cell"], "units": d["units"],
                    **{k: d.get(k, arch.get(k, v)) for k, v in KERAS_DEFAULTS.items()}})
    return out


def state_size(specs: list[dict]) -> int:
    return sum(STATE_PARTS[d["cell"]] * d["units"] for d in specs)


def weight_shapes(arch: dict) -> dict:
    """The weights.npz contract (trainer/network.py export_weights): name -> shape.

    embedding [V, E] (E = V when one-hot); layer{i}.kernel [in, G*H]; recurrent_kernel [H, G*H];
    bias [2, 3H] (GRU, reset_after), [3H] (GRU without), [4H] (LSTM), [H] (SimpleRNN);
    dense.kernel [H_last, V]; dense.bias [V]. Each layer has its own cell and H, and `in` is the
    previous layer's H."""
    V = int(arch["vocab_size"])
    E = int(arch.get("embedding_dim") or 0) or V
    out, prev = {"embedding": (V, E)}, E
    for i, spec in enumerate(layer_specs(arch)):
        H, G = spec["units"], GATES[spec["cell"]]
        out[f"layer{i}.kernel"] = (prev, G * H)
        out[f"layer{i}.recurrent_kernel"] = (H, G * H)
        two = spec["cell"] == "gru" and spec["reset_after"]
        out[f"layer{i}.bias"] = (2, G * H) if two else (G * H,)
        prev = H
    out["dense.kernel"] = (prev, V)
    out["dense.bias"] = (V,)
    return out


def run_stack(specs: list[dict], x, state, layer):
    """The step's loop over layers, for numpy arrays and TF tensors alike: split the flat state
    [batch, S] into each layer's parts (h, or h and c), call `layer(i, spec, x, parts)` -> that
    layer's new parts (new h first), and feed each new h to the next layer as its input.
    Returns (the last layer's h, every new part in state order)."""
    new_parts, off = [], 0
    for i, spec in enumerate(specs):
        H = spec["units"]
        parts = [state[:, off + k * H : off + (k + 1) * H] for k in range(STATE_PARTS[spec["cell"]])]
        off += len(parts) * H
        out = layer(i, spec, x, parts)
        new_parts.extend(out)
        x = out[0]
    return x, new_parts


def input_bias(bias: np.ndarray, spec: dict) -> np.ndarray:
    """The bias added to a layer's input projection: row 0 of a GRU reset_after [2, 3H] bias,
    the whole bias otherwise."""
    return bias[0] if spec["cell"] == "gru" and spec["reset_after"] else bias


def recurrent_bias(bias: np.ndarray, spec: dict):
    """The bias added to a GRU reset_after layer's recurrent projection (row 1); None otherwise."""
    return bias[1] if spec["cell"] == "gru" and spec["reset_after"] else None


def folded_input_table(weights: dict, spec0: dict) -> np.ndarray:
    """Layer 0's input projection for every id: embedding @ kernel + input bias, [V, G*H]
    float32, summed in float64 (the same table in every format)."""
    table = weights["embedding"].astype(np.float64) @ weights["layer0.kernel"].astype(np.float64)
    table += input_bias(weights["layer0.bias"], spec0)
    return table.astype(np.float32)
