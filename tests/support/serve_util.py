"""ServerProcess: `charwright serve` as a real process on 127.0.0.1, port 0 (STYLE rule 25).

start() reads the bound port from the first stderr line and polls /health until 200; stop()
sends SIGTERM (never kill) and returns the exit status. keyed_server() is the server most HTTP
tests share (a key from the environment); post() sends it a completion request."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx

CLI = [sys.executable, "-m", "charwright.runtime.cli"]
KEY = "sekrit-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


class ServerProcess:
    def __init__(self, *args, env=None):
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.proc = None
        self.port = None
        self.stderr_lines: list[str] = []
        self._port_seen = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        self.proc = subprocess.Popen(CLI + ["serve", "--host", "127.0.0.1", "--port", "0",
                                            *self.args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=self.env, text=True)
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self._port_seen.wait(timeout):
            self.proc.kill()
            raise TimeoutError("the server printed no port: " + self.stderr())
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited {self.proc.returncode}: {self.stderr()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.proc.kill()
        raise TimeoutError("/health never said 200: " + self.stderr())

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self._port_seen.set()

    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def sigterm(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit status (the process must exit by itself)."""
        if self.proc.poll() is None:
            self.sigterm()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def metric(self, name: str, headers=None) -> float:
        text = httpx.get(self.url + "/metrics", headers=headers, timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total


def keyed_server(bundle):
    """For a module-scoped fixture (`yield from keyed_server(bundle)`): one server of the bundle
    on the numpy backend, the key from the environment, 64 rows, 64 waiting; on teardown it must
    exit 0 and never have logged the key."""
    s = ServerProcess("-b", str(bundle), "--backend", "numpy", "--max-batch", "64",
                      env={"CHARWRIGHT_API_KEY": KEY}).start()
    yield s
    assert s.stop() == 0, s.stderr()
    assert KEY not in s.stderr()  # the key is never logged


def post(server, body, headers=AUTH, **kw):
    """POST /v1/completions: a dict is sent as JSON, bytes or str as they are."""
    return httpx.post(server.url + "/v1/completions", headers=headers,
                      content=body if isinstance(body, (bytes, str)) else json.dumps(body),
                      timeout=kw.pop("timeout", 30), **kw)


def sse_events(lines) -> list:
    """The data payloads of an SSE body, in order ('[DONE]' kept as a string)."""
    out = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out
