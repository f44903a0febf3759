"""Each branch case of the golden vectors catches the port that breaks its rule.

A plausible wrong port is simulated by patching one processor of the Python runtime; the golden
check must then report exactly the cases that pin that rule (runtime/c/SAMPLING.md, section 3)
and no others, so every such case is needed and none passes by accident."""

import numpy as np
import pytest

from charwright.runtime.sampling import config
from charwright.runtime.sampling import processors as P
from charwright.runtime.sampling.golden import check_golden, make_golden


@pytest.fixture(scope="module")
def doc():
    return make_golden()


def _failing(doc) -> set:
    return {f.split("'")[1] for f in check_golden(doc)}


def _after_init(cls, change):
    """cls.__init__ followed by change(self, *args)."""
    init = cls.__init__

    def patched(self, *args):
        init(self, *args)
        change(self, *args)
    return patched


def _inverse_in_float32(self, penalty, window, vocab_size):
    self._inv = np.float32(1) / np.float32(penalty)  # 1.0f / r, not float32(1 / r in float64)


def _top_p_without_slack(self, p):
    self._target = np.float32(p)


def _top_p_old_slack(self, p):
    self._target = np.float32(p * (1 - 2**-10))


def _moved_last(name):
    """build_processors with the processor `name` moved to the end of the chain."""
    build = config.build_processors

    def patched(*args, **kwargs):
        procs = build(*args, **kwargs)
        return [p for p in procs if p.name != name] + [p for p in procs if p.name == name]
    return patched


def _always_times_r(self, z):
    seen = self.counts[:, :-1] > 0
    z[seen] = z[seen] * self._pen  # no z > 0 branch
    return z


def _once_per_occurrence(self, z):
    c = self.counts[:, :-1]
    z *= np.where(z > 0, self._inv ** c, self._pen ** c).astype(np.float32)
    return z


def _divide_by_t(self, z):
    z /= np.float32(self.t)
    return z


def _min_p_drops_equal(self, z):
    z[z <= z.max(axis=1, keepdims=True) + self.log_p] = P.NEG_INF
    return z


def _top_k_exactly_k(self, z):
    if self.k >= z.shape[1]:
        return z
    keep = np.argsort(-z, axis=1, kind="stable")[:, : self.k]
    drop = np.ones(z.shape, bool)
    np.put_along_axis(drop, keep, False, axis=1)
    z[drop] = P.NEG_INF
    return z


def _typical_in_float32(self, z):
    lp = z - z.max(axis=1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(axis=1, keepdims=True))
    p = np.exp(lp)
    ent = -np.nansum(p * np.where(np.isfinite(lp), lp, 0), axis=1, keepdims=True)
    order = np.argsort(np.abs(-lp - ent), axis=1, kind="stable")
    ps = np.take_along_axis(p, order, axis=1).astype(np.float64)
    drop = (np.cumsum(ps, axis=1) - ps) >= self._target
    drop[:, 0] = False
    zs = np.take_along_axis(z, order, axis=1)
    np.put_along_axis(z, order, np.where(drop, P.NEG_INF, zs), axis=1)
    return z


WRONG_PORTS = [
    ("1/r in float32", P.RepetitionPenalty, "__init__", _inverse_in_float32,
     {"greedy-penalty-inverse"}),
    ("no z > 0 branch", P.RepetitionPenalty, "__call__", _always_times_r,
     {"repetition-penalty-positive", "repetition-penalty-below-1", "greedy-penalty-window",
      "chain-all"}),
    ("penalty per occurrence", P.RepetitionPenalty, "__call__", _once_per_occurrence,
     {"repetition-penalty", "repetition-penalty-positive", "repetition-penalty-below-1",
      "greedy-penalty-inverse", "repetition-once-per-id", "chain-all"}),
    ("picked ids do not join the window", P.RepetitionPenalty, "accept", lambda self, ids: None,
     {"repetition-penalty", "repetition-penalty-positive", "repetition-penalty-below-1",
      "greedy-penalty-window", "chain-all"}),
    ("logits / T", P.Temperature, "__call__", _divide_by_t, {"temperature-product-tie"}),
    ("min-p drops a logit equal to the threshold", P.MinP, "__call__", _min_p_drops_equal,
     {"min-p-boundary"}),
    ("top-k keeps exactly k", P.TopK, "__call__", _top_k_exactly_k,
     {"top-k-ties", "top-k-ties-kth", "temperature-product-tie"}),
    ("typical in float32", P.Typical, "__call__", _typical_in_float32, {"typical-near-tie"}),
    ("top-p without slack", P.TopP, "__init__", _top_p_without_slack, {"top-p-0.7"}),
    ("top-p with 2**-10 slack", P.TopP, "__init__", _top_p_old_slack, {"top-p-0.8-10000"}),
    ("the penalty after the filters", config, "build_processors", "repetition-penalty",
     {"chain-all"}),
    ("temperature after the filters", config, "build_processors", "temperature",
     {"chain-65", "temperature-product-tie", "chain-all"}),
]


def test_every_branch_case_is_reproduced(doc):
    assert check_golden(doc) == []
    names = [c["name"] for c in doc["cases"]]
    assert len(set(names)) == len(names)
    for rule in WRONG_PORTS:
        assert rule[4] <= set(names), rule[0]


@pytest.mark.parametrize("label,cls,attr,wrong,cases", WRONG_PORTS, ids=[w[0] for w in WRONG_PORTS])
def test_a_port_that_breaks_the_rule_fails_its_cases(doc, monkeypatch, label, cls, attr, wrong,
                                                     cases):
    monkeypatch.setenv("CHARWRIGHT_PURE_PYTHON", "1")  # the numpy chain, which is patched here
    if attr == "__init__":
        wrong = _after_init(cls, wrong)
    elif attr == "build_processors":
        wrong = _moved_last(wrong)
    monkeypatch.setattr(cls, attr, wrong)
    assert _failing(doc) == cases


def test_the_penalty_case_takes_the_positive_branch(doc):
    """SAMPLING.md step 1: the case's history holds ids with z > 0, 0, < 0 and -inf; 0 and
    -inf stay as they are; an id twice in the history is changed once."""
    case = next(c for c in doc["cases"] if c["name"] == "repetition-penalty-positive")
    z = np.array([int(x, 16) for x in case["logits"]], np.uint32).view(np.float32)
    seen = set(case["history"])
    assert {np.sign(z[i]) for i in seen if np.isfinite(z[i])} == {1.0, 0.0, -1.0}
    assert np.isneginf(z[list(seen)]).any()
    assert len(case["history"]) > len(seen)
    r = P.RepetitionPenalty(case["sampling"]["repetition_penalty"], 6, len(z))
    r.join([np.array(case["history"])])
    out = r(z[None].copy())[0]
    inv = np.float32(1 / case["sampling"]["repetition_penalty"])
    for i in seen:
        want = z[i] * inv if z[i] > 0 else z[i] * np.float32(case["sampling"]["repetition_penalty"])
        assert out[i] == want or (np.isneginf(out[i]) and np.isneginf(want))
