"""The integrator's contract, in every file, seen the way a runtime without signatures sees it:
input 0 `token` int32 [batch], input 1 `state` float32 [batch, S]; output 0 `logits`
[batch, V], output 1 `new_state` [batch, S]; raw tensor names exactly those; ONNX's batch
dimension named `batch`; the manifest's state.initial and files[].min_runtime."""

import json
import shutil

import numpy as np
import pytest

from tiny_models import export_quiet, train_tiny

from charwright.runtime.bundle.reader import load_bundle
from charwright.runtime.errors import BundleError

pytestmark = [pytest.mark.tf, pytest.mark.litert]

NAMES_IN, NAMES_OUT = ["token", "state"], ["logits", "new_state"]


def _reference(bundle_dir, token: int, state: np.ndarray):
    """One step of the numpy backend (weights.npz), the float reference."""
    from charwright.runtime.backends import open_backend

    b = load_bundle(bundle_dir)
    ref = open_backend(b, b.find("npz"))
    return ref.step(np.array([token], np.int32), state)


def _raw_litert(data: bytes, token: int, state: np.ndarray):
    """LiteRT by raw index: no signature runner, set_tensor / invoke / get_tensor."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    ins, outs = it.get_input_details(), it.get_output_details()
    it.allocate_tensors()
    it.set_tensor(ins[0]["index"], np.array([token], np.int32))
    it.set_tensor(ins[1]["index"], state)
    it.invoke()
    return ins, outs, it.get_tensor(outs[0]["index"]), it.get_tensor(outs[1]["index"])


def check_tflite_contract(path, S, V, ref=None, token=3, state=None):
    data = path.read_bytes()
    state = np.zeros((1, S), np.float32) if state is None else state
    ins, outs, logits, new_state = _raw_litert(data, token, state)
    assert [d["name"] for d in ins] == NAMES_IN, path.name
    assert [d["name"] for d in outs] == NAMES_OUT, path.name
    assert ins[0]["dtype"] == np.int32 and ins[1]["dtype"] == np.float32
    assert [list(d["shape_signature"]) for d in ins] == [[-1], [-1, S]]
    assert [list(d["shape_signature"]) for d in outs] == [[-1, V], [-1, S]]
    assert logits.shape == (1, V) and new_state.shape == (1, S)
    if ref is not None:  # the outputs are what their names say, not merely the right shapes
        tol = 1e-4 if "float32" in path.name else 0.15
        assert np.abs(logits - ref[0]).max() <= tol, path.name
        assert np.abs(new_state - ref[1]).max() <= tol, path.name


def check_onnx_contract(path, S, V, ref=None, token=3, state=None):
    import onnxruntime as ort

    state = np.zeros((1, S), np.float32) if state is None else state
    s = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in s.get_inputs()] == [("token", ["batch"]),
                                                           ("state", ["batch", S])]
    assert [(o.name, o.shape) for o in s.get_outputs()] == [("logits", ["batch", V]),
                                                            ("new_state", ["batch", S])]
    assert s.get_inputs()[0].type == "tensor(int32)" and s.get_inputs()[1].type == "tensor(float)"
    logits, new_state = s.run(None, {"token": np.array([token], np.int32), "state": state})
    if ref is not None:
        tol = 1e-4 if "float32" in path.name else 0.15
        assert np.abs(logits - ref[0]).max() <= tol and np.abs(new_state - ref[1]).max() <= tol


def test_every_file_keeps_the_contract_by_index_and_name(tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    S, V = m["state"]["size"], m["architecture"]["vocab_size"]
    state = np.random.default_rng(0).uniform(-0.5, 0.5, (1, S)).astype(np.float32)
    ref = _reference(tiny_bundle, 3, state)
    seen = set()
    for f in m["files"]:
        path = tiny_bundle / f["path"]
        if f["format"] == "tflite":
            check_tflite_contract(path, S, V, ref, 3, state)
        elif f["format"] == "onnx":
            check_onnx_contract(path, S, V, ref, 3, state)
        else:
            continue
        seen.add(f["format"])
        assert f["inputs"] == {"token": "token", "state": "state"}
        assert f["outputs"] == {"logits": "logits", "new_state": "new_state"}
    assert seen == {"tflite", "onnx"}


def test_vocabulary_as_wide_as_the_state_is_told_apart_by_index(tmp_path, tiny_corpus):
    """vocab == state size: only the order (and names) tell logits from new_state."""
    run = tmp_path / "run"
    text = tiny_corpus.read_text(encoding="utf-8")
    width = len(set(text))
    train_tiny(run, tiny_corpus, units=width, epochs=1)
    m = export_quiet(run, tmp_path / "b", formats=["tflite", "onnx", "numpy"],
                     precisions=["float32"])
    S, V = m["state"]["size"], m["architecture"]["vocab_size"]
    assert S == V == width
    state = np.random.default_rng(1).uniform(-0.5, 0.5, (1, S)).astype(np.float32)
    ref = _reference(tmp_path / "b", 5, state)
    assert np.abs(ref[0] - ref[1]).max() > 1e-2  # the two outputs differ
    check_tflite_contract(tmp_path / "b" / "model.float32.tflite", S, V, ref, 5, state)
    check_onnx_contract(tmp_path / "b" / "model.float32.onnx", S, V, ref, 5, state)


def test_manifest_records_initial_state_and_min_runtime(tiny_bundle):
    from charwright.export.formats.tflite import convert as tflite

    m = json.loads((tiny_bundle / "manifest.json").read_text())
    assert m["state"]["initial"] == "zeros"
    for f in m["files"]:
        mr = f.get("min_runtime")
        if f["format"] == "tflite":
            own = tflite.min_runtime_version((tiny_bundle / f["path"]).read_bytes())
            assert mr == {"runtime": "tflite", "version": own, "source": "file"}
            meta = tflite.read_metadata((tiny_bundle / f["path"]).read_bytes())
            assert meta["state"]["initial"] == "zeros"
        elif f["format"] == "onnx":
            assert mr["runtime"] == "onnxruntime" and mr["opset"] == 17 and mr["ir_version"] <= 8
            assert mr["source"] == "verified" and mr["version"]
    versions = {f["precision"]: tuple(int(x) for x in f["min_runtime"]["version"].split("."))
                for f in m["files"] if f["format"] == "tflite"}
    # FULLY_CONNECTED v12: tflite-runtime 2.14 (its last release) refuses these files
    assert versions["int8-dynamic"] >= (2, 17, 0)


@pytest.mark.parametrize("path,value,match", [
    (("state", "initial"), "random", r"state.initial must be one of zeros"),
    (("files", 3, "min_runtime"), {"runtime": 7}, r"files\[3\].min_runtime.runtime must be a str"),
    (("files", 3, "micro"), {"runs": "yes"}, r"files\[3\].micro.runs must be true, false or null"),
    (("files", 3, "micro"), {"runs": True}, r"files\[3\].micro.arena_bytes is missing"),
])
def test_manifest_refuses_bad_new_fields(tmp_path, tiny_bundle, path, value, match):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    node = m
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=match):
        load_bundle(b)


def test_apply_contract_is_idempotent_and_litert_runs_without_a_signature(tiny_bundle):
    """A file stripped of its signature still loads in the LiteRT backend, by the contract."""
    from charwright.export.formats import onnx as onnx_export
    from charwright.export.formats.tflite import convert as tflite
    from charwright.runtime.backends.litert import LiteRTStep
    from tensorflow.lite.tools import flatbuffer_utils as fu

    data = (tiny_bundle / "model.float32.tflite").read_bytes()
    assert tflite.apply_contract(data) == data
    onnx_data = (tiny_bundle / "model.int8-dynamic.onnx").read_bytes()
    assert onnx_export.apply_contract(onnx_data) == onnx_data
    m = fu.convert_bytearray_to_object(bytearray(data))
    m.signatureDefs = []
    bare = bytes(fu.convert_object_to_bytearray(m))
    b = load_bundle(tiny_bundle)
    be = LiteRTStep("bare.tflite", b.state_size, b.vocab_size, "float32", data=bare)
    logits, state = be.step(np.array([1, 2], np.int32), be.initial_state(2))
    assert logits.shape == (2, b.vocab_size) and state.shape == (2, b.state_size)


@pytest.mark.parametrize("cell,layers", [("gru", 1), ("lstm", 2)])
def test_integer_graph_computes_the_same_step(tmp_path, tiny_corpus, tiny_run, cell, layers):
    """The integer-form graph (export/formats/tflite/int8_graph.py: split gates, the GRU update
    as h + u * (n - h) with u = 1 - z from negated weights, an LSTM's c held as c / 8; what
    full int8 is converted from) is the same function as the trainer's fused float graph."""
    import tensorflow as tf

    from charwright.export.formats.tflite.int8_graph import build_integer_step, state_encoding
    from charwright.trainer.config import ModelConfig
    from charwright.trainer.step_graph import build_step_function

    run = tiny_run
    if cell != "gru":
        run = tmp_path / "run"
        train_tiny(run, tiny_corpus, cell=cell, layers=layers, units=12, epochs=1)
    step_info = json.loads((run / "step" / "step.json").read_text())
    arch, layout = step_info["architecture"], step_info["state_layout"]
    cfg = ModelConfig(**{**arch, "stack": tuple(arch["stack"])})
    with np.load(run / "step" / "weights.npz") as z:
        w = {k: z[k] for k in z.files}
    fused, integer = build_step_function(w, cfg), build_integer_step(w, arch)
    tok = tf.constant([1, 2, 3], tf.int32)
    st = tf.constant(np.random.default_rng(0).uniform(-0.5, 0.5, (3, cfg.state_size)),
                     tf.float32)
    # the integer form holds an LSTM's c as c / 8 (files[].state_encoding): scale in and out
    scale = np.ones(cfg.state_size, np.float32)
    enc = {e["part"]: e["scale"] for e in state_encoding(layout)}
    for e in layout:
        scale[e["offset"]:e["offset"] + e["size"]] = enc.get(e["name"], 1.0)
    assert bool(enc) == (cell == "lstm")
    a, b = fused.step(tok, st), integer.step(tok, st / scale)
    assert np.abs(a["logits"].numpy() - b["logits"].numpy()).max() <= 1e-5
    assert np.abs(a["new_state"].numpy() - b["new_state"].numpy() * scale).max() <= 1e-5
