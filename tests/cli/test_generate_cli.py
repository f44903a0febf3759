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
    assert out["chain"] == "logits -> temperature(0.8) -> categorical(seed=1)"
    assert out["seed"] == 1 and out["prompt"] == "The "
    from charwright.runtime import SamplingConfig, load

    ref = load(tiny_bundle).complete(["The "] * 3, 300, SamplingConfig(temperature=0.8, seed=1),
                                     stop=["."])
    assert [c["text"] for c in out["completions"]] == [c.text for c in ref]
    assert [c["finish_reason"] for c in out["completions"]] == [c.finish_reason for c in ref]
    assert all(set(c) == {"text", "finish_reason", "logprob", "score"} for c in out["completions"])


def test_num_samples_are_separated_on_stdout(tiny_bundle):
    r = CliRunner().invoke(cli, ["generate", "The ", "-b", str(tiny_bundle), "--num-samples",
                                 "2", "--seed", "4", "-n", "30"])
    assert r.exit_code == 0, r.output
    from charwright.runtime import SamplingConfig, load

    texts = load(tiny_bundle).generate_batch(["The "] * 2, 30, SamplingConfig(temperature=0.8,
                                                                               seed=4))
    assert r.stdout == (f"--- sample 1 of 2 ---\nThe {texts[0]}\n"
                        f"--- sample 2 of 2 ---\nThe {texts[1]}\n")


def test_beam_output_json_has_the_samples_shape(tiny_bundle):
    r = CliRunner().invoke(cli, ["generate", "The ", "-b", str(tiny_bundle), "--beam", "3",
                                 "-n", "10", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    from charwright.runtime import load

    ref = load(tiny_bundle).beam_search("The ", 10, width=3)
    assert out["chain"] == "beam(width=3, length_penalty=1)" and out["seed"] is None
    assert [c["text"] for c in out["completions"]] == [b.text for b in ref]
    assert [c["logprob"] for c in out["completions"]] == [b.logprob for b in ref]
    assert set(out["completions"][0]) == {"text", "finish_reason", "logprob", "score"}
    r = CliRunner().invoke(cli, ["generate", "The ", "-b", str(tiny_bundle), "--beam", "2",
                                 "-n", "10"])
    ref = load(tiny_bundle).beam_search("The ", 10, width=2)
    assert r.stdout.splitlines()[0] == (f"--- beam 1 of 2: logprob {ref[0].logprob:.3f}, "
                                        f"score {ref[0].score:.4f} ---")


@pytest.mark.litert
@pytest.mark.parametrize("backend", ["numpy", "litert", "onnx"])
def test_every_backend_prints_the_library_text(tiny_bundle, backend):
    from charwright.runtime import SamplingConfig, load

    expected = load(tiny_bundle, backend=backend, precision="float32").generate(
        "The ", 40, SamplingConfig(temperature=0.7, top_k=5, seed=9))
    r = CliRunner().invoke(cli, ["generate", "The ", "-b", str(tiny_bundle), "--backend",
                                 backend, "--precision", "float32", "--temperature", "0.7",
                                 "--top-k", "5", "--seed", "9", "-n", "40"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "The " + expected + "\n"


def test_temperature_zero_is_greedy(tiny_bundle):
    args = ["generate", "The ", "-b", str(tiny_bundle), "-n", "40"]
    greedy = CliRunner().invoke(cli, args + ["--greedy"])
    zero = CliRunner().invoke(cli, args + ["--temperature", "0", "--seed", "3"])
    assert greedy.exit_code == zero.exit_code == 0
    assert zero.stdout == greedy.stdout


@pytest.mark.parametrize("args,message", [
    (["--beam", "3", "--seed", "1"], "--beam is deterministic and does not take --seed"),
    (["--beam", "3", "--stop", "x", "--num-samples", "2"],
     "--beam is deterministic and does not take --stop, --num-samples"),
    (["--beam", "3", "--greedy", "--temperature", "0.5"],
     "--beam is deterministic and does not take --temperature, --greedy"),
    (["--beam", "3", "-n", "0"], "--beam needs -n/--max-chars >= 1"),
    (["--beam", "1000000000"], "Invalid value for '--beam': 1000000000 is not in the range 1<=x<=256."),
    (["--length-penalty", "2"], "--length-penalty ranks beams: it needs --beam"),
    (["--beam", "2", "--length-penalty", "1e308"],
     "Invalid value for '--length-penalty': 1e+308 is not in the range -10<=x<=10."),
    (["--seed", "-1"], "Invalid value for '--seed': -1 is not in the range 0<=x<=9223372036854775807."),
    (["--temperature", "1e-39"], "temperature 1e-39: must be 0 (greedy) or between 0.0001 and 1000"),
])
def test_refused_combinations_and_values_are_usage_errors(tiny_bundle, args, message):
    r = CliRunner().invoke(cli, ["generate", "The", "-b", str(tiny_bundle), *args])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines()[-1] == "Error: " + message
    assert r.stdout == ""


def test_help_shows_the_stop_example_as_typed():
    r = CliRunner().invoke(cli, ["generate", "--help"], env={"COLUMNS": "100"})
    assert 'charwright generate "KING" --greedy --stop "\\n\\n"' in r.stdout


@pytest.mark.parametrize("args,exit_code,message", [
    (["--temperature", "-1"], 2, "Invalid value for '--temperature': -1.0 is not in the range 0<=x<=1000."),
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
        "sys.exit(main())\n"
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


def _with_defaults(tmp_path, bundle, defaults):
    import shutil

    d = tmp_path / "b"
    shutil.copytree(bundle, d)
    m = json.loads((d / "manifest.json").read_text())
    m["sampling_defaults"] = defaults
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def test_the_bundles_sampling_defaults_apply_unless_given(tmp_path, tiny_bundle):
    d = _with_defaults(tmp_path, tiny_bundle, {"temperature": 0.5, "top_k": 0, "top_p": 0.9})
    r = CliRunner().invoke(cli, ["generate", "The ", "-b", str(d), "--seed", "2", "-v"])
    assert r.exit_code == 0, r.output
    # top_k 0 is how charwright 0.1 wrote "off"
    assert "logits -> temperature(0.5) -> top-p(0.9) -> categorical(seed=2)" in r.stderr
    r = CliRunner().invoke(cli, ["generate", "The ", "-b", str(d), "--seed", "2", "-v",
                                 "--temperature", "1.5", "--top-p", "1"])
    assert "logits -> temperature(1.5) -> categorical(seed=2)" in r.stderr
    d = _with_defaults(tmp_path / "x", tiny_bundle, {"temperature": -3})
    r = CliRunner().invoke(cli, ["generate", "The ", "-b", str(d)])
    assert r.exit_code == 1 and r.stderr.strip().endswith(
        "manifest.json: sampling_defaults: temperature -3: must be 0 (greedy) or between "
        "0.0001 and 1000")
