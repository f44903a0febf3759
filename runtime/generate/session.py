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

The snapshot file (Snapshot: save, load, check) is generate/snapshot.py.
Not thread-safe: one thread drives a session.

(About 370 lines, one idea: a row that stops and goes on exactly; its calls share the
bookkeeping of _prepare / _run / _finish, which would only be passed around if split.)
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, replace

import numpy as np

from charwright.runtime.errors import ConfigError
from charwright.runtime.generate.batch import encode_prompt
from charwright.runtime.generate.generator import Generator
from charwright.runtime.generate.snapshot import (MAX_HISTORY, Snapshot, _config_from, _is_int,
                                                  manifest_sha256)
from charwright.runtime.generate.text_stream import TextStream
from charwright.runtime.sampling.config import SamplingConfig, make_sampler, resolve_seed

_ROW_KEYS = ("seed", "row", "coins", "window")  # row_state keys the session keeps itself


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
