"""Reading a corpus: one or more UTF-8 files, strictly decoded, concatenated in order."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from charwright.runtime.errors import CorpusError


@dataclass(frozen=True)
class Corpus:
    """The concatenated text of the corpus files and their identity.

    Attributes:
        text: the files' text, concatenated in the order given (nothing inserted between them).
        files: [(absolute path, chars, sha256 of the bytes)] in order.
        sha256: digest over every file's sha256, in order (identifies the whole corpus).
    """

    text: str
    files: tuple[tuple[str, int, str], ...]
    sha256: str


def read_corpus(paths) -> Corpus:
    """Reads and strictly decodes each file.

    Raises:
        CorpusError: a missing or unreadable file, invalid UTF-8 (naming the file and the byte
            offset of the first bad byte), or an empty corpus.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise CorpusError("no corpus file given")
    texts, files = [], []
    whole = hashlib.sha256()
    for p in paths:
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise CorpusError(f"corpus file not found: {p}") from None
        except IsADirectoryError:
            raise CorpusError(f"corpus path is a directory, not a file: {p}") from None
        except OSError as e:
            raise CorpusError(f"cannot read corpus file {p}: {e.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorpusError(
                f"{p}: invalid UTF-8 at byte offset {e.start} ({e.reason}); "
                "convert the file to UTF-8 first"
            ) from None
        if text.startswith("\ufeff"):  # a UTF-8 byte-order mark is not text
            text = text[1:]
        digest = hashlib.sha256(data).hexdigest()
        whole.update(digest.encode())
        texts.append(text)
        files.append((str(p.resolve()), len(text), digest))  # absolute: resume/export elsewhere
    text = "".join(texts)
    if not text:
        raise CorpusError("the corpus is empty: " + ", ".join(str(p) for p in paths))
    return Corpus(text=text, files=tuple(files), sha256=whole.hexdigest())
