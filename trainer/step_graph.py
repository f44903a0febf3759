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

from charwright.runtime.bundle.architecture import GATES, folded_input_table, input_bias
from charwright.trainer.config import ModelConfig

STEP_INPUTS = ("token", "state")
STEP_OUTPUTS = ("logits", "new_state")


def tf_activation(tf, name: str):
    """Keras 3's activation `name` as TensorFlow ops (hard_sigmoid = relu6(x + 3) / 6)."""
    return {"tanh": tf.tanh, "sigmoid": tf.sigmoid, "relu": tf.nn.relu,
            "linear": lambda x: x,
            "hard_sigmoid": lambda x: tf.nn.relu6(x + 3.0) / 6.0}[name]


# 1 - f(x) == f(-x): the GRU update gate can be computed as u = 1 - z directly
SYMMETRIC = {"sigmoid", "hard_sigmoid"}


def negate_update_gate(weights: dict, cfg: ModelConfig) -> dict:
    """The same weights with every GRU layer's update-gate (z) columns negated, so that the
    gate computes u = f(-pre_z) = 1 - z (f symmetric). Other layers are left as they are."""
    out = dict(weights)
    for i, spec in enumerate(cfg.layer_specs()):
        if spec["cell"] != "gru" or spec["recurrent_activation"] not in SYMMETRIC:
            continue
        H = spec["units"]
        for name in (f"layer{i}.kernel", f"layer{i}.recurrent_kernel", f"layer{i}.bias"):
            a = np.array(weights[name], np.float32, copy=True)
            a[..., :H] *= -1.0
            out[name] = a
    return out


# integer form: an LSTM's cell state is clamped to +-8 (tanh is flat there; measured on a trained
# 2-layer LSTM: top-1 99.9% of the unclamped model, where c reached +-174) and the file's state
# buffer holds c / 8, so that h and c share the state's single int8 scale over [-1, 1]
LSTM_CELL_RANGE = 8.0


def state_encoding(cfg: ModelConfig) -> list[dict]:
    """files[].state_encoding of an integer-form file: the state parts it holds divided by a
    scale (a buffer is only ever copied back into the file that wrote it; zeros stay zeros)."""
    return [{"part": e["name"], "scale": LSTM_CELL_RANGE} for e in cfg.state_layout()
            if e["part"] == "c"]


def state_bounded(cfg: ModelConfig) -> bool:
    """Whether every value of an integer-form file's state lies in [-1, 1]: a GRU's h (a gate
    mix of h and tanh), a tanh SimpleRNN's, an LSTM's h = o * tanh(c) and its c / 8."""
    gate = ("sigmoid", "hard_sigmoid")
    return all(d["activation"] == "tanh" and (d["cell"] == "rnn" or
                                              d["recurrent_activation"] in gate)
               for d in cfg.layer_specs())


