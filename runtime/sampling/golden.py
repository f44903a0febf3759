"""Sampling golden vectors: hand-made logits + sampling settings + seed -> the ids charwright picks.

Every bundle carries them as golden.json (export writes make_golden()), so that a port in any
language can prove that it samples exactly like charwright (runtime/c/SAMPLING.md is the
specification); `charwright verify` checks the Python runtime against them and the C runtime's
`make check` replays them too. Floats are stored as their float32 bit patterns (hex), exact in
any language; a decimal copy sits beside them for reading.

    doc = make_golden()                  the document (a dict, JSON-ready)
    failures = check_golden(doc)         [] when the Python runtime reproduces every vector
"""

from __future__ import annotations

import math

import numpy as np

from charwright.runtime.sampling import rng
from charwright.runtime.errors import BundleError
from charwright.runtime.sampling.config import Sampler, SamplingConfig

FORMAT = "charwright-sampling-golden"
VERSION = 1
BIG_VOCAB = 10_000  # the large-vocabulary case (a CJK character model has 5,000+ ids)
STEPS = 64  # ids per case: the same logits, STEPS coins (and the stateful processors move on)
_KNOBS = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
          "repetition_window", "greedy")


def f32_hex(a) -> list[str]:
    return [f"{int(b):08x}" for b in np.asarray(a, np.float32).view(np.uint32).ravel()]


def from_hex(xs) -> np.ndarray:
    return np.array([int(x, 16) for x in xs], np.uint32).view(np.float32)


def _log(p) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(p, np.float64)).astype(np.float32)


def _cases() -> list[dict]:
    p8 = [0.05, 0.1, 0.2, 0.3, 0.15, 0.1, 0.05, 0.05]
    l8 = _log(p8)
    masked = l8.copy()
    masked[[0, 3, 7]] = -np.inf
    wide = (np.random.default_rng(2024).standard_normal(65) * 3).astype(np.float32)
    ties = np.array([2.0, 1.0, 2.0, 0.5, 2.0, -1.0], np.float32)
    # llama.cpp's sampler-queue case, mirrored (p(i) proportional to 9999 - i, so the C runtime's
    # insertion sort meets it sorted): top-p 0.8 keeps ids 0..5527, mass 0.80004 (0..5526 hold
    # 0.79995 < p); seed 88 draws 5527 at step 37 (2**-10 slack kept only 0..5518)
    big = _log(np.arange(BIG_VOCAB - 1, -1, -1))
    c = [
        ("greedy", l8, dict(greedy=True), 1, 0, []),
        ("categorical", l8, dict(), 1, 0, []),
        ("temperature-0.5", l8, dict(temperature=0.5), 2, 0, []),
        ("temperature-2", l8, dict(temperature=2.0), 3, 1, []),
        ("top-k-3", l8, dict(top_k=3), 4, 0, []),
        ("top-k-ties", ties, dict(top_k=2), 5, 0, []),
        ("top-p-0.7", _log([0.1, 0.2, 0.3, 0.4]), dict(top_p=0.7), 6, 0, []),
        ("top-p-0.9", l8, dict(top_p=0.9), 7, 2, []),
        ("min-p-0.3", l8, dict(min_p=0.3), 8, 0, []),
        ("repetition-penalty", l8, dict(repetition_penalty=1.5, repetition_window=4), 9, 0,
         [3, 2]),
        ("typical-0.8", l8, dict(typical_p=0.8), 10, 0, []),
        ("masked", masked, dict(), 11, 0, []),
        ("chain", l8, dict(temperature=0.8, top_k=5, top_p=0.9), 12345, 3, []),
        ("chain-65", wide, dict(temperature=0.9, top_k=40, top_p=0.95), 2**63 - 1, 7, []),
        ("categorical-65", wide, dict(), 0, 0, []),
        ("top-p-0.8-10000", big, dict(top_p=0.8), 88, 0, []),
    ] + _branch_cases(l8, wide)
    return [dict(name=n, logits=z, sampling=s, seed=seed, row=row, history=h)
            for n, z, s, seed, row, h in c]


def _f32(*xs) -> np.ndarray:
    return np.array(xs, np.float32)


