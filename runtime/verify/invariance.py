"""Batch invariance of a model file, measured: does a row get the same logits and new state,
bit for bit, alone and in a batch beside other rows?

Export measures it for every file it writes (files[].batch_invariant in the manifest) and
readers default to an invariant file (runtime/bundle/reader.py Bundle.find): a seed then fixes
the text whatever the batch a row runs in (generate --num-samples, the server's running batch).
`charwright verify` measures it again on this CPU (check_bundle: a file the manifest calls
invariant that is not fails), and `serve` checks a row at batch 1 and 3 before it turns the
prompt cache on (self_check). export/invariance.py re-exports this module.

The measurement: `targets` rows (a token and a state reached by running the model on random
tokens from the zero state; one row keeps the zero state) are stepped alone, then each is placed
at random positions in batches of every size in `batches`, beside other random rows. Any bit of
difference in logits or new_state makes the file not invariant. This holds on the CPU that ran
it: a kernel that blocks by batch on another CPU (BLAS) can differ there. A state must be finite:
a NaN or inf in a state row is not row-independent on every kernel (onnxruntime's ReduceMax over
a row whose length is not a multiple of 4 handles NaN by its alignment).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BATCHES = (1, 2, 3, 8, 17, 64, 256)


@dataclass(frozen=True)
class Invariance:
    """invariant: every row identical in every batch; max_abs: the largest |difference| of a
    logit or state value seen; batch: the first batch size where a row differed (None)."""

    invariant: bool
    max_abs: float
    batch: int | None


def sample_rows(backend, n: int, rng: np.random.Generator, warm: int = 12):
    """n rows: tokens int32 [n] and states float32 [n, S] the model itself reaches (row 0 keeps
    the zero state)."""
    V = backend.vocab_size
    state = backend.initial_state(n)
    for _ in range(int(rng.integers(1, warm + 1))):
        _, state = backend.step(rng.integers(0, V, n).astype(np.int32), state)
    state = np.array(state, np.float32)
    state[0] = 0.0
    return rng.integers(0, V, n).astype(np.int32), state


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """a and b identical bit for bit (NaN == NaN, -0.0 != 0.0)."""
    a, b = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def measure(backend, batches=BATCHES, targets: int = 4, seed: int = 0) -> Invariance:
    """Steps `targets` rows alone and inside batches of each size (at a random position beside
    random other rows) on `backend` (a StepBackend); see the module docstring."""
    rng = np.random.default_rng(seed)
    tokens, states = sample_rows(backend, targets, rng)
    alone = [tuple(np.array(a, copy=True) for a in backend.step(tokens[i:i + 1],
                                                               states[i:i + 1].copy()))
             for i in range(targets)]  # copies: a backend may hand out views it reuses
    worst, first = 0.0, None
    for b in batches:
        if b < 1:
            continue
        others_t, others_s = sample_rows(backend, max(b, 1), rng)
        for i in range(targets):
            t, s = others_t.copy(), others_s.copy()
            at = int(rng.integers(0, b))
            t[at], s[at] = tokens[i], states[i]
            logits, new_state = backend.step(t, s)
            for got, want in ((logits[at], alone[i][0][0]), (new_state[at], alone[i][1][0])):
                if not same_bits(got, want):
                    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
                    worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max()))
                    first = b if first is None else first
    return Invariance(first is None, worst, first)


def measure_file(bundle, entry, threads: int = 1, **kw) -> Invariance:
    """measure() on one file entry of a loaded bundle, opened with its format's backend."""
    from charwright.runtime.backends import open_backend

    return measure(open_backend(bundle, entry, threads=threads), **kw)


# `charwright verify`: the fewest batches that catch a file whose rows share a scale (per-tensor
# activation quantization differs at batch 2 already) and a kernel that blocks by batch (8, 64)
VERIFY_BATCHES = (1, 2, 8, 64)
# `serve`, before it turns the prompt cache on: one batch beside the row alone, a few ms
SERVE_BATCHES = (1, 3)


