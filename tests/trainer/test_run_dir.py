"""The RUN_DIR format module: what may be replaced, what is never deleted. No TensorFlow."""

import json
import subprocess
import sys

import pytest

from charwright.runtime.errors import RunDirError
from charwright.trainer import run_dir as rd


def _fake_run(d, status="complete", checkpoint=True, version=1):
    d.mkdir(parents=True, exist_ok=True)
    (d / "run.json").write_text(json.dumps({"format": "charwright-run", "version": version,
                                            "status": status}))
    (d / "vocab.json").write_text("{}")
    (d / "step").mkdir(exist_ok=True)
    (d / "step" / "step.json").write_text("{}")
    (d / ".step.tmp-abc").mkdir(exist_ok=True)  # what a killed atomic write leaves
    if checkpoint:
        (d / "checkpoints").mkdir(exist_ok=True)
        (d / "checkpoints" / "latest").write_text("ckpt-000000001\n")


def test_module_does_not_import_tensorflow():
    code = ("import sys; import charwright.trainer.run_dir, charwright.export.writer; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_check_target_refuses_and_names_user_files(tmp_path):
    d = tmp_path / "r"
    _fake_run(d)
    (d / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match=r"holds files charwright did not write \(notes.txt\); "
                                          "move them out first"):
        rd.check_target(d, force=True)
    (d / "notes.txt").unlink()
    with pytest.raises(RunDirError, match="already holds a run; pass --resume"):
        rd.check_target(d, force=False)
    assert rd.check_target(d, force=True)["status"] == "complete"
    assert rd.check_target(tmp_path / "new", force=False) is None
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunDirError, match="exists and is not a directory"):
        rd.check_target(f, force=True)


def test_a_run_that_never_checkpointed_does_not_block_a_rerun(tmp_path):
    d = tmp_path / "r"
    _fake_run(d, status="training", checkpoint=False)
    assert rd.check_target(d, force=False)["status"] == "training"
    _fake_run(d, status="training", checkpoint=True)  # resumable: kept unless --force
    with pytest.raises(RunDirError, match="already holds a run"):
        rd.check_target(d, force=False)


def test_clear_run_deletes_only_charwrights_entries(tmp_path):
    d = tmp_path / "r"
    _fake_run(d)
    (d / "mine.txt").write_text("keep")
    rd.clear_run(d)
    assert sorted(p.name for p in d.iterdir()) == ["mine.txt"]


def test_read_run_checks_format_and_version(tmp_path):
    _fake_run(tmp_path / "a", version=3)
    with pytest.raises(RunDirError, match="version 3 is not supported .*upgrade charwright"):
        rd.read_run(tmp_path / "a")
    for old in (1, 2):  # version 1 runs (before the per-layer stack) still load
        _fake_run(tmp_path / f"v{old}", version=old)
        assert rd.read_run(tmp_path / f"v{old}")["version"] == old
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "run.json").write_text('{"format": "other"}')
    with pytest.raises(RunDirError, match="not a charwright-run file"):
        rd.read_run(tmp_path / "b")
    _fake_run(tmp_path / "c", status="training")
    with pytest.raises(RunDirError, match=r"training has not finished \(status 'training'\); "
                                          "finish it with charwright train -o .* --resume"):
        rd.read_complete_run(tmp_path / "c")


def test_lock_names_the_holder_across_processes(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    code = ("import sys, time\nfrom charwright.trainer import run_dir as rd\n"
            "with rd.lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(d)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=rf"{d} is in use by pid {p.pid} \(charwright "
                                              rf"{d}, since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\)"):
            with rd.lock(d):
                pass
    finally:
        p.kill()
        p.wait()
    with rd.lock(d):  # released when its holder died
        pass


def test_sweep_removes_only_what_charwrights_atomic_writes_leave(tmp_path):
    """A user's '.backup.old-2024/' or '.notes.tmp.md' look like temps but are not ours."""
    run = tmp_path / "run"
    (run / ".backup.old-2024").mkdir(parents=True)
    (run / ".backup.old-2024" / "data").write_text("mine")
    (run / ".notes.tmp.md").write_text("mine")
    (run / ".run.json.k2j3.tmp").write_text("half")
    (run / ".step.tmp-abc").mkdir()
    (run / "checkpoints" / ".ckpt-000000010.tmp-x").mkdir(parents=True)
    (run / "checkpoints" / ".mine.tmp").write_text("mine")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("mine")
    (run / ".probe.npz.zz.tmp.npz").symlink_to(outside)
    rd.sweep_temps(run)
    left = sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))
    assert left == [".backup.old-2024", ".backup.old-2024/data", ".notes.tmp.md", "checkpoints",
                    "checkpoints/.mine.tmp"]
    assert (outside / "keep").read_text() == "mine"  # the link went, not what it pointed to


@pytest.mark.parametrize("plant", ["symlink", "fifo", "hardlink"])
def test_a_planted_lock_file_is_refused_and_its_target_untouched(tmp_path, plant):
    import os

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    lock = run / rd.LOCK_NAME
    if plant == "symlink":
        lock.symlink_to(victim)
        message = "is a symbolic link"
    elif plant == "fifo":
        os.mkfifo(lock)
        message = "is not a regular file"
    else:
        os.link(victim, lock)
        message = "has other hard links"
    with pytest.raises(RunDirError, match=f"{rd.LOCK_NAME}: {message}; a lock file must be a "
                                          "plain file"):
        with rd.lock(run):
            pass
    assert victim.read_text() == "precious"
