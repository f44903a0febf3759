"""`charwright import`: a Keras model trained elsewhere -> RUN_DIR (format: run_dir.py).

What is accepted: an integer input -> Embedding (or a one-hot CategoryEncoding) -> one or more
GRU (reset_after true or false) / LSTM / SimpleRNN layers, each with its own size and
activations (tanh, sigmoid, relu, linear, hard_sigmoid) -> Dense logits, with Dropout-like
layers anywhere between (identities at inference) and a final softmax (the Dense's activation,
or a Softmax / Activation("softmax") layer) that is dropped: the logits are taken before it.
Sequential or functional, `.keras` or a legacy `.h5`; a weights-only file (the tutorial's
subclassed model has no config) with the stack given as options. Anything else is refused with
one line naming the layer.

The model is rebuilt as charwright's own sequence model from the extracted weights (ids
permuted to charwright's vocabulary, reserved ids dropped: see import_vocab.py), checked
against the original on the probe text, and that rebuild is the reference the probe is
recorded from, on this machine, as at the end of a training run.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable

import numpy as np

from charwright.runtime.files.atomic import atomic_dir, write_json
from charwright.runtime.errors import ConfigError, require
from charwright.runtime.files.locking import hold
from charwright.runtime.files.safefile import sha256_of
from charwright.runtime.version import package_version

from charwright.trainer import run_dir as rd
from charwright.trainer.config import ACTIVATIONS, ModelConfig, config_to_dict, layer_spec
from charwright.trainer.finalize import LN2, step_info
from charwright.trainer.importer.archive import (MAX_RATIO, NOT_SUPPORTED, WHY_REFUSED, ImportRefused,
                             check_model_file)
from charwright.trainer.importer.vocab import ImportedVocab, load_import_vocab, read_text_bounded
from charwright.trainer.network import build_sequence_model, cell_weights
from charwright.trainer.step_graph import build_step_function, run_steps, save_step_savedmodel

RECURRENT = {"GRU": "gru", "LSTM": "lstm", "SimpleRNN": "rnn"}
IDENTITY_LAYERS = ("Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise",
                   "AlphaDropout", "InputLayer")
CHECK_TOLERANCE = 1e-4  # max |Δ probability| between the original model and its rebuild
MAX_PROBE_TEXT_BYTES = 64 << 20  # the probe records 2,000 characters by default


def _refuse(layer, why: str):
    raise ImportRefused(f"layer {layer.name!r} ({type(layer).__name__}): {why}")


def _act_name(keras, fn) -> str:
    name = fn if isinstance(fn, str) else keras.activations.serialize(fn)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    return str(name)


def load_keras_model(path: Path):
    """The model of a .keras or .h5 file (compile=False; Lambda layers stay refused)."""
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as e:  # Keras raises ValueError, TypeError, OSError, KeyError...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: Keras cannot load this model ({first[:200]}); for a "
                          "weights-only file give the stack with --stack") from None


def parse_model(model) -> dict:
    """Walks the model's layers -> {embedding, one_hot, input_dim, specs, cells, dense_w,
    dense_b, softmax, mask_zero, names}. Raises ImportRefused naming the layer."""
    import keras

    layers = list(model.layers)
    if len(getattr(model, "inputs", None) or [None]) != 1:
        raise ImportRefused(f"model {model.name!r} has {len(model.inputs)} inputs; charwright "
                            "imports a single integer input")
    out = {"embedding": None, "one_hot": False, "specs": [], "weights": {}, "dense": None,
           "softmax": None, "mask_zero": False, "names": []}
    stage = "input"  # input -> embedded -> recurrent -> dense -> softmax
    for layer in layers:
        kind = type(layer).__name__
        if kind in IDENTITY_LAYERS:
            continue
        if kind in ("Embedding", "CategoryEncoding"):
            if stage != "input":
                _refuse(layer, "an embedding must come first, before the recurrent layers")
            if kind == "CategoryEncoding":
                if layer.output_mode != "one_hot":
                    _refuse(layer, f"output_mode {layer.output_mode!r}: only one_hot is a "
                            "character input")
                out["one_hot"], out["input_dim"] = True, int(layer.num_tokens)
            else:
                emb = np.asarray(layer.embeddings.numpy(), np.float32)
                out["embedding"], out["input_dim"] = emb, emb.shape[0]
                out["mask_zero"] = bool(getattr(layer, "mask_zero", False))
                out["names"].append(layer.name)
            stage = "embedded"
            continue
        if kind == "Masking":
            _refuse(layer, "masking skips time steps, which changes results; remove it")
        if kind in RECURRENT:
            if stage not in ("embedded", "recurrent"):
                _refuse(layer, "a recurrent layer must follow the embedding" if stage == "input"
                        else "a recurrent layer after the output layer is not supported")
            if not layer.return_sequences:
                _refuse(layer, "return_sequences=False: charwright needs an output for every "
                        "character (set return_sequences=True)")
            if getattr(layer, "go_backwards", False):
                _refuse(layer, "go_backwards=True reads the text backwards; a generator "
                        "cannot")
            cell = layer.cell
            d = {"cell": RECURRENT[kind], "units": int(cell.units),
                 "activation": _act_name(keras, cell.activation)}
            if kind != "SimpleRNN":
                d["recurrent_activation"] = _act_name(keras, cell.recurrent_activation)
            if kind == "GRU":
                d["reset_after"] = bool(cell.reset_after)
            for key in ("activation", "recurrent_activation"):
                if key in d and d[key] not in ACTIVATIONS:
                    _refuse(layer, f"{key} {d[key]!r} is not supported (use "
                            f"{', '.join(ACTIVATIONS)})")
            i = len(out["specs"])
            out["specs"].append(layer_spec(d, f"layer {layer.name!r}"))
            out["weights"].update(cell_weights(cell, i))
            out["names"].append(layer.name)
            stage = "recurrent"
            continue
        if kind == "Dense":
            if stage != "recurrent":
                _refuse(layer, "the Dense output layer must follow the recurrent layers"
                        if stage != "dense" else "a second Dense layer is not supported "
                        "(charwright's output is one Dense layer of logits)")
            act = _act_name(keras, layer.activation)
            if act not in ("linear", "softmax"):
                _refuse(layer, f"activation {act!r}: the output must be logits (linear) or a "
                        "softmax over them")
            w = np.asarray(layer.kernel.numpy(), np.float32)
            b = (np.asarray(layer.bias.numpy(), np.float32) if layer.use_bias
                 else np.zeros(w.shape[1], np.float32))
            out["dense"] = (w, b)
            if act == "softmax":
                out["softmax"] = f"activation='softmax' of Dense {layer.name!r}"
            out["names"].append(layer.name)
            stage = "dense"
            continue
        if kind in ("Softmax", "Activation") and stage == "dense" and out["softmax"] is None:
            act = "softmax" if kind == "Softmax" else _act_name(keras, layer.activation)
            if act == "linear":
                continue
            if act != "softmax":
                _refuse(layer, f"activation {act!r} after the logits: only softmax is handled")
            if kind == "Softmax" and getattr(layer, "axis", -1) not in (-1, 2, [-1]):
                _refuse(layer, f"softmax over axis {layer.axis}, not over the vocabulary")
            out["softmax"] = f"{kind} layer {layer.name!r}"
            continue
        _refuse(layer, WHY_REFUSED.get(kind, NOT_SUPPORTED))
    if stage == "input":
        raise ImportRefused(f"model {model.name!r}: no Embedding (or one-hot) input layer")
    if not out["specs"]:
        raise ImportRefused(f"model {model.name!r}: no recurrent layer (GRU, LSTM, SimpleRNN)")
    if out["dense"] is None:
        raise ImportRefused(f"model {model.name!r}: no Dense output layer after the recurrent "
                            "layers")
    return out


_STACK = re.compile(r"^(gru|gru-v1|lstm|rnn):(\d+)$")


def parse_stack_option(text: str) -> list[dict]:
    """'gru:1024' or 'lstm:64,gru:32' (bottom-up) -> layer specs. gru-v1 = reset_after false."""
    specs = []
    for part in text.split(","):
        m = _STACK.match(part.strip().lower())
        if not m:
            raise ConfigError(f"--stack {text!r}: give CELL:UNITS per layer, bottom-up, "
                              "e.g. gru:1024 or lstm:64,gru:32 (cells gru, gru-v1, lstm, rnn)")
        cell = "gru" if m.group(1) == "gru-v1" else m.group(1)
        d = {"cell": cell, "units": int(m.group(2))}
        if m.group(1) == "gru-v1":
            d["reset_after"] = False
        specs.append(layer_spec(d))
    return specs


def parse_weights_file(path: Path, specs: list[dict]) -> dict:
    """A Keras 3 weights-only file (model.save_weights / ModelCheckpoint(save_weights_only))
    of a model whose config is not saved (the tutorial's subclassed model): its groups are
    matched to `specs` by shape, in order of name (embedding, the recurrent layers, dense)."""
    h5py = require("h5py", "train")
    groups: dict[str, list] = {}
    # the datasets' headers are judged before any is read: Keras stores them uncompressed, so
    # a dataset may claim at most MAX_RATIO x the file's bytes (a chunked, compressed dataset of
    # 2**31 x 8 floats fits in a few kilobytes)
    budget = MAX_RATIO * path.stat().st_size + (1 << 20)
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                nonlocal budget
                if isinstance(obj, h5py.Dataset) and "/vars/" in f"/{name}":
                    head, idx = name.rsplit("/vars/", 1)
                    if obj.dtype.kind not in "fiu" or not idx.isdigit():
                        raise ConfigError(f"{path}: {name} holds {obj.dtype} data; not a Keras "
                                          "weights file")
                    budget -= int(obj.size) * 4
                    if budget < 0:
                        raise ConfigError(f"{path}: {name} declares shape {obj.shape}, more "
                                          "than the file can hold; the file is damaged")
                    groups.setdefault(head, []).append((int(idx), np.asarray(obj, np.float32)))
            f.visititems(visit)
    except OSError as e:
        raise ConfigError(f"{path}: not a Keras weights file ({e})") from None
    arrays = {k: [a for _, a in sorted(v, key=lambda t: t[0])] for k, v in groups.items()}
    natural = lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]  # noqa
    names = sorted(arrays, key=natural)
    emb = [n for n in names if len(arrays[n]) == 1 and arrays[n][0].ndim == 2]
    rec = [n for n in names if n.endswith("/cell") or "cell" in n.split("/")[-1]]
    dense = [n for n in names if n not in rec and n not in emb and len(arrays[n]) == 2
             and arrays[n][0].ndim == 2]
    if len(emb) != 1 or len(dense) != 1:
        raise ConfigError(f"{path}: expected one embedding and one Dense layer's weights, found "
                          f"{len(emb)} and {len(dense)} ({', '.join(names)})")
    if len(rec) != len(specs):
        raise ConfigError(f"{path}: holds {len(rec)} recurrent layers ({', '.join(rec)}), "
                          f"--stack gives {len(specs)}")
    out = {"embedding": arrays[emb[0]][0], "one_hot": False, "specs": specs, "weights": {},
           "softmax": None, "mask_zero": False, "names": [emb[0], *rec, dense[0]]}
    out["input_dim"] = out["embedding"].shape[0]
    prev = out["embedding"].shape[1]
    for i, (name, spec) in enumerate(zip(rec, specs)):
        a = arrays[name]
        G = {"gru": 3, "lstm": 4, "rnn": 1}[spec["cell"]]
        H = spec["units"]
        if len(a) not in (2, 3) or a[0].shape != (prev, G * H) or a[1].shape != (H, G * H):
            raise ConfigError(f"{path}: {name} holds {[x.shape for x in a]}, not a "
                              f"{spec['cell']}:{H} layer over {prev} inputs; check --stack")
        bias = a[2] if len(a) == 3 else np.zeros(
            (2, G * H) if spec["cell"] == "gru" and spec["reset_after"] else (G * H,), np.float32)
        if spec["cell"] == "gru" and bias.shape != ((2, G * H) if spec["reset_after"]
                                                    else (G * H,)):
            raise ConfigError(f"{path}: {name}'s bias {bias.shape} does not fit reset_after="
                              f"{spec['reset_after']} (gru-v1 in --stack is reset_after=False)")
        out["weights"].update({f"layer{i}.kernel": a[0], f"layer{i}.recurrent_kernel": a[1],
                               f"layer{i}.bias": bias})
        prev = H
    w, b = arrays[dense[0]]
    if w.shape[0] != prev:
        raise ConfigError(f"{path}: the Dense layer takes {w.shape[0]} inputs, the last "
                          f"recurrent layer gives {prev}")
    out["dense"] = (w, b)
    return out


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


def import_model(model_path, run_dir, vocab_path, probe_text=None, *, stack: str | None = None,
                 probe_chars: int = 2000, greedy_chars: int = 500, force: bool = False,
                 on_progress: Callable[[dict], None] | None = None) -> dict:
    """Writes RUN_DIR from a Keras model file; returns its run.json.

    Raises:
        ImportRefused: a layer charwright cannot run (named), a vocabulary that does not fit.
        ConfigError: no --probe-text, an unreadable model or vocabulary.
        RunDirError: RUN_DIR holds another run (without force) or files charwright did not write.
    """
    on_progress = on_progress or (lambda ev: None)
    model_path, run_dir = Path(model_path), Path(run_dir)
    if probe_text is None:
        raise ConfigError("give --probe-text FILE: the reference probe is recorded from the "
                          "imported model over a text you choose (a few thousand characters "
                          "like its training text); charwright does not invent one")
    if not model_path.is_file():
        raise ConfigError(f"{model_path}: no such model file")
    iv = load_import_vocab(Path(vocab_path))
    text = read_text_bounded(Path(probe_text), MAX_PROBE_TEXT_BYTES, "--probe-text")
    ids = iv.vocab.encode(text, unknown="skip")
    skipped = len(text) - len(ids)
    if len(ids) < 2:
        raise ConfigError(f"--probe-text {probe_text}: fewer than two of its characters are in "
                          "the model's vocabulary; give a text like the model's training text")
    rd.check_target(run_dir, force)
    weights_only = model_path.name.endswith(".weights.h5") or stack is not None
    if not weights_only:
        check_model_file(model_path)  # the archive's bounds and the config's sizes, first

    tf = require("tensorflow", "train")
    import keras

    if weights_only:
        if stack is None:
            raise ConfigError(f"{model_path} holds weights only (no architecture); give the "
                              "stack with --stack, e.g. --stack gru:1024")
        parsed, original = parse_weights_file(model_path, parse_stack_option(stack)), None
        kind = "keras-weights"
    else:
        original = load_keras_model(model_path)
        parsed = parse_model(original)
        kind = "h5" if model_path.suffix == ".h5" else "keras"
    cfg, weights = to_charwright(parsed, iv, str(model_path))
    on_progress({"event": "parsed", "cell": cfg.cell, "specs": cfg.layer_specs(),
                 "vocab": iv.vocab.size, "skipped": skipped})

    ref = rebuild(cfg, weights)
    check_ids = np.asarray(ids[: min(len(ids), max(probe_chars, 200))], np.int32)
    import_diff = None
    if original is not None:
        import_diff = check_against_original(original, ref, iv, check_ids,
                                             parsed["softmax"] is not None)
        if import_diff > CHECK_TOLERANCE:
            raise ImportRefused(f"{model_path}: the rebuilt model differs from the original by "
                                f"{import_diff:.2e} in probability (over {CHECK_TOLERANCE}); a "
                                "layer behaves in a way charwright does not reproduce")
    module = build_step_function(weights, cfg)
    short = check_ids[:200]
    seq_logits = np.asarray(ref(short[None, :], training=False))[0]
    step_logits, _ = run_steps(module.step, short, np.zeros((1, cfg.state_size), np.float32))
    step_diff = float(np.max(np.abs(seq_logits - step_logits)))

    from charwright.trainer.probe import record_probe

    on_progress({"event": "probe", "chars": int(min(probe_chars, len(ids)))})
    probe = record_probe(ref, module.step, ids, probe_chars, greedy_chars, cfg.state_size, None)
    probe_bpc = _bits_per_char(probe["logits"], probe["tokens"])
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    model_sha = sha256_of(model_path)
    run = {
        "format": rd.RUN_FORMAT, "version": rd.RUN_VERSION, "status": "complete",
        "model": config_to_dict(cfg),
        "train": None,  # not trained by charwright
        "corpus": {"paths": [str(Path(probe_text).resolve())], "sha256": sha,
                   "chars": len(text), "files": [[str(Path(probe_text).resolve()), sha]],
                   "train_chars": int(len(ids)), "val_chars": 0,
                   "role": "the probe text (the model's training corpus is unknown)"},
        "state_layout": cfg.state_layout(),
        "created_by": {"charwright": package_version(), "tensorflow": tf.__version__,
                       "keras": keras.__version__},
        "import": {"source": str(model_path.resolve()), "sha256": model_sha, "kind": kind,
                   "layers": parsed["names"], "softmax_output": parsed["softmax"],
                   "one_hot": parsed["one_hot"], "mask_zero": parsed["mask_zero"],
                   "vocab": iv.describe(), "probe_text_skipped_chars": skipped,
                   "import_check_max_abs_prob_diff": import_diff},
        "summary": {"epochs": None, "optimizer_steps": None, "best_epoch": None,
                    "best_val_loss": None, "best_val_bpc": None, "final_train_bpc": None,
                    "probe_bpc": probe_bpc, "device": str(probe["device"]),
                    "step_check_max_abs_diff": step_diff, "tensorflow": tf.__version__},
    }
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with hold(run_dir.parent / f".{run_dir.name}.lock", str(run_dir), ConfigError, remove=True):
        rd.check_target(run_dir, force)  # again, under the lock
        with atomic_dir(run_dir, replace=run_dir.exists()) as tmp:
            write_json(tmp / "vocab.json", iv.vocab.to_dict())
            (tmp / "step").mkdir()
            save_step_savedmodel(module, tmp / "step" / "saved_model")
            np.savez(tmp / "step" / "weights.npz", **weights)
            write_json(tmp / "step" / "step.json", step_info(cfg, iv.vocab.size, step_diff))
            np.savez(tmp / "probe.npz", **probe)
            write_json(tmp / "run.json", run)
    on_progress({"event": "done", "run_dir": str(run_dir), **run["summary"],
                 "import_diff": import_diff})
    return run


def _bits_per_char(logits: np.ndarray, tokens: np.ndarray) -> float | None:
    """Bits/char of the probe text under the reference: predicting tokens[i+1] from logits[i]."""
    if len(tokens) < 2:
        return None
    z = logits[:-1].astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-logp[np.arange(len(tokens) - 1), tokens[1:]].mean() / LN2)
