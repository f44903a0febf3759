"""Reading a bundle refuses every kind of damage with a BundleError naming the file."""

import json
import shutil

import pytest

from charwright.runtime.bundle import load_bundle
from charwright.runtime.errors import BundleError

pytestmark = [pytest.mark.tf]  # the fixture bundle is exported with TensorFlow


@pytest.fixture
def bundle_copy(tmp_path, tiny_bundle):
    d = tmp_path / "b"
    shutil.copytree(tiny_bundle, d)
    return d


def _edit(d, fn):
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    (d / "manifest.json").write_text(json.dumps(m))


def test_reads_a_good_bundle(bundle_copy):
    b = load_bundle(bundle_copy)
    assert b.find("onnx").precision == "int8-dynamic"  # the default is the fast path
    assert b.find("tflite", "float16").path == "model.float16.tflite"
    assert b.probe()["tokens"].shape == (300,)


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(format_version="2.0"), r"format version '2.0' is not supported"),
    (lambda m: m["files"][1].update(path="/etc/passwd"), r"absolute path '/etc/passwd'"),
    (lambda m: m["files"][1].update(path="../x.onnx"), r"path '../x.onnx' leaves the bundle"),
    (lambda m: m["files"][1].update(bytes=5), r"model.float32.onnx: size \d+ bytes, manifest says 5"),
    (lambda m: m["files"][1].update(path="gone.onnx"), r"gone.onnx: file listed in the manifest is missing"),
    (lambda m: m["files"][1].update(format="pt"), r"unknown file format 'pt'"),
    (lambda m: m.update(format="other"), r"not a charwright-bundle manifest"),
])
def test_refuses_damage(bundle_copy, edit, message):
    _edit(bundle_copy, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


def test_malformed_json_and_missing_manifest(bundle_copy, tmp_path):
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest.json: malformed JSON"):
        load_bundle(bundle_copy)
    with pytest.raises(BundleError, match="bundle directory not found"):
        load_bundle(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="is not a charwright bundle"):
        load_bundle(tmp_path / "empty")


def test_checksum_names_the_file(bundle_copy):
    p = bundle_copy / "model.int8.tflite"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model.int8.tflite: sha256 mismatch"):
        load_bundle(bundle_copy)
