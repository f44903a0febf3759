"""Reading a bundle refuses every kind of damage with a one-line BundleError naming the file."""

import json
import os
import shutil
import signal
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from charwright.runtime.backends import open_backend
from charwright.runtime.bundle.reader import Bundle, FileEntry, load_bundle, read_manifest
from charwright.runtime.errors import BundleError

from bundle_factory import copy_demo, edit, make_bundle, read_manifest as manifest_of

ONNX = "model.int8-dynamic.onnx"


@contextmanager
def deadline(seconds):
    """Turns a hang (an open() blocked on a FIFO) into a failure instead of a stuck run."""
    def boom(*_):
        raise TimeoutError(f"still blocked after {seconds} s")
    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def fake(tmp_path):
    return make_bundle(tmp_path / "b")


@pytest.fixture
def demo(tmp_path):
    return copy_demo(tmp_path / "demo")


# ---- 1. symlinks and special files ------------------------------------------------------------

def test_model_file_linked_outside_the_bundle_is_refused(demo, tmp_path):
    os.replace(demo / ONNX, tmp_path / "elsewhere.onnx")
    os.symlink(tmp_path / "elsewhere.onnx", demo / ONNX)  # same bytes: checksums still match
    with pytest.raises(BundleError, match=rf"{ONNX}: points outside the bundle directory"):
        load_bundle(demo)
    b = load_bundle(demo, verify=False)
    with pytest.raises(BundleError, match=rf"{ONNX}: points outside the bundle directory"):
        open_backend(b, b.find("onnx"))


def test_link_to_etc_passwd_is_never_opened(demo):
    os.symlink("/etc/passwd", demo / "passwd.onnx")
    edit(demo, lambda m: m["files"][0].update(path="passwd.onnx"))  # checksums of /etc/passwd
    with pytest.raises(BundleError, match=r"passwd.onnx: points outside the bundle directory"):
        load_bundle(demo)


def test_manifest_linked_outside_is_refused(fake, tmp_path):
    os.replace(fake / "manifest.json", tmp_path / "m.json")
    os.symlink(tmp_path / "m.json", fake / "manifest.json")
    with pytest.raises(BundleError, match=r"manifest.json: points outside the bundle directory"):
        read_manifest(fake)


def test_a_link_inside_the_bundle_is_fine(fake):
    os.replace(fake / "weights.npz", fake / "real.npz")
    os.symlink("real.npz", fake / "weights.npz")
    b = load_bundle(fake)
    assert open_backend(b, b.files[0]).state_size == 8


def test_fifo_manifest_does_not_hang(fake):
    (fake / "manifest.json").unlink()
    os.mkfifo(fake / "manifest.json")
    with deadline(5), pytest.raises(BundleError, match=r"manifest.json: not a regular file"):
        read_manifest(fake)


def test_fifo_model_file_does_not_hang(fake):
    (fake / "weights.npz").unlink()
    os.mkfifo(fake / "weights.npz")
    with deadline(5), pytest.raises(BundleError, match=r"weights.npz: not a regular file"):
        load_bundle(fake)


def test_reads_are_bounded(tmp_path):
    from charwright.runtime.files.safefile import read_bytes

    with deadline(5), pytest.raises(BundleError, match=r"/dev/zero: not a regular file"):
        read_bytes(Path("/dev/zero"), 100)
    (tmp_path / "big").write_bytes(b"x" * 1000)
    with pytest.raises(BundleError, match=r"big: 1,000 bytes, more than the 999 expected"):
        read_bytes(tmp_path / "big", 999)


def test_oversized_manifest_is_refused(fake):
    m = manifest_of(fake)
    m["padding"] = "x" * (17 << 20)
    (fake / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"manifest.json: [\d,]+ bytes, more than the "
                                          r"16,777,216 expected"):
        read_manifest(fake)


# ---- 3. npz headers are judged before loading -------------------------------------------------

