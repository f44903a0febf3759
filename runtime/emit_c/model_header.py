"""model.h: what the C step needs of a bundle, written only through emit_c.literals.

    sizes            CW_VOCAB, CW_LAYERS, CW_STATE, the widest gates and inputs, the bundle's
                     name and the sha256 of its manifest.json
    sampling         the bundle's sampling defaults (C implements every setting: sampler.h)
    vocabulary       each entry's UTF-8 and byte length (an entry may be U+0000: C prints by length)
    layers           layer 0's folded input table, each layer's matrices and biases, the dense
                     layer; float32, or int8 with one float32 scale per output row
                     (scale = max|row| / 127, an all-zero row gets scale 0); the matrices packed
                     in blocks of 16 rows (pack_rows; runtime/c/kernels.h reads them)
"""

from __future__ import annotations

import hashlib

import numpy as np

from charwright.runtime.bundle.architecture import (GATES, folded_input_table, input_bias,
                                                  recurrent_bias, state_size)
from charwright.runtime.bundle.manifest import show
from charwright.runtime.emit_c.literals import (INT32_MAX, C, Header, floats, ident, ints,
                                                join, lit_double, lit_int, lit_size, lit_string,
                                                struct, wrap)
from charwright.runtime.errors import ConfigError

CELL_IDS = {"gru": "CW_GRU", "lstm": "CW_LSTM", "rnn": "CW_RNN"}
# the sampling settings C implements (runtime/c/sampler.h): all of SamplingConfig's
C_KNOBS = ("greedy", "temperature", "top_k", "top_p", "min_p", "typical_p",
           "repetition_penalty", "repetition_window")
DEFAULT_TEMPERATURE = 0.8  # charwright generate's default


def check_supported(stack: list[dict]) -> None:
    """ConfigError unless every layer is one the C step implements (Keras' default activations,
    GRU reset_after=true)."""
    for i, L in enumerate(stack):
        if L["activation"] != "tanh" or (L["cell"] != "rnn"
                                         and L["recurrent_activation"] != "sigmoid"):
            raise ConfigError(f"layer {i}: emit-c supports activation tanh and recurrent "
                              f"activation sigmoid only, the bundle has {show(L['activation'])} "
                              f"/ {show(L['recurrent_activation'])}")
        if L["cell"] == "gru" and L["reset_after"] is not True:
            raise ConfigError(f"layer {i}: emit-c supports GRU reset_after=true only (Keras' "
                              f"default), the bundle has {show(L['reset_after'])}; re-train "
                              "with reset_after=true")


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """int8 [d, n], float32 scales [d], max |error|: one scale per row, max|row| / 127."""
    w = np.asarray(w, np.float32)
    amax = np.abs(w).max(axis=1)
    scale = (amax / np.float32(127)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)
    err = float(np.abs(q.astype(np.float32) * scale[:, None] - w).max()) if w.size else 0.0
    return q, scale, err


