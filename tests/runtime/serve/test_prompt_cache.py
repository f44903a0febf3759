"""The server's prompt cache: states kept for prompts and every CHECKPOINT_EVERY ids along them,
LRU-bounded in bytes; a request that shares a prefix primes only the rest, and its text is the
text without the cache (in the engine, and through a real `charwright serve` process)."""

import time

import httpx
import numpy as np
import pytest

from bundle_factory import edit, make_bundle
from charwright.runtime import ConfigError, SamplingConfig, load
from charwright.runtime.generate.priming import Primer, prime
from charwright.runtime.serve.engine import Engine
from charwright.runtime.serve.prefix_cache import CHECKPOINT_EVERY, ENTRY_OVERHEAD, PrefixCache
from serve_util import AUTH, KEY, ServerProcess, post

EVERY = CHECKPOINT_EVERY
TEXT = ("abc deh. " * 400)[:3000]


def _invariant(path):
    edit(path, lambda m: m["files"][0].update(batch_invariant=True))
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return _invariant(make_bundle(tmp_path_factory.mktemp("cache") / "tiny", units=32))


@pytest.fixture(scope="module")
def model(bundle):
    return load(bundle, backend="numpy")


def _ids(n, seed):
    return np.random.default_rng(seed).integers(0, 11, n).astype(np.int32)


def _lookup(c, ids):
    return c.lookup(ids, c.marks(ids))


def test_marks_lookup_and_the_byte_bound():
    c = PrefixCache(10 * (8 + 16 + ENTRY_OVERHEAD), every=4)
    ids = _ids(10, 0)
    m = c.marks(ids)
    assert sorted(m) == [4, 8, 10]
    assert m[4] == c.marks(ids[:4])[4] and m[8] == c.marks(ids[:9])[8]
    assert m[4] != c.marks(_ids(4, 1))[4]
    assert c.lookup(ids, m) is None and c.misses == 1
    c.put(m, 4, np.ones(2), np.ones(4))
    c.put(m, 8, np.full(2, 2.0), np.full(4, 2.0))
    pos, z, s = _lookup(c, np.concatenate([ids[:9], [3, 3, 3]]))
    assert pos == 8 and z[0] == 2.0 and c.hits == 1 and c.ids_reused == 8
    for i in range(30):  # a flood: the bytes stay within the bound, the oldest leave first
        other = _ids(4, 100 + i)
        c.put(c.marks(other), 4, np.zeros(2), np.zeros(4))
        assert c.bytes <= c.max_bytes
    assert len(c) == 10 and c.evictions == 22
    assert c.lookup(ids, m) is None  # evicted
    big = PrefixCache(100)
    big.put({4: b"k" * 16}, 4, np.zeros(2), np.zeros(4))  # larger than the whole cache
    assert len(big) == 0 and big.bytes == 0


