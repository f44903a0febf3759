"""Checks on a Keras model file before Keras reads a byte of it: the archive's bounds, then the
architecture's sizes and classes from its config, the way runtime/files/npz.py checks a bundle's
arrays from their headers.

keras.saving.load_model trusts the file: a .keras whose config.json is padded to 512 MiB (half a
megabyte compressed) is inflated and parsed, and a config that claims an Embedding of 2**31 rows
is built, its variables allocated, before the weights are found not to fit. So, first:

    the archive (.keras)   a zip of regular members with plain relative names, stored or
                           deflated, each unpacking to at most MAX_RATIO x its packed size
                           (+1 MiB), config.json at most MAX_CONFIG_BYTES, metadata.json at most
                           1 MiB, at most MAX_UNPACKED in all
    the config             parsed here; every layer one charwright imports (anything else, a
                           Lambda, a custom or nested class, is refused naming the layer), every
                           serialized object from Keras's own modules (never "os", "builtins"),
                           every size an int in its range, every declared shape bounded (a
                           feature axis, the last of three or more, at MAX_WIDTH unless it is
                           the one-hot or Dense width the layers before produce)
    the sizes              the parameters the config declares need at least one byte each (int8
                           is the smallest type Keras stores), so they must fit in the weights the
                           file holds; and the weights may not be larger than 8 bytes per
                           parameter (float64) plus the container's overhead. A layer's input
                           width is the widest of what the layers before it produce and every
                           shape declared for it or the model (an InputLayer's batch_shape, a
                           build_config), since Keras builds from either; a Dense or recurrent
                           layer whose input width is nowhere declared is refused

A legacy .h5 keeps its config in the "model_config" attribute: the same config checks, with the
file itself as the weights. All failures are one line: ImportRefused naming the layer, or
ConfigError naming the file and member.

(About 317 lines, one idea: what is refused before Keras reads the file; the archive and the
config checks share their limits and refusal texts, so they stay together.)
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from charwright.runtime.bundle.architecture import GATES
from charwright.runtime.bundle.manifest import MAX_VOCAB, show
from charwright.runtime.errors import ConfigError, require
from charwright.runtime.files.npz import zip_member_problem

MAX_MEMBERS = 256
MAX_RATIO = 100  # Keras stores its members; deflated JSON packs ~10x, random weights ~1x
MAX_CONFIG_BYTES = 16 << 20  # a 64-layer config is ~250 KB
MAX_METADATA_BYTES = 1 << 20
MAX_UNPACKED = 16 << 30
MAX_LAYERS = 256  # entries in the config's layer list, dropout and input layers included
MAX_UNITS = 8192  # the recurrent layer's bound in trainer/config.py's layer_spec
MAX_WIDTH = 65_536  # an embedding's width, a declared feature axis
MAX_IDS = MAX_VOCAB + 2  # every code point, plus StringLookup's mask and [UNK]
OVERHEAD = 16 << 20  # h5 headers and the archive's own bytes, far above any real model's
_SHAPE_KEYS = ("batch_shape", "batch_input_shape", "input_shape", "shape", "build_input_shape")
_TOP = ("Sequential", "Functional", "Model")
RECURRENT = {"GRU": "gru", "LSTM": "lstm", "SimpleRNN": "rnn"}  # Keras class -> charwright cell
IDENTITY_LAYERS = ("Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise",
                   "AlphaDropout", "InputLayer")  # identities at inference
NO_WEIGHTS = (*IDENTITY_LAYERS, "Softmax", "Activation", "Masking")
ACCEPTED = ("Embedding", "CategoryEncoding", "Dense", *RECURRENT, *NO_WEIGHTS)
WHY_REFUSED = {"Bidirectional": "reads the text in both directions; a generator only has the "
                                "past",
               "Conv1D": "convolutions are not a recurrent step",
               "Attention": "attention is not a recurrent step",
               "MultiHeadAttention": "attention is not a recurrent step",
               "Lambda": "arbitrary Python code cannot be converted"}
NOT_SUPPORTED = ("not supported (charwright imports Embedding|one-hot -> GRU/LSTM/SimpleRNN -> "
                 "Dense, with Dropout between)")


class ImportRefused(ConfigError):
    """The model holds something charwright cannot run; the message names the layer."""


def check_model_file(path: Path) -> int:
    """Checks a .keras or legacy .h5 file before Keras loads it; returns the number of
    parameters its config declares. Raises ConfigError (the archive) or ImportRefused (a
    layer)."""
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        config, weights_bytes = _legacy_h5_config(path)
    else:
        config, weights_bytes = _keras_archive_config(path)
    params = check_config(config, str(path))
    if params > weights_bytes + OVERHEAD // 16:
        raise ConfigError(f"{path}: its config declares {params:,} parameters but the file "
                          f"holds {weights_bytes:,} bytes of weights; the file is damaged or "
                          "its config was edited")
    if weights_bytes > 8 * params + OVERHEAD:
        raise ConfigError(f"{path}: holds {weights_bytes:,} bytes of weights for the "
                          f"{params:,} parameters its config declares; the file is damaged or "
                          "padded")
    return params


def _keras_archive_config(path: Path) -> tuple[dict, int]:
    """(config.json parsed, bytes of every other member) of a .keras zip, bounds checked."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ConfigError(f"{path}: {len(infos)} members; a .keras archive holds a "
                                  f"few (at most {MAX_MEMBERS} are read)")
            names = {}
            for i in infos:
                _check_member(path, i)
                names[i.filename] = i
            if sum(i.file_size for i in infos) > MAX_UNPACKED:
                raise ConfigError(f"{path}: unpacks to more than {MAX_UNPACKED >> 30} GiB")
            if "config.json" not in names:
                raise ConfigError(f"{path}: no config.json; not a .keras model archive (for "
                                  "a weights-only file give the stack with --stack)")
            for name, limit in (("config.json", MAX_CONFIG_BYTES),
                                ("metadata.json", MAX_METADATA_BYTES)):
                if name in names and names[name].file_size > limit:
                    raise ConfigError(f"{path}: {name} unpacks to {names[name].file_size:,} "
                                      f"bytes, more than the {limit >> 20} MiB a model's "
                                      f"{name} needs; the archive is damaged or padded")
            text = zf.read(names["config.json"])
    except ConfigError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error,
            NotImplementedError, RuntimeError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable .keras archive ({e}); the file is "
                          "truncated or damaged") from None
    weights = sum(i.file_size for n, i in names.items()
                  if n not in ("config.json", "metadata.json"))
    return _parse(text, f"{path}: config.json"), weights


