"""Who runs, who waits, who is refused, without threads: Admission on hand-made requests."""

from types import SimpleNamespace

import pytest

from charwright.runtime.serve.admission import Admission
from charwright.runtime.serve.request import QueueFull


def req(rows, primed=True, prompts=1):
    return SimpleNamespace(rows=rows, ids=[[1]] * prompts, outcome=None, prime_keys=[],
                           primed=object() if primed else None)


def test_primed_requests_join_in_fifo_order_and_a_big_one_holds_back_those_behind_it():
    q = Admission(max_batch=4, max_queue=8)
    a, big, small = req(2), req(4), req(1)
    for r in (a, big, small):
        q.accept(r)
    assert q.admit(0) == ([a], [])  # big does not fit beside a; small may not pass it
    assert (q.running, q.running_rows, list(q.waiting)) == ([a], 2, [big, small])
    q.leave(a)
    assert q.admit(0) == ([big], []) and q.running_rows == 4
    q.leave(big)
    assert q.admit(0) == ([small], []) and not q.waiting


def test_the_queue_refuses_at_once_when_max_queue_requests_will_not_fit():
    q = Admission(max_batch=2, max_queue=1)
    q.accept(req(2))
    q.admit(0)  # it runs: the batch is full
    q.accept(req(1))  # waits
    with pytest.raises(QueueFull, match=r"1 requests wait already \(max_queue 1\)"):
        q.accept(req(1))


def test_unprimed_requests_start_priming_in_fifo_order_while_the_primer_has_room():
    q = Admission(max_batch=3, max_queue=8)
    a, b, c = req(2, primed=False, prompts=2), req(2, primed=False, prompts=2), req(1, False)
    for r in (a, b, c):
        q.accept(r)
    assert q.admit(primer_rows=0) == ([], [a])  # b does not fit the primer: c waits behind it
    a.prime_keys = [0, 1]
    b.outcome = "cancelled"
    assert q.admit(primer_rows=2) == ([], [c]) and b not in q.waiting