def build_step_function(weights: dict, cfg: ModelConfig, split_gates: bool = False,
                        integer: bool = False):
    """Returns a tf.Module whose `step` is the tf.function above (input_signature fixed).
    Each layer has its own cell, size and activations (cfg.layer_specs()).

    split_gates: one gather / matmul per gate instead of one fused [*, G*H] product sliced
    afterwards, so that full-integer quantization gives every gate its own tensor and scale
    (same function, different graph).
    integer: the graph the full-int8 file is converted from (export/formats/tflite/int8.py): split gates, and
    a GRU update written h + u * (n - h) with u = 1 - z computed by the gate itself. An int8
    sigmoid's output stops at 255/256, so z * h leaks at least 1/256 of a long-memory unit per
    step; u reaches 0 exactly, and the update rounds once at the state's own scale. Same
    function to float32 rounding for GRU and SimpleRNN; an LSTM's cell state is clamped to
    +-LSTM_CELL_RANGE and held in the state as c / LSTM_CELL_RANGE (state_encoding())."""
    import tensorflow as tf

    split_gates = split_gates or integer
    specs, S = cfg.layer_specs(), cfg.state_size
    if integer:
        weights = negate_update_gate(weights, cfg)
    table0 = folded_input_table(weights, specs[0])
    arrays = {k: np.asarray(v, np.float32) for k, v in weights.items()}

    def per_gate(x, G, H):
        """x as G per-gate tensors: already a list (split_gates) or sliced from one tensor."""
        return x if isinstance(x, list) else [x[:, k * H : (k + 1) * H] for k in range(G)]

    def matmul_gates(h, kernel, bias, G, H):
        """h @ kernel (+ bias): one fused product, or G products when split_gates."""
        if not split_gates:
            out = tf.matmul(h, tf.constant(kernel))
            return out if bias is None else out + tf.constant(bias)
        outs = [tf.matmul(h, tf.constant(np.ascontiguousarray(kernel[:, k * H : (k + 1) * H])))
                for k in range(G)]
        if bias is not None:
            outs = [o + tf.constant(bias[k * H : (k + 1) * H]) for k, o in enumerate(outs)]
        return outs

    def cell(i, x_proj, state_parts):
        """One cell of layer i given its input projection (bias included)."""
        spec = specs[i]
        H = spec["units"]
        act = tf_activation(tf, spec["activation"])
        rk = arrays[f"layer{i}.recurrent_kernel"]
        h = state_parts[0]
        if spec["cell"] == "gru":
            ract = tf_activation(tf, spec["recurrent_activation"])
            as_u = integer and spec["recurrent_activation"] in SYMMETRIC  # z columns negated
            xz, xr, xh = per_gate(x_proj, 3, H)
            if spec["reset_after"]:
                rz, rr, rh = per_gate(matmul_gates(h, rk, arrays[f"layer{i}.bias"][1], 3, H),
                                      3, H)
                z = ract(xz + rz)
                r = ract(xr + rr)
                hh = act(xh + r * rh)
            else:  # the reset gate applies to h before its matmul; no recurrent bias
                rz, rr = per_gate(matmul_gates(h, rk[:, : 2 * H], None, 2, H), 2, H)
                z = ract(xz + rz)
                r = ract(xr + rr)
                hh = act(xh + tf.matmul(r * h, tf.constant(rk[:, 2 * H :])))
            if as_u:  # z holds u = 1 - z here
                return [h + z * (hh - h)]
            return [z * h + (1.0 - z) * hh]
        if spec["cell"] == "lstm":
            ract = tf_activation(tf, spec["recurrent_activation"])
            c = state_parts[1]
            if integer:  # the file's state holds c / LSTM_CELL_RANGE (see below)
                c = c * LSTM_CELL_RANGE
            g = [a + b for a, b in zip(per_gate(x_proj, 4, H),
                                       per_gate(matmul_gates(h, rk, None, 4, H), 4, H))]
            i_g = ract(g[0])
            f_g = ract(g[1])
            c_new = f_g * c + i_g * act(g[2])
            o_g = ract(g[3])
            if integer:
                c_new = tf.clip_by_value(c_new, -LSTM_CELL_RANGE, LSTM_CELL_RANGE)
                return [o_g * act(c_new), c_new * (1.0 / LSTM_CELL_RANGE)]
            return [o_g * act(c_new), c_new]
        return [act(per_gate(x_proj, 1, H)[0] + per_gate(matmul_gates(h, rk, None, 1, H), 1, H)[0])]

    class StepModule(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.int32, name="token"),
                tf.TensorSpec([None, S], tf.float32, name="state"),
            ]
        )
        def step(self, token, state):
            G0, H0 = GATES[specs[0]["cell"]], specs[0]["units"]
            if split_gates:  # one table per gate
                x = [tf.gather(tf.constant(np.ascontiguousarray(table0[:, k * H0 : (k + 1) * H0])),
                               token) for k in range(G0)]
            else:
                x = tf.gather(tf.constant(table0), token)  # [batch, G*H]
            new_parts, off = [], 0
            for i, spec in enumerate(specs):
                H = spec["units"]
                if i > 0:
                    x = matmul_gates(h_out, arrays[f"layer{i}.kernel"],
                                     input_bias(arrays[f"layer{i}.bias"], spec),
                                     GATES[spec["cell"]], H)
                parts = 2 if spec["cell"] == "lstm" else 1
                sp = [state[:, off + k * H : off + (k + 1) * H] for k in range(parts)]
                off += parts * H
                out = cell(i, x, sp)
                h_out = out[0]
                new_parts.extend(out)
            logits = tf.matmul(h_out, tf.constant(arrays["dense.kernel"])) + tf.constant(
                arrays["dense.bias"]
            )
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
