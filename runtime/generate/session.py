"""One generating row that can stop, be saved, and go on: feed text, generate, snapshot, restore,
fork, save and load.

    s = model.session()                    or Session(model, seed=7)
    s.feed("ROMEO:")                       primes (the first feed starts as a prompt does)
    a = s.generate(100, SamplingConfig(temperature=0.8, seed=7))
    snap = s.snapshot()                    state, pending logits, history, coins, sampler state
    b = s.generate(100)                    same config; a + b == model.generate("ROMEO:", 200, cfg)
    s.restore(snap); s.generate(100) == b
    kids = s.fork(4)                       4 sessions, rows 0..3 of the same seed
    complete_together(kids, 100)           their rows advanced in one batch (Completions)
    s.save("romeo.npz"); Session.load("romeo.npz", model)

What a session holds between calls: the recurrent state after every id fed so far (the prompt,
fed text and generated ids, the last one included), the logits for the next id, the last
WINDOW_MAX ids (the repetition penalty's window comes from them, as it comes from a prompt),
the position (ids fed), the row's coin stream (seed, row id, coins drawn) and the rest of its
sampler's row state after the last call (row_state's "dfa", for the record). Continuing is
exact: generate(a) then generate(b) gives the text one generate(a + b) gives, on every backend,
because every step is the step the uninterrupted run takes (batch 1) and the sampler takes its
coins and window where they were (Sampler.row_state). Stop strings: a call with hold=True
keeps, at max_chars, the text that may still begin a stop string (Session.held, saved in a
snapshot with each stop's matched length) and the next call with the same stop strings goes on
matching it, so the cut is exact there too; with hold=False (the default) that text is returned
at the cut and the next call matches afresh (a stop string spanning the cut is not found). A
regex's match never spans calls: each call's text is one whole match of its own (the automaton
starts afresh, with that call's max_chars as its length budget). A session's text after "eos" goes on from the end-of-sequence id (a new line, in line
mode).

Seeds. generate(sampling) takes the config's seed; None keeps the session's (or draws one the
first time). A seed other than the session's starts that seed's stream at coin 0.

The snapshot file (save/load) is a small npz, version 1, read without pickle and checked like a
bundle file (size bound, zip members, every array's shape and dtype, ids in the vocabulary):

    meta      text, JSON: format "charwright-snapshot", version 1, manifest_sha256 (of the
              bundle's manifest, canonical JSON), file (format:precision) and file_sha256 (the
              model file the state came from), position, seed, row, coins, sampling (the last
              config's fields or null), extra (sampler row state: "dfa"), stop (null, or
              the held text: stops, kmp, held, go_on; _check_stop)
    state     float32 [state_size]
    logits    float32 [vocab] (absent before the first feed)
    history   int32 [<= 65536], the last ids fed, oldest first

A snapshot of another bundle or another file is refused with one line (BundleError): states of
two files differ in their last bits, and an int8 file's state is not a float file's.
Not thread-safe: one thread drives a session.

(About 660 lines, two ideas: the Session and the snapshot file (Snapshot: load, save,
check); the snapshot file belongs in its own module, generate/snapshot.py: not split yet.)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import weakref
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from charwright.runtime.errors import BundleError, ConfigError
from charwright.runtime.files.atomic import write_bytes
from charwright.runtime.files.npz import Npz
from charwright.runtime.files.safefile import read_bytes
from charwright.runtime.generate.batch import encode_prompt
from charwright.runtime.generate.generator import Generator
from charwright.runtime.generate.text_stream import TextStream
from charwright.runtime.sampling.config import (SEED_MAX, WINDOW_MAX, SamplingConfig,
                                                make_sampler, resolve_seed)

FORMAT = "charwright-snapshot"
VERSION = 1
MAX_HISTORY = WINDOW_MAX
MAX_META_CHARS = 1 << 16
_ROW_KEYS = ("seed", "row", "coins", "window")  # row_state keys the session keeps itself


def manifest_sha256(bundle) -> str:
    """sha256 of the bundle's manifest as canonical JSON (sorted keys, compact): what ties a
    snapshot to its bundle."""
    text = json.dumps(bundle.manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """A session at one moment (see the module docstring); arrays are the snapshot's own."""

    manifest_sha256: str
    file: str  # the model file's "format:precision"
    file_sha256: str
    state: np.ndarray  # float32 [S]
    logits: np.ndarray | None  # float32 [V]; None before the first feed
    history: np.ndarray  # int32 [<= MAX_HISTORY]
    position: int
    seed: int | None
    row: int
    coins: int
    sampling: dict | None = None
    extra: dict = field(default_factory=dict)
    stop: dict | None = None  # text held at a length limit (Session.held): see _check_stop

    def save(self, path) -> None:
        """Writes the snapshot to `path` atomically. Refuses (ConfigError) to replace anything
        but a snapshot file: a directory, a link, a device, or another file."""
        _check_target(path)
        path = Path(path)
        meta = {"format": FORMAT, "version": VERSION, "manifest_sha256": self.manifest_sha256,
                "file": self.file, "file_sha256": self.file_sha256, "position": self.position,
                "seed": self.seed, "row": self.row, "coins": self.coins,
                "sampling": self.sampling, "extra": self.extra, "stop": self.stop}
        try:
            text = json.dumps(meta, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"this session's state cannot be saved ({e})") from None
        arrays = {"meta": np.array(text),
                  "state": np.asarray(self.state, np.float32),
                  "history": np.asarray(self.history, np.int32)}
        if self.logits is not None:
            arrays["logits"] = np.asarray(self.logits, np.float32)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            write_bytes(path, buf.getvalue())
        except OSError as e:
            raise ConfigError(f"{path}: cannot write the snapshot ({e.strerror or e})") from None

    @classmethod
    def load(cls, path, model) -> Snapshot:
        """Reads a snapshot file for `model` (its bundle and file). Raises BundleError, one
        line naming the file: not a snapshot, damaged, another version, another bundle or
        file, bad shapes, dtypes or values."""
        path = Path(path)
        S, V = model.bundle.state_size, model.vocab.size
        npz, meta = _read(path, 4 * (S + V + MAX_HISTORY) + 4 * MAX_META_CHARS + (1 << 16))
        _check_origin(path, meta, model)
        npz.expect("state", (S,), "f")
        npz.expect("history", (None,), "iu")
        n = npz.shape("history")[0]
        if n > MAX_HISTORY:
            raise BundleError(f"{path}: a history of {n:,} ids; at most {MAX_HISTORY:,}")
        has_logits = npz.expect("logits", (V,), "f", optional=True)
        state = npz.load("state").astype(np.float32)
        logits = npz.load("logits").astype(np.float32) if has_logits else None
        history = npz.load("history")
        if n and (history.min() < 0 or history.max() >= V):
            raise BundleError(f"{path}: the history holds ids outside 0..{V - 1}")
        snap = cls(state=state, logits=logits, history=history.astype(np.int32),
                   **_check_meta(path, meta, n, has_logits))
        snap.check(model, str(path))
        return snap

    def check(self, model, where: str = "Session.restore") -> None:
        """BundleError (one line starting with `where`) unless this snapshot continues `model`:
        its bundle and file, the state's and logits' shapes, dtypes and finiteness, history ids
        in the vocabulary, position, seed, row and coins integers that agree with the history
        and logits, a valid sampling configuration, a sampler state of integers. Snapshot.load
        and Session.restore both check with it."""
        _check_origin(where, {"manifest_sha256": self.manifest_sha256, "file": self.file,
                              "file_sha256": self.file_sha256}, model)
        S, V = model.bundle.state_size, model.vocab.size
        bad = f"{where}: a damaged snapshot"
        state, logits, history = self.state, self.logits, self.history
        if not (isinstance(state, np.ndarray) and state.shape == (S,) and state.dtype.kind == "f"):
            raise BundleError(f"{bad} (its state must be a float array of {S} values)")
        if logits is not None and not (isinstance(logits, np.ndarray) and logits.shape == (V,)
                                       and logits.dtype.kind == "f"):
            raise BundleError(f"{bad} (its logits must be a float array of {V} values)")
        if not np.isfinite(state).all() or (logits is not None and not np.isfinite(logits).all()):
            raise BundleError(f"{where}: the state or logits hold NaN or infinity")
        if not (isinstance(history, np.ndarray) and history.ndim == 1
                and history.dtype.kind in "iu" and len(history) <= MAX_HISTORY):
            raise BundleError(f"{bad} (its history must be at most {MAX_HISTORY:,} integer ids)")
        if len(history) and (history.min() < 0 or history.max() >= V):
            raise BundleError(f"{where}: the history holds ids outside 0..{V - 1}")
        _check_meta(where, {"manifest_sha256": self.manifest_sha256, "file": self.file,
                            "file_sha256": self.file_sha256, "position": self.position,
                            "seed": self.seed, "row": self.row, "coins": self.coins,
                            "sampling": self.sampling, "extra": self.extra,
                            "stop": self.stop},
                    len(history), logits is not None)