def test_a_prompt_that_extends_an_earlier_one_starts_at_its_end():
    c = PrefixCache(1 << 20, every=4)
    for n in (2, 10):  # ends between checkpoints: 2 (before the first), 10 (after 8)
        ids = _ids(n, 5)
        m = c.marks(ids)
        for pos in sorted(m):
            c.put(m, pos, np.full(2, pos, np.float32), np.zeros(4))
    longer = np.concatenate([_ids(10, 5), [1, 2, 3, 4, 5]])
    assert _lookup(c, longer)[0] == 10
    assert _lookup(c, np.concatenate([_ids(2, 5), [7]]))[0] == 2
    assert _lookup(c, np.concatenate([_ids(9, 5), [7, 7]]))[0] == 8  # diverges at 9
    assert _lookup(c, _ids(3, 6)) is None
    # tails are bounded per checkpoint and counted in the bytes; evicting frees them all
    for i in range(40):
        c.put(c.marks(np.array([9, 9, 9, i % 11, i // 11], np.int32)), 5, np.zeros(2),
              np.zeros(4))
    assert all(len(t) <= 16 for t in c._tails.values())
    small = PrefixCache(3 * (8 + 16 + ENTRY_OVERHEAD + 120), every=4)
    for i in range(20):
        ids = np.array([1, 2, 3, 4, i % 11, i // 11], np.int32)
        m = small.marks(ids)
        small.put(m, 4, np.zeros(2), np.zeros(4))
        small.put(m, 6, np.zeros(2), np.zeros(4))
        assert small.bytes <= small.max_bytes
    while len(small):
        small._evict()
    assert small.bytes == 0 and not small._tails


def test_the_primers_checkpoints_are_the_states_of_the_prefixes(model):
    backend = model.backend
    p = Primer(backend)
    p.checkpoint_every = EVERY
    ids = _ids(3 * EVERY + 17, 2)
    p.add([ids])
    done = []
    while len(p):
        done += p.advance(0.0005)  # small slices: checkpoints reached across advances
    assert [c[1] for c in p.checkpoints] == [EVERY, 2 * EVERY, 3 * EVERY]
    for _, pos, logits, state in p.checkpoints:
        z, s = prime(backend, [ids[:pos]])
        assert np.array_equal(logits, z[0]) and np.array_equal(state, s[0])
    # a row that starts from the state at a checkpoint ends where the whole prompt ends
    q = Primer(backend)
    q.add([ids], [(2 * EVERY, p.checkpoints[1][3])])
    (_, z, s), = q.advance(10.0)
    assert np.array_equal(z, done[0][1]) and np.array_equal(s, done[0][2])


def _texts(engine, prompts, cfg, n=1):
    out = []
    for p in prompts:
        r = engine.submit(p, n=n, max_chars=60, sampling=cfg)
        assert r.wait(30) == "ok"
        out.append([c.text for c in r.completions()])
    return out


def test_the_engine_gives_the_same_text_with_and_without_the_cache(model):
    cfg = SamplingConfig(seed=21, temperature=0.9)
    prompts = [[TEXT], [TEXT], [TEXT[:1000]], [TEXT + "hd"], [TEXT[:700], TEXT], ["ab"], ["ab"]]
    cold = Engine(model, max_batch=8).start()
    warm = Engine(model, max_batch=8, prompt_cache_bytes=8 << 20).start()
    try:
        assert cold.prompt_cache is None and warm.prompt_cache is not None
        assert _texts(warm, prompts, cfg, n=2) == _texts(cold, prompts, cfg, n=2)
        # misses: the first TEXT and the first "ab"; every other prompt hits, whole or a prefix
        # (TEXT[:1000] at 768, TEXT[:700] at 512: checkpoints along TEXT; TEXT + "hd" at
        # TEXT's end, a tail of the checkpoint at 2816)
        assert (warm.prompt_cache_misses, warm.prompt_cache_hits) == (2, 6)
        n = len(TEXT)
        assert warm.prompt_cache_ids_reused == n + 768 + n + 512 + n + 2
        assert warm.prompt_ids_primed == (n + (1000 - 768) + 2 + (700 - 512) + 2)
        assert 0 < warm.prompt_cache_bytes <= 8 << 20
    finally:
        cold.close()
        warm.close()


def test_the_cache_is_off_for_a_file_not_known_to_be_batch_invariant(tmp_path):
    plain = load(make_bundle(tmp_path / "plain", units=8), backend="numpy")
    e = Engine(plain, prompt_cache_bytes=1 << 20)
    assert e.prompt_cache is None and "not batch-invariant" in e.prompt_cache_note
    assert e.prompt_cache_hits == 0
    e.close()


def _server(bundle, *args):
    return ServerProcess("-b", str(bundle), "--backend", "numpy", *args,
                         env={"CHARWRIGHT_API_KEY": KEY}).start()


def _complete(server, prompt, seed=5, n=1):
    r = post(server, {"model": "tiny", "prompt": prompt, "max_tokens": 40, "seed": seed,
                      "n": n, "temperature": 0.8})
    assert r.status_code == 200, r.text
    return [c["text"] for c in r.json()["choices"]]


def test_a_real_server_gives_the_same_text_and_counts_hits_and_stays_bounded(bundle):
    prompts = [TEXT, TEXT, TEXT[:900] + "a", TEXT + "deh", "abc", "abc"]
    off = _server(bundle, "--prompt-cache-mb", "0")
    on = _server(bundle, "--prompt-cache-mb", "0.05")  # ~52 KB: about 90 entries of this model
    try:
        assert "prompt cache off" in off.stderr() and "prompt cache 0.05 MiB" in on.stderr()
        for p in prompts:
            assert _complete(on, p, n=2) == _complete(off, p, n=2), p[-20:]
        # hits: TEXT whole, TEXT[:900] + "a" at 768, TEXT + "deh" at TEXT's end, "abc" whole
        assert on.metric("charwright_prompt_cache_hits_total", AUTH) == 4
        assert on.metric("charwright_prompt_cache_misses_total", AUTH) == 2
        assert on.metric("charwright_prompt_chars_reused_total", AUTH) == (
            len(TEXT) + 768 + len(TEXT) + 3)
        assert off.metric("charwright_prompt_cache_hits_total", AUTH) == 0
        assert off.metric("charwright_prompt_cache_max_bytes", AUTH) == 0
        assert on.metric("charwright_prompt_cache_max_bytes", AUTH) == int(0.05 * 2**20)
        # a flood of distinct prompts: the cache stays within its bytes and evicts
        for i in range(40):
            _complete(on, f"{i:b}".replace("0", "a").replace("1", "b") + TEXT[:600], seed=i)
        assert 0 < on.metric("charwright_prompt_cache_bytes", AUTH) <= 0.05 * 2**20
        assert on.metric("charwright_prompt_cache_evictions_total", AUTH) > 0
        # the second request of a long prompt starts sooner than the first
        long = "h" + TEXT * 5
        t0 = time.perf_counter()
        first = _complete(on, long)
        t1 = time.perf_counter()
        assert _complete(on, long) == first
        t2 = time.perf_counter()
        assert t2 - t1 < t1 - t0
    finally:
        assert off.stop() == 0 and on.stop() == 0


def test_every_batch_invariant_file_of_an_exported_bundle_gives_the_same_text(tiny_bundle):
    from charwright.runtime.bundle.reader import load_bundle

    backend_of = {"npz": "numpy", "onnx": "onnx", "tflite": "litert"}
    cfg = SamplingConfig(seed=8, temperature=0.8)
    text = ("the cat sat on the mat. " * 60)[:1200]
    prompts = [[text], [text], [text[:600]], [text + "the "], [text[:300], text[:900]]]
    checked = []
    for entry in load_bundle(tiny_bundle).files:
        if not entry.batch_invariant:
            continue
        if entry.format == "tflite":
            pytest.importorskip("ai_edge_litert")
        m = load(tiny_bundle, backend=backend_of[entry.format], precision=entry.precision)
        cold = Engine(m, max_batch=8).start()
        warm = Engine(m, max_batch=8, prompt_cache_bytes=1 << 20).start()
        try:
            assert warm.prompt_cache is not None
            assert _texts(warm, prompts, cfg, n=2) == _texts(cold, prompts, cfg, n=2), entry.key
            assert warm.prompt_cache_hits == 5 and warm.prompt_cache_misses == 1
        finally:
            cold.close()
            warm.close()
        checked.append(entry.key)
    assert "onnx:int8-dynamic" in checked, checked  # the export measures it invariant


def _counted(c):
    """The bytes the cache should count, from its internals (prefix_cache's accounting)."""
    from charwright.runtime.serve.prefix_cache import TAIL_BYTES, TAILS_BASE_BYTES

    arrays = sum(z.nbytes + s.nbytes + ENTRY_OVERHEAD for z, s, _ in c._entries.values())
    tails = sum(len(t) for t in c._tails.values())
    return arrays + TAIL_BYTES * tails + TAILS_BASE_BYTES * len(c._tails)


def test_the_byte_count_includes_each_checkpoints_tails_dict():
    c = PrefixCache(40_000, every=4)
    rng = np.random.default_rng(5)
    for i in range(400):  # prompts of 1..13 ids: tails under the root and under checkpoints
        ids = rng.integers(0, 3, rng.integers(1, 14)).astype(np.int32)
        m = c.marks(ids, salt=None if i % 3 else f"s{i % 5}")
        for p in sorted(m):
            if p:
                c.put(m, p, np.zeros(2, np.float32), np.zeros(4, np.float32))
        assert c.bytes == _counted(c) <= c.max_bytes, i
    assert c.evictions > 0 and len(c._tails) > 1


def test_the_byte_count_follows_the_memory_it_holds():
    import tracemalloc

    c = PrefixCache(4 << 20)
    rng = np.random.default_rng(0)
    z, s = np.zeros(65, np.float32), np.zeros(16, np.float32)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3000):  # short prompts: one tails dict per checkpoint (the worst case)
            ids = rng.integers(0, 65, 300).astype(np.int32)
            m = c.marks(ids)
            for p in sorted(m):
                c.put(m, p, z, s)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.8 < held / c.bytes < 1.15, held / c.bytes  # it was 1.29 without the tails dicts


def test_a_cache_salt_shares_entries_only_with_the_same_salt():
    c = PrefixCache(1 << 20, every=4)
    ids = _ids(10, 3)
    for salt in (None, "alice"):
        m = c.marks(ids, salt)
        for p in sorted(m):
            if p:
                c.put(m, p, np.full(2, 1.0 if salt else 2.0), np.ones(4))
    assert c.marks(ids, "alice")[8] != c.marks(ids)[8] != c.marks(ids, "bob")[8]
    for salt, value in ((None, 2.0), ("alice", 1.0), ("bob", None)):
        longer = np.concatenate([ids, [1, 2]])
        hit = c.lookup(longer, c.marks(longer, salt), salt)  # via the tail at 10
        if value is None:
            assert hit is None
        else:
            assert hit[0] == 10 and hit[1][0] == value
    short = _ids(2, 4)  # a tail under the root: salted roots are apart too
    m = c.marks(short, "alice")
    c.put(m, 2, np.zeros(2), np.zeros(4))
    ext = np.concatenate([short, [0, 1]])
    assert c.lookup(ext, c.marks(ext, "alice"), "alice")[0] == 2
    assert c.lookup(ext, c.marks(ext, "bob"), "bob") is None
    assert c.lookup(ext, c.marks(ext)) is None


def test_the_engine_keys_the_cache_with_each_requests_salt(model):
    cfg = SamplingConfig(seed=2)
    e = Engine(model, max_batch=8, prompt_cache_bytes=1 << 20).start()
    try:
        texts = []
        for salt in ("a", "a", "b", None, None):
            r = e.submit([TEXT[:600]], max_chars=20, sampling=cfg, cache_salt=salt)
            assert r.wait(30) == "ok"
            texts.append(r.completions()[0].text)
        assert len(set(texts)) == 1
        assert (e.prompt_cache_misses, e.prompt_cache_hits) == (3, 2)
        with pytest.raises(ConfigError, match="cache_salt"):
            e.submit(["ab"], cache_salt="")
    finally:
        e.close()


def test_the_server_takes_cache_salt(bundle):
    on = _server(bundle, "--prompt-cache-mb", "1")
    try:
        body = {"model": "tiny", "prompt": TEXT[:600], "max_tokens": 5, "seed": 1}
        for salt in ("tenant-1", "tenant-1", "tenant-2"):
            assert post(on, {**body, "cache_salt": salt}).status_code == 200
        assert on.metric("charwright_prompt_cache_hits_total", AUTH) == 1
        assert on.metric("charwright_prompt_cache_misses_total", AUTH) == 2
        for bad in (5, "", "x" * 1025, ["a"]):
            r = post(on, {**body, "cache_salt": bad})
            assert r.status_code == 400 and "cache_salt" in r.json()["error"]["message"]
    finally:
        assert on.stop() == 0
