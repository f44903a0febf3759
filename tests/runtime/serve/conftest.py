"""Fixtures of the HTTP tests: a tiny bundle and a real server process with an API key, one per
test module."""

from pathlib import Path

import pytest

from bundle_factory import make_bundle
from serve_util import keyed_server


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("serve") / "tiny", units=32)


@pytest.fixture(scope="module")
def server(bundle):
    yield from keyed_server(bundle)
