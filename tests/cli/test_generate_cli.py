"""charwright generate / score through the command line: stdout is the payload, errors one line."""

import json

import pytest
from click.testing import CliRunner

from charwright.runtime.cli import COMMANDS, cli

pytestmark = [pytest.mark.tf]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name):
    r = CliRunner().invoke(cli, [name, "--help"], prog_name="charwright")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"Usage: charwright {name} ")


def test_generate_streams_only_text_to_stdout(tiny_bundle):
    args = ["generate", "The ", "-b", str(tiny_bundle), "-n", "50", "--seed", "3", "-v"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("The ") and len(r.stdout) == len("The ") + 50 + 1
    assert "categorical(seed=3)" in r.stderr and "categorical" not in r.stdout
    assert CliRunner().invoke(cli, args).stdout == r.stdout  # seeded: identical


def test_generate_json_num_samples_and_stop(tiny_bundle):
    r = CliRunner().invoke(cli, ["generate", "The ", "-b", str(tiny_bundle), "--num-samples",
                                 "3", "--seed", "1", "--stop", ".", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["samples"]) == 3 and all("." not in s for s in out["samples"])
    assert out["chain"] == "logits -> temperature(0.8) -> categorical(seed=1)"


def test_generate_beam_and_backends(tiny_bundle):
    r = CliRunner().invoke(cli, ["generate", "The ", "-b", str(tiny_bundle), "--beam", "3",
                                 "-n", "10", "--json"])
    assert r.exit_code == 0, r.output
    beams = json.loads(r.stdout)
    assert len(beams) == 3 and beams[0]["score"] >= beams[1]["score"]
    for backend in ("numpy", "litert"):
        r = CliRunner().invoke(cli, ["generate", "The ", "-b", str(tiny_bundle), "--backend",
                                     backend, "--precision", "float32", "--greedy", "-n", "20"])
        assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args,exit_code,message", [
    (["--temperature", "0"], 2, "Invalid value for '--temperature': 0.0 is not in the range x>0."),
    (["--top-p", "1.5"], 2, "Invalid value for '--top-p': 1.5 is not in the range 0<x<=1."),
    (["--top-k", "0"], 2, "Invalid value for '--top-k': 0 is not in the range x>=1."),
    (["-n", "-5"], 2, "Invalid value for '-n' / '--max-chars': -5 is not in the range x>=0."),
    (["--precision", "float16", "--backend", "onnx"], 1,
     "no onnx file in precision 'float16' (have: float32, int8-dynamic)"),
])
def test_bad_options_are_one_line(tiny_bundle, args, exit_code, message):
    r = CliRunner().invoke(cli, ["generate", "The", "-b", str(tiny_bundle), *args])
    assert r.exit_code == exit_code
    assert message in r.stderr.strip().splitlines()[-1]
    assert r.stdout == "" and "Traceback" not in r.output


def test_unknown_prompt_characters(tiny_bundle):
    r = CliRunner().invoke(cli, ["generate", "Thé€", "-b", str(tiny_bundle)])
    assert r.exit_code == 1 and r.stdout == ""
    assert "not in the model's vocabulary: 'é' at 2, '€' at 3" in r.stderr
    r = CliRunner().invoke(cli, ["generate", "Thé€", "-b", str(tiny_bundle), "--unknown",
                                 "replace", "-n", "5", "--seed", "0"])
    assert r.exit_code == 0 and r.stdout.startswith("Thé€")


def test_score(tiny_bundle, tiny_corpus):
    r = CliRunner().invoke(cli, ["score", str(tiny_bundle), str(tiny_corpus), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert 0.5 < out["bits_per_char"] < 4 and out["chars"] == 29_999


def test_missing_extra_is_exit_2_and_one_line(tmp_path):
    """With TensorFlow blocked, `charwright train` names the extra and exits 2."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "class B:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'keras'):\n"
        "            raise ImportError('No module named ' + repr(name))\n"
        "sys.meta_path.insert(0, B())\n"
        "from charwright.runtime.cli import main\n"
        "main()\n"
    )
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world " * 100)
    r = subprocess.run([sys.executable, "-c", script, "train", str(corpus), "-o",
                        str(tmp_path / "run")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "Error: tensorflow is not installed (No module named 'tensorflow'); install it with: "
        "pip install 'charwright[train]'"]
    assert not (tmp_path / "run").exists()
