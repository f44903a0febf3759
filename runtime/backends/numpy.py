"""The numpy reference backend: the recurrent step written out from the bundle's weights.npz.

It needs no inference runtime at all, reads like the equations, and gives parity checks a third
opinion. Gate order and formulas are Keras 3's (GRU reset_after=True: z, r, h; LSTM: i, f, c, o).
The embedding is folded into layer 0's input projection, as in the exported graphs.
"""

from __future__ import annotations

import numpy as np

from ..errors import BundleError
from ..npz import Npz
from . import BY_NAME
from .base import StepBackend

GATES = {"gru": 3, "lstm": 4, "rnn": 1}


def weight_shapes(architecture: dict) -> dict:
    """The weights.npz contract (trainer/model.py export_weights): name -> shape.

    embedding [V, E] (E = V when one-hot); layer{i}.kernel [in, G*H]; recurrent_kernel [H, G*H];
    bias [2, 3H] (GRU, reset_after), [4H] (LSTM), [H] (SimpleRNN); dense.kernel [H, V]; dense.bias
    [V]. G = 3 (GRU), 4 (LSTM), 1 (SimpleRNN)."""
    cell, L, H = architecture["cell"], int(architecture["layers"]), int(architecture["units"])
    V, E = int(architecture["vocab_size"]), int(architecture.get("embedding_dim") or 0)
    E = E or V
    G = GATES[cell]
    out = {"embedding": (V, E)}
    for i in range(L):
        out[f"layer{i}.kernel"] = (E if i == 0 else H, G * H)
        out[f"layer{i}.recurrent_kernel"] = (H, G * H)
        out[f"layer{i}.bias"] = (2, G * H) if cell == "gru" else (G * H,)
    out["dense.kernel"] = (H, V)
    out["dense.bias"] = (V,)
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 0.5 * (1 + tanh(x / 2)): one transcendental, no overflow for large |x|
    return 0.5 + 0.5 * np.tanh(0.5 * x)


class NumpyStep(StepBackend):
    name = "numpy"
    thread_safe = BY_NAME["numpy"].thread_safe

    def __init__(self, weights: dict, architecture: dict, precision: str = "float32",
                 path: str = "<weights>"):
        cell, L, H = architecture["cell"], int(architecture["layers"]), int(architecture["units"])
        V = int(architecture["vocab_size"])
        parts = 2 if cell == "lstm" else 1
        super().__init__(L * parts * H, V, precision, path)
        self.cell, self.L, self.H, self.parts = cell, L, H, parts
        try:
            w = {k: np.asarray(v, np.float32) for k, v in weights.items()}
            b0 = w["layer0.bias"]
            table = w["embedding"].astype(np.float64) @ w["layer0.kernel"].astype(np.float64)
            self.table0 = (table + (b0[0] if cell == "gru" else b0)).astype(np.float32)
            self.kernel = [None] + [w[f"layer{i}.kernel"] for i in range(1, L)]
            self.in_bias = [None] + [
                w[f"layer{i}.bias"][0] if cell == "gru" else w[f"layer{i}.bias"]
                for i in range(1, L)
            ]
            self.rkernel = [w[f"layer{i}.recurrent_kernel"] for i in range(L)]
            self.rbias = [w[f"layer{i}.bias"][1] if cell == "gru" else None for i in range(L)]
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
        H = self.H
        x = self.table0[tokens]  # [B, G*H], embedding + input projection + bias
        new, off, h_out = [], 0, None
        for i in range(self.L):
            if i > 0:
                x = h_out @ self.kernel[i] + self.in_bias[i]
            h = state[:, off : off + H]
            if self.cell == "gru":
                rec = h @ self.rkernel[i] + self.rbias[i]
                z = _sigmoid(x[:, :H] + rec[:, :H])
                r = _sigmoid(x[:, H : 2 * H] + rec[:, H : 2 * H])
                hh = np.tanh(x[:, 2 * H :] + r * rec[:, 2 * H :])
                h_out = hh + z * (h - hh)  # = z*h + (1-z)*hh
                new.append(h_out)
            elif self.cell == "lstm":
                c = state[:, off + H : off + 2 * H]
                g = x + h @ self.rkernel[i]
                c_new = _sigmoid(g[:, H : 2 * H]) * c + _sigmoid(g[:, :H]) * np.tanh(g[:, 2 * H : 3 * H])
                h_out = _sigmoid(g[:, 3 * H :]) * np.tanh(c_new)
                new += [h_out, c_new]
            else:
                h_out = np.tanh(x + h @ self.rkernel[i])
                new.append(h_out)
            off += self.parts * H
        logits = h_out @ self.dense_w + self.dense_b
        new_state = new[0] if len(new) == 1 else np.concatenate(new, axis=1)
        return logits.astype(np.float32, copy=False), new_state.astype(np.float32, copy=False)
