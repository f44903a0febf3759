"""trainer.importer.archive: a Keras model file is judged before Keras reads it (no TensorFlow here):
the archive's members, sizes and compression, then the config's classes, modules and sizes, and
the parameters it declares against the weights the file holds."""

import json
import zipfile

import pytest

from charwright.runtime.errors import ConfigError
from charwright.trainer.importer import archive as ia
from charwright.trainer.importer.archive import ImportRefused, check_config, check_model_file


def _layer(kind, name, module="keras.layers", **config):
    return {"module": module, "class_name": kind, "config": {"name": name, **config},
            "registered_name": None}


def _config(V=31, E=8, H=16, layers=None):
    """A Sequential config shaped like the one Keras 3 writes: Input -> Embedding -> GRU ->
    Dropout -> Dense."""
    layers = layers or [
        _layer("InputLayer", "input_layer", batch_shape=[None, None], dtype="int32"),
        _layer("Embedding", "embedding", input_dim=V, output_dim=E,
               embeddings_initializer={"module": "keras.initializers",
                                       "class_name": "RandomUniform", "config": {}}),
        _layer("GRU", "gru", units=H, return_sequences=True, reset_after=True,
               activation="tanh"),
        _layer("Dropout", "dropout", rate=0.2),
        _layer("Dense", "dense", units=V, activation="linear"),
    ]
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": "sequential", "layers": layers}}


def _params(V=31, E=8, H=16):
    return V * E + (E * 3 * H + H * 3 * H + 2 * 3 * H) + (H * V + V)


def _archive(path, config=None, weights=None, extra=(), config_bytes=None,
             method=zipfile.ZIP_STORED):
    """A .keras zip: metadata.json, config.json, model.weights.h5 (4 bytes per parameter)."""
    config = config or _config()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zi = zipfile.ZipInfo("config.json")
        zi.compress_type = method
        z.writestr(zi, config_bytes if config_bytes is not None else json.dumps(config))
        z.writestr("model.weights.h5", bytes(4 * _params() + 20_000 if weights is None
                                             else weights))
        for name, data, how in extra:
            zi = zipfile.ZipInfo(name)
            zi.compress_type = how
            z.writestr(zi, data)
    return path


def test_a_keras_shaped_archive_passes_with_its_parameter_count(tmp_path):
    assert check_model_file(_archive(tmp_path / "m.keras")) == _params()
    # GRU reset_after=False has one bias vector; an LSTM four gates; SimpleRNN one
    c = _config()
    c["config"]["layers"][2] = _layer("LSTM", "lstm", units=16)
    assert check_config(c, "x") == 31 * 8 + (8 * 64 + 16 * 64 + 64) + (16 * 31 + 31)


@pytest.mark.parametrize("name,data,how,line", [
    ("config.json", b" " * (17 << 20), zipfile.ZIP_STORED,
     r"config\.json unpacks to 17,825,792 bytes, more than the 16 MiB a model's config\.json"),
    ("assets/zeros.bin", bytes(8 << 20), zipfile.ZIP_DEFLATED,
     r"member 'assets/zeros\.bin' unpacks to 8,388,608 bytes from [\d,]+: a decompression bomb"),
    ("x.bin", b"x", zipfile.ZIP_BZIP2, r"member 'x\.bin' uses compression method 12"),
    ("../../evil.txt", b"x", zipfile.ZIP_STORED, r"member '\.\./\.\./evil\.txt' has a path outside"),
    ("/tmp/abs.txt", b"x", zipfile.ZIP_STORED, r"member '/tmp/abs\.txt' has a path outside"),
    ("a\\..\\..\\b", b"x", zipfile.ZIP_STORED, r"has a path outside the archive"),
    ("C:/w.txt", b"x", zipfile.ZIP_STORED, r"has a path outside the archive"),
])
def test_archive_members_are_bounded(tmp_path, name, data, how, line):
    import re

    extra = [(name, data, how)]
    if name == "config.json":  # the padded config replaces the real one
        path = _archive(tmp_path / "m.keras", config_bytes=data)
    else:
        path = _archive(tmp_path / "m.keras", extra=extra)
    with pytest.raises(ConfigError) as e:
        check_model_file(path)
    assert re.search(line, str(e.value)) and "\n" not in str(e.value), str(e.value)


