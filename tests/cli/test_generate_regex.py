"""charwright generate --regex / --choice (tiny numpy bundle, no TensorFlow): the text after the
prompt matches in full, with --num-samples and --json too, an empty prompt, beams; bad patterns
and combinations are one line and a non-zero exit."""

import json
import re

import pytest
from click.testing import CliRunner

from bundle_factory import make_bundle

from charwright.runtime.cli import cli


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return str(make_bundle(tmp_path_factory.mktemp("rxcli") / "tiny", units=16))


def gen(bundle, *args):
    return CliRunner().invoke(cli, ["generate", *args, "-b", bundle, "--backend", "numpy"])


def test_streamed_text_after_the_prompt_matches(bundle):
    pattern = r"[a-h]{3}( [a-h]{1,3})*\."
    for seed in range(5):
        r = gen(bundle, "abc ", "--regex", pattern, "-n", "20", "--seed", str(seed))
        assert r.exit_code == 0, r.output
        assert r.stdout.startswith("abc ") and r.stdout.endswith("\n")
        assert re.fullmatch(pattern, r.stdout[len("abc "):-1]), r.stdout


@pytest.mark.parametrize("prompt", ["", "h"])
def test_json_samples_each_match_and_choices(bundle, prompt):
    r = gen(bundle, prompt, "--regex", "(ab|cd)+e?", "-n", "9", "--num-samples", "12",
            "--seed", "7", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert "regex((ab|cd)+e?)" in out["chain"] and len(out["completions"]) == 12
    for c in out["completions"]:
        assert re.fullmatch("(ab|cd)+e?", c["text"]) and len(c["text"]) <= 9
    r = gen(bundle, prompt, "--choice", "bad", "--choice", "a.b", "--choice", "h",
            "--num-samples", "8", "--json", "--temperature", "2")
    assert r.exit_code == 0, r.output
    for c in json.loads(r.stdout)["completions"]:
        assert c["text"] in ("bad", "a.b", "h") and c["finish_reason"] == "stop"


def test_greedy_and_beam(bundle):
    r = gen(bundle, "a", "--regex", "[b-h]{2,6}", "--greedy", "-n", "8")
    assert r.exit_code == 0 and re.fullmatch("[b-h]{2,6}", r.stdout[1:-1]), r.output
    r = gen(bundle, "a", "--regex", "(bad|cafe|ab)", "--beam", "3", "-n", "6", "--json")
    assert r.exit_code == 0, r.output
    beams = json.loads(r.stdout)["completions"]
    assert beams and all(b["text"] in ("bad", "cafe", "ab") for b in beams)
    assert all(b["finish_reason"] == "stop" for b in beams)


@pytest.mark.parametrize("args, words, code", [
    (["--regex", "a(?=b)"], "lookaround", 2),
    (["--regex", "(a"], "not a valid regular expression", 2),
    (["--regex", "a", "--choice", "b"], "--regex and --choice together", 2),
    (["--regex", "zz"], r"needs 'z' \(U\+007A\)", 1),
    (["--regex", "[a-h]{30}", "-n", "10"], "shortest match is 30 characters", 1),
    (["--regex", "a{1000000}"], "unrolls to more than", 1),
    (["--regex", "(a|b)*a(a|b){40}"], "automaton states", 1),
    # the review's cases: a start that cannot move within -n, zero-width repeats, an empty class
    (["--regex", "(abc)*", "-n", "2"], r"shortest non-empty match .* is 3 characters", 1),
    (["--regex", "(abc)*", "-n", "2", "--beam", "3"], r"shortest non-empty match .* is 3", 1),
    (["--regex", "(abc)?", "-n", "1", "--greedy"], r"shortest non-empty match .* is 3", 1),
    (["--regex", "[\u4e00]?"], "only the empty string over this vocabulary", 1),
    (["--regex", "(((a{0}){1000}){1000}){1000}b"], "200,000 automaton states", 1),
])
def test_bad_patterns_are_one_line(bundle, args, words, code):
    r = gen(bundle, "a", *args)
    assert r.exit_code == code, r.output
    assert r.stdout == "" and re.search(words, r.stderr)
    assert "Traceback" not in r.output and len(r.stderr.strip().splitlines()[-1]) > 10