def _check_member(path: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    p = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or p.is_absolute() or ".." in p.parts
            or name[1:2] == ":"):
        raise ConfigError(f"{path}: member {show(name)} has a path outside the archive; the "
                          "file was not written by Keras")
    if info.flag_bits & 0x1:
        raise ConfigError(f"{path}: member {show(name)} is encrypted")
    problem = zip_member_problem(info, MAX_RATIO)
    if problem:
        raise ConfigError(f"{path}: member {show(name)} {problem}")


def _legacy_h5_config(path: Path) -> tuple[dict, int]:
    """(model_config parsed, the file's size) of a legacy HDF5 model file."""
    h5py = require("h5py", "train")
    size = path.stat().st_size
    try:
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise ConfigError(f"{path}: no model_config; a weights-only file needs the "
                                  "stack given with --stack")
            text = f.attrs["model_config"]  # in the file, uncompressed: at most its size
    except ConfigError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ConfigError(f"{path}: not a readable HDF5 model file ({e})") from None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        raise ConfigError(f"{path}: model_config is not text")
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: model_config holds {len(text):,} characters, more than the "
                          f"{MAX_CONFIG_BYTES >> 20} MiB a model's config needs")
    return _parse(text, f"{path}: model_config"), size


def _parse(text, where: str) -> dict:
    try:
        config = json.loads(text)
    except RecursionError:
        raise ConfigError(f"{where}: malformed JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: malformed JSON ({e})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: must be an object, got {show(config)}")
    return config


def check_config(config: dict, where: str) -> int:
    """The declared parameter count of a serialized Keras model, after checking its classes,
    modules and sizes (see the module docstring)."""
    kind = config.get("class_name")
    inner = config.get("config")
    if kind not in _TOP or not isinstance(inner, dict):
        raise ImportRefused(f"{where}: the model is a {show(kind)}; charwright imports a "
                            "Sequential or functional Keras model (a subclassed model: save its "
                            "weights and give the stack with --stack)")
    layers = inner.get("layers")
    if not isinstance(layers, list) or not layers or len(layers) > MAX_LAYERS:
        raise ImportRefused(f"{where}: the model's layers must be a list of 1 to {MAX_LAYERS}, "
                            f"got {show(layers)}")
    # every declared shape's axes first (a width read below is then 0..MAX_IDS); compile_config
    # is left out (load_model(compile=False) never reads it, and a custom loss there must not
    # refuse the model)
    top = {k: v for k, v in config.items() if k != "compile_config"}
    _check_shapes(top, where)
    # the model's own declared input (a Sequential without an InputLayer is built from it)
    params, width = 0, _declared_width([config.get("build_config"), inner], 0, where)
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("config"), dict):
            raise ImportRefused(f"{where}: layer {i} is not a serialized layer ({show(layer)})")
        kind, c = layer.get("class_name"), layer["config"]
        name = c.get("name", layer.get("name"))
        label = f"layer {name!r} ({kind})" if isinstance(name, str) and isinstance(kind, str) \
            else f"layer {i} ({show(kind)})"
        if kind not in ACCEPTED:
            raise ImportRefused(f"{label}: {WHY_REFUSED.get(kind, NOT_SUPPORTED)}")
        width = max(width, _declared_width([c, layer.get("build_config")], width, label))
        if kind in ("Dense", *RECURRENT) and not width:
            raise ImportRefused(f"{label}: its input width is declared nowhere (no Embedding or "
                                "one-hot CategoryEncoding before it, no input shape); "
                                "charwright imports Embedding|one-hot -> GRU/LSTM/SimpleRNN -> "
                                "Dense")
        if kind == "Embedding":
            rows = _size(c, "input_dim", MAX_IDS, label)
            width = _size(c, "output_dim", MAX_WIDTH, label)
            params += rows * width
        elif kind == "CategoryEncoding":
            width = _size(c, "num_tokens", MAX_IDS, label)
        elif kind in RECURRENT:
            units = _size(c, "units", MAX_UNITS, label)
            g = GATES[RECURRENT[kind]] * units
            bias = 2 * g if kind == "GRU" and c.get("reset_after", True) is not False else g
            params += max(width, 1) * g + units * g + bias
            width = units
        elif kind == "Dense":
            units = _size(c, "units", MAX_IDS, label)
            params += max(width, 1) * units + units
            width = units
    # then every object inside
    _check_modules(top, where, "")
    return params


