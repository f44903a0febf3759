"""Session: feed, generate, snapshot, restore, fork, save, load. Continuing from a snapshot gives
exactly the text of one uninterrupted run, on every file a bundle holds."""

import os
import zipfile

import numpy as np
import pytest

from bundle_factory import edit, make_bundle
from charwright.runtime import BundleError, ConfigError, SamplingConfig, Session, Snapshot, load
from charwright.runtime.bundle.reader import load_bundle
from charwright.runtime.generate.session import complete_together

BACKEND_OF = {"npz": "numpy", "onnx": "onnx", "tflite": "litert"}
CFGS = [SamplingConfig(seed=11, temperature=0.9, repetition_penalty=1.7, repetition_window=8,
                       top_k=6),
        SamplingConfig(seed=3),
        SamplingConfig(greedy=True, repetition_penalty=2.0)]


@pytest.fixture(scope="module")
def hand_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("session") / "b", units=16)


def _split_run(model, prompt, cfg, cuts, tmp_path=None):
    """The text of one session generating len pieces in steps `cuts`, snapshotting (and, with
    tmp_path, saving and loading) at every cut."""
    s = model.session()
    s.feed(prompt)
    out, last = "", 0
    for i, cut in enumerate(cuts):
        out += s.generate(cut - last, cfg)
        last = cut
        if tmp_path is not None:
            s.save(tmp_path / "s.npz")
            s = Session.load(tmp_path / "s.npz", model)
        else:
            snap = s.snapshot()
            s.generate(5)  # wander off, then come back
            s.restore(snap)
    return out


@pytest.mark.parametrize("cfg", CFGS)
def test_snapshot_restore_and_save_load_continue_the_uninterrupted_text(hand_bundle, tmp_path,
                                                                        cfg):
    m = load(hand_bundle, backend="numpy")
    whole = m.generate("abc", 300, cfg)
    assert len(whole) == 300
    for cuts in ([1, 300], [37, 256, 257, 300]):  # 256: a coin block boundary
        assert _split_run(m, "abc", cfg, cuts) == whole
        assert _split_run(m, "abc", cfg, cuts, tmp_path) == whole


def test_every_file_of_an_exported_bundle_continues_exactly(tiny_bundle, tmp_path):
    bundle = load_bundle(tiny_bundle)
    cfg = SamplingConfig(seed=5, temperature=0.8, repetition_penalty=1.3)
    seen = set()
    for entry in bundle.files:
        backend = BACKEND_OF[entry.format]
        if backend == "litert":
            pytest.importorskip("ai_edge_litert")
        m = load(tiny_bundle, backend=backend, precision=entry.precision)
        whole = m.generate("the ", 120, cfg)
        assert _split_run(m, "the ", cfg, [1, 50, 120]) == whole, entry.key
        assert _split_run(m, "the ", cfg, [70, 120], tmp_path) == whole, entry.key
        seen.add(entry.key)
    assert {"npz:float32", "onnx:float32", "onnx:int8-dynamic"} <= seen
    assert any(k.startswith("tflite:") for k in seen)


def test_feeding_in_pieces_is_priming_the_whole_prompt(hand_bundle):
    m = load(hand_bundle, backend="numpy")
    cfg = SamplingConfig(seed=9)
    s = m.session()
    for piece in ("ab", "", "c.d", "e"):
        s.feed(piece)
    assert s.position == 6
    assert s.generate(80, cfg) == m.generate("abc.de", 80, cfg)
    # an empty first feed starts from '\n', as an empty prompt does
    s = m.session()
    assert s.generate(40, cfg) == m.generate("", 40, cfg)


def test_a_stream_closed_early_leaves_the_session_after_its_last_character(hand_bundle):
    m = load(hand_bundle, backend="numpy")
    cfg = SamplingConfig(seed=2, repetition_penalty=1.5)
    whole = m.generate("ab", 100, cfg)
    s = m.session()
    s.feed("ab")
    it = s.stream(100, cfg)
    head = "".join(next(it) for _ in range(7))
    it.close()
    assert s.position == 2 + 7
    assert head + s.generate(93) == whole


