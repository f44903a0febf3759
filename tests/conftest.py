"""Shared fixtures: tiny corpora and tiny trained runs, made once per session.

Extras: a test marked `tf` or `litert` skips with a reason when the extra is missing, but under
CI=true it fails instead, so a missing extra can never turn into a green skip.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
# helpers the tests import by name (tiny_models, fakes, bundle_factory, serve_util), wherever a
# test lives; never `from conftest import`: a nested conftest.py takes that module name
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from tiny_models import export_quiet, make_text, train_tiny  # noqa: E402

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


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(make_text(30_000), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_corpus) -> Path:
    """A GRU 24 run, 2 epochs on the tiny corpus (a few seconds)."""
    pytest.importorskip("tensorflow")
    run_dir = tmp_path_factory.mktemp("runs") / "gru"
    train_tiny(run_dir, tiny_corpus)
    return run_dir


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_run) -> Path:
    """Every format and precision of the tiny GRU run."""
    bundle = tmp_path_factory.mktemp("bundles") / "gru"
    export_quiet(tiny_run, bundle)
    return bundle
