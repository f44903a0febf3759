"""charwright import: Keras models written here in plain Keras (Sequential and functional, every
cell kind, mixed kinds, softmax outputs, a legacy .h5, a StringLookup vocabulary, a weights-only
file) import, export with every written file passing parity, verify and generate; each refused
model gets its one line."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tiny_models import export_quiet, make_text

from charwright.runtime.cli import cli

pytestmark = [pytest.mark.tf]


@pytest.fixture(scope="module")
def text_and_vocab(tmp_path_factory):
    d = tmp_path_factory.mktemp("imp")
    text = make_text(4000, seed=3)
    (d / "probe.txt").write_text(text, encoding="utf-8")
    chars = sorted(set(text))
    shuffled = [str(c) for c in np.random.default_rng(0).permutation(chars)]  # model id order
    (d / "vocab.json").write_text(json.dumps(shuffled), encoding="utf-8")
    # the tutorial's StringLookup vocabulary, one entry per line: [UNK], then the characters
    lines = ["[UNK]"] + [{"\n": "\\n"}.get(c, c) for c in chars]
    (d / "lookup.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d, text, shuffled, chars


def _fit(model, ids, V, softmax):
    """A few hundred steps so that the logits are peaked enough for parity's top-1 figure."""
    import keras

    x = np.stack([ids[i : i + 32] for i in range(0, len(ids) - 33, 16)])
    y = np.stack([ids[i + 1 : i + 33] for i in range(0, len(ids) - 33, 16)])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax))
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)


def _models(d, text, shuffled, chars):
    import keras

    keras.utils.set_random_seed(0)
    V = len(shuffled)
    ids = np.array([shuffled.index(c) for c in text], np.int32)
    L = keras.layers
    made = {}

    m = keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(V, 8), L.GRU(16,
                          return_sequences=True), L.Dropout(0.2), L.Dense(V)])
    _fit(m, ids, V, False)
    m.save(d / "seq_gru.keras")
    made["seq_gru"] = ("seq_gru.keras", "vocab.json", [])

    inp = keras.Input((None,), dtype="int32")
    x = L.Embedding(V, 8)(inp)
    x = L.LSTM(12, return_sequences=True)(x)
    x = L.Dropout(0.1)(x)
    x = L.GRU(10, return_sequences=True, reset_after=False, activation="relu",
              recurrent_activation="hard_sigmoid")(x)
    m = keras.Model(inp, L.Dense(V, activation="softmax")(x))  # softmax on the Dense
    _fit(m, ids, V, True)
    m.save(d / "mixed.keras")
    made["mixed"] = ("mixed.keras", "vocab.json", [])

    inp = keras.Input((None,), dtype="int32")
    x = L.Embedding(V, 6)(inp)
    x = L.SimpleRNN(16, return_sequences=True, activation="tanh")(x)
    x = L.LSTM(8, return_sequences=True, activation="linear")(x)
    x = L.Dense(V)(x)
    m = keras.Model(inp, L.Softmax()(x))  # a Softmax layer after the logits
    _fit(m, ids, V, True)
    m.save(d / "legacy.h5")  # Keras 3 writes the legacy HDF5 format for .h5
    made["legacy_h5"] = ("legacy.h5", "vocab.json", [])

    # StringLookup ids: 0 is [UNK]; mask_zero masks only that id, which is never fed
    lk = np.array([1 + chars.index(c) for c in text], np.int32)
    m = keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(V + 1, 8,
                          mask_zero=True), L.GRU(12, return_sequences=True), L.Dense(V + 1)])
    _fit(m, lk, V + 1, False)
    m.save(d / "lookup.keras")
    made["stringlookup"] = ("lookup.keras", "lookup.txt", [])

    class Tutorial(keras.Model):  # the text-generation tutorial's subclassed model (no config)
        def __init__(self):
            super().__init__()
            self.embedding = L.Embedding(V + 1, 8)
            self.gru = L.GRU(16, return_sequences=True, return_state=True)
            self.dense = L.Dense(V + 1)

        def call(self, inputs, training=False):
            x, _ = self.gru(self.embedding(inputs), training=training)
            return self.dense(x)

    t = Tutorial()
    t(lk[None, :10])
    t.save_weights(d / "tutorial.weights.h5")
    made["tutorial_weights"] = ("tutorial.weights.h5", "lookup.txt", ["--stack", "gru:16"])
    return made


@pytest.fixture(scope="module")
def keras_models(text_and_vocab):
    d, text, shuffled, chars = text_and_vocab
    return d, _models(d, text, shuffled, chars)


