"""charwright generate --save-state / --from-state: a run cut in pieces prints the text of one
uninterrupted run; bad files are one line and a non-zero exit."""

import json

import pytest
from click.testing import CliRunner

from bundle_factory import make_bundle
from charwright.runtime import SamplingConfig, load
from charwright.runtime.cli import cli


def _run(*args):
    r = CliRunner().invoke(cli, ["generate", *map(str, args)])
    return r


@pytest.fixture(scope="module")
def hand_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("state") / "b", units=16)


def test_the_demo_cut_in_three_runs_prints_the_uninterrupted_text(tmp_path):
    state = tmp_path / "romeo.npz"
    whole = _run("ROMEO:", "-n", 90, "--seed", 1)
    assert whole.exit_code == 0, whole.output
    a = _run("ROMEO:", "-n", 25, "--seed", 1, "--save-state", state)
    b = _run("--from-state", state, "-n", 40, "--save-state", state)  # replaces its snapshot
    c = _run("", "--from-state", state, "-n", 25)
    for r in (a, b, c):
        assert r.exit_code == 0, r.output
    # each prints its PROMPT (here empty) and its text, then a newline
    assert a.stdout[:-1] + b.stdout[:-1] + c.stdout[:-1] == whole.stdout[:-1]


def test_a_prompt_after_from_state_is_appended_text(hand_bundle, tmp_path):
    state = tmp_path / "s.npz"
    cfg = SamplingConfig(temperature=0.8, seed=6)
    a = _run("abc", "-b", hand_bundle, "--backend", "numpy", "-n", 20, "--seed", 6,
             "--save-state", state)
    b = _run("\n.d", "-b", hand_bundle, "--from-state", state, "-n", 30, "--json")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    s = load(hand_bundle, backend="numpy").session()
    s.feed("abc")
    assert a.stdout == "abc" + s.generate(20, cfg) + "\n"
    s.feed("\n.d")
    out = json.loads(b.stdout)
    assert out["completions"][0]["text"] == s.generate(30, cfg)
    assert out["seed"] == 6 and out["prompt"] == "\n.d" and out["file"] == "weights.npz"


def test_from_state_takes_the_snapshots_file_and_config_unless_given(hand_bundle, tmp_path):
    state = tmp_path / "s.npz"
    assert _run("ab", "-b", hand_bundle, "--backend", "numpy", "-n", 5, "--top-k", 3,
                "--seed", 2, "--save-state", state).exit_code == 0
    r = _run("-b", hand_bundle, "--from-state", state, "-n", 5, "-v")
    assert r.exit_code == 0, r.output
    assert "top-k(3)" in r.stderr and "seed=2" in r.stderr
    r = _run("-b", hand_bundle, "--from-state", state, "-n", 5, "-v", "--temperature", 0.5)
    assert r.exit_code == 0, r.output
    assert "temperature(0.5)" in r.stderr and "top-k(3)" in r.stderr and "seed=2" in r.stderr


