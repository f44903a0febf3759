"""Model and training configuration: frozen dataclasses, validated when built, saved in run.json."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from charwright.runtime.errors import ConfigError

CELLS = ("gru", "lstm", "rnn")
DATA_MODES = ("windows", "stateful", "lines")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _int(name: str, value, lo: int, hi: int) -> None:
    """An integer (not a bool, not 3.0) in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r}: must be an integer")
    _check(lo <= value <= hi, f"{name}={value}: use {lo}..{hi}")


def _float(name: str, value, rule: str, ok) -> None:
    """A finite number for which ok(value) holds (NaN and inf, e.g. JSON's 1e400, never do)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}={value!r}: must be a number")
    _check(math.isfinite(value), f"{name}={value}: must be a finite number ({rule})")
    _check(ok(value), f"{name}={value}: use {rule}")


@dataclass(frozen=True)
class ModelConfig:
    """The sequence model: Embedding (or one-hot) -> layers x cell -> Dense logits.

    Attributes:
        cell: "gru", "lstm" or "rnn" (Keras SimpleRNN).
        layers: number of stacked recurrent layers (1..8).
        units: hidden units per recurrent layer.
        embedding_dim: size of the character embedding; 0 means one-hot input (an identity
            embedding that is not trained).
        dropout: dropout rate after each recurrent layer during training (0 disables it).
        vocab_size: number of ids (filled in from the corpus vocabulary).
    """

    cell: str = "gru"
    layers: int = 1
    units: int = 512
    embedding_dim: int = 64
    dropout: float = 0.0
    vocab_size: int = 0

    def __post_init__(self):
        _check(isinstance(self.cell, str) and self.cell in CELLS,
               f"cell {self.cell!r}: use one of {', '.join(CELLS)}")
        _int("layers", self.layers, 1, 8)
        _int("units", self.units, 1, 8192)
        _int("embedding_dim", self.embedding_dim, 0, 8192)
        _float("dropout", self.dropout, "0 <= dropout < 1", lambda v: 0.0 <= v < 1.0)
        _int("vocab_size", self.vocab_size, 0, 1 << 24)

    @property
    def state_parts(self) -> int:
        """Vectors of `units` per layer in the flat state: h (GRU, RNN) or h and c (LSTM)."""
        return 2 if self.cell == "lstm" else 1

    @property
    def state_size(self) -> int:
        return self.layers * self.state_parts * self.units

    def state_layout(self) -> list[dict]:
        """How the flat state [batch, state_size] splits: one entry per tensor, in order."""
        out, offset = [], 0
        for i in range(self.layers):
            for part in ("h", "c")[: self.state_parts]:
                out.append({"name": f"layer{i}.{part}", "layer": i, "part": part,
                            "offset": offset, "size": self.units})
                offset += self.units
        return out


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        seq_len: characters per training window (truncated back-propagation length).
        batch_size: windows (or streams) per batch.
        epochs: passes over the training split.
        learning_rate: Adam's learning rate.
        val_fraction: share of the corpus held out as a contiguous tail for validation.
        seed: seeds weight init, window offsets and shuffling (runs are repeatable).
        mode: "windows" (shuffled windows, shifted targets), "stateful" (B equidistant streams,
            state carried across batches, reset each epoch) or "lines" (one sample per line,
            ending in the end-of-sequence symbol, padded and masked).
        checkpoint_every: also checkpoint every N optimizer steps (0: only at epoch ends).
        probe_chars: validation characters recorded with reference logits for parity checks.
        greedy_chars: length of the reference's greedy continuation in the probe.
        sample_chars: characters of the sample generated at the end of each epoch (0: none).
        clipnorm: gradient clipping by global norm (0 disables it).
    """

    seq_len: int = 100
    batch_size: int = 64
    epochs: int = 10
    learning_rate: float = 2e-3
    val_fraction: float = 0.1
    seed: int = 0
    mode: str = "windows"
    checkpoint_every: int = 0
    probe_chars: int = 2000
    greedy_chars: int = 500
    sample_chars: int = 200
    clipnorm: float = 5.0

    def __post_init__(self):
        _int("seq_len", self.seq_len, 2, 100_000)
        _int("batch_size", self.batch_size, 1, 65_536)
        _int("epochs", self.epochs, 1, 100_000)
        _float("learning_rate", self.learning_rate, "0 < lr < 1", lambda v: 0 < v < 1)
        _float("val_fraction", self.val_fraction, "0 < f < 0.5", lambda v: 0 < v < 0.5)
        _int("seed", self.seed, 0, 2**32 - 1)
        _check(isinstance(self.mode, str) and self.mode in DATA_MODES,
               f"mode {self.mode!r}: use one of {', '.join(DATA_MODES)}")
        _int("checkpoint_every", self.checkpoint_every, 0, 10**9)
        _int("probe_chars", self.probe_chars, 1, 10**7)
        _int("greedy_chars", self.greedy_chars, 1, 10**6)
        _int("sample_chars", self.sample_chars, 0, 10**6)
        _float("clipnorm", self.clipnorm, "0 (off) or more", lambda v: v >= 0)


def config_to_dict(cfg) -> dict:
    return asdict(cfg)


def config_from_dict(cls, d: dict):
    """Builds `cls` from a dict, rejecting unknown keys (a typo must not pass silently)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s): {', '.join(unknown)}")
    return cls(**d)