@dataclass(frozen=True)
class FileInvariance:
    """One file's batch invariance: what its manifest says and what was measured here.

    claimed: files[].batch_invariant (None: not recorded); measured: None when it could not be
    measured (`problem` says why: its runtime is not installed, the file does not load)."""

    file: str
    claimed: bool | None
    measured: Invariance | None
    problem: str = ""
    unavailable: bool = False  # its runtime is not installed here: not measured, not a failure

    @property
    def failed(self) -> bool:
        """The manifest says invariant and this CPU says otherwise (or could not run it)."""
        return self.claimed is True and (self.measured is None and not self.unavailable
                                         or self.measured is not None
                                         and not self.measured.invariant)

    def line(self) -> str:
        """One line: FAIL (the manifest's claim does not hold here), a note, or the agreement."""
        m, f = self.measured, self.file
        if m is None:
            why = self.problem or "not measured"
            return (f"{f}: FAIL: the manifest says batch-invariant, but it could not be measured "
                    f"here ({why})" if self.failed else f"{f}: batch invariance not measured "
                    f"({why})")
        differs = f"batch {m.batch}, max |Δ| {m.max_abs:.3g}"
        if self.failed:
            return f"{f}: FAIL: the manifest says batch-invariant, measured here not ({differs})"
        if m.invariant and self.claimed is not True:
            said = "does not record it" if self.claimed is None else "says not batch-invariant"
            return f"{f}: batch-invariant yes (note: the manifest {said})"
        return f"{f}: batch-invariant yes" if m.invariant else \
            f"{f}: batch-invariant no ({differs})"

    def to_dict(self) -> dict:
        m = self.measured
        return {"file": self.file, "manifest": self.claimed,
                "measured": None if m is None else m.invariant,
                "batch": None if m is None else m.batch,
                "max_abs": None if m is None or not np.isfinite(m.max_abs) else m.max_abs,
                "verdict": "FAIL" if self.failed else "pass" if m is not None else "not measured",
                "problem": self.problem or None}


def check_bundle(bundle, entries=None, threads: int = 1,
                 batches=VERIFY_BATCHES) -> list[FileInvariance]:
    """Measures every file (or `entries`) of a loaded bundle whose runtime is installed here, at
    `batches`, beside what its manifest records. Never raises for one file: a file that cannot
    be opened or stepped gets its `problem` (a failure only when the manifest calls it
    invariant)."""
    from charwright.runtime.backends import open_backend
    from charwright.runtime.errors import BackendUnavailable, CharwrightError

    raw = {f.get("path"): f for f in bundle.manifest.get("files") or () if isinstance(f, dict)}
    out = []
    for entry in entries if entries is not None else bundle.files:
        claim = raw.get(entry.path, {}).get("batch_invariant")
        claim = claim if isinstance(claim, bool) else None
        try:
            measured = measure(open_backend(bundle, entry, threads=threads), batches=batches)
        except BackendUnavailable as e:
            out.append(FileInvariance(entry.path, claim, None, str(e).splitlines()[0],
                                      unavailable=True))
            continue
        except CharwrightError as e:
            out.append(FileInvariance(entry.path, claim, None, str(e).splitlines()[0]))
            continue
        except Exception as e:  # noqa: BLE001 - one file's trouble is that file's row
            first = str(e).splitlines()[0] if str(e) else ""
            out.append(FileInvariance(entry.path, claim, None, f"{type(e).__name__}: {first}"))
            continue
        out.append(FileInvariance(entry.path, claim, measured))
    return out


def self_check(backend, batches=SERVE_BATCHES, targets: int = 2) -> Invariance | None:
    """measure() at a few small batches, for a server about to trust the manifest's claim
    (None: the backend could not be measured, e.g. a stand-in without vocab_size)."""
    try:
        return measure(backend, batches=batches, targets=targets)
    except Exception:  # noqa: BLE001 - an unmeasurable backend keeps the cache off, never fails
        return None
