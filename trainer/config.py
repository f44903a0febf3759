"""Model and training configuration: frozen dataclasses, validated when built, saved in run.json."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from charwright.runtime.bundle.architecture import ACTIVATIONS, GATES
from charwright.runtime.errors import ConfigError

CELLS = tuple(GATES)
# activations the step graph, the numpy backend (and the C runtime) implement, as Keras 3
# defines them (hard_sigmoid = relu6(x + 3) / 6)
LAYER_KEYS = ("cell", "units", "reset_after", "activation", "recurrent_activation")
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
    stack: tuple = ()

    def __post_init__(self):
        if self.stack:
            stack = tuple(layer_spec(d, f"stack[{i}]") for i, d in enumerate(self.stack))
            object.__setattr__(self, "stack", stack)
            cells = {d["cell"] for d in stack}
            _check(self.cell == (cells.pop() if len(cells) == 1 else "mixed"),
                   f"cell {self.cell!r} disagrees with the stack (its cells: "
                   f"{', '.join(d['cell'] for d in stack)}); a stack of several kinds is 'mixed'")
            _check(self.layers == len(stack),
                   f"layers={self.layers} but the stack holds {len(stack)} layers")
            _check(self.units == max(d["units"] for d in stack),
                   f"units={self.units} must be the stack's largest layer")
        else:
            _check(isinstance(self.cell, str) and self.cell in CELLS,
                   f"cell {self.cell!r}: use one of {', '.join(CELLS)}")
        _int("layers", self.layers, 1, 64 if self.stack else 8)
        _int("units", self.units, 1, 8192)
        _int("embedding_dim", self.embedding_dim, 0, 8192)
        _float("dropout", self.dropout, "0 <= dropout < 1", lambda v: 0.0 <= v < 1.0)
        _int("vocab_size", self.vocab_size, 0, 1 << 24)

    @classmethod
    def from_stack(cls, stack, embedding_dim: int, vocab_size: int, dropout: float = 0.0):
        """A config from one spec per layer (see layer_spec); cell "mixed" when kinds differ."""
        stack = tuple(layer_spec(d, f"stack[{i}]") for i, d in enumerate(stack))
        _check(len(stack) > 0, "a model needs at least one recurrent layer")
        cells = {d["cell"] for d in stack}
        return cls(cell=cells.pop() if len(cells) == 1 else "mixed", layers=len(stack),
                   units=max(d["units"] for d in stack), embedding_dim=embedding_dim,
                   dropout=dropout, vocab_size=vocab_size, stack=stack)

    def layer_specs(self) -> list[dict]:
        """One spec per layer: the stack when present, else `layers` x the uniform cell with
        Keras's defaults (what charwright's own training builds)."""
        if self.stack:
            return [dict(d) for d in self.stack]
        return [layer_spec({"cell": self.cell, "units": self.units}) for _ in range(self.layers)]

    @property
    def state_parts(self) -> int:
        """Vectors per layer in the flat state of a uniform stack: h (GRU, RNN), h and c (LSTM)."""
        return 2 if self.cell == "lstm" else 1

    @property
    def state_size(self) -> int:
        return sum(d["units"] * (2 if d["cell"] == "lstm" else 1) for d in self.layer_specs())

    def state_layout(self) -> list[dict]:
        """How the flat state [batch, state_size] splits: one entry per tensor, in order."""
        out, offset = [], 0
        for i, d in enumerate(self.layer_specs()):
            for part in ("h", "c")[: 2 if d["cell"] == "lstm" else 1]:
                out.append({"name": f"layer{i}.{part}", "layer": i, "part": part,
                            "offset": offset, "size": d["units"]})
                offset += d["units"]
        return out

    def architecture(self) -> dict:
        """step.json's (and the manifest's) `architecture`: the uniform fields, as before, plus
        `stack`, one spec per layer, which is the truth when present."""
        arch = config_to_dict(self)
        arch["stack"] = self.layer_specs()
        return arch


def layer_spec(d, where: str = "layer") -> dict:
    """One recurrent layer, complete and checked: {cell, units, reset_after, activation,
    recurrent_activation}. Missing keys take Keras 3's defaults (reset_after true, tanh,
    sigmoid); reset_after is null for LSTM and SimpleRNN, recurrent_activation for SimpleRNN."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: must be an object, got {d!r}")
    unknown = sorted(set(d) - set(LAYER_KEYS))
    _check(not unknown, f"{where}: unknown key(s) {', '.join(unknown)}")
    cell = d.get("cell")
    _check(isinstance(cell, str) and cell in CELLS,
           f"{where}.cell {cell!r}: use one of {', '.join(CELLS)}")
    _int(f"{where}.units", d.get("units"), 1, 8192)
    act = d.get("activation", "tanh")
    _check(act in ACTIVATIONS, f"{where}.activation {act!r}: use one of {', '.join(ACTIVATIONS)}")
    out = {"cell": cell, "units": d["units"], "activation": act, "reset_after": None,
           "recurrent_activation": None}
    if cell != "rnn":
        ract = d.get("recurrent_activation", "sigmoid")
        _check(ract in ACTIVATIONS, f"{where}.recurrent_activation {ract!r}: use one of "
               f"{', '.join(ACTIVATIONS)}")
        out["recurrent_activation"] = ract
    if cell == "gru":
        ra = d.get("reset_after", True)
        _check(isinstance(ra, bool), f"{where}.reset_after {ra!r}: must be true or false")
        out["reset_after"] = ra
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
    d = asdict(cfg)
    if "stack" in d:  # JSON-ready: a list of plain dicts (asdict keeps the tuple)
        d["stack"] = [dict(x) for x in d["stack"]]
    return d


def config_from_dict(cls, d: dict):
    """Builds `cls` from a dict, rejecting unknown keys (a typo must not pass silently)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s): {', '.join(unknown)}")
    return cls(**d)