def _import(d, model, vocab, out, *extra):
    return CliRunner().invoke(cli, ["import", str(d / model), "--vocab", str(d / vocab),
                                    "--probe-text", str(d / "probe.txt"), "-o", str(out),
                                    "--probe-chars", "400", "--greedy-chars", "40", *extra])


@pytest.mark.parametrize("name", ["seq_gru", "mixed", "legacy_h5", "stringlookup",
                                  "tutorial_weights"])
def test_import_export_verify_generate(tmp_path, keras_models, name):
    d, made = keras_models
    model, vocab, extra = made[name]
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    r = _import(d, model, vocab, run, *extra)
    assert r.exit_code == 0, r.output
    rj = json.loads((run / "run.json").read_text())
    assert rj["version"] == 2 and rj["status"] == "complete" and rj["import"]["layers"]
    assert rj["summary"]["step_check_max_abs_diff"] < 1e-4
    stack = json.loads((run / "step" / "step.json").read_text())["architecture"]["stack"]
    assert len(stack) == rj["model"]["layers"]
    # every file this export writes passes parity (tiny models: the int8 files are left out,
    # their top-1 agreement on a 40-unit model is noise around the 97% bar)
    manifest = export_quiet(run, bundle, precisions=["float32", "float16"])
    assert len(manifest["files"]) == 4
    assert all(p["verdict"] == "pass" for p in manifest["parity"]), manifest["parity"]
    assert manifest["architecture"]["stack"] == stack
    r = CliRunner().invoke(cli, ["verify", str(bundle)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["generate", "The ", "-b", str(bundle), "-n", "30", "--seed",
                                 "1", "--backend", "numpy"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("The ") and len(r.output.rstrip("\n")) >= 30


def test_mixed_stack_and_softmax_are_recorded(tmp_path, keras_models):
    d, made = keras_models
    assert _import(d, "mixed.keras", "vocab.json", tmp_path / "run").exit_code == 0
    rj = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rj["model"]["cell"] == "mixed" and rj["model"]["units"] == 12
    assert [(s["cell"], s["units"], s["reset_after"], s["activation"], s["recurrent_activation"])
            for s in rj["model"]["stack"]] == [("lstm", 12, None, "tanh", "sigmoid"),
                                               ("gru", 10, False, "relu", "hard_sigmoid")]
    assert "Dense" in rj["import"]["softmax_output"]
    assert [p["size"] for p in rj["state_layout"]] == [12, 12, 10]
    assert rj["import"]["import_check_max_abs_prob_diff"] < 1e-4


def test_stringlookup_unk_is_dropped(tmp_path, keras_models):
    d, _ = keras_models
    assert _import(d, "lookup.keras", "lookup.txt", tmp_path / "run").exit_code == 0
    rj = json.loads((tmp_path / "run" / "run.json").read_text())
    v = rj["import"]["vocab"]
    assert v["source"] == "stringlookup" and v["reserved"] == [{"id": 0, "token": "[UNK]"}]
    assert v["dropped_logits"] == [0] and rj["import"]["mask_zero"] is True
    vocab = json.loads((tmp_path / "run" / "vocab.json").read_text())
    assert "[UNK]" not in vocab["chars"] and vocab["size"] == v["entries"] - 1


def _refused_models(d, V):
    import keras

    L = keras.layers
    inp = lambda: keras.Input((None,), dtype="int32")  # noqa: E731
    out = {}
    out["bidirectional"] = keras.Sequential([inp(), L.Embedding(V, 4, name="emb"),
                                             L.Bidirectional(L.GRU(4, return_sequences=True),
                                                             name="bi"), L.Dense(V)])
    out["conv"] = keras.Sequential([inp(), L.Embedding(V, 4), L.Conv1D(4, 3, name="conv"),
                                    L.GRU(4, return_sequences=True), L.Dense(V)])
    out["masking"] = keras.Sequential([inp(), L.Embedding(V, 4), L.Masking(name="mask"),
                                       L.GRU(4, return_sequences=True), L.Dense(V)])
    out["wrong_size"] = keras.Sequential([inp(), L.Embedding(V, 4),
                                          L.GRU(4, return_sequences=True), L.Dense(V + 3)])
    out["mask_zero"] = keras.Sequential([inp(), L.Embedding(V, 4, mask_zero=True, name="e0"),
                                         L.GRU(4, return_sequences=True), L.Dense(V)])
    out["last_only"] = keras.Sequential([inp(), L.Embedding(V, 4), L.GRU(4, name="g"),
                                         L.Dense(V)])
    for name, m in out.items():
        m.save(d / f"bad_{name}.keras")
    return out


@pytest.mark.parametrize("name,line", [
    ("bidirectional", r"layer 'bi' \(Bidirectional\): reads the text in both directions"),
    ("conv", r"layer 'conv' \(Conv1D\): convolutions are not a recurrent step"),
    ("masking", r"layer 'mask' \(Masking\): masking skips time steps"),
    ("wrong_size", r"the output layer gives 34 logits, the vocabulary holds 31 entries"),
    ("mask_zero", r"layer 'e0' \(Embedding\): mask_zero=True skips id 0, which is a character"),
    ("last_only", r"layer 'g' \(GRU\): return_sequences=False"),
])
def test_refused_models_get_one_line(tmp_path, text_and_vocab, name, line):
    import re

    d, text, shuffled, chars = text_and_vocab
    if not (d / f"bad_{name}.keras").exists():
        _refused_models(d, len(shuffled))
    r = _import(d, f"bad_{name}.keras", "vocab.json", tmp_path / "run")
    assert r.exit_code == 1, r.output
    msg = r.output.strip()
    assert "\n" not in msg and re.search(line, msg), msg
    assert not (tmp_path / "run").exists()


def test_no_probe_text_is_refused(tmp_path, keras_models):
    d, _ = keras_models
    r = CliRunner().invoke(cli, ["import", str(d / "seq_gru.keras"), "--vocab",
                                 str(d / "vocab.json"), "-o", str(tmp_path / "run")])
    assert r.exit_code == 1 and "give --probe-text FILE" in r.output
    assert "does not invent one" in r.output and not (tmp_path / "run").exists()


# ---- hostile files: each refused in one line before Keras builds anything, nothing run -------

@pytest.fixture(scope="module")
def hostile(text_and_vocab):
    """Variants of one tiny saved model (untrained: nothing here gets far enough to run it)."""
    import zipfile

    import keras

    d, text, shuffled, chars = text_and_vocab
    V = len(shuffled)
    L = keras.layers
    h = d / "hostile"
    h.mkdir(exist_ok=True)
    keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(V, 4, name="emb"),
                      L.GRU(4, return_sequences=True), L.Dropout(0.1),
                      L.Dense(V)]).save(h / "plain.keras")
    keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(V, 4),
                      L.Lambda(lambda x: x * 2, name="lam"), L.GRU(4, return_sequences=True),
                      L.Dense(V)]).save(h / "lambda.keras")

    @keras.saving.register_keras_serializable(package="cwtest")
    class Double(L.Layer):
        def call(self, x):
            return x * 2

    keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(V, 4),
                      Double(name="dbl"), L.GRU(4, return_sequences=True),
                      L.Dense(V)]).save(h / "custom.keras")
    src = zipfile.ZipFile(h / "plain.keras")
    members = {i.filename: src.read(i) for i in src.infolist()}

    def variant(name, edit=None, extra=(), deflate=()):
        cfg = json.loads(members["config.json"])
        if edit:
            edit(cfg["config"]["layers"])
        with zipfile.ZipFile(h / name, "w") as z:
            for n, data in {**members, "config.json": json.dumps(cfg).encode(), **dict(extra)}.items():
                zi = zipfile.ZipInfo(n)
                zi.compress_type = zipfile.ZIP_DEFLATED if n in deflate else zipfile.ZIP_STORED
                with z.open(zi, "w") as f:
                    f.write(data)
                    if n in deflate:  # the padding: spaces, ~1000:1
                        for _ in range(64):
                            f.write(b" " * (1 << 20))

    variant("padded.keras", deflate=("config.json",))
    variant("huge_embedding.keras", lambda ls: ls[1]["config"].update(input_dim=2**31 - 1))
    variant("wide_embedding.keras", lambda ls: ls[1]["config"].update(input_dim=1_000_000,
                                                                      output_dim=4096))
    marker = h / "PWNED"
    variant("os_system.keras", lambda ls: ls.insert(2, {
        "module": "os", "class_name": "system", "registered_name": "system",
        "config": {"command": f"touch {marker}"}}))
    variant("os_system_activation.keras", lambda ls: ls[2]["config"].update(activation={
        "module": "os", "class_name": "system", "registered_name": "function",
        "config": f"touch {marker}"}))
    variant("traversal.keras", extra=[("../../evil.txt", b"x")])
    # an InputLayer declaring 1,114,113 features (Keras builds the next layer from it): a Dense
    # of 1.24e12 floats that was costed as 2,228,226 parameters, weights padded to match; a
    # GRU(8192) that ended in TensorFlow's out-of-memory error
    wide = {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
            "config": {"name": "wide_in", "batch_shape": [None, None, 1_114_113],
                       "dtype": "float32"}}
    variant("wide_input_dense.keras", lambda ls: ls.__setitem__(slice(None), [wide, {
        "module": "keras.layers", "class_name": "Dense", "registered_name": None,
        "config": {"name": "big", "units": 1_114_113}}]),
            extra=[("model.weights.h5", bytes(1_300_000))])
    variant("wide_input_gru.keras", lambda ls: ls.__setitem__(slice(None), [wide, {
        "module": "keras.layers", "class_name": "GRU", "registered_name": None,
        "config": {"name": "big", "units": 8192, "return_sequences": True}}]))
    data = (h / "plain.keras").read_bytes()
    (h / "truncated.keras").write_bytes(data[: len(data) // 2])
    return h


@pytest.mark.parametrize("name,line", [
    ("padded.keras", r"padded\.keras: member 'config\.json' unpacks to 67,\d{3},\d{3} bytes from "
                     r"[\d,]+: a decompression bomb"),
    ("huge_embedding.keras", r"layer 'emb' \(Embedding\): input_dim must be an integer in "
                             r"1\.\.1,114,114, got 2147483647"),
    ("wide_embedding.keras", r"its config declares 4,\d{3},\d{3},\d{3} parameters but the file "
                             r"holds [\d,]+ bytes of weights"),
    ("os_system.keras", r"layer 2 \('system'\): not supported"),
    ("os_system_activation.keras", r"layers\[2\]\.config\.activation names 'os\.system', which "
                                   r"is not part of Keras"),
    ("lambda.keras", r"layer 'lam' \(Lambda\): arbitrary Python code cannot be converted"),
    ("custom.keras", r"layer 'dbl' \(Double\): not supported"),
    ("traversal.keras", r"member '\.\./\.\./evil\.txt' has a path outside the archive"),
    ("wide_input_dense.keras", r"layer 'wide_in' \(InputLayer\): declares an input shape "
                               r"\[None, None, 1114113\] of 1,114,113 features; at most 65,536"),
    ("wide_input_gru.keras", r"layer 'wide_in' \(InputLayer\): declares an input shape "
                             r"\[None, None, 1114113\] of 1,114,113 features; at most 65,536"),
    ("truncated.keras", r"truncated\.keras: not a readable \.keras archive \(File is not a zip "
                        r"file\); the file is truncated or damaged"),
])
def test_hostile_files_are_refused_in_one_line(tmp_path, text_and_vocab, hostile, name, line):
    import re

    d = text_and_vocab[0]
    r = _import(d, f"hostile/{name}", "vocab.json", tmp_path / "run")
    msg = r.output.strip()
    assert r.exit_code == 1 and "\n" not in msg and "internal error" not in msg, msg
    assert re.search(line, msg), msg
    assert not (tmp_path / "run").exists() and not (hostile / "PWNED").exists()
    assert not (d.parent / "evil.txt").exists() and not (hostile.parent.parent / "evil.txt").exists()


def test_plain_variant_still_imports(tmp_path, text_and_vocab, hostile):
    """The checks refuse the variants, not the model they were made from."""
    r = _import(text_and_vocab[0], "hostile/plain.keras", "vocab.json", tmp_path / "run")
    assert r.exit_code == 0, r.output


def test_vocab_and_probe_text_reads_are_bounded(tmp_path, text_and_vocab):
    """/dev/zero or a FIFO as --vocab or --probe-text is refused at once (it would never end or
    block for ever), as is a file over the bound."""
    import os

    d = text_and_vocab[0]
    os.mkfifo(tmp_path / "fifo")
    model = d / "vocab.json"  # never reached
    for vocab, probe, line in [
        ("/dev/zero", d / "probe.txt", "vocabulary /dev/zero: not a regular file"),
        (d / "vocab.json", tmp_path / "fifo", f"--probe-text {tmp_path / 'fifo'}: not a regular "
                                              "file"),
    ]:
        r = CliRunner().invoke(cli, ["import", str(model), "--vocab", str(vocab), "--probe-text",
                                     str(probe), "-o", str(tmp_path / "run")])
        assert r.exit_code == 1 and line in r.output and r.output.count("\n") == 1, r.output
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate((16 << 20) + 1)
    r = CliRunner().invoke(cli, ["import", str(model), "--vocab", str(big), "--probe-text",
                                 str(d / "probe.txt"), "-o", str(tmp_path / "run")])
    assert r.exit_code == 1 and "more than 16 MiB" in r.output, r.output
