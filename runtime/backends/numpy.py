"""The numpy reference backend: the recurrent step written out from the bundle's weights.npz.

It needs no inference runtime at all, reads like the equations, and gives parity checks a third
opinion. Gate order and formulas are Keras 3's (GRU reset_after=True: z, r, h; LSTM: i, f, c, o).
The embedding is folded into layer 0's input projection, as in the exported graphs.
"""

from __future__ import annotations

import numpy as np

from charwright.runtime.errors import BundleError
from charwright.runtime.files.npz import Npz
from charwright.runtime.backends import BY_NAME
from charwright.runtime.backends.base import StepBackend
from charwright.runtime.bundle.architecture import (folded_input_table, input_bias, layer_specs,
                                                  recurrent_bias, run_stack, weight_shapes)

def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)  # Keras 3: relu6(x + 3) / 6


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 0.5 * (1 + tanh(x / 2)): one transcendental, no overflow for large |x|
    return 0.5 + 0.5 * np.tanh(0.5 * x)


# Keras 3's activations by name (the manifest's stack[].activation / recurrent_activation)
ACTIVATIONS = {"tanh": np.tanh, "sigmoid": _sigmoid, "relu": lambda x: np.maximum(x, 0.0),
               "linear": lambda x: x, "hard_sigmoid": _hard_sigmoid}


class NumpyStep(StepBackend):
    name = "numpy"
    thread_safe = BY_NAME["numpy"].thread_safe

    def __init__(self, weights: dict, architecture: dict, precision: str = "float32",
                 path: str = "<weights>"):
        specs = layer_specs(architecture)
        V = int(architecture["vocab_size"])
        sizes = [int(d["units"]) * (2 if d["cell"] == "lstm" else 1) for d in specs]
        super().__init__(sum(sizes), V, precision, path)
        self.specs, self.L = specs, len(specs)
        try:
            self.acts = [(ACTIVATIONS[d["activation"]],
                          ACTIVATIONS[d["recurrent_activation"] or "sigmoid"]) for d in specs]
        except KeyError as e:
            raise BundleError(f"{path}: activation {e.args[0]!r} is not one this runtime "
                              f"implements ({', '.join(ACTIVATIONS)})") from None
        try:
            w = {k: np.asarray(v, np.float32) for k, v in weights.items()}
            self.table0 = folded_input_table(w, specs[0])
            self.kernel = [None] + [w[f"layer{i}.kernel"] for i in range(1, self.L)]
            self.in_bias = [None] + [input_bias(w[f"layer{i}.bias"], specs[i])
                                     for i in range(1, self.L)]
            self.rkernel = [w[f"layer{i}.recurrent_kernel"] for i in range(self.L)]
            self.rbias = [recurrent_bias(w[f"layer{i}.bias"], specs[i]) for i in range(self.L)]
            self.dense_w, self.dense_b = w["dense.kernel"], w["dense.bias"]
        except KeyError as e:
            raise BundleError(f"{path}: weights file lacks {e.args[0]!r}") from None

    @classmethod
    def from_bundle(cls, bundle, entry, threads: int = 1):
        """Reads weights.npz after checking every array's header against the architecture."""
        path = bundle.path(entry)
        arch = bundle.manifest["architecture"]
        npz = Npz(bundle.read(entry), str(path))
        for name, shape in weight_shapes(arch).items():
            npz.expect(name, shape, "f")
        weights = {name: npz.load(name) for name in weight_shapes(arch)}
        step = cls(weights, arch, entry.precision, str(path))
        step.check_shapes(bundle.state_size, bundle.vocab_size)  # manifest.py checks these agree
        return step

    def step(self, tokens: np.ndarray, state: np.ndarray):
        x0 = self.table0[tokens]  # [B, G*H], embedding + input projection + bias
        h_out, new = run_stack(self.specs, x0, state, self._layer)
        logits = h_out @ self.dense_w + self.dense_b
        new_state = new[0] if len(new) == 1 else np.concatenate(new, axis=1)
        return logits.astype(np.float32, copy=False), new_state.astype(np.float32, copy=False)

    def _layer(self, i: int, spec: dict, x: np.ndarray, parts: list) -> list:
        """Layer i: its input projection (layer 0's is the folded table), then its cell; returns
        its new parts, h first. Keras 3's gate order: GRU z, r, h; LSTM i, f, c, o."""
        H, (act, ract), h = spec["units"], self.acts[i], parts[0]
        if i > 0:
            x = x @ self.kernel[i] + self.in_bias[i]
        if spec["cell"] == "gru":
            rk = self.rkernel[i]
            if spec["reset_after"]:
                rec = h @ rk + self.rbias[i]
                z = ract(x[:, :H] + rec[:, :H])
                r = ract(x[:, H : 2 * H] + rec[:, H : 2 * H])
                hh = act(x[:, 2 * H :] + r * rec[:, 2 * H :])
            else:  # reset before the recurrent matmul, no recurrent bias
                rec = h @ rk[:, : 2 * H]
                z = ract(x[:, :H] + rec[:, :H])
                r = ract(x[:, H : 2 * H] + rec[:, H:])
                hh = act(x[:, 2 * H :] + (r * h) @ rk[:, 2 * H :])
            return [hh + z * (h - hh)]  # = z*h + (1-z)*hh
        if spec["cell"] == "lstm":
            g = x + h @ self.rkernel[i]
            c_new = ract(g[:, H : 2 * H]) * parts[1] + ract(g[:, :H]) * act(g[:, 2 * H : 3 * H])
            return [ract(g[:, 3 * H :]) * act(c_new), c_new]
        return [act(x + h @ self.rkernel[i])]
