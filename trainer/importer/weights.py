"""A Keras 3 weights-only file (model.save_weights, ModelCheckpoint(save_weights_only)) of a
model whose config was never saved (the TensorFlow tutorial's subclassed model): its arrays
matched to the stack given with --stack, into the same dict keras.parse_model returns."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from charwright.runtime.bundle.architecture import GATES
from charwright.runtime.errors import ConfigError, require

from charwright.trainer.config import layer_spec
from charwright.trainer.importer.archive import MAX_RATIO

_STACK = re.compile(r"^(gru|gru-v1|lstm|rnn):(\d+)$")


def parse_stack_option(text: str) -> list[dict]:
    """'gru:1024' or 'lstm:64,gru:32' (bottom-up) -> layer specs. gru-v1 = reset_after false."""
    specs = []
    for part in text.split(","):
        m = _STACK.match(part.strip().lower())
        if not m:
            raise ConfigError(f"--stack {text!r}: give CELL:UNITS per layer, bottom-up, "
                              "e.g. gru:1024 or lstm:64,gru:32 (cells gru, gru-v1, lstm, rnn)")
        cell = "gru" if m.group(1) == "gru-v1" else m.group(1)
        d = {"cell": cell, "units": int(m.group(2))}
        if m.group(1) == "gru-v1":
            d["reset_after"] = False
        specs.append(layer_spec(d))
    return specs


def parse_weights_file(path: Path, specs: list[dict]) -> dict:
    """The file's groups matched to `specs` by shape, in order of name (embedding, the
    recurrent layers, dense) -> parse_model's dict."""
    arrays = _read_groups(path)
    natural = lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]  # noqa
    names = sorted(arrays, key=natural)
    emb = [n for n in names if len(arrays[n]) == 1 and arrays[n][0].ndim == 2]
    rec = [n for n in names if n.endswith("/cell") or "cell" in n.split("/")[-1]]
    dense = [n for n in names if n not in rec and n not in emb and len(arrays[n]) == 2
             and arrays[n][0].ndim == 2]
    if len(emb) != 1 or len(dense) != 1:
        raise ConfigError(f"{path}: expected one embedding and one Dense layer's weights, found "
                          f"{len(emb)} and {len(dense)} ({', '.join(names)})")
    if len(rec) != len(specs):
        raise ConfigError(f"{path}: holds {len(rec)} recurrent layers ({', '.join(rec)}), "
                          f"--stack gives {len(specs)}")
    out = {"embedding": arrays[emb[0]][0], "one_hot": False, "specs": specs, "weights": {},
           "softmax": None, "mask_zero": False, "names": [emb[0], *rec, dense[0]]}
    out["input_dim"] = out["embedding"].shape[0]
    prev = out["embedding"].shape[1]
    for i, (name, spec) in enumerate(zip(rec, specs)):
        out["weights"].update(_layer(path, name, arrays[name], spec, prev, i))
        prev = spec["units"]
    w, b = arrays[dense[0]]
    if w.shape[0] != prev:
        raise ConfigError(f"{path}: the Dense layer takes {w.shape[0]} inputs, the last "
                          f"recurrent layer gives {prev}")
    out["dense"] = (w, b)
    return out


def _read_groups(path: Path) -> dict[str, list[np.ndarray]]:
    """{layer group: its arrays in index order} of the file's ".../vars/N" datasets.

    The datasets' headers are judged before any is read: Keras stores them uncompressed, so a
    dataset may claim at most MAX_RATIO x the file's bytes (a chunked, compressed dataset of
    2**31 x 8 floats fits in a few kilobytes)."""
    h5py = require("h5py", "train")
    groups: dict[str, list] = {}
    budget = MAX_RATIO * path.stat().st_size + (1 << 20)
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                nonlocal budget
                if isinstance(obj, h5py.Dataset) and "/vars/" in f"/{name}":
                    head, idx = name.rsplit("/vars/", 1)
                    if obj.dtype.kind not in "fiu" or not idx.isdigit():
                        raise ConfigError(f"{path}: {name} holds {obj.dtype} data; not a Keras "
                                          "weights file")
                    budget -= int(obj.size) * 4
                    if budget < 0:
                        raise ConfigError(f"{path}: {name} declares shape {obj.shape}, more "
                                          "than the file can hold; the file is damaged")
                    groups.setdefault(head, []).append((int(idx), np.asarray(obj, np.float32)))
            f.visititems(visit)
    except OSError as e:
        raise ConfigError(f"{path}: not a Keras weights file ({e})") from None
    return {k: [a for _, a in sorted(v, key=lambda t: t[0])] for k, v in groups.items()}


def _layer(path: Path, name: str, a: list, spec: dict, prev: int, i: int) -> dict:
    """weights.npz's arrays of recurrent layer i from its group `a` (kernel, recurrent kernel,
    optional bias), checked against its spec over `prev` inputs."""
    G, H = GATES[spec["cell"]], spec["units"]
    if len(a) not in (2, 3) or a[0].shape != (prev, G * H) or a[1].shape != (H, G * H):
        raise ConfigError(f"{path}: {name} holds {[x.shape for x in a]}, not a "
                          f"{spec['cell']}:{H} layer over {prev} inputs; check --stack")
    two = spec["cell"] == "gru" and spec["reset_after"]
    bias = a[2] if len(a) == 3 else np.zeros((2, G * H) if two else (G * H,), np.float32)
    if spec["cell"] == "gru" and bias.shape != ((2, G * H) if two else (G * H,)):
        raise ConfigError(f"{path}: {name}'s bias {bias.shape} does not fit reset_after="
                          f"{spec['reset_after']} (gru-v1 in --stack is reset_after=False)")
    return {f"layer{i}.kernel": a[0], f"layer{i}.recurrent_kernel": a[1],
            f"layer{i}.bias": bias}
