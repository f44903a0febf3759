"""The integer-form step graph: what the full-int8 file is converted from (int8.py says why).

It is the trainer's float step graph (trainer/step_graph.py, recorded in RUN_DIR/step) with three
changes, each written here and nowhere else:

1. split gates: one gather / matmul per gate instead of one fused [*, G*H] product sliced
   afterwards, so that full-integer quantization gives every gate its own tensor and scale;
2. the GRU update written h + u * (n - h) with u = 1 - z computed by the gate itself (its weight
   columns negated: negate_update_gate). An int8 sigmoid's output stops at 255/256, so z * h
   leaks at least 1/256 of a long-memory unit per step; u reaches 0 exactly, and the update
   rounds once at the state's own scale;
3. an LSTM's cell state clamped to +-LSTM_CELL_RANGE and held in the state as
   c / LSTM_CELL_RANGE (state_encoding()), so that h and c share the state's single scale.

The same function as the float graph to float32 rounding for GRU and SimpleRNN (and for an LSTM
whose c stays within the range). Built from RUN_DIR/step/weights.npz and the architecture alone:
export needs nothing of the trainer's code for it. Weights become constants inside the traced
function (plain Const tensors in the file, as in the float graph).

    step(token: int32 [batch], state: float32 [batch, state_size])
        -> {"logits": float32 [batch, vocab], "new_state": float32 [batch, state_size]}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charwright.runtime.bundle.architecture import (GATES, folded_input_table, input_bias,
                                                  layer_specs, recurrent_bias, run_stack,
                                                  state_size)

# 1 - f(x) == f(-x): for these gate activations the GRU update gate can compute u = 1 - z
SYMMETRIC = {"sigmoid", "hard_sigmoid"}

# an LSTM's cell state is clamped to +-8 (tanh is flat there; measured on a trained 2-layer
# LSTM: top-1 99.9% of the unclamped model, where c reached +-174) and the file's state buffer
# holds c / 8, so that h and c share the state's single int8 scale over [-1, 1]
LSTM_CELL_RANGE = 8.0


def tf_activation(tf, name: str):
    """Keras 3's activation `name` as TensorFlow ops (hard_sigmoid = relu6(x + 3) / 6); the
    names are runtime.bundle.architecture.ACTIVATIONS."""
    return {"tanh": tf.tanh, "sigmoid": tf.sigmoid, "relu": tf.nn.relu,
            "linear": lambda x: x,
            "hard_sigmoid": lambda x: tf.nn.relu6(x + 3.0) / 6.0}[name]


def _as_u(spec: dict) -> bool:
    """Whether a layer's update gate computes u = 1 - z here (a GRU with a symmetric gate)."""
    return spec["cell"] == "gru" and spec["recurrent_activation"] in SYMMETRIC


def negate_update_gate(weights: dict, specs: list[dict]) -> dict:
    """The same weights with every such GRU layer's update-gate (z) columns negated, so that the
    gate computes u = f(-pre_z) = 1 - z. Other layers are left as they are."""
    out = dict(weights)
    for i, spec in enumerate(specs):
        if not _as_u(spec):
            continue
        H = spec["units"]
        for name in (f"layer{i}.kernel", f"layer{i}.recurrent_kernel", f"layer{i}.bias"):
            a = np.array(weights[name], np.float32, copy=True)
            a[..., :H] *= -1.0
            out[name] = a
    return out


def state_encoding(layout: list[dict]) -> list[dict]:
    """files[].state_encoding of an integer-form file, from the state layout (step.json's
    state_layout): the state parts it holds divided by a scale (a buffer is only ever copied
    back into the file that wrote it; zeros stay zeros)."""
    return [{"part": e["name"], "scale": LSTM_CELL_RANGE} for e in layout if e["part"] == "c"]


def state_bounded(specs: list[dict]) -> bool:
    """Whether every value of an integer-form file's state lies in [-1, 1]: a GRU's h (a gate
    mix of h and tanh), a tanh SimpleRNN's, an LSTM's h = o * tanh(c) and its c / 8."""
    gate = ("sigmoid", "hard_sigmoid")
    return all(d["activation"] == "tanh" and (d["cell"] == "rnn" or
                                              d["recurrent_activation"] in gate)
               for d in specs)


def _split(a: np.ndarray, G: int, H: int) -> list[np.ndarray]:
    """The G per-gate column blocks of a [..., G*H] array, each contiguous."""
    return [np.ascontiguousarray(a[..., k * H : (k + 1) * H]) for k in range(G)]


