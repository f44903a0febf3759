"""What a run trains on, worked out before RUN_DIR is touched: the corpus read, encoded and cut
into training and validation data (a new run), or a saved run's configuration, vocabulary and
progress checked against the corpus given again (--resume).

Every check here can fail on the input alone, so a bad corpus or option costs nothing and
destroys nothing; train.py locks and writes RUN_DIR only after these have passed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from charwright.runtime.errors import ConfigError, CorpusError, RunDirError
from charwright.runtime.vocab import Vocabulary

from charwright.trainer import checkpoint as ckpt
from charwright.trainer.callbacks import loop_state
from charwright.trainer.config import ModelConfig, TrainConfig, config_from_dict
from charwright.trainer.corpus import read_corpus
from charwright.trainer.data import make_data, split_ids


@dataclass
class Prepared:
    """The corpus, cut for training: everything checked before RUN_DIR is touched."""

    corpus: object
    vocab: Vocabulary
    train_ids: np.ndarray
    val_ids: np.ndarray
    data: object


def prepare(corpus_paths, train_cfg: TrainConfig, vocab: Vocabulary | None) -> Prepared:
    """The corpus read, encoded with `vocab` (None: the corpus's own) and split; in line mode
    the split falls on a line boundary."""
    corpus = read_corpus(corpus_paths)
    lines = train_cfg.mode == "lines"
    vocab = vocab or Vocabulary.from_text(corpus.text, eos=lines)
    if vocab.size < 2:
        raise CorpusError(f"the corpus holds a single distinct character "
                          f"({''.join(vocab.chars)!r}); a model needs at least two to choose "
                          "between: give a real text")
    ids = vocab.encode(corpus.text)
    if lines:  # split on a line boundary
        train_ids, _ = split_ids(ids, train_cfg.val_fraction, 2)
        eos_pos = np.flatnonzero(train_ids == vocab.eos_id)
        if len(eos_pos) == 0:
            raise CorpusError("line mode needs a corpus of several lines")
        cut = int(eos_pos[-1])
        train_ids, val_ids = ids[:cut], ids[cut:]
    else:
        train_ids, val_ids = split_ids(ids, train_cfg.val_fraction, train_cfg.seq_len + 1)
    data = make_data(train_cfg.mode, train_ids, val_ids, train_cfg.seq_len, train_cfg.batch_size,
                     train_cfg.seed, vocab.eos_id)
    return Prepared(corpus, vocab, train_ids, val_ids, data)


def prepare_new(corpus_paths, model_cfg: ModelConfig | None, train_cfg: TrainConfig | None):
    """(model_cfg, train_cfg, Prepared) of a new run: the defaults filled in, the vocabulary
    size taken from the corpus and the stack recorded (one spec per layer: run format 2)."""
    model_cfg = model_cfg or ModelConfig()
    train_cfg = train_cfg or TrainConfig()
    prep = prepare(corpus_paths, train_cfg, None)
    model_cfg = replace(model_cfg, vocab_size=prep.vocab.size,
                        stack=tuple(model_cfg.layer_specs()))
    return model_cfg, train_cfg, prep


def prepare_resume(run_dir: Path, run: dict, epochs: int | None, corpus_paths, same_files: str):
    """(model_cfg, train_cfg, epochs done, Prepared) of the run to resume: its own
    configuration (with `epochs`, a new total), vocabulary and corpus (`corpus_paths`, else the
    paths it recorded), which must be the one it was trained on (`same_files` says what to do
    when it is not)."""
    model_cfg, train_cfg, done = resume_config(run_dir, run, epochs)
    corpus_paths = corpus_paths or run["corpus"]["paths"]
    prep = prepare(corpus_paths, train_cfg, Vocabulary.load(run_dir / "vocab.json"))
    if run["corpus"]["sha256"] != prep.corpus.sha256:
        raise CorpusError("the corpus differs from the one this run was trained on (sha256 "
                          f"mismatch); {same_files}")
    return replace(model_cfg, vocab_size=prep.vocab.size), train_cfg, done, prep


def _check_trained(run_dir: Path, run: dict) -> None:
    if not isinstance(run.get("train"), dict):
        raise RunDirError(f"{run_dir}: this run was imported (charwright import), not trained "
                          "by charwright; there is nothing to resume")


def _check_extends(epochs: int, done: int) -> None:
    if epochs < done:
        raise ConfigError(f"--epochs {epochs}: the run has already done {done} epochs; pass "
                          f"more than {done} to train further")


def nothing_to_do(run_dir: Path, run: dict, epochs: int | None) -> int | None:
    """The epochs done where --resume (with `epochs`, None: the run's own total) has nothing
    left to do: a complete run that `epochs` does not extend. None where there is work."""
    _check_trained(run_dir, run)
    if run.get("status") != "complete":
        return None
    done = ckpt.epochs_done(run_dir)
    if epochs is None or epochs == done:
        return done
    _check_extends(epochs, done)
    return None


def resume_config(run_dir: Path, run: dict, epochs: int | None):
    """(model_cfg, train_cfg, epochs done) of the run to resume, with `epochs` to extend it.

    A run whose epochs are all done but which is not complete (killed while it recorded the
    step graph and probe) resumes too: only its finalize is left."""
    _check_trained(run_dir, run)
    model_cfg = config_from_dict(ModelConfig, run["model"])
    train_cfg = config_from_dict(TrainConfig, run["train"])
    done = ckpt.epochs_done(run_dir)
    if epochs is None:
        return model_cfg, train_cfg, done
    _check_extends(epochs, done)
    return model_cfg, replace(train_cfg, epochs=epochs), done


def saved_loop(run_dir: Path, train_cfg: TrainConfig) -> dict:
    """The loop position of the newest checkpoint, for a run whose epochs are all done."""
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None:
        raise RunDirError(f"{run_dir}: no checkpoint to finish the run from; the run is damaged")
    loop = dict(loop_state(ckpt.read_state(latest)), epochs=train_cfg.epochs)
    if not loop.get("history") or not (run_dir / "best.weights.h5").is_file():
        raise RunDirError(f"{run_dir / 'best.weights.h5'}: missing; the run is damaged")
    return loop
