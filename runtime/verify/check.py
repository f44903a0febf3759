"""The one check of a bundle, used by `charwright verify` and by export before it renames a bundle
into place: the reference probe replayed on every file (parity), then TFLite Micro's replay of
the files it runs, when the [micro] extra is installed.

    results = check_files(bundle, entries, threads=1, on_result=print)
    not_checked(results, entries)    format -> files whose runtime is not installed
"""

from __future__ import annotations

from charwright.runtime.verify import micro
from charwright.runtime.verify.parity import FileParity, check_bundle


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
