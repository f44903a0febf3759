"""Rebuilds a bundle's ONNX int8 file from its weights.npz through export's code, in place.

How the demo bundle's model.int8-dynamic.onnx was remade when ONNX int8 went per-row (issue 20):
the float step graph from weights.npz (trainer/step_graph.py, as `charwright train` saves it),
tf2onnx and quantize_dynamic (export/formats/onnx.py), per-row activations (onnx_rows.py), Tanh
and Sigmoid as exact ops (onnx_exact.py), the old file's metadata. The manifest's entry for
that file (sha256, bytes, ops, min_runtime), its parity row (the probe replayed), and
files[].batch_invariant (measured here, export/invariance.py) and files[].portable of every
file are updated; every other file is left as it is. Needs the [train] extra.

    .venv/bin/python scripts/rebuild_demo_onnx.py runtime/demo
    .venv/bin/charwright verify
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

FILE = "model.int8-dynamic.onnx"


def float32_onnx(bundle: Path, manifest: dict) -> bytes:
    from charwright.export.formats import onnx as ox
    from charwright.trainer.config import ModelConfig
    from charwright.trainer.step_graph import build_step_function, save_step_savedmodel

    a = manifest["architecture"]
    cfg = ModelConfig.from_stack(a["stack"], a["embedding_dim"], a["vocab_size"])
    with np.load(bundle / "weights.npz", allow_pickle=False) as z:
        weights = {k: z[k] for k in z.files}
    with tempfile.TemporaryDirectory() as d:
        save_step_savedmodel(build_step_function(weights, cfg), d + "/step")
        return ox.convert_float32(d + "/step", manifest["state"]["size"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    args = ap.parse_args()
    from charwright.export.formats import onnx as ox
    from charwright.export.formats.onnx_exact import portable
    from charwright.runtime.bundle.reader import load_bundle
    from charwright.runtime.errors import BackendUnavailable
    from charwright.runtime.files.atomic import write_json
    from charwright.runtime.files.safefile import sha256_of
    from charwright.runtime.verify.invariance import measure_file
    from charwright.runtime.verify.parity import check_bundle

    root = args.bundle
    manifest = json.loads((root / "manifest.json").read_text())
    record = next(f for f in manifest["files"] if f["path"] == FILE)
    meta = ox.read_metadata((root / FILE).read_bytes())
    data = ox.add_metadata(ox.quantize(float32_onnx(root, manifest), "int8-dynamic"), meta)
    with tempfile.TemporaryDirectory() as work:  # the new bundle is made and checked here first
        new = Path(work) / "bundle"
        shutil.copytree(root, new)
        (new / FILE).write_bytes(data)
        record.update(sha256=sha256_of(new / FILE), bytes=(new / FILE).stat().st_size,
                      ops=ox.op_names(data), min_runtime=ox.min_runtime(data))
        for f in manifest["files"]:  # export/manifest.file_record's rule
            f["portable"] = f["format"] == "onnx" and portable(f["ops"])
        write_json(new / "manifest.json", manifest)
        bundle = load_bundle(new)
        (row,) = check_bundle(bundle, [bundle.find("onnx", "int8-dynamic")])
        manifest["parity"] = [row.to_dict() if p.get("file") == FILE else p
                              for p in manifest["parity"]]
        for f, entry in zip(manifest["files"], bundle.files):
            try:
                inv = measure_file(bundle, entry)
            except BackendUnavailable as e:  # e.g. LiteRT absent: its record stays as it was
                print(f"{entry.path}: batch invariance not measured, kept "
                      f"{f.get('batch_invariant', 'not recorded')} ({str(e).splitlines()[0]})")
                continue
            f["batch_invariant"] = inv.invariant
            print(f"{entry.path}: batch-invariant {inv.invariant} (max |d| {inv.max_abs:.3g}, "
                  f"first at batch {inv.batch})")
        if not row.passed:
            print(f"{FILE}: parity FAIL ({'; '.join(row.failures)}); {root} left as it was",
                  file=sys.stderr)
            return 1
        tmp = root / f".{FILE}.tmp"  # the file, then the manifest that names it: once each
        tmp.write_bytes(data)
        tmp.replace(root / FILE)
        write_json(root / "manifest.json", manifest)
    print(f"{FILE}: {record['bytes']:,} bytes, top-1 {row.top1:.2%}, bits/char {row.bpc:.4f} "
          f"vs {row.ref_bpc:.4f}, {row.verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
