"""The single-step graph replays the Keras sequence model (GRU, LSTM, SimpleRNN; 1 and 2 layers)."""

import numpy as np
import pytest

pytestmark = pytest.mark.tf


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("embedding_dim", [8, 0])
def test_step_matches_sequence_model(cell, layers, embedding_dim, tmp_path):
    import tensorflow as tf

    from charwright.trainer.config import ModelConfig
    from charwright.trainer.network import build_sequence_model, export_weights
    from charwright.trainer.step_graph import build_step_function, run_steps, save_step_savedmodel

    cfg = ModelConfig(cell=cell, layers=layers, units=16, embedding_dim=embedding_dim,
                      vocab_size=11)
    model = build_sequence_model(cfg)
    rng = np.random.default_rng(0)
    # Keras's own initialisers for the matrices (a realistic, non-chaotic recurrence), random
    # biases: zero-initialised biases would hide a bias bug
    for w in model.weights:
        if "bias" in w.path:
            w.assign(rng.normal(0, 0.5, size=w.shape).astype(np.float32))
    tokens = rng.integers(0, 11, size=120).astype(np.int32)
    ref = np.asarray(model(tokens[None, :]))[0]

    module = build_step_function(export_weights(model, cfg), cfg)
    got, state = run_steps(module.step, tokens, np.zeros((1, cfg.state_size), np.float32))
    assert np.max(np.abs(got - ref)) <= 1e-5
    assert state.shape == (1, cfg.state_size)

    # the SavedModel's serving signature is the same function, with a dynamic batch
    save_step_savedmodel(module, tmp_path / "sm")
    sig = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    assert sorted(sig.structured_outputs) == ["logits", "new_state"]
    batch = rng.integers(0, 11, size=(3, 40)).astype(np.int32)
    ref3 = np.asarray(model(batch))
    s = tf.zeros([3, cfg.state_size])
    for t in range(40):
        out = sig(token=tf.constant(batch[:, t]), state=s)
        s = out["new_state"]
        assert np.max(np.abs(out["logits"].numpy() - ref3[:, t])) <= 1e-5