def test_padded_deflated_config_is_refused_from_the_directory(tmp_path):
    """The issue's attack: a config.json padded with spaces packs ~1000:1 (512 MiB in half a
    megabyte); it is refused from the zip directory, before a byte is inflated."""
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", "{}")
        zi = zipfile.ZipInfo("config.json")
        zi.compress_type = zipfile.ZIP_DEFLATED
        with z.open(zi, "w") as f:
            f.write(json.dumps(_config()).encode())
            for _ in range(64):
                f.write(b" " * (1 << 20))
        z.writestr("model.weights.h5", bytes(4 * _params()))
    with pytest.raises(ConfigError, match=r"member 'config\.json' unpacks to 67,1\d\d,\d{3} bytes "
                       r"from [\d,]+: a decompression bomb"):
        check_model_file(path)


def test_too_many_members_truncated_and_not_zip(tmp_path):
    path = _archive(tmp_path / "m.keras", extra=[(f"assets/{i}", b"", zipfile.ZIP_STORED)
                                                 for i in range(ia.MAX_MEMBERS)])
    with pytest.raises(ConfigError, match=r"members; a \.keras archive holds a few"):
        check_model_file(path)
    data = _archive(tmp_path / "ok.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=r"cut\.keras: not a readable \.keras archive \(File is "
                       r"not a zip file\); the file is truncated or damaged"):
        check_model_file(tmp_path / "cut.keras")
    with zipfile.ZipFile(tmp_path / "noconf.keras", "w") as z:
        z.writestr("model.weights.h5", b"")
    with pytest.raises(ConfigError, match=r"no config\.json; not a \.keras model archive"):
        check_model_file(tmp_path / "noconf.keras")


@pytest.mark.parametrize("edit,line", [
    (lambda c: c[1]["config"].update(input_dim=2**31 - 1),
     r"layer 'embedding' \(Embedding\): input_dim must be an integer in 1\.\.1,114,114, got "
     r"2147483647"),
    (lambda c: c[1]["config"].update(output_dim=True),
     r"layer 'embedding' \(Embedding\): output_dim must be an integer in 1\.\.65,536, got True"),
    (lambda c: c[2]["config"].update(units=10**6),
     r"layer 'gru' \(GRU\): units must be an integer in 1\.\.8,192, got 1000000"),
    (lambda c: c[4]["config"].update(units="31"),
     r"layer 'dense' \(Dense\): units must be an integer in 1\.\.1,114,114, got '31'"),
    (lambda c: c[0]["config"].update(batch_shape=[None, None, 2**40]),
     r"batch_shape \[None, None, 1099511627776\] declares an axis of 1099511627776"),
    (lambda c: c[2].update(build_config={"input_shape": [None, None, -5]}),
     r"input_shape \[None, None, -5\] declares an axis of -5"),
    (lambda c: c.insert(2, _layer("Lambda", "lam", function={"class_name": "__lambda__",
                                                             "config": {"code": "AAAA"}})),
     r"layer 'lam' \(Lambda\): arbitrary Python code cannot be converted"),
    (lambda c: c.insert(2, _layer("Double", "dbl", module="my_layers")),
     r"layer 'dbl' \(Double\): not supported"),
    (lambda c: c.insert(2, {"module": "os", "class_name": "system",
                            "config": {"command": "touch PWNED"}}),
     r"layer 2 \('system'\): not supported"),
    (lambda c: c[2]["config"].update(activation={"module": "os", "class_name": "system",
                                                 "config": "touch PWNED"}),
     r"layers\[2\]\.config\.activation names 'os\.system', which is not part of Keras"),
    (lambda c: c[2]["config"].update(activation={"module": "builtins", "class_name": "function",
                                                 "config": "my_act"}),
     r"layers\[2\]\.config\.activation names 'builtins\.function', which is not part of Keras"),
    (lambda c: c[2]["config"].update(kernel_initializer={"class_name": "__lambda__",
                                                         "config": {"code": "AAAA"}}),
     r"layers\[2\]\.config\.kernel_initializer holds a Python function"),
    (lambda c: c.insert(2, _layer("Bidirectional", "bi")),
     r"layer 'bi' \(Bidirectional\): reads the text in both directions"),
    (lambda c: c.insert(2, _layer("Sequential", "inner", module="keras")),
     r"layer 'inner' \(Sequential\): not supported"),
])
def test_config_is_checked_before_keras(tmp_path, edit, line):
    import re

    c = _config()
    edit(c["config"]["layers"])
    with pytest.raises(ImportRefused) as e:
        check_model_file(_archive(tmp_path / "m.keras", c))
    assert re.search(line, str(e.value)) and "\n" not in str(e.value), str(e.value)


def test_declared_parameters_must_fit_the_weights(tmp_path, monkeypatch):
    """Sizes in range one by one, but an Embedding of 1,000,000 x 4,096 in a file of 27 KB:
    refused before Keras allocates 16 GB; weights far larger than the config needs: refused."""
    c = _config(V=1_000_000, E=4096)
    with pytest.raises(ConfigError, match=r"its config declares 4,\d{3},\d{3},\d{3} parameters "
                       r"but the file holds [\d,]+ bytes of weights"):
        check_model_file(_archive(tmp_path / "big.keras", c))
    monkeypatch.setattr(ia, "OVERHEAD", 1 << 16)
    with pytest.raises(ConfigError, match=rf"holds 400,000 bytes of weights for the {_params():,} "
                       "parameters its config declares"):
        check_model_file(_archive(tmp_path / "pad.keras", weights=400_000))


def test_top_level_must_be_sequential_or_functional(tmp_path):
    c = {"module": "my_models", "class_name": "MyModel", "config": {"layers": []}}
    with pytest.raises(ImportRefused, match=r"the model is a 'MyModel'; charwright imports a "
                       r"Sequential or functional"):
        check_model_file(_archive(tmp_path / "m.keras", c))
    with pytest.raises(ConfigError, match=r"config\.json: malformed JSON \(nested too deeply\)"):
        check_model_file(_archive(tmp_path / "d.keras", config_bytes="[" * 100_000))


def test_legacy_h5_config_is_checked(tmp_path):
    h5py = pytest.importorskip("h5py")
    c = _config()
    c["config"]["layers"][1]["config"]["input_dim"] = 2**31 - 1
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.attrs["model_config"] = json.dumps(c)
    with pytest.raises(ImportRefused, match=r"input_dim must be an integer in 1\.\.1,114,114"):
        check_model_file(tmp_path / "m.h5")
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.create_dataset("x", data=[1.0])
    with pytest.raises(ConfigError, match=r"no model_config; a weights-only file needs the stack"):
        check_model_file(tmp_path / "w.h5")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(ConfigError, match=r"bad\.h5: not a readable HDF5 model file"):
        check_model_file(tmp_path / "bad.h5")


def test_compile_config_is_not_judged(tmp_path):
    """load_model(compile=False) never reads compile_config: a custom loss there is no reason to
    refuse the model; a shape declared outside the layers (the model's build_config) is."""
    c = _config()
    c["compile_config"] = {"loss": {"module": "my_losses", "class_name": "Focal", "config": {}}}
    assert check_model_file(_archive(tmp_path / "m.keras", c)) == _params()
    c["build_config"] = {"input_shape": [None, 2**40]}
    with pytest.raises(ImportRefused, match=r"input_shape \[None, 1099511627776\] declares an "
                       r"axis of 1099511627776"):
        check_model_file(_archive(tmp_path / "b.keras", c))


def _wide_input(*after):
    """The reviewer's bypass: an InputLayer declaring 1,114,113 features (Keras 3's Sequential
    builds the next layer from its batch_shape), then `after`."""
    return _config(layers=[_layer("InputLayer", "input_layer",
                                  batch_shape=[None, None, ia.MAX_IDS - 1], dtype="float32"),
                           *after])


@pytest.mark.parametrize("config,weights", [
    # a Dense of 1,114,113 x 1,114,113 (1.24e12 floats) that the check costed as 2,228,226
    # parameters, with a 1.3 MB model.weights.h5 to match: accepted before, then built
    (_wide_input(_layer("Dense", "dense", units=ia.MAX_IDS - 1)), 1_300_000),
    # a GRU(8192) on the same input: TensorFlow's out-of-memory error before (costed as
    # 201,400,320 parameters, so a 200 MB weights member passed; refused now whatever the
    # weights); a GRU(256) is the same bypass in the small weights member here (costed as
    # 199,936 parameters, its kernel 3.4 GB)
    (_wide_input(_layer("GRU", "gru", units=8192, return_sequences=True)), None),
    (_wide_input(_layer("GRU", "gru", units=256, return_sequences=True),
                 _layer("Dense", "dense", units=31)), None),
])
def test_a_wide_declared_input_is_refused(tmp_path, config, weights):
    path = _archive(tmp_path / "m.keras", config, weights=weights)
    with pytest.raises(ImportRefused, match=r"layer 'input_layer' \(InputLayer\): declares an "
                       r"input shape \[None, None, 1114113\] of 1,114,113 features; at most "
                       r"65,536 are read") as e:
        check_model_file(path)
    assert "\n" not in str(e.value)


def test_a_layer_is_costed_from_every_declared_input_width(tmp_path):
    """Any declared shape gives the next layer its width (an InputLayer's batch_shape, a legacy
    batch_input_shape, the model's build_input_shape); a Dense or recurrent layer with none is
    refused; a one-hot width above MAX_WIDTH passes where the layers before produce it."""
    dense = _layer("Dense", "dense", units=1000)
    c = _wide_input(dense)
    c["config"]["layers"][0]["config"]["batch_shape"] = [None, None, 60_000]
    assert check_config(c, "x") == 60_000 * 1000 + 1000
    c["config"]["layers"][0]["config"] = {"name": "in", "batch_input_shape": [None, None, 500]}
    assert check_config(c, "x") == 500 * 1000 + 1000
    c["config"]["layers"] = [dense]
    with pytest.raises(ImportRefused, match=r"layer 'dense' \(Dense\): its input width is "
                       r"declared nowhere"):
        check_config(c, "x")
    c["config"]["build_input_shape"] = [None, None, 700]
    assert check_config(c, "x") == 700 * 1000 + 1000
    c["config"]["build_input_shape"] = [None, None, 70_000]
    with pytest.raises(ImportRefused, match=r"x: declares an input shape \[None, None, 70000\] "
                       r"of 70,000 features; at most 65,536"):
        check_config(c, "x")
    del c["config"]["build_input_shape"]
    c["build_config"] = {"input_shape": [None, None, 70_000]}
    with pytest.raises(ImportRefused, match=r"of 70,000 features"):
        check_config(c, "x")
    # a GRU's own build_config wider than the embedding before it: costed, then over the bound
    c = _config()
    c["config"]["layers"][2]["build_config"] = {"input_shape": [None, None, 1000]}
    assert check_config(c, "x") == _params() + (1000 - 8) * 3 * 16
    c["config"]["layers"][2]["build_config"] = {"input_shape": [None, None, 100_000]}
    with pytest.raises(ImportRefused, match=r"layer 'gru' \(GRU\): declares an input shape "
                       r"\[None, None, 100000\]"):
        check_config(c, "x")
    # one-hot: a CategoryEncoding of 70,000 feeds a GRU built for 70,000, a Dense of 70,000
    # feeds a Softmax built for it (what Keras writes for such a model)
    V, H = 70_000, 4
    c = _config(layers=[
        _layer("InputLayer", "input_layer", batch_shape=[None, None], dtype="int32"),
        {**_layer("CategoryEncoding", "onehot", num_tokens=V, output_mode="one_hot"),
         "build_config": {"input_shape": [None, None]}},
        {**_layer("GRU", "gru", units=H, return_sequences=True),
         "build_config": {"input_shape": [None, None, V]}},
        {**_layer("Dense", "dense", units=V), "build_config": {"input_shape": [None, None, H]}},
        {**_layer("Softmax", "softmax"), "build_config": {"input_shape": [None, None, V]}},
    ])
    assert check_config(c, "x") == V * 3 * H + H * 3 * H + 2 * 3 * H + H * V + V
