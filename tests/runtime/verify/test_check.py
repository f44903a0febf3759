"""runtime.verify.check: the one check of a bundle (files by format, parity rows, not-checked
files, the sampling golden vectors, the one ParityError), on the demo bundle and hand-made ones."""

import pytest

from bundle_factory import copy_demo, make_bundle

from charwright.runtime.bundle.reader import load_bundle
from charwright.runtime.errors import ConfigError, ParityError
from charwright.runtime.verify.check import (GoldenCheck, check_files, check_golden_vectors,
                                             files_of_formats, not_checked, raise_for_check)
from charwright.runtime.verify.parity import FileParity


def test_files_of_formats_picks_by_manifest_format_or_names_what_the_bundle_has(tmp_path):
    b = load_bundle(copy_demo(tmp_path / "demo"), verify=False)
    assert [e.path for e in files_of_formats(b, {"onnx"}, "B")] == ["model.int8-dynamic.onnx"]
    assert files_of_formats(b, set(), "B") == list(b.files)
    with pytest.raises(ConfigError, match=r"^B: no file of format onnx in this bundle \(it has: "
                                          r"npz\); drop --format"):
        files_of_formats(load_bundle(make_bundle(tmp_path / "npz")), {"onnx"}, "B")


def test_check_files_gives_every_file_its_row_and_names_the_unchecked(tmp_path):
    b = load_bundle(make_bundle(tmp_path / "b"))
    rows = []
    results = check_files(b, on_result=rows.append)
    assert [r.file for r in results] == ["weights.npz"] and rows == results
    assert results[0].passed and results[0].max_abs == 0.0
    assert not_checked(results, b.files) == {}
    absent = FileParity.unmeasured(b.files[0], "runtime missing", checked=False)
    assert not_checked([absent], b.files) == {"npz": ["weights.npz"]}
    assert not_checked([absent], []) == {}  # a row of a file not asked for is not listed


def test_golden_vectors_of_the_demo_are_reproduced_and_a_bundle_without_has_none(tmp_path):
    golden = check_golden_vectors(load_bundle(copy_demo(tmp_path / "demo"), verify=False))
    assert golden.total > 0 and golden.failures == [] and golden.reproduced == golden.total
    assert check_golden_vectors(load_bundle(make_bundle(tmp_path / "b"))) is None


def test_raise_for_check_names_the_bundle_then_the_golden_vectors(tmp_path):
    b = load_bundle(make_bundle(tmp_path / "b"))
    ok = check_files(b)
    raise_for_check("B", ok, None)
    raise_for_check("B", ok, GoldenCheck(3, []))
    bad = FileParity.unmeasured(b.files[0], "damaged")
    with pytest.raises(ParityError, match=r"^B: outside tolerance: weights.npz: damaged$"):
        raise_for_check("B", [bad], GoldenCheck(3, ["case 'x': step 0 picks 1, expected 2"]))
    with pytest.raises(ParityError, match=r"^B: the sampling golden vectors fail: case 'x'"):
        raise_for_check("B", ok, GoldenCheck(3, ["case 'x': step 0 picks 1, expected 2"]))
    with pytest.raises(ParityError, match=r"^B: nothing verified"):
        raise_for_check("B", [FileParity.unmeasured(b.files[0], "absent", checked=False)], None)
