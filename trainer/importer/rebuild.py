"""The parsed model in charwright's terms: ids permuted to charwright's vocabulary (reserved
ids dropped, see importer/vocab.py), rebuilt as charwright's own Keras sequence model, and
that rebuild checked against the original."""

from __future__ import annotations

import numpy as np

from charwright.runtime.sampling.processors import log_softmax

from charwright.trainer.config import ModelConfig
from charwright.trainer.finalize import LN2
from charwright.trainer.importer.archive import ImportRefused
from charwright.trainer.importer.vocab import ImportedVocab
from charwright.trainer.network import build_sequence_model


def to_charwright(parsed: dict, iv: ImportedVocab, source: str) -> tuple[ModelConfig, dict]:
    """(ModelConfig, weights.npz arrays) in charwright ids; refuses a vocabulary mismatch."""
    w, b = parsed["dense"]
    V_model = w.shape[1]
    if V_model != iv.entries:
        raise ImportRefused(f"{source}: the output layer gives {V_model} logits, the vocabulary "
                            f"holds {iv.entries} entries; they must be the same size (is this "
                            "the model's vocabulary?)")
    if parsed["input_dim"] < iv.entries:
        raise ImportRefused(f"{source}: the input takes {parsed['input_dim']} ids, the "
                            f"vocabulary holds {iv.entries} entries")
    if parsed["mask_zero"] and 0 not in iv.reserved:
        raise ImportRefused(f"layer {parsed['names'][0]!r} (Embedding): mask_zero=True skips id "
                            f"0, which is a character of the vocabulary; that changes results")
    ids = iv.model_ids
    n = iv.vocab.size
    weights = dict(parsed["weights"])
    if parsed["one_hot"]:
        weights["embedding"] = np.eye(n, dtype=np.float32)
        weights["layer0.kernel"] = weights["layer0.kernel"][ids]
        E = 0
    else:
        weights["embedding"] = parsed["embedding"][ids]
        E = weights["embedding"].shape[1]
    weights["dense.kernel"] = w[:, ids]
    weights["dense.bias"] = b[ids]
    cfg = ModelConfig.from_stack(parsed["specs"], embedding_dim=E, vocab_size=n)
    return cfg, {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}


def rebuild(cfg: ModelConfig, weights: dict):
    """charwright's Keras sequence model holding `weights` (the reference)."""
    model = build_sequence_model(cfg)
    model.get_layer("embedding").set_weights([weights["embedding"]])
    for i in range(cfg.layers):
        model.get_layer(f"rnn_{i}").set_weights([weights[f"layer{i}.{k}"] for k in
                                                 ("kernel", "recurrent_kernel", "bias")])
    model.get_layer("logits").set_weights([weights["dense.kernel"], weights["dense.bias"]])
    return model


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def check_against_original(original, ref, iv: ImportedVocab, ids: np.ndarray,
                           softmax: bool) -> float:
    """max |Δ probability| between the original model (fed model ids; its reserved ids'
    probability removed and the rest renormalised) and the rebuild, over `ids`."""
    model_ids = iv.model_ids[ids][None, :].astype(np.int32)
    got = np.asarray(original(model_ids, training=False))
    if isinstance(got, (list, tuple)):
        got = got[0]
    got = np.asarray(got, np.float64)[0]
    if got.shape[-1] != iv.entries:
        raise ImportRefused(f"the model's output has {got.shape[-1]} values per character, "
                            f"the vocabulary {iv.entries}")
    p = got if softmax else _softmax(got)
    p = p[:, iv.model_ids]
    p = p / p.sum(-1, keepdims=True)
    q = _softmax(np.asarray(ref(ids[None, :], training=False))[0])
    return float(np.max(np.abs(p - q)))


def bits_per_char(logits: np.ndarray, tokens: np.ndarray) -> float | None:
    """Bits/char of the probe text under the reference: predicting tokens[i+1] from logits[i]."""
    if len(tokens) < 2:
        return None
    logp = log_softmax(logits[:-1])
    return float(-logp[np.arange(len(tokens) - 1), tokens[1:]].mean() / LN2)