def pack_rows(w: np.ndarray, groups: int) -> np.ndarray:
    """W [groups * H, n] in runtime/c/kernels.h's packed order, flat: each group (gate) padded
    with zero rows to a multiple of 16, then blocks of 16 rows with the rows side by side —
    float32 [block][input][row]; int8 (inputs padded with zero columns to a multiple of 4)
    [block][input // 4][row][input % 4]."""
    rows, n = w.shape
    H = rows // groups
    Hp = -(-H // 16) * 16
    g = np.zeros((groups, Hp, n), w.dtype)
    g[:, :H] = w.reshape(groups, H, n)
    blocks = g.reshape(groups * Hp // 16, 16, n)
    if w.dtype == np.int8:
        n4 = -(-n // 4) * 4
        b4 = np.zeros((blocks.shape[0], 16, n4), np.int8)
        b4[:, :, :n] = blocks
        return b4.reshape(-1, 16, n4 // 4, 4).transpose(0, 2, 1, 3).ravel()
    return blocks.transpose(0, 2, 1).ravel()


def sampling_defaults(bundle) -> dict:
    """The bundle's sampling_defaults for the C main: checked exactly as `generate` checks them
    (sampling.bundle_defaults), then limited to what C implements."""
    from charwright.runtime.sampling.config import bundle_defaults

    d = bundle_defaults(bundle.manifest, bundle.where)
    t = d.get("temperature", DEFAULT_TEMPERATURE)
    # top-k at or above the vocabulary keeps every id, as in Python: C holds it as an int
    top_k = min(d.get("top_k") or 0, bundle.vocab_size)
    top_p = 1.0 if d.get("top_p") is None else d["top_p"]
    return {"temperature": float(t), "top_k": top_k, "top_p": float(top_p),
            "min_p": float(d.get("min_p") or 0.0),
            "typical_p": 1.0 if d.get("typical_p") is None else float(d["typical_p"]),
            "repetition_penalty": float(d.get("repetition_penalty", 1.0)),
            "repetition_window": int(d.get("repetition_window", 64))}


def model_header(bundle, precision: str, stack, w) -> tuple[str, dict]:
    """The text of model.h and the max quantization error per tensor (int8).

    stack: layer_specs of the architecture; w: the weights.npz arrays, float32."""
    int8 = precision == "int8"
    h, errors = Header(), {}
    h.fixed("/* Generated by charwright emit-c from the bundle CW_BUNDLE_NAME: do not edit. */")
    h.fixed("#ifndef CW_MODEL_H")
    h.fixed("#define CW_MODEL_H")
    _sizes(h, bundle, precision, stack)
    _sampling_defaults(h, sampling_defaults(bundle))
    _vocabulary(h, bundle.vocab)
    _layers(h, stack, w, int8, errors)
    h.fixed("#endif")
    return h.text(), errors


def _sizes(h: Header, bundle, precision: str, stack) -> None:
    sha = hashlib.sha256((bundle.root / "manifest.json").read_bytes()).hexdigest()
    vocab = bundle.vocab
    h.define("CW_BUNDLE_NAME", lit_string(bundle.root.resolve().name))
    h.define("CW_BUNDLE_SHA256", lit_string(sha))  # sha256 of the bundle's manifest.json
    h.define("CW_PRECISION", lit_string(precision))
    h.define("CW_INT8", lit_int(int(precision == "int8"), 0, 1))
    h.define("CW_LAYOUT", lit_int(2, 2, 2))  # matrices packed in blocks of 16 rows (pack_rows)
    h.define("CW_WEIGHT", C("signed char") if precision == "int8" else C("float"))
    h.define("CW_VOCAB", lit_size(bundle.vocab_size))
    h.define("CW_LAYERS", lit_size(len(stack)))
    h.define("CW_STATE", lit_size(state_size(stack)))
    h.define("CW_MAX_GATES", lit_size(max(GATES[L["cell"]] * L["units"] for L in stack)))
    h.define("CW_MAX_IN", lit_size(max(L["units"] for L in stack)))
    # the widest input of a layer after the first (1 when there is none): int8 scratch
    h.define("CW_MAX_LAYER_IN", lit_size(max([L["units"] for L in stack[:-1]] or [1])))
    h.define("CW_LAST_UNITS", lit_size(stack[-1]["units"]))
    h.define("CW_EOS_ID", lit_int(vocab.eos_id if vocab.eos else -1, -1, INT32_MAX))


def _sampling_defaults(h: Header, d: dict) -> None:
    h.define("CW_DEFAULT_TEMPERATURE", lit_double(d["temperature"]))
    h.define("CW_DEFAULT_TOP_K", lit_int(d["top_k"], 0, INT32_MAX, "u"))
    h.define("CW_DEFAULT_TOP_P", lit_double(d["top_p"]))
    h.define("CW_DEFAULT_MIN_P", lit_double(d["min_p"]))
    h.define("CW_DEFAULT_TYPICAL_P", lit_double(d["typical_p"]))
    h.define("CW_DEFAULT_REPETITION_PENALTY", lit_double(d["repetition_penalty"]))
    h.define("CW_DEFAULT_REPETITION_WINDOW", lit_int(d["repetition_window"], 1, 65536, "u"))


def _vocabulary(h: Header, vocab) -> None:
    # each entry's UTF-8 and its byte length: an entry may be U+0000, so C prints by length
    names = [lit_string(c) for c in vocab.chars] + ([ident("NULL")] if vocab.eos else [])
    sizes = [lit_int(len(c.encode("utf-8")), 1, 4) for c in vocab.chars]
    h.table("static const char *const cw_vocab[CW_VOCAB]", wrap(names))
    h.fixed("/* the byte length of each entry (0: the end-of-sequence id, never printed) */")
    h.array("unsigned char", "cw_vocab_len", wrap(sizes + [C("0")] * vocab.eos), vocab.size)


def _matrix(h: Header, name: str, w_out_in: np.ndarray, int8: bool, errors: dict,
            groups: int = 1) -> tuple:
    """Emits W [groups * H][n] (float32, or int8 + one scale per row), packed (pack_rows);
    returns (weight, scale) C names."""
    if int8:
        q, s, err = quantize_rows(w_out_in)
        errors[name] = err
        p = pack_rows(q, groups)
        h.array("signed char", name, ints(p), p.size)
        h.array("float", name + "_S", floats(s), s.size)
        return ident(name), ident(name + "_S")
    p = pack_rows(np.asarray(w_out_in, np.float32), groups)
    h.array("float", name, floats(p), p.size)
    return ident(name), ident("NULL")


def _layers(h: Header, stack, w, int8: bool, errors: dict) -> None:
    table0 = folded_input_table(w, stack[0])
    if int8:
        q, s, errors["table0"] = quantize_rows(table0)
        h.array("signed char", "CW_TABLE0", ints(q), q.size)
        h.array("float", "CW_TABLE0_SCALE", floats(s), s.size)
    else:
        h.array("float", "CW_TABLE0", floats(table0), table0.size)
    rows = [_layer(h, i, stack, w, int8, errors) for i in range(len(stack))]
    h.define("CW_LAYER_TABLE", join(rows))
    _, ds = _matrix(h, "CW_DENSE_W", w["dense.kernel"].T, int8, errors)
    h.define("CW_DENSE_SCALE", ds)
    h.array("float", "CW_DENSE_B", floats(w["dense.bias"]), w["dense.bias"].shape[0])


def _layer(h: Header, i: int, stack, w, int8: bool, errors: dict) -> C:
    """Layer i's arrays; returns its row of CW_LAYER_TABLE (cell, units, input width, input
    weight / scale / bias, recurrent weight / scale / bias)."""
    L, null = stack[i], ident("NULL")
    bias = w[f"layer{i}.bias"]
    if i > 0:
        wi, si = _matrix(h, f"CW_W_IN{i}", w[f"layer{i}.kernel"].T, int8, errors,
                         GATES[L["cell"]])
        h.array("float", f"CW_B_IN{i}", floats(input_bias(bias, L)), bias.shape[-1])
        bi, in_dim = ident(f"CW_B_IN{i}"), stack[i - 1]["units"]
    else:  # layer 0's input is the folded table
        wi, si, bi, in_dim = null, null, null, 0
    wr, sr = _matrix(h, f"CW_W_REC{i}", w[f"layer{i}.recurrent_kernel"].T, int8, errors,
                     GATES[L["cell"]])
    br, rec_bias = null, recurrent_bias(bias, L)  # GRU (reset_after) only
    if rec_bias is not None:
        h.array("float", f"CW_B_REC{i}", floats(rec_bias), bias.shape[-1])
        br = ident(f"CW_B_REC{i}")
    return struct([ident(CELL_IDS[L["cell"]]), lit_size(L["units"]),
                   lit_int(in_dim, 0, INT32_MAX), wi, si, bi, wr, sr, br])