def test_fork_rows_are_the_rows_of_a_seeded_batch(hand_bundle):
    m = load(hand_bundle, backend="numpy")
    cfg = SamplingConfig(seed=4, top_p=0.9)
    s = m.session()
    s.feed("dad")
    kids = s.fork(3)
    texts = [k.generate(60, cfg) for k in kids]
    assert len(set(texts)) == 3
    for i, t in enumerate(texts):
        assert t == m.complete(["dad"], 60, cfg, row_ids=[i])[0].text
    assert s.position == 3  # the parent did not move
    with pytest.raises(ConfigError):
        s.fork(0)


def test_forks_advanced_together_are_the_rows_of_model_complete(hand_bundle):
    m = load(hand_bundle, backend="numpy")
    cfg = SamplingConfig(seed=12, repetition_penalty=1.4)
    ref = m.complete(["bad"] * 4, 90, cfg)
    s = m.session()
    s.feed("bad")
    kids = s.fork(4)
    first = complete_together(kids, 50, cfg)
    rest = complete_together(kids, 40)  # the sessions' own config and seed
    for r, a, b in zip(ref, first, rest):
        assert a.text + b.text == r.text and b.finish_reason == "length"
    # rows that finish early (a stop string) leave; the others go on
    done = complete_together(s.fork(3), 60, cfg, stop=["a"])
    for i, c in enumerate(done):
        assert c == m.complete(["bad"], 60, cfg, stop=["a"], row_ids=[i])[0]
    with pytest.raises(ConfigError):
        complete_together([kids[0], kids[0]], 5)
    other = m.session()
    other.generate(3, SamplingConfig(seed=1, top_k=2))
    with pytest.raises(ConfigError, match="different settings"):
        complete_together([kids[0], other], 5)
    assert complete_together([], 5) == []


def test_under_a_regex_each_call_is_one_whole_match_and_the_config_is_saved(hand_bundle,
                                                                           tmp_path):
    import re

    m = load(hand_bundle, backend="numpy")
    s = m.session()
    s.feed("ab")
    cfg = SamplingConfig(seed=3, regex="[a-h]{2,4}\\.")
    first = s.complete(8, cfg)
    second = s.complete(8)  # the session's config: a new match
    for c in (first, second):
        assert re.fullmatch("[a-h]{2,4}\\.", c.text) and c.finish_reason == "stop", c
    assert first.text == m.complete(["ab"], 8, cfg)[0].text
    s.save(tmp_path / "r.npz")
    t = Session.load(tmp_path / "r.npz", m)
    assert t.sampling == cfg and "dfa" in t.extra
    assert t.generate(8) == s.generate(8)
    choose = SamplingConfig(seed=1, choices=("bad", "cafe"))
    s.generate(4, choose)
    s.save(tmp_path / "c.npz")
    assert Session.load(tmp_path / "c.npz", m).sampling == choose
    with pytest.raises(ConfigError, match="shortest match"):
        s.generate(3, SamplingConfig(regex="abcd"))


def test_a_new_seed_starts_its_stream_and_none_keeps_the_sessions(hand_bundle):
    m = load(hand_bundle, backend="numpy")
    s = m.session(seed=8)
    s.feed("a")
    first = s.generate(30)
    assert first == m.generate("a", 30, SamplingConfig(seed=8))
    t = m.session()
    t.feed("a")
    t.generate(30, SamplingConfig(seed=8))
    assert t.seed == 8 and t.coins == 30
    t.generate(10, SamplingConfig(seed=9))
    assert t.seed == 9 and t.coins == 10


