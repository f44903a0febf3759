"""Training runs end to end on tiny corpora: run directory, modes, refusals."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tiny_models import train_tiny

from charwright.runtime.errors import ConfigError, CorpusError, RunDirError

pytestmark = pytest.mark.tf


def test_run_directory_contents(tiny_run):
    run = json.loads((tiny_run / "run.json").read_text())
    assert run["status"] == "complete"
    assert run["summary"]["epochs"] == 2
    hist = json.loads((tiny_run / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    # steps from the corpus size alone: windows of seq_len 32 at stride 32, batches of 16
    steps = ((run["corpus"]["train_chars"] - 32) // 32) // 16
    assert [h["steps"] for h in hist] == [steps, steps]
    assert [h["optimizer_steps"] for h in hist] == [steps, 2 * steps]
    assert hist[1]["val_bpc"] < hist[0]["train_bpc"]  # it learned something
    assert (tiny_run / "history.csv").read_text().startswith("epoch,")
    # the recorded validation loss is what the best weights score on the validation tail,
    # computed here independently (float64 log-softmax over the Keras model's logits)
    from charwright.runtime.vocab import Vocabulary
    from charwright.trainer import ModelConfig
    from charwright.trainer.network import build_sequence_model

    text = "".join(open(f[0], encoding="utf-8").read() for f in run["corpus"]["files"])
    ids = Vocabulary.load(tiny_run / "vocab.json").encode(text)[run["corpus"]["train_chars"]:]
    n = (len(ids) - 1) // 32
    x = np.stack([ids[i * 32:(i + 1) * 32] for i in range(n)])
    y = np.stack([ids[i * 32 + 1:(i + 1) * 32 + 1] for i in range(n)])
    model = build_sequence_model(ModelConfig(**run["model"]))
    model.load_weights(str(tiny_run / "best.weights.h5"))
    z = np.asarray(model(x), np.float64)
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    val_loss = -np.take_along_axis(logp, y[..., None], -1).mean()
    best = hist[run["summary"]["best_epoch"] - 1]
    assert best["val_loss"] == pytest.approx(val_loss, rel=1e-4)  # float32 sums, any BLAS
    assert best["val_bpc"] == pytest.approx(val_loss / np.log(2), rel=1e-4)
    assert run["summary"]["best_val_bpc"] == pytest.approx(val_loss / np.log(2), rel=1e-4)
    step = json.loads((tiny_run / "step" / "step.json").read_text())
    assert [i["name"] for i in step["inputs"]] == ["token", "state"]
    assert [o["name"] for o in step["outputs"]] == ["logits", "new_state"]
    assert step["state_size"] == 24 and step["step_check_max_abs_diff"] <= 1e-5
    assert (tiny_run / "step" / "saved_model" / "saved_model.pb").is_file()
    with np.load(tiny_run / "probe.npz", allow_pickle=False) as p:
        assert p["tokens"].shape == (300,) and p["logits"].shape == (300, run["model"]["vocab_size"])
        assert p["greedy"].shape == (60,) and p["prompt"].shape == (100,)
        assert str(p["device"]).startswith(("CPU", "GPU"))
        assert p["tf32"].shape == () and not p["tf32"]
    vocab = json.loads((tiny_run / "vocab.json").read_text())
    assert vocab["size"] == run["model"]["vocab_size"]
    assert not list(tiny_run.rglob("*.tmp*"))  # no temp left behind
    from charwright.trainer.run_dir import ENTRIES

    assert {p.name for p in tiny_run.iterdir()} <= set(ENTRIES)  # the format lists them all


def test_probe_logits_are_the_reference_models(tiny_run):
    """Replaying the probe through the saved step graph gives the recorded logits."""
    import tensorflow as tf

    from charwright.trainer.step_graph import run_steps

    sig = tf.saved_model.load(str(tiny_run / "step" / "saved_model")).signatures["serving_default"]
    with np.load(tiny_run / "probe.npz", allow_pickle=False) as p:
        tokens, logits = p["tokens"][:80], p["logits"][:80]
    got, _ = run_steps(lambda token, state: sig(token=token, state=state), tokens,
                       np.zeros((1, 24), np.float32))
    assert np.max(np.abs(got - logits)) <= 1e-5  # two float32 paths: ~20x margin over ~5e-7


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


def test_force_keeps_the_old_run_until_the_new_one_can_start(tmp_path, tiny_run):
    d = tmp_path / "r"
    shutil.copytree(tiny_run, d)
    before = sorted(p.relative_to(d).as_posix() for p in d.rglob("*"))
    from charwright.trainer import ModelConfig, TrainConfig
    from charwright.trainer.train import train

    with pytest.raises(CorpusError, match="corpus file not found: .*typo.txt"):
        train([tmp_path / "typo.txt"], d, ModelConfig(units=8), TrainConfig(epochs=1), force=True)
    short = tmp_path / "short.txt"
    short.write_text("to be or not to be")
    with pytest.raises(CorpusError, match="corpus too short"):
        train([short], d, ModelConfig(units=8), TrainConfig(epochs=1), force=True)
    assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*")) == before
    (d / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match=r"holds files charwright did not write \(notes.txt\)"):
        train([tiny_run / "vocab.json"], d, ModelConfig(units=8), TrainConfig(epochs=1),
              force=True)
    assert (d / "notes.txt").read_text() == "mine" and (d / "run.json").is_file()


def test_one_character_corpus_and_failed_start(tmp_path, tiny_corpus):
    p = tmp_path / "a.txt"
    p.write_text("a" * 5000)
    with pytest.raises(CorpusError, match=r"a single distinct character \('a'\); a model needs "
                                          "at least two"):
        train_tiny(tmp_path / "r", p)
    assert not (tmp_path / "r").exists()
    # a run that stopped before its first checkpoint (a crash, kill -9) does not block a re-run
    d = tmp_path / "crashed"
    d.mkdir()
    (d / "run.json").write_text(json.dumps({"format": "charwright-run", "version": 1,
                                            "status": "training"}))
    (d / "vocab.json").write_text("{}")
    run = train_tiny(d, tiny_corpus, epochs=1, units=8)
    assert run["status"] == "complete"


def test_resume_extends_a_finished_run_without_warnings(tmp_path, tiny_corpus):
    import warnings

    from charwright.trainer.train import train

    d = tmp_path / "r"
    train_tiny(d, tiny_corpus, epochs=1, units=8)
    before = (d / "run.json").read_text()
    events = []
    # a complete run that no --epochs extends: nothing to do (idempotent, for restart loops)
    assert train([], d, resume=True, on_progress=events.append)["status"] == "complete"
    assert train([], d, resume=True, epochs=1, on_progress=events.append)["status"] == "complete"
    assert events == [{"event": "nothing_to_do", "run_dir": str(d), "epochs": 1, "of": 1}] * 2
    assert (d / "run.json").read_text() == before
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train([], d, resume=True, epochs=2)
    assert not [str(w.message) for w in caught if "optimizer" in str(w.message)]
    hist = json.loads((d / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2] and run["summary"]["epochs"] == 2
    assert hist[1]["optimizer_steps"] == 2 * hist[0]["steps"]
    assert run["train"]["epochs"] == 2 and run["status"] == "complete"
    with pytest.raises(ConfigError, match="--epochs 1: the run has already done 2 epochs; pass "
                                          "more than 2 to train further"):
        train([], d, resume=True, epochs=1)


def test_resume_refuses_an_imported_run_and_starts_where_there_is_none(tmp_path, tiny_corpus):
    from charwright.trainer import ModelConfig, TrainConfig
    from charwright.trainer.train import train

    d = tmp_path / "imported"
    d.mkdir()
    (d / "run.json").write_text(json.dumps({"format": "charwright-run", "version": 2,
                                            "status": "complete", "train": None}))
    with pytest.raises(RunDirError, match="was imported .*nothing to resume"):
        train([], d, resume=True)
    with pytest.raises(RunDirError, match="nothing to resume: .* holds no run.json"):
        train([], tmp_path / "none", resume=True)
    events = []
    run = train([tiny_corpus], tmp_path / "new", ModelConfig(units=8, embedding_dim=4),
                TrainConfig(seq_len=32, batch_size=16, epochs=1, probe_chars=50, greedy_chars=5,
                            sample_chars=0), resume=True, on_progress=events.append)
    assert run["status"] == "complete" and events[0]["event"] == "new_run"


def test_probe_is_recorded_with_tf32_off(tiny_run):
    """TF32 (on by default on Ampere+ GPUs) is off while the reference is recorded, the probe
    and run.json say so, and the process's setting is put back afterwards."""
    import tensorflow as tf

    from charwright.runtime.vocab import Vocabulary
    from charwright.trainer import ModelConfig
    from charwright.trainer.network import build_sequence_model, export_weights
    from charwright.trainer.probe import record_probe
    from charwright.trainer.step_graph import build_step_function

    run = json.loads((tiny_run / "run.json").read_text())
    assert run["summary"]["tf32"] is False
    with np.load(tiny_run / "probe.npz", allow_pickle=False) as p:
        assert p["tf32"].dtype == np.bool_ and not p["tf32"]
    cfg = ModelConfig(**run["model"])
    model = build_sequence_model(cfg)
    model.load_weights(str(tiny_run / "best.weights.h5"))
    step = build_step_function(export_weights(model, cfg), cfg)
    seen = []
    real_step = step.step

    def spy(token, state):
        seen.append(tf.config.experimental.tensor_float_32_execution_enabled())
        return real_step(token, state)

    ids = Vocabulary.load(tiny_run / "vocab.json").encode("The cat sees the moon. " * 3)
    cfg_tf = tf.config.experimental
    before = cfg_tf.tensor_float_32_execution_enabled()
    try:
        cfg_tf.enable_tensor_float_32_execution(True)
        probe = record_probe(model, spy, ids, 40, 5, cfg.state_size, None)
        assert cfg_tf.tensor_float_32_execution_enabled() is True  # put back
    finally:
        cfg_tf.enable_tensor_float_32_execution(before)
    assert seen and not any(seen) and probe["tf32"] == np.array(False)


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


