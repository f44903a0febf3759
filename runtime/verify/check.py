"""The one check of a bundle, used by `charwright verify` and by export before it renames a bundle
into place: the reference probe replayed on every file (parity), then TFLite Micro's replay of
the files it runs, when the [micro] extra is installed; `verify` also replays the sampling golden
vectors.

    entries = files_of_formats(bundle, {"onnx"}, where)   every file when the set is empty
    results = check_files(bundle, entries, threads=1, on_result=print)
    not_checked(results, entries)    format -> files whose runtime is not installed
    golden = check_golden_vectors(bundle)                  None: the bundle has none
    raise_for_check(where, results, golden)                ParityError naming what failed
"""

from __future__ import annotations

from dataclasses import dataclass

from charwright.runtime.errors import ConfigError, ParityError
from charwright.runtime.verify import micro
from charwright.runtime.verify.parity import FileParity, check_bundle, raise_for_failures


def files_of_formats(bundle, formats: set, where) -> list:
    """The bundle's file entries of the manifest formats in `formats` (empty: every file).

    Raises ConfigError naming `where` (the bundle as the user gave it) when none is of them."""
    entries = [e for e in bundle.files if not formats or e.format in formats]
    if not entries:
        have = ", ".join(sorted({e.format for e in bundle.files}))
        raise ConfigError(f"{where}: no file of format {', '.join(sorted(formats))} in this "
                          f"bundle (it has: {have}); drop --format or pick one of those")
    return entries


def check_files(bundle, entries=None, threads: int = 1, on_result=None) -> list[FileParity]:
    """Parity rows for `entries` (default: every file of the bundle), then one `FILE[tflm]` row
    for each of them that the manifest records as running under TFLite Micro."""
    results = check_bundle(bundle, entries, threads=threads, on_result=on_result)
    return results + micro.check_bundle(bundle, entries, on_result=on_result)


def not_checked(results: list[FileParity], entries) -> dict[str, list[str]]:
    """format -> the files of that format no installed runtime could replay."""
    format_of, out = {e.path: e.format for e in entries}, {}
    for r in results:
        if not r.checked and r.file in format_of:
            out.setdefault(format_of[r.file], []).append(r.file)
    return out


@dataclass(frozen=True)
class GoldenCheck:
    """The bundle's sampling golden vectors replayed by the Python runtime."""

    total: int
    failures: list  # one line per vector not reproduced

    @property
    def reproduced(self) -> int:
        return self.total - len(self.failures)


def check_golden_vectors(bundle) -> GoldenCheck | None:
    """The golden vectors of the manifest's `golden` entry replayed (None: the bundle has none).

    Raises BundleError if golden.json is damaged or not a document this version reads."""
    from charwright.runtime.sampling.golden import check_golden, read_golden

    if bundle.manifest.get("golden") is None:
        return None
    doc = read_golden(bundle)
    fails = check_golden(doc, str(bundle.root / "golden.json"))
    return GoldenCheck(len(doc["cases"]) + len(doc["rng"]), fails)


def raise_for_check(where, results: list[FileParity], golden: GoldenCheck | None) -> None:
    """ParityError naming `where` and every file outside its tolerance (or that nothing was
    checked), else naming the golden vectors that fail."""
    try:
        raise_for_failures(results)
    except ParityError as e:
        raise ParityError(f"{where}: {e}") from None
    if golden is not None and golden.failures:
        raise ParityError(f"{where}: the sampling golden vectors fail: "
                          f"{'; '.join(golden.failures)}")
