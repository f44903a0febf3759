"""Training runs end to end on tiny corpora: run directory, modes, refusals."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_text, train_tiny

from charwright.runtime.errors import CorpusError, RunDirError

pytestmark = pytest.mark.tf


def test_run_directory_contents(tiny_run):
    run = json.loads((tiny_run / "run.json").read_text())
    assert run["status"] == "complete"
    assert run["summary"]["epochs"] == 2
    hist = json.loads((tiny_run / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert hist[1]["optimizer_steps"] == 2 * hist[0]["steps"]
    assert hist[1]["val_bpc"] < hist[0]["train_bpc"]  # it learned something
    assert abs(hist[0]["val_bpc"] - hist[0]["val_loss"] / np.log(2)) < 1e-9
    assert (tiny_run / "history.csv").read_text().startswith("epoch,")
    step = json.loads((tiny_run / "step" / "step.json").read_text())
    assert [i["name"] for i in step["inputs"]] == ["token", "state"]
    assert [o["name"] for o in step["outputs"]] == ["logits", "new_state"]
    assert step["state_size"] == 24 and step["step_check_max_abs_diff"] <= 1e-5
    assert (tiny_run / "step" / "saved_model" / "saved_model.pb").is_file()
    with np.load(tiny_run / "probe.npz", allow_pickle=False) as p:
        assert p["tokens"].shape == (300,) and p["logits"].shape == (300, run["model"]["vocab_size"])
        assert p["greedy"].shape == (60,) and p["prompt"].shape == (100,)
        assert str(p["device"]).startswith(("CPU", "GPU"))
    vocab = json.loads((tiny_run / "vocab.json").read_text())
    assert vocab["size"] == run["model"]["vocab_size"]
    assert not list(tiny_run.rglob("*.tmp*"))  # no temp left behind


def test_probe_logits_are_the_reference_models(tiny_run):
    """Replaying the probe through the saved step graph gives the recorded logits."""
    import tensorflow as tf

    from charwright.trainer.step_graph import run_steps

    sig = tf.saved_model.load(str(tiny_run / "step" / "saved_model")).signatures["serving_default"]
    with np.load(tiny_run / "probe.npz", allow_pickle=False) as p:
        tokens, logits = p["tokens"][:80], p["logits"][:80]
    got, _ = run_steps(lambda token, state: sig(token=token, state=state), tokens,
                       np.zeros((1, 24), np.float32))
    assert np.max(np.abs(got - logits)) <= 1e-5


def test_refuses_existing_run_and_foreign_directory(tiny_run, tiny_corpus, tmp_path):
    with pytest.raises(RunDirError, match="already holds a run; pass --resume"):
        train_tiny(tiny_run, tiny_corpus, epochs=1)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    with pytest.raises(RunDirError, match="not empty and holds no charwright run"):
        train_tiny(foreign, tiny_corpus, epochs=1)
    from charwright.trainer import ModelConfig, TrainConfig
    from charwright.trainer.train import train
    with pytest.raises(RunDirError, match="not empty and holds no charwright run"):
        train([tiny_corpus], foreign, ModelConfig(units=8), TrainConfig(epochs=1), force=True)
    assert (foreign / "notes.txt").read_text() == "precious"


def test_force_replaces_a_run(tmp_path, tiny_corpus):
    d = tmp_path / "r"
    train_tiny(d, tiny_corpus, epochs=1, units=8)
    (d / "samples.txt").write_text("old")
    from charwright.trainer import ModelConfig, TrainConfig
    from charwright.trainer.train import train
    run = train([tiny_corpus], d, ModelConfig(units=12, embedding_dim=4),
                TrainConfig(seq_len=32, batch_size=16, epochs=1, probe_chars=50, greedy_chars=5,
                            sample_chars=0), force=True)
    assert run["model"]["units"] == 12 and not (d / "samples.txt").exists()


def test_short_corpus_is_refused(tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("to be or not to be")
    with pytest.raises(CorpusError, match="corpus too short"):
        train_tiny(tmp_path / "r", p)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("rnn", 1)])
def test_other_cells_train(tmp_path, tiny_corpus, cell, layers):
    run = train_tiny(tmp_path / "r", tiny_corpus, cell=cell, layers=layers, units=12, epochs=1)
    assert run["summary"]["step_check_max_abs_diff"] <= 1e-5
    assert run["state_layout"][-1]["offset"] + 12 == (2 if cell == "lstm" else 1) * layers * 12


def test_line_mode(tmp_path):
    rng = np.random.default_rng(0)
    names = ["anna", "bob", "carla", "dmitri", "eve", "fatima", "gus", "hana"]
    p = tmp_path / "names.txt"
    p.write_text("\n".join(rng.choice(names) for _ in range(1500)) + "\n")
    run = train_tiny(tmp_path / "r", p, units=16, epochs=2, seq_len=20, mode="lines")
    vocab = json.loads((tmp_path / "r" / "vocab.json").read_text())
    assert vocab["eos"] is True and "\n" not in vocab["chars"]
    eos = len(vocab["chars"])
    with np.load(tmp_path / "r" / "probe.npz") as pr:
        assert pr["tokens"][0] == eos
        # after the EOS that starts a line the model has learned that names start with a letter
        assert np.argmax(pr["logits"][0]) != eos
    assert run["summary"]["best_val_bpc"] < 3.0


def test_stateful_mode(tmp_path, tiny_corpus):
    run = train_tiny(tmp_path / "r", tiny_corpus, units=16, epochs=2, mode="stateful",
                     batch_size=8)
    hist = json.loads((tmp_path / "r" / "history.json").read_text())
    assert hist[1]["val_bpc"] < hist[0]["train_bpc"]
    assert run["summary"]["step_check_max_abs_diff"] <= 1e-5


def test_mirrored_strategy_on_two_logical_cpus(tmp_path, tiny_corpus):
    """A fresh process (the CPU split must happen before TensorFlow starts)."""
    r = subprocess.run(
        [sys.executable, "-m", "charwright.runtime.cli", "train", str(tiny_corpus), "-o",
         str(tmp_path / "r"), "--units", "8", "--embedding-dim", "4", "--epochs", "1",
         "--seq-len", "16", "--batch-size", "16", "--cpu-devices", "2", "--sample-chars", "0",
         "--probe-chars", "50", "--greedy-chars", "5"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "strategy mirrored over 2 devices" in r.stderr
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["status"] == "complete"
