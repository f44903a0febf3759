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

from .config import ModelConfig

STEP_INPUTS = ("token", "state")
STEP_OUTPUTS = ("logits", "new_state")


def folded_input_table(weights: dict, cfg: ModelConfig) -> np.ndarray:
    """Layer 0's input projection for every id: embedding @ kernel + input bias, [V, G*H]."""
    emb = weights["embedding"].astype(np.float64)
    table = emb @ weights["layer0.kernel"].astype(np.float64)
    bias = weights["layer0.bias"]
    table += bias[0] if cfg.cell == "gru" else bias
    return table.astype(np.float32)


def build_step_function(weights: dict, cfg: ModelConfig):
    """Returns a tf.Module whose `step` is the tf.function above (input_signature fixed)."""
    import tensorflow as tf

    H, L, S = cfg.units, cfg.layers, cfg.state_size
    parts = cfg.state_parts
    table0 = folded_input_table(weights, cfg)
    arrays = {k: np.asarray(v, np.float32) for k, v in weights.items()}

    def cell(i, x_proj, state_parts):
        """One cell of layer i given its input projection (bias included)."""
        rk = tf.constant(arrays[f"layer{i}.recurrent_kernel"])
        h = state_parts[0]
        if cfg.cell == "gru":
            rec = tf.matmul(h, rk) + tf.constant(arrays[f"layer{i}.bias"][1])
            xz, xr, xh = x_proj[:, :H], x_proj[:, H : 2 * H], x_proj[:, 2 * H :]
            z = tf.sigmoid(xz + rec[:, :H])
            r = tf.sigmoid(xr + rec[:, H : 2 * H])
            hh = tf.tanh(xh + r * rec[:, 2 * H :])
            return [z * h + (1.0 - z) * hh]
        if cfg.cell == "lstm":
            c = state_parts[1]
            g = x_proj + tf.matmul(h, rk)
            i_g = tf.sigmoid(g[:, :H])
            f_g = tf.sigmoid(g[:, H : 2 * H])
            c_new = f_g * c + i_g * tf.tanh(g[:, 2 * H : 3 * H])
            o_g = tf.sigmoid(g[:, 3 * H :])
            return [o_g * tf.tanh(c_new), c_new]
        return [tf.tanh(x_proj + tf.matmul(h, rk))]

    class StepModule(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.int32, name="token"),
                tf.TensorSpec([None, S], tf.float32, name="state"),
            ]
        )
        def step(self, token, state):
            x = tf.gather(tf.constant(table0), token)  # [batch, G*H]
            new_parts, off = [], 0
            for i in range(L):
                if i > 0:
                    bias = arrays[f"layer{i}.bias"]
                    x = tf.matmul(h_out, tf.constant(arrays[f"layer{i}.kernel"])) + tf.constant(
                        bias[0] if cfg.cell == "gru" else bias
                    )
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
