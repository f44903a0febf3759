"""Does a seeded row's text depend on its batch? The matrix file x batch x sampling setting.

For every file of a bundle (whose runtime is installed here) and each of three seeded settings,
a row is generated alone (Model.generate), then inside batches of 1, 2, 8 and 64 rows, at a
position in the middle, beside rows with other prompts; it keeps its seed's row id (0), so its
text must be the same. Each cell says "same" or the index of the first character that differs.
The "invariant" column is what the manifest records (files[].batch_invariant, measured by the
export on logits: export/invariance.py; "-" where an older manifest says nothing); "logits here"
is that measurement again on this machine (bit-identical, or the largest difference and the
first batch size where a row's logits or state moved).

    .venv/bin/python scripts/batch_invariance.py                  # the demo bundle, 300 chars
    .venv/bin/python scripts/batch_invariance.py BUNDLE_DIR --chars 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import header, table  # noqa: E402

from charwright.export.invariance import measure  # noqa: E402
from charwright.runtime.backends import spec_for_format  # noqa: E402
from charwright.runtime.bundle.reader import load_bundle  # noqa: E402
from charwright.runtime.errors import BackendUnavailable  # noqa: E402
from charwright.runtime.model import DEMO_BUNDLE, Model  # noqa: E402
from charwright.runtime.sampling.config import SamplingConfig  # noqa: E402

SETTINGS = {
    "T 0.8, seed 1": dict(temperature=0.8, seed=1),
    "T 1.0, top-p 0.9, seed 7": dict(temperature=1.0, top_p=0.9, seed=7),
    "T 1.2, top-k 20, seed 42": dict(temperature=1.2, top_k=20, seed=42),
}
BATCHES = (1, 2, 8, 64)


def first_difference(a: str, b: str):
    """None when equal, else the index of the first character that differs."""
    if a == b:
        return None
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def neighbour_prompts(vocab, n: int, rng) -> list[str]:
    """n prompts of 1..24 characters drawn from the vocabulary (the target's batch-mates)."""
    chars = [c for c in vocab.chars if c.isprintable() or c == "\n"]
    return ["".join(rng.choice(chars, int(rng.integers(1, 25)))) for _ in range(n)]


def row_matrix(model, prompt: str, chars: int, cfg: SamplingConfig, rng) -> list:
    """[first difference or None] per batch size in BATCHES for one file and setting."""
    alone = model.generate(prompt, chars, cfg)
    out = []
    for b in BATCHES:
        at = b // 2
        prompts = neighbour_prompts(model.vocab, b, rng)
        prompts[at] = prompt
        row_ids = [0 if i == at else i + 1 for i in range(b)]
        text = model.complete(prompts, chars, cfg, row_ids=row_ids)[at].text
        out.append(first_difference(alone, text))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", type=Path, default=DEMO_BUNDLE)
    ap.add_argument("--chars", type=int, default=300, help="characters per row")
    ap.add_argument("--prompt", default="ROMEO:")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    bundle = load_bundle(args.bundle)
    prompt = "".join(c for c in args.prompt if c in bundle.vocab.chars) or bundle.vocab.chars[0]
    print(header("Batch invariance: a seeded row alone vs in a batch (first differing char)",
                 args.threads))
    print(f"bundle {args.bundle}, prompt {prompt!r}, {args.chars} characters per row; row kept "
          f"at position b//2 beside rows with random prompts\n")
    rows, skipped = [], []
    t0 = time.perf_counter()
    for entry in bundle.files:
        try:
            model = Model(bundle, entry, args.threads)
        except BackendUnavailable:
            skipped.append(f"{entry.path} ({spec_for_format(entry.format).install_hint})")
            continue
        mark = "-" if "batch_invariant" not in _raw_keys(bundle, entry) else (
            "yes" if entry.batch_invariant else "no")
        inv = measure(model.backend)
        here = "identical" if inv.invariant else f"Δ {inv.max_abs:.2g} (batch {inv.batch})"
        for name, kw in SETTINGS.items():
            rng = np.random.default_rng(0)
            cells = row_matrix(model, prompt, args.chars, SamplingConfig(**kw), rng)
            rows.append([entry.path, mark, here, name,
                         *("same" if c is None else f"char {c}" for c in cells)])
    print(table(["file", "invariant (manifest)", "logits here", "setting", *(f"batch {b}" for b in BATCHES)],
                rows))
    if skipped:
        print("\nnot run (runtime not installed): " + ", ".join(skipped))
    print(f"\n{time.perf_counter() - t0:.1f} s")
    return 0


def _raw_keys(bundle, entry) -> set:
    for f in bundle.manifest.get("files") or ():
        if isinstance(f, dict) and f.get("path") == entry.path:
            return set(f)
    return set()


if __name__ == "__main__":
    sys.exit(main())
