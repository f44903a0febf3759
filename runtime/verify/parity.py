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

from charwright.runtime.errors import BackendUnavailable, CharwrightError, ParityError
from charwright.runtime.sampling.processors import log_softmax
from charwright.runtime.verify.score import bits_per_char, greedy_rollout, teacher_forced


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
