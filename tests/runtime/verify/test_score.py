"""runtime.verify.score and text_source: a text scored in pieces (UTF-8 split across reads,
one byte-order mark, offsets of bad bytes and unknown characters) gives the whole text's figure."""

import io
import math

import numpy as np
import pytest

from bundle_factory import make_bundle

from charwright.runtime.backends import open_backend
from charwright.runtime.bundle.reader import load_bundle
from charwright.runtime.errors import ConfigError, VocabularyError
from charwright.runtime.verify import text_source
from charwright.runtime.verify.score import (bits_of, bits_per_char, log_likelihood,
                                             log_likelihood_stream, replay, score_text)
from charwright.runtime.verify.text_source import encode_pieces, read_text_pieces
from charwright.runtime.vocab import Vocabulary


def _pieces(data: bytes, chunk: int, monkeypatch, on_bytes=None):
    monkeypatch.setattr(text_source, "READ_CHUNK", chunk)
    return list(read_text_pieces(io.BytesIO(data), "t.txt", on_bytes))


def test_pieces_join_to_the_text_whatever_the_chunk(monkeypatch):
    text = "\ufeffé€ab\ufeffc"  # a leading mark is dropped, a later one kept
    seen = []
    for chunk in (1, 2, 3, 7, 1 << 16):
        assert "".join(_pieces(text.encode(), chunk, monkeypatch)) == "é€ab\ufeffc"
    _pieces(text.encode(), 4, monkeypatch, seen.append)
    assert seen[-1] == len(text.encode()) and seen == sorted(seen)


@pytest.mark.parametrize("data,offset", [(b"ab\xffcd", 2), ("the €".encode() + b"\xff", 7),
                                         (b"the cat\xe2\x82", 7)])
def test_invalid_utf8_is_named_at_its_byte_offset(monkeypatch, data, offset):
    with pytest.raises(ConfigError, match=f"^t.txt: invalid UTF-8 at byte offset {offset}$"):
        _pieces(data, 4, monkeypatch)


def test_unknown_characters_are_named_at_their_offset_in_the_whole_text():
    vocab = Vocabulary(tuple("abc"))
    assert [list(p) for p in encode_pieces(vocab, ["ab", "ca"], "error")] == [[0, 1], [2, 0]]
    with pytest.raises(VocabularyError, match=r"'x' at 5, 'y' at 6"):
        list(encode_pieces(vocab, ["abc", "abxy"], "error"))
    assert [list(p) for p in encode_pieces(vocab, ["ax", "b"], "skip")] == [[0], [1]]


def test_scoring_in_pieces_gives_the_whole_texts_figure(tmp_path):
    b = load_bundle(make_bundle(tmp_path / "b"))
    backend = open_backend(b, b.files[0])
    probe = b.probe()
    ids = probe["tokens"]
    whole = log_likelihood(backend, ids)
    pieces = [ids[:1], ids[1:7], ids[7:8], ids[8:]]
    got, n = log_likelihood_stream(backend, pieces, chunk=5)
    assert n == len(ids) - 1 and got == pytest.approx(whole, rel=1e-6)
    assert bits_of(whole, n) == pytest.approx(bits_per_char(replay(backend, ids)[0], ids),
                                              rel=1e-6)
    assert bits_of(-math.log(2) * 4, 4) == 1.0
    text = b.vocab.decode(ids)
    assert score_text(backend, b.vocab, [text[:3], text[3:]])[1] == n
    with pytest.raises(ConfigError, match="^t.txt: scoring needs a text of at least two"):
        score_text(backend, b.vocab, [text[:1]], name="t.txt")
    assert np.isnan(bits_per_char(replay(backend, ids[:1])[0], ids[:1]))
