"""Session review fixes (issue 23 part 2): one open stream per session, an interrupted stream
leaves the session consistent, restore checks a Snapshot's contents, hostile snapshot files
are one line, a huge top_k is "off" in every sampler."""

import json
from dataclasses import replace

import numpy as np
import pytest

import charwright.runtime.generate.session as session_module
from bundle_factory import make_bundle
from charwright.runtime import BundleError, ConfigError, SamplingConfig, Session, Snapshot, load
from charwright.runtime.sampling.compiled import make_sampler as compiled_sampler
from charwright.runtime.sampling.config import Sampler

CFG = SamplingConfig(seed=4, temperature=0.9)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load(make_bundle(tmp_path_factory.mktemp("review") / "b", units=16), backend="numpy")


def test_a_second_call_closes_the_open_stream_and_continues_after_its_pieces(model):
    whole = model.generate("abc", 60, CFG)
    s = model.session()
    s.feed("abc")
    p0 = s.position
    it = s.stream(100, CFG)
    head = "".join(next(it) for _ in range(3))
    more = s.generate(20)  # closes `it`: the session takes its 3 ids first
    assert head + more == whole[:23]
    assert s.position == p0 + 23
    assert list(it) == []  # the closed stream yields nothing more
    snap = s.snapshot()
    del it  # the old stream's end must not touch the newer state
    assert s.position == snap.position and (s.state == snap.state).all()
    assert s.generate(37) == whole[23:]


def test_snapshot_feed_and_restore_close_an_open_stream_first(model):
    whole = model.generate("abc", 30, CFG)
    s = model.session()
    s.feed("abc")
    p0 = s.position
    it = s.stream(30, CFG)
    head = next(it) + next(it)
    snap = s.snapshot()  # after the 2 ids taken, not before the stream
    assert snap.position == p0 + 2
    assert head + s.generate(28) == whole
    s.restore(snap)
    it = s.stream(30, CFG)
    next(it)
    s.restore(snap)  # the stream closes, then the snapshot wins
    assert s.position == snap.position and s.generate(28) == whole[2:]
    p1 = s.position
    it = s.stream(30, CFG)
    next(it)
    s.feed("a")  # the stream's id, then "a"
    assert s.position == p1 + 2


def test_an_exception_inside_a_stream_leaves_the_session_unchanged(model, monkeypatch):
    whole = model.generate("abc", 80, CFG)
    real = session_module.make_sampler

    def interrupting(cfg, vocab):
        smp = real(cfg, vocab)
        calls, sample = [0], smp.sample

        def boom(*a, **k):
            calls[0] += 1
            if calls[0] == 30:  # Ctrl-C right after the backend's step, before the push
                raise KeyboardInterrupt
            return sample(*a, **k)

        smp.sample = boom
        return smp

    s = model.session()
    s.feed("abc")
    before = s.snapshot()
    monkeypatch.setattr(session_module, "make_sampler", interrupting)
    got = []
    with pytest.raises(KeyboardInterrupt):
        for piece in s.stream(80, CFG):
            got.append(piece)
    monkeypatch.setattr(session_module, "make_sampler", real)
    assert "".join(got) == whole[:len("".join(got))] and got
    assert s.position == before.position and s.coins == before.coins
    assert (s.state == before.state).all() and (s.history == before.history).all()
    assert s.generate(80) == whole  # consistent: it goes on as if the call never ran


def _bad_snapshots(snap):
    S = len(snap.state)
    return {"state of 10": replace(snap, state=np.zeros(10, np.float32)),
            "NaN state": replace(snap, state=np.full(S, np.nan, np.float32)),
            "infinite logits": replace(snap, logits=np.full_like(snap.logits, np.inf)),
            "int state": replace(snap, state=np.zeros(S, np.int32)),
            "id out of range": replace(snap, history=np.array([1000], np.int32)),
            "2-D history": replace(snap, history=snap.history[None]),
            "no logits at position > 0": replace(snap, logits=None),
            "position below history": replace(snap, position=0),
            "bad sampling": replace(snap, sampling={"temperature": -1}),
            "string coins": replace(snap, coins="x"),
            "bool row": replace(snap, row=True),
            "extra not ints": replace(snap, extra={"dfa": "x"}),
            "another file": replace(snap, file_sha256="0" * 64)}


def test_restore_checks_the_snapshots_contents_and_leaves_the_session_unchanged(model):
    s = model.session()
    s.feed("abc")
    snap = s.snapshot()
    t = model.session()
    t.feed("ab")
    keep = t.snapshot()
    for name, bad in _bad_snapshots(snap).items():
        with pytest.raises(BundleError) as e:
            t.restore(bad)
        assert "\n" not in str(e.value), name
        assert t.position == keep.position and (t.state == keep.state).all(), name
    with pytest.raises(ConfigError):
        t.restore("not a snapshot")
    t.restore(snap)  # the good one still restores
    assert t.generate(10, CFG) == s.generate(10, CFG)


def _craft(path, src, edit_meta):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(edit_meta(meta))
    np.savez(path, **arrays)


