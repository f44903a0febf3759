"""Parity: replay the reference probe on a model file and measure how far it is from the reference.

Teacher-forced over the probe's validation text (batch 1, state carried from zeros):
    max |Δlogit|, mean |Δlogit|, top-1 agreement, KL(reference ‖ file) in nats/char, and the
    file's bits/char on that text next to the reference's.
Free-running: prime the probe's prompt, decode greedily, report the first step at which the
    file's text differs from the reference's greedy continuation (None: identical throughout).

Tolerances live in TOLERANCES, one row per precision. float32 files must reproduce the logits
(max |Δ| ≤ 1e-4). Quantized files legitimately move their logits, so they are judged on top-1
agreement and on bits/char relative to the reference. The greedy divergence step is reported, not
judged: one near-tie flips every character after it, even between two float32 runtimes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from charwright.runtime.errors import BackendUnavailable, BundleError, CharwrightError, ParityError
from charwright.runtime.sampling.processors import log_softmax

LN2 = math.log(2.0)


@dataclass(frozen=True)
class Tolerance:
    """None disables a criterion."""

    max_abs: float | None = None
    min_top1: float | None = None
    max_bpc_rel: float | None = None


TOLERANCES = {
    "float32": Tolerance(max_abs=1e-4),
    "float16": Tolerance(min_top1=0.995, max_bpc_rel=0.01),
    "int8-dynamic": Tolerance(min_top1=0.97, max_bpc_rel=0.02),
    "int8": Tolerance(min_top1=0.97, max_bpc_rel=0.02),
    "int16x8": Tolerance(min_top1=0.97, max_bpc_rel=0.02),  # int8 weights, int16 activations
}


@dataclass
class FileParity:
    file: str
    backend: str
    precision: str
    max_abs: float
    mean_abs: float
    top1: float
    kl: float
    bpc: float
    ref_bpc: float
    greedy_first_diff: int | None
    greedy_len: int
    passed: bool
    failures: list
    checked: bool = True  # False: its backend is not installed here ("not checked")

    @property
    def bpc_rel(self) -> float:
        return (self.bpc - self.ref_bpc) / self.ref_bpc if self.ref_bpc else 0.0

    @property
    def verdict(self) -> str:
        return "not checked" if not self.checked else "pass" if self.passed else "FAIL"

    def to_dict(self) -> dict:
        """Plain JSON values: a figure that could not be measured is None, never NaN."""
        d = asdict(self)
        d["bpc_rel"] = self.bpc_rel
        d["verdict"] = self.verdict
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in d.items()}

    @classmethod
    def unmeasured(cls, entry, problem: str, checked: bool = True) -> "FileParity":
        nan = float("nan")
        return cls(entry.path, entry.format, entry.precision, nan, nan, nan, nan, nan, nan,
                   None, 0, False, [problem], checked)


def replay(backend, tokens: np.ndarray, state: np.ndarray | None = None):
    """Steps over tokens [N] at batch 1 from `state` (zeros by default).

    Returns (logits float32 [N, V], the state after the last token). Uses the backend's own
    replay() where it has one (onnx: preallocated IO bindings), else N calls of step()."""
    state = backend.initial_state(1) if state is None else state
    fast = getattr(backend, "replay", None)
    if fast is not None:
        return fast(np.asarray(tokens, np.int32), state)
    out = np.empty((len(tokens), backend.vocab_size), np.float32)
    buf = np.zeros(1, np.int32)
    for i, t in enumerate(tokens):
        buf[0] = t
        logits, state = backend.step(buf, state)
        if i == 0:
            _check_step_shapes(backend, logits, state)
        out[i] = logits[0]
    return out, state


def _check_step_shapes(backend, logits, state) -> None:
    want = ((1, backend.vocab_size), (1, backend.state_size))
    if (np.shape(logits), np.shape(state)) != want:
        raise BundleError(f"{backend.path}: one step gives logits {np.shape(logits)} and state "
                          f"{np.shape(state)}, the manifest says {want[0]} and {want[1]}; the "
                          "file belongs to another model or the manifest was edited")


def log_likelihood(backend, ids: np.ndarray, chunk: int = 4096, on_progress=None) -> float:
    """Sum over i of ln p(ids[i+1] | ids[:i+1]) from a zero state, replayed in chunks (memory:
    [chunk, vocab] logits). on_progress(done, total) is called after each chunk."""
    n = max(len(ids) - 1, 0)
    report = None if on_progress is None else (lambda done: on_progress(done, n))
    return log_likelihood_stream(backend, [ids], chunk, report)[0]


def log_likelihood_stream(backend, id_chunks, chunk: int = 4096,
                          on_progress=None) -> tuple[float, int]:
    """log_likelihood over ids that arrive in pieces (an iterable of int arrays [n_i]), the
    state and the last id carried across pieces, so that memory is flat in the text's length:
    [chunk, vocab] logits and one piece at a time. Returns (sum of ln p, number of predicted
    ids, i.e. all ids but the first). on_progress(done) is called after each replayed chunk."""
    state, last, total, done = None, None, 0.0, 0
    for ids in id_chunks:
        ids = np.asarray(ids, np.int32)
        if last is None:
            if not len(ids):
                continue
            last, ids = int(ids[0]), ids[1:]
        for i in range(0, len(ids), chunk):
            targets = ids[i : i + chunk]
            inputs = np.concatenate((np.array([last], np.int32), targets[:-1]))
            logits, state = replay(backend, inputs, state)
            total += float(log_softmax(logits)[np.arange(len(targets)), targets].sum())
            last, done = int(targets[-1]), done + len(targets)
            if on_progress is not None:
                on_progress(done)
    return total, done


def teacher_forced(backend, tokens: np.ndarray) -> np.ndarray:
    """Logits float32 [N, V] after each of tokens[:i+1], from a zero state, batch 1."""
    return replay(backend, tokens)[0]


def greedy_rollout(backend, prompt: np.ndarray, n: int) -> np.ndarray:
    """The file's greedy continuation of `prompt` (at least one id), n ids."""
    logits, state = replay(backend, prompt)
    logits = logits[-1:]
    buf = np.zeros(1, np.int32)
    out = np.empty(n, np.int32)
    for i in range(n):
        out[i] = buf[0] = int(np.argmax(logits[0]))
        logits, state = backend.step(buf, state)
    return out


