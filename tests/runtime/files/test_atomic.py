"""Atomic writes: the target holds the old content or the new, never half, never nothing."""

import os

import pytest

from charwright.runtime.files import atomic


def test_write_json_failure_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    atomic.write_json(target, {"v": 1})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "full")))
    with pytest.raises(OSError, match="full"):
        atomic.write_json(target, {"v": 2})
    assert target.read_text() == '{\n  "v": 1\n}\n' and os.listdir(tmp_path) == ["x.json"]


@pytest.mark.parametrize("exchange", [True, False])
def test_replacing_a_directory_swaps_it_whole(tmp_path, monkeypatch, exchange):
    target = tmp_path / "b"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "v").write_text("old")
    seen = []
    real = atomic._exchange

    def spy(a, b):
        # at the moment of the swap the target still holds the old directory, whole
        seen.append((target / "v").read_text())
        return real(a, b) if exchange else False

    monkeypatch.setattr(atomic, "_exchange", spy)
    with atomic.atomic_dir(target, replace=True) as tmp:
        (tmp / "v").write_text("new")
    assert seen == ["old"] and (target / "v").read_text() == "new"
    assert os.listdir(tmp_path) == ["b"]  # no .b.tmp-* or .b.old-* left


def test_an_error_inside_the_block_keeps_the_old_directory(tmp_path):
    target = tmp_path / "b"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "v").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.atomic_dir(target, replace=True) as tmp:
            (tmp / "v").write_text("new")
            raise RuntimeError("boom")
    assert (target / "v").read_text() == "old" and os.listdir(tmp_path) == ["b"]


def test_without_replace_an_existing_target_is_never_overwritten(tmp_path):
    target = tmp_path / "b"
    target.mkdir()
    (target / "mine").write_text("user data")
    with pytest.raises(FileExistsError, match="appeared while it was being written"):
        with atomic.atomic_dir(target) as tmp:
            (tmp / "v").write_text("new")
    assert os.listdir(target) == ["mine"] and os.listdir(tmp_path) == ["b"]
