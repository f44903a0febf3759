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
