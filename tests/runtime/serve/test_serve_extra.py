"""The [serve] extra's boundary: the engine side (engine, request, admission, batch, priming,
metrics, the wire contract, state, log) imports without starlette, uvicorn or prometheus_client;
`charwright serve` without them exits 2 naming the extra."""

import subprocess
import sys

BLOCK = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("starlette", "uvicorn", "prometheus_client", "httptools"):
            raise ImportError("blocked: " + name, name=name)
        return None
sys.meta_path.insert(0, Block())
"""

ENGINE_SIDE = BLOCK + r"""
import importlib
for name in ("engine", "request", "admission", "batch", "priming", "metrics", "openai", "state",
             "log"):
    importlib.import_module("charwright.runtime.serve." + name)
bad = sorted(k for k in sys.modules
             if k.split(".")[0] in ("starlette", "uvicorn", "prometheus_client"))
print("loaded:", bad)
"""

CLI = BLOCK + r"""
from charwright.runtime.cli import main
sys.exit(main(["serve", "--port", "0"]))
"""


def _run(script):
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)


def test_the_engine_side_imports_without_the_serve_extra():
    r = _run(ENGINE_SIDE)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "loaded: []"


def test_serve_without_the_extra_exits_2_naming_it():
    r = _run(CLI)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].endswith(
        "starlette is not installed; install the server with: pip install 'charwright[serve]'")