def test_bad_state_files_are_one_line_and_a_non_zero_exit(hand_bundle, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("precious")
    r = _run("ab", "-b", hand_bundle, "--backend", "numpy", "--save-state", notes)
    assert r.exit_code == 1 and "not a charwright snapshot" in r.stderr
    assert r.stdout == ""  # refused before the run
    assert notes.read_text() == "precious"
    state = tmp_path / "s.npz"
    assert _run("ab", "-b", hand_bundle, "--backend", "numpy", "-n", 3,
                "--save-state", state).exit_code == 0
    other = make_bundle(tmp_path / "other", units=16, seed=3)
    for args, words in [
        (["--from-state", notes], "not a readable npz"),
        (["--from-state", tmp_path / "absent.npz"], "no such snapshot"),
        (["-b", other, "--from-state", state], "another bundle"),
        (["--from-state", state], "another bundle"),  # the demo
        (["-b", hand_bundle, "--from-state", state, "--backend", "onnx"], "no onnx file"),
    ]:
        r = _run(*args)
        assert r.exit_code == 1, r.output
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for extra in (["--beam", 2], ["--num-samples", 2]):
        r = _run("-b", hand_bundle, "--from-state", state, *extra)
        assert r.exit_code == 2 and "continue one text" in r.stderr


def _chain(r):
    return r.stderr.strip().splitlines()[-1]


def test_from_state_sampling_options_turn_greedy_off_and_constraints_are_not_inherited(
        hand_bundle, tmp_path):
    g = tmp_path / "g.npz"
    assert _run("ab", "-b", hand_bundle, "--backend", "numpy", "-n", 5, "--greedy",
                "--save-state", g).exit_code == 0
    r = _run("-b", hand_bundle, "--from-state", g, "-n", 5, "-v")
    assert r.exit_code == 0 and "greedy" in _chain(r)  # nothing given: the snapshot's
    r = _run("-b", hand_bundle, "--from-state", g, "-n", 5, "-v", "--temperature", 1.5,
             "--seed", 4)
    assert r.exit_code == 0, r.output
    assert "temperature(1.5)" in _chain(r) and "categorical" in _chain(r)
    r = _run("-b", hand_bundle, "--from-state", g, "-n", 5, "-v", "--top-k", 2, "--greedy")
    assert r.exit_code == 0 and "greedy" in _chain(r)  # --greedy given: greedy stays
    ch = tmp_path / "ch.npz"
    a = _run("ab", "-b", hand_bundle, "--backend", "numpy", "-n", 5, "--seed", 1,
             "--choice", "ca", "--choice", "db", "--save-state", ch)
    assert a.exit_code == 0 and a.stdout[2:-1] in ("ca", "db"), a.output
    # not inherited: the continuation is free text (20 characters, not a choice again)
    b = _run("-b", hand_bundle, "--from-state", ch, "-n", 20, "--seed", 3)
    assert b.exit_code == 0 and len(b.stdout) == 21, b.output
    c = _run("-b", hand_bundle, "--from-state", ch, "-n", 20, "--regex", "[a-d]+", "--json")
    assert c.exit_code == 0, c.output
    text = json.loads(c.stdout)["completions"][0]["text"]
    assert text and set(text) <= set("abcd")
    rx = tmp_path / "rx.npz"
    assert _run("ab", "-b", hand_bundle, "--backend", "numpy", "-n", 5, "--regex", "[ab]+",
                "--save-state", rx).exit_code == 0
    d = _run("-b", hand_bundle, "--from-state", rx, "-n", 3, "--choice", "dd", "--json")
    assert d.exit_code == 0, d.output
    assert json.loads(d.stdout)["completions"][0]["text"] == "dd"


def test_a_huge_top_k_is_off_not_an_internal_error(hand_bundle):
    base = _run("ab", "-b", hand_bundle, "--backend", "numpy", "-n", 20, "--seed", 5)
    for k in (2**31, 2**63, 10**30):
        r = _run("ab", "-b", hand_bundle, "--backend", "numpy", "-n", 20, "--seed", 5,
                 "--top-k", k)
        assert r.exit_code == 0 and r.stdout == base.stdout, r.output


def test_odd_state_paths_are_one_clear_line(hand_bundle, tmp_path):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args, words in [
        (["--from-state", fifo], "not a regular file"),
        (["--from-state", "/dev/zero"], "not a regular file"),
        (["ab", "--save-state", ""], "empty path"),
        (["ab", "--save-state", tmp_path / "new" / "sub" / "s.npz"], "does not exist"),
    ]:
        r = _run("-b", hand_bundle, "--backend", "numpy", *args)
        assert r.exit_code != 0, r.output
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "manifest" not in r.stderr
    assert not (tmp_path / "new").exists()
    state = tmp_path / "s.npz"
    assert _run("ab", "-b", hand_bundle, "--backend", "numpy", "-n", 3,
                "--save-state", state).exit_code == 0
    import numpy as np

    with np.load(state) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, **{**arrays, "meta": np.array(json.dumps({**meta, "file": "bogus:x"}))})
    r = _run("-b", hand_bundle, "--from-state", bogus)
    assert r.exit_code == 1 and str(bogus) in r.stderr and "'bogus'" in r.stderr, r.output


def test_save_state_help_says_what_a_state_after_a_stop_holds(hand_bundle, tmp_path):
    r = CliRunner().invoke(cli, ["generate", "--help"])
    assert "includes that string" in " ".join(r.output.split())
    # and it does: the stop string is fed (position counts it), not printed
    state = tmp_path / "st.npz"
    r = _run("ab", "-b", hand_bundle, "--backend", "numpy", "-n", 200, "--seed", 3, "--json")
    text = json.loads(r.stdout)["completions"][0]["text"]
    stop = text[40:42]
    cut = text.index(stop)
    r = _run("ab", "-b", hand_bundle, "--backend", "numpy", "-n", 200, "--seed", 3,
             "--stop", stop, "--no-escape", "--save-state", state, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["completions"][0]["text"] == text[:cut]
    from charwright.runtime import Snapshot

    snap = Snapshot.load(state, load(hand_bundle, backend="numpy"))
    assert snap.position == 2 + cut + len(stop)


def test_a_cut_inside_a_stop_string_prints_the_uninterrupted_text(hand_bundle, tmp_path):
    common = ["-b", hand_bundle, "--backend", "numpy", "--seed", 1]
    free = json.loads(_run("ab", *common, "-n", 120, "--json").stdout)["completions"][0]["text"]
    stop = free[50:54]
    end = free.index(stop)
    whole = _run("ab", *common, "-n", 120, "--stop", stop, "--no-escape")
    assert whole.exit_code == 0 and whole.stdout == "ab" + free[:end] + "\n"
    state = tmp_path / "s.npz"
    for cut in (end + 1, end + 3):  # inside the stop string: its head is held, not printed
        a = _run("ab", *common, "-n", cut, "--stop", stop, "--no-escape", "--save-state", state)
        b = _run("--from-state", state, "-b", hand_bundle, "-n", 120 - cut, "--stop", stop,
                 "--no-escape")
        assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
        assert a.stdout[:-1] + b.stdout[:-1] == whole.stdout[:-1], cut
    # other stop strings in the second run: the held text is printed first
    a = _run("ab", *common, "-n", end + 2, "--stop", stop, "--no-escape", "--save-state", state)
    b = _run("--from-state", state, "-b", hand_bundle, "-n", 5, "--stop", "qq")
    assert a.stdout[:-1] + b.stdout[:-1] == "ab" + free[:end + 2 + 5]
