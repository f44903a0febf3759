"""The single-step inference graph, built from trained weights and separate from the Keras model.

    step(token: int32 [batch], state: float32 [batch, state_size])
        -> {"logits": float32 [batch, vocab], "new_state": float32 [batch, state_size]}

Weights are numpy arrays turned into constants *inside* the traced function, so the SavedModel,
TFLite and ONNX files hold plain Const tensors: no variables (READ_VARIABLE/VAR_HANDLE), no time
loop (WHILE), no captured inputs. The embedding is folded into layer 0's input projection: one
gather from a [vocab, G*H] table replaces the embedding lookup, its matmul and the input bias.
The output is named new_state, not state: tf2onnx fails when an output shares an input's name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charwright.runtime.bundle.architecture import (folded_input_table, input_bias, recurrent_bias,
                                                  run_stack)
from charwright.trainer.config import ModelConfig

STEP_INPUTS = ("token", "state")
STEP_OUTPUTS = ("logits", "new_state")


def tf_activation(tf, name: str):
    """Keras 3's activation `name` as TensorFlow ops (hard_sigmoid = relu6(x + 3) / 6)."""
    return {"tanh": tf.tanh, "sigmoid": tf.sigmoid, "relu": tf.nn.relu,
            "linear": lambda x: x,
            "hard_sigmoid": lambda x: tf.nn.relu6(x + 3.0) / 6.0}[name]


def _gates(x, G: int, H: int) -> list:
    """The G per-gate column blocks [batch, H] of a fused [batch, G*H] product."""
    return [x[:, k * H : (k + 1) * H] for k in range(G)]


def _matmul(tf, h, kernel, bias=None):
    """h @ kernel (+ bias): one fused product over every gate."""
    out = tf.matmul(h, tf.constant(kernel))
    return out if bias is None else out + tf.constant(bias)


def _gru(tf, spec, x, parts: list, rk, rb) -> list:
    H, act, ract = spec["units"], *_acts(tf, spec)
    h = parts[0]
    xz, xr, xh = _gates(x, 3, H)
    if spec["reset_after"]:
        rz, rr, rh = _gates(_matmul(tf, h, rk, rb), 3, H)
        z, r = ract(xz + rz), ract(xr + rr)
        hh = act(xh + r * rh)
    else:  # the reset gate applies to h before its matmul; no recurrent bias
        rz, rr = _gates(_matmul(tf, h, rk[:, : 2 * H]), 2, H)
        z, r = ract(xz + rz), ract(xr + rr)
        hh = act(xh + tf.matmul(r * h, tf.constant(rk[:, 2 * H :])))
    return [z * h + (1.0 - z) * hh]


def _lstm(tf, spec, x, parts: list, rk, rb) -> list:
    H, act, ract = spec["units"], *_acts(tf, spec)
    h, c = parts
    g = [a + b for a, b in zip(_gates(x, 4, H), _gates(_matmul(tf, h, rk), 4, H))]
    c_new = ract(g[1]) * c + ract(g[0]) * act(g[2])
    return [ract(g[3]) * act(c_new), c_new]


def _rnn(tf, spec, x, parts: list, rk, rb) -> list:
    return [tf_activation(tf, spec["activation"])(x + _matmul(tf, parts[0], rk))]


def _acts(tf, spec) -> tuple:
    return tf_activation(tf, spec["activation"]), tf_activation(tf, spec["recurrent_activation"])


CELLS = {"gru": _gru, "lstm": _lstm, "rnn": _rnn}


def build_step_function(weights: dict, cfg: ModelConfig):
    """Returns a tf.Module whose `step` is the tf.function above (input_signature fixed).
    Each layer has its own cell, size and activations (cfg.layer_specs()); every gate product is
    one fused [*, G*H] matmul, sliced per gate. (The full-int8 file is converted from its own
    integer-form graph: export/formats/tflite/int8_graph.py.)"""
    import tensorflow as tf

    specs, S = cfg.layer_specs(), cfg.state_size
    w = {k: np.asarray(v, np.float32) for k, v in weights.items()}
    table0 = folded_input_table(weights, specs[0])

    def layer(i, spec, x, state_parts):
        """One layer: its input projection (bias included) unless layer 0, then its cell."""
        if i > 0:
            x = _matmul(tf, x, w[f"layer{i}.kernel"], input_bias(w[f"layer{i}.bias"], spec))
        return CELLS[spec["cell"]](tf, spec, x, state_parts, w[f"layer{i}.recurrent_kernel"],
                                   recurrent_bias(w[f"layer{i}.bias"], spec))

    class StepModule(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="token"),
                                      tf.TensorSpec([None, S], tf.float32, name="state")])
        def step(self, token, state):
            x0 = tf.gather(tf.constant(table0), token)  # [batch, G*H]
            x, new_parts = run_stack(specs, x0, state, layer)
            logits = tf.matmul(x, tf.constant(w["dense.kernel"])) + tf.constant(w["dense.bias"])
            new_state = new_parts[0] if len(new_parts) == 1 else tf.concat(new_parts, axis=1)
            return {"logits": logits, "new_state": new_state}

    return StepModule()


def save_step_savedmodel(module, path: str | Path) -> None:
    """Saves `module.step` as a SavedModel whose serving_default signature is the step."""
    import tensorflow as tf

    tf.saved_model.save(
        module, str(path), signatures={"serving_default": module.step.get_concrete_function()}
    )


def run_steps(step_fn, tokens: np.ndarray, state: np.ndarray):
    """Steps over tokens [T] (batch 1) from `state` [1, S]; returns (logits [T, V], state)."""
    import tensorflow as tf

    out = []
    for t in tokens:
        r = step_fn(tf.constant([int(t)], tf.int32), tf.constant(state))
        out.append(r["logits"].numpy()[0])
        state = r["new_state"].numpy()
    return np.stack(out), state
