"""Hand-made bundles for reader tests: manifest + weights.npz + probe.npz, no TensorFlow.

The probe's reference logits come from the numpy backend itself, so a fresh bundle verifies.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from charwright.runtime.backends.numpy import NumpyStep
from charwright.runtime.model import DEMO_BUNDLE
from charwright.runtime.verify.score import greedy_rollout, teacher_forced

CHARS = sorted("\n abcdefgh.")


def weight_shapes(arch: dict) -> dict:
    """The weights.npz contract, written out again here (trainer/network.py export_weights)."""
    V, E, H, G = arch["vocab_size"], arch["embedding_dim"], arch["units"], {
        "gru": 3, "lstm": 4, "rnn": 1}[arch["cell"]]
    out = {"embedding": (V, E)}
    for i in range(arch["layers"]):
        out[f"layer{i}.kernel"] = (E if i == 0 else H, G * H)
        out[f"layer{i}.recurrent_kernel"] = (H, G * H)
        out[f"layer{i}.bias"] = (2, G * H) if arch["cell"] == "gru" else (G * H,)
    return {**out, "dense.kernel": (H, V), "dense.bias": (V,)}


def weights(arch: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in weight_shapes(arch).items()}


def make_bundle(d: Path, cell="gru", units=8, layers=1, tokens=40, seed=0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    V = len(CHARS)
    arch = {"cell": cell, "layers": layers, "units": units, "vocab_size": V, "embedding_dim": 4}
    w = weights(arch, seed)
    np.savez(d / "weights.npz", **w)
    step = NumpyStep(w, arch)
    ids = np.random.default_rng(seed + 1).integers(0, V, tokens).astype(np.int32)
    prompt = ids[:5]
    np.savez(d / "probe.npz", tokens=ids, logits=teacher_forced(step, ids), prompt=prompt,
             greedy=greedy_rollout(step, prompt, 10), device=np.array("test"))
    parts = 2 if cell == "lstm" else 1
    layout = [{"name": f"layer{i}.{p}", "layer": i, "part": p, "offset": 0, "size": units}
              for i in range(layers) for p in ("h", "c")[:parts]]
    manifest = {
        "format": "charwright-bundle", "format_version": "1.0",
        "vocab": {"format": "charwright-vocab", "version": 1, "chars": CHARS, "eos": False},
        "architecture": arch, "state": {"size": layers * parts * units, "layout": layout},
        "files": [{"path": "weights.npz", "format": "npz", "precision": "float32",
                   "inputs": {"token": "token", "state": "state"},
                   "outputs": {"logits": "logits", "new_state": "new_state"}}],
        "probe": {"path": "probe.npz", "tokens": tokens},
    }
    write_manifest(d, manifest)
    return d


def copy_demo(d: Path) -> Path:
    shutil.copytree(DEMO_BUNDLE, d)
    return d


def read_manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def write_manifest(d: Path, m: dict, refresh: bool = True) -> None:
    """Writes manifest.json; with refresh, every listed file's bytes and sha256 are recomputed
    from what is on disk (the way an attacker or a careless edit would)."""
    if refresh:
        files = m["files"] if isinstance(m.get("files"), list) else []
        for f in files + ([m["probe"]] if isinstance(m.get("probe"), dict) else []):
            p = d / f["path"] if isinstance(f, dict) and isinstance(f.get("path"), str) else None
            if p is not None and p.is_file():
                data = p.read_bytes()
                f["bytes"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (d / "manifest.json").write_text(json.dumps(m))


def edit(d: Path, fn, refresh: bool = True) -> None:
    m = read_manifest(d)
    fn(m)
    write_manifest(d, m, refresh)