def bits_per_char(logits: np.ndarray, tokens: np.ndarray) -> float:
    """Mean -log2 p(tokens[i+1] | logits[i]) over the text."""
    if len(tokens) < 2:
        return float("nan")
    lp = log_softmax(logits[:-1])
    return float(-lp[np.arange(len(tokens) - 1), tokens[1:]].mean() / LN2)


def compare(backend, probe: dict, file: str) -> FileParity:
    tokens, ref = probe["tokens"], probe["logits"].astype(np.float32)
    got = teacher_forced(backend, tokens)
    diff = np.abs(got.astype(np.float64) - ref)
    lp_ref, lp_got = log_softmax(ref), log_softmax(got)
    kl = float((np.exp(lp_ref) * (lp_ref - lp_got)).sum(axis=-1).mean())
    greedy = greedy_rollout(backend, probe["prompt"], len(probe["greedy"]))
    mism = np.flatnonzero(greedy != probe["greedy"])
    tol = TOLERANCES.get(backend.precision, Tolerance())
    res = FileParity(
        file=file, backend=backend.name, precision=backend.precision,
        max_abs=float(diff.max()), mean_abs=float(diff.mean()),
        top1=float(np.mean(got.argmax(-1) == ref.argmax(-1))), kl=max(kl, 0.0),
        bpc=bits_per_char(got, tokens), ref_bpc=bits_per_char(ref, tokens),
        greedy_first_diff=int(mism[0]) if len(mism) else None, greedy_len=len(probe["greedy"]),
        passed=True, failures=[],
    )
    if tol.max_abs is not None and res.max_abs > tol.max_abs:
        res.failures.append(f"max |Δlogit| {res.max_abs:.3g} > {tol.max_abs:g}")
    if tol.min_top1 is not None and res.top1 < tol.min_top1:
        res.failures.append(f"top-1 agreement {res.top1:.2%} < {tol.min_top1:.1%}")
    if tol.max_bpc_rel is not None and abs(res.bpc_rel) > tol.max_bpc_rel:
        res.failures.append(f"bits/char {res.bpc:.4f} vs reference {res.ref_bpc:.4f} "
                            f"({res.bpc_rel:+.2%}, limit ±{tol.max_bpc_rel:.0%})")
    res.passed = not res.failures
    return res