def test_probe_zip_bomb_is_refused_before_loading(fake):
    with np.load(fake / "probe.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["logits"] = np.zeros((40 * 4096, 11), np.float32)  # 18 MB, compresses to ~20 KB
    np.savez_compressed(fake / "probe.npz", **arrays)
    edit(fake, lambda m: None)
    assert (fake / "probe.npz").stat().st_size < 200_000
    b = load_bundle(fake)
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match=r"probe.npz: member 'logits.npy' unpacks to "
                                              r"[\d,]+ bytes from [\d,]+: a decompression bomb"):
            b.probe()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000


def test_probe_token_count_must_match_the_manifest(fake):
    edit(fake, lambda m: m["probe"].update(tokens=41))
    with pytest.raises(BundleError, match=r"array 'tokens' has shape \(40,\), expected \(41,\)"):
        load_bundle(fake).probe()


def test_weights_are_checked_against_the_architecture(fake):
    b0 = make_bundle(fake.parent / "other", units=6)
    shutil.copyfile(b0 / "weights.npz", fake / "weights.npz")
    edit(fake, lambda m: None)
    b = load_bundle(fake)
    with pytest.raises(BundleError, match=r"weights.npz: array 'embedding' has shape|weights.npz: "
                                          r"array 'layer0.kernel' has shape \(4, 18\), expected "
                                          r"\(4, 24\)"):
        open_backend(b, b.files[0])


def test_object_arrays_are_refused(fake):
    np.savez(fake / "probe.npz", tokens=np.array([object()] * 40, dtype=object))
    edit(fake, lambda m: None)
    with pytest.raises(BundleError, match=r"probe.npz: array 'tokens' holds Python objects"):
        load_bundle(fake).probe()


# ---- 5. manifest values that used to reach an internal error ---------------------------------

def _set(path, value):
    def fn(m):
        *keys, last = path
        d = m
        for k in keys:
            d = d[k]
        d[last] = value
    return fn


@pytest.mark.parametrize("edit_fn,message", [
    (_set(("files", 0, "path"), "."), r"path '\.' names the bundle directory, not a file"),
    (_set(("files", 0, "inputs"), ["token", "state"]), r"files\[0\]\.inputs must map names"),
    (_set(("probe",), "probe.npz"), r"probe must be an object, got 'probe.npz'"),
    (lambda m: m["probe"].pop("path"), r"probe\.path is missing"),
    (_set(("vocab", "eos"), "false"), r"vocab\.eos must be true or false \(a JSON boolean\), "
                                      r"got 'false'"),
    (_set(("files",), []), r"files must be a non-empty list of model files"),
    (_set(("state", "size"), "8"), r"state\.size must be an integer >= 1, got '8'"),
    (_set(("architecture", "cell"), "transformer"), r"architecture\.cell must be one of gru, "
                                                    r"lstm, rnn"),
    (_set(("files", 0, "format"), "pt"), r"files\[0\]\.format must be one of onnx, tflite, npz, "
                                         r"got 'pt'"),
    (_set(("format_version",), 1.0), r"format version 1.0 is not supported"),
])
def test_bad_manifest_values_are_one_line_bundle_errors(fake, edit_fn, message):
    edit(fake, edit_fn)
    with pytest.raises(BundleError, match=message):
        load_bundle(fake).probe()


def test_null_sha256_does_not_switch_the_check_off(fake):
    edit(fake, _set(("files", 0, "sha256"), None), refresh=False)
    with pytest.raises(BundleError, match=r"files\[0\]\.sha256 must be 64 lowercase hex "
                                          r"characters, got None"):
        load_bundle(fake)


def test_sizes_are_real_integers(fake):
    edit(fake, _set(("files", 0, "bytes"), True), refresh=False)
    with pytest.raises(BundleError, match=r"files\[0\]\.bytes must be an integer >= 0, got True"):
        load_bundle(fake)


def test_infinity_size_is_refused(fake):
    text = (fake / "manifest.json").read_text()
    m = json.loads(text)
    (fake / "manifest.json").write_text(text.replace(f'"bytes": {m["files"][0]["bytes"]}',
                                                     '"bytes": Infinity'))
    with pytest.raises(BundleError, match=r"files\[0\]\.bytes must be an integer >= 0, got inf"):
        load_bundle(fake)


