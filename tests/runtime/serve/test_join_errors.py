"""A request that cannot join the batch fails alone: the requests running (or joining in the
same pass) go on, and the engine keeps serving. A huge top_k is "off", never a failure."""

import pytest

import charwright.runtime.serve.batch as batch_module
from charwright.runtime import SamplingConfig, load
from charwright.runtime.serve.engine import Engine


@pytest.fixture(scope="module")
def model(bundle):  # bundle: the tiny bundle of tests/runtime/serve/conftest.py
    return load(bundle, backend="numpy")


def _texts(req):
    return [c.text for c in req.completions()]


def test_a_request_whose_sampler_cannot_be_made_fails_alone(model, monkeypatch):
    real = batch_module.make_sampler

    def picky(cfg, vocab):
        if cfg.top_k == 7:
            raise RuntimeError("this sampler cannot be made")
        return real(cfg, vocab)

    monkeypatch.setattr(batch_module, "make_sampler", picky)
    alone = Engine(model, max_batch=8).start()
    want = alone.submit(["ab"], n=2, max_chars=300, sampling=SamplingConfig(seed=1))
    assert want.wait(60) == "ok"
    alone.close()
    e = Engine(model, max_batch=8)
    a = e.submit(["ab"], n=2, max_chars=300, sampling=SamplingConfig(seed=1))
    b = e.submit(["c"], n=1, max_chars=5, sampling=SamplingConfig(seed=1, top_k=7))
    e.start()  # both are primed and join in the same pass: a first, then b fails
    try:
        assert b.wait(60) == "error"
        assert a.wait(60) == "ok" and _texts(a) == _texts(want)
        assert isinstance(e.last_error, RuntimeError)
        c = e.submit(["ab"], n=1, max_chars=20, sampling=SamplingConfig(seed=1))
        assert c.wait(60) == "ok" and len(_texts(c)[0]) == 20  # it still serves
    finally:
        e.close()


@pytest.mark.parametrize("huge", [2**31, 10**30])
def test_a_huge_top_k_joins_and_samples_as_no_top_k(model, huge):
    e = Engine(model, max_batch=8)
    a = e.submit(["ab"], n=2, max_chars=50, sampling=SamplingConfig(seed=3))
    b = e.submit(["ab"], n=2, max_chars=50, sampling=SamplingConfig(seed=3, top_k=huge))
    e.start()
    try:
        assert a.wait(60) == "ok" and b.wait(60) == "ok"
        assert _texts(a) == _texts(b) and e.last_error is None
    finally:
        e.close()