def _branch_cases(l8: np.ndarray, wide: np.ndarray) -> list:
    """Cases that each pin one rule of runtime/c/SAMPLING.md a port could get wrong, as
    (name, logits, sampling, seed, row, history); each comment says what a port that breaks the
    rule picks instead."""
    mixed = _f32(2.5, 1.0, 0.0, -0.5, 3.0, -np.inf, 0.7, -2.0)
    a = np.float32(1 + 2**-10)
    # z > 0 takes z * float32(1/r), 1/r in float64: 1.0009765625 * float32(1/1.1) is
    # 0.9099787473678589 (id 0 ties id 1: greedy picks id 0); z / float32(r) and
    # z * (1.0f / float32(r)) give 0.9099786877632141 (id 1 wins)
    inverse = _f32(a, a * np.float32(1.0 / 1.1), 0.5)
    # adjacent float32 logits that z * float32(1/1.3) makes equal (top-k 1 keeps both: ties with
    # the k-th stay); z / 1.3 keeps them apart and keeps id 1 alone
    tie = _f32(1.750000238418579, 1.7500003576278687, 0.5, -1.0)
    # min-p 0.25 over max 2: the threshold 2 + float32(ln 0.25) = 0.6137056350708008 keeps id 2
    # (equal to it) and drops id 3 (one float32 below)
    edge = _f32(2.0, 0.3, 0.6137056350708008, 0.613705575466156, -3.0)
    # typical 0.3: |surprisal - entropy| of id 2 is 6.3e-8 below id 0's (float64), so the order
    # is 1, 2, 0: id 2 (p 0.14) is kept and id 0 (p 0.5) dropped; float32 arithmetic puts id 2
    # 1.2e-7 above id 0 and keeps id 0 instead
    near = _f32(2.0, 1.2, 0.6753648519515991, 0.137719064950943, -0.6396315097808838,
                -1.307873249053955)
    return [
        # penalty: every z sign (z > 0 -> 1/r, 0 and -inf unchanged), id 4 twice in the history
        # is penalized once, the window (6) moves as ids are picked
        ("repetition-penalty-positive", mixed, dict(repetition_penalty=1.3, repetition_window=6),
         13, 0, [4, 4, 0, 2, 5, 3]),
        ("repetition-penalty-below-1", mixed, dict(repetition_penalty=0.6, repetition_window=3),
         14, 1, [1, 3]),
        ("greedy-penalty-inverse", inverse, dict(greedy=True, repetition_penalty=1.1), 0, 0, [0]),
        # greedy 3.0, 2.9, 2.8 with r 1.5 over the last 2 ids: picks cycle 0, 1, 2 only if picked
        # ids join the window and the oldest leaves
        ("greedy-penalty-window", _f32(3.0, 2.9, 2.8, 1.0),
         dict(greedy=True, repetition_penalty=1.5, repetition_window=2), 0, 0, [3]),
        # id 1 (4.0) seen three times, r 2: once per distinct id gives 2.0 > 1.9 (id 1); once per
        # occurrence 0.5 (id 0)
        ("repetition-once-per-id", _f32(1.9, 4.0, -1.0), dict(greedy=True, repetition_penalty=2.0),
         0, 0, [1, 1, 1]),
        ("greedy-temperature-0", l8, dict(temperature=0.0), 15, 0, []),
        ("temperature-product-tie", tie, dict(temperature=1.3, top_k=1), 16, 0, []),
        ("top-k-ties-kth", _f32(2.0, 1.0, 2.0, 0.5, 2.0, 1.0), dict(top_k=4), 17, 0, []),
        ("min-p-boundary", edge, dict(min_p=0.25), 18, 0, []),
        ("typical-near-tie", near, dict(typical_p=0.3), 19, 0, []),
        # every logit -inf (a mask that allows nothing): no weight is positive, so the selector
        # falls back to the first largest z, id 0 (SAMPLING.md step 8), and no step fails
        ("all-masked", np.full(5, -np.inf, np.float32), dict(temperature=0.7, top_p=0.9), 21, 0,
         []),
        ("chain-all", wide, dict(temperature=0.9, top_k=50, top_p=0.95, min_p=0.02,
                                 typical_p=0.95, repetition_penalty=1.2, repetition_window=16),
         20, 5, [3, 17, 17, 40, 64, 0, 9]),
    ]


def run_case(logits: np.ndarray, sampling: dict, seed: int, row: int, history, steps: int):
    """The ids the Python runtime picks: `steps` times the same logits, one row."""
    cfg = SamplingConfig(seed=seed, **sampling)
    s = Sampler(cfg, len(logits))
    s.join([np.asarray(history or [0], np.int32)], seed, [row])
    z = np.asarray(logits, np.float32)[None]
    with np.errstate(invalid="ignore"):  # -inf - -inf in a row with no finite logit
        return [int(s(z.copy())[0]) for _ in range(steps)]