def test_deeply_nested_json_is_refused(fake):
    (fake / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match=r"manifest.json: malformed JSON \(nested too deeply\)"):
        load_bundle(fake)


def test_self_contradicting_manifest_is_refused(demo):
    edit(demo, lambda m: m["vocab"]["chars"].pop())
    with pytest.raises(BundleError, match=r"vocab\.chars holds 64 ids \(64 characters\) but "
                                          r"architecture\.vocab_size is 65"):
        load_bundle(demo)
    edit(demo, lambda m: m["vocab"]["chars"].append("z"))
    edit(demo, lambda m: m["state"].update(size=256))
    with pytest.raises(BundleError, match=r"state\.size is 256, but its stack of 1 layers carries "
                                          r"512"):
        load_bundle(demo)
    edit(demo, lambda m: m["architecture"].pop("stack"))  # a bundle from before stacks
    with pytest.raises(BundleError, match=r"state\.size is 256, but a GRU of 1 x 512 carries 512"):
        load_bundle(demo)


def test_run_directory_is_named(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(BundleError, match=rf"{tmp_path} is a training run directory, not a "
                                          rf"bundle; run `charwright export {tmp_path} -o "
                                          r"BUNDLE_DIR` first"):
        load_bundle(tmp_path)


# ---- 10. the default precision skips files whose recorded parity failed ----------------------

def test_find_skips_files_that_failed_parity():
    def entry(p):
        return FileEntry(f"model.{p}.tflite", "tflite", p, "0" * 64, 1)
    files = [entry(p) for p in ("float32", "int8-dynamic", "int8")]
    manifest = {"parity": [{"file": "model.int8-dynamic.tflite", "verdict": "FAIL"},
                           {"file": "model.int8.tflite", "verdict": "not checked"}]}
    b = Bundle(Path("."), manifest, None, files)
    assert b.find("tflite").precision == "int8"  # int8-dynamic is faster but failed
    assert b.find("tflite", "int8-dynamic").precision == "int8-dynamic"  # asked for: given
    manifest["parity"].append({"file": "model.int8.tflite", "verdict": "FAIL"})
    manifest["parity"].append({"file": "model.float32.tflite", "passed": False})
    with pytest.raises(BundleError, match=r"every tflite file failed parity at export"):
        b.find("tflite")


# ---- the exported tiny bundle (TensorFlow) ----------------------------------------------------

@pytest.fixture
def bundle_copy(tmp_path, tiny_bundle):
    d = tmp_path / "b"
    shutil.copytree(tiny_bundle, d)
    return d


@pytest.mark.tf
def test_reads_a_good_bundle(bundle_copy):
    b = load_bundle(bundle_copy)
    assert b.find("onnx").precision == "int8-dynamic"  # the default is the fast path
    assert b.find("tflite", "float16").path == "model.float16.tflite"
    assert b.probe()["tokens"].shape == (300,)


@pytest.mark.tf
@pytest.mark.parametrize("edit_fn,message", [
    (lambda m: m.update(format_version="2.0"), r"format version '2.0' is not supported"),
    (lambda m: m["files"][1].update(path="/etc/passwd"), r"absolute path '/etc/passwd'"),
    (lambda m: m["files"][1].update(path="../x.onnx"), r"path '../x.onnx' leaves the bundle"),
    (lambda m: m["files"][1].update(bytes=5), r"model.float32.onnx: size \d+ bytes, manifest says 5"),
    (lambda m: m["files"][1].update(path="gone.onnx"), r"gone.onnx: file listed in the manifest is missing"),
    (lambda m: m.update(format="other"), r"not a charwright-bundle manifest"),
])
def test_refuses_damage(bundle_copy, edit_fn, message):
    edit(bundle_copy, edit_fn, refresh=False)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


def test_malformed_json_and_missing_manifest(fake, tmp_path):
    (fake / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest.json: malformed JSON"):
        load_bundle(fake)
    with pytest.raises(BundleError, match="bundle directory not found"):
        load_bundle(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="is not a charwright bundle"):
        load_bundle(tmp_path / "empty")


def test_checksum_names_the_file(demo):
    p = demo / ONNX
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"{ONNX}: sha256 mismatch"):
        load_bundle(demo)


def test_a_bomb_the_manifest_agrees_with_is_still_refused(fake):
    """The attacker writes the manifest too: it declares the bomb's own shape."""
    with np.load(fake / "probe.npz") as z:
        arrays = {k: z[k] for k in z.files}
    n = 40 * 4096
    arrays["tokens"] = np.zeros(n, np.int32)
    arrays["logits"] = np.zeros((n, 11), np.float32)
    np.savez_compressed(fake / "probe.npz", **arrays)
    edit(fake, lambda m: m["probe"].update(tokens=n))
    with pytest.raises(BundleError, match="a decompression bomb"):
        load_bundle(fake).probe()


def test_only_stored_and_deflated_members_are_read(fake):
    import zipfile

    with zipfile.ZipFile(fake / "probe.npz") as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    with zipfile.ZipFile(fake / "probe.npz", "w", compression=zipfile.ZIP_LZMA) as z:
        for name, data in members.items():
            z.writestr(name, data)
    edit(fake, lambda m: None)
    with pytest.raises(BundleError, match="uses compression method 14; only stored and deflated"):
        load_bundle(fake).probe()


@pytest.mark.parametrize("field,value,message", [
    ("layers", 10**6, r"architecture.layers must be an integer in 1..64, got 1000000"),
    ("units", 10**7, r"architecture.units must be an integer in 1..65536, got 10000000"),
])
def test_absurd_architecture_sizes_are_refused_before_use(fake, field, value, message):
    edit(fake, lambda m: m["architecture"].update({field: value}))
    with pytest.raises(BundleError, match=message):
        load_bundle(fake)


# ---- left_out[]: files export left out because they did not hold parity (issue 24, item 8) ---

LEFT_OUT = {"path": "model.int8.tflite", "format": "tflite", "precision": "int8",
            "reason": "outside tolerance: model.int8.tflite: top-1 agreement 89.95% < 97.0%",
            "figures": [{"file": "model.int8.tflite", "top1": 0.8995, "verdict": "FAIL"}]}


def test_left_out_files_are_read_and_the_bundle_still_runs(fake):
    edit(fake, _set(("left_out",), [LEFT_OUT]))
    b = load_bundle(fake)
    assert b.manifest["left_out"] == [LEFT_OUT]
    from charwright.runtime.verify.parity import check_bundle

    assert all(r.passed for r in check_bundle(b))


@pytest.mark.parametrize("value,message", [
    ({"path": "x"}, r"left_out must be a list, got \{'path': 'x'\}"),
    ([dict(LEFT_OUT, precision="int4")], r"left_out\[0\]\.precision must be one of float32, "
                                         r"float16, int8-dynamic, int8, int16x8, got 'int4'"),
    ([dict(LEFT_OUT, path="")], r"left_out\[0\]\.path must be a non-empty string"),
    ([dict(LEFT_OUT, path=None)], r"left_out\[0\]\.path must be a string, got None"),
    ([LEFT_OUT, "x"], r"left_out\[1\] must be an object, got 'x'"),
    ([dict(LEFT_OUT, reason=7)], r"left_out\[0\]\.reason must be a string, got 7"),
    ([dict(LEFT_OUT, figures=[1])], r"left_out\[0\]\.figures must be a list of parity rows"),
])
def test_malformed_left_out_is_one_line(fake, value, message):
    edit(fake, _set(("left_out",), value))
    with pytest.raises(BundleError, match=message):
        load_bundle(fake)


def test_a_left_out_file_the_bundle_holds_is_a_contradiction(fake):
    edit(fake, lambda m: m.__setitem__("left_out", [dict(LEFT_OUT, path=m["files"][0]["path"])]))
    with pytest.raises(BundleError, match=r"left_out\[0\]\.path names 'weights.npz', a file the "
                                          r"bundle holds \(files\[\]\); a left-out file is "
                                          r"not in the bundle"):
        load_bundle(fake)