def _read(path: Path, limit: int) -> tuple[Npz, dict]:
    """The checked archive and its meta (format and version checked)."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise BundleError(f"{path}: a directory, not a snapshot file")
        if not stat.S_ISREG(mode):
            raise BundleError(f"{path}: not a regular file (a FIFO or a device); a snapshot is "
                              "a file that --save-state or Session.save wrote")
    except FileNotFoundError:
        raise BundleError(f"{path}: no such snapshot file") from None
    except OSError as e:
        raise BundleError(f"{path}: cannot read ({e.strerror or e})") from None
    npz = Npz(read_bytes(path, limit), str(path))
    where = f"{path}: not a {FORMAT} file"
    if "meta" not in npz.arrays:
        raise BundleError(where)
    shape, dtype = npz.arrays["meta"]
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_META_CHARS:
        raise BundleError(f"{where} (its meta is not one short text)")
    npz.expect("meta", (), "U")
    try:
        meta = json.loads(str(npz.load("meta")))
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise BundleError(f"{where} (its meta is not JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(where)
    version = meta.get("version")
    if type(version) is not int or version != VERSION:  # true == 1 in Python: not a version
        raise BundleError(f"{path}: snapshot version {version!r}; this charwright "
                          f"reads version {VERSION}")
    return npz, meta


PEEK_LIMIT = 64 << 20  # a snapshot file read before its model is known (file_of)


def file_of(path) -> tuple[str, str]:
    """The (format, precision) of the model file a snapshot file was made with, read before
    the model is loaded (the CLI picks the backend from it). BundleError as Snapshot.load."""
    path = Path(path)
    _, meta = _read(path, PEEK_LIMIT)
    key = meta.get("file")
    if not isinstance(key, str) or key.count(":") != 1:
        raise BundleError(f"{path}: a damaged snapshot (its file is not FORMAT:PRECISION)")
    fmt, precision = key.split(":")
    return fmt, precision


def check_target(path) -> None:
    """ConfigError unless `path` is absent or a snapshot file that save() may replace (a CLI
    checks before it generates)."""
    _check_target(path)


def _check_target(path) -> None:
    if not str(path):
        raise ConfigError("an empty path: name the snapshot file to write")
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"{path}: the directory {str(parent)!r} does not exist (it is not "
                          "created: make it first)")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigError(f"{path}: cannot write the snapshot ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path} exists and is not a regular file; refusing to replace it "
                          "with a snapshot")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            ok = "meta.npy" in names and "state.npy" in names
            if ok:
                head = z.open("meta.npy").read(4096).decode("latin-1")
                ok = FORMAT in head.replace("\x00", "")
    except (zipfile.BadZipFile, OSError, ValueError, KeyError):
        ok = False
    if not ok:
        raise ConfigError(f"{path} exists and is not a charwright snapshot; refusing to "
                          "overwrite it (remove it or choose another name)")


def _check_origin(path, meta: dict, model) -> None:
    if meta.get("manifest_sha256") != manifest_sha256(model.bundle):
        raise BundleError(f"{path}: a snapshot of another bundle (or of another version of "
                          f"this one); it continues only with the bundle it was made with")
    entry = model.entry
    if meta.get("file") != entry.key or meta.get("file_sha256") != entry.sha256:
        raise BundleError(f"{path}: a snapshot of file {meta.get('file')!r}, not of "
                          f"{entry.key!r}; load the bundle with that backend and precision")


def _is_int(x, lo=0, hi=SEED_MAX) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi


def _check_meta(path, meta: dict, n_history: int, has_logits: bool) -> dict:
    bad = f"{path}: a damaged snapshot"
    pos, seed, row, coins = (meta.get(k) for k in ("position", "seed", "row", "coins"))
    if not (_is_int(pos) and _is_int(row) and _is_int(coins) and (seed is None or _is_int(seed))):
        raise BundleError(f"{bad} (position, seed, row and coins must be integers)")
    if n_history > pos or (pos > 0) != has_logits or (pos > 0 and n_history == 0):
        raise BundleError(f"{bad} (its position, history and logits disagree)")
    sampling = meta.get("sampling")
    if sampling is not None:
        try:
            sampling = asdict(_config_from(sampling))
        except (ConfigError, TypeError, RecursionError):
            raise BundleError(f"{bad} (its sampling configuration is not valid)") from None
    extra = meta.get("extra")
    if not isinstance(extra, dict) or not all(isinstance(k, str) and _is_int(v)
                                              for k, v in extra.items()):
        raise BundleError(f"{bad} (its sampler state is not a map of integers)")
    stop = meta.get("stop")
    if stop is not None and not _check_stop(stop):
        raise BundleError(f"{bad} (its held stop-string text is not consistent)")
    return {"manifest_sha256": meta["manifest_sha256"], "file": meta["file"],
            "file_sha256": meta["file_sha256"], "position": pos, "seed": seed, "row": row,
            "coins": coins, "sampling": sampling, "extra": extra,
            "stop": None if stop is None else {**stop, "stops": list(stop["stops"]),
                                               "kmp": list(stop["kmp"])}}


MAX_STOPS = 256


def _check_stop(d) -> bool:
    """{"stops": [str], "kmp": [int], "held": str, "go_on": bool}: the stop strings of the call
    that held text at its length limit, each one's matched prefix length (Knuth-Morris-Pratt
    state: 0 <= k < its length), the text held (the longest of those prefixes, which each is a
    suffix of), and whether the next call may go on matching (no text fed since)."""
    if not isinstance(d, dict) or set(d) != {"stops", "kmp", "held", "go_on"}:
        return False
    stops, kmp, held, go_on = d["stops"], d["kmp"], d["held"], d["go_on"]
    if not (isinstance(stops, (list, tuple)) and isinstance(kmp, (list, tuple))
            and isinstance(held, str) and isinstance(go_on, bool)
            and 1 <= len(stops) <= MAX_STOPS and len(kmp) == len(stops)):
        return False
    if not all(isinstance(x, str) and x for x in stops):
        return False
    if not all(_is_int(k, 0, len(x) - 1) for k, x in zip(kmp, stops)):
        return False
    return 0 < len(held) == max(kmp) and all(held.endswith(x[:k]) for k, x in zip(kmp, stops))


def _config_from(d) -> SamplingConfig:
    if not isinstance(d, dict):
        raise ConfigError("not an object")
    names = {f.name for f in fields(SamplingConfig)}
    if set(d) - names:
        raise ConfigError(f"unknown keys {sorted(set(d) - names)}")
    return SamplingConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _same_chain(a: SamplingConfig | None, b: SamplingConfig) -> bool:
    return a is not None and replace(a, seed=None) == replace(b, seed=None)


class Session:
    """One row of generation with its history (see the module docstring)."""

    def __init__(self, model, seed: int | None = None, row: int = 0):
        if seed is not None and not _is_int(seed):
            raise ConfigError(f"seed {seed!r}: must be an integer in 0..2**63-1")
        if not _is_int(row):
            raise ConfigError(f"row {row!r}: must be an integer in 0..2**63-1")
        self.model = model
        self.seed, self.row, self.coins = seed, row, 0
        self.position = 0
        self.state = model.backend.initial_state(1)[0]
        self.logits: np.ndarray | None = None
        self.history = np.zeros(0, np.int32)
        self.sampling: SamplingConfig | None = None
        self.extra: dict = {}
        self._open = None  # (weak reference to the stream now open, its token), or None
        self._stop: dict | None = None  # text held at the last call's length limit (held)

    def __repr__(self):
        return f"<Session of {self.model!r} at {self.position} ids, row {self.row}>"

    # ---- feeding ------------------------------------------------------------------------------

    def feed(self, text: str, unknown: str = "error", replacement=None) -> None:
        """Runs `text` through the model. The first feed of a session starts as a prompt does
        (a line-mode model's end-of-sequence id first; '' is '\\n' on a plain model)."""
        self._close_open()
        vocab = self.model.vocab
        if self.position == 0:
            ids = encode_prompt(vocab, text, unknown, replacement)
        else:
            ids = vocab.encode(text, unknown=unknown, replacement=replacement)
        self.feed_ids(ids)

    def feed_ids(self, ids) -> None:
        """Runs ids (ints in the vocabulary) through the model, one step each at batch 1."""
        self._close_open()
        ids = np.asarray(ids, np.int64).reshape(-1)
        if not len(ids):
            return
        if ids.min() < 0 or ids.max() >= self.model.vocab.size:
            raise ConfigError(f"ids outside the vocabulary 0..{self.model.vocab.size - 1}")
        ids = ids.astype(np.int32)
        step = self.model.backend.step
        state = self.state[None].copy()  # the session changes only once every id is fed
        for t in ids[:, None]:
            logits, state = step(t, state)
        self._advance(ids, logits[0], state[0])
        self.extra = {}  # fed text is not the constrained text the sampler state followed
        if self._stop is not None:  # the held text no longer ends the text: no match goes on
            self._stop = {**self._stop, "go_on": False}

    @property
    def held(self) -> str:
        """Generated text not returned yet: a call with hold=True that reached max_chars keeps
        the text that may still begin one of its stop strings. The next call returns it first
        (and, with the same stop strings and no text fed between, goes on matching it, so the
        two calls return exactly the text of one); take_held() takes it now."""
        return "" if self._stop is None else self._stop["held"]

    def take_held(self) -> str:
        """Returns the held text and forgets it (the next call starts its stop matching
        afresh)."""
        self._close_open()
        held, self._stop = self.held, None
        return held

    def _advance(self, ids: np.ndarray, logits: np.ndarray, state: np.ndarray) -> None:
        self.state = np.array(state, np.float32)
        self.logits = np.array(logits, np.float32)
        self.history = np.concatenate([self.history, ids.astype(np.int32)])[-MAX_HISTORY:]
        self.position += len(ids)

    # ---- generating ---------------------------------------------------------------------------

    def _config(self, sampling) -> SamplingConfig:
        cfg = sampling if sampling is not None else (self.sampling or SamplingConfig())
        if not isinstance(cfg, SamplingConfig):
            raise ConfigError("sampling must be a SamplingConfig")
        if cfg.seed is None:
            cfg = resolve_seed(cfg) if self.seed is None else replace(cfg, seed=self.seed)
        return cfg

    def stream(self, max_chars: int = 200, sampling=None, stop=(), hold: bool = False):
        """An iterator of text pieces (TextStream's). Bad input raises here, before anything is
        generated. The session takes the ids of the pieces taken when the stream ends: run to
        its end, closed (it.close(), or dropped), or closed by the session's next call. One
        stream per session is open: any other call on the session (feed, feed_ids, stream,
        generate, complete, snapshot, restore, save, fork) first closes an open stream, so it
        sees the session after the last id that stream generated, and the closed stream yields
        nothing more. Until then the session's attributes (position, state, ...) are those from
        before the stream. An exception inside the stream (KeyboardInterrupt, a backend error)
        leaves the session as it was before the stream.

        Stop strings across calls: hold=True keeps, at max_chars, the text that may still begin
        a stop string in the session (held) instead of returning it; the next call returns it
        first, and with the same stop strings goes on matching it: cut-and-continue then
        returns exactly the text of one call, stop strings included. hold=False (the default)
        returns it, as Model.generate does, and the next call matches afresh. A regex's match
        does not go on across calls (each call's text is one whole match)."""
        if not isinstance(hold, bool):
            raise ConfigError(f"hold {hold!r}: must be true or false")
        cfg, stream, sampler = self._prepare(max_chars, sampling, stop)
        self._last = stream
        if not max_chars:
            return iter(())
        m, carry, lead = stream.matcher, self._stop, ""
        if carry is not None:
            if (carry["go_on"] and m is not None and stream.dfa is None
                    and list(m.stops) == list(carry["stops"])):
                m._state, m.pending = list(carry["kmp"]), carry["held"]
            else:
                lead = carry["held"]
        limit = None
        if hold and m is not None and stream.dfa is None:
            limit, stream.max_chars = max_chars, max_chars + 1  # the session ends at max_chars
        gen = Generator(self.model.backend)
        gen.add([self.history], sampler, cfg.seed, [self.row],
                primed=(self.logits[None].copy(), self.state[None].copy()), max_chars=max_chars)
        sampler.set_row_state(0, {"coins": self.coins})
        token = object()
        it = self._run(stream, gen, sampler, token, lead, limit)
        self._open = (weakref.ref(it), token)
        return it

    def _close_open(self) -> None:
        """Closes the stream still open, if any: the session takes the ids it generated."""
        it = self._open[0]() if self._open is not None else None
        try:
            if it is not None:
                it.close()  # its finally takes its ids while it is still the open stream
        finally:
            self._open = None

    def _prepare(self, max_chars, sampling, stop, sampler=None):
        """Checks the arguments (a regex compiles here), then makes the session ready to sample
        with the config: (config, TextStream, sampler)."""
        self._close_open()
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 0:
            raise ConfigError(f"max_chars {max_chars!r}: must be an integer >= 0")
        cfg = self._config(sampling)
        vocab = self.model.vocab
        if sampler is None:
            sampler = make_sampler(cfg, vocab)
        dfa = getattr(sampler, "constraint", None)
        if dfa is not None:  # the start's cheapest move: `(abc)*` needs 3, not 0
            dfa.check_limit(max_chars, "max_chars")
        stream = TextStream(vocab, max(max_chars, 1), stop, dfa)
        if self.position == 0:
            self.feed("")
        if cfg.seed != self.seed:
            self.seed, self.coins = cfg.seed, 0
        self.sampling = cfg
        return cfg, stream, sampler

    def _finish(self, sampler, row: int, tokens: list, last, state) -> None:
        """After its last id: the sampler's row state and the state with that id fed."""
        rs = sampler.row_state(row)
        # the last id is fed now: the state holds every id, the logits are the next's
        logits, state = self.model.backend.step(np.asarray(last, np.int32).copy(), state)
        self.coins = int(rs.get("coins", self.coins))
        self.extra = {k: int(v) for k, v in rs.items() if k not in _ROW_KEYS}
        self._advance(np.asarray(tokens), logits[0], state[0])

    def _run(self, stream: TextStream, gen: Generator, sampler, token, lead="", limit=None):
        # The session takes the stream's ids only where they and the generator agree: at a
        # yield (closed there: GeneratorExit) or at the end. An exception inside gen.step or
        # push (Ctrl-C after the backend's step, before the id is pushed) leaves it unchanged.
        consistent = False
        try:
            if lead:
                consistent = True
                yield lead
                consistent = False
            while stream.finish_reason is None:
                _, ids = gen.step()
                piece = stream.push(int(ids[0]))
                if limit is not None and stream.finish_reason is None and \
                        len(stream.tokens) >= limit:
                    stream.finish_reason = "length"  # the matcher keeps what it holds
                if piece:
                    consistent = True
                    yield piece
                    consistent = False
            consistent = True
        finally:
            mine = self._open is not None and self._open[1] is token  # not a stale stream
            if mine:
                self._open = None
            if mine and consistent:
                m = stream.matcher
                self._stop = None
                if limit is not None and stream.finish_reason == "length" and m.pending:
                    self._stop = {"stops": list(m.stops), "kmp": list(m._state),
                                  "held": m.pending, "go_on": True}
            if mine and consistent and stream.tokens:
                self._finish(sampler, 0, stream.tokens, gen.tokens[:1], gen.state[:1])

    def complete(self, max_chars: int = 200, sampling=None, stop=(), hold: bool = False):
        """The next max_chars characters as a model.Completion (text, finish_reason, tokens);
        hold: as stream's."""
        from charwright.runtime.model import Completion

        text = "".join(self.stream(max_chars, sampling, stop, hold))
        s = self._last
        if not max_chars:
            return Completion("", "length", ())
        return Completion(text, s.finish_reason, tuple(s.tokens))

    def generate(self, max_chars: int = 200, sampling=None, stop=(), hold: bool = False) -> str:
        return self.complete(max_chars, sampling, stop, hold).text

    # ---- snapshots ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        self._close_open()
        m = self.model
        return Snapshot(
            manifest_sha256=manifest_sha256(m.bundle), file=m.entry.key,
            file_sha256=m.entry.sha256, state=self.state.copy(),
            logits=None if self.logits is None else self.logits.copy(),
            history=self.history.copy(), position=self.position, seed=self.seed, row=self.row,
            coins=self.coins, sampling=None if self.sampling is None else asdict(self.sampling),
            extra=dict(self.extra), stop=None if self._stop is None else dict(self._stop))

    def restore(self, snap: Snapshot) -> None:
        """The session goes back to `snap` (a snapshot of this model's bundle and file).
        BundleError (Snapshot.check) for a snapshot of another bundle or file, or with bad
        contents; the session is then unchanged."""
        self._close_open()
        if not isinstance(snap, Snapshot):
            raise ConfigError("restore takes a Snapshot (Session.snapshot, Snapshot.load)")
        snap.check(self.model)
        self.state = np.array(snap.state, np.float32)
        self.logits = None if snap.logits is None else np.array(snap.logits, np.float32)
        self.history = np.array(snap.history, np.int32)
        self.position, self.seed, self.row, self.coins = (snap.position, snap.seed, snap.row,
                                                          snap.coins)
        self.sampling = None if snap.sampling is None else _config_from(snap.sampling)
        self.extra = dict(snap.extra)
        self._stop = None if snap.stop is None else dict(snap.stop)

    def fork(self, n: int) -> list[Session]:
        """n sessions that go on from here independently: rows 0..n-1 of this session's seed
        (row 0 continues as this session would), each at this session's coin count."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"fork {n!r}: must be an integer >= 1")
        snap = self.snapshot()
        kids = []
        for i in range(n):
            s = Session(self.model)
            s.restore(replace(snap, row=i))
            kids.append(s)
        return kids

    def save(self, path) -> None:
        self.snapshot().save(path)

    @classmethod
    def load(cls, path, model) -> Session:
        s = cls(model)
        s.restore(Snapshot.load(path, model))
        return s


def complete_together(sessions: list, max_chars: int = 200, sampling=None,
                      stop=()) -> list:
    """The next max_chars characters of each session, its rows advanced together in one batch
    (one Completion per session, in order): forks of one session give the rows
    Model.complete gives for its prompt, each session then goes on from its own text. Every
    session must be of the same Model; a session's seed is the config's, else its own. On an
    exception the sessions that had not finished are left as they were."""
    from charwright.runtime.model import Completion

    sessions = list(sessions)
    if not sessions:
        return []
    model = sessions[0].model
    if any(s.model is not model for s in sessions) or len({id(s) for s in sessions}) < len(
            sessions):
        raise ConfigError("complete_together takes distinct sessions of one Model")
    cfgs = [s._config(sampling) for s in sessions]
    if any(not _same_chain(cfgs[0], c) for c in cfgs):
        raise ConfigError("these sessions sample with different settings: pass one config")
    sampler = make_sampler(cfgs[0], model.vocab)
    prepared = [s._prepare(max_chars, c, stop, sampler) for s, c in zip(sessions, cfgs)]
    if not max_chars:
        return [Completion("", "length", ())] * len(sessions)
    gen = Generator(model.backend)
    owner = {}
    for i, (s, (cfg, _, _)) in enumerate(zip(sessions, prepared)):
        (key,) = gen.add([s.history], sampler, cfg.seed, [s.row],
                         primed=(s.logits[None].copy(), s.state[None].copy()),
                         max_chars=max_chars)
        owner[key] = i
        sampler.set_row_state(i, {"coins": s.coins})
    streams = [p[1] for p in prepared]
    while gen.keys:
        keys, ids = gen.step()
        done = []
        for j, (k, t) in enumerate(zip(keys, ids.tolist())):
            st = streams[owner[k]]
            st.push(t)
            if st.finish_reason is not None:
                done.append((j, k))
        for j, k in done:
            i = owner[k]
            sessions[i]._finish(sampler, j, streams[i].tokens, gen.tokens[j:j + 1],
                                gen.state[j:j + 1])
        if done:
            gen.remove([k for _, k in done])
    leads = [s.take_held() for s in sessions]  # text a hold=True call held: returned first
    return [Completion(lead + st.text(), st.finish_reason, tuple(st.tokens))
            for lead, st in zip(leads, streams)]