def test_hostile_snapshot_files_are_one_line_bundle_errors(model, tmp_path):
    s = model.session()
    s.feed("abc")
    good = tmp_path / "good.npz"
    s.save(good)
    deep = tmp_path / "deep.npz"
    _craft(deep, good, lambda m: json.dumps(m)[:-1] + ', "x": ' + "[" * 20_000 + "]" * 20_000
           + "}")
    version_true = tmp_path / "vt.npz"
    _craft(version_true, good, lambda m: json.dumps({**m, "version": True}))
    for path, says in ((deep, "not JSON"), (version_true, "version True"),
                       (tmp_path, "a directory")):
        with pytest.raises(BundleError) as e:
            Session.load(path, model)
        assert says in str(e.value) and "\n" not in str(e.value)
    fifo = tmp_path / "fifo"
    import os

    os.mkfifo(fifo)
    with pytest.raises(BundleError, match="not a regular file"):
        Session.load(fifo, model)  # at once: never opened, so never a hang


def test_save_refuses_an_empty_path_and_a_missing_directory(model, tmp_path):
    s = model.session()
    s.feed("abc")
    with pytest.raises(ConfigError, match="empty path"):
        s.save("")
    with pytest.raises(ConfigError, match="does not exist"):
        s.save(tmp_path / "new" / "sub" / "s.npz")
    assert not (tmp_path / "new").exists()  # no directory made


@pytest.mark.parametrize("huge", [2**31, 2**63, 10**30])
def test_a_huge_top_k_is_off_in_both_samplers(model, huge):
    V = model.vocab.size
    z = np.random.default_rng(0).normal(size=(3, V)).astype(np.float32)
    out = {}
    for name, make in (("numpy", lambda c: Sampler(c, V)),
                       ("compiled", lambda c: compiled_sampler(c, V))):
        for k in (None, huge):
            smp = make(SamplingConfig(seed=9, top_k=k))
            smp.join([np.zeros(1, np.int32)] * 3, 9, [0, 1, 2])
            out[name, k] = [smp(z.copy()).tolist() for _ in range(5)]
        assert out[name, huge] == out[name, None]
    assert out["compiled", huge] == out["numpy", huge]
    s = model.session()
    s.feed("abc")
    assert s.generate(20, SamplingConfig(seed=2, top_k=huge)) == \
        model.generate("abc", 20, SamplingConfig(seed=2))


def test_hold_makes_a_cut_exact_across_stop_strings(model, tmp_path):
    cfg = SamplingConfig(seed=8, temperature=0.9)
    free = model.generate("abc", 300, cfg)
    stops = (free[60:63], free[150:152] + "a", "zz")  # the first is found at 60 (or before)
    whole = model.complete(["abc"], 300, cfg, stop=stops)[0]
    assert whole.finish_reason == "stop" and len(whole.text) <= 60
    end = len(whole.text)
    held_seen = False
    for cut in range(max(1, end - 4), end + 3):  # cuts inside and around the stop string
        s = model.session()
        s.feed("abc")
        a = s.complete(cut, cfg, stops, hold=True)
        held_seen |= bool(s.held)
        s.save(tmp_path / "s.npz")  # the held text and the matcher go through the file
        t = Session.load(tmp_path / "s.npz", model)
        assert t.held == s.held
        b = t.complete(300 - cut, cfg, stops, hold=True) if a.finish_reason == "length" else None
        text = a.text + (b.text if b else "")
        assert text == whole.text, cut
        assert (b or a).finish_reason == "stop"
    assert held_seen  # some cut fell inside the stop string
    # hold=False (the default): the cut returns the held text, the next call matches afresh
    s = model.session()
    s.feed("abc")
    a = s.generate(end + 1, cfg, stops)
    assert s.held == "" and a == free[:end + 1]


def test_held_text_comes_first_when_the_match_cannot_go_on(model):
    cfg = SamplingConfig(seed=8, temperature=0.9)
    free = model.generate("abc", 100, cfg)
    stop = free[40:44]
    s = model.session()
    s.feed("abc")
    first = s.generate(42, cfg, [stop], hold=True)
    assert first + s.held == free[:42] and s.held == free[40:42]
    snap = s.snapshot()
    assert s.generate(10, cfg, ["qq"]) == free[40:52]  # other stops: held, then new text
    s.restore(snap)
    s.feed("a")  # fed text between: no match goes on; the held text is still returned first
    assert s.generate(5, cfg)[:2] == free[40:42]
    s.restore(snap)
    assert s.take_held() == free[40:42] and s.held == ""


def test_a_snapshots_held_text_is_checked(model):
    s = model.session()
    s.feed("abc")
    snap = s.snapshot()
    good = {"stops": ["abc", "bd"], "kmp": [2, 1], "held": "ab", "go_on": True}
    s.restore(replace(snap, stop=good))
    assert s.held == "ab"
    for bad in ({**good, "held": "xb"}, {**good, "kmp": [3, 1]}, {**good, "kmp": [2]},
                {**good, "stops": ["", "bd"]}, {**good, "go_on": 1}, {**good, "x": 1},
                {**good, "held": ""}, [1], "ab"):
        with pytest.raises(BundleError, match="held stop-string"):
            s.restore(replace(snap, stop=bad))