def test_stateful_mode(tmp_path, tiny_corpus, monkeypatch):
    """State is carried from one batch to the next and reset at each epoch and validation."""
    import keras

    from charwright.trainer import fit as fit_mod

    seen = []  # (phase, epoch, batch, "begin"/"end", |state|, state)

    class Spy(keras.callbacks.Callback):
        epoch = 0

        def _rec(self, phase, batch, when):
            s = np.asarray(self.model.get_layer("rnn_0").states[0]).copy()
            seen.append((phase, self.epoch, batch, when, float(np.abs(s).sum()), s))

        def on_epoch_begin(self, epoch, logs=None):
            Spy.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            self._rec("train", batch, "begin")

        def on_train_batch_end(self, batch, logs=None):
            self._rec("train", batch, "end")

        def on_test_batch_begin(self, batch, logs=None):
            self._rec("val", batch, "begin")

    real = fit_mod.make_callbacks
    monkeypatch.setattr(fit_mod, "make_callbacks",
                        lambda *a, **k: real(*a, **k) + [Spy()])  # after the loop callback
    run = train_tiny(tmp_path / "r", tiny_corpus, units=16, epochs=2, mode="stateful",
                     batch_size=8)
    hist = json.loads((tmp_path / "r" / "history.json").read_text())
    assert hist[1]["val_bpc"] < hist[0]["train_bpc"]
    assert run["summary"]["step_check_max_abs_diff"] <= 1e-5

    train_rows = [r for r in seen if r[0] == "train"]
    firsts = [r for r in train_rows if r[2] == 0 and r[3] == "begin"]
    assert len(firsts) == 2 and all(r[4] == 0.0 for r in firsts)  # reset at each epoch
    later = [r for r in train_rows if r[2] > 0 and r[3] == "begin"]
    assert later and all(r[4] > 0 for r in later)
    for end, begin in zip(train_rows, train_rows[1:]):  # batch k+1 starts where k ended
        if end[3] == "end" and begin[3] == "begin" and begin[2] == end[2] + 1:
            assert np.array_equal(end[5], begin[5])
    val = [r for r in seen if r[0] == "val"]
    assert [r[4] for r in val if r[2] == 0] == [0.0, 0.0]  # reset before each validation
    assert all(r[4] > 0 for r in val if r[2] > 0)