def check_bundle(bundle, entries=None, threads: int = 1, on_result=None) -> list[FileParity]:
    """Replays the probe on every file (or `entries`); returns one FileParity per file.

    Every file gets its row: a file that cannot be verified (checksum, missing, a link out of
    the bundle), loaded, or run (shapes that do not match the manifest) is a failure of that
    file, not an exception. A file whose backend is not installed is "not checked" (its
    checksum is still verified: a damaged file fails). Use raise_for_failures() to turn
    failures into one ParityError. The probe itself must be readable (BundleError otherwise).
    """
    from charwright.runtime.backends import open_backend

    probe = bundle.probe()
    results = []
    for entry in entries if entries is not None else bundle.files:
        try:
            backend = open_backend(bundle, entry, threads=threads)  # reads + checks the bytes
            res = compare(backend, probe, entry.path)
        except BackendUnavailable as e:
            res = FileParity.unmeasured(entry, str(e), checked=False)
        except CharwrightError as e:
            res = FileParity.unmeasured(entry, str(e))
        except Exception as e:  # noqa: BLE001 - every file gets its row, whatever went wrong
            first = str(e).splitlines()[0] if str(e) else ""
            res = FileParity.unmeasured(entry, f"{entry.path}: {type(e).__name__}: {first}")
        results.append(res)
        if on_result:
            on_result(res)
    return results


def raise_for_failures(results: list[FileParity]) -> None:
    """ParityError naming every file that failed (not-checked files are not failures), or
    that nothing at all was checked."""
    bad = [r for r in results if r.checked and not r.passed]
    if bad:
        raise ParityError("outside tolerance: " + "; ".join(
            f"{r.file}: {', '.join(r.failures)}" for r in bad))
    if not any(r.checked for r in results):
        raise ParityError("nothing verified: no file of the bundle could be checked here" + (
            f" ({results[0].failures[0]})" if results else ""))


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def format_table(results: list[FileParity]) -> str:
    """A Markdown table, one row per file."""
    head = ("| file | max abs Δlogit | mean abs Δlogit | top-1 agree | KL(ref‖file) | bits/char "
            "(file / ref) | greedy first diff | verdict |")
    rows = [head, "|" + "---|" * 8]
    for r in results:
        if not r.checked:
            why = r.failures[0].split(" (")[0] if r.failures else "backend not installed"
            rows.append(f"| {r.file} | - | - | - | - | - | - | not checked: {why} |")
            continue
        if _missing(r.max_abs) or _missing(r.bpc) or _missing(r.ref_bpc):
            rows.append(f"| {r.file} | - | - | - | - | - | - | FAIL: {'; '.join(r.failures)} |")
            continue
        g = "none" if r.greedy_first_diff is None else f"step {r.greedy_first_diff}"
        g += f" of {r.greedy_len}"
        verdict = "pass" if r.passed else "FAIL: " + "; ".join(r.failures)
        rows.append(f"| {r.file} | {r.max_abs:.2e} | {r.mean_abs:.2e} | {r.top1:.2%} | "
                    f"{r.kl:.2e} | {r.bpc:.4f} / {r.ref_bpc:.4f} ({r.bpc_rel:+.2%}) | {g} | "
                    f"{verdict} |")
    return "\n".join(rows)
