"""Who runs, who waits and who is refused: the engine's queue of accepted requests (FIFO), the
requests whose rows are in the batch, and the rules that move a request from one to the other.

    queue = Admission(max_batch=64, max_queue=64)
    queue.accept(request)                 it waits, or QueueFull (HTTP 429) when it would wait
                                          behind max_queue requests that will not fit either
    joining, priming = queue.admit(primer_rows)   (scheduler thread, each pass)
    queue.leave(request)                  it left the batch or the queue

Every method is called under the engine's lock; `running_rows`, `running` and `waiting` are read
anywhere (plain values)."""

from __future__ import annotations

from collections import deque

from charwright.runtime.serve.request import QueueFull, Request


class Admission:
    """At most max_batch rows run; a request that does not fit waits; if max_queue requests wait
    already (that will not fit when every earlier one has joined), accept() refuses at once: the
    queue is bounded, never a backlog."""

    def __init__(self, max_batch: int, max_queue: int):
        self.max_batch, self.max_queue = max_batch, max_queue
        self.waiting: deque[Request] = deque()  # accepted, not yet in the batch (FIFO)
        self.running: list[Request] = []
        self.running_rows = 0

    def everyone(self) -> list[Request]:
        """The requests running, then those waiting."""
        return list(self.running) + list(self.waiting)

    def accept(self, req: Request) -> None:
        if self._must_wait(req) and self._blocked() >= self.max_queue:
            raise QueueFull(f"{len(self.waiting)} requests wait already (max_queue "
                            f"{self.max_queue}); retry shortly")
        self.waiting.append(req)

    def admit(self, primer_rows: int) -> tuple[list, list]:
        """(requests that join the batch now, requests that start priming now). Primed requests
        join in FIFO order while they fit (one that does not fit holds back those behind it, so
        a large request is never starved); requests still priming are passed over. Waiting
        requests start priming in FIFO order while the primer (max_batch prompts) has room."""
        admit, start = [], []
        free = self.max_batch - self.running_rows
        room = self.max_batch - primer_rows
        blocked = False
        for r in list(self.waiting):
            if r.outcome is not None:
                self.waiting.remove(r)
            elif r.primed is not None:
                if blocked or r.rows > free:
                    blocked = True
                    continue
                self.waiting.remove(r)
                admit.append(r)
                free -= r.rows
                self.running_rows += r.rows
                self.running.append(r)
            elif not r.prime_keys and room >= 0:
                if len(r.ids) <= room:
                    start.append(r)
                    room -= len(r.ids)
                else:
                    room = -1  # FIFO: no later request starts before this one
        return admit, start

    def leave(self, r: Request) -> None:
        if r in self.running:
            self.running.remove(r)
            self.running_rows -= r.rows
        elif r in self.waiting:
            self.waiting.remove(r)

    def _must_wait(self, req: Request) -> bool:
        """Whether req would wait behind what runs and waits now."""
        taken = self.running_rows + sum(r.rows for r in self.waiting)
        return taken + req.rows > self.max_batch

    def _blocked(self) -> int:
        """Waiting requests that will not fit when every earlier one has joined."""
        free, blocked = self.max_batch - self.running_rows, 0
        for r in self.waiting:
            if r.rows <= free:
                free -= r.rows
            else:
                blocked += 1
                free = 0
        return blocked
