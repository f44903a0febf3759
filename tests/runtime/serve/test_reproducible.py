"""A seeded request's text does not depend on the server's load (issue 20): the same request
alone, then while 63 other streams run in the same batch, gives the same text, on every backend
the server can use and on each of its files named explicitly (--precision: ONNX int8-dynamic and
float32, LiteRT int8-dynamic and float32, numpy), and the server's ready line names that file.

(With the per-tensor ONNX int8 file of before, the onnx int8-dynamic case fails: the texts under
load differ.) Two targets: one primed alone first (then served again under load), one primed under load first
(then served again alone), so that neither priming nor sampling may depend on the batch."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from serve_util import AUTH, KEY, ServerProcess, post, sse_events

pytestmark = [pytest.mark.serve]
LOAD = 63
TARGET_CHARS = 200


def completion(server, prompt: str, seed: int) -> str:
    r = post(server, {"model": server.model, "prompt": prompt, "max_tokens": TARGET_CHARS,
                      "seed": seed, "temperature": 1.0, "top_p": 0.95}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


class Load:
    """LOAD streamed requests (other prompts and seeds, long): started() once each has its first
    chunk (so all run in the batch), stop() closes them; ended[i] is when stream i ended."""

    def __init__(self, server, prompts):
        self.server, self.prompts = server, prompts
        self.first = threading.Semaphore(0)
        self.halt = threading.Event()
        self.ended: list = [None] * LOAD
        self.errors: list = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(LOAD)]

    def _run(self, i: int) -> None:
        body = {"model": self.server.model, "prompt": self.prompts[i % len(self.prompts)], "max_tokens": 50_000,
                "seed": 1000 + i, "temperature": 1.0, "top_p": 0.95, "stream": True}
        # the targets' settings (other seeds): one sampler for the whole batch, so a backend
        # with a compiled loop runs passes of several steps under load
        signalled = False
        try:
            with httpx.stream("POST", self.server.url + "/v1/completions", headers=AUTH,
                              json=body, timeout=120) as r:
                if r.status_code != 200:
                    self.errors.append(f"stream {i}: {r.status_code} {r.read()!r}")
                    return
                for line in r.iter_lines():
                    if sse_events([line]) and not signalled:
                        self.first.release()
                        signalled = True
                    if self.halt.is_set():
                        break
        except httpx.HTTPError as e:
            self.errors.append(f"stream {i}: {e!r}")
        finally:
            self.ended[i] = time.monotonic()
            if not signalled:  # fail fast: __enter__ sees the error
                self.first.release()

    def __enter__(self):
        for t in self.threads:
            t.start()
        deadline = time.monotonic() + 60
        for _ in range(LOAD):
            assert self.first.acquire(timeout=max(0.1, deadline - time.monotonic())), self.errors
        assert not self.errors, self.errors[:3]
        return self

    def __exit__(self, *exc):
        self.halt.set()
        for t in self.threads:
            t.join(60)


def check_reproducible(bundle, backend: str, prompts: list, file: str | None = None,
                       precision: str | None = None) -> None:
    named = ["--precision", precision] if precision else []
    server = ServerProcess("-b", str(bundle), "--backend", backend, *named, "--max-batch", "64",
                           env={"CHARWRIGHT_API_KEY": KEY}).start()
    server.model = bundle.name  # the model a server names is its bundle directory's
    try:
        if file is not None:  # the file under test is the one served
            end = time.monotonic() + 10  # /health may answer before the line is read
            while not any("ready: " in x for x in server.stderr_lines) and time.monotonic() < end:
                time.sleep(0.02)
            (ready,) = [x for x in server.stderr_lines if "ready: " in x]
            assert f"{bundle.name} ({file};" in ready, ready
        first, second = prompts[0], prompts[1]
        alone_first = completion(server, first, seed=7)
        with Load(server, prompts[2:]) as load:
            steps = server.metric("charwright_step_seconds_count", AUTH)
            passes = server.metric("charwright_scheduler_passes_total", AUTH)
            loaded_first = completion(server, first, seed=7)
            loaded_second = completion(server, second, seed=9)
            served = time.monotonic()
            running = sum(1 for t in load.ended if t is None)
            steps = server.metric("charwright_step_seconds_count", AUTH) - steps
            passes = server.metric("charwright_scheduler_passes_total", AUTH) - passes
        alone_second = completion(server, second, seed=9)
        assert not load.errors, load.errors[:3]
        assert running == LOAD  # every other stream was still running: the targets ran beside them
        assert all(t is not None and t >= served for t in load.ended)
    finally:
        assert server.stop() == 0, server.stderr()
    assert len(alone_first) == len(alone_second) == TARGET_CHARS
    assert loaded_first == alone_first
    assert loaded_second == alone_second
    # onnxruntime and LiteRT ran the loaded batch in passes of several steps (advance); numpy
    # one step a pass (the step count also holds priming's steps: not exactly one)
    assert (steps >= 2 * passes) == (backend != "numpy"), (passes, steps)


def test_same_text_alone_and_under_load_numpy_handmade_bundle(bundle):
    """No TensorFlow needed: the hand-made float32 bundle on the numpy backend."""
    check_reproducible(bundle, "numpy", ["abc ", "hag.", "a", "b\n", "cafe ", "gh", "d e f"])


@pytest.mark.tf
@pytest.mark.litert
@pytest.mark.parametrize("backend, precision, file", [
    ("onnx", "int8-dynamic", "model.int8-dynamic.onnx"),
    ("onnx", "float32", "model.float32.onnx"),
    ("litert", "int8-dynamic", "model.int8-dynamic.tflite"),
    ("litert", "float32", "model.float32.tflite"),
    ("numpy", "float32", "weights.npz"),
])
def test_same_text_alone_and_under_load_every_backend(tiny_bundle, backend, precision, file):
    check_reproducible(tiny_bundle, backend, ["The cat ", "A dog", "M", "the sea.\n", "Her b",
                                              "our queen loves ", "O"], file, precision)