def test_mirrored_strategy_on_two_logical_cpus(tmp_path, tiny_corpus):
    """Mirrored over two logical CPUs (a fresh process: the split must happen before TensorFlow
    starts) gives the same training as one device: the batch is split between the replicas and
    their gradients summed, so the weights agree up to float32 summation order."""
    args = ["--units", "8", "--embedding-dim", "4", "--epochs", "1", "--seq-len", "16",
            "--batch-size", "16", "--sample-chars", "0", "--probe-chars", "50",
            "--greedy-chars", "5", "--seed", "3"]
    out = {}
    for name, extra in (("mirrored", ["--cpu-devices", "2"]), ("single", ["--distribute", "none"])):
        r = subprocess.run(
            [sys.executable, "-m", "charwright.runtime.cli", "train", str(tiny_corpus), "-o",
             str(tmp_path / name), *args, *extra], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        out[name] = r.stderr
    assert "strategy mirrored over 2 devices" in out["mirrored"]
    assert "strategy default" in out["single"]
    h = {n: json.loads((tmp_path / n / "history.json").read_text())[0] for n in out}
    assert h["mirrored"]["optimizer_steps"] == h["single"]["optimizer_steps"]
    assert h["mirrored"]["val_loss"] == pytest.approx(h["single"]["val_loss"], rel=1e-3)
    with np.load(tmp_path / "mirrored" / "step" / "weights.npz") as a, \
            np.load(tmp_path / "single" / "step" / "weights.npz") as b:
        for k in a.files:
            assert np.allclose(a[k], b[k], rtol=1e-3, atol=1e-3), k
