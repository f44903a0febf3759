"""Model and training configuration: frozen dataclasses, validated when built, saved in run.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from charwright.runtime.errors import ConfigError

CELLS = ("gru", "lstm", "rnn")
DATA_MODES = ("windows", "stateful", "lines")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


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
        _check(self.cell in CELLS, f"cell {self.cell!r}: use one of {', '.join(CELLS)}")
        _check(1 <= self.layers <= 8, f"layers={self.layers}: use 1..8")
        _check(1 <= self.units <= 8192, f"units={self.units}: use 1..8192")
        _check(0 <= self.embedding_dim <= 8192, f"embedding_dim={self.embedding_dim}: use 0..8192")
        _check(0.0 <= self.dropout < 1.0, f"dropout={self.dropout}: use 0 <= dropout < 1")
        _check(self.vocab_size >= 0, f"vocab_size={self.vocab_size} must not be negative")

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
        _check(2 <= self.seq_len <= 100_000, f"seq_len={self.seq_len}: use 2..100000")
        _check(1 <= self.batch_size <= 65_536, f"batch_size={self.batch_size}: use 1..65536")
        _check(1 <= self.epochs <= 100_000, f"epochs={self.epochs}: use at least 1")
        _check(0 < self.learning_rate < 1, f"learning_rate={self.learning_rate}: use 0 < lr < 1")
        _check(0 < self.val_fraction < 0.5, f"val_fraction={self.val_fraction}: use 0 < f < 0.5")
        _check(self.mode in DATA_MODES, f"mode {self.mode!r}: use one of {', '.join(DATA_MODES)}")
        _check(self.checkpoint_every >= 0, "checkpoint_every must be >= 0")
        _check(self.probe_chars >= 1, "probe_chars must be >= 1")
        _check(self.greedy_chars >= 1, "greedy_chars must be >= 1")
        _check(self.sample_chars >= 0, "sample_chars must be >= 0")
        _check(self.clipnorm >= 0, "clipnorm must be >= 0")


def config_to_dict(cfg) -> dict:
    return asdict(cfg)


def config_from_dict(cls, d: dict):
    """Builds `cls` from a dict, rejecting unknown keys (a typo must not pass silently)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s): {', '.join(unknown)}")
    return cls(**d)
