"""`--stop` takes escapes as a shell passes them (issue 24 item 5): `--stop "\\n\\n"` typed in bash
is a backslash and an n, twice; charwright turns it into the two newlines it documents, as
llama.cpp does, and `--no-escape` takes the text as typed. Runs on the demo bundle (no
TensorFlow needed)."""

import shlex
import subprocess
import sys

import pytest
from click.testing import CliRunner

from charwright.runtime.cli import cli
from charwright.runtime.errors import ConfigError
from charwright.runtime.commands.escapes import unescape

CLI = [sys.executable, "-m", "charwright.runtime.cli"]
RUN = ["generate", "KING", "--seed", "2", "-n", "300"]  # seed 2: a blank line after 122 chars


def _bash(command: str) -> subprocess.CompletedProcess:
    """command typed into bash after `charwright ` (the process, not CliRunner)."""
    return subprocess.run(" ".join(shlex.quote(c) for c in CLI) + " " + command, shell=True,
                          executable="/bin/bash", capture_output=True, text=True, timeout=120)


def test_the_help_example_stops_at_a_blank_line_as_typed_in_bash():
    free = CliRunner().invoke(cli, RUN)
    assert free.exit_code == 0, free.output
    text = free.stdout[len("KING"):-1]
    cut = text.index("\n\n")
    r = _bash('generate "KING" --seed 2 -n 300 --stop "\\n\\n"')  # what the help shows
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout == "KING" + text[:cut] + "\n"
    # --no-escape: the backslashes are text, which never comes: the run goes its full length
    r = _bash('generate "KING" --seed 2 -n 300 --stop "\\n\\n" --no-escape')
    assert r.returncode == 0 and r.stdout == free.stdout


def test_escaped_and_literal_stops_are_the_same_stop():
    as_typed = CliRunner().invoke(cli, RUN + ["--stop", r"\n\n", "--json"])
    literal = CliRunner().invoke(cli, RUN + ["--stop", "\n\n", "--no-escape", "--json"])
    assert as_typed.exit_code == literal.exit_code == 0, as_typed.output
    assert as_typed.stdout == literal.stdout and '"finish_reason": "stop"' in as_typed.stdout


@pytest.mark.parametrize("typed,meant", [
    (r"\n\n", "\n\n"), (r"a\tb\r", "a\tb\r"), (r"\\n", "\\n"), (r"\"\'", "\"'"),
    (r"\x41\u00e9\u20AC", "Aé€"), (r"\u0000", "\0"), ("no escapes", "no escapes"),
    ("ROMEO:\\n", "ROMEO:\n"),
])
def test_unescape(typed, meant):
    assert unescape(typed) == meant


@pytest.mark.parametrize("typed,message", [
    (r"\q", r"--stop \q: unknown escape \q (at character 0); escapes are \n \t \r \\ \" \' "
            r"\xNN \uNNNN: write \\ for a backslash, or pass --no-escape"),
    ("ab\\", r"--stop ab\: a lone \ at the end (at character 2)"),
    (r"x\x4", r"--stop x\x4: \x takes 2 hex digits, not '4' (at character 1)"),
    (r"\uZZZZ", r"--stop \uZZZZ: \u takes 4 hex digits, not 'ZZZZ' (at character 0)"),
    (r"\ud800", r"--stop \ud800: \ud800 is a UTF-16 surrogate, not a character"),
])
def test_bad_escapes_are_one_line_naming_the_escape(typed, message):
    with pytest.raises(ConfigError) as e:
        unescape(typed)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    r = CliRunner().invoke(cli, ["generate", "KING", "--stop", typed])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1] == "Error: " + str(e.value)


def test_no_escape_without_stop_is_refused():
    r = CliRunner().invoke(cli, ["generate", "KING", "--no-escape"])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines()[-1] == ("Error: --no-escape applies to --stop strings: "
                                                 "give --stop too")


@pytest.mark.parametrize("value", ["1e-300", "0", "0.0099", "100.5"])
def test_repetition_penalty_outside_its_range_is_one_line(value):
    """1e-300 made 1/r overflow float32: ':::::' text and numpy's RuntimeWarning on stderr."""
    r = _bash(f"generate KING -n 20 --seed 1 --repetition-penalty {value}")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1] == (
        f"Error: Invalid value for '--repetition-penalty': {float(value)!r} is not in the "
        "range 0.01<=x<=100.")
    assert "Warning" not in r.stderr and "Traceback" not in r.stderr


def test_repetition_penalty_at_its_bounds_runs_without_warnings():
    for value in ("0.01", "100"):
        r = _bash(f"generate KING -n 40 --seed 1 --repetition-penalty {value}")
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert len(r.stdout) == len("KING") + 40 + 1


@pytest.mark.parametrize("value", [1e-300, 0.001, 101])
def test_the_server_refuses_the_same_penalties_with_400(value):
    """The server builds its SamplingConfig from the request: the same range, HTTP 400."""
    from types import SimpleNamespace

    from charwright.runtime.serve.openai import HTTPError, parse_completion

    served = SimpleNamespace(sampling_defaults={})
    with pytest.raises(HTTPError) as e:
        parse_completion({"prompt": "KING", "repetition_penalty": value}, served, 8)
    assert e.value.status == 400
    assert f"repetition_penalty {value!r}: must be between 0.01 and 100" in str(e.value)
