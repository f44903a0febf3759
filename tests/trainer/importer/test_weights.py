"""trainer.importer.weights: the --stack option of a weights-only import (no TensorFlow here)."""

import pytest

from charwright.runtime.errors import ConfigError
from charwright.trainer.importer.weights import parse_stack_option


def test_stack_option_is_read_bottom_up():
    specs = parse_stack_option("LSTM:64, gru-v1:32,rnn:8")
    assert [(s["cell"], s["units"]) for s in specs] == [("lstm", 64), ("gru", 32), ("rnn", 8)]
    assert specs[1]["reset_after"] is False
    assert parse_stack_option("gru:16")[0]["reset_after"] is True


@pytest.mark.parametrize("text", ["gru", "gru:", "conv:8", "gru:8;lstm:4", ""])
def test_bad_stack_option_is_one_line(text):
    with pytest.raises(ConfigError, match=r"--stack .*: give CELL:UNITS per layer, bottom-up"):
        parse_stack_option(text)