def test_snapshots_of_another_bundle_or_file_are_refused(hand_bundle, tmp_path):
    m = load(hand_bundle, backend="numpy")
    s = m.session()
    s.feed("abc")
    s.save(tmp_path / "s.npz")
    other = make_bundle(tmp_path / "other", units=16, seed=1)
    with pytest.raises(BundleError, match="another bundle"):
        Session.load(tmp_path / "s.npz", load(other, backend="numpy"))
    with pytest.raises(BundleError, match="another bundle"):
        load(other, backend="numpy").session().restore(s.snapshot())
    # the same bundle, with its file listed under another precision: another file
    twin = tmp_path / "twin"
    make_bundle(twin, units=16)
    snap = Snapshot.load(tmp_path / "s.npz", load(twin, backend="numpy"))  # same manifest
    assert snap.position == 3
    edit(twin, lambda mf: mf["files"][0].update(precision="float16"))
    with pytest.raises(BundleError):
        Session.load(tmp_path / "s.npz", load(twin, backend="numpy"))


def _rewrite(path, **arrays):
    with zipfile.ZipFile(path) as z:
        have = {n[:-4]: np.load(z.open(n)) for n in z.namelist()}
    have.update(arrays)
    for k in [k for k, v in have.items() if v is None]:
        del have[k]
    with open(path, "wb") as f:
        np.savez(f, **have)


def test_damaged_and_hostile_snapshot_files_are_one_line_errors(hand_bundle, tmp_path):
    m = load(hand_bundle, backend="numpy")
    s = m.session()
    s.feed("abc")
    good = tmp_path / "good.npz"
    s.save(good)
    meta = str(np.load(good)["meta"])
    S = m.bundle.state_size
    cases = {
        "truncated": lambda p: p.write_bytes(good.read_bytes()[:200]),
        "text": lambda p: p.write_text("hello"),
        "huge": lambda p: p.write_bytes(b"\0" * (8 << 20)),
        "no meta": lambda p: _rewrite(p, meta=None),
        "version": lambda p: _rewrite(p, meta=np.array(meta.replace('"version": 1',
                                                                     '"version": 2'))),
        "state shape": lambda p: _rewrite(p, state=np.zeros(S + 1, np.float32)),
        "state dtype": lambda p: _rewrite(p, state=np.zeros(S, np.int64)),
        "nan": lambda p: _rewrite(p, state=np.full(S, np.nan, np.float32)),
        "ids": lambda p: _rewrite(p, history=np.array([1, 2, 99], np.int32)),
        "history": lambda p: _rewrite(p, history=np.zeros(70_000, np.int32)),
        "position": lambda p: _rewrite(p, meta=np.array(meta.replace('"position": 3',
                                                                      '"position": -3'))),
        "objects": lambda p: _rewrite(p, history=np.array([{"x": 1}], dtype=object)),
    }
    for name, damage in cases.items():
        p = tmp_path / f"{name}.npz"
        p.write_bytes(good.read_bytes())
        damage(p)
        with pytest.raises(BundleError) as e:
            Session.load(p, m)
        assert "\n" not in str(e.value) and str(p) in str(e.value), name
    with pytest.raises(BundleError, match="no such"):
        Session.load(tmp_path / "absent.npz", m)
    with pytest.raises(BundleError, match="directory"):
        Session.load(tmp_path, m)


def test_save_is_atomic_and_replaces_only_snapshots(hand_bundle, tmp_path):
    m = load(hand_bundle, backend="numpy")
    s = m.session()
    s.feed("abc")
    target = tmp_path / "s.npz"
    s.save(target)
    s.generate(10, SamplingConfig(seed=1))
    s.save(target)  # a snapshot is replaced
    assert Session.load(target, m).position == 13
    assert sorted(os.listdir(tmp_path)) == ["s.npz"]  # no temp file left
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    with pytest.raises(ConfigError, match="not a charwright snapshot"):
        s.save(precious)
    assert precious.read_text() == "keep me"
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="not a regular file"):
        s.save(link)
    with pytest.raises(ConfigError):
        s.save(tmp_path)
