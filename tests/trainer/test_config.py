"""Configuration values: integers are integers, floats are finite, ranges hold."""

import math

import pytest

from charwright.runtime.errors import ConfigError
from charwright.trainer.config import ModelConfig, TrainConfig


@pytest.mark.parametrize("kw,msg", [
    ({"learning_rate": math.inf}, r"learning_rate=inf: must be a finite number"),
    ({"learning_rate": math.nan}, r"learning_rate=nan: must be a finite number"),
    ({"clipnorm": float("1e400")}, r"clipnorm=inf: must be a finite number"),
    ({"val_fraction": "0.1"}, r"val_fraction='0.1': must be a number"),
    ({"epochs": 3.0}, r"epochs=3.0: must be an integer"),
    ({"epochs": True}, r"epochs=True: must be an integer"),
    ({"seed": -1}, r"seed=-1: use 0..4294967295"),
    ({"seed": 2**40}, r"seed=1099511627776: use 0..4294967295"),
    ({"batch_size": 10**9}, r"batch_size=1000000000: use 1..65536"),
    ({"probe_chars": 0}, r"probe_chars=0: use 1..10000000"),
    ({"mode": None}, r"mode None: use one of windows, stateful, lines"),
])
def test_train_config_rejects(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        TrainConfig(**kw)


@pytest.mark.parametrize("kw,msg", [
    ({"units": 12.5}, r"units=12.5: must be an integer"),
    ({"dropout": math.nan}, r"dropout=nan: must be a finite number"),
    ({"dropout": 1.0}, r"dropout=1.0: use 0 <= dropout < 1"),
    ({"layers": 0}, r"layers=0: use 1..8"),
    ({"cell": ["gru"]}, r"cell \['gru'\]: use one of gru, lstm, rnn"),
])
def test_model_config_rejects(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        ModelConfig(**kw)