def _size(c: dict, key: str, maximum: int, label: str) -> int:
    v = c.get(key)
    if type(v) is not int or not 1 <= v <= maximum:
        raise ImportRefused(f"{label}: {key} must be an integer in 1..{maximum:,}, got {show(v)}")
    return v


def _declared_width(sources: list, width: int, label: str) -> int:
    """The widest last axis of the shapes declared in `sources` (a layer's config and
    build_config, or the model's): Keras builds a layer from any of them, so its kernel is at
    least that wide; 0 if none is. A feature axis (the last of three or more: batch, time,
    features) is bounded at MAX_WIDTH unless it is `width`, what the layers before produce (a
    one-hot CategoryEncoding's or a Dense layer's output, up to MAX_IDS): a declared input of
    a million features is refused here rather than costed as one."""
    found = 0
    for src in sources:
        if not isinstance(src, dict):
            continue
        shapes = [src.get(k) for k in _SHAPE_KEYS]
        if isinstance(src.get("shapes_dict"), dict):
            shapes += list(src["shapes_dict"].values())
        for shape in shapes:
            if not (isinstance(shape, list) and shape and type(shape[-1]) is int):
                continue  # no shape, or an unknown last axis (_check_shapes judges the rest)
            d = shape[-1]
            if len(shape) >= 3 and d > MAX_WIDTH and d != width:
                raise ImportRefused(f"{label}: declares an input shape {show(shape)} of "
                                    f"{d:,} features; at most {MAX_WIDTH:,} are read (a "
                                    "one-hot input comes from a CategoryEncoding layer)")
            found = max(found, d)
    return found


def _check_modules(obj, where: str, at: str, depth: int = 0) -> None:
    """Every serialized object names a module of Keras itself (never os, builtins or a user's
    module, whose code Keras would import) and no function given as code; `at` is the JSON
    path shown."""
    if depth > 64:
        raise ImportRefused(f"{where}: nested too deeply (at {at})")
    if isinstance(obj, dict):
        module, kind = obj.get("module"), obj.get("class_name")
        if module is not None and not (isinstance(module, str) and (
                module == "keras" or module.startswith("keras."))):
            raise ImportRefused(f"{where}: {at or 'the model'} names {show(f'{module}.{kind}')}, "
                                "which is not part of Keras; charwright imports only Keras's "
                                "own layers (no custom objects, no code)")
        if kind in ("__lambda__", "function", "__function__"):
            raise ImportRefused(f"{where}: {at or 'the model'} holds a Python function "
                                f"({show(obj.get('config'))}); charwright imports only Keras's "
                                "own layers (no custom objects, no code)")
        for k, v in obj.items():
            _check_modules(v, where, f"{at}.{k}".lstrip(".") if len(at) < 200 else at,
                           depth + 1)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_modules(v, where, f"{at}[{i}]" if len(at) < 200 else at, depth + 1)


def _check_shapes(obj, where: str, depth: int = 0) -> None:
    """Every declared shape (input layers, build configs) has axes of None or 0..MAX_IDS."""
    if depth > 64:
        return  # _check_modules has refused it already
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "shapes_dict" and isinstance(v, dict):  # a build_config's shapes by name
                for shape in v.values():
                    _check_shapes({"input_shape": shape}, where, depth + 1)
            elif k in _SHAPE_KEYS and isinstance(v, list):
                for d in v:
                    if d is not None and (type(d) is not int or not 0 <= d <= MAX_IDS):
                        raise ImportRefused(f"{where}: {k} {show(v)} declares an axis of "
                                            f"{show(d)}; at most {MAX_IDS:,} is read")
            else:
                _check_shapes(v, where, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            _check_shapes(v, where, depth + 1)
