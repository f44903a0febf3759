"""Which files a bundle keeps after the parity check: a file outside its tolerance is left out
(deleted from the bundle being written, recorded in the manifest's left_out[]), unless its
precision was named (the export is refused), or no file holds parity (refused too).
"""

from __future__ import annotations

from pathlib import Path

from charwright.export.manifest import left_out_entry, why
from charwright.runtime.errors import ParityError
from charwright.runtime.verify.parity import raise_for_failures


def row_path(label: str, paths) -> str:
    """The bundle file a parity row measured (TFLite Micro's rows are labelled PATH[tflm])."""
    if label in paths:
        return label
    base = label.rsplit("[", 1)[0]
    return base if base in paths else label


def failed_files(results, files) -> dict:
    """{path: [failing parity rows]} over every row of a file (its own backend's and TFLite
    Micro's); a file that was not checked here has not failed."""
    paths = {f["path"] for f in files}
    out: dict[str, list] = {}
    for r in results:
        if r.checked and not r.passed:
            out.setdefault(row_path(r.file, paths), []).append(r)
    return out


def leave_out(tmp: Path, manifest: dict, results: list, failed: dict, named: set,
              on_progress) -> list:
    """Drops the files outside their tolerance from the bundle being written (tmp), each
    recorded in manifest["left_out"] (path, format, precision, reason, figures: its failing
    parity rows) and announced by a "left_out" event; returns the parity rows of the files
    kept.

    Raises ParityError (nothing is written) when a failing file is of a precision the user
    asked for by name (`named`), when no kept file holds parity, or when nothing could be
    checked here at all."""
    precision = {f["path"]: f["precision"] for f in manifest["files"]}
    kept = [r for r in results if row_path(r.file, precision) not in failed]
    _refuse(failed, precision, named, kept)
    left_out = []
    for f in list(manifest["files"]):
        rows = failed.get(f["path"])
        if rows is None:
            continue
        (tmp / f["path"]).unlink()
        manifest["files"].remove(f)
        left_out.append(left_out_entry(f, rows))
        on_progress({"event": "left_out", **left_out[-1]})
    if left_out:
        manifest["left_out"] = left_out
    return kept


def _refuse(failed: dict, precision: dict, named: set, kept: list) -> None:
    """Raises ParityError when the failures may not be left out (see leave_out)."""
    refused = {p: rows for p, rows in failed.items() if precision.get(p) in named}
    if refused:
        asked = ", ".join(sorted({precision[p] for p in refused}))
        raise ParityError(f"export refused: outside tolerance: "
                          f"{'; '.join(why(r) for r in refused.values())} (precision {asked} "
                          "was asked for with --precision: drop it to leave such files out, or "
                          "pass --allow-mismatch to keep them with the failure recorded in the "
                          "manifest)")
    if failed and not any(r.checked and r.passed for r in kept):
        raise ParityError(f"export refused: no file holds parity: "
                          f"{'; '.join(why(r) for r in failed.values())} (pass --allow-mismatch "
                          "to keep them with the failure recorded in the manifest)")
    try:
        raise_for_failures(kept)  # here: nothing could be checked at all
    except ParityError as e:
        raise ParityError(f"export refused: {e}") from None
