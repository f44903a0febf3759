"""A text to score, read in bounded pieces: a file, a pipe, a device or standard input,
decoded as UTF-8 a chunk at a time (one leading byte-order mark dropped, as `train` does) and
encoded by the model's vocabulary, so that `charwright score` never holds the whole text.

    stream, size = open_text("text.txt")               size None: not a regular file
    ids = encode_pieces(vocab, read_text_pieces(stream, "text.txt"), "error")
"""

from __future__ import annotations

import codecs
import os
import stat

from charwright.runtime.errors import ConfigError, VocabularyError

READ_CHUNK = 1 << 16  # bytes per read: score's memory is flat in the text's length
BOM = "\ufeff"


def open_text(text_file: str):
    """(binary stream, its size in bytes if it is a regular file else None). The caller closes
    the stream."""
    try:
        f = open(text_file, "rb")
    except OSError as e:
        raise ConfigError(f"{text_file}: cannot read ({e.strerror or e})") from None
    st = os.fstat(f.fileno())
    return f, (st.st_size if stat.S_ISREG(st.st_mode) else None)


def read_text_pieces(stream, name: str, on_bytes=None):
    """The UTF-8 text of a binary stream, in pieces of at most READ_CHUNK bytes' worth (never
    the whole text: a pipe or /dev/zero has no end), one leading byte-order mark dropped.

    Raises ConfigError naming the byte offset of the first invalid UTF-8 sequence, or a read
    error. on_bytes(n) is called with the bytes read so far, after each piece is consumed."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    fed, first = 0, True
    while True:
        try:
            data = stream.read(READ_CHUNK)
        except OSError as e:
            raise ConfigError(f"{name}: cannot read ({e.strerror or e})") from None
        pending = len(decoder.getstate()[0])  # bytes of a character split across reads
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as e:
            raise ConfigError(f"{name}: invalid UTF-8 at byte offset {fed - pending + e.start}"
                              ) from None
        fed += len(data)
        if first and text:
            first = False
            text = text[1:] if text.startswith(BOM) else text
        if text:
            yield text
        if on_bytes is not None:
            on_bytes(fed)
        if not data:
            return


def encode_pieces(vocab, pieces, unknown: str):
    """Vocabulary.encode over each piece of text; an unknown character is reported at its
    offset in the whole text (as if it had been encoded at once)."""
    offset = 0
    for piece in pieces:
        try:
            yield vocab.encode(piece, unknown=unknown)
        except VocabularyError:
            if offset == 0:
                raise
            known = set(vocab.chars) | ({"\n"} if vocab.eos else set())
            seen: dict[str, int] = {}
            for i, c in enumerate(piece):  # the error path only: one piece, <= 64K characters
                if c not in known:
                    seen.setdefault(c, offset + i)
            listed = ", ".join(f"{c!r} at {p}" for c, p in list(seen.items())[:5])
            more = f" and {len(seen) - 5} more" if len(seen) > 5 else ""
            raise VocabularyError(
                f"{len(seen)} character(s) not in the model's vocabulary: {listed}{more}; "
                "skip or replace them (--unknown skip|replace)") from None
        offset += len(piece)