def _gates(tf, h, kernel, bias, G: int, H: int) -> list:
    """h @ kernel (+ bias) as G per-gate products (change 1)."""
    outs = [tf.matmul(h, tf.constant(k)) for k in _split(kernel, G, H)]
    if bias is not None:
        outs = [o + tf.constant(b) for o, b in zip(outs, _split(bias, G, H))]
    return outs


def _gru(tf, spec, x: list, parts: list, rk, rb) -> list:
    H, act, ract = spec["units"], *_acts(tf, spec)
    h = parts[0]
    if spec["reset_after"]:
        rz, rr, rh = _gates(tf, h, rk, rb, 3, H)
        z, r = ract(x[0] + rz), ract(x[1] + rr)
        hh = act(x[2] + r * rh)
    else:  # the reset gate applies to h before its matmul; no recurrent bias
        rz, rr = _gates(tf, h, rk[:, : 2 * H], None, 2, H)
        z, r = ract(x[0] + rz), ract(x[1] + rr)
        hh = act(x[2] + tf.matmul(r * h, tf.constant(rk[:, 2 * H :])))
    if _as_u(spec):  # change 2: z holds u = 1 - z here
        return [h + z * (hh - h)]
    return [z * h + (1.0 - z) * hh]


def _lstm(tf, spec, x: list, parts: list, rk, rb) -> list:
    H, act, ract = spec["units"], *_acts(tf, spec)
    h, c = parts[0], parts[1] * LSTM_CELL_RANGE  # change 3: the state holds c / range
    g = [a + b for a, b in zip(x, _gates(tf, h, rk, None, 4, H))]
    c_new = ract(g[1]) * c + ract(g[0]) * act(g[2])
    c_new = tf.clip_by_value(c_new, -LSTM_CELL_RANGE, LSTM_CELL_RANGE)
    return [ract(g[3]) * act(c_new), c_new * (1.0 / LSTM_CELL_RANGE)]


def _rnn(tf, spec, x: list, parts: list, rk, rb) -> list:
    act = tf_activation(tf, spec["activation"])
    return [act(x[0] + _gates(tf, parts[0], rk, None, 1, spec["units"])[0])]


def _acts(tf, spec) -> tuple:
    return tf_activation(tf, spec["activation"]), tf_activation(tf, spec["recurrent_activation"])


CELLS = {"gru": _gru, "lstm": _lstm, "rnn": _rnn}


def build_integer_step(weights: dict, arch: dict):
    """A tf.Module whose `step` is the integer-form graph of `weights` (weights.npz's arrays)
    for the manifest architecture `arch`; its input_signature is the step contract's."""
    import tensorflow as tf

    specs = layer_specs(arch)
    S = state_size(specs)
    w = {k: np.asarray(v, np.float32) for k, v in negate_update_gate(weights, specs).items()}
    tables0 = _split(folded_input_table(w, specs[0]), GATES[specs[0]["cell"]], specs[0]["units"])

    def layer(i, spec, x, state_parts):
        """One layer: its input projection (per gate) unless layer 0, then its cell."""
        G, H = GATES[spec["cell"]], spec["units"]
        if i > 0:
            x = _gates(tf, x, w[f"layer{i}.kernel"], input_bias(w[f"layer{i}.bias"], spec), G, H)
        return CELLS[spec["cell"]](tf, spec, x, state_parts, w[f"layer{i}.recurrent_kernel"],
                                   recurrent_bias(w[f"layer{i}.bias"], spec))

    class IntegerStep(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="token"),
                                      tf.TensorSpec([None, S], tf.float32, name="state")])
        def step(self, token, state):
            x0 = [tf.gather(tf.constant(t), token) for t in tables0]  # one per gate
            x, new_parts = run_stack(specs, x0, state, layer)
            logits = tf.matmul(x, tf.constant(w["dense.kernel"])) + tf.constant(w["dense.bias"])
            new_state = new_parts[0] if len(new_parts) == 1 else tf.concat(new_parts, axis=1)
            return {"logits": logits, "new_state": new_state}

    return IntegerStep()


def save_integer_step(weights: dict, arch: dict, path: str | Path) -> str:
    """Saves the integer-form graph as a SavedModel whose serving_default signature is the step;
    returns its directory."""
    import tensorflow as tf

    module = build_integer_step(weights, arch)
    tf.saved_model.save(module, str(path),
                        signatures={"serving_default": module.step.get_concrete_function()})
    return str(path)