def make_golden() -> dict:
    hi, lo = rng.exp_tables()
    streams = []
    for seed, row in ((0, 0), (1, 0), (1, 1), (7, 3), (2**63 - 1, 12)):
        key = rng.row_key(seed, row)
        x = rng.next_u64([key], [0], 4)[0]
        streams.append({"seed": seed, "row": row, "key": f"{key:016x}",
                        "u64": [f"{int(v):016x}" for v in x],
                        "u24": [int(v) >> 40 for v in x]})
    cases = []
    for c in _cases():
        sampling = {k: c["sampling"].get(k) for k in _KNOBS if k in c["sampling"]}
        cases.append({
            "name": c["name"], "logits": f32_hex(c["logits"]),
            "logits_decimal": [None if not math.isfinite(v) else float(v)
                               for v in c["logits"].tolist()],
            "sampling": sampling, "seed": c["seed"], "row": c["row"],
            "history": [int(i) for i in c["history"]], "steps": STEPS,
            "expected": run_case(c["logits"], sampling, c["seed"], c["row"], c["history"],
                                 STEPS),
        })
    return {"format": FORMAT, "version": VERSION, "spec": "runtime/c/SAMPLING.md",
            "exp_hi": f32_hex(hi), "exp_lo": f32_hex(lo), "rng": streams, "cases": cases}


def check_golden(doc, where: str = "golden.json") -> list[str]:
    """One line per vector the Python runtime does not reproduce ([] = all pass).

    Raises BundleError if the document is not a golden-vector document this version reads."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise BundleError(f"{where}: not a {FORMAT} document of version {VERSION}")
    fails = []
    try:
        hi, lo = rng.exp_tables()
        if doc["exp_hi"] != f32_hex(hi) or doc["exp_lo"] != f32_hex(lo):
            fails.append("exp tables differ from this runtime's")
        for s in doc["rng"]:
            key = rng.row_key(s["seed"], s["row"])
            got = [f"{int(v):016x}" for v in rng.next_u64([key], [0], len(s["u64"]))[0]]
            if f"{key:016x}" != s["key"] or got != s["u64"]:
                fails.append(f"rng stream (seed {s['seed']}, row {s['row']}) differs")
        for c in doc["cases"]:
            steps = c["steps"]
            if type(steps) is not int or not 0 < steps <= MAX_GOLDEN_STEPS:
                raise ValueError(f"case {c.get('name')!r}: steps {steps!r} is not in "
                                 f"1..{MAX_GOLDEN_STEPS}")
            got = run_case(from_hex(c["logits"]), c["sampling"], c["seed"], c["row"],
                           c["history"], steps)
            want = c["expected"]
            if got != want:
                i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                         min(len(got), len(want)))
                fails.append(f"case {c['name']!r}: step {i} picks "
                             f"{got[i] if i < len(got) else 'nothing'}, expected "
                             f"{want[i] if i < len(want) else 'nothing'}")
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise BundleError(f"{where}: malformed golden vectors ({type(e).__name__}: {e})") from None
    return fails


MAX_GOLDEN_BYTES = 1 << 20
MAX_GOLDEN_STEPS = 10_000  # a case's steps: far above what make_golden writes


def read_golden(bundle) -> dict:
    """The bundle's golden.json (manifest entry `golden`: path, sha256, bytes), checked."""
    import json

    from charwright.runtime.bundle.manifest import Fields
    from charwright.runtime.files.safefile import read_checked, resolve_inside, safe_relpath

    g = Fields(bundle.where, "golden", bundle.manifest.get("golden"))
    path = resolve_inside(bundle.root, safe_relpath(bundle.root, g.str("path"), bundle.where))
    size = g.int("bytes", 1, maximum=MAX_GOLDEN_BYTES)
    data = read_checked(path, size, g.sha256("sha256"))
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as e:
        raise BundleError(f"{path}: malformed JSON ({e})") from None


def write_golden(folder) -> dict:
    """Writes folder/golden.json; returns its manifest entry {path, sha256, bytes}."""
    import hashlib
    import json
    from pathlib import Path

    data = (json.dumps(make_golden(), indent=1) + "\n").encode("utf-8")
    (Path(folder) / "golden.json").write_bytes(data)
    return {"path": "golden.json", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
