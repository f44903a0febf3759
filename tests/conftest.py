"""Shared fixtures: tiny corpora and tiny trained runs, made once per session.

Extras: a test marked `tf` or `litert` skips with a reason when the extra is missing, but under
CI=true it fails instead, so a missing extra can never turn into a green skip.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
# helpers the tests import by name (fakes, bundle_factory, serve_util), wherever a test lives
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
_EXTRAS = {"tf": ("tensorflow", "train"), "litert": ("ai_edge_litert", "litert"),
           "serve": ("starlette", "serve"), "report": ("matplotlib", "report"),
           "micro": ("tflite_micro", "micro")}


def pytest_collection_modifyitems(config, items):
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    for marker, (module, extra) in _EXTRAS.items():
        if importlib.util.find_spec(module) is not None:
            continue
        for item in items:
            if marker in item.keywords:
                reason = f"{module} missing: pip install 'charwright[{extra}]'"
                if in_ci:
                    item.add_marker(pytest.mark.usefixtures("_fail_missing_extra"))
                else:
                    item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def _fail_missing_extra(request):
    pytest.fail("CI=true and a required extra is missing: install .[train,litert,serve,report,micro,dev]")


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


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(make_text(30_000), encoding="utf-8")
    return path


def train_tiny(run_dir: Path, corpus: Path, cell="gru", layers=1, units=24, epochs=2, **kw):
    from charwright.trainer import ModelConfig, TrainConfig
    from charwright.trainer.train import train

    tcfg = dict(seq_len=32, batch_size=16, epochs=epochs, probe_chars=300, greedy_chars=60,
                sample_chars=0, seed=1)
    tcfg.update(kw)
    return train([corpus], run_dir, ModelConfig(cell=cell, layers=layers, units=units,
                                                embedding_dim=8),
                 TrainConfig(**tcfg))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_corpus) -> Path:
    """A GRU 24 run, 2 epochs on the tiny corpus (a few seconds)."""
    pytest.importorskip("tensorflow")
    run_dir = tmp_path_factory.mktemp("runs") / "gru"
    train_tiny(run_dir, tiny_corpus)
    return run_dir


def export_quiet(run_dir: Path, bundle_dir: Path, **kw):
    from charwright.export.writer import export

    return export(run_dir, bundle_dir, **kw)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_run) -> Path:
    """Every format and precision of the tiny GRU run."""
    bundle = tmp_path_factory.mktemp("bundles") / "gru"
    export_quiet(tiny_run, bundle)
    return bundle
