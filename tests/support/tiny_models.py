"""Tiny corpora, runs and bundles that tests make for themselves (the session fixtures in
tests/conftest.py use these too). Importable by name: tests/support is on sys.path."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_text(n_chars: int, seed: int = 0) -> str:
    """Learnable synthetic English-like text: sentences drawn from a tiny grammar."""
    rng = np.random.default_rng(seed)
    subjects = ["the cat", "a dog", "my friend", "the king", "her brother", "our queen"]
    verbs = ["sees", "likes", "finds", "calls", "keeps", "loves"]
    objects = ["the moon.", "a red apple.", "the old house.", "his sword.", "the sea."]
    out, size = [], 0
    while size < n_chars:
        s = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}"
        s = s[0].upper() + s[1:] + ("\n" if rng.random() < 0.3 else " ")
        out.append(s)
        size += len(s)
    return "".join(out)[:n_chars]


def train_tiny(run_dir: Path, corpus: Path, cell="gru", layers=1, units=24, epochs=2, **kw):
    from charwright.trainer import ModelConfig, TrainConfig
    from charwright.trainer.train import train

    tcfg = dict(seq_len=32, batch_size=16, epochs=epochs, probe_chars=300, greedy_chars=60,
                sample_chars=0, seed=1)
    tcfg.update(kw)
    return train([corpus], run_dir, ModelConfig(cell=cell, layers=layers, units=units,
                                                embedding_dim=8),
                 TrainConfig(**tcfg))


def export_quiet(run_dir: Path, bundle_dir: Path, **kw):
    from charwright.export.writer import export

    return export(run_dir, bundle_dir, **kw)
